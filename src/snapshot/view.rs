//! [`View`]: counts and duration histograms over one span of time.

use std::fmt;
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::durations::{Allocations, DurationCounts, arc_allocation};
use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::layout::{
    COMPLETION_LABELS, ERROR_LABELS, HdrLayout, LabelGrid, completion_label, error_label,
};

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

/// What the reader drained for one completion label: plain data, handed over by the reader.
pub(crate) struct DrainedLabel<'a> {
    pub(crate) label: usize,
    pub(crate) sum: u128,
    pub(crate) clamped: u64,
    /// `(slot, count)` of every non-zero slot, in slot order.
    pub(crate) slots: &'a [(u32, u64)],
}

/// Counts and duration histograms over one span of time; part of a [`Snapshot`](crate::Snapshot).
///
/// For every `(runner, outcome)`, `completed` is the number of values in `duration`, and
/// `duration_sum_ms` is the exact sum of the same completions' true durations.
///
/// A view's duration counts are [`DurationCounts`]: blocks of slots shared with the other
/// views and snapshots that hold the same counts, and the intervals' slot lists added on top
/// of them until something reads them by block, so that a view costs what changed, not the
/// size of the HDR layout. Cloning a view shares them.
#[derive(Clone)]
pub struct View {
    pub(crate) started: [u64; RunnerType::COUNT],
    pub(crate) errors: [u64; ERROR_LABELS],
    pub(crate) durations: [Arc<DurationCounts>; COMPLETION_LABELS],
    /// Per label, its completions in each of the default (solti) buckets, not cumulative;
    /// those above the last bound are the rest. Kept as the reader drains, so that the default
    /// exposition reads 15 numbers per label.
    pub(crate) solti_buckets: [[u64; SOLTI_BUCKETS_SECONDS.len()]; COMPLETION_LABELS],
    /// Per HDR slot, its default bucket: shared by every view of one engine.
    solti_bucket_of_slot: Arc<[u8]>,
    pub(crate) layout: HdrLayout,
    pub(crate) sums: [u128; COMPLETION_LABELS],
    pub(crate) clamped: [u64; COMPLETION_LABELS],
    /// Errors with a custom label, one count per cell of the engine's grid (shared between
    /// views while unchanged), and the table that names the cells.
    pub(crate) labelled: Arc<Vec<u64>>,
    pub(crate) labelled_overflows: u64,
    labelled_names: Arc<dyn LabelGrid>,
}

impl View {
    /// The most bytes one view can hold, every block of `layout` written in every label, with
    /// a grid of `labelled_cells` custom-label counts: see
    /// [`DurationCounts::worst_case_bytes`]. The tables every view of an engine shares are not
    /// counted.
    pub(crate) fn worst_case_bytes(layout: &HdrLayout, labelled_cells: usize) -> usize {
        let arc = 2 * std::mem::size_of::<usize>();
        std::mem::size_of::<Self>()
            + arc
            + COMPLETION_LABELS * DurationCounts::worst_case_bytes(layout)
            + arc
            + std::mem::size_of::<Vec<u64>>()
            + labelled_cells * std::mem::size_of::<u64>()
    }

    pub(crate) fn empty(layout: &HdrLayout, labelled: &Arc<dyn LabelGrid>) -> Self {
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

    /// `cumulative` less `start`, an earlier cumulative view of the same engine: blocks the
    /// two share are dropped unread.
    pub(crate) fn difference(cumulative: &Arc<View>, start: &Arc<View>) -> Self {
        if Arc::ptr_eq(cumulative, start) {
            return View::empty_like(cumulative);
        }
        let mut difference = View::clone(cumulative);
        difference.subtract(start);
        difference
    }

    fn with_tables(
        layout: &HdrLayout,
        solti_bucket_of_slot: Arc<[u8]>,
        labelled_names: Arc<dyn LabelGrid>,
    ) -> Self {
        let none = Arc::new(DurationCounts::empty(*layout));
        View {
            labelled: Arc::new(vec![0; labelled_names.cells()]),
            labelled_overflows: 0,
            labelled_names,
            solti_bucket_of_slot,
            started: [0; RunnerType::COUNT],
            errors: [0; ERROR_LABELS],
            durations: std::array::from_fn(|_| Arc::clone(&none)),
            solti_buckets: [[0; SOLTI_BUCKETS_SECONDS.len()]; COMPLETION_LABELS],
            layout: *layout,
            sums: [0; COMPLETION_LABELS],
            clamped: [0; COMPLETION_LABELS],
        }
    }

    /// Whether this view counts nothing at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.started.iter().all(|&n| n == 0)
            && self.errors.iter().all(|&n| n == 0)
            && self.durations.iter().all(|d| d.is_empty())
            && self.labelled_overflows == 0
            && self.labelled.iter().all(|&n| n == 0)
    }

    /// Adds what the reader drained from one stripe for one label.
    pub(crate) fn add_drained(&mut self, drained: DrainedLabel<'_>) {
        let label = drained.label;
        self.sums[label] = self.sums[label].saturating_add(drained.sum);
        self.clamped[label] += drained.clamped;
        for &(slot, count) in drained.slots {
            let solti_bucket = usize::from(self.solti_bucket_of_slot[slot as usize]);
            if let Some(bucket) = self.solti_buckets[label].get_mut(solti_bucket) {
                *bucket += count;
            }
        }
        Arc::make_mut(&mut self.durations[label]).add_loose(drained.slots);
    }

    /// Settles the loose counts the cut added (see `DurationCounts::settle`): before the view
    /// is published.
    pub(crate) fn settle(&mut self) {
        for counts in &mut self.durations {
            if counts.is_unsettled() {
                Arc::make_mut(counts).settle();
            }
        }
    }

    /// Tasks started on `runner`.
    pub fn started(&self, runner: RunnerType) -> u64 {
        self.started[runner.index()]
    }

    /// Tasks of `runner` completed with `outcome`: always `duration(runner, outcome).len()`,
    /// read from a stored total.
    pub fn completed(&self, runner: RunnerType, outcome: TaskOutcome) -> u64 {
        self.duration_counts(runner, outcome).len()
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
    ///
    /// Built from [`duration_counts`](Self::duration_counts) on first call and kept with them
    /// (144 KiB at the defaults), shared by the snapshots whose counts did not change:
    /// exports read the sparse counts instead.
    pub fn duration(&self, runner: RunnerType, outcome: TaskOutcome) -> &Histogram<u64> {
        self.duration_counts(runner, outcome).histogram()
    }

    /// The same durations as [`duration`](Self::duration), as the non-empty slots of the HDR
    /// layout: quantiles, bucket counts and slots without building a histogram.
    pub fn duration_counts(&self, runner: RunnerType, outcome: TaskOutcome) -> &DurationCounts {
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
        let cells = self
            .labelled
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0);
        let mut pairs: Vec<(&str, &str, u64)> = cells
            .filter_map(|(cell, &count)| {
                let (runner, kind) = self.labelled_names.labels_of(cell)?;
                Some((runner, kind, count))
            })
            .collect();
        if self.labelled_names.names_may_repeat() {
            // One series per pair of names: the cells of a name added twice are summed into
            // its first.
            let mut merged: Vec<(&str, &str, u64)> = Vec::with_capacity(pairs.len());
            for (runner, kind, count) in pairs {
                match merged
                    .iter_mut()
                    .find(|(r, k, _)| (*r, *k) == (runner, kind))
                {
                    Some(first) => first.2 += count,
                    None => merged.push((runner, kind, count)),
                }
            }
            pairs = merged;
        }
        pairs.into_iter()
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

    /// Adds `other` to this view. Both come from one engine, so the layouts agree. A label
    /// `other` left empty is not touched; blocks this view lacks are shared with `other`.
    pub(crate) fn add(&mut self, other: &View) {
        self.add_tallies(other);
        for (mine, theirs) in self.durations.iter_mut().zip(&other.durations) {
            add_durations(mine, theirs);
        }
    }

    /// Adds everything of `other` but its duration counts.
    fn add_tallies(&mut self, other: &View) {
        for (mine, theirs) in self.started.iter_mut().zip(other.started) {
            *mine += theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
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
        if other.labelled.iter().any(|&count| count != 0) {
            let labelled = Arc::make_mut(&mut self.labelled);
            for (mine, theirs) in labelled.iter_mut().zip(other.labelled.iter()) {
                *mine += theirs;
            }
        }
        self.labelled_overflows += other.labelled_overflows;
    }

    /// Adds `interval` to this view, which is `before − start` for the cumulative view
    /// `before` that `interval` brought to `after`: a label that `start` had no count in is
    /// then `after`'s, and is shared with it instead of being added to.
    pub(crate) fn add_since(&mut self, interval: &View, after: &View, start: &View) {
        self.add_tallies(interval);
        for (label, mine) in self.durations.iter_mut().enumerate() {
            if start.durations[label].is_empty() {
                *mine = Arc::clone(&after.durations[label]);
            } else {
                add_durations(mine, &interval.durations[label]);
            }
        }
    }

    /// Subtracts `older` from this view, which holds it: a later cumulative view minus an
    /// earlier one. What the two share (a label, a block, the labelled counts) is dropped
    /// without being read.
    pub(crate) fn subtract(&mut self, older: &View) {
        for (mine, theirs) in self.started.iter_mut().zip(older.started) {
            *mine -= theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(older.errors) {
            *mine -= theirs;
        }
        for (mine, theirs) in self.durations.iter_mut().zip(&older.durations) {
            if theirs.is_empty() {
                continue;
            }
            if Arc::ptr_eq(mine, theirs) {
                *mine = Arc::new(DurationCounts::empty(self.layout));
            } else if let Some(since) = mine.lists_since(theirs) {
                // The intervals since `older`, still pending on the same blocks.
                *mine = Arc::new(since);
            } else {
                // Folded where the later view keeps them, not in this difference alone.
                mine.fold();
                Arc::make_mut(mine).subtract(theirs);
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
        if Arc::ptr_eq(&self.labelled, &older.labelled) {
            self.labelled = Arc::new(vec![0; older.labelled.len()]);
        } else if older.labelled.iter().any(|&count| count != 0) {
            let labelled = Arc::make_mut(&mut self.labelled);
            for (mine, theirs) in labelled.iter_mut().zip(older.labelled.iter()) {
                *mine -= theirs;
            }
        }
        self.labelled_overflows -= older.labelled_overflows;
    }

    /// Adds to `seen` the bytes of the allocations this view references that `seen` has not
    /// counted yet: itself (when behind `Arc`, its allocation is counted by the caller), its
    /// label counts with their blocks and built histograms, and its labelled counts. The
    /// tables it shares with the engine are not counted.
    pub(crate) fn count_memory(&self, seen: &mut Allocations) {
        for counts in &self.durations {
            if seen.first(Arc::as_ptr(counts)) {
                seen.bytes +=
                    arc_allocation::<DurationCounts>() - std::mem::size_of::<DurationCounts>();
                counts.count_memory(seen);
            }
        }
        if seen.first(Arc::as_ptr(&self.labelled)) {
            seen.bytes += arc_allocation::<Vec<u64>>()
                + self.labelled.capacity() * std::mem::size_of::<u64>();
        }
    }
}

/// Adds `theirs` to `mine`: shared whole when `mine` is empty, copied on write otherwise.
fn add_durations(mine: &mut Arc<DurationCounts>, theirs: &Arc<DurationCounts>) {
    if theirs.is_empty() {
        return;
    }
    if mine.is_empty() {
        *mine = Arc::clone(theirs);
    } else {
        Arc::make_mut(mine).add(theirs);
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed: Vec<u64> = self.durations.iter().map(|d| d.len()).collect();
        f.debug_struct("View")
            .field("started", &self.started)
            .field("completed", &completed)
            .field("errors", &self.errors)
            .field("clamped", &self.clamped)
            .finish_non_exhaustive()
    }
}
