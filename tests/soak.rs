//! The soak: twice as many threads as cores record at full speed, some on leased stripes and
//! the rest on shared ones, while a snapshot is taken every 10 ms and checked; at the end every
//! total is exact. Ignored by default; `.ci/run` runs it for
//! `TASKMETER_SOAK_SECS` seconds (60 there):
//! `TASKMETER_SOAK_SECS=60 cargo test --release --test soak -- --ignored --nocapture`.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskmeter::{
    AtomicMetrics, MetricsBackend, RunnerType, SinkError, Snapshot, SnapshotterBuilder, TaskOutcome,
};

/// Fixed per label, so that every snapshot can check its sums against its counts.
fn duration_of(runner: RunnerType, outcome: TaskOutcome) -> u64 {
    3 + runner.index() as u64 * 7_000 + outcome.index() as u64 * 911
}

#[test]
#[ignore = "long: run by .ci/run with TASKMETER_SOAK_SECS"]
fn soak() {
    let seconds: f64 = std::env::var("TASKMETER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    // Oversubscribed, and with fewer leased stripes than threads: leased and shared stripes
    // are both soaked, and threads are descheduled inside calls.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let threads = 2 * cores + 1;
    let metrics = Arc::new(AtomicMetrics::builder().stripes(cores + 1).build().unwrap());
    let leased = metrics.leased_stripes();
    assert!(leased < threads && leased >= 1);
    let checked = Arc::new(AtomicU64::new(0));
    // Only the previous cumulative counts are kept: holding a snapshot would stop the engine
    // from reusing its storage.
    let mut previous_completed = [0_u64; RunnerType::COUNT];
    let checked_by_sink = Arc::clone(&checked);
    let snapshotter = SnapshotterBuilder::new(Duration::from_millis(10))
        .sink(move |snapshot: &Snapshot| -> Result<(), SinkError> {
            for runner in RunnerType::ALL {
                if snapshot.in_flight(runner) < 0 {
                    return Err(format!("negative in-flight in {}", snapshot.sequence()).into());
                }
                for outcome in TaskOutcome::ALL {
                    for view in [snapshot.cumulative(), snapshot.interval()] {
                        let completed = view.completed(runner, outcome);
                        if view.duration_sum_ms(runner, outcome)
                            != completed * duration_of(runner, outcome)
                        {
                            return Err(format!(
                                "sum and count disagree in {}",
                                snapshot.sequence()
                            )
                            .into());
                        }
                    }
                }
            }
            for runner in RunnerType::ALL {
                let completed = snapshot.cumulative().completed_all(runner);
                if completed < previous_completed[runner.index()] {
                    return Err(format!("cumulative decreased in {}", snapshot.sequence()).into());
                }
                previous_completed[runner.index()] = completed;
            }
            checked_by_sink.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .spawn(&metrics);
    let recording = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|worker| {
            let (metrics, recording) = (Arc::clone(&metrics), Arc::clone(&recording));
            std::thread::spawn(move || {
                let mut tasks = 0_u64;
                while recording.load(Ordering::Relaxed) {
                    for step in 0..1_000_usize {
                        let runner = RunnerType::ALL[(step + worker) % RunnerType::COUNT];
                        let outcome = TaskOutcome::ALL[(step / 3) % TaskOutcome::COUNT];
                        metrics.record_task_started(runner);
                        metrics.record_task_completed(
                            runner,
                            outcome,
                            duration_of(runner, outcome),
                        );
                    }
                    tasks += 1_000;
                }
                tasks
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    recording.store(false, Ordering::Relaxed);
    let tasks: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let elapsed = started.elapsed();
    snapshotter.stop();
    let last = metrics.snapshot();
    let started_total: u64 = RunnerType::ALL
        .iter()
        .map(|&r| last.cumulative().started(r))
        .sum();
    let completed_total: u64 = RunnerType::ALL
        .iter()
        .map(|&r| last.cumulative().completed_all(r))
        .sum();
    assert_eq!(started_total, tasks);
    assert_eq!(completed_total, tasks);
    assert_eq!(
        last.sink_failures(),
        0,
        "a snapshot failed its checks (see stderr)"
    );
    let checked = checked.load(Ordering::Relaxed);
    assert!(checked > 0);
    println!(
        "soak: {threads} threads ({leased} on leased stripes, the rest shared), {:.1} s, {} events ({:.1} M events/s), {checked} snapshots checked, all totals exact",
        elapsed.as_secs_f64(),
        2 * tasks,
        2.0 * tasks as f64 / elapsed.as_secs_f64() / 1e6
    );
}
