//! The families every Prometheus exposition carries, listed once: the text formats
//! ([`super::prometheus`]) and the protobuf format (`super::native`) are two [`Encoder`]s of
//! this one list, so their names, types, help texts and values cannot drift apart.

use super::{ExportConfig, QuantilesOver, SOLTI_BUCKETS_SECONDS};
use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::layout::completion_label;
use crate::snapshot::{DurationCounts, Snapshot, View};

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A counter's or gauge's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Number {
    Count(u64),
    Signed(i64),
    /// Seconds, written with millisecond precision.
    Seconds(f64),
}

/// The labels of one series, constant labels excluded (encoders add those).
pub(crate) type Labels<'a> = &'a [(&'a str, &'a str)];

/// Writes the families in some format. Calls come as: `family`, then that family's series.
pub(crate) trait Encoder {
    /// Starts a family. `name` is the full name, with `_total` for counters.
    fn family(&mut self, name: &str, kind: Kind, help: &str, unit: Option<&str>);
    /// A series of a counter or gauge family.
    fn number(&mut self, labels: Labels<'_>, value: Number);
    /// A series of a histogram family: `cumulative[i]` values at or below `bounds[i]` (in
    /// seconds), `count` in all, summing `sum_ms` exactly.
    fn histogram(
        &mut self,
        labels: Labels<'_>,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum_ms: u128,
    );
    /// A series of a summary family: `(quantile, value in ms or None when empty)`.
    fn summary(
        &mut self,
        labels: Labels<'_>,
        quantiles: &[(f64, Option<u64>)],
        count: u64,
        sum_ms: u128,
    );
    /// Whether this format carries native histograms: then the native family follows the
    /// classic histogram family, through [`native_histogram`](Self::native_histogram).
    fn carries_native_histograms(&self) -> bool {
        false
    }
    /// A series of the native histogram family, from the HDR data itself.
    fn native_histogram(
        &mut self,
        _labels: Labels<'_>,
        _durations: &DurationCounts,
        _count: u64,
        _sum_ms: u128,
    ) {
    }
}

/// HELP of the classic histogram family.
const DURATION_HELP: &str = "Task execution duration in seconds";

/// Every family of `snapshot`, as `config` names and shapes them, into `encoder`.
pub(crate) fn encode(snapshot: &Snapshot, config: &ExportConfig, encoder: &mut impl Encoder) {
    let view = snapshot.cumulative();
    let name = |name: &str| config.metric_name(name);

    encoder.family(
        &name("tasks_started_total"),
        Kind::Counter,
        "Total number of tasks started",
        None,
    );
    for runner in RunnerType::ALL {
        let value = Number::Count(view.started(runner));
        encoder.number(&[("runner", runner.as_label())], value);
    }

    encoder.family(
        &name("tasks_completed_total"),
        Kind::Counter,
        "Total number of tasks completed",
        None,
    );
    for (runner, outcome) in completion_labels() {
        let value = Number::Count(view.completed(runner, outcome));
        encoder.number(&labels_of(runner, outcome), value);
    }

    encoder.family(
        &name("task_duration_seconds"),
        Kind::Histogram,
        DURATION_HELP,
        Some("seconds"),
    );
    let mut cumulative = vec![0; config.buckets_seconds().len()];
    for (runner, outcome) in completion_labels() {
        bucket_counts_of(view, runner, outcome, config, &mut cumulative);
        let (count, sum_ms) = count_and_sum(view, runner, outcome);
        let bounds = config.buckets_seconds();
        encoder.histogram(
            &labels_of(runner, outcome),
            bounds,
            &cumulative,
            count,
            sum_ms,
        );
    }
    if encoder.carries_native_histograms() {
        encoder.family(
            &name("task_duration_native_seconds"),
            Kind::Histogram,
            "Task execution duration in seconds, as a native histogram from the HDR data",
            Some("seconds"),
        );
        for (runner, outcome) in completion_labels() {
            let (count, sum_ms) = count_and_sum(view, runner, outcome);
            let durations = view.duration_counts(runner, outcome);
            encoder.native_histogram(&labels_of(runner, outcome), durations, count, sum_ms);
        }
    }

    encoder.family(
        &name("errors_total"),
        Kind::Counter,
        "Total runner-level errors",
        None,
    );
    for runner in RunnerType::ALL {
        for kind in RunnerErrorKind::ALL {
            let labels = [("runner", runner.as_label()), ("error", kind.as_label())];
            encoder.number(&labels, Number::Count(view.errors(runner, kind)));
        }
    }
    // Custom labels from their first count on (the table bounds them).
    for (runner, kind, count) in view.labelled_errors() {
        encoder.number(&[("runner", runner), ("error", kind)], Number::Count(count));
    }

    #[cfg(all(feature = "solti", not(loom)))]
    if let Some(figures) = &snapshot.taskvisor {
        encode_taskvisor(figures, config, encoder);
    }

    // What every exposition says about the snapshot behind it, so that a stale one shows: a
    // timestamp that stops moving (alert on `time() - …_snapshot_timestamp_seconds`), and
    // the sequence.
    encoder.family(
        &name("snapshot_timestamp_seconds"),
        Kind::Gauge,
        "Wall-clock time the snapshot behind this exposition was taken, in seconds since the \
         Unix epoch",
        Some("seconds"),
    );
    let seconds = match snapshot.taken_at().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    encoder.number(&[], Number::Seconds(seconds));
    encoder.family(
        &name("snapshot_sequence"),
        Kind::Gauge,
        "Sequence number of the snapshot behind this exposition (0: none taken yet)",
        None,
    );
    encoder.number(&[], Number::Count(snapshot.sequence()));

    if !config.extra_families() {
        return;
    }
    encoder.family(
        &name("tasks_in_flight"),
        Kind::Gauge,
        "Tasks started and not yet completed",
        None,
    );
    for runner in RunnerType::ALL {
        let value = Number::Signed(snapshot.in_flight(runner));
        encoder.number(&[("runner", runner.as_label())], value);
    }

    encode_summaries(snapshot, config, encoder);

    encoder.family(
        &name("task_duration_clamped_total"),
        Kind::Counter,
        "Task durations above the configured range, recorded as its top",
        None,
    );
    for (runner, outcome) in completion_labels() {
        let value = Number::Count(view.clamped(runner, outcome));
        encoder.number(&labels_of(runner, outcome), value);
    }

    let unlabelled = [
        (
            "snapshot_sink_failures_total",
            Kind::Counter,
            "Snapshot sink calls that returned an error or panicked",
            snapshot.sink_failures(),
        ),
        (
            "snapshot_failures_total",
            Kind::Counter,
            "Snapshots a snapshotter took that panicked; the next one holds their calls",
            snapshot.snapshot_failures(),
        ),
        (
            "custom_label_overflows_total",
            Kind::Counter,
            "Runner errors counted under the overflow label because a custom label table was full",
            view.custom_label_overflows(),
        ),
        (
            "snapshot_carried_stripes",
            Kind::Gauge,
            "Stripes the snapshot left to a later one because a writer was inside a call",
            snapshot.carried_stripes() as u64,
        ),
    ];
    for (family, kind, help, value) in unlabelled {
        encoder.family(&name(family), kind, help, None);
        encoder.number(&[], Number::Count(value));
    }
}

/// Every family [`encode`] can write for `snapshot`'s engine: its families, and taskvisor's
/// even before a subscriber is attached (a registry's descriptors).
#[cfg(feature = "prometheus")]
pub(crate) fn encode_every_family(
    snapshot: &Snapshot,
    config: &ExportConfig,
    encoder: &mut impl Encoder,
) {
    encode(snapshot, config, encoder);
    #[cfg(all(feature = "solti", not(loom)))]
    if snapshot.taskvisor.is_none() {
        encode_taskvisor(&Default::default(), config, encoder);
    }
}

/// The families of solti-prometheus 0.0.8's `PrometheusTaskvisorSubscriber`, with its names,
/// types, labels and HELP texts (subsystem `taskvisor`), and taskmeter's two about lost
/// events.
#[cfg(all(feature = "solti", not(loom)))]
fn encode_taskvisor(
    figures: &crate::solti::TaskvisorFigures,
    config: &ExportConfig,
    encoder: &mut impl Encoder,
) {
    use crate::solti::{BACKOFF_BUCKETS_SECONDS, BACKOFF_SOURCES, FINAL_OUTCOMES};
    let name = |name: &str| {
        let mut full = config.namespace().to_owned();
        if !full.is_empty() {
            full.push('_');
        }
        full.push_str("taskvisor_");
        full.push_str(name);
        full
    };
    let single = |encoder: &mut _, family: &str, kind, help: &str, value: u64| {
        Encoder::family(encoder, &name(family), kind, help, None);
        Encoder::number(encoder, &[], Number::Count(value));
    };
    single(
        encoder,
        "attempts_in_flight",
        Kind::Gauge,
        "Active task attempts tracked from delivered Taskvisor events; permanently NaN after \
         detected event loss",
        figures.attempts_in_flight,
    );
    single(
        encoder,
        "task_restarts_total",
        Kind::Counter,
        "Total task restarts (attempt > 1)",
        figures.restarts,
    );
    encoder.family(
        &name("task_backoffs_total"),
        Kind::Counter,
        "Total backoff events",
        None,
    );
    for (source, &count) in BACKOFF_SOURCES.iter().zip(&figures.backoffs) {
        encoder.number(&[("source", source)], Number::Count(count));
    }
    encoder.family(
        &name("task_backoff_duration_seconds"),
        Kind::Histogram,
        "Backoff delay duration in seconds",
        Some("seconds"),
    );
    let mut running = 0;
    let cumulative: Vec<u64> = figures.backoff_buckets[..BACKOFF_BUCKETS_SECONDS.len()]
        .iter()
        .map(|&count| {
            running += count;
            running
        })
        .collect();
    let count = figures.backoff_buckets.iter().sum();
    let sum_ms = u128::from(figures.backoff_sum_ms);
    encoder.histogram(&[], &BACKOFF_BUCKETS_SECONDS, &cumulative, count, sum_ms);
    encoder.family(
        &name("task_final_outcomes_total"),
        Kind::Counter,
        "Total final task outcomes",
        None,
    );
    for (outcome, &count) in FINAL_OUTCOMES.iter().zip(&figures.final_outcomes) {
        encoder.number(&[("outcome", outcome)], Number::Count(count));
    }
    let counters = [
        (
            "attempt_timeouts_total",
            "Total attempt timeout events",
            figures.attempt_timeouts,
        ),
        (
            "subscriber_overflows_total",
            "Total Taskvisor events reported lost by overflow diagnostics",
            figures.overflows,
        ),
        (
            "subscriber_panics_total",
            "Total subscriber panic events",
            figures.panics,
        ),
        (
            "runtime_failures_total",
            "Total internal taskvisor runtime failure events",
            figures.runtime_failures,
        ),
        (
            "ownership_retirements_total",
            "Total delivered Taskvisor ownership-capacity retirement events",
            figures.ownership_retirements,
        ),
        (
            "ownership_retired_units_total",
            "Total ownership-capacity units reported permanently retired by delivered Taskvisor \
             events",
            figures.ownership_retired_units,
        ),
    ];
    for (family, help, value) in counters {
        single(encoder, family, Kind::Counter, help, value);
    }
    if !config.extra_families() {
        return;
    }
    single(
        encoder,
        "lost_attempt_closes_total",
        Kind::Counter,
        "Attempts whose close event was lost, taken out of in-flight",
        figures.lost_attempt_closes,
    );
    single(
        encoder,
        "repaired_attempt_opens_total",
        Kind::Counter,
        "Attempts whose start event was lost, recorded as started at their close",
        figures.repaired_attempt_opens,
    );
    single(
        encoder,
        "suspect_attempts",
        Kind::Gauge,
        "Attempts taken out of in-flight by an overflow, waiting for a close that may be lost",
        figures.suspect_attempts,
    );
    single(
        encoder,
        "forgotten_attempts_total",
        Kind::Counter,
        "Attempts the subscriber stopped tracking, or never tracked, because its attempt table \
         was full; out of in-flight",
        figures.forgotten_attempts,
    );
    single(
        encoder,
        "duplicate_attempt_events_total",
        Kind::Counter,
        "Attempt and task-end events delivered again for an attempt or task already closed, \
         ignored",
        figures.duplicate_attempt_events,
    );
}

/// The HDR summary: quantiles (and the maximum, as quantile 1) from the configured view,
/// `_sum` and `_count` cumulative, as Prometheus client summaries have them.
fn encode_summaries(snapshot: &Snapshot, config: &ExportConfig, encoder: &mut impl Encoder) {
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
    let quantile_view = match config.quantiles_over() {
        QuantilesOver::Window => snapshot.window(),
        QuantilesOver::Cumulative => snapshot.cumulative(),
    };
    encoder.family(
        &config.metric_name("task_duration_hdr_seconds"),
        Kind::Summary,
        help,
        Some("seconds"),
    );
    let mut quantiles: Vec<(f64, Option<u64>)> = Vec::new();
    for (runner, outcome) in completion_labels() {
        let durations = quantile_view.duration_counts(runner, outcome);
        // Validated ascending: one walk over the blocks for all; an empty label costs nothing.
        let present = !durations.is_empty();
        let values = match present {
            true => durations.values_at_quantiles(config.quantiles()),
            false => Vec::new(),
        };
        quantiles.clear();
        quantiles.extend(
            config
                .quantiles()
                .iter()
                .enumerate()
                .map(|(i, &q)| (q, values.get(i).copied())),
        );
        if !config.quantiles().contains(&1.0) {
            quantiles.push((1.0, present.then(|| durations.max())));
        }
        let (count, sum_ms) = count_and_sum(snapshot.cumulative(), runner, outcome);
        encoder.summary(&labels_of(runner, outcome), &quantiles, count, sum_ms);
    }
}

pub(crate) fn completion_labels() -> impl Iterator<Item = (RunnerType, TaskOutcome)> {
    RunnerType::ALL.into_iter().flat_map(|runner| {
        TaskOutcome::ALL
            .into_iter()
            .map(move |outcome| (runner, outcome))
    })
}

fn labels_of(runner: RunnerType, outcome: TaskOutcome) -> [(&'static str, &'static str); 2] {
    [
        ("runner", runner.as_label()),
        ("outcome", outcome.as_label()),
    ]
}

fn count_and_sum(view: &View, runner: RunnerType, outcome: TaskOutcome) -> (u64, u128) {
    (
        view.completed(runner, outcome),
        view.duration_sum_ms_exact(runner, outcome),
    )
}

/// Fills `cumulative` with the completions of `(runner, outcome)` in each configured bucket.
fn bucket_counts_of(
    view: &View,
    runner: RunnerType,
    outcome: TaskOutcome,
    config: &ExportConfig,
    cumulative: &mut [u64],
) {
    if config.buckets_seconds() == SOLTI_BUCKETS_SECONDS {
        // The default buckets were counted while the reader drained: no scan.
        let counts = &view.solti_buckets[completion_label(runner, outcome)];
        let mut running = 0;
        for (total, &count) in cumulative.iter_mut().zip(counts) {
            running += count;
            *total = running;
        }
    } else {
        let bounds_ms = config.buckets_seconds().iter().map(|b| b * 1e3);
        bucket_counts(view.duration_counts(runner, outcome), bounds_ms, cumulative);
    }
}

/// Fills `cumulative[i]` with the completions whose HDR slot starts at or below `bounds_ms[i]`
/// (slot lower edges are integers, so that is the slot of `floor(bound)`).
pub(crate) fn bucket_counts(
    durations: &DurationCounts,
    bounds_ms: impl Iterator<Item = f64>,
    cumulative: &mut [u64],
) {
    for (count, bound) in cumulative.iter_mut().zip(bounds_ms) {
        // Bounds are validated finite and positive.
        *count = durations.count_at_or_below(bound.floor() as u64);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{AtomicMetrics, MetricsBackend};

    #[test]
    fn bucket_counts_are_cumulative_and_exact_in_the_unit_range() {
        let metrics = AtomicMetrics::new();
        let (runner, outcome) = (RunnerType::Wasm, TaskOutcome::Success);
        for value in [5, 10, 11, 25, 1_000, 1_999, 4_000_000] {
            metrics.record_task_completed(runner, outcome, value);
        }
        let snapshot = metrics.snapshot();
        let bounds = [10.0, 25.0, 1_000.0, 2_000.0, 3_600_000.0];
        let mut counts = [0; 5];
        let durations = snapshot.cumulative().duration_counts(runner, outcome);
        bucket_counts(durations, bounds.into_iter(), &mut counts);
        assert_eq!(counts, [2, 4, 5, 6, 6]);
    }
}
