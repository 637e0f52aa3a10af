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

use super::families::{self, Encoder, Kind, Labels, Number};
use super::{ExportConfig, Format, ms_as_seconds};
use crate::snapshot::Snapshot;

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

fn write_families(snapshot: &Snapshot, config: &ExportConfig, format: Format, out: &mut String) {
    out.reserve(EXPOSITION_CAPACITY);
    let mut text = TextEncoder {
        out,
        format,
        constant: config.const_labels_text(),
        bounds: config.buckets_seconds(),
        bound_labels: config
            .buckets_seconds()
            .iter()
            .map(f64::to_string)
            .collect(),
        quantile_labels: config
            .quantiles()
            .iter()
            .map(f64::to_string)
            .chain((!config.quantiles().contains(&1.0)).then(|| "1".to_owned()))
            .collect(),
        family: String::new(),
        sum_name: String::new(),
        count_name: String::new(),
        bucket_name: String::new(),
        series_start: String::new(),
    };
    families::encode(snapshot, config, &mut text);
}

/// The text formats' [`Encoder`].
struct TextEncoder<'a> {
    out: &'a mut String,
    format: Format,
    /// The constant labels, already written out ([`ExportConfig::const_labels_text`]).
    constant: &'a str,
    /// The configured histogram buckets, and their `le` values rendered once per exposition.
    bounds: &'a [f64],
    bound_labels: Vec<String>,
    /// The summary's `quantile` values in the order the summaries give them: the configured
    /// quantiles, then `1` (the maximum) unless configured.
    quantile_labels: Vec<String>,
    /// The current family's sample name (with `_total` for counters), and its `_sum`,
    /// `_count` and `_bucket` sample names, written once per family.
    family: String,
    sum_name: String,
    count_name: String,
    bucket_name: String,
    /// Scratch: the common start of a histogram series' bucket lines.
    series_start: String,
}

impl TextEncoder<'_> {
    /// The `_sum` (exact, from the duration sum) and `_count` samples of a histogram or
    /// summary.
    fn sum_and_count(&mut self, labels: Labels<'_>, count: u64, sum_ms: u128) {
        let sum = ms_as_seconds(sum_ms);
        sample(self.out, &self.sum_name, labels, self.constant, sum);
        sample(self.out, &self.count_name, labels, self.constant, count);
    }
}

impl Encoder for TextEncoder<'_> {
    fn family(&mut self, name: &str, kind: Kind, help: &str, unit: Option<&str>) {
        // OpenMetrics names a counter family without its `_total` sample suffix.
        let family = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let out = &mut *self.out;
        let _ = writeln!(out, "# HELP {family} {}", escape_help(help, self.format));
        let _ = writeln!(out, "# TYPE {family} {}", kind.as_str());
        if let (Format::OpenMetrics, Some(unit)) = (self.format, unit) {
            let _ = writeln!(out, "# UNIT {family} {unit}");
        }
        self.family.clear();
        self.family.push_str(name);
        for (sample_name, suffix) in [
            (&mut self.sum_name, "_sum"),
            (&mut self.count_name, "_count"),
            (&mut self.bucket_name, "_bucket"),
        ] {
            sample_name.clear();
            sample_name.push_str(name);
            sample_name.push_str(suffix);
        }
    }

    fn number(&mut self, labels: Labels<'_>, value: Number) {
        let (out, name, constant) = (&mut *self.out, &self.family, self.constant);
        match value {
            Number::Count(value) => sample(out, name, labels, constant, value),
            Number::Signed(value) => sample(out, name, labels, constant, value),
            Number::Seconds(value) => {
                sample(out, name, labels, constant, format_args!("{value:.3}"))
            }
        }
    }

    fn histogram(
        &mut self,
        labels: Labels<'_>,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum_ms: u128,
    ) {
        // Most lines of an exposition are buckets: their common start is rendered once per
        // series, and the configured bounds once per exposition.
        self.series_start.clear();
        sample_start(
            &mut self.series_start,
            &self.bucket_name,
            labels,
            self.constant,
        );
        let other_bounds: Vec<String>;
        let bound_labels = if bounds == self.bounds {
            &self.bound_labels
        } else {
            other_bounds = bounds.iter().map(f64::to_string).collect();
            &other_bounds
        };
        let les = bound_labels.iter().map(String::as_str).chain(["+Inf"]);
        let counts = cumulative.iter().copied().chain([count]);
        for (le, count) in les.zip(counts) {
            self.out.push_str(&self.series_start);
            self.out
                .push_str(if labels.is_empty() && self.constant.is_empty() {
                    "{le=\""
                } else {
                    ",le=\""
                });
            escape_label_value(le, self.out);
            let _ = writeln!(self.out, "\"}} {count}");
        }
        self.sum_and_count(labels, count, sum_ms);
    }

    fn summary(
        &mut self,
        labels: Labels<'_>,
        quantiles: &[(f64, Option<u64>)],
        count: u64,
        sum_ms: u128,
    ) {
        let mut with_quantile: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
        for (&(quantile, value_ms), label) in quantiles.iter().zip(&self.quantile_labels) {
            debug_assert_eq!(label.parse::<f64>().ok(), Some(quantile));
            with_quantile.clear();
            with_quantile.extend_from_slice(labels);
            with_quantile.push(("quantile", label));
            // NaN when empty, as Prometheus clients do.
            let value = value_ms.map_or_else(|| "NaN".into(), |ms| ms_as_seconds(u128::from(ms)));
            sample(self.out, &self.family, &with_quantile, self.constant, value);
        }
        self.sum_and_count(labels, count, sum_ms);
    }
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
