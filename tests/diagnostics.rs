//! The library's diagnostics are `tracing` events, for the application's subscriber: a failing
//! sink and a panicking sink are each reported with the sink's name and the snapshot.
#![cfg(not(loom))]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskmeter::{AtomicMetrics, SinkError, Snapshot, SnapshotSink, SnapshotterBuilder};

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Refusing;

impl SnapshotSink for Refusing {
    fn publish(&mut self, _: &Snapshot) -> Result<(), SinkError> {
        Err("disk full".into())
    }

    fn name(&self) -> &str {
        "refusing-sink"
    }
}

#[test]
fn failing_and_panicking_sinks_are_reported_as_tracing_events() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let metrics = Arc::new(AtomicMetrics::new());
    let snapshotter = SnapshotterBuilder::new(Duration::from_millis(1))
        .sink(Refusing)
        .sink(|_: &Snapshot| -> Result<(), SinkError> { panic!("sink bug") })
        .spawn(&metrics);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.latest().sequence() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    snapshotter.stop();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(
        text.contains("snapshot sink failed: disk full") && text.contains("refusing-sink"),
        "{text}"
    );
    assert!(text.contains("snapshot sink panicked"), "{text}");
    assert!(text.contains("snapshot=1"), "{text}");
}
