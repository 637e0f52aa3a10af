//! Writes one snapshot of the task mix in every export format, for external validators:
//! `cargo run --release --example export_samples -- DIR` writes `DIR/metrics.prom`,
//! `DIR/metrics.om` (OpenMetrics), `DIR/metrics.json`, `DIR/durations.hlog`, and
//! `DIR/registry.om`: a prometheus-client registry holding an application counter and
//! taskmeter's collector, in that registry's OpenMetrics text.
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

    let metrics = std::sync::Arc::new(metrics);
    let mut registry = prometheus_client::registry::Registry::default();
    let requests = prometheus_client::metrics::counter::Counter::<u64>::default();
    registry.register("api_requests", "API requests", requests.clone());
    requests.inc();
    let collector = taskmeter::collector::PrometheusClientCollector::new(metrics);
    registry.register_collector(Box::new(collector));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    std::fs::write(dir.join("registry.om"), text)?;
    println!("wrote {}", dir.display());
    Ok(())
}
