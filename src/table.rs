//! A plain-text summary table of a snapshot, for terminals and logs.

use std::fmt::Write;
use std::time::Duration;

use crate::contract::{RunnerType, TaskOutcome};
use crate::snapshot::{Snapshot, View};

/// One row per `(runner, outcome)` with completions in `view`: count, rate over `over`, and
/// p50, p99 and max of the durations in ms; then started, in-flight and errors per runner.
///
/// ```
/// use std::time::Duration;
/// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome, summary_table};
///
/// let metrics = AtomicMetrics::new();
/// metrics.record_task_started(RunnerType::Wasm);
/// metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 12);
/// let snapshot = metrics.snapshot();
/// let table = summary_table(&snapshot, snapshot.cumulative(), Duration::from_secs(1));
/// assert!(table.contains("wasm"));
/// ```
pub fn summary_table(snapshot: &Snapshot, view: &View, over: Duration) -> String {
    let seconds = over.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:<9} {:>13} {:>13} {:>9} {:>9} {:>9}",
        "runner", "outcome", "count", "rate/s", "p50 ms", "p99 ms", "max ms"
    );
    for runner in RunnerType::ALL {
        for outcome in TaskOutcome::ALL {
            let histogram = view.duration(runner, outcome);
            if histogram.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "{:<11} {:<9} {:>13} {:>13.0} {:>9} {:>9} {:>9}",
                runner.as_label(),
                outcome.as_label(),
                histogram.len(),
                histogram.len() as f64 / seconds,
                histogram.value_at_quantile(0.5),
                histogram.value_at_quantile(0.99),
                histogram.max(),
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<11} {:>13} {:>13} {:>13}",
        "runner", "started", "in flight", "errors"
    );
    for runner in RunnerType::ALL {
        let errors: u64 = crate::RunnerErrorKind::ALL
            .iter()
            .map(|&kind| view.errors(runner, kind))
            .sum();
        let _ = writeln!(
            out,
            "{:<11} {:>13} {:>13} {:>13}",
            runner.as_label(),
            view.started(runner),
            snapshot.in_flight(runner),
            errors
        );
    }
    out
}
