//! The layout of the recording arrays: which label a call counts under, and which slot of a
//! label's HDR counts array a duration falls in.
//!
//! `hdrhistogram::Histogram::record` needs `&mut self`, so the hot path cannot share one. It
//! keeps arrays of atomic counts instead, laid out slot for slot like
//! `Histogram::<u64>::new_with_bounds(1, highest, significant_digits)`, and the snapshot reader
//! turns them into real histograms. This module is the one place that layout is computed.
//!
//! # The math
//!
//! To keep `d` significant decimal digits, every value below `2 * 10^d` needs a slot of its own
//! (an error of ±1 at 1000 is 0.1 %, at 1999 it would be 0.05 % but at 2000 the slot may
//! be 2 wide). Rounded up to a power of two that is `sub_bucket_count = 2^m` slots with unit
//! width: bucket 0 covers `[0, 2^m)`. Each further bucket `b` doubles the range and the slot width:
//! it covers `[2^(m-1+b), 2^(m+b))` with `2^(m-1)` slots of width `2^b`, the top half of a bucket
//! of `2^m` slots (the bottom half is already covered by the buckets below). So:
//!
//! - `bucket(v) = floor(log2(v | (2^m - 1))) - (m - 1)`: how many doublings above bucket 0;
//!   the mask sends every value of bucket 0 to 0;
//! - `sub(v) = v >> bucket(v)`, in `[2^(m-1), 2^m)` for every bucket but 0;
//! - `index(v) = (bucket(v) + 1) * 2^(m-1) + sub(v) - 2^(m-1) = bucket(v) * 2^(m-1) + sub(v)`,
//!   so bucket 0 takes slots `[0, 2^m)` and bucket `b > 0` takes
//!   `[(b + 1) * 2^(m-1), (b + 2) * 2^(m-1))`;
//! - with `B` buckets needed to reach `highest`, the array has `(B + 1) * 2^(m-1)` slots.
//!
//! At 1 ms to 24 h and 3 digits: `m = 11` (2048 ≥ 2000), `B = 17` (`2048 * 2^16 > 86.4e6`),
//! `18 * 1024 = 18,432` slots, 144 KiB of `u64` per histogram. The lowest discernible value is
//! fixed at 1 ms (hdrhistogram's `unit_magnitude` is then 0, which this module relies on).

use std::num::NonZeroU64;

use hdrhistogram::Histogram;

use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};

/// Labels of a completion: one per `(runner, outcome)`, each with a histogram of its own.
pub(crate) const COMPLETION_LABELS: usize = RunnerType::COUNT * TaskOutcome::COUNT;
/// Labels of an error: one per `(runner, kind)`.
pub(crate) const ERROR_LABELS: usize = RunnerType::COUNT * RunnerErrorKind::COUNT;

/// The array index of a completion's label.
#[inline]
pub(crate) fn completion_label(runner: RunnerType, outcome: TaskOutcome) -> usize {
    runner.index() * TaskOutcome::COUNT + outcome.index()
}

/// The array index of an error's label.
#[inline]
pub(crate) fn error_label(runner: RunnerType, kind: RunnerErrorKind) -> usize {
    runner.index() * RunnerErrorKind::COUNT + kind.index()
}

/// The grid of custom-label error counts: how many cells it has and what each is called.
/// The recording keeps it (custom labels are named as they are first used); snapshots read
/// the names through it when they are exported.
pub(crate) trait LabelGrid: Send + Sync + std::panic::RefUnwindSafe {
    /// Cells in the grid: the length of a view's labelled counts.
    fn cells(&self) -> usize;
    /// The labels of a cell: `(runner, error kind)`, `None` for one not named yet (its count
    /// is then 0).
    fn labels_of(&self, cell: usize) -> Option<(&str, &str)>;
    /// Whether two cells may carry the same labels (two calls added one new label at once):
    /// a view then sums them.
    fn names_may_repeat(&self) -> bool;
}

/// The smallest duration, in ms, that has a slot of its own. 0 ms shares slot 0 with nothing
/// else, as in hdrhistogram.
pub(crate) const LOWEST_DISCERNIBLE_MS: u64 = 1;

/// Slot arithmetic for one `(highest, significant digits)` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HdrLayout {
    highest: u64,
    significant_digits: u8,
    /// `m - 1`: log2 of the slots per bucket above bucket 0.
    half_count_magnitude: u32,
    /// `2^m - 1`: maps every value of bucket 0 to the same logarithm. Non-zero, so that the
    /// compiler knows `v | mask` is too, and `ilog2` needs no check: one `bsr` on x86-64.
    sub_bucket_mask: NonZeroU64,
    len: usize,
}

impl HdrLayout {
    /// The layout of `new_with_bounds(1, highest, significant_digits)`. The caller has checked
    /// `2 <= highest <= i64::MAX` and `1 <= significant_digits <= 5`.
    pub(crate) fn new(highest: u64, significant_digits: u8) -> Self {
        let largest_single_unit = 2 * 10_u64.pow(u32::from(significant_digits));
        // Smallest m with 2^m >= largest_single_unit; never exact, as 2 * 10^d is no power of 2.
        let sub_bucket_count_magnitude = u64::BITS - (largest_single_unit - 1).leading_zeros();
        let sub_bucket_count = 1_u64 << sub_bucket_count_magnitude;
        let mut buckets = 1_u32;
        let mut smallest_untrackable = sub_bucket_count;
        while smallest_untrackable <= highest {
            smallest_untrackable <<= 1;
            buckets += 1;
        }
        let half_count_magnitude = sub_bucket_count_magnitude - 1;
        HdrLayout {
            highest,
            significant_digits,
            half_count_magnitude,
            sub_bucket_mask: NonZeroU64::new(sub_bucket_count - 1)
                .expect("at least 2 slots per bucket: 2 * 10^d > 2"),
            len: ((buckets as usize) + 1) << half_count_magnitude,
        }
    }

    /// The configured top of the range; larger values are clamped to it.
    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    pub(crate) fn significant_digits(&self) -> u8 {
        self.significant_digits
    }

    /// Slots per histogram.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot of `value`, which must be `<= highest()`. A handful of integer instructions: no
    /// branch, no division.
    #[inline]
    pub(crate) fn index_of(&self, value: u64) -> usize {
        let bucket = (self.sub_bucket_mask | value).ilog2() - self.half_count_magnitude;
        let sub_bucket = value >> bucket;
        ((u64::from(bucket) << self.half_count_magnitude) + sub_bucket) as usize
    }

    /// The lowest value that falls in slot `index`: the inverse of [`index_of`](Self::index_of).
    pub(crate) fn value_at(&self, index: usize) -> u64 {
        let half_count = 1_usize << self.half_count_magnitude;
        let bucket_plus_one = index >> self.half_count_magnitude;
        if bucket_plus_one == 0 {
            // The bottom half of bucket 0: unit-width slots starting at 0.
            return index as u64;
        }
        let bucket = bucket_plus_one - 1;
        let sub_bucket = (index & (half_count - 1)) + half_count;
        (sub_bucket as u64) << bucket
    }

    /// The highest value that falls in slot `index` (hdrhistogram's `highest_equivalent`).
    pub(crate) fn highest_at(&self, index: usize) -> u64 {
        self.value_at(index + 1) - 1
    }

    /// An empty `hdrhistogram::Histogram` with exactly this layout.
    pub(crate) fn empty_histogram(&self) -> Histogram<u64> {
        Histogram::new_with_bounds(LOWEST_DISCERNIBLE_MS, self.highest, self.significant_digits)
            .expect("the builder accepts only bounds that hdrhistogram accepts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_layout_has_the_documented_size() {
        let layout = HdrLayout::new(86_400_000, 3);
        assert_eq!(layout.len(), 18_432);
        assert_eq!(layout.empty_histogram().distinct_values(), 18_432);
    }

    /// The slot of `value` spans exactly hdrhistogram's equivalence range of `value`.
    fn agrees_with(layout: &HdrLayout, reference: &Histogram<u64>, value: u64) {
        assert_eq!(layout.len(), reference.distinct_values());
        let slot = layout.index_of(value);
        assert!(
            slot < layout.len(),
            "slot {slot} of value {value} out of bounds"
        );
        assert_eq!(layout.value_at(slot), reference.lowest_equivalent(value));
        if slot + 1 < layout.len() {
            assert_eq!(
                layout.value_at(slot + 1) - 1,
                reference.highest_equivalent(value),
                "upper edge of value {value}"
            );
        }
        assert_eq!(layout.index_of(layout.value_at(slot)), slot);
    }

    fn agrees_with_hdrhistogram(highest: u64, digits: u8, values: impl IntoIterator<Item = u64>) {
        let layout = HdrLayout::new(highest, digits);
        let reference = layout.empty_histogram();
        for value in values {
            agrees_with(&layout, &reference, value.min(highest));
        }
    }

    #[test]
    fn recording_a_slot_value_equals_recording_the_value() {
        let layout = HdrLayout::new(86_400_000, 3);
        let mut direct = layout.empty_histogram();
        let mut via_slots = layout.empty_histogram();
        let mut value = 0_u64;
        while value <= layout.highest() {
            direct.record(value).unwrap();
            via_slots
                .record(layout.value_at(layout.index_of(value)))
                .unwrap();
            value = value * 2 + 1;
        }
        direct.record(layout.highest()).unwrap();
        via_slots
            .record(layout.value_at(layout.index_of(layout.highest())))
            .unwrap();
        assert_eq!(direct, via_slots);
    }

    #[test]
    fn every_bucket_edge_agrees() {
        for digits in 1..=5 {
            for highest in [2, 3, 1000, 86_400_000, 1 << 40, i64::MAX as u64] {
                let mut edges = vec![0, 1, 2, highest, highest - 1];
                for shift in 0..63 {
                    let power = 1_u64 << shift;
                    edges.extend([power - 1, power, power + 1]);
                }
                agrees_with_hdrhistogram(highest, digits, edges);
            }
        }
    }

    #[test]
    fn every_slot_value_round_trips() {
        let layout = HdrLayout::new(1 << 20, 2);
        for slot in 0..layout.len() {
            let value = layout.value_at(slot);
            if value <= layout.highest() {
                assert_eq!(layout.index_of(value), slot);
            }
        }
    }

    proptest! {
        #[test]
        fn random_values_agree(
            highest in 2_u64..=(i64::MAX as u64),
            digits in 1_u8..=5,
            fraction in 0.0_f64..=1.0,
            low_bits in any::<u64>(),
        ) {
            // Mix a uniform position in the range with a log-spread one, so small values and
            // huge values are both visited.
            let uniform = ((highest as f64) * fraction) as u64;
            let log_spread = low_bits >> (low_bits % 64);
            agrees_with_hdrhistogram(highest, digits, [uniform, log_spread]);
        }
    }
}
