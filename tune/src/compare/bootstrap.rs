//! One run on a side: a block bootstrap over its intervals, blocks long enough for the
//! intervals' autocorrelation, and Student's t at one degree of freedom fewer than the blocks.

use super::runs::mean_variance;
use super::{CompareOptions, Row, SideSeries, Verdict, base_row, testable};
use crate::distribution::{quantile_at, target_rank};
use crate::input::{Interval, Series};
use crate::stats::{SplitMix64, student_critical, student_two_sided};

/// Blocks a side's intervals are grouped into, at most (fewer when `n^(1/3)` intervals a block
/// make fewer). Long blocks keep an interval's neighbours together, so that slow drifts count
/// in the spread; the few blocks are then paid for with Student's t at `blocks − 1` degrees
/// of freedom.
pub(super) const TARGET_BLOCKS: usize = 10;

/// Intervals a block of a side with `n` intervals.
fn block_length(n: usize) -> usize {
    ((n as f64).cbrt().ceil() as usize)
        .max(n.div_ceil(TARGET_BLOCKS))
        .max(1)
}

/// The fewest intervals a side needs for `blocks` blocks.
fn intervals_for(blocks: usize) -> usize {
    (1..)
        .find(|&n: &usize| n.div_ceil(block_length(n)) >= blocks)
        .expect("n^(1/3) intervals a block make any number of blocks")
}

/// One side's intervals grouped into blocks of consecutive intervals, each block's counts
/// cumulated over the side's distinct slots: a weighted quantile is then a binary search whose
/// steps cost one multiply-add per drawn block.
struct Blocks {
    slots: Vec<u32>,
    /// Row `b` holds block `b`'s count at or below each of `slots`.
    cumulative: Vec<u64>,
    totals: Vec<u64>,
    layout: crate::Layout,
    /// The intervals' integrated autocorrelation time: how many intervals one is worth.
    correlation: f64,
}

/// The integrated autocorrelation time of the intervals' levels (each interval's mean log
/// duration): `1 + 2 Σ ρ_k`, summed while `ρ_k` stands above the noise of its estimate
/// (`2/√n`). 1 for independent intervals; about 39 for a level that keeps 95 % of itself from
/// one interval to the next.
fn correlation_length(intervals: &[(&Series, &Interval)], layout: crate::Layout) -> f64 {
    let levels: Vec<f64> = intervals
        .iter()
        .filter(|(_, interval)| interval.total > 0)
        .map(|(series, interval)| {
            let sum: f64 = series
                .entries(interval)
                .map(|(slot, count)| {
                    count as f64 * quantile_at(layout, slot as usize, 0.5).midpoint_ms.ln()
                })
                .sum();
            sum / interval.total as f64
        })
        .collect();
    let n = levels.len();
    if n < 4 {
        return 1.0;
    }
    let mean = levels.iter().sum::<f64>() / n as f64;
    let variance = levels.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    if variance <= 0.0 {
        return 1.0;
    }
    let noise = 2.0 / (n as f64).sqrt();
    let mut time = 1.0;
    for lag in 1..n / 2 {
        let rho = levels
            .iter()
            .zip(&levels[lag..])
            .map(|(x, y)| (x - mean) * (y - mean))
            .sum::<f64>()
            / n as f64
            / variance;
        if rho < noise {
            break;
        }
        time += 2.0 * rho;
    }
    time
}

impl Blocks {
    fn new(side: &SideSeries) -> Option<Blocks> {
        let intervals: Vec<(&Series, &Interval)> = side.intervals().collect();
        let n = intervals.len();
        if n == 0 {
            return None;
        }
        // Blocks at least twice as long as the intervals stay correlated, so that a slow
        // drift moves whole blocks and shows in their spread.
        let correlation = correlation_length(&intervals, side.pooled.layout());
        let length = block_length(n).max((2.0 * correlation).ceil() as usize);
        let mut slots: Vec<u32> = intervals
            .iter()
            .flat_map(|(series, interval)| series.entries(interval).map(|(slot, _)| slot))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        let blocks = n.div_ceil(length);
        let mut cumulative = vec![0_u64; blocks * slots.len()];
        let mut totals = vec![0_u64; blocks];
        for (position, (series, interval)) in intervals.iter().enumerate() {
            let block = position / length;
            let row = &mut cumulative[block * slots.len()..(block + 1) * slots.len()];
            for (slot, count) in series.entries(interval) {
                let column = slots
                    .binary_search(&slot)
                    .expect("every slot was collected");
                row[column] = row[column].saturating_add(count);
                totals[block] = totals[block].saturating_add(count);
            }
        }
        for row in cumulative.chunks_mut(slots.len().max(1)) {
            let mut running = 0_u64;
            for cell in row {
                running = running.saturating_add(*cell);
                *cell = running;
            }
        }
        Some(Blocks {
            slots,
            cumulative,
            totals,
            layout: side.pooled.layout(),
            correlation,
        })
    }

    fn count(&self) -> usize {
        self.totals.len()
    }

    /// Draws as many blocks as there are, with replacement: `(block, times drawn)`.
    fn draw(&self, random: &mut SplitMix64, weights: &mut Vec<u64>, drawn: &mut Vec<(usize, u64)>) {
        weights.clear();
        weights.resize(self.count(), 0);
        for _ in 0..self.count() {
            weights[random.below(self.count())] += 1;
        }
        drawn.clear();
        drawn.extend(
            weights
                .iter()
                .enumerate()
                .filter(|(_, w)| **w > 0)
                .map(|(b, &w)| (b, w)),
        );
    }

    /// The midpoint of the slot at `quantile` of the drawn blocks' weighted sum.
    fn midpoint(&self, drawn: &[(usize, u64)], quantile: f64) -> Option<f64> {
        // In u128: a drawn block may count several times a side's 2^64 samples.
        let total: u128 = drawn
            .iter()
            .map(|&(b, w)| u128::from(w) * u128::from(self.totals[b]))
            .sum();
        let rank = target_rank(quantile, u64::try_from(total).unwrap_or(u64::MAX))?;
        let width = self.slots.len();
        let at = |column: usize| -> u128 {
            drawn
                .iter()
                .map(|&(b, w)| u128::from(w) * u128::from(self.cumulative[b * width + column]))
                .sum()
        };
        let (mut low, mut high) = (0, width - 1);
        while low < high {
            let middle = (low + high) / 2;
            if at(middle) >= u128::from(rank) {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Some(quantile_at(self.layout, self.slots[low] as usize, quantile).midpoint_ms)
    }
}

pub(super) fn compare_bootstrap(
    name: &str,
    a: &SideSeries,
    b: &SideSeries,
    options: &CompareOptions,
) -> Vec<Row> {
    let mut rows: Vec<Row> = options
        .quantiles
        .iter()
        .map(|&quantile| base_row(name, quantile, a, b, options))
        .collect();
    if !rows.iter().any(testable) {
        return rows;
    }
    let (Some(blocks_a), Some(blocks_b)) = (Blocks::new(a), Blocks::new(b)) else {
        return rows;
    };
    if blocks_a.count() < options.min_blocks || blocks_b.count() < options.min_blocks {
        for row in rows.iter_mut().filter(|row| testable(row)) {
            row.verdict = Verdict::TooFewSamples;
            let correlation = blocks_a.correlation.max(blocks_b.correlation);
            row.note = if correlation >= 2.0 {
                format!(
                    "the intervals drift together over about {correlation:.0} at a time: the \
                     bootstrap needs {} blocks of {} a side, or compare 2 runs a side or more",
                    options.min_blocks,
                    (2.0 * correlation).ceil()
                )
            } else {
                format!(
                    "needs {} blocks of intervals a side for the bootstrap (at least {} \
                     intervals), or 2 runs a side; has {} and {}",
                    options.min_blocks,
                    intervals_for(options.min_blocks),
                    blocks_a.count(),
                    blocks_b.count()
                )
            };
        }
        return rows;
    }
    // The seed mixes in the series' name, so that each series resamples independently and a
    // comparison repeats exactly.
    let seed = name.bytes().fold(options.seed, |h, byte| {
        (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut random = SplitMix64(seed);
    let testing: Vec<usize> = (0..rows.len()).filter(|&i| testable(&rows[i])).collect();
    let mut log_ratios = vec![Vec::with_capacity(options.resamples); rows.len()];
    let (mut weights, mut drawn_a, mut drawn_b) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..options.resamples {
        blocks_a.draw(&mut random, &mut weights, &mut drawn_a);
        blocks_b.draw(&mut random, &mut weights, &mut drawn_b);
        for &i in &testing {
            let quantile = rows[i].quantile;
            if let (Some(ma), Some(mb)) = (
                blocks_a.midpoint(&drawn_a, quantile),
                blocks_b.midpoint(&drawn_b, quantile),
            ) {
                log_ratios[i].push((mb / ma).ln());
            }
        }
    }
    for &i in &testing {
        let row = &mut rows[i];
        let samples = &log_ratios[i];
        if samples.len() * 10 < options.resamples * 9 {
            row.verdict = Verdict::TooFewSamples;
            row.note = "too many resamples drew no samples: the series is too sparse".into();
            continue;
        }
        let estimate = row.change.expect("both sides have samples").ln_1p();
        let (_, variance) = mean_variance(samples);
        // The bootstrap's variance of a mean over k blocks is (k − 1)/k of the unbiased one;
        // each side's value is also only known to its slot, a uniform error of a slot's width.
        let blocks = blocks_a.count().min(blocks_b.count()) as f64;
        let slot_variance = [(row.a, &a.pooled), (row.b, &b.pooled)]
            .iter()
            .filter_map(|(value, pooled)| {
                let quantile = pooled.quantile(row.quantile)?;
                value.map(|v| (v.resolution_ms as f64 / quantile.midpoint_ms).powi(2) / 12.0)
            })
            .sum::<f64>();
        let se = (variance * blocks / (blocks - 1.0) + slot_variance).sqrt();
        let df = blocks - 1.0;
        row.p_value = Some(if se > 0.0 {
            student_two_sided(estimate / se, df)
        } else if estimate == 0.0 {
            1.0
        } else {
            0.0
        });
        let half = student_critical(0.05, df) * se;
        row.ci = Some([(estimate - half).exp_m1(), (estimate + half).exp_m1()]);
    }
    rows
}
