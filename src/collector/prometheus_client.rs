//! The collector for prometheus-client's registry.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::AtomicMetrics;
use crate::export::families::{self, Encoder, Kind, Labels, Number};
use crate::export::{Endpoint, ExportConfig};

/// A `prometheus_client::collector::Collector` of taskmeter's families, for a
/// prometheus-client registry (prometheus-client 0.26, feature `prometheus-client`), with the
/// guarantees of the [module docs](crate::collector).
///
/// - **OpenMetrics text**, as that registry encodes it: a counter's family is named without
///   `_total` in its `TYPE` line and its sample with it, as OpenMetrics wants.
/// - **What it cannot carry.** prometheus-client has no summary type: the HDR summary family
///   (`…_task_duration_hdr_seconds`, quantiles from the HDR histograms) is left out; the
///   classic histograms carry the same durations. Its text encoder writes no native
///   histograms either. Serve taskmeter's own [`Endpoint`] for those.
/// - **No collision check.** `Registry::register_collector` accepts any collector: a name
///   registered twice is written twice, and a scraper then rejects the exposition. Register
///   one collector per engine and namespace.
///
/// ```
/// use std::sync::Arc;
/// use prometheus_client::encoding::text::encode;
/// use prometheus_client::metrics::counter::Counter;
/// use prometheus_client::registry::Registry;
/// use taskmeter::collector::PrometheusClientCollector;
/// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
///
/// let metrics = Arc::new(AtomicMetrics::new());
/// let mut registry = Registry::default();
/// let requests = Counter::<u64>::default();
/// registry.register("api_requests", "API requests", requests.clone());
/// registry.register_collector(Box::new(PrometheusClientCollector::new(Arc::clone(&metrics))));
///
/// requests.inc();
/// metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 120);
/// metrics.snapshot();
///
/// let mut text = String::new();
/// encode(&mut text, &registry).unwrap();
/// assert!(text.contains("api_requests_total 1"));
/// assert!(text.contains(r#"solti_runner_tasks_completed_total{runner="wasm",outcome="success"} 1"#));
/// ```
#[derive(Debug)]
pub struct PrometheusClientCollector {
    endpoint: Endpoint,
}

impl PrometheusClientCollector {
    /// A collector of `metrics`' families, named and shaped by the default [`ExportConfig`].
    pub fn new(metrics: Arc<AtomicMetrics>) -> Self {
        PrometheusClientCollector {
            endpoint: Endpoint::new(metrics),
        }
    }

    /// Names, buckets and constant labels from `export`, as taskmeter's own exposition would
    /// use them.
    pub fn export(mut self, export: ExportConfig) -> Self {
        self.endpoint = self.endpoint.export(export);
        self
    }

    /// Past this age, an encode takes a snapshot itself (default 30 s); `Duration::MAX` never
    /// does ([`Endpoint::max_snapshot_age`]).
    pub fn max_snapshot_age(mut self, max_snapshot_age: Duration) -> Self {
        self.endpoint = self.endpoint.max_snapshot_age(max_snapshot_age);
        self
    }
}

impl Collector for PrometheusClientCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.endpoint.snapshot();
        let config = self.endpoint.export_config();
        // The registry's encoder borrows a family while its series are written: the families
        // are gathered first, then written.
        let mut gathered = Gathered::new(config);
        families::encode(&snapshot, config, &mut gathered);
        for family in &gathered.families {
            let (name, kind) = match family.kind {
                Kind::Counter => (
                    family.name.strip_suffix("_total").unwrap_or(&family.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (family.name.as_str(), MetricType::Gauge),
                Kind::Histogram => (family.name.as_str(), MetricType::Histogram),
                Kind::Summary => continue,
            };
            let mut metric = encoder.encode_descriptor(name, &family.help, None, kind)?;
            for series in &family.series {
                let mut sample = metric.encode_family(&series.labels)?;
                match &series.value {
                    Value::Count(count) if family.kind == Kind::Counter => {
                        sample.encode_counter::<NoLabelSet, u64, u64>(count, None)?;
                    }
                    Value::Count(count) => sample.encode_gauge(count)?,
                    Value::Signed(value) => sample.encode_gauge(value)?,
                    Value::Float(value) if family.kind == Kind::Counter => {
                        sample.encode_counter::<NoLabelSet, f64, f64>(value, None)?;
                    }
                    Value::Float(value) => sample.encode_gauge(value)?,
                    Value::Histogram {
                        sum_seconds,
                        count,
                        buckets,
                    } => sample.encode_histogram::<NoLabelSet>(
                        *sum_seconds,
                        *count,
                        buckets,
                        None,
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// One family as [`families::encode`] gives it.
struct Family {
    name: String,
    kind: Kind,
    help: String,
    series: Vec<Series>,
}

struct Series {
    /// The series' labels, then the constant labels.
    labels: Vec<(String, String)>,
    value: Value,
}

enum Value {
    Count(u64),
    Signed(i64),
    Float(f64),
    Histogram {
        sum_seconds: f64,
        count: u64,
        /// `(upper bound, count in this bucket alone)`, `+Inf` last, as prometheus-client
        /// takes them.
        buckets: Vec<(f64, u64)>,
    },
}

/// The [`Encoder`] that gathers the families.
struct Gathered {
    families: Vec<Family>,
    constant: Vec<(String, String)>,
}

impl Gathered {
    fn new(config: &ExportConfig) -> Self {
        Gathered {
            families: Vec::new(),
            constant: config.const_labels().to_vec(),
        }
    }

    fn push(&mut self, labels: Labels<'_>, value: Value) {
        let mut all: Vec<(String, String)> = (labels.iter())
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        all.extend(self.constant.iter().cloned());
        let family = self.families.last_mut().expect("a family first");
        family.series.push(Series { labels: all, value });
    }
}

impl Encoder for Gathered {
    fn family(&mut self, name: &str, kind: Kind, help: &str, _unit: Option<&str>) {
        self.families.push(Family {
            name: name.to_owned(),
            kind,
            help: help.to_owned(),
            series: Vec::new(),
        });
    }

    fn number(&mut self, labels: Labels<'_>, value: Number) {
        let value = match value {
            Number::Count(count) => Value::Count(count),
            Number::Signed(value) => Value::Signed(value),
            // The text exposition writes seconds to the millisecond.
            Number::Seconds(seconds) => Value::Float((seconds * 1e3).round() / 1e3),
        };
        self.push(labels, value);
    }

    fn histogram(
        &mut self,
        labels: Labels<'_>,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum_ms: u128,
    ) {
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = (bounds.iter().zip(cumulative))
            .map(|(&bound, &at_or_below)| {
                let alone = at_or_below - below;
                below = at_or_below;
                (bound, alone)
            })
            .collect();
        buckets.push((f64::INFINITY, count - below));
        let value = Value::Histogram {
            sum_seconds: sum_ms as f64 / 1e3,
            count,
            buckets,
        };
        self.push(labels, value);
    }

    fn summary(
        &mut self,
        _labels: Labels<'_>,
        _quantiles: &[(f64, Option<u64>)],
        _count: u64,
        _sum_ms: u128,
    ) {
        // prometheus-client has no summary type: the family is skipped when written.
    }
}
