//! The snapshotter: a background thread that takes a snapshot every period and hands it to
//! the sinks.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::AtomicMetrics;
use crate::sink::SnapshotSink;

/// The shortest period a snapshotter accepts; shorter ones are raised to it.
pub const MIN_SNAPSHOT_PERIOD: Duration = Duration::from_millis(1);

/// Handle to a running snapshotter thread, from [`AtomicMetrics::spawn_snapshotter`] or
/// [`SnapshotterBuilder::spawn`].
///
/// Dropping it, or calling [`stop`](Self::stop), wakes the thread at once, lets it take one
/// final snapshot (so [`AtomicMetrics::latest`] and the sinks cover everything recorded before
/// the stop), and joins it. The thread holds only a weak reference to the engine between
/// ticks: if every `Arc` to the engine is dropped, the thread ends at its next tick.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType};
///
/// let metrics = Arc::new(AtomicMetrics::new());
/// let snapshotter = metrics.spawn_snapshotter(Duration::from_millis(100));
/// metrics.record_task_started(RunnerType::Container);
/// snapshotter.stop();
/// assert_eq!(metrics.latest().cumulative().started(RunnerType::Container), 1);
/// ```
#[derive(Debug)]
pub struct Snapshotter {
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// Configures a snapshotter: its period and its [`SnapshotSink`]s.
#[must_use = "a builder does nothing until spawn() is called"]
pub struct SnapshotterBuilder {
    period: Duration,
    sinks: Vec<Box<dyn SnapshotSink>>,
}

impl std::fmt::Debug for SnapshotterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sinks.iter().map(|s| s.name()).collect();
        f.debug_struct("SnapshotterBuilder")
            .field("period", &self.period)
            .field("sinks", &names)
            .finish()
    }
}

impl SnapshotterBuilder {
    /// A snapshot every `period` (at least [`MIN_SNAPSHOT_PERIOD`]), on a fixed schedule that
    /// does not drift with the snapshot's own cost.
    pub fn new(period: Duration) -> Self {
        SnapshotterBuilder {
            period: period.max(MIN_SNAPSHOT_PERIOD),
            sinks: Vec::new(),
        }
    }

    /// Adds a sink; sinks are called in the order they were added.
    pub fn sink(mut self, sink: impl SnapshotSink + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Starts the thread. Several snapshotters, and direct `snapshot()` calls, may run at once.
    pub fn spawn(self, metrics: &Arc<AtomicMetrics>) -> Snapshotter {
        let stop = Arc::new(StopSignal::default());
        let engine = Arc::downgrade(metrics);
        let thread_stop = Arc::clone(&stop);
        let SnapshotterBuilder { period, mut sinks } = self;
        let thread = std::thread::Builder::new()
            .name("taskmeter-snapshotter".into())
            .spawn(move || run(&engine, &thread_stop, period, &mut sinks))
            .expect("failed to spawn the snapshotter thread");
        Snapshotter {
            stop,
            thread: Some(thread),
        }
    }
}

impl AtomicMetrics {
    /// Starts a thread that calls [`snapshot`](Self::snapshot) every `period`, with no sinks;
    /// see [`SnapshotterBuilder`] for sinks.
    pub fn spawn_snapshotter(self: &Arc<Self>, period: Duration) -> Snapshotter {
        SnapshotterBuilder::new(period).spawn(self)
    }
}

fn run(
    engine: &Weak<AtomicMetrics>,
    stop: &StopSignal,
    period: Duration,
    sinks: &mut [Box<dyn SnapshotSink>],
) {
    let mut next_tick = Instant::now() + period;
    loop {
        let stopped = stop.wait_until(next_tick);
        let Some(metrics) = engine.upgrade() else {
            return;
        };
        let snapshot = metrics.snapshot();
        for sink in sinks.iter_mut() {
            let outcome = catch_unwind(AssertUnwindSafe(|| sink.publish(&snapshot)));
            let failure = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => format!("failed: {error}"),
                // The panic hook has printed the payload already.
                Err(_) => "panicked".to_owned(),
            };
            eprintln!(
                "taskmeter: snapshot sink {} {failure} (snapshot {})",
                sink.name(),
                snapshot.sequence()
            );
            metrics.count_sink_failure();
        }
        drop(metrics);
        if stopped {
            return;
        }
        next_tick += period;
        // After a stall (a suspended process, a slow sink), skip missed ticks instead of
        // firing them back to back.
        let now = Instant::now();
        if next_tick < now {
            next_tick = now + period;
        }
    }
}

impl StopSignal {
    /// Sleeps until `deadline` or a stop; returns whether stopped.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Snapshotter {
    /// Stops the thread after one final snapshot, and waits for it.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        *self
            .stop
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // Sink panics are caught on the thread; anything else was reported by the panic
            // hook, and re-raising it here could abort a thread that is itself unwinding.
            let _ = thread.join();
        }
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
