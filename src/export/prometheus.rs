//! Prometheus text format 0.0.4 and OpenMetrics 1.0, from a snapshot's cumulative view.
//!
//! The families and labels are those of `solti-prometheus` 0.0.2, so its dashboards keep
//! working, plus taskmeter's own. With the default [`ExportConfig`]:
//!
//! | family | type | labels | meaning |
//! |---|---|---|---|
//! | `solti_runner_tasks_started_total` | counter | `runner` | tasks started |
//! | `solti_runner_tasks_completed_total` | counter | `runner`, `outcome` | tasks completed |
//! | `solti_runner_task_duration_seconds` | histogram | `runner`, `outcome` | task durations; `_sum` is exact |
//! | `solti_runner_errors_total` | counter | `runner`, `error` | runner setup/teardown errors |
//! | `solti_runner_tasks_in_flight` | gauge | `runner` | started and not yet completed |
//! | `solti_runner_task_duration_hdr_seconds` | summary | `runner`, `outcome`, `quantile` | HDR quantiles over the sliding window ([`Snapshot::window`]) by default; quantile `1` is the maximum; `_sum`, `_count` cumulative |
//! | `solti_runner_task_duration_clamped_total` | counter | `runner`, `outcome` | durations above the configured range |
//! | `solti_runner_snapshot_sink_failures_total` | counter | | snapshot sinks that failed or panicked |
//! | `solti_runner_snapshot_failures_total` | counter | | snapshots a snapshotter took that panicked |
//! | `solti_runner_snapshot_carried_stripes` | gauge | | stripes left to a later snapshot (a writer was inside a call) |
//! | `solti_runner_snapshot_timestamp_seconds` | gauge | | when the snapshot was taken, in Unix seconds; in every exposition |
//! | `solti_runner_snapshot_sequence` | gauge | | the snapshot's sequence number; in every exposition |
//!
//! The last two say how fresh an exposition is: alert on
//! `time() - solti_runner_snapshot_timestamp_seconds` growing past a few snapshot periods.
//!
//! Every label combination is written from the first scrape on, with zeros, so dashboards see
//! every series before the first event.
//!
//! Bucket counts come from the HDR histogram: a completion counts in bucket `le` when the lowest
//! value of its HDR slot is at most `le`. Below `2 × 10^digits` ms (2 s at the default 3 digits)
//! slots are 1 ms wide and the counts are exact; above, a completion within one slot width
//! above a bound (0.1 % at 3 digits) may be counted in that bound's bucket.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::{ExportConfig, Format, QuantilesOver, SOLTI_BUCKETS_SECONDS, ms_as_seconds};
use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::layout::completion_label;
use crate::snapshot::{Snapshot, View};

/// `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Snapshot {
    /// This snapshot in the Prometheus text format, with the default [`ExportConfig`].
    ///
    /// ```
    /// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType};
    ///
    /// let metrics = AtomicMetrics::new();
    /// metrics.record_task_started(RunnerType::Wasm);
    /// let text = metrics.snapshot().to_prometheus();
    /// assert!(text.contains("solti_runner_tasks_started_total{runner=\"wasm\"} 1\n"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        self.write_prometheus(&ExportConfig::default(), &mut out);
        out
    }

    /// This snapshot in OpenMetrics 1.0 text, with the default [`ExportConfig`].
    pub fn to_openmetrics(&self) -> String {
        let mut out = String::new();
        self.write_openmetrics(&ExportConfig::default(), &mut out);
        out
    }

    /// Appends the Prometheus text format to `out`.
    pub fn write_prometheus(&self, config: &ExportConfig, out: &mut String) {
        write_families(self, config, Format::Prometheus, out);
    }

    /// Appends OpenMetrics 1.0 text, `# EOF` included, to `out`.
    pub fn write_openmetrics(&self, config: &ExportConfig, out: &mut String) {
        self.write_openmetrics_families(config, out);
        out.push_str("# EOF\n");
    }

    /// Appends this snapshot's OpenMetrics families without the final `# EOF`, to join them
    /// with another registry's before ending the exposition once.
    ///
    /// ```
    /// use taskmeter::AtomicMetrics;
    /// use taskmeter::export::ExportConfig;
    ///
    /// let mut exposition = String::new();
    /// AtomicMetrics::new().latest().write_openmetrics_families(&ExportConfig::default(), &mut exposition);
    /// exposition.push_str("# TYPE my_app_up gauge\nmy_app_up 1\n"); // another registry's
    /// exposition.push_str("# EOF\n");
    /// assert_eq!(exposition.matches("# EOF").count(), 1);
    /// ```
    pub fn write_openmetrics_families(&self, config: &ExportConfig, out: &mut String) {
        write_families(self, config, Format::OpenMetrics, out);
    }
}

/// About the size of an exposition at the defaults (32 KB), so rendering one does not grow
/// the string several times.
const EXPOSITION_CAPACITY: usize = 40 * 1024;

/// Writes one family's `# HELP`, `# TYPE` (and `# UNIT`) lines. `name` is the Prometheus
/// family name (with `_total` for counters).
fn family_header(
    out: &mut String,
    format: Format,
    name: &str,
    kind: &str,
    help: &str,
    unit: Option<&str>,
) {
    // OpenMetrics names a counter family without its `_total` sample suffix.
    let family = match (format, kind) {
        (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let _ = writeln!(out, "# HELP {family} {}", escape_help(help, format));
    let _ = writeln!(out, "# TYPE {family} {kind}");
    if let (Format::OpenMetrics, Some(unit)) = (format, unit) {
        let _ = writeln!(out, "# UNIT {family} {unit}");
    }
}

fn write_families(snapshot: &Snapshot, config: &ExportConfig, format: Format, out: &mut String) {
    out.reserve(EXPOSITION_CAPACITY);
    let view = snapshot.cumulative();

    let name = config.metric_name("tasks_started_total");
    family_header(
        out,
        format,
        &name,
        "counter",
        "Total number of tasks started",
        None,
    );
    for runner in RunnerType::ALL {
        sample(
            out,
            &name,
            &[("runner", runner.as_label())],
            config.const_labels_text(),
            view.started(runner),
        );
    }

    let name = config.metric_name("tasks_completed_total");
    family_header(
        out,
        format,
        &name,
        "counter",
        "Total number of tasks completed",
        None,
    );
    for (runner, outcome) in completion_labels() {
        let labels = [
            ("runner", runner.as_label()),
            ("outcome", outcome.as_label()),
        ];
        sample(
            out,
            &name,
            &labels,
            config.const_labels_text(),
            view.completed(runner, outcome),
        );
    }

    // Buckets and quantiles of each histogram, for the histogram and summary families.
    let figures: Vec<HistogramFigures> = completion_labels()
        .map(|(runner, outcome)| HistogramFigures::new(snapshot, runner, outcome, config))
        .collect();
    write_histograms(view, config, &figures, format, out);

    let name = config.metric_name("errors_total");
    family_header(
        out,
        format,
        &name,
        "counter",
        "Total runner-level errors",
        None,
    );
    for runner in RunnerType::ALL {
        for kind in RunnerErrorKind::ALL {
            let labels = [("runner", runner.as_label()), ("error", kind.as_label())];
            sample(
                out,
                &name,
                &labels,
                config.const_labels_text(),
                view.errors(runner, kind),
            );
        }
    }

    write_snapshot_gauges(snapshot, config, format, out);

    if !config.extra_families() {
        return;
    }
    let name = config.metric_name("tasks_in_flight");
    let help = "Tasks started and not yet completed";
    family_header(out, format, &name, "gauge", help, None);
    for runner in RunnerType::ALL {
        let labels = [("runner", runner.as_label())];
        sample(
            out,
            &name,
            &labels,
            config.const_labels_text(),
            snapshot.in_flight(runner),
        );
    }

    write_summaries(snapshot, config, &figures, format, out);

    let name = config.metric_name("task_duration_clamped_total");
    let help = "Task durations above the configured range, recorded as its top";
    family_header(out, format, &name, "counter", help, None);
    for (runner, outcome) in completion_labels() {
        let labels = [
            ("runner", runner.as_label()),
            ("outcome", outcome.as_label()),
        ];
        sample(
            out,
            &name,
            &labels,
            config.const_labels_text(),
            view.clamped(runner, outcome),
        );
    }

    let unlabelled = [
        (
            "snapshot_sink_failures_total",
            "counter",
            "Snapshot sink calls that returned an error or panicked",
            snapshot.sink_failures(),
        ),
        (
            "snapshot_failures_total",
            "counter",
            "Snapshots a snapshotter took that panicked; the next one holds their calls",
            snapshot.snapshot_failures(),
        ),
        (
            "snapshot_carried_stripes",
            "gauge",
            "Stripes the snapshot left to a later one because a writer was inside a call",
            snapshot.carried_stripes() as u64,
        ),
    ];
    for (name, kind, help, value) in unlabelled {
        write_unlabelled(out, config, format, name, kind, help, value);
    }
}

/// A family of one sample with no labels but the constant ones.
fn write_unlabelled(
    out: &mut String,
    config: &ExportConfig,
    format: Format,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let name = config.metric_name(name);
    family_header(out, format, &name, kind, help, None);
    sample(out, &name, &[], config.const_labels_text(), value);
}

/// What every exposition says about the snapshot behind it, so that a stale one shows: a
/// timestamp that stops moving (alert on `time() - …_snapshot_timestamp_seconds`), and the
/// sequence.
fn write_snapshot_gauges(
    snapshot: &Snapshot,
    config: &ExportConfig,
    format: Format,
    out: &mut String,
) {
    let name = config.metric_name("snapshot_timestamp_seconds");
    let help = "Wall-clock time the snapshot behind this exposition was taken, in seconds since \
                the Unix epoch";
    family_header(out, format, &name, "gauge", help, Some("seconds"));
    let seconds = match snapshot.taken_at().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    sample(
        out,
        &name,
        &[],
        config.const_labels_text(),
        format_args!("{seconds:.3}"),
    );

    let help = "Sequence number of the snapshot behind this exposition (0: none taken yet)";
    let sequence = snapshot.sequence();
    write_unlabelled(
        out,
        config,
        format,
        "snapshot_sequence",
        "gauge",
        help,
        sequence,
    );
}

/// The bucket counts and quantiles the exports read from one histogram.
struct HistogramFigures {
    /// Completions in each configured bucket, cumulative.
    buckets: Vec<u64>,
    /// The value at each configured quantile, in ms.
    quantiles_ms: Vec<u64>,
}

impl HistogramFigures {
    fn new(
        snapshot: &Snapshot,
        runner: RunnerType,
        outcome: TaskOutcome,
        config: &ExportConfig,
    ) -> Self {
        let view = snapshot.cumulative();
        let histogram = view.duration(runner, outcome);
        let buckets = if config.buckets_seconds() == SOLTI_BUCKETS_SECONDS {
            // The default buckets were counted while the reader drained: no scan.
            view.solti_buckets[completion_label(runner, outcome)]
                .iter()
                .scan(0, |running, &count| {
                    *running += count;
                    Some(*running)
                })
                .collect()
        } else {
            let bounds_ms: Vec<f64> = config.buckets_seconds().iter().map(|b| b * 1e3).collect();
            let mut buckets = vec![0; bounds_ms.len()];
            bucket_counts(histogram, &bounds_ms, &mut buckets);
            buckets
        };
        // The quantiles (validated ascending: one pass for all) are for the HDR summary, an
        // extra family: the one scan of the histogram an export still makes.
        let quantiles_ms = if config.extra_families() {
            let quantiles = config.quantiles().iter().copied();
            quantile_view(snapshot, config)
                .duration(runner, outcome)
                .value_at_quantiles(quantiles)
                .collect()
        } else {
            Vec::new()
        };
        HistogramFigures {
            buckets,
            quantiles_ms,
        }
    }
}

/// Fills `cumulative[i]` with the completions whose HDR slot starts at or below `bounds_ms[i]`.
/// One pass over the counts in all: each bucket sums the slots after the previous bound's slot
/// up to the slot of `floor(bound)` (slot lower edges are integers, so that slot is the last
/// one starting at or below the bound).
fn bucket_counts(histogram: &Histogram<u64>, bounds_ms: &[f64], cumulative: &mut [u64]) {
    let mut running = 0_u64;
    let mut next_low = 0_u64;
    for (count, &bound) in cumulative.iter_mut().zip(bounds_ms) {
        let high = bound.floor() as u64; // bounds are validated finite and positive
        if !histogram.is_empty() && high >= next_low && next_low <= histogram.max() {
            running += histogram.count_between(next_low, high);
            next_low = histogram.highest_equivalent(high).saturating_add(1);
        }
        *count = running;
    }
}

fn write_histograms(
    view: &View,
    config: &ExportConfig,
    figures: &[HistogramFigures],
    format: Format,
    out: &mut String,
) {
    let name = config.metric_name("task_duration_seconds");
    let help = "Task execution duration in seconds";
    family_header(out, format, &name, "histogram", help, Some("seconds"));
    let bound_labels: Vec<String> = config
        .buckets_seconds()
        .iter()
        .map(|b| b.to_string())
        .collect();
    let bucket = format!("{name}_bucket");
    // Most lines of an exposition are buckets: their common start is rendered once per series.
    let mut series_start = String::new();
    for ((runner, outcome), of_label) in completion_labels().zip(figures) {
        let histogram = view.duration(runner, outcome);
        let (r, o) = (runner.as_label(), outcome.as_label());
        series_start.clear();
        let labels = [("runner", r), ("outcome", o)];
        sample_start(
            &mut series_start,
            &bucket,
            &labels,
            config.const_labels_text(),
        );
        let les = bound_labels.iter().map(String::as_str).chain(["+Inf"]);
        let counts = of_label.buckets.iter().copied().chain([histogram.len()]);
        for (le, count) in les.zip(counts) {
            out.push_str(&series_start);
            out.push_str(",le=\"");
            escape_label_value(le, out);
            let _ = writeln!(out, "\"}} {count}");
        }
        sum_and_count(out, &name, view, runner, outcome, config);
    }
}

/// The view the HDR summary's quantiles are read from.
fn quantile_view<'a>(snapshot: &'a Snapshot, config: &ExportConfig) -> &'a View {
    match config.quantiles_over() {
        QuantilesOver::Window => snapshot.window(),
        QuantilesOver::Cumulative => snapshot.cumulative(),
    }
}

/// The HDR summary: quantiles (and the maximum) from the configured view, `_sum` and `_count`
/// cumulative, as Prometheus client summaries have them.
fn write_summaries(
    snapshot: &Snapshot,
    config: &ExportConfig,
    figures: &[HistogramFigures],
    format: Format,
    out: &mut String,
) {
    let view = snapshot.cumulative();
    let name = config.metric_name("task_duration_hdr_seconds");
    let help = match config.quantiles_over() {
        QuantilesOver::Window => {
            "Task execution duration quantiles from the HDR histogram over the engine's sliding \
             window; quantile 1 is the maximum; _sum and _count since start"
        }
        QuantilesOver::Cumulative => {
            "Task execution duration quantiles from the HDR histogram since start; quantile 1 \
             is the maximum"
        }
    };
    family_header(out, format, &name, "summary", help, Some("seconds"));
    let quantile_labels: Vec<String> = config.quantiles().iter().map(|q| q.to_string()).collect();
    for ((runner, outcome), of_label) in completion_labels().zip(figures) {
        let histogram = quantile_view(snapshot, config).duration(runner, outcome);
        let (r, o) = (runner.as_label(), outcome.as_label());
        for (&value_ms, label) in of_label.quantiles_ms.iter().zip(&quantile_labels) {
            let value = quantile_seconds(histogram, value_ms);
            sample(
                out,
                &name,
                &[("runner", r), ("outcome", o), ("quantile", label)],
                config.const_labels_text(),
                value,
            );
        }
        if !config.quantiles().contains(&1.0) {
            let max = quantile_seconds(histogram, histogram.max());
            sample(
                out,
                &name,
                &[("runner", r), ("outcome", o), ("quantile", "1")],
                config.const_labels_text(),
                max,
            );
        }
        sum_and_count(out, &name, view, runner, outcome, config);
    }
}

/// The `_sum` (exact, from the duration sum) and `_count` samples of a histogram or summary.
fn sum_and_count(
    out: &mut String,
    name: &str,
    view: &View,
    runner: RunnerType,
    outcome: TaskOutcome,
    config: &ExportConfig,
) {
    let constant = config.const_labels_text();
    let labels = [
        ("runner", runner.as_label()),
        ("outcome", outcome.as_label()),
    ];
    let sum = ms_as_seconds(view.duration_sum_ms_exact(runner, outcome));
    sample(out, &format!("{name}_sum"), &labels, constant, sum);
    sample(
        out,
        &format!("{name}_count"),
        &labels,
        constant,
        view.completed(runner, outcome),
    );
}

/// A quantile of `histogram` in seconds, `NaN` when it is empty (as Prometheus clients do).
fn quantile_seconds(histogram: &Histogram<u64>, value_ms: u64) -> String {
    if histogram.is_empty() {
        "NaN".into()
    } else {
        ms_as_seconds(u128::from(value_ms))
    }
}

fn completion_labels() -> impl Iterator<Item = (RunnerType, TaskOutcome)> {
    RunnerType::ALL.into_iter().flat_map(|runner| {
        TaskOutcome::ALL
            .into_iter()
            .map(move |outcome| (runner, outcome))
    })
}

/// One sample: `name{labels,constant} value`. `constant` is the configuration's constant
/// labels, already written out ([`ExportConfig::const_labels_text`]).
fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    constant: &str,
    value: impl std::fmt::Display,
) {
    sample_start(out, name, labels, constant);
    if !labels.is_empty() || !constant.is_empty() {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A sample's name and labels, without the closing brace, so that more labels may follow.
fn sample_start(out: &mut String, name: &str, labels: &[(&str, &str)], constant: &str) {
    out.push_str(name);
    for (position, (label, value)) in labels.iter().enumerate() {
        out.push(if position == 0 { '{' } else { ',' });
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(value, out);
        out.push('"');
    }
    if !constant.is_empty() {
        out.push(if labels.is_empty() { '{' } else { ',' });
        out.push_str(constant);
    }
}

/// Label values escape `\`, `"` and line feeds, in both formats.
pub(crate) fn escape_label_value(value: &str, out: &mut String) {
    // Label values are almost always plain: copy them whole.
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes `\` and line feeds; OpenMetrics also escapes `"`.
fn escape_help(help: &str, format: Format) -> String {
    let mut escaped = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if format == Format::OpenMetrics => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_are_cumulative_and_exact_in_the_unit_range() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 86_400_000, 3).unwrap();
        for value in [5, 10, 11, 25, 1_000, 1_999, 4_000_000] {
            histogram.record(value).unwrap();
        }
        let bounds = [10.0, 25.0, 1_000.0, 2_000.0, 3_600_000.0];
        let mut counts = [0; 5];
        bucket_counts(&histogram, &bounds, &mut counts);
        assert_eq!(counts, [2, 4, 5, 6, 6]);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\\y\"z\nw")], "", 1);
        assert_eq!(out, "m{a=\"x\\\\y\\\"z\\nw\"} 1\n");
        assert_eq!(
            escape_help("a\\b\n\"c\"", Format::Prometheus),
            "a\\\\b\\n\"c\""
        );
        assert_eq!(escape_help("\"c\"", Format::OpenMetrics), "\\\"c\\\"");
    }
}
