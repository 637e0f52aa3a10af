//! `compare`: did the distribution of B move from A's, quantile by quantile, beyond noise and
//! beyond a practical band?
//!
//! How the data is made decides the statistics:
//! - **several runs per side** (at least 2 each): each run gives one value per quantile, and
//!   Welch's t-test on their logarithms compares the sides; run-to-run noise, which beats any
//!   within-run precision, is then in the verdict;
//! - **one run on a side**: a block bootstrap over its intervals (at most 10 blocks of
//!   consecutive intervals resampled together, each at least twice the intervals' estimated
//!   autocorrelation time, so autocorrelation widens the interval instead of fooling it, and a
//!   run that drifts too slowly for 8 blocks is "too few samples"), the p-value from the bootstrap's standard error of the log ratio under
//!   Student's t with one degree of freedom fewer than the blocks.
//!
//! Rows within one slot width, or with too few samples, are not tested and stay out of Holm's
//! family. Never a verdict below the HDR slot width (`resolution`), nor with fewer than
//! [`CompareOptions::min_tail_samples`] samples beyond a quantile on a side (in every run, with
//! runs); Holm's correction over every series and quantile keeps the chance of any false alarm
//! below [`CompareOptions::alpha`]; a change must also be beyond the quantile's band to be
//! called better or worse. Changes are ratios of slot midpoints, so a 0 ms slot still has one.

mod bands;
mod bootstrap;
mod runs;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use bands::{Bands, parse_quantile_name, percent, quantile_name};
use bootstrap::{TARGET_BLOCKS, compare_bootstrap};
use runs::compare_runs;

use crate::distribution::Distribution;
use crate::input::{Interval, Run, Series};
use crate::stats::holm;

/// The JSON schema of a [`Comparison`].
pub const COMPARE_SCHEMA: &str = "taskmeter.compare/1";

/// How to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// The practical bands (5 % by default).
    pub bands: Bands,
    /// The chance of any false alarm over all series and quantiles (0.05).
    pub alpha: f64,
    /// Bootstrap resamples, with one run on a side (1,000).
    pub resamples: usize,
    /// The resampling seed, so that a comparison is repeatable (fixed by default).
    pub seed: u64,
    /// The quantiles compared (p50, p90, p99, p99.9), each in `(0, 1)`.
    pub quantiles: Vec<f64>,
    /// Samples needed beyond a quantile, on each side or in each run (10): a quantile `q`
    /// needs `⌈10 / (1 − q)⌉` samples, 10,000 for p99.9.
    pub min_tail_samples: u64,
    /// Blocks of intervals needed on each side for the bootstrap (8; from 2 to 10, the most a
    /// side is cut into).
    pub min_blocks: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            bands: Bands::default(),
            alpha: 0.05,
            resamples: 1000,
            seed: 0x7a5c_4e7e_2026,
            quantiles: vec![0.5, 0.9, 0.99, 0.999],
            min_tail_samples: 10,
            min_blocks: 8,
        }
    }
}

/// What a comparison says of one quantile of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// B is lower beyond noise and the band.
    Better,
    /// B is higher beyond noise and the band: a regression.
    Worse,
    /// No change beyond noise, the band or the HDR resolution.
    NoChange,
    /// Too few samples (or intervals, or runs) to say: see the row's note.
    TooFewSamples,
}

impl Verdict {
    /// How it reads in a table.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoChange => "~",
            Verdict::TooFewSamples => "too few samples",
        }
    }
}

/// One side's value of a quantile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SideValue {
    /// The quantile of the side's pooled samples (the slot's highest value).
    pub value_ms: u64,
    /// Its slot's width.
    pub resolution_ms: u64,
    /// The side's samples in the series.
    pub samples: u64,
}

/// One series and quantile of a [`Comparison`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The series (`runner.outcome`, or a log's tag).
    pub series: String,
    /// The quantile.
    pub quantile: f64,
    /// A's value; `None` without samples.
    pub a: Option<SideValue>,
    /// B's value; `None` without samples.
    pub b: Option<SideValue>,
    /// The estimated change B/A − 1 of the slots' midpoints: of the pooled values with one run
    /// a side, of the runs' geometric means with runs; `None` when either side is empty.
    pub change: Option<f64>,
    /// The 95 % confidence interval of the change (not corrected for multiplicity).
    pub ci: Option<[f64; 2]>,
    /// The test's p-value, where one ran.
    pub p_value: Option<f64>,
    /// The p-value after Holm's correction over every row tested.
    pub p_adjusted: Option<f64>,
    /// The band that applied.
    pub band: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why a verdict is `~` or too few samples, when it is not the test.
    pub note: String,
}

/// The geometric mean of B/A over the series compared at one quantile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Geomean {
    /// The quantile.
    pub quantile: f64,
    /// The geometric mean of the changes, as B/A − 1.
    pub change: f64,
    /// How many series it covers.
    pub series: usize,
}

/// Counts of verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Rows called worse.
    pub worse: usize,
    /// Rows called better.
    pub better: usize,
    /// Rows with no detectable change.
    pub no_change: usize,
    /// Rows with too few samples.
    pub too_few_samples: usize,
}

/// The result of [`compare`], and its JSON form (`taskmeter compare --format json`), schema
/// [`COMPARE_SCHEMA`]:
///
/// ```text
/// {
///   "schema": "taskmeter.compare/1",
///   "a": ["before.hlog"], "b": ["after.hlog"],      // the files of each side
///   "method": "block bootstrap",                     // or "runs"
///   "alpha": 0.05, "resamples": 1000,                // resamples 0 with runs
///   "bands": { "default": 0.05, "per_quantile": [[0.99, 0.1]] },
///   "rows": [{
///     "series": "subprocess.success", "quantile": 0.99,
///     "a": { "value_ms": 2038, "resolution_ms": 1, "samples": 200000 },   // null: no samples
///     "b": { "value_ms": 2245, "resolution_ms": 2, "samples": 200000 },
///     "change": 0.101,                 // B/A − 1 of the slots' midpoints; null: a side empty
///     "ci": [0.08, 0.12],              // 95 %, of the change; null when not tested
///     "p_value": 1e-9, "p_adjusted": 4e-9,   // null when not tested
///     "band": 0.05,
///     "verdict": "worse",              // "better", "worse", "no_change", "too_few_samples"
///     "note": ""                       // why, when not the test: resolution, samples, band
///   }],
///   "geomean": [{ "quantile": 0.99, "change": 0.098, "series": 12 }],
///   "tally": { "worse": 1, "better": 0, "no_change": 3, "too_few_samples": 0 }
/// }
/// ```
///
/// Fields may be added within version 1; none is removed or changes meaning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Always [`COMPARE_SCHEMA`].
    pub schema: &'static str,
    /// A's files.
    pub a: Vec<String>,
    /// B's files.
    pub b: Vec<String>,
    /// `"runs"` (Welch's t-test over runs) or `"block bootstrap"`.
    pub method: &'static str,
    /// The family-wise false-alarm rate.
    pub alpha: f64,
    /// Bootstrap resamples (0 with runs).
    pub resamples: usize,
    /// The bands.
    pub bands: Bands,
    /// One row per series and quantile, series in name order.
    pub rows: Vec<Row>,
    /// Per quantile, over the series with enough samples on both sides.
    pub geomean: Vec<Geomean>,
    /// The verdicts counted.
    pub tally: Tally,
}

impl Comparison {
    /// The exit code of `taskmeter compare`: 1 on a regression, else 3 when
    /// `fail_on_inconclusive` and a row had too few samples, else 0.
    pub fn exit_code(&self, fail_on_inconclusive: bool) -> u8 {
        if self.tally.worse > 0 {
            1
        } else if fail_on_inconclusive && self.tally.too_few_samples > 0 {
            3
        } else {
            0
        }
    }
}

/// Compares the runs of A with those of B (each side one run or several runs of one setup).
///
/// Errors when a side has no run, when no series has samples on both sides, when a side's
/// runs record one series with different histogram layouts, or on bad options.
pub fn compare(a: &[Run], b: &[Run], options: &CompareOptions) -> Result<Comparison, String> {
    check_options(options)?;
    if a.is_empty() || b.is_empty() {
        return Err("each side needs at least one run".into());
    }
    let by_runs = a.len() >= 2 && b.len() >= 2;
    let names: BTreeSet<&String> = a
        .iter()
        .chain(b)
        .flat_map(|run| run.series.keys())
        .collect();
    let mut rows = Vec::new();
    for name in names {
        let side_a = SideSeries::new(a, name)?;
        let side_b = SideSeries::new(b, name)?;
        if side_a.pooled.total() == 0 && side_b.pooled.total() == 0 {
            continue;
        }
        let mut series_rows = if by_runs {
            compare_runs(name, &side_a, &side_b, options)
        } else {
            compare_bootstrap(name, &side_a, &side_b, options)
        };
        rows.append(&mut series_rows);
    }
    if !rows.iter().any(|row| row.a.is_some() && row.b.is_some()) {
        let names = |runs: &[Run]| {
            let names: BTreeSet<String> = runs
                .iter()
                .flat_map(|run| run.series.iter())
                .filter(|(_, series)| series.total() > 0)
                .map(|(name, _)| format!("{name:?}"))
                .collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.into_iter().collect::<Vec<_>>().join(", ")
            }
        };
        return Err(format!(
            "no series has samples on both sides (are the files and --from/--to right?): \
             A has {}; B has {}",
            names(a),
            names(b)
        ));
    }
    decide(&mut rows, options);
    let geomean = options
        .quantiles
        .iter()
        .filter_map(|&quantile| {
            let logs: Vec<f64> = rows
                .iter()
                .filter(|row| row.quantile == quantile && row.verdict != Verdict::TooFewSamples)
                .filter_map(|row| row.change)
                .map(f64::ln_1p)
                .collect();
            (!logs.is_empty()).then(|| Geomean {
                quantile,
                change: (logs.iter().sum::<f64>() / logs.len() as f64).exp_m1(),
                series: logs.len(),
            })
        })
        .collect();
    let mut tally = Tally::default();
    for row in &rows {
        *match row.verdict {
            Verdict::Worse => &mut tally.worse,
            Verdict::Better => &mut tally.better,
            Verdict::NoChange => &mut tally.no_change,
            Verdict::TooFewSamples => &mut tally.too_few_samples,
        } += 1;
    }
    Ok(Comparison {
        schema: COMPARE_SCHEMA,
        a: a.iter().map(|run| run.source.clone()).collect(),
        b: b.iter().map(|run| run.source.clone()).collect(),
        method: if by_runs { "runs" } else { "block bootstrap" },
        alpha: options.alpha,
        resamples: if by_runs { 0 } else { options.resamples },
        bands: options.bands.clone(),
        rows,
        geomean,
        tally,
    })
}

fn check_options(options: &CompareOptions) -> Result<(), String> {
    if !(options.alpha > 0.0 && options.alpha < 1.0) {
        return Err(format!("alpha {} is not in (0, 1)", options.alpha));
    }
    if let Some(q) = options.quantiles.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
        return Err(format!("quantile {q} is not in (0, 1)"));
    }
    if !(2..=TARGET_BLOCKS).contains(&options.min_blocks) {
        return Err(format!(
            "min_blocks {} is not from 2 to {TARGET_BLOCKS}",
            options.min_blocks
        ));
    }
    if options.resamples < 100 {
        return Err(format!("{} resamples: at least 100", options.resamples));
    }
    for (quantile, _) in &options.bands.per_quantile {
        if !options
            .quantiles
            .iter()
            .any(|q| (q - quantile).abs() < 1e-12)
        {
            let compared: Vec<String> = options
                .quantiles
                .iter()
                .map(|&q| quantile_name(q))
                .collect();
            return Err(format!(
                "a band for {}, which is not compared ({})",
                quantile_name(*quantile),
                compared.join(", ")
            ));
        }
    }
    Ok(())
}

/// One side's data of one series: per run, and pooled.
struct SideSeries<'r> {
    runs: Vec<Option<&'r Series>>,
    per_run: Vec<Distribution>,
    pooled: Distribution,
}

impl<'r> SideSeries<'r> {
    fn new(runs: &'r [Run], name: &str) -> Result<Self, String> {
        let series: Vec<Option<&Series>> = runs.iter().map(|run| run.series.get(name)).collect();
        let layout = series.iter().flatten().map(|s| s.layout()).next();
        let Some(layout) = layout else {
            let empty = Distribution::new(crate::Layout::new(1, 3).expect("a valid layout"));
            return Ok(SideSeries {
                per_run: vec![empty.clone(); runs.len()],
                runs: series,
                pooled: empty,
            });
        };
        if let Some((run, other)) = runs
            .iter()
            .zip(&series)
            .find_map(|(run, s)| s.filter(|s| s.layout() != layout).map(|s| (run, s)))
        {
            return Err(format!(
                "{}: series {name:?} has {}, another run of its side {layout}",
                run.source,
                other.layout()
            ));
        }
        let per_run: Vec<Distribution> = series
            .iter()
            .map(|s| s.map_or_else(|| Distribution::new(layout), |s| s.merged(|_| true)))
            .collect();
        let mut pooled = Distribution::new(layout);
        per_run.iter().for_each(|d| pooled.merge(d));
        Ok(SideSeries {
            runs: series,
            per_run,
            pooled,
        })
    }

    /// Every interval of the side, run after run.
    fn intervals(&self) -> impl Iterator<Item = (&'r Series, &'r Interval)> + '_ {
        self.runs
            .iter()
            .flatten()
            .flat_map(|series| series.intervals().iter().map(move |i| (*series, i)))
    }
}

fn needed_samples(quantile: f64, options: &CompareOptions) -> u64 {
    (options.min_tail_samples as f64 / (1.0 - quantile)).ceil() as u64
}

/// A row with both sides' pooled values, the change between them, and the verdict left to
/// the test (or set when there is none to run).
fn base_row(
    name: &str,
    quantile: f64,
    a: &SideSeries,
    b: &SideSeries,
    options: &CompareOptions,
) -> Row {
    let value = |side: &SideSeries| {
        side.pooled.quantile(quantile).map(|q| SideValue {
            value_ms: q.value_ms,
            resolution_ms: q.resolution_ms,
            samples: side.pooled.total(),
        })
    };
    let (value_a, value_b) = (value(a), value(b));
    let change = match (a.pooled.quantile(quantile), b.pooled.quantile(quantile)) {
        (Some(qa), Some(qb)) => Some(qb.midpoint_ms / qa.midpoint_ms - 1.0),
        _ => None,
    };
    let mut row = Row {
        series: name.to_owned(),
        quantile,
        a: value_a,
        b: value_b,
        change,
        ci: None,
        p_value: None,
        p_adjusted: None,
        band: options.bands.band(quantile),
        verdict: Verdict::NoChange,
        note: String::new(),
    };
    let needed = needed_samples(quantile, options);
    match (value_a, value_b) {
        (None, _) | (_, None) => {
            row.verdict = Verdict::TooFewSamples;
            row.note = format!(
                "no samples in {}",
                if value_a.is_none() { "A" } else { "B" }
            );
        }
        (Some(va), Some(vb)) if va.samples < needed || vb.samples < needed => {
            row.verdict = Verdict::TooFewSamples;
            row.note = format!(
                "needs {needed} samples a side for {}, has {} and {}",
                quantile_name(quantile),
                va.samples,
                vb.samples
            );
        }
        (Some(va), Some(vb))
            if va.value_ms.abs_diff(vb.value_ms) <= va.resolution_ms.max(vb.resolution_ms) =>
        {
            row.note = format!(
                "within the HDR resolution ({} ms)",
                va.resolution_ms.max(vb.resolution_ms)
            );
        }
        _ => {}
    }
    row
}

/// Whether a row still needs its test (it has enough samples and a change past resolution).
fn testable(row: &Row) -> bool {
    row.verdict == Verdict::NoChange && row.note.is_empty()
}

/// Holm over every tested row, then each verdict from its adjusted p-value and band.
fn decide(rows: &mut [Row], options: &CompareOptions) {
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].p_value.is_some() && rows[i].verdict == Verdict::NoChange)
        .collect();
    let p_values: Vec<f64> = tested
        .iter()
        .map(|&i| rows[i].p_value.unwrap_or(1.0))
        .collect();
    for (&i, adjusted) in tested.iter().zip(holm(&p_values)) {
        let row = &mut rows[i];
        row.p_adjusted = Some(adjusted);
        let change = row.change.unwrap_or(0.0);
        row.verdict = if adjusted >= options.alpha {
            Verdict::NoChange
        } else if change > row.band {
            Verdict::Worse
        } else if change < -row.band {
            Verdict::Better
        } else {
            row.note = format!("within the band (±{})", percent(row.band));
            Verdict::NoChange
        };
    }
}

/// Rows by series, for renderers.
pub fn rows_by_series(comparison: &Comparison) -> BTreeMap<&str, Vec<&Row>> {
    let mut by_series: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in &comparison.rows {
        by_series.entry(&row.series).or_default().push(row);
    }
    by_series
}
