//! The snapshotter: a background thread that takes a snapshot every period.

use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::AtomicMetrics;

/// The shortest period a snapshotter accepts; shorter ones are raised to it.
pub const MIN_SNAPSHOT_PERIOD: Duration = Duration::from_millis(1);

/// Handle to a running snapshotter thread, from [`AtomicMetrics::spawn_snapshotter`].
///
/// Dropping it, or calling [`stop`](Self::stop), wakes the thread at once, lets it take one
/// final snapshot (so [`AtomicMetrics::latest`] covers everything recorded before the stop),
/// and joins it. The thread holds only a weak reference to the engine: if every `Arc` to the
/// engine is dropped first, the thread ends at its next tick without a final snapshot.
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

impl AtomicMetrics {
    /// Starts a thread that calls [`snapshot`](Self::snapshot) every `period` (at least
    /// [`MIN_SNAPSHOT_PERIOD`]), on a fixed schedule that does not drift with the snapshot's
    /// own cost. Several snapshotters, and direct `snapshot()` calls, may run at once.
    pub fn spawn_snapshotter(self: &Arc<Self>, period: Duration) -> Snapshotter {
        let period = period.max(MIN_SNAPSHOT_PERIOD);
        let stop = Arc::new(StopSignal::default());
        let engine = Arc::downgrade(self);
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("taskmeter-snapshotter".into())
            .spawn(move || run(&engine, &thread_stop, period))
            .expect("failed to spawn the snapshotter thread");
        Snapshotter {
            stop,
            thread: Some(thread),
        }
    }
}

fn run(engine: &Weak<AtomicMetrics>, stop: &StopSignal, period: Duration) {
    let mut next_tick = Instant::now() + period;
    loop {
        let stopped = stop.wait_until(next_tick);
        let Some(metrics) = engine.upgrade() else {
            return;
        };
        metrics.snapshot();
        if stopped {
            return;
        }
        next_tick += period;
        // After a stall (a suspended process, a slow snapshot), skip missed ticks instead of
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
            // A panic on the snapshotter thread has already been reported by the panic hook;
            // re-raising it here could abort a thread that is itself unwinding.
            let _ = thread.join();
        }
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
