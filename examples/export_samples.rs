//! Writes one snapshot of the task mix in every export format, for external validators:
//! `cargo run --release --example export_samples -- DIR` writes `DIR/metrics.prom`,
//! `DIR/metrics.om` (OpenMetrics), `DIR/metrics.json` and `DIR/durations.hlog`.
//! `.ci/run` checks them with promtool, Python's prometheus_client and hdrh.

use std::path::PathBuf;

use taskmeter::export::interval_log::IntervalLogSink;
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome};
use taskmeter_workload::{replay, task_mix};

fn main() -> Result<(), taskmeter::SinkError> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: export_samples DIR")?);
    std::fs::create_dir_all(&dir)?;
    let metrics = AtomicMetrics::new();
    let mut log = IntervalLogSink::create(dir.join("durations.hlog"))?;
    for seed in 0..3 {
        replay(&metrics, &task_mix(20_000, seed));
        log.write_snapshot(&metrics.snapshot())?;
    }
    metrics.record_task_started(RunnerType::Wasm); // stays in flight
    metrics.record_task_started(RunnerType::Subprocess);
    metrics.record_runner_error(RunnerType::Container, RunnerErrorKind::SpawnFailed);
    metrics.record_task_completed(RunnerType::Subprocess, TaskOutcome::Timeout, u64::MAX);
    let snapshot = metrics.snapshot();
    log.write_snapshot(&snapshot)?;
    std::fs::write(dir.join("metrics.prom"), snapshot.to_prometheus())?;
    std::fs::write(dir.join("metrics.om"), snapshot.to_openmetrics())?;
    std::fs::write(dir.join("metrics.json"), snapshot.to_json())?;
    println!("wrote {}", dir.display());
    Ok(())
}
