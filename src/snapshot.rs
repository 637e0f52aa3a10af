//! Snapshots: immutable, consistent views of everything recorded, built by the reader and
//! published for exporters and dashboards.
//!
//! A [`Snapshot`] carries three [`View`]s: `cumulative` (everything since the engine was
//! created), `interval` (everything since the previous snapshot) and `window` (the intervals
//! of the last [`Builder::window`](crate::Builder::window), see [`crate::window`]). The interval of snapshot
//! `n` is exactly what the reader drained from the stripes for it; the cumulative view is the
//! previous cumulative view plus that interval, so the intervals of successive snapshots always
//! add up to the cumulative view, and a cumulative value never decreases.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::layout::{COMPLETION_LABELS, ERROR_LABELS, HdrLayout, completion_label, error_label};
use crate::recording::counts::Drained;
use crate::recording::labelled::LabelledErrors;

/// Histogram buckets of `solti-prometheus` 0.0.2, in seconds: the default of the exports, so
/// that dashboards built on it keep working.
pub const SOLTI_BUCKETS_SECONDS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// For each HDR slot of `layout`, the first of [`SOLTI_BUCKETS_SECONDS`] it counts in (its
/// lowest value is at most the bound, in whole ms), or `SOLTI_BUCKETS_SECONDS.len()` when it
/// is above them all.
fn solti_bucket_of_slots(layout: &HdrLayout) -> Arc<[u8]> {
    let bounds_ms = SOLTI_BUCKETS_SECONDS.map(|bound| (bound * 1e3).floor() as u64);
    (0..layout.len())
        .map(|slot| {
            let lowest = layout.value_at(slot);
            bounds_ms.partition_point(|&bound| bound < lowest) as u8
        })
        .collect()
}

/// Counts and duration histograms over one span of time; part of a [`Snapshot`].
///
/// For every `(runner, outcome)`, `completed` is the number of values in `duration`, and
/// `duration_sum_ms` is the exact sum of the same completions' true durations.
#[derive(Clone)]
pub struct View {
    pub(crate) started: [u64; RunnerType::COUNT],
    pub(crate) errors: [u64; ERROR_LABELS],
    pub(crate) durations: Vec<Histogram<u64>>,
    /// Per histogram, its completions in each of the default (solti) buckets, not cumulative;
    /// those above the last bound are the rest. Kept by the reader as it drains, so that the
    /// default exposition reads 15 numbers instead of scanning 18,432 slots.
    pub(crate) solti_buckets: [[u64; SOLTI_BUCKETS_SECONDS.len()]; COMPLETION_LABELS],
    /// Per HDR slot, its default bucket: shared by every view of one engine.
    solti_bucket_of_slot: Arc<[u8]>,
    pub(crate) layout: HdrLayout,
    pub(crate) sums: [u128; COMPLETION_LABELS],
    pub(crate) clamped: [u64; COMPLETION_LABELS],
    /// Errors with a custom label, one count per cell of the engine's grid, and the table that
    /// names the cells.
    pub(crate) labelled: Vec<u64>,
    pub(crate) labelled_overflows: u64,
    labelled_names: Arc<LabelledErrors>,
}

impl View {
    pub(crate) fn empty(layout: &HdrLayout, labelled: &Arc<LabelledErrors>) -> Self {
        Self::with_tables(layout, solti_bucket_of_slots(layout), Arc::clone(labelled))
    }

    /// An empty view of the same engine as `other`.
    pub(crate) fn empty_like(other: &View) -> Self {
        Self::with_tables(
            &other.layout,
            Arc::clone(&other.solti_bucket_of_slot),
            Arc::clone(&other.labelled_names),
        )
    }

    fn with_tables(
        layout: &HdrLayout,
        solti_bucket_of_slot: Arc<[u8]>,
        labelled_names: Arc<LabelledErrors>,
    ) -> Self {
        View {
            labelled: vec![0; labelled_names.cells()],
            labelled_overflows: 0,
            labelled_names,
            solti_bucket_of_slot,
            started: [0; RunnerType::COUNT],
            errors: [0; ERROR_LABELS],
            durations: (0..COMPLETION_LABELS)
                .map(|_| layout.empty_histogram())
                .collect(),
            solti_buckets: [[0; SOLTI_BUCKETS_SECONDS.len()]; COMPLETION_LABELS],
            layout: *layout,
            sums: [0; COMPLETION_LABELS],
            clamped: [0; COMPLETION_LABELS],
        }
    }

    /// Adds what the reader drained from one stripe for one label.
    pub(crate) fn add_drained(&mut self, drained: Drained<'_>) {
        let label = drained.label;
        self.sums[label] = self.sums[label].saturating_add(drained.sum);
        self.clamped[label] += drained.clamped;
        for &(slot, count) in drained.slots {
            let slot = slot as usize;
            let solti_bucket = usize::from(self.solti_bucket_of_slot[slot]);
            if let Some(bucket) = self.solti_buckets[label].get_mut(solti_bucket) {
                *bucket += count;
            }
            self.durations[label]
                .record_n(self.layout.value_at(slot), count)
                .expect("a slot's value lies within the layout's range");
        }
    }

    /// Tasks started on `runner`.
    pub fn started(&self, runner: RunnerType) -> u64 {
        self.started[runner.index()]
    }

    /// Tasks of `runner` completed with `outcome`: always `duration(runner, outcome).len()`.
    pub fn completed(&self, runner: RunnerType, outcome: TaskOutcome) -> u64 {
        self.duration(runner, outcome).len()
    }

    /// Tasks of `runner` completed, whatever the outcome.
    pub fn completed_all(&self, runner: RunnerType) -> u64 {
        TaskOutcome::ALL
            .iter()
            .map(|&outcome| self.completed(runner, outcome))
            .sum()
    }

    /// Runner errors of `kind` on `runner`.
    pub fn errors(&self, runner: RunnerType, kind: RunnerErrorKind) -> u64 {
        self.errors[error_label(runner, kind)]
    }

    /// The durations, in ms, of the completions counted by [`completed`](Self::completed), at
    /// the engine's HDR precision. Clamped values appear as the top of the range.
    pub fn duration(&self, runner: RunnerType, outcome: TaskOutcome) -> &Histogram<u64> {
        &self.durations[completion_label(runner, outcome)]
    }

    /// The exact sum of the true durations (before clamping), in ms, saturating at
    /// `u64::MAX`.
    pub fn duration_sum_ms(&self, runner: RunnerType, outcome: TaskOutcome) -> u64 {
        let sum = self.sums[completion_label(runner, outcome)];
        u64::try_from(sum).unwrap_or(u64::MAX)
    }

    /// The exact sum of the true durations, in ms, without saturation.
    pub fn duration_sum_ms_exact(&self, runner: RunnerType, outcome: TaskOutcome) -> u128 {
        self.sums[completion_label(runner, outcome)]
    }

    /// Runner errors with at least one custom label (see
    /// [`AtomicMetrics::record_labelled_runner_error`](crate::AtomicMetrics::record_labelled_runner_error)):
    /// `(runner label, error label, count)` for every pair counted in this view.
    pub fn labelled_errors(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.labelled
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .filter_map(|(cell, &count)| {
                let (runner, kind) = self.labelled_names.labels_of(cell)?;
                Some((runner, kind, count))
            })
    }

    /// Runner errors counted under [`OVERFLOW_LABEL`](crate::OVERFLOW_LABEL) because a custom
    /// label table was full.
    pub fn custom_label_overflows(&self) -> u64 {
        self.labelled_overflows
    }

    /// How many of those completions had a duration above the configured
    /// `highest_duration_ms`, and were recorded in the histogram as that value.
    pub fn clamped(&self, runner: RunnerType, outcome: TaskOutcome) -> u64 {
        self.clamped[completion_label(runner, outcome)]
    }

    /// Adds `other` to this view. Both come from one engine, so the layouts agree.
    pub(crate) fn add(&mut self, other: &View) {
        for (mine, theirs) in self.started.iter_mut().zip(other.started) {
            *mine += theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        for (mine, theirs) in self.durations.iter_mut().zip(&other.durations) {
            if !theirs.is_empty() {
                mine.add(theirs)
                    .expect("histograms of one engine share a layout");
            }
        }
        for (mine, theirs) in self.solti_buckets.iter_mut().zip(&other.solti_buckets) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine += theirs;
            }
        }
        for (mine, theirs) in self.sums.iter_mut().zip(other.sums) {
            *mine = mine.saturating_add(theirs);
        }
        for (mine, theirs) in self.clamped.iter_mut().zip(other.clamped) {
            *mine += theirs;
        }
        for (mine, theirs) in self.labelled.iter_mut().zip(&other.labelled) {
            *mine += theirs;
        }
        self.labelled_overflows += other.labelled_overflows;
    }

    /// Subtracts `older` from this view, which holds it: the window losing its oldest age
    /// bucket.
    pub(crate) fn subtract(&mut self, older: &View) {
        for (mine, theirs) in self.started.iter_mut().zip(older.started) {
            *mine -= theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(older.errors) {
            *mine -= theirs;
        }
        for (mine, theirs) in self.durations.iter_mut().zip(&older.durations) {
            if !theirs.is_empty() {
                mine.subtract(theirs)
                    .expect("a view holds every value of the bucket subtracted from it");
            }
        }
        for (mine, theirs) in self.solti_buckets.iter_mut().zip(&older.solti_buckets) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine -= theirs;
            }
        }
        for (mine, theirs) in self.sums.iter_mut().zip(older.sums) {
            *mine -= theirs;
        }
        for (mine, theirs) in self.clamped.iter_mut().zip(older.clamped) {
            *mine -= theirs;
        }
        for (mine, theirs) in self.labelled.iter_mut().zip(&older.labelled) {
            *mine -= theirs;
        }
        self.labelled_overflows -= older.labelled_overflows;
    }

    /// Empties this view, keeping its histograms' storage for reuse.
    pub(crate) fn clear(&mut self) {
        self.started = [0; RunnerType::COUNT];
        self.errors = [0; ERROR_LABELS];
        for histogram in &mut self.durations {
            if !histogram.is_empty() {
                histogram.reset();
            }
        }
        self.solti_buckets = [[0; SOLTI_BUCKETS_SECONDS.len()]; COMPLETION_LABELS];
        self.sums = [0; COMPLETION_LABELS];
        self.clamped = [0; COMPLETION_LABELS];
        self.labelled.fill(0);
        self.labelled_overflows = 0;
    }

    /// Makes this view a copy of `other`, reusing this view's storage: a `memcpy` per
    /// histogram where `clone` would allocate (and page-fault) 144 KiB each.
    pub(crate) fn copy_from(&mut self, other: &View) {
        self.clear();
        self.add(other);
    }

    /// Bytes this view holds: itself, its histograms and their counts, and its labelled
    /// counts (the tables it shares with the engine's other views are not counted).
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.durations.capacity() * std::mem::size_of::<Histogram<u64>>()
            + self
                .durations
                .iter()
                .map(|h| h.distinct_values() * std::mem::size_of::<u64>())
                .sum::<usize>()
            + self.labelled.capacity() * std::mem::size_of::<u64>()
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed: Vec<u64> = self.durations.iter().map(Histogram::len).collect();
        f.debug_struct("View")
            .field("started", &self.started)
            .field("completed", &completed)
            .field("errors", &self.errors)
            .field("clamped", &self.clamped)
            .finish_non_exhaustive()
    }
}

/// A consistent picture of an engine at one moment: immutable, shared through `Arc`.
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
    pub(crate) elapsed: Duration,
    pub(crate) cumulative: View,
    pub(crate) interval: View,
    pub(crate) window: View,
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
    pub fn window(&self) -> &View {
        &self.window
    }

    /// Bytes this snapshot holds: itself, and its three views' histograms and labelled counts
    /// (not the tables it shares with the engine).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - 3 * std::mem::size_of::<View>()
            + self.cumulative.memory_bytes()
            + self.interval.memory_bytes()
            + self.window.memory_bytes()
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
            .field("window", &self.window)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};

    /// `tasks` completions with durations spread from 0 ms to past an hour, over every label.
    fn record_spread(metrics: &AtomicMetrics, tasks: u64, seed: u64) {
        for task in 0..tasks {
            let runner = RunnerType::ALL[(task % 3) as usize];
            let outcome = TaskOutcome::ALL[((task + seed) % 4) as usize];
            let duration = ((task * 7_919 + seed * 104_729) % 4_000_000) >> (task % 12);
            metrics.record_task_completed(runner, outcome, duration);
        }
    }

    /// Model comparison: the default buckets kept while draining equal hdrhistogram's count of
    /// the same histogram's slots, in both views, through intervals recorded on several stripes
    /// by several threads and through the reuse of a spare snapshot's storage.
    #[test]
    fn default_buckets_kept_while_draining_equal_a_scan() {
        // Leased and shared stripes both drained; 2 digits keep the slots few enough for Miri.
        for digits in [2, 3] {
            if cfg!(miri) && digits == 3 {
                continue;
            }
            check_default_buckets_kept_while_draining(digits);
        }
    }

    /// Every count of `actual` equals `expected`'s: started, errors, histograms, default
    /// buckets, sums, clamped, labelled errors and their overflow.
    fn assert_same_counts(actual: &super::View, expected: &super::View) {
        assert_eq!(actual.started, expected.started);
        assert_eq!(actual.errors, expected.errors);
        assert!(actual.durations == expected.durations, "histograms differ");
        assert_eq!(actual.solti_buckets, expected.solti_buckets);
        assert_eq!(actual.sums, expected.sums);
        assert_eq!(actual.clamped, expected.clamped);
        assert_eq!(actual.labelled, expected.labelled);
        assert_eq!(actual.labelled_overflows, expected.labelled_overflows);
    }

    /// The window's arithmetic: subtracting a view undoes adding it, in every count, so that
    /// an age bucket leaving the window takes exactly what it brought.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn subtracting_a_view_undoes_adding_it_in_every_count() {
        use crate::{Label, RunnerErrorKind};
        let metrics = AtomicMetrics::builder()
            .custom_labels(1)
            .highest_duration_ms(60_000)
            .build()
            .unwrap();
        let mut intervals = Vec::new();
        for round in 1..=2_u64 {
            for task in 0..50 * round {
                let runner = RunnerType::ALL[(task % 3) as usize];
                metrics.record_task_started(runner);
                // Some above the range, clamped.
                let duration = task * task * 40 * round;
                metrics.record_task_completed(
                    runner,
                    TaskOutcome::ALL[(task % 4) as usize],
                    duration,
                );
                metrics.record_runner_error(runner, RunnerErrorKind::SpawnFailed);
                // One custom label fits; the others overflow.
                let custom = Label::Custom(format!("runner-{}", task % (round + 1)));
                metrics.record_labelled_runner_error(
                    custom,
                    Label::Known(RunnerErrorKind::SpawnFailed),
                );
            }
            intervals.push(metrics.snapshot().interval().clone());
        }
        let [older, newer] = &intervals[..] else {
            unreachable!()
        };
        for view in [older, newer] {
            assert!(view.clamped.iter().sum::<u64>() > 0);
            assert!(view.labelled.iter().sum::<u64>() > 0 && view.labelled_overflows > 0);
            assert!(view.solti_buckets.iter().flatten().sum::<u64>() > 0);
        }
        let mut window = super::View::empty_like(older);
        window.add(older);
        window.add(newer);
        window.subtract(older);
        assert_same_counts(&window, newer);
        window.subtract(newer);
        assert_same_counts(&window, &super::View::empty_like(older));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn in_flight_saturates_at_the_ends_of_i64() {
        let metrics = AtomicMetrics::new();
        let runner = RunnerType::Wasm;
        for _ in 0..2 {
            metrics.record_task_completed(runner, TaskOutcome::Success, 1);
        }
        let mut snapshot = (*metrics.snapshot()).clone();
        let at = runner.index();
        snapshot.cumulative.started[at] = u64::MAX;
        assert_eq!(snapshot.in_flight(runner), i64::MAX);
        snapshot.cumulative.started[at] = 0;
        snapshot.untracked[at] = i64::MAX - 2;
        assert_eq!(
            snapshot.in_flight(runner),
            -i64::MAX,
            "just inside the range"
        );
        snapshot.untracked[at] = i64::MAX;
        assert_eq!(snapshot.in_flight(runner), i64::MIN);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn debug_shows_the_counts_and_the_snapshot_s_place() {
        let metrics = AtomicMetrics::new();
        metrics.record_task_started(RunnerType::Container);
        metrics.record_task_completed(RunnerType::Container, TaskOutcome::Failure, 70_000_000_000);
        metrics.record_runner_error(RunnerType::Wasm, crate::RunnerErrorKind::SpawnFailed);
        metrics.snapshot();
        metrics.record_task_started(RunnerType::Container);
        let snapshot = metrics.snapshot();
        let view = snapshot.cumulative();
        let completed: Vec<u64> = view.durations.iter().map(|h| h.len()).collect();
        let debug = format!("{view:?}");
        for field in [
            format!("started: {:?}", view.started),
            format!("completed: {completed:?}"),
            format!("errors: {:?}", view.errors),
            format!("clamped: {:?}", view.clamped),
        ] {
            assert!(field.contains(['1', '2']), "no count in {field}");
            assert!(debug.contains(&field), "{debug} lacks {field}");
        }
        // The views differ (2 starts in all, 1 in the interval): each is shown as itself.
        let (cumulative, interval) = (format!("{view:?}"), format!("{:?}", snapshot.interval()));
        assert_ne!(cumulative, interval);
        let debug = format!("{snapshot:?}");
        assert!(debug.starts_with("Snapshot { sequence: 2,"), "{debug}");
        assert!(
            debug.contains(&format!("cumulative: {cumulative}")),
            "{debug}"
        );
        assert!(debug.contains(&format!("interval: {interval}")), "{debug}");
    }

    fn check_default_buckets_kept_while_draining(digits: u8) {
        let metrics = AtomicMetrics::builder()
            .stripes(2)
            .significant_digits(digits)
            .build()
            .unwrap();
        let tasks = if cfg!(miri) { 100 } else { 2_000 };
        for round in 0..4_u64 {
            std::thread::scope(|scope| {
                for seed in 0..3 {
                    let metrics = &metrics;
                    scope.spawn(move || record_spread(metrics, tasks, round * 10 + seed));
                }
            });
            let snapshot = metrics.snapshot();
            for view in [snapshot.cumulative(), snapshot.interval()] {
                for (label, histogram) in view.durations.iter().enumerate() {
                    let mut low = 0;
                    for (bucket, bound) in super::SOLTI_BUCKETS_SECONDS.iter().enumerate() {
                        let high = (bound * 1e3).floor() as u64;
                        let scanned = histogram.count_between(low, high);
                        low = histogram.highest_equivalent(high) + 1;
                        let kept = view.solti_buckets[label][bucket];
                        assert_eq!(kept, scanned, "round {round}, label {label}, ≤ {bound} s");
                    }
                }
            }
        }
    }
}
