//! Replays call lists on threads, the way every benchmark here measures per-call cost.

#![allow(dead_code)] // each bench uses its own subset

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::Criterion;

use taskmeter::MetricsBackend;
use taskmeter_workload::{Call, hot_label, replay, task_mix};

/// Tasks per list: about 100,000 calls, long enough to hide the thread start.
pub const TASKS_PER_LIST: usize = 50_000;

/// The three scenarios: their names and one list per thread.
pub fn scenarios() -> Vec<(&'static str, Vec<Vec<Call>>)> {
    vec![
        ("1 thread", vec![task_mix(TASKS_PER_LIST, 1)]),
        (
            "2 threads",
            vec![task_mix(TASKS_PER_LIST, 2), task_mix(TASKS_PER_LIST, 3)],
        ),
        (
            "2 threads, hot label",
            vec![hot_label(TASKS_PER_LIST), hot_label(TASKS_PER_LIST)],
        ),
    ]
}

/// `8 threads`: more recording threads than this 2-core machine's CPUs, each replaying its own
/// list (the shape of a runner with a thread per task slot).
pub fn oversubscribed() -> (&'static str, Vec<Vec<Call>>) {
    (
        "8 threads",
        (0..8)
            .map(|seed| task_mix(TASKS_PER_LIST, 10 + seed))
            .collect(),
    )
}

/// Threads per lane in [`replay_churning`].
pub const CHURN_THREADS: usize = 64;

/// `churn`: each list's lane runs [`CHURN_THREADS`] short-lived threads one after the other,
/// each replaying its share of the list once, `iters` times over (the shape of a blocking
/// pool or a thread per task). Returns the slowest lane's time inside its threads, from
/// each thread's first call to its last: spawning and joining are not timed, a thread's
/// first call (its claims) is, and so is nothing else. `end_of_thread` runs untimed.
pub fn replay_churning<B: MetricsBackend + ?Sized>(
    backend: &Arc<B>,
    lists: &[Vec<Call>],
    iters: u64,
    end_of_thread: impl Fn(&B) + Sync,
) -> Duration {
    let end_of_thread = &end_of_thread;
    std::thread::scope(|scope| {
        let lanes: Vec<_> = lists
            .iter()
            .map(|calls| {
                let backend = &**backend;
                scope.spawn(move || {
                    let share = calls.len().div_ceil(CHURN_THREADS);
                    let mut inside = Duration::ZERO;
                    for _ in 0..iters {
                        for part in calls.chunks(share) {
                            inside += std::thread::scope(|scope| {
                                scope
                                    .spawn(move || {
                                        let started = Instant::now();
                                        replay(backend, part);
                                        let inside = started.elapsed();
                                        end_of_thread(backend);
                                        inside
                                    })
                                    .join()
                                    .unwrap()
                            });
                        }
                    }
                    inside
                })
            })
            .collect();
        lanes
            .into_iter()
            .map(|lane| lane.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

/// Replays `lists[t]` `iters` times on thread `t`, all threads released together; returns the
/// wall time until the last is done. Each thread's first call and `end_of_thread` are outside
/// the timing.
pub fn replay_on_threads<B: MetricsBackend + ?Sized>(
    backend: &Arc<B>,
    lists: &[Vec<Call>],
    iters: u64,
    end_of_thread: impl Fn(&B) + Sync,
) -> Duration {
    let start_line = Barrier::new(lists.len() + 1);
    let finish_line = Barrier::new(lists.len() + 1);
    std::thread::scope(|scope| {
        for calls in lists {
            let (backend, start_line, finish_line, end_of_thread) =
                (&**backend, &start_line, &finish_line, &end_of_thread);
            scope.spawn(move || {
                calls[0].apply(backend);
                start_line.wait();
                for _ in 0..iters {
                    replay(backend, calls);
                }
                finish_line.wait();
                end_of_thread(backend);
            });
        }
        start_line.wait();
        let started = Instant::now();
        finish_line.wait();
        started.elapsed()
    })
}

/// The calls a batch of `iters` replays of `lists` makes: every list `iters` times, plus the
/// first call each thread of [`replay_on_threads`] makes before the timing (none for
/// [`replay_churning`]). The benches add these up and check each backend counted exactly that.
pub fn calls_of_batch(lists: &[Vec<Call>], iters: u64, churning: bool) -> u64 {
    let per_replay: u64 = lists.iter().map(|list| list.len() as u64).sum();
    let first_calls = if churning { 0 } else { lists.len() as u64 };
    iters * per_replay + first_calls
}

/// The criterion settings of the benches with many rows (`peers`, `growth`): 10 samples of
/// 2 s each, so a whole run stays within minutes.
pub fn many_rows_config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}
