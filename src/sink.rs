//! Snapshot sinks: user code the snapshotter hands every published snapshot to.
//!
//! Sinks run on the snapshotter's thread, in the order they were added, after each snapshot
//! is published, so a slow sink delays the next snapshot but never a writer. A sink that
//! returns an error or panics is reported as a `tracing` event and counted in
//! [`Snapshot::sink_failures`] of the next snapshot; the snapshotter and the other sinks go on.

use std::error::Error;

use crate::Snapshot;

/// What a sink returns when it could not handle a snapshot.
pub type SinkError = Box<dyn Error + Send + Sync>;

/// Receives every snapshot a [`Snapshotter`](crate::Snapshotter) publishes.
///
/// Closures `FnMut(&Snapshot) -> Result<(), SinkError>` are sinks:
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use taskmeter::{AtomicMetrics, Snapshot, SnapshotterBuilder};
///
/// let metrics = Arc::new(AtomicMetrics::new());
/// let seen = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&seen);
/// let snapshotter = SnapshotterBuilder::new(Duration::from_millis(10))
///     .sink(move |snapshot: &Snapshot| {
///         counter.store(snapshot.sequence(), Ordering::Relaxed);
///         Ok(())
///     })
///     .spawn(&metrics);
/// snapshotter.stop(); // the final snapshot reaches the sink too
/// assert_eq!(seen.load(Ordering::Relaxed), metrics.latest().sequence());
/// ```
pub trait SnapshotSink: Send {
    /// A name for reports; the type's name by default.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Handles one published snapshot.
    fn publish(&mut self, snapshot: &Snapshot) -> Result<(), SinkError>;
}

impl<F> SnapshotSink for F
where
    F: FnMut(&Snapshot) -> Result<(), SinkError> + Send,
{
    fn name(&self) -> &str {
        "closure"
    }

    fn publish(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        self(snapshot)
    }
}
