//! Snapshot sinks: order, failure reporting, the interval log read back.
#![cfg(all(feature = "hlog", not(loom)))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use taskmeter::export::interval_log::IntervalLogSink;
use taskmeter::{AtomicMetrics, RunnerType, SinkError, Snapshot, SnapshotterBuilder, TaskOutcome};
use taskmeter_workload::{Totals, replay, task_mix};

/// A sink that records which snapshots it saw.
fn recorder(
    seen: &Arc<Mutex<Vec<(&'static str, u64)>>>,
    name: &'static str,
) -> impl FnMut(&Snapshot) -> Result<(), SinkError> + Send + 'static {
    let seen = Arc::clone(seen);
    move |snapshot: &Snapshot| {
        seen.lock().unwrap().push((name, snapshot.sequence()));
        Ok(())
    }
}

#[test]
fn failing_and_panicking_sinks_are_counted_and_stop_nothing() {
    let metrics = Arc::new(AtomicMetrics::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let snapshotter = SnapshotterBuilder::new(Duration::from_millis(5))
        .sink(recorder(&seen, "first"))
        .sink(|_: &Snapshot| -> Result<(), SinkError> { Err("disk full".into()) })
        .sink(|snapshot: &Snapshot| -> Result<(), SinkError> {
            if snapshot.sequence() % 2 == 1 {
                panic!("sink bug on snapshot {}", snapshot.sequence());
            }
            Ok(())
        })
        .sink(recorder(&seen, "last"))
        .spawn(&metrics);
    let calls = task_mix(20_000, 5);
    replay(&*metrics, &calls);
    // Panics print backtraces, which can be slow: wait for snapshots, not for time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metrics.latest().sequence() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    replay(&*metrics, &calls);
    snapshotter.stop();

    let seen = seen.lock().unwrap().clone();
    let last = metrics.latest();
    // Both healthy sinks saw every snapshot, in order, the final one included.
    for name in ["first", "last"] {
        let sequences: Vec<u64> = seen
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .collect();
        assert!(sequences.len() >= 3, "{name}: {sequences:?}");
        let every: Vec<u64> = (1..=last.sequence()).collect();
        assert_eq!(sequences, every, "{name}");
    }
    // The erroring sink failed on every snapshot, the panicking one on odd ones; each failure
    // shows in the next snapshot's count (the last snapshot's failures are after it).
    let snapshots = last.sequence();
    let failures = metrics.snapshot().sink_failures();
    assert_eq!(failures, snapshots + snapshots.div_ceil(2));
    // Recording went on and nothing was lost.
    let mut expected = Totals::of(&calls);
    expected.add(&calls);
    assert_eq!(
        last.cumulative().started(RunnerType::Subprocess),
        expected.started(RunnerType::Subprocess)
    );
}

#[test]
fn interval_log_reads_back_to_the_snapshots() {
    let path = std::env::temp_dir().join(format!("taskmeter-test-{}.hlog", std::process::id()));
    let metrics = Arc::new(AtomicMetrics::new());
    let snapshots = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&snapshots);
    let snapshotter = SnapshotterBuilder::new(Duration::from_millis(10))
        .sink(IntervalLogSink::create(&path).unwrap())
        .sink(move |snapshot: &Snapshot| -> Result<(), SinkError> {
            kept.lock().unwrap().push(snapshot.sequence());
            Ok(())
        })
        .spawn(&metrics);
    for seed in 0..5 {
        replay(&*metrics, &task_mix(5_000, seed));
        std::thread::sleep(Duration::from_millis(15));
    }
    snapshotter.stop();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();

    let mut deserializer = Deserializer::new();
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    let mut lines = 0;
    let mut previous_start = Duration::ZERO;
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(interval) = entry.expect("the log parses") {
            let encoded = BASE64.decode(interval.encoded_histogram()).unwrap();
            let histogram: hdrhistogram::Histogram<u64> =
                deserializer.deserialize(&mut encoded.as_slice()).unwrap();
            *totals
                .entry(interval.tag().unwrap().as_str().to_owned())
                .or_default() += histogram.len();
            assert!(interval.start_timestamp() >= previous_start);
            previous_start = interval.start_timestamp();
            lines += 1;
        }
    }
    let seen = snapshots.lock().unwrap().len();
    assert_eq!(
        lines,
        seen * 12,
        "one line per (runner, outcome) per snapshot"
    );
    let last = metrics.latest();
    for runner in RunnerType::ALL {
        for outcome in TaskOutcome::ALL {
            let tag = IntervalLogSink::<Vec<u8>>::tag(runner, outcome);
            assert_eq!(
                totals.get(&tag).copied().unwrap_or(0),
                last.cumulative().completed(runner, outcome),
                "{tag}"
            );
        }
    }
}
