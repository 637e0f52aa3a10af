#!/usr/bin/env bash
# Lean by default: a consumer crate that depends on taskmeter with its default features must
# compile none of the optional integrations' dependencies. Builds such a consumer in
# target/consumer and fails, naming them, if any is in its dependency tree.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
consumer="$root/target/consumer"
rm -rf "$consumer" && mkdir -p "$consumer/src"
cat > "$consumer/Cargo.toml" <<TOML
[package]
name = "consumer"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
taskmeter = { path = "$root" }

[workspace]
TOML
cat > "$consumer/src/main.rs" <<'RS'
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
use taskmeter::export::{ExportConfig, Format};

fn main() {
    let metrics = AtomicMetrics::new();
    metrics.record_task_started(RunnerType::Wasm);
    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 12);
    let text = metrics.snapshot().render(Format::Prometheus, &ExportConfig::default());
    assert!(text.contains("runner=\"wasm\""));
}
RS
cp "$root/Cargo.lock" "$consumer/Cargo.lock"
cd "$consumer"
tree="$(cargo tree -e normal,build --prefix none)"
heavy="$(grep -E '^(clap|hyper|hyper-util|tokio|serde|serde_json|axum|tower|prost|protox|prometheus-client|solti-runner|taskvisor|tracing-subscriber) ' <<<"$tree" || true)"
if [ -n "$heavy" ]; then
    echo "a consumer with taskmeter's default features compiles:" >&2
    echo "$heavy" >&2
    exit 1
fi
echo "a consumer with default features compiles $(wc -l <<<"$(sort -u <<<"$tree")") crates:"
sort -u <<<"$tree" | sed 's/ (.*//' | tr '\n' ' '; echo
cargo run -q

# prometheus without its `protobuf` feature has another data model (getters differ): the
# collector and the merged registry compile and serve against it too.
mkdir -p "$consumer/plain/src"
cat > "$consumer/plain/Cargo.toml" <<TOML
[package]
name = "plain-prometheus"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
taskmeter = { path = "$root", features = ["prometheus", "native-histograms"] }
prometheus = { version = "0.14.0", default-features = false }

[workspace]
TOML
cat > "$consumer/plain/src/main.rs" <<'RS'
use std::sync::Arc;
use taskmeter::export::Endpoint;
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType};

fn main() {
    let registry = prometheus::Registry::new();
    let requests = prometheus::IntCounter::new("api_requests_total", "API requests").unwrap();
    registry.register(Box::new(requests.clone())).unwrap();
    let metrics = Arc::new(AtomicMetrics::new());
    registry
        .register(Box::new(taskmeter::collector::PrometheusCollector::new(Arc::clone(&metrics))))
        .unwrap();
    let endpoint = Endpoint::new(metrics.clone()).merge_registry(prometheus::Registry::new()).unwrap();
    requests.inc();
    metrics.record_task_started(RunnerType::Wasm);
    let text = String::from_utf8(endpoint.metrics(None).body).unwrap();
    assert!(text.contains("solti_runner_tasks_started_total{runner=\"wasm\"} 1"));
    let merged = Endpoint::new(metrics).merge_registry(registry).unwrap_err();
    // The registry holding taskmeter's collector uses every one of its names.
    assert!(merged.family().starts_with("solti_runner_"), "{}", merged.family());
}
RS
cp "$root/Cargo.lock" "$consumer/plain/Cargo.lock"
cd "$consumer/plain"
if cargo tree -e normal -i protobuf >/dev/null 2>&1; then
    echo "the plain-prometheus consumer compiles prometheus's protobuf feature" >&2
    exit 1
fi
cargo run -q
echo "prometheus without protobuf: the collector and the merged registry work"
