//! Writes one snapshot of the task mix in every export format, for external validators:
//! `cargo run --release --example export_samples -- DIR` writes `DIR/metrics.prom`,
//! `DIR/metrics.om` (OpenMetrics), `DIR/metrics.json`, `DIR/durations.hlog`, and
//! `DIR/registry.om`: a prometheus-client registry holding an application counter and
//! taskmeter's collector, in that registry's OpenMetrics text; `DIR/merged.prom` and
//! `DIR/merged.om`: taskmeter's endpoint with an application's prometheus registry merged.
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
    let shared = std::sync::Arc::clone(&metrics);
    let mut registry = prometheus_client::registry::Registry::default();
    let requests = prometheus_client::metrics::counter::Counter::<u64>::default();
    registry.register("api_requests", "API requests", requests.clone());
    requests.inc();
    let collector = taskmeter::collector::PrometheusClientCollector::new(metrics);
    registry.register_collector(Box::new(collector));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    std::fs::write(dir.join("registry.om"), text)?;

    // The other way round: an application's prometheus registry merged into taskmeter's
    // endpoint, with a label value and a help text that need escapes.
    let application = prometheus::Registry::new();
    let errors = prometheus::IntCounterVec::new(
        prometheus::Opts::new("api_errors_total", "API errors \\ by \"path\""),
        &["path"],
    )
    .expect("valid");
    errors.with_label_values(&["/a\"b\\c\nd"]).inc();
    let latency = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
        "api_latency_seconds",
        "API latency",
    ))
    .expect("valid");
    latency.observe(0.2);
    for collector in [
        Box::new(errors) as Box<dyn prometheus::core::Collector>,
        Box::new(latency),
    ] {
        application.register(collector).expect("new names");
    }
    let endpoint = taskmeter::export::Endpoint::new(std::sync::Arc::clone(&shared))
        .merge_registry(application)
        .expect("no collision");
    std::fs::write(dir.join("merged.prom"), endpoint.metrics(None).body)?;
    let openmetrics = Some("application/openmetrics-text; version=1.0.0");
    std::fs::write(dir.join("merged.om"), endpoint.metrics(openmetrics).body)?;
    println!("wrote {}", dir.display());
    Ok(())
}
