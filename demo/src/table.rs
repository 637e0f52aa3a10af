//! A plain-text summary table of a snapshot, for terminals and logs.

use std::fmt::Write;
use std::time::Duration;

use taskmeter::{RunnerErrorKind, RunnerType, Snapshot, TaskOutcome, View};

/// One row per `(runner, outcome)` with completions in `view`: count, rate over `over`, and
/// p50, p99 and max of the durations in ms; then started, in-flight and errors per runner.
pub(crate) fn summary_table(snapshot: &Snapshot, view: &View, over: Duration) -> String {
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
        let errors: u64 = RunnerErrorKind::ALL
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

/// One line on a snapshot's interval: calls per second, in flight, and p50/p99 (ms) of each
/// runner's completions of any outcome. For a live display, one line per snapshot.
pub(crate) fn live_line(snapshot: &Snapshot) -> String {
    let view = snapshot.interval();
    let seconds = snapshot.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    let calls: u64 = RunnerType::ALL
        .iter()
        .map(|&runner| view.started(runner) + view.completed_all(runner))
        .sum();
    let mut line = format!(
        "#{:<5} {:>8.2} M calls/s",
        snapshot.sequence(),
        calls as f64 / seconds / 1e6
    );
    for runner in RunnerType::ALL {
        let mut merged = view.duration(runner, TaskOutcome::Success).clone();
        for outcome in &TaskOutcome::ALL[1..] {
            // Same engine, same layout: adding cannot fail.
            let _ = merged.add(view.duration(runner, *outcome));
        }
        let _ = write!(
            line,
            " | {} in flight {} p50 {} p99 {}",
            runner.as_label(),
            snapshot.in_flight(runner),
            merged.value_at_quantile(0.5),
            merged.value_at_quantile(0.99)
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmeter::{AtomicMetrics, MetricsBackend};

    #[test]
    fn the_table_has_a_row_per_label_recorded_and_the_line_its_totals() {
        let metrics = AtomicMetrics::new();
        metrics.record_task_started(RunnerType::Wasm);
        metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 12);
        let snapshot = metrics.snapshot();
        let table = summary_table(&snapshot, snapshot.cumulative(), Duration::from_secs(1));
        // The completions section: a header and one row, for the one label recorded.
        let completions: Vec<&str> = table.lines().take_while(|l| !l.is_empty()).collect();
        assert_eq!(completions.len(), 2, "{table}");
        let row: Vec<&str> = completions[1].split_whitespace().collect();
        assert_eq!(row[..3], ["wasm", "success", "1"], "{table}");
        // The runners section: every runner, the one task started and none in flight.
        let wasm = table
            .lines()
            .filter(|l| l.starts_with("wasm"))
            .nth(1)
            .unwrap();
        assert_eq!(
            wasm.split_whitespace().collect::<Vec<_>>(),
            ["wasm", "1", "0", "0"]
        );
        assert!(!live_line(&snapshot).is_empty());
    }
}
