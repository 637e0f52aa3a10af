//! Exports: every format reads a published [`Snapshot`](crate::Snapshot), never the hot path.
//!
//! - [`prometheus`]: Prometheus text format 0.0.4 and OpenMetrics 1.0, configured by
//!   [`ExportConfig`]; [`Format`] negotiates between them and renders either;
//! - `json` (feature `json`): a documented, stable JSON schema;
//! - `interval_log` (feature `hlog`): HdrHistogram interval logs, as a snapshot sink;
//! - `native` (feature `native-histograms`): Prometheus's protobuf exposition, with native
//!   histograms;
//! - [`Endpoint`]: the answer to a `/metrics` scrape, for any HTTP stack.

use std::fmt;

#[cfg(not(loom))]
mod endpoint;
pub(crate) mod families;
mod format;
#[cfg(all(feature = "prometheus", not(loom)))]
mod merged;
#[cfg(feature = "native-histograms")]
pub mod native;
pub mod prometheus;

#[cfg(all(feature = "json", not(loom)))]
pub use endpoint::JSON_CONTENT_TYPE;
#[cfg(not(loom))]
pub use endpoint::{DEFAULT_MAX_SNAPSHOT_AGE, Endpoint, Exposition};
pub use format::Format;
#[cfg(all(feature = "prometheus", not(loom)))]
pub use merged::RegistryCollision;

#[cfg(feature = "json")]
pub mod json;

#[cfg(feature = "hlog")]
pub mod interval_log;

pub use crate::snapshot::SOLTI_BUCKETS_SECONDS;

/// Quantiles exported from the HDR data by default.
pub const DEFAULT_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Which view the HDR summary's quantiles are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuantilesOver {
    /// The sliding window, [`Snapshot::window`](crate::Snapshot::window): quantiles follow a
    /// change within one window (default).
    #[default]
    Window,
    /// Everything since the engine started, [`Snapshot::cumulative`](crate::Snapshot::cumulative).
    Cumulative,
}

/// How the Prometheus and OpenMetrics exports name and shape their families.
///
/// Defaults: namespace `solti`, subsystem `runner` (so `solti_runner_tasks_started_total`, as
/// `solti-prometheus` names it), the solti buckets, and quantiles 0.5, 0.9, 0.99 and 0.999.
/// Any bucket layout can be chosen here, at export time: the HDR data behind it is the same.
///
/// ```
/// use taskmeter::export::ExportConfig;
///
/// let config = ExportConfig::builder()
///     .namespace("acme")
///     .buckets_seconds([0.1, 1.0, 10.0])
///     .build()
///     .unwrap();
/// assert_eq!(config.metric_name("tasks_started_total"), "acme_runner_tasks_started_total");
///
/// let refused = ExportConfig::builder().buckets_seconds([1.0, 0.5]).build().unwrap_err();
/// assert!(refused.to_string().contains("increasing"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    namespace: String,
    subsystem: String,
    buckets_seconds: Vec<f64>,
    quantiles: Vec<f64>,
    quantiles_over: QuantilesOver,
    extra_families: bool,
    /// Constant labels, in the order added.
    const_labels: Vec<(String, String)>,
    /// The same, as written into every series: `name="escaped value",…`.
    const_labels_text: String,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            namespace: "solti".into(),
            subsystem: "runner".into(),
            buckets_seconds: SOLTI_BUCKETS_SECONDS.to_vec(),
            quantiles: DEFAULT_QUANTILES.to_vec(),
            quantiles_over: QuantilesOver::Window,
            extra_families: true,
            const_labels: Vec::new(),
            const_labels_text: String::new(),
        }
    }
}

impl ExportConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ExportConfigBuilder {
        ExportConfigBuilder {
            config: ExportConfig::default(),
        }
    }

    /// `namespace_subsystem_name`, leaving out empty parts.
    pub fn metric_name(&self, name: &str) -> String {
        let mut full = String::new();
        for part in [self.namespace.as_str(), self.subsystem.as_str(), name] {
            if part.is_empty() {
                continue;
            }
            if !full.is_empty() {
                full.push('_');
            }
            full.push_str(part);
        }
        full
    }

    /// The metric-name prefix.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The histogram buckets' upper bounds, in seconds (`+Inf` is implied).
    pub fn buckets_seconds(&self) -> &[f64] {
        &self.buckets_seconds
    }

    /// The quantiles of the HDR summary family (the maximum is always added as quantile 1).
    pub fn quantiles(&self) -> &[f64] {
        &self.quantiles
    }

    /// The view the HDR summary's quantiles are read from (default the sliding window).
    pub fn quantiles_over(&self) -> QuantilesOver {
        self.quantiles_over
    }

    /// Whether the families taskmeter adds to those of `solti-prometheus` are exported: the
    /// in-flight gauge, the HDR summary, and the clamped and sink-failure counters.
    pub fn extra_families(&self) -> bool {
        self.extra_families
    }

    /// The constant labels on every series, in the order added.
    pub fn const_labels(&self) -> &[(String, String)] {
        &self.const_labels
    }

    /// The constant labels as written in a series: `name="value",…`, escaped; empty if none.
    pub(crate) fn const_labels_text(&self) -> &str {
        &self.const_labels_text
    }
}

/// Label names taskmeter's own series use, which a constant label may not take.
const OWN_LABELS: [&str; 5] = ["runner", "outcome", "error", "le", "quantile"];

/// Builds an [`ExportConfig`]; every value is checked by [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ExportConfigBuilder {
    config: ExportConfig,
}

impl ExportConfigBuilder {
    /// The metric-name prefix (default `solti`); may be empty.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = namespace.into();
        self
    }

    /// The second name part (default `runner`); may be empty.
    pub fn subsystem(mut self, subsystem: impl Into<String>) -> Self {
        self.config.subsystem = subsystem.into();
        self
    }

    /// Histogram bucket upper bounds in seconds: finite, positive, strictly increasing.
    pub fn buckets_seconds(mut self, bounds: impl IntoIterator<Item = f64>) -> Self {
        self.config.buckets_seconds = bounds.into_iter().collect();
        self
    }

    /// Summary quantiles: in `[0, 1]`, strictly increasing.
    pub fn quantiles(mut self, quantiles: impl IntoIterator<Item = f64>) -> Self {
        self.config.quantiles = quantiles.into_iter().collect();
        self
    }

    /// The view the HDR summary's quantiles (and maximum) are read from: the sliding window
    /// (default) or everything since start. Its `_sum` and `_count` are cumulative either way,
    /// as in Prometheus client summaries.
    pub fn quantiles_over(mut self, over: QuantilesOver) -> Self {
        self.config.quantiles_over = over;
        self
    }

    /// Whether to export the families taskmeter adds to `solti-prometheus`'s (default
    /// `true`): the in-flight gauge, the HDR summary, and the clamped and sink-failure
    /// counters, the carried-stripes gauge. With `false`, the export has exactly
    /// `solti-prometheus` 0.0.2's families, and the two every exposition carries: the
    /// snapshot's timestamp (`…_snapshot_timestamp_seconds`) and sequence
    /// (`…_snapshot_sequence`).
    ///
    /// ```
    /// use taskmeter::AtomicMetrics;
    /// use taskmeter::export::ExportConfig;
    ///
    /// let solti_only = ExportConfig::builder().extra_families(false).build().unwrap();
    /// let mut text = String::new();
    /// AtomicMetrics::new().latest().write_prometheus(&solti_only, &mut text);
    /// assert!(text.contains("solti_runner_task_duration_seconds_bucket"));
    /// assert!(!text.contains("tasks_in_flight"));
    /// ```
    pub fn extra_families(mut self, extra_families: bool) -> Self {
        self.config.extra_families = extra_families;
        self
    }

    /// A label with the same value on every series of every format (JSON has them as
    /// `"labels"`), so that engines or processes behind one job can be told apart: `instance`,
    /// `node`, `region`. The name must be a label name (ASCII letters, digits and `_`, not
    /// starting with a digit), not reserved (`__` prefix), not one of taskmeter's own
    /// (`runner`, `outcome`, `error`, `le`, `quantile`), and not given twice; the value must not
    /// be empty (Prometheus reads an empty value as no label). Values are escaped on output.
    ///
    /// ```
    /// use taskmeter::AtomicMetrics;
    /// use taskmeter::export::ExportConfig;
    ///
    /// let config = ExportConfig::builder().const_label("node", "eu-1").build().unwrap();
    /// let mut text = String::new();
    /// AtomicMetrics::new().latest().write_prometheus(&config, &mut text);
    /// assert!(text.contains("solti_runner_tasks_started_total{runner=\"wasm\",node=\"eu-1\"} 0\n"));
    ///
    /// let refused = ExportConfig::builder().const_label("le", "x").build().unwrap_err();
    /// assert!(refused.to_string().contains("const_label \"le\""));
    /// ```
    pub fn const_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.const_labels.push((name.into(), value.into()));
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<ExportConfig, ExportConfigError> {
        let mut config = self.config;
        let mut text = String::new();
        for (position, (name, value)) in config.const_labels.iter().enumerate() {
            let refuse = |why: &str| {
                Err(ExportConfigError::new(format!(
                    "const_label {name:?} = {value:?} is refused: {why}"
                )))
            };
            if name.is_empty() || !is_name_part(name) {
                return refuse(
                    "a label name is ASCII letters, digits and '_', not starting with a digit",
                );
            }
            if name.starts_with("__") {
                return refuse("names starting with \"__\" are reserved by Prometheus");
            }
            if OWN_LABELS.contains(&name.as_str()) {
                return refuse("taskmeter's own series use this label");
            }
            if config.const_labels[..position]
                .iter()
                .any(|(n, _)| n == name)
            {
                return refuse("given twice");
            }
            if value.is_empty() {
                return refuse("an empty value reads as no label in Prometheus");
            }
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(name);
            text.push_str("=\"");
            prometheus::escape_label_value(value, &mut text);
            text.push('"');
        }
        config.const_labels_text = text;
        for (field, value) in [
            ("namespace", &config.namespace),
            ("subsystem", &config.subsystem),
        ] {
            if !is_name_part(value) {
                return Err(ExportConfigError::new(format!(
                    "{field} = {value:?} is not a metric name part: use ASCII letters, digits \
                     and '_', not starting with a digit"
                )));
            }
        }
        check_increasing("buckets_seconds", &config.buckets_seconds, |b| {
            b.is_finite() && b > 0.0
        })?;
        check_increasing("quantiles", &config.quantiles, |q| (0.0..=1.0).contains(&q))?;
        Ok(config)
    }
}

fn is_name_part(part: &str) -> bool {
    part.chars().enumerate().all(|(position, c)| {
        c == '_' || c.is_ascii_alphabetic() || (position > 0 && c.is_ascii_digit())
    })
}

fn check_increasing(
    field: &str,
    values: &[f64],
    valid: impl Fn(f64) -> bool,
) -> Result<(), ExportConfigError> {
    if let Some(bad) = values.iter().find(|&&v| !valid(v)) {
        let accepted = if field == "quantiles" {
            "each in [0, 1]"
        } else {
            "each finite and > 0"
        };
        return Err(ExportConfigError::new(format!(
            "{field} contains {bad}: accepted {accepted}"
        )));
    }
    if let Some(pair) = values.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(ExportConfigError::new(format!(
            "{field} must be strictly increasing: {} comes before {}",
            pair[0], pair[1]
        )));
    }
    Ok(())
}

/// An [`ExportConfig`] value that was refused; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfigError {
    message: String,
}

impl ExportConfigError {
    fn new(message: String) -> Self {
        ExportConfigError { message }
    }
}

impl fmt::Display for ExportConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExportConfigError {}

/// `ms` as exact decimal seconds: `1234` is `1.234`. Integer arithmetic, so sums stay exact
/// where a float would round.
pub(crate) fn ms_as_seconds(ms: u128) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
