//! `report`: each run's series, their quantiles at HDR resolution, and a timeline.

use serde::Serialize;

use crate::distribution::{Distribution, Quantile};
use crate::input::Run;

/// The JSON schema of a [`Report`].
pub const REPORT_SCHEMA: &str = "taskmeter.report/1";

/// The quantiles a report gives for every series (with the maximum).
pub const REPORT_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// The most points a timeline has: longer runs are shown in groups of consecutive intervals.
pub const TIMELINE_POINTS: usize = 500;

/// What `taskmeter report` prints: one [`RunReport`] per file, or one for their merge. Its
/// JSON form (`--format json`), schema [`REPORT_SCHEMA`]:
///
/// ```text
/// {
///   "schema": "taskmeter.report/1",
///   "runs": [{
///     "source": "before.hlog", "duration_s": 5.0, "comments": ["…"],
///     "series": [{
///       "name": "subprocess.success", "count": 120000, "significant_digits": 3,
///       "quantiles": [{ "quantile": 0.5, "value_ms": 785, "resolution_ms": 1 }, …],
///       "max_ms": 600063,                        // null without samples
///       "timeline": [{ "start_s": 0.0, "end_s": 0.1, "count": 2400,
///                      "p50_ms": 790, "p99_ms": 531000, "max_ms": 600063 }, …]
///     }]
///   }]
/// }
/// ```
///
/// Fields may be added within version 1; none is removed or changes meaning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Always [`REPORT_SCHEMA`].
    pub schema: &'static str,
    /// The runs reported.
    pub runs: Vec<RunReport>,
}

/// One run (or a merge of runs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The file, or the files merged joined by `+`.
    pub source: String,
    /// The seconds covered, from the run's start to its last interval's end.
    pub duration_s: f64,
    /// The file's comment lines (untrusted text).
    pub comments: Vec<String>,
    /// Each series, in name order.
    pub series: Vec<SeriesReport>,
}

/// One series of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesReport {
    /// Its name (`runner.outcome`, or a log's tag).
    pub name: String,
    /// Samples.
    pub count: u64,
    /// [`REPORT_QUANTILES`]' values, empty without samples.
    pub quantiles: Vec<Quantile>,
    /// The largest sample's slot top; `None` without samples.
    pub max_ms: Option<u64>,
    /// The significant digits of its histograms.
    pub significant_digits: u8,
    /// Consecutive intervals grouped into at most [`TIMELINE_POINTS`] points.
    pub timeline: Vec<TimelinePoint>,
    /// The merged distribution, for plots.
    #[serde(skip)]
    pub distribution: Distribution,
}

/// A group of consecutive intervals of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Its start, in seconds from the run's start.
    pub start_s: f64,
    /// Its end.
    pub end_s: f64,
    /// Samples in it.
    pub count: u64,
    /// Its median, p99 and maximum; `None` without samples.
    pub p50_ms: Option<u64>,
    /// See `p50_ms`.
    pub p99_ms: Option<u64>,
    /// See `p50_ms`.
    pub max_ms: Option<u64>,
}

/// The report of each run, or with `merge`, of their merge (every run must then record a
/// series with one layout).
pub fn report(runs: &[Run], merge: bool) -> Result<Report, String> {
    let runs = if merge && runs.len() > 1 {
        vec![merged(runs)?]
    } else {
        runs.to_vec()
    };
    Ok(Report {
        schema: REPORT_SCHEMA,
        runs: runs.iter().map(run_report).collect(),
    })
}

/// Runs merged into one: their series' intervals together, each run's times kept.
pub fn merged(runs: &[Run]) -> Result<Run, String> {
    let mut merged = Run::new(
        runs.iter()
            .map(|run| run.source.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
    );
    for run in runs {
        merged.comments.extend(run.comments.iter().cloned());
        for (name, series) in &run.series {
            let into = merged
                .series
                .entry(name.clone())
                .or_insert_with(|| crate::Series::new(series.layout()));
            if into.layout() != series.layout() {
                return Err(format!(
                    "{}: series {name:?} has {}, another file {}",
                    run.source,
                    series.layout(),
                    into.layout()
                ));
            }
            for interval in series.intervals() {
                into.push_interval(
                    interval.start_s,
                    interval.length_s,
                    series.entries(interval),
                );
            }
        }
    }
    Ok(merged)
}

fn run_report(run: &Run) -> RunReport {
    RunReport {
        source: run.source.clone(),
        duration_s: run.duration_s(),
        comments: run.comments.clone(),
        series: run
            .series
            .iter()
            .map(|(name, series)| {
                let distribution = series.merged(|_| true);
                SeriesReport {
                    name: name.clone(),
                    count: distribution.total(),
                    quantiles: REPORT_QUANTILES
                        .iter()
                        .filter_map(|&q| distribution.quantile(q))
                        .collect(),
                    max_ms: distribution.max(),
                    significant_digits: series.layout().significant_digits(),
                    timeline: timeline(series),
                    distribution,
                }
            })
            .collect(),
    }
}

fn timeline(series: &crate::Series) -> Vec<TimelinePoint> {
    let mut intervals: Vec<&crate::Interval> = series.intervals().iter().collect();
    intervals.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let group = intervals.len().div_ceil(TIMELINE_POINTS).max(1);
    intervals
        .chunks(group)
        .map(|chunk| {
            let scratch = Distribution::from_slots(
                series.layout(),
                chunk.iter().flat_map(|interval| series.entries(interval)),
            );
            let value = |q| scratch.quantile(q).map(|q| q.value_ms);
            TimelinePoint {
                start_s: chunk[0].start_s,
                end_s: chunk
                    .iter()
                    .map(|i| i.start_s + i.length_s)
                    .fold(0.0, f64::max),
                count: scratch.total(),
                p50_ms: value(0.5),
                p99_ms: value(0.99),
                max_ms: value(1.0),
            }
        })
        .collect()
}
