//! The backends the benchmarks run side by side with taskmeter, each driven through the same
//! `MetricsBackend` calls, with label handles resolved once at construction where the library
//! allows it (that is how each is used well).

#![allow(dead_code)] // each bench uses its own subset

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use solti_prometheus_0_0_2 as solti_prometheus;
use solti_runner_0_0_2 as solti_runner;
use taskmeter::export::SOLTI_BUCKETS_SECONDS;
use taskmeter::{
    AtomicMetrics, MetricsBackend, NoOpMetrics, RunnerErrorKind, RunnerType, TaskOutcome,
};

const COMPLETIONS: usize = RunnerType::COUNT * TaskOutcome::COUNT;
const ERRORS: usize = RunnerType::COUNT * RunnerErrorKind::COUNT;

fn completion(runner: RunnerType, outcome: TaskOutcome) -> usize {
    runner.index() * TaskOutcome::COUNT + outcome.index()
}

fn error(runner: RunnerType, kind: RunnerErrorKind) -> usize {
    runner.index() * RunnerErrorKind::COUNT + kind.index()
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1e3
}

/// A backend under test.
pub trait Peer: MetricsBackend {
    /// Calls counted so far (started + completed + errors), read through the backend's own
    /// reader: a peer that counts nothing fails the bench.
    fn calls_counted(&self) -> u64;
    /// Called by each recording thread when its timed loop is over.
    fn end_of_thread(&self) {}
    /// Called between timed batches, outside the timing: what the backend's own background
    /// work would do meanwhile in a real process.
    fn between_batches(&self) {}
    /// One export of everything in Prometheus text, for those that export.
    fn export(&self) -> Option<String> {
        None
    }
    /// The engine itself, when this is taskmeter.
    fn as_taskmeter(&self) -> Option<&AtomicMetrics> {
        None
    }
}

/// Sums started, completed and error counters in a Prometheus text export.
fn counted_in_text(text: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            name.ends_with("tasks_started_total")
                || name.ends_with("tasks_completed_total")
                || name.ends_with("errors_total")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

// ---- taskmeter -------------------------------------------------------------------------

impl Peer for AtomicMetrics {
    fn as_taskmeter(&self) -> Option<&AtomicMetrics> {
        Some(self)
    }
    fn calls_counted(&self) -> u64 {
        let snapshot = self.snapshot();
        let view = snapshot.cumulative();
        RunnerType::ALL
            .iter()
            .map(|&r| {
                view.started(r)
                    + view.completed_all(r)
                    + RunnerErrorKind::ALL
                        .iter()
                        .map(|&k| view.errors(r, k))
                        .sum::<u64>()
            })
            .sum()
    }

    fn export(&self) -> Option<String> {
        Some(self.latest().to_prometheus())
    }

    /// The snapshotter's turns between batches, as in a process with a snapshotter: each
    /// drains what the last batch recorded. (Each batch runs on fresh threads; they inherit
    /// the exited threads' tokens and leases without waiting for a snapshot.)
    fn between_batches(&self) {
        self.snapshot();
        self.snapshot();
    }
}

// ---- floors ----------------------------------------------------------------------------

/// Does nothing: the cost of the call itself through a `MetricsHandle`.
pub struct NoOp;

impl MetricsBackend for NoOp {
    fn record_task_started(&self, runner: RunnerType) {
        NoOpMetrics.record_task_started(runner);
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        NoOpMetrics.record_task_completed(runner, outcome, ms);
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        NoOpMetrics.record_runner_error(runner, kind);
    }
}

impl Peer for NoOp {
    fn calls_counted(&self) -> u64 {
        u64::MAX // counts nothing by design
    }
}

/// The baseline: one plain array of `CachePadded<AtomicU64>`, one shared `fetch_add` per
/// counter a call touches (started; completed, sum and one log2 bucket). No consistent reader.
pub struct SharedFetchAdd {
    started: [CachePadded<AtomicU64>; RunnerType::COUNT],
    completed: [CachePadded<AtomicU64>; COMPLETIONS],
    sum: [CachePadded<AtomicU64>; COMPLETIONS],
    buckets: Box<[CachePadded<AtomicU64>]>,
    errors: [CachePadded<AtomicU64>; ERRORS],
}

impl SharedFetchAdd {
    pub fn new() -> Self {
        let padded = || CachePadded::new(AtomicU64::new(0));
        SharedFetchAdd {
            started: std::array::from_fn(|_| padded()),
            completed: std::array::from_fn(|_| padded()),
            sum: std::array::from_fn(|_| padded()),
            buckets: (0..COMPLETIONS * 65).map(|_| padded()).collect(),
            errors: std::array::from_fn(|_| padded()),
        }
    }
}

impl MetricsBackend for SharedFetchAdd {
    fn record_task_started(&self, runner: RunnerType) {
        self.started[runner.index()].fetch_add(1, Ordering::Relaxed);
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        let label = completion(runner, outcome);
        self.completed[label].fetch_add(1, Ordering::Relaxed);
        self.sum[label].fetch_add(ms, Ordering::Relaxed);
        let bucket = (u64::BITS - ms.leading_zeros()) as usize;
        self.buckets[label * 65 + bucket].fetch_add(1, Ordering::Relaxed);
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.errors[error(runner, kind)].fetch_add(1, Ordering::Relaxed);
    }
}

impl Peer for SharedFetchAdd {
    fn calls_counted(&self) -> u64 {
        let total = |cells: &[CachePadded<AtomicU64>]| -> u64 {
            cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        };
        total(&self.started) + total(&self.completed) + total(&self.errors)
    }
}

std::thread_local! {
    static LOCAL_COUNTS: [Cell<u64>; 3 + 2 * COMPLETIONS + ERRORS] =
        const { [const { Cell::new(0) }; 3 + 2 * COMPLETIONS + ERRORS] };
}

/// Plain per-thread counters, no atomics at all: the limit of any design. No reader can see
/// them consistently; here each thread adds its totals to a shared sum when it ends.
pub struct ThreadLocalPlain {
    flushed: AtomicU64,
}

impl ThreadLocalPlain {
    pub fn new() -> Self {
        ThreadLocalPlain {
            flushed: AtomicU64::new(0),
        }
    }
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

impl MetricsBackend for ThreadLocalPlain {
    fn record_task_started(&self, runner: RunnerType) {
        LOCAL_COUNTS.with(|c| bump(&c[runner.index()], 1));
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        let label = completion(runner, outcome);
        LOCAL_COUNTS.with(|c| {
            bump(&c[3 + label], 1);
            bump(&c[3 + COMPLETIONS + label], ms);
        });
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        LOCAL_COUNTS.with(|c| bump(&c[3 + 2 * COMPLETIONS + error(runner, kind)], 1));
    }
}

impl Peer for ThreadLocalPlain {
    fn calls_counted(&self) -> u64 {
        self.end_of_thread();
        self.flushed.load(Ordering::Relaxed)
    }
    fn end_of_thread(&self) {
        let calls = LOCAL_COUNTS.with(|c| {
            let calls: u64 = c[..3 + COMPLETIONS].iter().map(Cell::get).sum::<u64>()
                + c[3 + 2 * COMPLETIONS..].iter().map(Cell::get).sum::<u64>();
            c.iter().for_each(|cell| cell.set(0));
            calls
        });
        self.flushed.fetch_add(calls, Ordering::Relaxed);
    }
}

// ---- hdrhistogram ----------------------------------------------------------------------

struct HdrState {
    started: [u64; RunnerType::COUNT],
    errors: [u64; ERRORS],
    durations: Vec<hdrhistogram::Histogram<u64>>,
}

fn hdr_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 3).unwrap()
}

/// All state behind one `Mutex`, durations in `hdrhistogram::Histogram`s.
pub struct HdrMutex(Mutex<HdrState>);

impl HdrMutex {
    pub fn new() -> Self {
        HdrMutex(Mutex::new(HdrState {
            started: [0; RunnerType::COUNT],
            errors: [0; ERRORS],
            durations: (0..COMPLETIONS).map(|_| hdr_histogram()).collect(),
        }))
    }
}

impl MetricsBackend for HdrMutex {
    fn record_task_started(&self, runner: RunnerType) {
        self.0.lock().unwrap().started[runner.index()] += 1;
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        self.0.lock().unwrap().durations[completion(runner, outcome)].saturating_record(ms);
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.0.lock().unwrap().errors[error(runner, kind)] += 1;
    }
}

impl Peer for HdrMutex {
    fn calls_counted(&self) -> u64 {
        let state = self.0.lock().unwrap();
        state.started.iter().sum::<u64>()
            + state.errors.iter().sum::<u64>()
            + state.durations.iter().map(|h| h.len()).sum::<u64>()
    }
}

std::thread_local! {
    static RECORDERS: std::cell::RefCell<Option<(usize, Vec<hdrhistogram::sync::Recorder<u64>>)>> =
        const { std::cell::RefCell::new(None) };
}

static SYNC_IDS: AtomicU64 = AtomicU64::new(1);

/// `hdrhistogram::sync::SyncHistogram` per label with a `Recorder` per thread (made on the
/// thread's first call), started and errors in shared atomics.
pub struct HdrSync {
    id: usize,
    histograms: Mutex<Vec<hdrhistogram::sync::SyncHistogram<u64>>>,
    started: [CachePadded<AtomicU64>; RunnerType::COUNT],
    errors: [CachePadded<AtomicU64>; ERRORS],
}

impl HdrSync {
    pub fn new() -> Self {
        HdrSync {
            id: SYNC_IDS.fetch_add(1, Ordering::Relaxed) as usize,
            histograms: Mutex::new(
                (0..COMPLETIONS)
                    .map(|_| hdr_histogram().into_sync())
                    .collect(),
            ),
            started: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            errors: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }
}

impl MetricsBackend for HdrSync {
    fn record_task_started(&self, runner: RunnerType) {
        self.started[runner.index()].fetch_add(1, Ordering::Relaxed);
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        RECORDERS.with(|recorders| {
            let mut recorders = recorders.borrow_mut();
            if recorders.as_ref().is_none_or(|(id, _)| *id != self.id) {
                let histograms = self.histograms.lock().unwrap();
                *recorders = Some((self.id, histograms.iter().map(|h| h.recorder()).collect()));
            }
            let (_, recorders) = recorders.as_mut().unwrap();
            recorders[completion(runner, outcome)].saturating_record(ms);
        });
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.errors[error(runner, kind)].fetch_add(1, Ordering::Relaxed);
    }
}

impl Peer for HdrSync {
    fn calls_counted(&self) -> u64 {
        RECORDERS.with(|r| r.borrow_mut().take());
        let mut histograms = self.histograms.lock().unwrap();
        let mut completed = 0;
        for histogram in histograms.iter_mut() {
            histogram.refresh_timeout(std::time::Duration::from_secs(1));
            completed += histogram.len();
        }
        let total = |cells: &[CachePadded<AtomicU64>]| -> u64 {
            cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        };
        total(&self.started) + total(&self.errors) + completed
    }
    fn end_of_thread(&self) {
        // Dropping the recorders hands their counts to the histograms.
        RECORDERS.with(|r| r.borrow_mut().take());
    }
}

// ---- prometheus 0.14, handles cached ---------------------------------------------------

pub struct PrometheusCached {
    registry: prometheus::Registry,
    started: Vec<prometheus::IntCounter>,
    completed: Vec<prometheus::IntCounter>,
    durations: Vec<prometheus::Histogram>,
    errors: Vec<prometheus::IntCounter>,
}

impl PrometheusCached {
    pub fn new() -> Self {
        use prometheus::{HistogramOpts, IntCounterVec, Opts};
        let registry = prometheus::Registry::new();
        let opts =
            |name: &str, help: &str| Opts::new(name, help).namespace("solti").subsystem("runner");
        let started = IntCounterVec::new(
            opts("tasks_started_total", "Total number of tasks started"),
            &["runner"],
        )
        .unwrap();
        let completed = IntCounterVec::new(
            opts("tasks_completed_total", "Total number of tasks completed"),
            &["runner", "outcome"],
        )
        .unwrap();
        let errors = IntCounterVec::new(
            opts("errors_total", "Total runner-level errors"),
            &["runner", "error"],
        )
        .unwrap();
        let durations = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "task_duration_seconds",
                "Task execution duration in seconds",
            )
            .namespace("solti")
            .subsystem("runner")
            .buckets(SOLTI_BUCKETS_SECONDS.to_vec()),
            &["runner", "outcome"],
        )
        .unwrap();
        registry.register(Box::new(started.clone())).unwrap();
        registry.register(Box::new(completed.clone())).unwrap();
        registry.register(Box::new(durations.clone())).unwrap();
        registry.register(Box::new(errors.clone())).unwrap();
        let pairs = || {
            RunnerType::ALL.into_iter().flat_map(|r| {
                TaskOutcome::ALL
                    .into_iter()
                    .map(move |o| [r.as_label(), o.as_label()])
            })
        };
        PrometheusCached {
            started: RunnerType::ALL
                .iter()
                .map(|r| started.with_label_values(&[r.as_label()]))
                .collect(),
            completed: pairs().map(|l| completed.with_label_values(&l)).collect(),
            durations: pairs().map(|l| durations.with_label_values(&l)).collect(),
            errors: RunnerType::ALL
                .into_iter()
                .flat_map(|r| {
                    RunnerErrorKind::ALL
                        .into_iter()
                        .map(move |k| [r.as_label(), k.as_label()])
                })
                .map(|l| errors.with_label_values(&l))
                .collect(),
            registry,
        }
    }
}

impl MetricsBackend for PrometheusCached {
    fn record_task_started(&self, runner: RunnerType) {
        self.started[runner.index()].inc();
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        let label = completion(runner, outcome);
        self.completed[label].inc();
        self.durations[label].observe(seconds(ms));
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.errors[error(runner, kind)].inc();
    }
}

impl Peer for PrometheusCached {
    fn calls_counted(&self) -> u64 {
        counted_in_text(&self.export().unwrap())
    }
    fn export(&self) -> Option<String> {
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut text)
            .unwrap();
        Some(text)
    }
}

// ---- solti-prometheus 0.0.2, as shipped -------------------------------------------------

/// The backend taskmeter replaces, through its own (solti_runner 0.0.2) trait.
pub struct SoltiPrometheus(solti_prometheus::PrometheusMetrics);

impl SoltiPrometheus {
    pub fn new() -> Self {
        SoltiPrometheus(solti_prometheus::PrometheusMetrics::new_isolated().unwrap())
    }
}

/// taskmeter's labels as `solti_runner` 0.0.2's (the reverse of `taskmeter::solti`), for the
/// solti peer and the mapping bench.
pub fn to_solti_runner(runner: RunnerType) -> solti_runner::RunnerType {
    [
        solti_runner::RunnerType::Subprocess,
        solti_runner::RunnerType::Container,
        solti_runner::RunnerType::Wasm,
    ][runner.index()]
}

pub fn to_solti_outcome(outcome: TaskOutcome) -> solti_runner::TaskOutcome {
    [
        solti_runner::TaskOutcome::Success,
        solti_runner::TaskOutcome::Failure,
        solti_runner::TaskOutcome::Canceled,
        solti_runner::TaskOutcome::Timeout,
    ][outcome.index()]
}

pub fn to_solti_kind(kind: RunnerErrorKind) -> solti_runner::RunnerErrorKind {
    [
        solti_runner::RunnerErrorKind::CgroupPrepareFailed,
        solti_runner::RunnerErrorKind::BackendConfigFailed,
        solti_runner::RunnerErrorKind::SpawnFailed,
        solti_runner::RunnerErrorKind::ModuleLoadFailed,
    ][kind.index()]
}

impl MetricsBackend for SoltiPrometheus {
    fn record_task_started(&self, runner: RunnerType) {
        solti_runner::MetricsBackend::record_task_started(&self.0, to_solti_runner(runner));
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        solti_runner::MetricsBackend::record_task_completed(
            &self.0,
            to_solti_runner(runner),
            to_solti_outcome(outcome),
            ms,
        );
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        solti_runner::MetricsBackend::record_runner_error(
            &self.0,
            to_solti_runner(runner),
            to_solti_kind(kind),
        );
    }
}

impl Peer for SoltiPrometheus {
    fn calls_counted(&self) -> u64 {
        counted_in_text(&self.export().unwrap())
    }
    fn export(&self) -> Option<String> {
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.0.gather(), &mut text)
            .unwrap();
        Some(text)
    }
}

// ---- metrics 0.24 + metrics-exporter-prometheus ------------------------------------------

pub struct MetricsExporter {
    handle: metrics_exporter_prometheus::PrometheusHandle,
    started: Vec<metrics::Counter>,
    completed: Vec<metrics::Counter>,
    durations: Vec<metrics::Histogram>,
    errors: Vec<metrics::Counter>,
}

impl MetricsExporter {
    pub fn new() -> Self {
        use metrics::{Key, Label, Level, Metadata, Recorder};
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&SOLTI_BUCKETS_SECONDS)
            .unwrap()
            .build_recorder();
        let metadata = Metadata::new("taskmeter-bench", Level::INFO, None);
        let key = |name: &'static str, labels: Vec<(&'static str, &'static str)>| {
            Key::from_parts(
                name,
                labels
                    .into_iter()
                    .map(|(k, v)| Label::new(k, v))
                    .collect::<Vec<_>>(),
            )
        };
        let pairs = || {
            RunnerType::ALL
                .into_iter()
                .flat_map(|r| TaskOutcome::ALL.into_iter().map(move |o| (r, o)))
        };
        MetricsExporter {
            handle: recorder.handle(),
            started: RunnerType::ALL
                .iter()
                .map(|r| {
                    recorder.register_counter(
                        &key(
                            "solti_runner_tasks_started_total",
                            vec![("runner", r.as_label())],
                        ),
                        &metadata,
                    )
                })
                .collect(),
            completed: pairs()
                .map(|(r, o)| {
                    recorder.register_counter(
                        &key(
                            "solti_runner_tasks_completed_total",
                            vec![("runner", r.as_label()), ("outcome", o.as_label())],
                        ),
                        &metadata,
                    )
                })
                .collect(),
            durations: pairs()
                .map(|(r, o)| {
                    recorder.register_histogram(
                        &key(
                            "solti_runner_task_duration_seconds",
                            vec![("runner", r.as_label()), ("outcome", o.as_label())],
                        ),
                        &metadata,
                    )
                })
                .collect(),
            errors: RunnerType::ALL
                .into_iter()
                .flat_map(|r| RunnerErrorKind::ALL.into_iter().map(move |k| (r, k)))
                .map(|(r, k)| {
                    recorder.register_counter(
                        &key(
                            "solti_runner_errors_total",
                            vec![("runner", r.as_label()), ("error", k.as_label())],
                        ),
                        &metadata,
                    )
                })
                .collect(),
        }
    }
}

impl MetricsBackend for MetricsExporter {
    fn record_task_started(&self, runner: RunnerType) {
        self.started[runner.index()].increment(1);
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        let label = completion(runner, outcome);
        self.completed[label].increment(1);
        self.durations[label].record(seconds(ms));
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.errors[error(runner, kind)].increment(1);
    }
}

impl Peer for MetricsExporter {
    fn calls_counted(&self) -> u64 {
        counted_in_text(&self.export().unwrap())
    }
    fn export(&self) -> Option<String> {
        Some(self.handle.render())
    }
}

// ---- prometheus-client, handles cached ---------------------------------------------------

type LabelSet = Vec<(&'static str, &'static str)>;

pub struct PrometheusClient {
    registry: prometheus_client::registry::Registry,
    started: Vec<prometheus_client::metrics::counter::Counter>,
    completed: Vec<prometheus_client::metrics::counter::Counter>,
    durations: Vec<prometheus_client::metrics::histogram::Histogram>,
    errors: Vec<prometheus_client::metrics::counter::Counter>,
}

impl PrometheusClient {
    pub fn new() -> Self {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::histogram::Histogram;
        let mut registry = prometheus_client::registry::Registry::default();
        let started = Family::<LabelSet, Counter>::default();
        let completed = Family::<LabelSet, Counter>::default();
        let errors = Family::<LabelSet, Counter>::default();
        let durations = Family::<LabelSet, Histogram>::new_with_constructor(|| {
            Histogram::new(SOLTI_BUCKETS_SECONDS)
        });
        registry.register(
            "solti_runner_tasks_started",
            "Total number of tasks started",
            started.clone(),
        );
        registry.register(
            "solti_runner_tasks_completed",
            "Total number of tasks completed",
            completed.clone(),
        );
        registry.register(
            "solti_runner_task_duration_seconds",
            "Task execution duration in seconds",
            durations.clone(),
        );
        registry.register(
            "solti_runner_errors",
            "Total runner-level errors",
            errors.clone(),
        );
        let pairs = || {
            RunnerType::ALL.into_iter().flat_map(|r| {
                TaskOutcome::ALL
                    .into_iter()
                    .map(move |o| vec![("runner", r.as_label()), ("outcome", o.as_label())])
            })
        };
        PrometheusClient {
            started: RunnerType::ALL
                .iter()
                .map(|r| {
                    started
                        .get_or_create(&vec![("runner", r.as_label())])
                        .clone()
                })
                .collect(),
            completed: pairs()
                .map(|l| completed.get_or_create(&l).clone())
                .collect(),
            durations: pairs()
                .map(|l| durations.get_or_create(&l).clone())
                .collect(),
            errors: RunnerType::ALL
                .into_iter()
                .flat_map(|r| {
                    RunnerErrorKind::ALL
                        .into_iter()
                        .map(move |k| vec![("runner", r.as_label()), ("error", k.as_label())])
                })
                .map(|l| errors.get_or_create(&l).clone())
                .collect(),
            registry,
        }
    }
}

impl MetricsBackend for PrometheusClient {
    fn record_task_started(&self, runner: RunnerType) {
        self.started[runner.index()].inc();
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        let label = completion(runner, outcome);
        self.completed[label].inc();
        self.durations[label].observe(seconds(ms));
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.errors[error(runner, kind)].inc();
    }
}

impl Peer for PrometheusClient {
    fn calls_counted(&self) -> u64 {
        counted_in_text(&self.export().unwrap())
    }
    fn export(&self) -> Option<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        Some(text)
    }
}

// ---- measured ------------------------------------------------------------------------------

mod measured_peer {
    use measured::metric::histogram::Thresholds;
    use measured::{CounterVec, FixedCardinalityLabel, HistogramVec, LabelGroup, MetricGroup};

    #[derive(FixedCardinalityLabel, Copy, Clone)]
    #[label(rename_all = "snake_case")]
    pub enum Runner {
        Subprocess,
        Container,
        Wasm,
    }

    #[derive(FixedCardinalityLabel, Copy, Clone)]
    #[label(rename_all = "snake_case")]
    pub enum Outcome {
        Success,
        Failure,
        Canceled,
        Timeout,
    }

    // The label values must be these exact strings.
    #[allow(clippy::enum_variant_names)]
    #[derive(FixedCardinalityLabel, Copy, Clone)]
    #[label(rename_all = "snake_case")]
    pub enum Kind {
        CgroupPrepareFailed,
        BackendConfigFailed,
        SpawnFailed,
        ModuleLoadFailed,
    }

    #[derive(LabelGroup)]
    #[label(set = RunnerSet)]
    pub struct RunnerLabel {
        pub runner: Runner,
    }

    #[derive(LabelGroup)]
    #[label(set = CompletionSet)]
    pub struct CompletionLabel {
        pub runner: Runner,
        pub outcome: Outcome,
    }

    #[derive(LabelGroup)]
    #[label(set = ErrorSet)]
    pub struct ErrorLabel {
        pub runner: Runner,
        pub error: Kind,
    }

    #[derive(MetricGroup)]
    #[metric(new())]
    pub struct Metrics {
        /// Total number of tasks started
        pub solti_runner_tasks_started_total: CounterVec<RunnerSet>,
        /// Total number of tasks completed
        pub solti_runner_tasks_completed_total: CounterVec<CompletionSet>,
        /// Task execution duration in seconds
        #[metric(metadata = Thresholds::with_buckets(taskmeter::export::SOLTI_BUCKETS_SECONDS))]
        pub solti_runner_task_duration_seconds: HistogramVec<CompletionSet, 15>,
        /// Total runner-level errors
        pub solti_runner_errors_total: CounterVec<ErrorSet>,
    }

    pub fn encode(metrics: &Metrics) -> String {
        let mut encoder = measured::text::BufferedTextEncoder::new();
        metrics.collect_group_into(&mut encoder).unwrap();
        String::from_utf8(encoder.finish().to_vec()).unwrap()
    }
}

pub struct Measured(measured_peer::Metrics);

impl Measured {
    pub fn new() -> Self {
        Measured(measured_peer::Metrics::new())
    }
}

const MEASURED_RUNNERS: [measured_peer::Runner; 3] = [
    measured_peer::Runner::Subprocess,
    measured_peer::Runner::Container,
    measured_peer::Runner::Wasm,
];
const MEASURED_OUTCOMES: [measured_peer::Outcome; 4] = [
    measured_peer::Outcome::Success,
    measured_peer::Outcome::Failure,
    measured_peer::Outcome::Canceled,
    measured_peer::Outcome::Timeout,
];
const MEASURED_KINDS: [measured_peer::Kind; 4] = [
    measured_peer::Kind::CgroupPrepareFailed,
    measured_peer::Kind::BackendConfigFailed,
    measured_peer::Kind::SpawnFailed,
    measured_peer::Kind::ModuleLoadFailed,
];

impl MetricsBackend for Measured {
    fn record_task_started(&self, runner: RunnerType) {
        self.0
            .solti_runner_tasks_started_total
            .inc(measured_peer::RunnerLabel {
                runner: MEASURED_RUNNERS[runner.index()],
            });
    }
    fn record_task_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        let label = || measured_peer::CompletionLabel {
            runner: MEASURED_RUNNERS[runner.index()],
            outcome: MEASURED_OUTCOMES[outcome.index()],
        };
        self.0.solti_runner_tasks_completed_total.inc(label());
        self.0
            .solti_runner_task_duration_seconds
            .observe(label(), seconds(ms));
    }
    fn record_runner_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        self.0
            .solti_runner_errors_total
            .inc(measured_peer::ErrorLabel {
                runner: MEASURED_RUNNERS[runner.index()],
                error: MEASURED_KINDS[kind.index()],
            });
    }
}

impl Peer for Measured {
    fn calls_counted(&self) -> u64 {
        counted_in_text(&self.export().unwrap())
    }
    fn export(&self) -> Option<String> {
        Some(measured_peer::encode(&self.0))
    }
}

/// Every backend of the comparison, by its row name.
/// How to make a fresh peer.
pub type MakePeer = fn() -> Arc<dyn Peer>;

/// Every peer that exports, with how to make a fresh one.
pub fn all_fresh() -> Vec<(&'static str, MakePeer)> {
    vec![
        ("taskmeter", || Arc::new(AtomicMetrics::new())),
        (
            "solti-prometheus 0.0.2",
            || Arc::new(SoltiPrometheus::new()),
        ),
        ("prometheus 0.14, cached", || {
            Arc::new(PrometheusCached::new())
        }),
        ("metrics 0.24 + exporter", || {
            Arc::new(MetricsExporter::new())
        }),
        ("prometheus-client 0.26, cached", || {
            Arc::new(PrometheusClient::new())
        }),
        ("measured 0.0.25", || Arc::new(Measured::new())),
    ]
}

pub fn all() -> Vec<(&'static str, Arc<dyn Peer>)> {
    vec![
        ("taskmeter", Arc::new(AtomicMetrics::new())),
        ("solti-prometheus 0.0.2", Arc::new(SoltiPrometheus::new())),
        ("prometheus 0.14, cached", Arc::new(PrometheusCached::new())),
        ("metrics 0.24 + exporter", Arc::new(MetricsExporter::new())),
        (
            "prometheus-client 0.26, cached",
            Arc::new(PrometheusClient::new()),
        ),
        ("measured 0.0.25", Arc::new(Measured::new())),
        ("hdrhistogram Mutex", Arc::new(HdrMutex::new())),
        ("hdrhistogram SyncHistogram", Arc::new(HdrSync::new())),
        ("floor: no-op", Arc::new(NoOp)),
        ("floor: shared fetch_add", Arc::new(SharedFetchAdd::new())),
        (
            "floor: thread-local plain",
            Arc::new(ThreadLocalPlain::new()),
        ),
    ]
}
