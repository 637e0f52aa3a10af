//! The record path and the reader, measured against a baseline in the same run.
//!
//! Every scenario replays the pre-generated mix of `taskmeter::workload` through a
//! `MetricsHandle` (dynamic dispatch, as runners call it). Figures are per call, per thread:
//! each thread replays its own list, and the time is the wall time of the slowest thread.
//!
//! - `1 thread`: one thread, the mix;
//! - `2 threads`: two threads, each with its own list of the mix;
//! - `2 threads, hot label`: two threads, all calls on (subprocess, success, 1 ms).
//!
//! The baseline is the simplest correct design: one plain array of `CachePadded<AtomicU64>`
//! with one `fetch_add` per counter touched (started; completed, sum and one log2 bucket), and
//! no consistent reader. Run: `cargo bench --bench record`; `scripts/bench-table` prints the
//! table for the README.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use taskmeter::workload::{Call, Totals, hot_label, replay, task_mix};
use taskmeter::{
    AtomicMetrics, MetricsBackend, MetricsHandle, RunnerErrorKind, RunnerType, TaskOutcome,
};

const TASKS_PER_LIST: usize = 50_000;

/// The baseline: shared counters, one `fetch_add` per counter a call touches.
struct SharedFetchAdd {
    started: [CachePadded<AtomicU64>; RunnerType::COUNT],
    completed: [CachePadded<AtomicU64>; 12],
    sum: [CachePadded<AtomicU64>; 12],
    buckets: Box<[CachePadded<AtomicU64>]>,
    errors: [CachePadded<AtomicU64>; 12],
}

impl SharedFetchAdd {
    fn new() -> Self {
        let padded = || CachePadded::new(AtomicU64::new(0));
        SharedFetchAdd {
            started: std::array::from_fn(|_| padded()),
            completed: std::array::from_fn(|_| padded()),
            sum: std::array::from_fn(|_| padded()),
            buckets: (0..12 * 65).map(|_| padded()).collect(),
            errors: std::array::from_fn(|_| padded()),
        }
    }

    fn calls(&self) -> u64 {
        let total = |counters: &[CachePadded<AtomicU64>]| -> u64 {
            counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        };
        total(&self.started) + total(&self.completed) + total(&self.errors)
    }
}

impl MetricsBackend for SharedFetchAdd {
    fn record_task_started(&self, runner: RunnerType) {
        self.started[runner.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, duration_ms: u64) {
        let label = runner.index() * TaskOutcome::COUNT + outcome.index();
        self.completed[label].fetch_add(1, Ordering::Relaxed);
        self.sum[label].fetch_add(duration_ms, Ordering::Relaxed);
        let bucket = (u64::BITS - duration_ms.leading_zeros()) as usize;
        self.buckets[label * 65 + bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.errors[runner.index() * RunnerErrorKind::COUNT + kind.index()]
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Replays `lists[t]` `iters` times on thread `t`, all threads released together; returns
/// the wall time until the last one is done.
fn replay_on_threads(handle: &MetricsHandle, lists: &[Vec<Call>], iters: u64) -> Duration {
    let start_line = Arc::new(Barrier::new(lists.len() + 1));
    std::thread::scope(|scope| {
        let workers: Vec<_> = lists
            .iter()
            .map(|calls| {
                let (handle, start_line) = (Arc::clone(handle), Arc::clone(&start_line));
                scope.spawn(move || {
                    // Each thread's first call is outside the timing (it picks its stripe).
                    calls[0].apply(&*handle);
                    start_line.wait();
                    for _ in 0..iters {
                        replay(&*handle, calls);
                    }
                })
            })
            .collect();
        start_line.wait();
        let started = Instant::now();
        for worker in workers {
            worker.join().unwrap();
        }
        started.elapsed()
    })
}

fn record(c: &mut Criterion) {
    let mix_one = vec![task_mix(TASKS_PER_LIST, 1)];
    let mix_two = vec![task_mix(TASKS_PER_LIST, 2), task_mix(TASKS_PER_LIST, 3)];
    let hot_two = vec![hot_label(TASKS_PER_LIST), hot_label(TASKS_PER_LIST)];
    let scenarios: [(&str, &Vec<Vec<Call>>); 3] = [
        ("1 thread", &mix_one),
        ("2 threads", &mix_two),
        ("2 threads, hot label", &hot_two),
    ];

    let mut group = c.benchmark_group("record");
    for (scenario, lists) in scenarios {
        group.throughput(Throughput::Elements(lists[0].len() as u64));
        let taskmeter = Arc::new(AtomicMetrics::new());
        let baseline = Arc::new(SharedFetchAdd::new());
        let backends: [(&str, MetricsHandle); 2] = [
            ("taskmeter", taskmeter.clone()),
            ("baseline shared fetch_add", baseline.clone()),
        ];
        for (name, handle) in backends {
            group.bench_function(format!("{name}/{scenario}"), |b| {
                b.iter_custom(|iters| replay_on_threads(&handle, lists, iters))
            });
        }
        // Nobody is measured doing nothing: both counted every call they were given (whole
        // replays, plus each thread's one warm-up call per sample).
        let list_calls: u64 = lists.iter().map(|l| Totals::of(l).calls()).sum();
        let snapshot = taskmeter.snapshot();
        let counted: u64 = RunnerType::ALL
            .iter()
            .map(|&r| {
                let view = snapshot.cumulative();
                view.started(r)
                    + view.completed_all(r)
                    + RunnerErrorKind::ALL
                        .iter()
                        .map(|&k| view.errors(r, k))
                        .sum::<u64>()
            })
            .sum();
        // (A filtered run, `cargo bench -- NAME`, may not have run these at all.)
        assert!(
            counted == 0 || counted >= list_calls,
            "taskmeter lost calls"
        );
        let baseline_calls = baseline.calls();
        assert!(
            baseline_calls == 0 || baseline_calls >= list_calls,
            "baseline lost calls"
        );
    }
    group.finish();
}

fn reader(c: &mut Criterion) {
    let mut group = c.benchmark_group("reader");
    let metrics = Arc::new(AtomicMetrics::new());
    replay(&*metrics, &task_mix(TASKS_PER_LIST, 9));
    group.bench_function("snapshot/idle", |b| b.iter(|| metrics.snapshot()));
    // A snapshot that drains 10,000 tasks of the mix (recorded outside the timing).
    let ten_thousand = task_mix(10_000, 11);
    group.bench_function("snapshot/after 10k tasks", |b| {
        b.iter_batched(
            || replay(&*metrics, &ten_thousand),
            |()| metrics.snapshot(),
            criterion::BatchSize::PerIteration,
        )
    });

    // Two threads record the mix at full speed while snapshots are taken.
    let recording = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..2)
        .map(|seed| {
            let (metrics, recording) = (Arc::clone(&metrics), Arc::clone(&recording));
            std::thread::spawn(move || {
                let calls = task_mix(TASKS_PER_LIST, 10 + seed);
                while recording.load(Ordering::Relaxed) {
                    replay(&*metrics, &calls);
                }
            })
        })
        .collect();
    group.bench_function("snapshot/2 threads recording", |b| {
        b.iter(|| metrics.snapshot())
    });
    recording.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    group.bench_function("latest", |b| b.iter(|| metrics.latest()));
    group.finish();
}

/// The `solti` feature's mapping costs nothing measurable: the same list through taskmeter's
/// trait and through `solti_runner`'s (`cargo bench --bench record --features solti -- solti`).
#[cfg(feature = "solti")]
fn solti(c: &mut Criterion) {
    let calls = task_mix(TASKS_PER_LIST, 1);
    let upstream_runner = |r: RunnerType| {
        [
            solti_runner::RunnerType::Subprocess,
            solti_runner::RunnerType::Container,
            solti_runner::RunnerType::Wasm,
        ][r.index()]
    };
    let upstream_outcome = |o: TaskOutcome| {
        [
            solti_runner::TaskOutcome::Success,
            solti_runner::TaskOutcome::Failure,
            solti_runner::TaskOutcome::Canceled,
            solti_runner::TaskOutcome::Timeout,
        ][o.index()]
    };
    let upstream_kind = |k: RunnerErrorKind| {
        [
            solti_runner::RunnerErrorKind::CgroupPrepareFailed,
            solti_runner::RunnerErrorKind::BackendConfigFailed,
            solti_runner::RunnerErrorKind::SpawnFailed,
            solti_runner::RunnerErrorKind::ModuleLoadFailed,
        ][k.index()]
    };
    // Converted up front, so the loop measures only the calls.
    enum Upstream {
        Started(solti_runner::RunnerType),
        Completed(solti_runner::RunnerType, solti_runner::TaskOutcome, u64),
        Error(solti_runner::RunnerType, solti_runner::RunnerErrorKind),
    }
    let upstream: Vec<Upstream> = calls
        .iter()
        .map(|&call| match call {
            Call::Started(r) => Upstream::Started(upstream_runner(r)),
            Call::Completed(r, o, d) => {
                Upstream::Completed(upstream_runner(r), upstream_outcome(o), d)
            }
            Call::Error(r, k) => Upstream::Error(upstream_runner(r), upstream_kind(k)),
        })
        .collect();
    let metrics = Arc::new(AtomicMetrics::new());
    let ours: MetricsHandle = metrics.clone();
    let theirs = metrics.solti_handle();
    let mut group = c.benchmark_group("solti");
    group.throughput(Throughput::Elements(calls.len() as u64));
    group.bench_function("taskmeter trait", |b| b.iter(|| replay(&*ours, &calls)));
    group.bench_function("solti_runner trait", |b| {
        b.iter(|| {
            for call in &upstream {
                match *call {
                    Upstream::Started(r) => theirs.record_task_started(r),
                    Upstream::Completed(r, o, d) => theirs.record_task_completed(r, o, d),
                    Upstream::Error(r, k) => theirs.record_runner_error(r, k),
                }
            }
        })
    });
    group.finish();
}

#[cfg(not(feature = "solti"))]
fn solti(_: &mut Criterion) {}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = record, reader, solti
}
criterion_main!(benches);
