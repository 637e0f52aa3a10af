//! An application's `prometheus::Registry` served inside taskmeter's [`Endpoint`]
//! ([`Endpoint::merge_registry`]): one scrape holds both, in every format the endpoint
//! negotiates, taskmeter's native histograms included.
//!
//! The registry is gathered at every scrape: its values are the application's, not the
//! snapshot's, so they are never cached with taskmeter's body. prometheus's own text encoder
//! writes them in the Prometheus text format; for OpenMetrics and protobuf that text is read
//! back into families and written again. One reading serves every format whether or not
//! prometheus was built with its `protobuf` feature (its data model's getters differ between
//! the two builds, and an application's other crates decide which one is built).
//!
//! [`Endpoint`]: super::Endpoint
//! [`Endpoint::merge_registry`]: super::Endpoint::merge_registry

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use prometheus::proto::{MetricFamily, MetricType};

use super::families::{self, Encoder, Kind, Labels, Number};
use super::prometheus::escape_label_value;
use super::{ExportConfig, Format};
use crate::snapshot::Snapshot;

/// A family of the merged registry that uses a name of taskmeter's exposition (a family's, or
/// one of its samples'): [`Endpoint::merge_registry`](super::Endpoint::merge_registry)
/// refuses the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCollision {
    family: String,
}

impl RegistryCollision {
    /// The registry's family whose name collides.
    pub fn family(&self) -> &str {
        &self.family
    }
}

impl fmt::Display for RegistryCollision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the registry's family `{}` uses a name of taskmeter's exposition \
             (a family's or one of its samples'); rename it or change ExportConfig's namespace",
            self.family
        )
    }
}

impl std::error::Error for RegistryCollision {}

/// The names a family occupies in an exposition: its own, its samples' and, for a counter,
/// its OpenMetrics family name (without `_total`).
pub(crate) fn occupied_names(name: &str, kind: Kind) -> Vec<String> {
    let mut names = vec![name.to_owned()];
    let suffixes: &[&str] = match kind {
        Kind::Histogram => &["_bucket", "_sum", "_count"],
        Kind::Summary => &["_sum", "_count"],
        Kind::Counter | Kind::Gauge => &[],
    };
    names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    if let (Kind::Counter, Some(family)) = (kind, name.strip_suffix("_total")) {
        names.push(family.to_owned());
    }
    names
}

/// The names taskmeter's exposition of `snapshot` occupies under `config`: every family it
/// can write, the optional ones and the native histograms' included.
pub(crate) fn taskmeter_names(snapshot: &Snapshot, config: &ExportConfig) -> HashSet<String> {
    struct Names(HashSet<String>);
    impl Encoder for Names {
        fn family(&mut self, name: &str, kind: Kind, _help: &str, _unit: Option<&str>) {
            self.0.extend(occupied_names(name, kind));
        }
        fn number(&mut self, _labels: Labels<'_>, _value: Number) {}
        fn histogram(&mut self, _: Labels<'_>, _: &[f64], _: &[u64], _: u64, _: u128) {}
        fn summary(&mut self, _: Labels<'_>, _: &[(f64, Option<u64>)], _: u64, _: u128) {}
        fn carries_native_histograms(&self) -> bool {
            true
        }
    }
    let mut names = Names(HashSet::new());
    families::encode_every_family(snapshot, config, &mut names);
    names.0
}

fn kind_of(kind: MetricType) -> Kind {
    match kind {
        MetricType::COUNTER => Kind::Counter,
        MetricType::HISTOGRAM => Kind::Histogram,
        MetricType::SUMMARY => Kind::Summary,
        MetricType::GAUGE | MetricType::UNTYPED => Kind::Gauge,
    }
}

/// A registry merged into an endpoint, and the names taskmeter's exposition occupies.
#[derive(Clone)]
pub(crate) struct MergedRegistry {
    registry: prometheus::Registry,
    taken: Arc<HashSet<String>>,
}

impl fmt::Debug for MergedRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergedRegistry")
            .field("taken", &self.taken.len())
            .finish_non_exhaustive()
    }
}

impl MergedRegistry {
    /// `registry`, unless one of its families uses a name of `taken`.
    pub(crate) fn new(
        registry: prometheus::Registry,
        taken: HashSet<String>,
    ) -> Result<Self, RegistryCollision> {
        let merged = MergedRegistry {
            registry,
            taken: Arc::new(taken),
        };
        if let Some(family) = (merged.gather_all().iter()).find(|family| merged.collides(family)) {
            return Err(RegistryCollision {
                family: family.name().to_owned(),
            });
        }
        Ok(merged)
    }

    /// The same registry against another exposition's names.
    pub(crate) fn with_taken(&self, taken: HashSet<String>) -> Self {
        MergedRegistry {
            registry: self.registry.clone(),
            taken: Arc::new(taken),
        }
    }

    fn collides(&self, family: &MetricFamily) -> bool {
        occupied_names(family.name(), kind_of(family.get_field_type()))
            .iter()
            .any(|name| self.taken.contains(name))
    }

    /// Everything the registry gathers now; nothing if one of its collectors panics (the
    /// scrape then serves taskmeter's families alone).
    fn gather_all(&self) -> Vec<MetricFamily> {
        catch_unwind(AssertUnwindSafe(|| self.registry.gather())).unwrap_or_default()
    }

    /// The registry's families in the Prometheus text format. Left out: untyped families
    /// (prometheus's text encoder cannot write them), a family registered after the merge
    /// under a name taskmeter uses, and a family the encoder refuses.
    fn prometheus_text(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        let mut text = String::new();
        for family in self.gather_all() {
            if family.get_field_type() == MetricType::UNTYPED || self.collides(&family) {
                continue;
            }
            let mut one = String::new();
            if encoder
                .encode_utf8(std::slice::from_ref(&family), &mut one)
                .is_ok()
            {
                text.push_str(&one);
            }
        }
        text
    }

    /// Appends the registry's families to `body`, taskmeter's body in `format`: text as
    /// prometheus's encoder writes it (OpenMetrics before the closing `# EOF`), protobuf as
    /// length-delimited `io.prometheus.client.MetricFamily` messages.
    pub(crate) fn append(&self, format: Format, body: &mut Vec<u8>) {
        let text = self.prometheus_text();
        match format {
            Format::Prometheus => body.extend_from_slice(text.as_bytes()),
            Format::OpenMetrics => {
                const EOF: &[u8] = b"# EOF\n";
                if body.ends_with(EOF) {
                    body.truncate(body.len() - EOF.len());
                }
                let mut openmetrics = String::new();
                for family in parse(&text) {
                    family.write_openmetrics(&mut openmetrics);
                }
                body.extend_from_slice(openmetrics.as_bytes());
                body.extend_from_slice(EOF);
            }
            #[cfg(feature = "native-histograms")]
            Format::Protobuf => {
                use prost::Message;
                for family in parse(&text) {
                    family
                        .to_protobuf()
                        .encode_length_delimited(body)
                        .expect("a Vec grows as needed");
                }
            }
        }
    }
}

/// One family as prometheus's text encoder writes it.
#[derive(Debug, PartialEq)]
struct TextFamily {
    name: String,
    help: String,
    kind: Option<String>,
    samples: Vec<TextSample>,
}

#[derive(Debug, PartialEq)]
struct TextSample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

/// The families of Prometheus text written by prometheus's encoder: `# HELP` (when the help
/// is not empty), `# TYPE`, then the samples. A line it cannot read is skipped.
fn parse(text: &str) -> Vec<TextFamily> {
    let mut families: Vec<TextFamily> = Vec::new();
    let new_family = |name: &str, help: String| TextFamily {
        name: name.to_owned(),
        help,
        kind: None,
        samples: Vec::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.push(new_family(name, unescape_help(help)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let described = families
                .last()
                .is_some_and(|family| family.name == name && family.kind.is_none());
            if !described {
                families.push(new_family(name, String::new()));
            }
            let family = families.last_mut().expect("pushed above");
            family.kind = Some(kind.to_owned());
        } else if let (Some(sample), Some(family)) = (parse_sample(line), families.last_mut()) {
            family.samples.push(sample);
        }
    }
    families
}

fn unescape_help(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// `name{label="value",...} value [timestamp_ms]`.
fn parse_sample(line: &str) -> Option<TextSample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once("=\"")?;
            let (value, after) = read_label_value(after)?;
            labels.push((label.trim_start_matches(',').to_owned(), value));
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    let timestamp_ms = fields.next().and_then(|ts| ts.parse().ok());
    Some(TextSample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// An escaped label value up to its closing quote, and what follows the quote.
fn read_label_value(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

fn parse_value(value: &str) -> Option<f64> {
    match value {
        "+Inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// A value as both text formats spell it.
fn format_value(value: f64) -> String {
    match value {
        f64::INFINITY => "+Inf".to_owned(),
        f64::NEG_INFINITY => "-Inf".to_owned(),
        value if value.is_nan() => "NaN".to_owned(),
        value => value.to_string(),
    }
}

impl TextFamily {
    /// The family in OpenMetrics 1.0. A counter is named without `_total`; one whose name
    /// has no `_total` (prometheus allows it, OpenMetrics does not) is written as `unknown`,
    /// so that its samples keep the name the Prometheus text format gives them.
    fn write_openmetrics(&self, out: &mut String) {
        let kind = self.kind.as_deref().unwrap_or("unknown");
        let (family, kind) = match (kind, self.name.strip_suffix("_total")) {
            ("counter", Some(family)) => (family, "counter"),
            ("counter" | "untyped", _) => (self.name.as_str(), "unknown"),
            (kind, _) => (self.name.as_str(), kind),
        };
        if !self.help.is_empty() {
            out.push_str(&format!("# HELP {family} "));
            for c in self.help.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '"' => out.push_str("\\\""),
                    c => out.push(c),
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("# TYPE {family} {kind}\n"));
        for sample in &self.samples {
            out.push_str(&sample.name);
            for (position, (name, value)) in sample.labels.iter().enumerate() {
                out.push(if position == 0 { '{' } else { ',' });
                out.push_str(name);
                out.push_str("=\"");
                let value = match (name.as_str(), parse_value(value)) {
                    ("le" | "quantile", Some(bound)) => format_value(bound),
                    _ => value.clone(),
                };
                escape_label_value(&value, out);
                out.push('"');
            }
            if !sample.labels.is_empty() {
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(sample.value));
            if let Some(ms) = sample.timestamp_ms {
                out.push_str(&format!(
                    " {}.{:03}",
                    ms.div_euclid(1000),
                    ms.rem_euclid(1000)
                ));
            }
            out.push('\n');
        }
    }

    /// The family as an `io.prometheus.client.MetricFamily`: a histogram's or a summary's
    /// samples gathered back into one metric per label set.
    #[cfg(feature = "native-histograms")]
    fn to_protobuf(&self) -> model::MetricFamily {
        let kind = match self.kind.as_deref() {
            Some("counter") => model::MetricType::Counter,
            Some("gauge") => model::MetricType::Gauge,
            Some("histogram") => model::MetricType::Histogram,
            Some("summary") => model::MetricType::Summary,
            _ => model::MetricType::Untyped,
        };
        let mut metrics: Vec<model::Metric> = Vec::new();
        for sample in &self.samples {
            let series = sample.labels.iter().filter(|(name, _)| {
                !matches!(
                    (kind, name.as_str()),
                    (model::MetricType::Histogram, "le") | (model::MetricType::Summary, "quantile")
                )
            });
            let label: Vec<model::LabelPair> = series
                .map(|(name, value)| model::LabelPair {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect();
            let at = match metrics.iter().position(|metric| metric.label == label) {
                Some(at) => at,
                None => {
                    metrics.push(model::Metric {
                        label,
                        timestamp_ms: sample.timestamp_ms.unwrap_or_default(),
                        ..Default::default()
                    });
                    metrics.len() - 1
                }
            };
            fill(&mut metrics[at], kind, &self.name, sample);
        }
        model::MetricFamily {
            name: self.name.clone(),
            help: self.help.clone(),
            r#type: kind as i32,
            metric: metrics,
            ..Default::default()
        }
    }
}

#[cfg(feature = "native-histograms")]
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as model;

/// Adds one text sample of family `family` to its metric.
#[cfg(feature = "native-histograms")]
fn fill(metric: &mut model::Metric, kind: model::MetricType, family: &str, sample: &TextSample) {
    let suffix = sample.name.strip_prefix(family).unwrap_or("");
    let label = |name: &str| {
        (sample.labels.iter())
            .find(|(label, _)| label == name)
            .and_then(|(_, value)| parse_value(value))
    };
    match kind {
        model::MetricType::Counter => {
            metric.counter = Some(model::Counter {
                value: sample.value,
                ..Default::default()
            });
        }
        model::MetricType::Histogram => {
            let histogram = metric.histogram.get_or_insert_with(Default::default);
            match (suffix, label("le")) {
                ("_bucket", Some(bound)) if bound.is_finite() => {
                    histogram.bucket.push(model::Bucket {
                        upper_bound: bound,
                        cumulative_count: sample.value as u64,
                        ..Default::default()
                    });
                }
                ("_sum", _) => histogram.sample_sum = sample.value,
                ("_count", _) => histogram.sample_count = sample.value as u64,
                _ => {}
            }
        }
        model::MetricType::Summary => {
            let summary = metric.summary.get_or_insert_with(Default::default);
            match (suffix, label("quantile")) {
                ("", Some(quantile)) => summary.quantile.push(model::Quantile {
                    quantile,
                    value: sample.value,
                }),
                ("_sum", _) => summary.sample_sum = sample.value,
                ("_count", _) => summary.sample_count = sample.value as u64,
                _ => {}
            }
        }
        model::MetricType::Gauge
        | model::MetricType::Untyped
        | model::MetricType::GaugeHistogram => {
            metric.gauge = Some(model::Gauge {
                value: sample.value,
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// What prometheus's encoder writes reads back sample by sample, escapes and special
    /// values included.
    #[test]
    fn text_reads_back_as_written() {
        let text = "# HELP app_requests_total Requests \\\\ served\\nby the API\n\
                    # TYPE app_requests_total counter\n\
                    app_requests_total{path=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 3\n\
                    # TYPE app_up gauge\n\
                    app_up NaN 1700000000123\n\
                    app_up{x=\"\"} -inf\n";
        let families = parse(text);
        assert_eq!(families.len(), 2);
        assert_eq!(families[0].help, "Requests \\ served\nby the API");
        assert_eq!(families[0].kind.as_deref(), Some("counter"));
        assert_eq!(
            families[0].samples[0].labels,
            [
                ("path".to_owned(), "/a\"b\\c\nd".to_owned()),
                ("code".to_owned(), "200".to_owned())
            ]
        );
        assert_eq!(families[0].samples[0].value, 3.0);
        assert_eq!(families[1].help, "");
        assert!(families[1].samples[0].value.is_nan());
        assert_eq!(families[1].samples[0].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(families[1].samples[1].value, f64::NEG_INFINITY);
        let mut openmetrics = String::new();
        for family in &families {
            family.write_openmetrics(&mut openmetrics);
        }
        assert_eq!(
            openmetrics,
            "# HELP app_requests Requests \\\\ served\\nby the API\n\
             # TYPE app_requests counter\n\
             app_requests_total{path=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 3\n\
             # TYPE app_up gauge\n\
             app_up NaN 1700000000.123\n\
             app_up{x=\"\"} -Inf\n"
        );
    }

    #[test]
    fn a_line_that_cannot_be_read_is_skipped() {
        for line in ["x{a=\"unterminated} 1", "x{a=1} 1", "x", "x{a=\"1\"} one"] {
            assert_eq!(parse_sample(line), None, "{line}");
        }
    }
}
