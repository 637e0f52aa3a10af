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
