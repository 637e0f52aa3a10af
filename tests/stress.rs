//! Real threads record while snapshots are taken: nothing lost, nothing counted twice, and
//! every snapshot consistent while it happens.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use taskmeter::{
    AtomicMetrics, MetricsBackend, RunnerErrorKind, RunnerType, Snapshot, TaskOutcome,
};
use taskmeter_workload::{Totals, replay, task_mix};

/// Writers record (runner, outcome) with the fixed duration `duration_of(runner, outcome)`, so
/// a snapshot whose sum is not `count × duration` has cut a completion in half.
fn duration_of(runner: RunnerType, outcome: TaskOutcome) -> u64 {
    1 + runner.index() as u64 * 1_000 + outcome.index() as u64 * 37
}

/// The per-snapshot consistency every reader may rely on.
fn check_consistent(snapshot: &Snapshot, previous: Option<&Snapshot>) {
    for runner in RunnerType::ALL {
        assert!(
            snapshot.in_flight(runner) >= 0,
            "negative in-flight in {snapshot:?}"
        );
        for outcome in TaskOutcome::ALL {
            for view in [snapshot.cumulative(), snapshot.interval()] {
                // Three independent tallies of the same completions must agree: the completed
                // count, the sum cells, and the histogram's slot for the label's duration.
                let completed = view.completed(runner, outcome);
                let histogram = view.duration(runner, outcome);
                let duration = duration_of(runner, outcome);
                assert_eq!(
                    view.duration_sum_ms(runner, outcome),
                    completed * duration,
                    "sum and count disagree for {runner:?}/{outcome:?}"
                );
                assert_eq!(
                    histogram.count_at(duration) * duration,
                    view.duration_sum_ms(runner, outcome),
                    "histogram slot and sum disagree for {runner:?}/{outcome:?}"
                );
            }
        }
        if let Some(previous) = previous {
            assert!(snapshot.sequence() > previous.sequence());
            let (now, before) = (snapshot.cumulative(), previous.cumulative());
            assert!(now.started(runner) >= before.started(runner));
            for outcome in TaskOutcome::ALL {
                assert!(now.completed(runner, outcome) >= before.completed(runner, outcome));
            }
        }
    }
}

/// Each writer starts and completes tasks, cycling through every label, until `writing` is
/// cleared; returns how many tasks it recorded.
fn write_tasks(metrics: &AtomicMetrics, writer: usize, writing: &AtomicBool) -> u64 {
    // Writers stop after 60 s even if the readers died, so a failure cannot hang the suite.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut tasks = 0_usize;
    while writing.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
        for _ in 0..1_000 {
            let runner = RunnerType::ALL[(tasks + writer) % RunnerType::COUNT];
            let outcome = TaskOutcome::ALL[(tasks / 3 + writer) % TaskOutcome::COUNT];
            metrics.record_task_started(runner);
            metrics.record_task_completed(runner, outcome, duration_of(runner, outcome));
            tasks += 1;
        }
    }
    tasks as u64
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Writers record while the snapshotter and two more threads take snapshots at once.
#[test]
fn concurrent_snapshots_stay_consistent_and_lose_nothing() {
    const WRITERS: usize = 4;
    const SNAPSHOTS_PER_READER: usize = 100;
    let metrics = Arc::new(AtomicMetrics::builder().stripes(2).build().unwrap());
    let snapshotter = metrics.spawn_snapshotter(Duration::from_millis(1));
    let writing = AtomicBool::new(true);
    let moving = std::sync::atomic::AtomicUsize::new(0);
    let mut all_snapshots = Vec::new();
    let mut total_tasks = 0;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (metrics, writing) = (&metrics, &writing);
                scope.spawn(move || write_tasks(metrics, writer, writing))
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (metrics, writing, moving) = (&metrics, &writing, &moving);
                scope.spawn(move || {
                    // Stops the writers even when a check below panics.
                    let _stop_writers = StopOnDrop(writing);
                    // At least SNAPSHOTS_PER_READER, and on until 20 of both readers' saw
                    // writes: a snapshot takes microseconds, and all may be over before a
                    // writer runs.
                    let mut taken = Vec::new();
                    let deadline = std::time::Instant::now() + Duration::from_secs(20);
                    while taken.len() < SNAPSHOTS_PER_READER
                        || (moving.load(Ordering::Relaxed) < 20
                            && std::time::Instant::now() < deadline)
                    {
                        let snapshot = metrics.snapshot();
                        if snapshot.interval().completed_all(RunnerType::Subprocess) > 0 {
                            moving.fetch_add(1, Ordering::Relaxed);
                        }
                        taken.push(snapshot);
                        check_consistent(&metrics.latest(), None);
                    }
                    taken
                })
            })
            .collect();
        for reader in readers {
            all_snapshots.extend(reader.join().unwrap());
        }
        writing.store(false, Ordering::Relaxed);
        total_tasks = writers.into_iter().map(|w| w.join().unwrap()).sum::<u64>();
    });
    snapshotter.stop();
    let last = metrics.snapshot();
    all_snapshots.push(last.clone());

    // The snapshots these readers took, in sequence order (the snapshotter's fill the gaps):
    // each consistent, and cumulative values never decreasing from one to the next.
    all_snapshots.sort_by_key(|s| s.sequence());
    for pair in all_snapshots.windows(2) {
        check_consistent(&pair[1], Some(&pair[0]));
    }
    let moving = all_snapshots
        .iter()
        .filter(|s| s.interval().completed_all(RunnerType::Subprocess) > 0)
        .count();
    assert!(
        moving > 10,
        "only {moving} snapshots saw writes: the test tested little"
    );

    let cumulative = last.cumulative();
    let started: u64 = RunnerType::ALL.iter().map(|&r| cumulative.started(r)).sum();
    let completed: u64 = RunnerType::ALL
        .iter()
        .map(|&r| cumulative.completed_all(r))
        .sum();
    assert_eq!(started, total_tasks);
    assert_eq!(completed, total_tasks);
    for runner in RunnerType::ALL {
        assert_eq!(last.in_flight(runner), 0);
    }
}

/// With one reader every snapshot is seen, so the intervals must add up to the cumulative
/// view and to the calls made, while writers ran during most of them.
#[test]
fn intervals_of_every_snapshot_add_up_under_concurrent_writes() {
    let metrics = AtomicMetrics::builder().stripes(2).build().unwrap();
    let calls_per_writer: Vec<_> = (0..3).map(|seed| task_mix(100_000, seed)).collect();
    const REPLAYS: usize = 4;
    let writing = AtomicBool::new(true);
    // Between its replays each writer waits for a whole snapshot to begin and end, so that
    // snapshots fall among the writes however the threads are scheduled.
    let taken_count = AtomicU64::new(0);
    let mut snapshots = std::thread::scope(|scope| {
        let writers: Vec<_> = calls_per_writer
            .iter()
            .map(|calls| {
                let (metrics, taken_count) = (&metrics, &taken_count);
                scope.spawn(move || {
                    for round in 0..REPLAYS {
                        replay(metrics, calls);
                        let seen = taken_count.load(Ordering::Acquire);
                        while round + 1 < REPLAYS && taken_count.load(Ordering::Acquire) < seen + 2
                        {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            let mut taken = Vec::new();
            while writing.load(Ordering::Relaxed) {
                taken.push(metrics.snapshot());
                taken_count.fetch_add(1, Ordering::Release);
            }
            taken
        });
        for writer in writers {
            writer.join().unwrap();
        }
        writing.store(false, Ordering::Relaxed);
        reader.join().unwrap()
    });
    snapshots.push(metrics.snapshot());
    let mut expected = Totals::default();
    for calls in &calls_per_writer {
        for _ in 0..REPLAYS {
            expected.add(calls);
        }
    }
    let last = snapshots.last().unwrap();
    for (number, snapshot) in snapshots.iter().enumerate() {
        assert_eq!(snapshot.sequence(), number as u64 + 1);
    }
    // Snapshots taken while the writers wrote: more than one of the reader's has calls.
    let with_calls = snapshots[..snapshots.len() - 1]
        .iter()
        .filter(|s| RunnerType::ALL.iter().any(|&r| s.interval().started(r) > 0))
        .count();
    assert!(with_calls >= 1, "{with_calls} snapshots among the writes");
    for runner in RunnerType::ALL {
        let started: u64 = snapshots.iter().map(|s| s.interval().started(runner)).sum();
        assert_eq!(started, expected.started(runner));
        assert_eq!(last.cumulative().started(runner), started);
        for outcome in TaskOutcome::ALL {
            let completed: u64 = snapshots
                .iter()
                .map(|s| s.interval().completed(runner, outcome))
                .sum();
            assert_eq!(completed, expected.completed(runner, outcome));
            assert_eq!(last.cumulative().completed(runner, outcome), completed);
            let sum: u128 = snapshots
                .iter()
                .map(|s| u128::from(s.interval().duration_sum_ms(runner, outcome)))
                .sum();
            assert_eq!(sum, expected.duration_sum_ms(runner, outcome));
        }
        for kind in RunnerErrorKind::ALL {
            let errors: u64 = snapshots
                .iter()
                .map(|s| s.interval().errors(runner, kind))
                .sum();
            assert_eq!(errors, expected.errors(runner, kind));
            assert_eq!(last.cumulative().errors(runner, kind), errors);
        }
    }
}

#[test]
fn short_lived_threads_lose_nothing_and_memory_stays_fixed() {
    let metrics = AtomicMetrics::builder().stripes(4).build().unwrap();
    let bytes = metrics.recording_memory_bytes();
    let mut expected = Totals::default();
    for round in 0..4_u64 {
        let batches: Vec<_> = (0..64).map(|t| task_mix(200, round * 64 + t)).collect();
        std::thread::scope(|scope| {
            for calls in &batches {
                let metrics = &metrics;
                scope.spawn(move || replay(metrics, calls));
            }
        });
        for calls in &batches {
            expected.add(calls);
        }
        let snapshot = metrics.snapshot();
        assert_eq!(expected.first_difference(snapshot.cumulative()), None);
        assert_eq!(metrics.recording_memory_bytes(), bytes);
    }
}

/// A task started on one thread and completed on another (so on another stripe), handed
/// over one at a time, so that in-flight is 0 or 1 throughout: a snapshot that read the
/// started counters earlier than the completions it drains would show -1.
#[test]
fn tasks_handed_between_threads_never_make_in_flight_negative() {
    const TASKS: u64 = 200_000;
    let metrics = AtomicMetrics::builder().stripes(2).build().unwrap();
    let (handed, done) = (AtomicU64::new(0), AtomicU64::new(0));
    let writing = AtomicBool::new(true);
    let wait_for = |condition: &dyn Fn() -> bool| {
        let mut spins = 0_u32;
        while !condition() {
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    };
    std::thread::scope(|scope| {
        let (metrics, handed, done, wait_for) = (&metrics, &handed, &done, &wait_for);
        scope.spawn(move || {
            for task in 0..TASKS {
                wait_for(&|| done.load(Ordering::Acquire) == task);
                metrics.record_task_started(RunnerType::Container);
                handed.store(task + 1, Ordering::Release);
            }
        });
        let completer = scope.spawn(move || {
            for task in 0..TASKS {
                wait_for(&|| handed.load(Ordering::Acquire) > task);
                metrics.record_task_completed(RunnerType::Container, TaskOutcome::Success, 1);
                done.store(task + 1, Ordering::Release);
            }
        });
        let writing = &writing;
        let reader = scope.spawn(move || {
            let mut checked = 0;
            while writing.load(Ordering::Relaxed) {
                let snapshot = metrics.snapshot();
                // At most 1 is not promised: starts recorded between a stripe's switch and
                // the counters' read count, their completions go to the next interval.
                let in_flight = snapshot.in_flight(RunnerType::Container);
                assert!(in_flight >= 0, "{in_flight} in {snapshot:?}");
                checked += 1;
            }
            checked
        });
        completer.join().unwrap();
        writing.store(false, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 10);
    });
    let last = metrics.snapshot();
    assert_eq!(last.in_flight(RunnerType::Container), 0);
    assert_eq!(
        last.cumulative()
            .completed(RunnerType::Container, TaskOutcome::Success),
        TASKS
    );
}
