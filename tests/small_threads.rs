//! Small, fast concurrency tests with a tiny layout, sized for Miri and ThreadSanitizer
//! (`scripts/sanitizers.sh`) as much as for the normal suite: real threads record while
//! another takes snapshots and reads `latest()`, and every count must come out exact.
#![cfg(not(loom))]

use std::sync::Arc;

use taskmeter::{AtomicMetrics, MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome};

fn tiny_engine(stripes: usize) -> AtomicMetrics {
    AtomicMetrics::builder()
        .highest_duration_ms(100)
        .significant_digits(1)
        .stripes(stripes)
        .build()
        .unwrap()
}

#[test]
fn writers_and_readers_on_shared_and_separate_stripes() {
    // (stripes, writers, tasks per writer): two writers on the lanes of one shared stripe;
    // one leased writer and one on the shared stripe; nine writers on one shared stripe of 8
    // lanes, so that at least two share a lane (fewer tasks, to stay quick under Miri).
    for (stripes, writers, tasks) in [(1, 2, 200), (2, 2, 200), (1, 9, 30)] {
        let metrics = Arc::new(tiny_engine(stripes));
        std::thread::scope(|scope| {
            for writer in 0..writers {
                let metrics = &metrics;
                scope.spawn(move || {
                    for task in 0..tasks {
                        metrics.record_task_started(RunnerType::Wasm);
                        // Beyond the 100 ms range every 7th time: clamped, still counted.
                        let duration = if task % 7 == 0 {
                            1_000
                        } else {
                            task % 50 + writer
                        };
                        metrics.record_task_completed(
                            RunnerType::Wasm,
                            TaskOutcome::Success,
                            duration,
                        );
                        metrics.record_runner_error(RunnerType::Wasm, RunnerErrorKind::SpawnFailed);
                    }
                });
            }
            let metrics = &metrics;
            scope.spawn(move || {
                for _ in 0..5 {
                    let snapshot = metrics.snapshot();
                    let view = snapshot.cumulative();
                    assert!(snapshot.in_flight(RunnerType::Wasm) >= 0);
                    assert_eq!(
                        view.duration(RunnerType::Wasm, TaskOutcome::Success).len(),
                        view.completed(RunnerType::Wasm, TaskOutcome::Success)
                    );
                    assert!(metrics.latest().sequence() >= snapshot.sequence());
                }
            });
        });
        let last = metrics.snapshot();
        let view = last.cumulative();
        assert_eq!(view.started(RunnerType::Wasm), writers * tasks);
        assert_eq!(
            view.completed(RunnerType::Wasm, TaskOutcome::Success),
            writers * tasks
        );
        assert_eq!(
            view.errors(RunnerType::Wasm, RunnerErrorKind::SpawnFailed),
            writers * tasks
        );
        assert_eq!(
            view.clamped(RunnerType::Wasm, TaskOutcome::Success),
            writers * tasks.div_ceil(7)
        );
        assert_eq!(last.in_flight(RunnerType::Wasm), 0);
    }
}

#[test]
fn a_snapshotter_and_direct_snapshots_together() {
    let metrics = Arc::new(tiny_engine(2));
    let snapshotter = metrics.spawn_snapshotter(std::time::Duration::from_millis(1));
    std::thread::scope(|scope| {
        let metrics = &metrics;
        scope.spawn(move || {
            for task in 0..100 {
                metrics.record_task_started(RunnerType::Subprocess);
                metrics.record_task_completed(RunnerType::Subprocess, TaskOutcome::Timeout, task);
            }
        });
        scope.spawn(move || {
            for _ in 0..3 {
                metrics.snapshot();
            }
        });
    });
    snapshotter.stop();
    let latest = metrics.latest();
    assert_eq!(
        latest
            .cumulative()
            .completed(RunnerType::Subprocess, TaskOutcome::Timeout),
        100
    );
    assert_eq!(
        latest
            .cumulative()
            .duration_sum_ms(RunnerType::Subprocess, TaskOutcome::Timeout),
        4_950
    );
}
