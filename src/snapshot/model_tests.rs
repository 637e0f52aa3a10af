//! Model comparison: random recordings across many snapshots, window rolls and precisions,
//! every view against dense `hdrhistogram` histograms built from the same values, and the
//! window against the age buckets' definition (the sum of the intervals in the live buckets).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use proptest::prelude::*;

use super::{SlotCount, Snapshot, View};
use crate::layout::{COMPLETION_LABELS, completion_label};
use crate::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome, WINDOW_AGE_BUCKETS};

const HIGHEST_MS: u64 = 3_600_000;
const WINDOW: Duration = Duration::from_millis(40);
const QUANTILES: [f64; 9] = [0.0, 1e-9, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0, 1.5];
const BOUNDS_MS: [u64; 7] = [0, 1, 10, 999, 2_047, 100_000, u64::MAX];

/// The age buckets as they are defined: intervals in a ring of buckets, the oldest emptied
/// whenever a bucket's span has passed.
struct WindowModel {
    buckets: Vec<Vec<usize>>,
    current: usize,
    since: Instant,
    span: Duration,
}

impl WindowModel {
    fn slide(&mut self, now: Instant, interval: usize) {
        let mut expired = 0;
        while self.since + self.span <= now {
            if expired == self.buckets.len() {
                self.since = now;
                break;
            }
            self.current = (self.current + 1) % self.buckets.len();
            self.buckets[self.current].clear();
            self.since += self.span;
            expired += 1;
        }
        self.buckets[self.current].push(interval);
    }

    fn intervals(&self) -> impl Iterator<Item = usize> + '_ {
        self.buckets.iter().flatten().copied()
    }
}

/// One interval of the model: per label, the values recorded.
type Interval = Vec<Vec<u64>>;

fn dense(
    digits: u8,
    intervals: impl Iterator<Item = usize>,
    all: &[Interval],
    label: usize,
) -> Histogram<u64> {
    let mut histogram = Histogram::new_with_bounds(1, HIGHEST_MS, digits).unwrap();
    for interval in intervals {
        for &value in &all[interval][label] {
            histogram.record(value.min(HIGHEST_MS)).unwrap();
        }
    }
    histogram
}

/// Every figure of `view` equals the dense model's, label by label.
fn assert_view_is(view: &View, digits: u8, intervals: &[usize], all: &[Interval], what: &str) {
    for runner in RunnerType::ALL {
        for outcome in TaskOutcome::ALL {
            let label = completion_label(runner, outcome);
            let model = dense(digits, intervals.iter().copied(), all, label);
            let counts = view.duration_counts(runner, outcome);
            let at = format!("{what}, {runner:?} {outcome:?}, {digits} digits");
            assert_eq!(view.completed(runner, outcome), model.len(), "{at}");
            let slots: Vec<SlotCount> = model
                .iter_recorded()
                .map(|slot| SlotCount {
                    lowest_ms: model.lowest_equivalent(slot.value_iterated_to()),
                    highest_ms: model.highest_equivalent(slot.value_iterated_to()),
                    count: slot.count_at_value(),
                })
                .collect();
            assert_eq!(counts.iter().collect::<Vec<_>>(), slots, "{at}");
            assert_eq!(counts.min(), model.min(), "{at}");
            assert_eq!(counts.max(), model.max(), "{at}");
            assert_eq!(counts.mean().to_bits(), model.mean().to_bits(), "{at}");
            let at_once = counts.values_at_quantiles(&QUANTILES);
            for (quantile, value) in QUANTILES.into_iter().zip(at_once) {
                let expected = model.value_at_quantile(quantile);
                let one = counts.value_at_quantile(quantile);
                assert_eq!(one, expected, "{at}, q {quantile}");
                assert_eq!(value, expected, "{at}, q {quantile} of several");
            }
            let unordered = [0.99, 0.5, f64::NAN, 0.0, 1.0, 0.25];
            for (quantile, value) in unordered
                .into_iter()
                .zip(counts.values_at_quantiles(&unordered))
            {
                let expected = model.value_at_quantile(quantile);
                assert_eq!(value, expected, "{at}, q {quantile} out of order");
            }
            for bound in BOUNDS_MS {
                let expected: u64 = slots
                    .iter()
                    .filter(|slot| slot.lowest_ms <= bound)
                    .map(|slot| slot.count)
                    .sum();
                assert_eq!(counts.count_at_or_below(bound), expected, "{at}, ≤ {bound}");
            }
            for (bucket, bound) in super::SOLTI_BUCKETS_SECONDS.iter().enumerate() {
                let (low, high) = match bucket {
                    0 => (0, (bound * 1e3) as u64),
                    _ => {
                        let previous = super::SOLTI_BUCKETS_SECONDS[bucket - 1];
                        ((previous * 1e3) as u64 + 1, (bound * 1e3) as u64)
                    }
                };
                let expected: u64 = slots
                    .iter()
                    .filter(|slot| (low..=high).contains(&slot.lowest_ms))
                    .map(|slot| slot.count)
                    .sum();
                assert_eq!(
                    view.solti_buckets[label][bucket], expected,
                    "{at}, {bound} s"
                );
            }
            let values = intervals.iter().flat_map(|&i| &all[i][label]);
            let sum: u128 = values.clone().map(|&v| u128::from(v)).sum();
            let clamped = values.filter(|&&v| v > HIGHEST_MS).count() as u64;
            assert_eq!(view.duration_sum_ms_exact(runner, outcome), sum, "{at}");
            assert_eq!(view.clamped(runner, outcome), clamped, "{at}");
            assert!(*view.duration(runner, outcome) == model, "{at}: histogram");
        }
    }
}

/// One step: what is recorded, `(label, duration)`, then how long until the snapshot.
fn steps() -> impl Strategy<Value = Vec<(Vec<(usize, u64)>, u64)>> {
    let duration = prop_oneof![
        0..50_u64,
        0..5_000_u64,
        0..HIGHEST_MS,
        HIGHEST_MS..=u64::MAX,
    ];
    // Under Miri, a few steps of a few values: it runs about 10,000 times slower.
    let (values, steps) = if cfg!(miri) {
        (0..6, 1..4)
    } else {
        (0..40, 1..12)
    };
    let recorded = proptest::collection::vec((0..COMPLETION_LABELS, duration), values);
    // Mostly within a bucket's span, sometimes past the whole window.
    let advance = prop_oneof![8 => 0..25_u64, 1 => 40..100_u64];
    proptest::collection::vec((recorded, advance), steps)
}

/// Which views a run reads, and when.
#[derive(Clone, Copy)]
enum Reads {
    /// Most views at their snapshot, some later.
    Often,
    /// The cumulative view at one snapshot in five (the others after later snapshots were
    /// taken from it), the window at one in three: the intervals pend on the cumulative view,
    /// unread, until a read or the pending bound folds them, and a window is the lists pending
    /// since its start when no fold came between.
    Rarely,
}

/// Up to 40 steps: the pending bound (4 lists in unit tests) is crossed many times.
fn long_steps() -> impl Strategy<Value = Vec<(Vec<(usize, u64)>, u64)>> {
    let recorded = proptest::collection::vec((0..COMPLETION_LABELS, 0..HIGHEST_MS), 0..40);
    let steps = if cfg!(miri) { 1..6 } else { 1..40 };
    proptest::collection::vec((recorded, 0..25_u64), steps)
}

fn check(digits: u8, steps: Vec<(Vec<(usize, u64)>, u64)>, reads: Reads) {
    let metrics = AtomicMetrics::builder()
        .significant_digits(digits)
        .highest_duration_ms(HIGHEST_MS)
        .window(WINDOW)
        .stripes(2)
        .build()
        .unwrap();
    let origin = metrics.window_origin();
    let mut model = WindowModel {
        buckets: vec![Vec::new(); WINDOW_AGE_BUCKETS as usize],
        current: 0,
        since: origin,
        span: WINDOW / WINDOW_AGE_BUCKETS,
    };
    let mut intervals: Vec<Interval> = Vec::new();
    let mut previous: Arc<Snapshot> = metrics.latest();
    let mut skipped: Option<(Arc<Snapshot>, Vec<usize>)> = None;
    let mut skipped_interval: Option<(Arc<Snapshot>, usize)> = None;
    let mut skipped_cumulative: Option<(Arc<Snapshot>, Vec<usize>)> = None;
    let mut now = origin;
    for (recorded, advance_ms) in steps {
        let mut interval = vec![Vec::new(); COMPLETION_LABELS];
        let record = |values: &[(usize, u64)]| {
            for &(label, duration) in values {
                let runner = RunnerType::ALL[label / TaskOutcome::COUNT];
                let outcome = TaskOutcome::ALL[label % TaskOutcome::COUNT];
                metrics.record_task_completed(runner, outcome, duration);
            }
        };
        // Half from another thread, on another stripe: a label's interval then gathers the
        // drains of two stripes.
        let (mine, theirs) = recorded.split_at(recorded.len() / 2);
        std::thread::scope(|scope| {
            scope.spawn(|| record(theirs));
            record(mine);
        });
        for &(label, duration) in &recorded {
            interval[label].push(duration);
        }
        intervals.push(interval);
        now += Duration::from_millis(advance_ms);
        let snapshot = metrics.snapshot_at(SystemTime::now(), now);
        let index = intervals.len() - 1;
        model.slide(now, index);
        let all: Vec<usize> = (0..intervals.len()).collect();
        // A cumulative view read only after later ones were cut from it: its counts are
        // folded then, from lists the later views share.
        if let Some((skipped, all)) = skipped_cumulative.take() {
            assert_view_is(
                skipped.cumulative(),
                digits,
                &all,
                &intervals,
                "cumulative read late",
            );
        }
        // Read on some snapshots only: unread, the intervals pend on the cumulative view.
        let read_now = match reads {
            Reads::Often => !(recorded.len() + advance_ms as usize).is_multiple_of(4),
            Reads::Rarely => index % 5 == 4,
        };
        if !read_now {
            skipped_cumulative = Some((Arc::clone(&snapshot), all));
        } else {
            assert_view_is(
                snapshot.cumulative(),
                digits,
                &all,
                &intervals,
                "cumulative",
            );
        }
        // An interval read only after later snapshots were taken from it: its blocks are
        // built then, from counts the later cumulative views copied.
        if let Some((skipped, index)) = skipped_interval.take() {
            assert_view_is(
                skipped.interval(),
                digits,
                &[index],
                &intervals,
                "interval read late",
            );
        }
        if recorded.len().is_multiple_of(2) {
            skipped_interval = Some((Arc::clone(&snapshot), index));
        } else {
            assert_view_is(
                snapshot.interval(),
                digits,
                &[index],
                &intervals,
                "interval",
            );
        }
        // A window skipped at its snapshot is read after the next one was taken.
        if let Some((skipped, window)) = skipped.take() {
            let skipped: Arc<Snapshot> = skipped;
            assert_view_is(
                skipped.window(),
                digits,
                &window,
                &intervals,
                "window read late",
            );
        }
        // Read on some snapshots only: a window is computed by the reader when the previous
        // one was read, else on its first read.
        let window: Vec<usize> = model.intervals().collect();
        let skip_window = match reads {
            Reads::Often => (recorded.len() + advance_ms as usize).is_multiple_of(3),
            // Computed from the lists pending since its start while no fold came between.
            Reads::Rarely => index % 3 != 2,
        };
        if skip_window && matches!(reads, Reads::Rarely) {
            // Not read at all.
        } else if skip_window {
            skipped = Some((Arc::clone(&snapshot), window));
        } else {
            assert_view_is(snapshot.window(), digits, &window, &intervals, "window");
        }
        if recorded.is_empty() {
            assert!(Arc::ptr_eq(&snapshot.cumulative, &previous.cumulative));
        }
        previous = snapshot;
    }
    if let Some((skipped, window)) = skipped {
        assert_view_is(
            skipped.window(),
            digits,
            &window,
            &intervals,
            "window read last",
        );
    }
    if let Some((skipped, all)) = skipped_cumulative {
        assert_view_is(
            skipped.cumulative(),
            digits,
            &all,
            &intervals,
            "cumulative read last",
        );
    }
    if let Some((skipped, index)) = skipped_interval {
        let interval = [index];
        assert_view_is(
            skipped.interval(),
            digits,
            &interval,
            &intervals,
            "interval read last",
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 24 }))]

    #[test]
    fn every_view_equals_a_dense_model_of_the_same_values(
        digits in 1_u8..=4,
        steps in steps(),
    ) {
        if cfg!(miri) && digits > 1 {
            return Ok(());
        }
        check(digits, steps, Reads::Often);
    }

    #[test]
    fn cumulative_views_read_rarely_equal_a_dense_model(
        digits in 1_u8..=4,
        steps in long_steps(),
    ) {
        if cfg!(miri) && digits > 1 {
            return Ok(());
        }
        check(digits, steps, Reads::Rarely);
    }
}
