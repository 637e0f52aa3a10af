//! The collector for prometheus 0.14's registry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto;

use crate::AtomicMetrics;
use crate::export::families::{self, Encoder, Kind, Labels, Number};
use crate::export::{Endpoint, ExportConfig};

/// A `prometheus::core::Collector` of taskmeter's families, for a `prometheus::Registry`
/// (prometheus 0.14, feature `prometheus`), with the guarantees of the
/// [module docs](crate::collector). Cheap to gather: it renders the published snapshot into
/// `MetricFamily` values.
///
/// - **Exact descriptors.** [`Collector::desc`] describes every family the collector can
///   emit (with the `solti` feature, taskvisor's too, whether or not a
///   `solti::TaskvisorMetrics` is attached yet), with its label names and the configured
///   constant labels, so `Registry::register` refuses a name the registry already holds with
///   its own error.
/// - **What it cannot carry.** prometheus 0.14's data model has no native histograms, and
///   its encoders write the Prometheus text format and protobuf, not OpenMetrics: the
///   classic histograms and the summaries are there, the native histogram family (feature
///   `native-histograms`) is not. Serve taskmeter's own [`Endpoint`] for those.
///
/// ```
/// use std::sync::Arc;
/// use prometheus::{Encoder, IntCounter, Registry, TextEncoder};
/// use taskmeter::collector::PrometheusCollector;
/// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
///
/// let metrics = Arc::new(AtomicMetrics::new());
/// let registry = Registry::new();
/// let requests = IntCounter::new("api_requests_total", "API requests").unwrap();
/// registry.register(Box::new(requests.clone())).unwrap();
/// registry.register(Box::new(PrometheusCollector::new(Arc::clone(&metrics)))).unwrap();
///
/// requests.inc();
/// metrics.record_task_started(RunnerType::Wasm);
/// metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 120);
/// metrics.snapshot();
///
/// let mut text = Vec::new();
/// TextEncoder::new().encode(&registry.gather(), &mut text).unwrap();
/// let text = String::from_utf8(text).unwrap();
/// assert!(text.contains("api_requests_total 1"));
/// assert!(text.contains(r#"solti_runner_tasks_completed_total{runner="wasm",outcome="success"} 1"#));
///
/// // A second collector of the same families is refused.
/// assert!(registry.register(Box::new(PrometheusCollector::new(metrics))).is_err());
/// ```
#[derive(Debug)]
pub struct PrometheusCollector {
    endpoint: Endpoint,
    descs: Vec<Desc>,
}

impl PrometheusCollector {
    /// A collector of `metrics`' families, named and shaped by the default [`ExportConfig`].
    ///
    /// # Panics
    ///
    /// Never with a configuration [`ExportConfig::builder`] accepted: its names and labels
    /// are valid Prometheus names.
    pub fn new(metrics: Arc<AtomicMetrics>) -> Self {
        let endpoint = Endpoint::new(metrics);
        let descs = describe(&endpoint);
        PrometheusCollector { endpoint, descs }
    }

    /// Names, buckets, quantiles and constant labels from `export`, as taskmeter's own
    /// exposition would use them.
    pub fn export(mut self, export: ExportConfig) -> Self {
        self.endpoint = self.endpoint.export(export);
        self.descs = describe(&self.endpoint);
        self
    }

    /// Past this age, a gather takes a snapshot itself (default 30 s); `Duration::MAX` never
    /// does ([`Endpoint::max_snapshot_age`]).
    pub fn max_snapshot_age(mut self, max_snapshot_age: Duration) -> Self {
        self.endpoint = self.endpoint.max_snapshot_age(max_snapshot_age);
        self
    }
}

impl Collector for PrometheusCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let snapshot = self.endpoint.snapshot();
        let config = self.endpoint.export_config();
        let mut encoder = RegistryEncoder::new(config);
        families::encode(&snapshot, config, &mut encoder);
        encoder.families
    }
}

/// The descriptors of every family the collector can emit: one per family, its series'
/// label names (the first series's: every series of a family has the same names) and the
/// constant labels.
fn describe(endpoint: &Endpoint) -> Vec<Desc> {
    let config = endpoint.export_config();
    let mut encoder = RegistryEncoder::new(config);
    families::encode_every_family(&endpoint.engine().latest(), config, &mut encoder);
    let const_labels: HashMap<String, String> = config.const_labels().iter().cloned().collect();
    encoder
        .families
        .iter()
        .map(|family| {
            let variable_labels = family.get_metric().first().map_or_else(Vec::new, |metric| {
                let constant = |name: &str| config.const_labels().iter().any(|(n, _)| n == name);
                (metric.get_label().iter())
                    .map(|label| label.name())
                    .filter(|name| !constant(name))
                    .map(str::to_owned)
                    .collect()
            });
            Desc::new(
                family.name().to_owned(),
                family.help().to_owned(),
                variable_labels,
                const_labels.clone(),
            )
            .expect("ExportConfig's names and labels are valid Prometheus names")
        })
        .collect()
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut label = proto::LabelPair::default();
    label.set_name(name.to_owned());
    label.set_value(value.to_owned());
    label
}

/// The registry's [`Encoder`]: one `MetricFamily` per family, as prometheus 0.14 holds them.
struct RegistryEncoder {
    families: Vec<proto::MetricFamily>,
    constant: Vec<proto::LabelPair>,
}

impl RegistryEncoder {
    fn new(config: &ExportConfig) -> Self {
        RegistryEncoder {
            families: Vec::new(),
            constant: (config.const_labels().iter())
                .map(|(name, value)| label(name, value))
                .collect(),
        }
    }

    /// Adds a series with `labels` and the constant labels to the current family.
    fn push(&mut self, labels: Labels<'_>, fill: impl FnOnce(&mut proto::Metric)) {
        let mut metric = proto::Metric::default();
        let mut all: Vec<proto::LabelPair> = labels.iter().map(|(n, v)| label(n, v)).collect();
        all.extend(self.constant.iter().cloned());
        metric.set_label(all);
        fill(&mut metric);
        let family = self.families.last_mut().expect("a family first");
        family.mut_metric().push(metric);
    }
}

impl Encoder for RegistryEncoder {
    fn family(&mut self, name: &str, kind: Kind, help: &str, _unit: Option<&str>) {
        let mut family = proto::MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(match kind {
            Kind::Counter => proto::MetricType::COUNTER,
            Kind::Gauge => proto::MetricType::GAUGE,
            Kind::Histogram => proto::MetricType::HISTOGRAM,
            Kind::Summary => proto::MetricType::SUMMARY,
        });
        self.families.push(family);
    }

    fn number(&mut self, labels: Labels<'_>, value: Number) {
        let is_counter = self
            .families
            .last()
            .expect("a family first")
            .get_field_type()
            == proto::MetricType::COUNTER;
        let value = match value {
            Number::Count(value) => value as f64,
            Number::Signed(value) => value as f64,
            // The text exposition writes seconds to the millisecond.
            Number::Seconds(value) => (value * 1e3).round() / 1e3,
        };
        self.push(labels, |metric| {
            if is_counter {
                let mut counter = proto::Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            } else {
                let mut gauge = proto::Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        });
    }

    fn histogram(
        &mut self,
        labels: Labels<'_>,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum_ms: u128,
    ) {
        let buckets = bounds
            .iter()
            .zip(cumulative)
            .map(|(&upper_bound, &cumulative_count)| {
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(upper_bound);
                bucket.set_cumulative_count(cumulative_count);
                bucket
            })
            .collect();
        let mut histogram = proto::Histogram::default();
        histogram.set_sample_count(count);
        histogram.set_sample_sum(sum_ms as f64 / 1e3);
        histogram.set_bucket(buckets);
        self.push(labels, |metric| metric.set_histogram(histogram));
    }

    fn summary(
        &mut self,
        labels: Labels<'_>,
        quantiles: &[(f64, Option<u64>)],
        count: u64,
        sum_ms: u128,
    ) {
        let quantiles = quantiles
            .iter()
            .map(|&(rank, value_ms)| {
                let mut quantile = proto::Quantile::default();
                quantile.set_quantile(rank);
                quantile.set_value(value_ms.map_or(f64::NAN, |ms| ms as f64 / 1e3));
                quantile
            })
            .collect();
        let mut summary = proto::Summary::default();
        summary.set_sample_count(count);
        summary.set_sample_sum(sum_ms as f64 / 1e3);
        summary.set_quantile(quantiles);
        self.push(labels, |metric| metric.set_summary(summary));
    }
}
