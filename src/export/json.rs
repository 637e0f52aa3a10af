//! JSON export: a documented, stable schema (`"schema": "taskmeter.snapshot/1"`).
//!
//! ```text
//! {
//!   "schema": "taskmeter.snapshot/1",
//!   "sequence": 12,                      // Snapshot::sequence
//!   "taken_at_unix_ms": 1795841152123,   // wall clock
//!   "elapsed_seconds": 1.000213,         // since the previous snapshot, monotonic
//!   "labels": { "node": "eu-1" },        // constant labels, when configured
//!   "sink_failures": 0,
//!   "snapshot_failures": 0,
//!   "carried_stripes": 0,                // Snapshot::carried_stripes
//!   "in_flight": { "subprocess": 3, "container": 0, "wasm": 0 },
//!   "cumulative": VIEW,                  // since the engine was created
//!   "interval": VIEW,                    // since the previous snapshot
//!   "window": VIEW                       // Snapshot::window: the last Builder::window
//! }
//! VIEW = {
//!   "started": { "<runner>": count, ... },
//!   "errors": { "<runner>": { "<error kind>": count, ... }, ... },  // custom labels as counted
//!   "completed": { "<runner>": { "<outcome>": DURATIONS, ... }, ... }
//! }
//! DURATIONS = {
//!   "count": 1200, "sum_ms": 845000, "clamped": 0,
//!   "min_ms": 3, "max_ms": 9151, "mean_ms": 704.16,        // null when count is 0
//!   "quantiles_ms": { "0.5": 402, "0.9": 1203, "0.99": 8011, "0.999": 9151 }  // {} when 0
//! }
//! ```
//!
//! Every label combination is present, with zeros. Labels are the contract's `as_label()`
//! strings. `sum_ms` is exact, saturating at `u64::MAX`; quantiles, min and max are at the
//! engine's HDR precision (highest equivalent value of the slot). New fields may be added
//! within schema version 1; none is removed or changes meaning.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_QUANTILES, ExportConfig};
use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::snapshot::{Snapshot, View};

/// The schema name written in every document.
pub const JSON_SCHEMA: &str = "taskmeter.snapshot/1";

/// A snapshot as written to and read from JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSnapshot {
    /// Always [`JSON_SCHEMA`].
    pub schema: String,
    /// [`Snapshot::sequence`].
    pub sequence: u64,
    /// [`Snapshot::taken_at`], in ms since the Unix epoch (0 if the clock is before it).
    pub taken_at_unix_ms: u64,
    /// [`Snapshot::elapsed`], in seconds.
    pub elapsed_seconds: f64,
    /// The configuration's constant labels ([`ExportConfig::const_labels`]); empty by
    /// default, and when read from a document without them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// [`Snapshot::sink_failures`].
    pub sink_failures: u64,
    /// [`Snapshot::snapshot_failures`] (0 when read from a document without it).
    #[serde(default)]
    pub snapshot_failures: u64,
    /// [`Snapshot::carried_stripes`] (0 when read from a document without it).
    #[serde(default)]
    pub carried_stripes: usize,
    /// [`Snapshot::in_flight`] per runner label.
    pub in_flight: BTreeMap<String, i64>,
    /// [`Snapshot::cumulative`].
    pub cumulative: JsonView,
    /// [`Snapshot::interval`].
    pub interval: JsonView,
    /// [`Snapshot::window`] (`None` when read from a document without it).
    #[serde(default)]
    pub window: Option<JsonView>,
}

/// A [`View`] as written to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonView {
    /// Tasks started, per runner label.
    pub started: BTreeMap<String, u64>,
    /// Runner errors, per runner label then error-kind label.
    pub errors: BTreeMap<String, BTreeMap<String, u64>>,
    /// Completions, per runner label then outcome label.
    pub completed: BTreeMap<String, BTreeMap<String, JsonDurations>>,
}

/// The completions of one `(runner, outcome)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonDurations {
    /// Completions.
    pub count: u64,
    /// Exact sum of their durations in ms, saturating at `u64::MAX`.
    pub sum_ms: u64,
    /// Durations above the configured range.
    pub clamped: u64,
    /// Smallest duration, `None` when `count` is 0.
    pub min_ms: Option<u64>,
    /// Largest duration, `None` when `count` is 0.
    pub max_ms: Option<u64>,
    /// Mean duration, `None` when `count` is 0.
    pub mean_ms: Option<f64>,
    /// Duration at each quantile (keys as written by Rust's `f64` `Display`).
    pub quantiles_ms: BTreeMap<String, u64>,
}

impl JsonSnapshot {
    /// The JSON form of `snapshot`, with `quantiles` (each in `[0, 1]`).
    pub fn new(snapshot: &Snapshot, quantiles: &[f64]) -> Self {
        let taken_at_unix_ms = snapshot
            .taken_at()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        JsonSnapshot {
            schema: JSON_SCHEMA.into(),
            sequence: snapshot.sequence(),
            taken_at_unix_ms,
            elapsed_seconds: snapshot.elapsed().as_secs_f64(),
            labels: BTreeMap::new(),
            sink_failures: snapshot.sink_failures(),
            snapshot_failures: snapshot.snapshot_failures(),
            carried_stripes: snapshot.carried_stripes(),
            in_flight: RunnerType::ALL
                .iter()
                .map(|&r| (r.as_label().to_owned(), snapshot.in_flight(r)))
                .collect(),
            cumulative: JsonView::new(snapshot.cumulative(), quantiles),
            interval: JsonView::new(snapshot.interval(), quantiles),
            window: Some(JsonView::new(snapshot.window(), quantiles)),
        }
    }
}

impl JsonView {
    /// The JSON form of `view`.
    pub fn new(view: &View, quantiles: &[f64]) -> Self {
        let mut errors = per_runner(|r| {
            RunnerErrorKind::ALL
                .iter()
                .map(|&k| (k.as_label().to_owned(), view.errors(r, k)))
                .collect::<BTreeMap<_, _>>()
        });
        // Custom labels, as counted (see `AtomicMetrics::record_labelled_runner_error`).
        for (runner, kind, count) in view.labelled_errors() {
            *errors
                .entry(runner.to_owned())
                .or_default()
                .entry(kind.to_owned())
                .or_default() += count;
        }
        JsonView {
            started: per_runner(|r| view.started(r)),
            errors,
            completed: per_runner(|r| {
                TaskOutcome::ALL
                    .iter()
                    .map(|&o| {
                        (
                            o.as_label().to_owned(),
                            JsonDurations::new(view, r, o, quantiles),
                        )
                    })
                    .collect()
            }),
        }
    }
}

fn per_runner<T>(make: impl Fn(RunnerType) -> T) -> BTreeMap<String, T> {
    RunnerType::ALL
        .iter()
        .map(|&r| (r.as_label().to_owned(), make(r)))
        .collect()
}

impl JsonDurations {
    fn new(view: &View, runner: RunnerType, outcome: TaskOutcome, quantiles: &[f64]) -> Self {
        let histogram = view.duration_counts(runner, outcome);
        let present = !histogram.is_empty();
        JsonDurations {
            count: histogram.len(),
            sum_ms: view.duration_sum_ms(runner, outcome),
            clamped: view.clamped(runner, outcome),
            min_ms: present.then(|| histogram.min()),
            max_ms: present.then(|| histogram.max()),
            mean_ms: present.then(|| histogram.mean()),
            quantiles_ms: if present {
                quantiles
                    .iter()
                    .map(|&q| (q.to_string(), histogram.value_at_quantile(q)))
                    .collect()
            } else {
                BTreeMap::new()
            },
        }
    }
}

impl Snapshot {
    /// This snapshot as JSON (schema in [`crate::export::json`]), with quantiles 0.5, 0.9,
    /// 0.99 and 0.999.
    ///
    /// ```
    /// use taskmeter::export::json::JsonSnapshot;
    /// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
    ///
    /// let metrics = AtomicMetrics::new();
    /// metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 40);
    /// let json = metrics.snapshot().to_json();
    /// let read: JsonSnapshot = serde_json::from_str(&json).unwrap();
    /// assert_eq!(read.cumulative.completed["wasm"]["success"].max_ms, Some(40));
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string(&JsonSnapshot::new(self, &DEFAULT_QUANTILES))
            .expect("the JSON schema has only string keys and finite or null numbers")
    }

    /// This snapshot as JSON with `config`'s quantiles and constant labels (`"labels"`).
    pub fn to_json_with(&self, config: &ExportConfig) -> String {
        let mut document = JsonSnapshot::new(self, config.quantiles());
        document.labels = config.const_labels().iter().cloned().collect();
        serde_json::to_string(&document)
            .expect("the JSON schema has only string keys and finite or null numbers")
    }
}
