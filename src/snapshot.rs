//! Snapshots: immutable, consistent views of everything recorded, built by the reader and
//! published for exporters and dashboards.
//!
//! A [`Snapshot`] carries three [`View`]s: `cumulative` (everything since the engine was
//! created), `interval` (everything since the previous snapshot) and `window` (the intervals
//! of the last [`Builder::window`](crate::Builder::window), see [`crate::window`]). The interval of snapshot
//! `n` is exactly what the reader drained from the stripes for it; the cumulative view is the
//! previous cumulative view plus that interval, so the intervals of successive snapshots always
//! add up to the cumulative view, and a cumulative value never decreases.

mod durations;
mod view;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::contract::RunnerType;

pub use durations::{DurationCounts, SlotCount};
pub(crate) use view::DrainedLabel;
pub use view::{SOLTI_BUCKETS_SECONDS, View};

/// A consistent picture of an engine at one moment: immutable, shared through `Arc`.
///
/// Cheap to keep: a snapshot shares every view, label and block of counts that did not change
/// with the snapshot before it, so one taken when nothing was recorded allocates a few hundred
/// bytes, and each costs the blocks of slots written since.
///
/// Guarantees, for every snapshot, even one taken while writers run:
/// - per `(runner, outcome)`, the histogram, the completed count, the sum and the clamped count
///   describe the same set of completions (each completion is in exactly one interval);
/// - `in_flight(runner)` is never negative, as long as every task's `record_task_started`
///   happens before its `record_task_completed`;
/// - cumulative values never decrease from one snapshot to the next, and the interval views of
///   all snapshots add up to the latest cumulative view.
///
/// A snapshot waits only a bounded time for writers inside a call
/// ([`Builder::max_snapshot_wait`](crate::Builder::max_snapshot_wait)): the calls of a writer
/// still inside then go into a later snapshot, whole, and
/// [`carried_stripes`](Self::carried_stripes) says how many stripes were left for later.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) sequence: u64,
    pub(crate) taken_at: SystemTime,
    /// When it was taken by the monotonic clock: what its age is measured from.
    pub(crate) taken_at_monotonic: Instant,
    pub(crate) elapsed: Duration,
    /// The views, shared with the previous snapshot when they did not change.
    pub(crate) cumulative: Arc<View>,
    pub(crate) interval: Arc<View>,
    pub(crate) window: WindowView,
    /// Per runner, started tasks taken out of in-flight (see `Recording::untrack`).
    pub(crate) untracked: [i64; RunnerType::COUNT],
    /// What a `solti::TaskvisorMetrics` counted, when one is attached.
    #[cfg(all(feature = "solti", not(loom)))]
    pub(crate) taskvisor: Option<crate::solti::TaskvisorFigures>,
    pub(crate) sink_failures: u64,
    pub(crate) snapshot_failures: u64,
    pub(crate) carried_stripes: usize,
}

impl Snapshot {
    /// Snapshot sink calls that returned an error or panicked, up to the previous snapshot's
    /// sinks (a sink runs after the snapshot it is given is published).
    pub fn sink_failures(&self) -> u64 {
        self.sink_failures
    }

    /// Snapshots a [`Snapshotter`](crate::Snapshotter) tried to take and that panicked, up to
    /// this one. The snapshotter goes on at its next tick, and the snapshot after a failed
    /// one holds everything the failed one would have (see [`AtomicMetrics::snapshot`]).
    ///
    /// [`AtomicMetrics::snapshot`]: crate::AtomicMetrics::snapshot
    pub fn snapshot_failures(&self) -> u64 {
        self.snapshot_failures
    }

    /// Stripes this snapshot left undrained because a writer was still inside a call when its
    /// wait ended: their calls since the stripe's switch appear in a later snapshot. Zero when
    /// everything recorded before the snapshot began is in it.
    pub fn carried_stripes(&self) -> usize {
        self.carried_stripes
    }

    /// 0 for the empty snapshot an engine starts with, then 1, 2, … in publication order.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Wall-clock time the snapshot was taken.
    pub fn taken_at(&self) -> SystemTime {
        self.taken_at
    }

    /// How long ago the snapshot was taken, by the monotonic clock: a wall clock set back or
    /// forward does not change it. What an [`Endpoint`](crate::export::Endpoint) compares
    /// with its `max_snapshot_age`.
    pub fn age(&self) -> Duration {
        Instant::now().saturating_duration_since(self.taken_at_monotonic)
    }

    /// Time since the previous snapshot, by the monotonic clock: never negative, even when the
    /// wall clock is set back. Zero for sequence 0.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Tasks of `runner` started and not yet completed: cumulative started minus every
    /// completion of that runner (and minus the attempts an integration lost track of, see
    /// `solti::TaskvisorMetrics`). Negative only if completions were recorded without their
    /// start.
    pub fn in_flight(&self, runner: RunnerType) -> i64 {
        let started = i128::from(self.cumulative.started(runner));
        let completed = i128::from(self.cumulative.completed_all(runner));
        let untracked = i128::from(self.untracked[runner.index()]);
        let in_flight = started - completed - untracked;
        i64::try_from(in_flight).unwrap_or(if in_flight > 0 { i64::MAX } else { i64::MIN })
    }

    /// Everything recorded since the engine was created, up to this snapshot.
    pub fn cumulative(&self) -> &View {
        &self.cumulative
    }

    /// Everything recorded since the previous snapshot.
    pub fn interval(&self) -> &View {
        &self.interval
    }

    /// What the snapshots of the last [`Builder::window`](crate::Builder::window) recorded:
    /// the sum of their intervals, this one's included. It covers at least three quarters of
    /// the window and at most all of it (see [`WINDOW_AGE_BUCKETS`](crate::WINDOW_AGE_BUCKETS));
    /// an interval is in the window whole or not at all, so a snapshot interval longer than the
    /// window leaves only the latest interval in it.
    ///
    /// The exports' HDR summary reads its quantiles here by default, so that they follow a
    /// regression within one window rather than being averaged into the whole run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
    ///
    /// let metrics = AtomicMetrics::builder().window(Duration::from_millis(40)).build().unwrap();
    /// let (runner, outcome) = (RunnerType::Wasm, TaskOutcome::Success);
    /// for _ in 0..1_000 {
    ///     metrics.record_task_completed(runner, outcome, 10);
    /// }
    /// metrics.snapshot();
    /// std::thread::sleep(Duration::from_millis(50)); // the window moves on
    /// for _ in 0..10 {
    ///     metrics.record_task_completed(runner, outcome, 5_000);
    /// }
    /// let snapshot = metrics.snapshot();
    /// assert_eq!(snapshot.cumulative().duration(runner, outcome).value_at_quantile(0.99), 10);
    /// assert_eq!(snapshot.window().completed(runner, outcome), 10);
    /// assert!(snapshot.window().duration(runner, outcome).value_at_quantile(0.99) >= 5_000);
    /// ```
    ///
    /// The view is computed on the first call (the cumulative view less the oldest age
    /// bucket's start: the blocks of counts that changed within the window), and kept with
    /// the snapshot. The reader computes it with the snapshot instead, for the cost of the
    /// interval's blocks, when the previous snapshot's window was read and no age bucket
    /// rolled since: an exporter that reads every window pays no more than that between
    /// rolls, and one that reads none (the solti families) pays nothing for it.
    pub fn window(&self) -> &View {
        self.window.get(&self.cumulative)
    }

    /// Bytes this snapshot references, each allocation once: itself, and its three views
    /// with their duration counts (blocks, and the histograms [`View::duration`] built) and
    /// labelled counts; not the tables they share with the engine (the HDR slots' default
    /// buckets and the custom-label names). The empty view that a snapshot with nothing new
    /// uses as its interval is the engine's, and is counted too.
    ///
    /// The window's view is counted once computed, and the earlier cumulative view it is
    /// computed from (the start of the window's oldest age bucket) when that holds counts.
    ///
    /// Views, labels and blocks are shared between the views of one snapshot and with the
    /// snapshots before and after it, as long as they hold the same counts: the figure is
    /// what this snapshot would hold alone, what dropping the last reference to it frees,
    /// and it follows the blocks of slots ever written, not the size of the layout.
    pub fn memory_bytes(&self) -> usize {
        let mut seen = durations::Allocations::default();
        seen.bytes = std::mem::size_of::<Self>();
        // The window's start is an earlier cumulative view, which the snapshot keeps alive once
        // the engine's age buckets moved past it; it holds no count in an engine younger than
        // its window, when it is the engine's empty view.
        let start = Some(&self.window.start).filter(|start| !start.is_empty());
        let views = [
            Some(&self.cumulative),
            Some(&self.interval),
            self.window.computed(),
            start,
        ];
        for view in views.into_iter().flatten() {
            if seen.first(Arc::as_ptr(view)) {
                seen.bytes += durations::arc_allocation::<View>();
                view.count_memory(&mut seen);
            }
        }
        seen.bytes
    }
}

/// A snapshot's window view: the cumulative view less `start`, the cumulative view when the
/// oldest age bucket began (see [`crate::window`]), computed by the reader with the snapshot
/// or on first read.
pub(crate) struct WindowView {
    start: Arc<View>,
    view: OnceLock<Arc<View>>,
    /// Whether [`Snapshot::window`] was called: the reader computes the next window with its
    /// snapshot only then, so that one read does not commit every later snapshot to it.
    read: AtomicBool,
}

impl Clone for WindowView {
    fn clone(&self) -> Self {
        WindowView {
            start: Arc::clone(&self.start),
            view: self.view.clone(),
            read: AtomicBool::new(self.read.load(Ordering::Relaxed)),
        }
    }
}

impl WindowView {
    /// The window from `start`, with its view when the reader computed it.
    pub(crate) fn new(start: Arc<View>, view: Option<Arc<View>>) -> Self {
        let cell = OnceLock::new();
        if let Some(view) = view {
            let _ = cell.set(view);
        }
        WindowView {
            start,
            view: cell,
            read: AtomicBool::new(false),
        }
    }

    /// The cumulative view the window is computed from.
    pub(crate) fn start(&self) -> &Arc<View> {
        &self.start
    }

    /// The view, if computed.
    pub(crate) fn computed(&self) -> Option<&Arc<View>> {
        self.view.get()
    }

    /// The view, if somebody read it.
    pub(crate) fn read(&self) -> Option<&Arc<View>> {
        // Relaxed: a hint for the next snapshot's work, never a count.
        self.read
            .load(Ordering::Relaxed)
            .then(|| self.view.get())
            .flatten()
    }

    /// The view, computed now from `cumulative` if it was not.
    fn get(&self, cumulative: &Arc<View>) -> &View {
        self.read.store(true, Ordering::Relaxed);
        self.view
            .get_or_init(|| Arc::new(View::difference(cumulative, &self.start)))
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("sequence", &self.sequence)
            .field("taken_at", &self.taken_at)
            .field("elapsed", &self.elapsed)
            .field("sink_failures", &self.sink_failures)
            .field("snapshot_failures", &self.snapshot_failures)
            .field("carried_stripes", &self.carried_stripes)
            .field("cumulative", &self.cumulative)
            .field("interval", &self.interval)
            .field("window", &self.window.computed())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod model_tests;
#[cfg(all(test, not(loom)))]
mod tests;
