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
    // Outside Miri, 50 times the tasks, so that writing lasts long enough for the reader's
    // snapshots to fall among the writes; all threads start together at a barrier.
    let scale = if cfg!(miri) { 1 } else { 50 };
    for (stripes, writers, tasks) in [(1, 2, 200), (2, 2, 200), (1, 9, 30)] {
        let tasks = tasks * scale;
        let metrics = Arc::new(tiny_engine(stripes));
        let start = std::sync::Barrier::new(writers as usize + 1);
        let writing = std::sync::atomic::AtomicUsize::new(writers as usize);
        std::thread::scope(|scope| {
            for writer in 0..writers {
                let (metrics, start, writing) = (&metrics, &start, &writing);
                scope.spawn(move || {
                    start.wait();
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
                    writing.fetch_sub(1, std::sync::atomic::Ordering::Release);
                });
            }
            let (metrics, start, writing) = (&metrics, &start, &writing);
            scope.spawn(move || {
                start.wait();
                // Snapshots while any writer writes, and at least five.
                let mut taken = 0;
                while taken < 5 || writing.load(std::sync::atomic::Ordering::Acquire) > 0 {
                    taken += 1;
                    let snapshot = metrics.snapshot();
                    let view = snapshot.cumulative();
                    assert!(snapshot.in_flight(RunnerType::Wasm) >= 0);
                    // The histogram's top slot against the clamped counter: only the clamped
                    // durations (1,000 ms, recorded as 100) reach it.
                    assert_eq!(
                        view.duration(RunnerType::Wasm, TaskOutcome::Success)
                            .count_at(100),
                        view.clamped(RunnerType::Wasm, TaskOutcome::Success)
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
