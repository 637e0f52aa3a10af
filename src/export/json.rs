//! JSON export: a documented, stable schema (`"schema": "taskmeter.snapshot/1"`), and the
//! JSON-lines log of [`JsonLinesSink`] (`"taskmeter.snapshot/2"`: the same, with buckets).
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
//!
//! Schema version 2 (`"taskmeter.snapshot/2"`, written by [`JsonLinesSink`], one document per
//! line) is version 1 with two additions, so that a log holds the whole distribution of each
//! interval and tools (`taskmeter report`, `taskmeter compare`) can merge intervals exactly:
//!
//! ```text
//! "significant_digits": 3,                 // the engine's HDR layout (lowest value 1 ms)
//! DURATIONS of the interval view += {
//!   "buckets": [[3, 3, 2], [40, 40, 1], [2500, 2501, 1]]  // [lowest_ms, highest_ms, count]
//! }                                         // of every non-empty slot, ascending
//! ```
//!
//! The cumulative and window views carry no buckets: a log's intervals sum to them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_QUANTILES, ExportConfig};
use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::sink::{SinkError, SnapshotSink};
use crate::snapshot::{Snapshot, View};

/// The schema name written in every document of [`Snapshot::to_json`].
pub const JSON_SCHEMA: &str = "taskmeter.snapshot/1";

/// The schema name of [`JsonLinesSink`]'s lines: version 1 with the interval's buckets.
pub const JSON_SCHEMA_WITH_BUCKETS: &str = "taskmeter.snapshot/2";

/// A snapshot as written to and read from JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSnapshot {
    /// [`JSON_SCHEMA`], or [`JSON_SCHEMA_WITH_BUCKETS`] for a line of a JSON-lines log.
    pub schema: String,
    /// The engine's significant decimal digits; schema 2 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significant_digits: Option<u8>,
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
    /// Every non-empty slot as `[lowest_ms, highest_ms, count]`, ascending: schema 2's
    /// interval view only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<[u64; 3]>>,
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
            significant_digits: None,
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

    /// The schema-2 form of `snapshot`: [`new`](Self::new) with the interval's buckets.
    pub fn with_buckets(snapshot: &Snapshot, quantiles: &[f64]) -> Self {
        let mut document = JsonSnapshot::new(snapshot, quantiles);
        document.schema = JSON_SCHEMA_WITH_BUCKETS.into();
        let interval = snapshot.interval();
        document.significant_digits = Some(
            interval
                .duration_counts(RunnerType::ALL[0], TaskOutcome::ALL[0])
                .significant_digits(),
        );
        for runner in RunnerType::ALL {
            for outcome in TaskOutcome::ALL {
                let counts = interval.duration_counts(runner, outcome);
                if let Some(durations) = document
                    .interval
                    .completed
                    .get_mut(runner.as_label())
                    .and_then(|outcomes| outcomes.get_mut(outcome.as_label()))
                {
                    durations.buckets = Some(
                        counts
                            .iter()
                            .map(|slot| [slot.lowest_ms, slot.highest_ms, slot.count])
                            .collect(),
                    );
                }
            }
        }
        document
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
            buckets: None,
        }
    }
}

/// A [`SnapshotSink`] that appends every snapshot to a JSON-lines log: one schema-2 document
/// ([`JSON_SCHEMA_WITH_BUCKETS`]) per line, its interval view with the buckets of every
/// non-empty slot, so that `taskmeter report` and `taskmeter compare` read whole
/// distributions. Each line is flushed as it is written.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use taskmeter::export::json::{JSON_SCHEMA_WITH_BUCKETS, JsonLinesSink, JsonSnapshot};
/// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, SnapshotterBuilder, TaskOutcome};
///
/// let path = std::env::temp_dir().join(format!("taskmeter-doc-{}.jsonl", std::process::id()));
/// let metrics = Arc::new(AtomicMetrics::new());
/// let snapshotter = SnapshotterBuilder::new(Duration::from_secs(3600))
///     .sink(JsonLinesSink::create(&path).unwrap())
///     .spawn(&metrics);
/// metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 2_500);
/// snapshotter.stop(); // the final snapshot reaches the log
/// let log = std::fs::read_to_string(&path).unwrap();
/// let line: JsonSnapshot = serde_json::from_str(log.lines().last().unwrap()).unwrap();
/// assert_eq!(line.schema, JSON_SCHEMA_WITH_BUCKETS);
/// let wasm = &line.interval.completed["wasm"]["success"];
/// assert_eq!(wasm.buckets.as_deref(), Some(&[[2_500, 2_501, 1]][..]));
/// # std::fs::remove_file(&path).ok();
/// ```
pub struct JsonLinesSink<W: Write + Send> {
    out: W,
    quantiles: Vec<f64>,
    line: Vec<u8>,
}

impl JsonLinesSink<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::new(BufWriter::new(File::create(path)?)))
    }
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// A sink writing to `out`, with the default quantiles (0.5, 0.9, 0.99, 0.999).
    pub fn new(out: W) -> Self {
        JsonLinesSink {
            out,
            quantiles: DEFAULT_QUANTILES.to_vec(),
            line: Vec::new(),
        }
    }

    /// Appends `snapshot` as one line and flushes.
    pub fn write_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        self.line.clear();
        serde_json::to_writer(
            &mut self.line,
            &JsonSnapshot::with_buckets(snapshot, &self.quantiles),
        )?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.out.flush()?;
        Ok(())
    }
}

impl<W: Write + Send> SnapshotSink for JsonLinesSink<W> {
    fn name(&self) -> &str {
        "JSON-lines log"
    }

    fn publish(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        self.write_snapshot(snapshot)
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
