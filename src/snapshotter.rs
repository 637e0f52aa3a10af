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
/// the stop), and joins it: that waits for the sinks, however slow.
/// [`stop_timeout`](Self::stop_timeout) bounds the wait. The thread holds only a weak
/// reference to the engine between ticks: if every `Arc` to the engine is dropped, the thread
/// ends at its next tick.
///
/// A snapshot that panics, or a sink that fails or panics, does not stop the thread: it is
/// counted ([`Snapshot::snapshot_failures`](crate::Snapshot::snapshot_failures),
/// [`Snapshot::sink_failures`](crate::Snapshot::sink_failures)), reported as a `tracing`
/// event (to whatever subscriber the application installed), and the next tick goes on.
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
    /// Set by the thread as it ends (even by a panic), for `stop_timeout`.
    finished: Mutex<bool>,
    done: Condvar,
}

/// [`Snapshotter::stop_timeout`] gave up waiting; the thread finishes on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopTimedOut {
    /// How long the stop waited.
    pub waited: Duration,
}

impl std::fmt::Display for StopTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the snapshotter did not stop within {:?} (a sink is still running)",
            self.waited
        )
    }
}

impl std::error::Error for StopTimedOut {}

/// Tells `stop_timeout` the thread ended, however it ended.
struct FinishOnDrop<'a>(&'a StopSignal);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        *self
            .0
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.0.done.notify_all();
    }
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
    /// does not drift with the snapshot's own cost. A period too long for the clock
    /// (`Duration::MAX`) means no periodic snapshot: only the final one, at the stop.
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
    ///
    /// # Panics
    ///
    /// When the system cannot create a thread (out of memory, or of the process's thread
    /// limit); [`try_spawn`](Self::try_spawn) returns that error instead.
    pub fn spawn(self, metrics: &Arc<AtomicMetrics>) -> Snapshotter {
        self.try_spawn(metrics)
            .expect("failed to spawn the snapshotter thread")
    }

    /// Starts the thread, or returns the system's error when it cannot create one; the
    /// engine is untouched then, and the sinks are dropped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use taskmeter::{AtomicMetrics, SnapshotterBuilder};
    ///
    /// let metrics = Arc::new(AtomicMetrics::new());
    /// match SnapshotterBuilder::new(Duration::from_secs(15)).try_spawn(&metrics) {
    ///     Ok(snapshotter) => snapshotter.stop(),
    ///     // Scrapes still take their own snapshots (`Endpoint`'s `max_snapshot_age`).
    ///     Err(error) => eprintln!("no snapshotter: {error}"),
    /// }
    /// ```
    pub fn try_spawn(self, metrics: &Arc<AtomicMetrics>) -> std::io::Result<Snapshotter> {
        let stop = Arc::new(StopSignal::default());
        let engine = Arc::downgrade(metrics);
        let thread_stop = Arc::clone(&stop);
        let SnapshotterBuilder { period, mut sinks } = self;
        let thread = std::thread::Builder::new()
            .name("taskmeter-snapshotter".into())
            .spawn(move || {
                let _finish = FinishOnDrop(&thread_stop);
                run(&engine, &thread_stop, period, &mut sinks);
            })?;
        Ok(Snapshotter {
            stop,
            thread: Some(thread),
        })
    }
}

impl AtomicMetrics {
    /// Starts a thread that calls [`snapshot`](Self::snapshot) every `period`, with no sinks;
    /// see [`SnapshotterBuilder`] for sinks.
    ///
    /// # Panics
    ///
    /// When the system cannot create a thread: see [`SnapshotterBuilder::try_spawn`].
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
    // Saturating: `None` is a tick beyond the clock's range, which never comes.
    let mut next_tick = Instant::now().checked_add(period);
    loop {
        let stopped = stop.wait_until(next_tick);
        let Some(metrics) = engine.upgrade() else {
            return;
        };
        let taken = catch_unwind(AssertUnwindSafe(|| metrics.snapshot()));
        let Ok(snapshot) = taken else {
            // The panic hook has printed the payload; the engine keeps what the snapshot had
            // switched and drained for the next one.
            tracing::error!("taskmeter: a snapshot panicked; the next tick takes another");
            metrics.count_snapshot_failure();
            if stopped {
                // One more try, so that the stop still leaves a final snapshot.
                let _ = catch_unwind(AssertUnwindSafe(|| metrics.snapshot()));
                return;
            }
            next_tick = schedule_after(next_tick, period);
            continue;
        };
        for sink in sinks.iter_mut() {
            let outcome = catch_unwind(AssertUnwindSafe(|| sink.publish(&snapshot)));
            let failure = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => format!("failed: {error}"),
                // The panic hook has printed the payload already.
                Err(_) => "panicked".to_owned(),
            };
            tracing::warn!(
                sink = sink.name(),
                snapshot = snapshot.sequence(),
                "taskmeter: snapshot sink {failure}"
            );
            metrics.count_sink_failure();
        }
        drop(metrics);
        if stopped {
            return;
        }
        next_tick = schedule_after(next_tick, period);
    }
}

/// The tick after `tick`. After a stall (a suspended process, a slow sink), missed ticks are
/// skipped instead of fired back to back.
fn schedule_after(tick: Option<Instant>, period: Duration) -> Option<Instant> {
    let next = tick?.checked_add(period)?;
    let now = Instant::now();
    if next < now {
        now.checked_add(period)
    } else {
        Some(next)
    }
}

impl StopSignal {
    /// Sleeps until `deadline` (`None`: never) or a stop; returns whether stopped.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopped {
                return true;
            }
            let Some(deadline) = deadline else {
                stopped = self
                    .wake
                    .wait(stopped)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
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
    /// Stops the thread after one final snapshot, and waits for it, sinks included.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    /// Like [`stop`](Self::stop), waiting at most `timeout` for the final snapshot and its
    /// sinks. On timeout the thread is left to finish on its own (it still takes the final
    /// snapshot and calls the sinks), and the error says how long the stop waited.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use taskmeter::AtomicMetrics;
    ///
    /// let metrics = Arc::new(AtomicMetrics::new());
    /// let snapshotter = metrics.spawn_snapshotter(Duration::from_secs(1));
    /// snapshotter.stop_timeout(Duration::from_secs(5)).expect("no slow sink here");
    /// ```
    pub fn stop_timeout(mut self, timeout: Duration) -> Result<(), StopTimedOut> {
        self.request_stop();
        let began = Instant::now();
        let deadline = began.checked_add(timeout);
        let mut finished = self
            .stop
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !*finished {
            let now = Instant::now();
            let left = match deadline {
                Some(deadline) if now >= deadline => {
                    // Detached: dropping the handle does not join.
                    self.thread = None;
                    return Err(StopTimedOut {
                        waited: now - began,
                    });
                }
                Some(deadline) => deadline - now,
                None => Duration::from_secs(3600),
            };
            finished = self
                .stop
                .done
                .wait_timeout(finished, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(finished);
        self.stop_and_join();
        Ok(())
    }

    fn request_stop(&self) {
        *self
            .stop
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.wake.notify_all();
    }

    fn stop_and_join(&mut self) {
        self.request_stop();
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::reader::{Step, faults};
    use crate::{MetricsBackend, RunnerType, TaskOutcome};

    #[test]
    fn a_snapshot_that_panics_is_counted_and_the_snapshotter_goes_on() {
        // A small layout and few tasks, so that Miri runs it too.
        let metrics = Arc::new(
            AtomicMetrics::builder()
                .stripes(3)
                .significant_digits(1)
                .highest_duration_ms(100)
                .build()
                .unwrap(),
        );
        for _ in 0..1_000 {
            metrics.record_task_started(RunnerType::Wasm);
            metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 4);
        }
        assert_eq!(metrics.snapshot().snapshot_failures(), 0);
        faults::panic_at(metrics.recording.id(), Step::OneDrained);
        let snapshotter = metrics.spawn_snapshotter(Duration::from_millis(1));
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.latest().sequence() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        snapshotter.stop();
        let last = metrics.latest();
        assert!(
            last.sequence() >= 3,
            "the snapshotter stopped after a panic"
        );
        assert_eq!(last.snapshot_failures(), 1);
        let view = last.cumulative();
        assert_eq!(
            view.completed(RunnerType::Wasm, TaskOutcome::Success),
            1_000
        );
        assert_eq!(
            view.duration_sum_ms(RunnerType::Wasm, TaskOutcome::Success),
            4_000
        );
        assert_eq!(view.started(RunnerType::Wasm), 1_000);
    }
}
