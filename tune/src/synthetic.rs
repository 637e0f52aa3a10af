//! Synthetic runs with a known shape, for calibration tests and benchmarks: a log-normal body,
//! a separate slow tail, and a level that drifts from interval to interval (an AR(1) in log
//! space), so that intervals are autocorrelated as real runs are.

use crate::input::{Run, Series};
use crate::layout::Layout;
use crate::stats::SplitMix64;

/// What a synthetic run looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    /// The series, each drawn alike.
    pub series: Vec<String>,
    /// Intervals per series.
    pub intervals: usize,
    /// Seconds per interval.
    pub interval_s: f64,
    /// Samples per interval and series.
    pub samples_per_interval: usize,
    /// Median of the body, in ms.
    pub body_median_ms: f64,
    /// Standard deviation of the body's logarithm.
    pub body_sigma: f64,
    /// Fraction of samples in the slow tail.
    pub tail_weight: f64,
    /// Median of the tail, in ms.
    pub tail_median_ms: f64,
    /// Standard deviation of the tail's logarithm.
    pub tail_sigma: f64,
    /// Every body sample multiplied by this (a change at p50 that leaves the tail alone).
    pub body_scale: f64,
    /// Every tail sample multiplied by this (a change at p99 and above).
    pub tail_scale: f64,
    /// Standard deviation of the level's logarithm from interval to interval.
    pub drift_sigma: f64,
    /// The level's autocorrelation from one interval to the next.
    pub drift_phi: f64,
    /// The HDR layout's significant digits (lowest value 1 ms).
    pub significant_digits: u8,
}

impl Default for Generator {
    /// One series, `work`: 100 intervals of 2,000 samples; a body around 100 ms, 4 % of samples
    /// in a tail around 2 s (so p99 and p99.9 are the tail's, p50 and p90 the body's); a level
    /// drifting by 5 % with autocorrelation 0.5.
    fn default() -> Self {
        Generator {
            series: vec!["work".into()],
            intervals: 100,
            interval_s: 1.0,
            samples_per_interval: 2000,
            body_median_ms: 100.0,
            body_sigma: 0.5,
            tail_weight: 0.04,
            tail_median_ms: 2000.0,
            tail_sigma: 0.5,
            body_scale: 1.0,
            tail_scale: 1.0,
            drift_sigma: 0.05,
            drift_phi: 0.5,
            significant_digits: 3,
        }
    }
}

impl Generator {
    /// A run named `source`, drawn from `seed`.
    pub fn run(&self, source: &str, seed: u64) -> Run {
        let layout = Layout::new(1, self.significant_digits).expect("digits from 0 to 5");
        let mut random = SplitMix64(seed ^ 0x005e_ed0f_7a5c);
        let mut run = Run::new(source);
        let innovation = self.drift_sigma * (1.0 - self.drift_phi * self.drift_phi).sqrt();
        let mut slots = Vec::with_capacity(self.samples_per_interval);
        for name in &self.series {
            let mut series = Series::new(layout);
            let mut level = self.drift_sigma * random.normal();
            for interval in 0..self.intervals {
                level = self.drift_phi * level + innovation * random.normal();
                slots.clear();
                for _ in 0..self.samples_per_interval {
                    let (median, sigma, scale) = if random.unit() < self.tail_weight {
                        (self.tail_median_ms, self.tail_sigma, self.tail_scale)
                    } else {
                        (self.body_median_ms, self.body_sigma, self.body_scale)
                    };
                    let value = (median * scale * (sigma * random.normal() + level).exp()).round();
                    slots.push(layout.index_of(value as u64));
                }
                slots.sort_unstable();
                let counted = slots
                    .chunk_by(|a, b| a == b)
                    .map(|same| (same[0], same.len() as u64));
                series.push_interval(interval as f64 * self.interval_s, self.interval_s, counted);
            }
            run.series.insert(name.clone(), series);
        }
        run
    }
}
