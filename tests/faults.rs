//! Faults: panicking sinks, recording threads that die, an engine dropped under its
//! snapshotter. (The clock going backwards is a unit test in `src/engine.rs`; 64 short-lived
//! threads in `tests/stress.rs`.)
#![cfg(not(loom))]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskmeter::{AtomicMetrics, SinkError, Snapshot, SnapshotterBuilder};
use taskmeter_workload::{Totals, replay, task_mix};

fn assert_exact(snapshot: &Snapshot, expected: &Totals) {
    assert_eq!(expected.first_difference(snapshot.cumulative()), None);
}

#[test]
fn a_sink_that_always_panics_stops_neither_recording_nor_snapshots() {
    let metrics = Arc::new(AtomicMetrics::new());
    let panics = Arc::new(Mutex::new(0_u64));
    let counter = Arc::clone(&panics);
    let snapshotter = SnapshotterBuilder::new(Duration::from_millis(2))
        .sink(move |snapshot: &Snapshot| -> Result<(), SinkError> {
            *counter.lock().unwrap() += 1;
            panic!("export bug at snapshot {}", snapshot.sequence());
        })
        .spawn(&metrics);
    let calls = task_mix(10_000, 1);
    let mut expected = Totals::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.latest().sequence() < 5 && Instant::now() < deadline {
        replay(&*metrics, &calls);
        expected.add(&calls);
    }
    snapshotter.stop();
    let last = metrics.latest();
    assert!(
        last.sequence() >= 5,
        "the snapshotter stopped after a panic"
    );
    assert_exact(&last, &expected);
    // Every panic is reported: the count in a snapshot taken after them matches.
    let panicked = *panics.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(panicked, last.sequence());
    assert_eq!(metrics.snapshot().sink_failures(), panicked);
}

#[test]
fn what_a_thread_recorded_before_panicking_or_exiting_is_kept() {
    let metrics = Arc::new(AtomicMetrics::builder().stripes(2).build().unwrap());
    let calls = task_mix(20_000, 2);
    let half = &calls[..calls.len() / 2];
    let died = std::thread::scope(|scope| {
        let panicking = scope.spawn(|| {
            replay(&*metrics, half);
            panic!("the runner thread dies mid-stream");
        });
        let exiting = scope.spawn(|| replay(&*metrics, &calls));
        exiting.join().unwrap();
        panicking.join().is_err()
    });
    assert!(died);
    let mut expected = Totals::of(half);
    expected.add(&calls);
    assert_exact(&metrics.snapshot(), &expected);
    // And the stripes those threads used go on working for new threads.
    let more = task_mix(1_000, 3);
    std::thread::scope(|scope| {
        scope.spawn(|| replay(&*metrics, &more));
    });
    expected.add(&more);
    assert_exact(&metrics.snapshot(), &expected);
}

#[test]
fn dropping_the_engine_under_a_running_snapshotter_ends_it_cleanly() {
    let metrics = Arc::new(AtomicMetrics::new());
    let snapshotter = metrics.spawn_snapshotter(Duration::from_millis(5));
    replay(&*metrics, &task_mix(1_000, 4));
    let engine = Arc::downgrade(&metrics);
    drop(metrics);
    // The thread held only a weak reference: the engine is freed within a tick or two.
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.upgrade().is_some() {
        assert!(Instant::now() < deadline, "the engine was never freed");
        std::thread::sleep(Duration::from_millis(1));
    }
    // And stopping the handle returns at once: the thread has ended or ends now.
    let stopping = Instant::now();
    drop(snapshotter);
    assert!(stopping.elapsed() < Duration::from_secs(2));
}

#[test]
fn stopping_a_snapshotter_with_a_long_period_does_not_wait_for_it() {
    let metrics = Arc::new(AtomicMetrics::new());
    let snapshotter = metrics.spawn_snapshotter(Duration::from_secs(3600));
    let stopping = Instant::now();
    snapshotter.stop();
    assert!(stopping.elapsed() < Duration::from_secs(2));
    assert_eq!(
        metrics.latest().sequence(),
        1,
        "the final snapshot was taken"
    );
}

#[test]
fn a_period_too_long_for_the_clock_still_gives_a_final_snapshot() {
    let metrics = Arc::new(AtomicMetrics::new());
    let snapshotter = SnapshotterBuilder::new(Duration::MAX).spawn(&metrics);
    let calls = task_mix(1_000, 3);
    replay(&*metrics, &calls);
    let mut expected = Totals::default();
    expected.add(&calls);
    snapshotter.stop();
    let last = metrics.latest();
    assert_eq!(last.sequence(), 1, "only the final snapshot");
    assert_exact(&last, &expected);
}

#[test]
fn stop_timeout_bounds_a_stop_behind_a_slow_sink() {
    let metrics = Arc::new(AtomicMetrics::new());
    let snapshotter = SnapshotterBuilder::new(Duration::from_secs(3600))
        .sink(|_: &Snapshot| -> Result<(), SinkError> {
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        })
        .spawn(&metrics);
    let error = snapshotter
        .stop_timeout(Duration::from_millis(100))
        .unwrap_err();
    // The stop returned at its timeout, not after the sink's 3 s (a liveness bound).
    assert!(error.waited < Duration::from_secs(2), "{error}");
    assert!(error.to_string().contains("did not stop within"));
    // The thread goes on by itself: the final snapshot is taken before the sink runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.latest().sequence() == 0 {
        assert!(Instant::now() < deadline, "no final snapshot");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A stop without a slow sink finishes within its timeout.
    let quick = metrics.spawn_snapshotter(Duration::from_secs(3600));
    quick.stop_timeout(Duration::from_secs(10)).unwrap();
}
