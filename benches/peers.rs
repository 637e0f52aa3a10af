//! taskmeter side by side with the libraries people use today, on the same workload and in
//! the same run: per-call cost in three scenarios, and the cost of one Prometheus-text export
//! of the same content. `cargo bench --bench peers`, then `scripts/bench-table` for the table.
//!
//! Each peer is driven through the same `MetricsBackend` calls, with label handles resolved
//! once where the library allows it, and is checked afterwards to have counted every call.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use taskmeter::export::ExportConfig;
use taskmeter_workload::{Totals, replay, task_mix};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/peers.rs"]
mod peers;

use harness::{TASKS_PER_LIST, oversubscribed, replay_churning, replay_on_threads, scenarios};

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("peers");
    let churn = ("churn", scenarios().swap_remove(1).1);
    let all = scenarios()
        .into_iter()
        .chain([oversubscribed()])
        .map(|scenario| (scenario, false))
        .chain([(churn, true)]);
    for ((scenario, lists), churning) in all {
        group.throughput(Throughput::Elements(lists[0].len() as u64));
        let list_calls: u64 = lists.iter().map(|l| Totals::of(l).calls()).sum();
        for (name, peer) in peers::all() {
            let mut ran = false;
            group.bench_function(format!("{name}/{scenario}"), |b| {
                ran = true;
                b.iter_custom(|iters| {
                    peer.between_batches();
                    if churning {
                        replay_churning(&peer, &lists, iters, |p| p.end_of_thread())
                    } else {
                        replay_on_threads(&peer, &lists, iters, |p| p.end_of_thread())
                    }
                })
            });
            let counted = peer.calls_counted();
            assert!(
                !ran || counted >= list_calls,
                "{name} counted {counted} of at least {list_calls} calls"
            );
        }
    }
    group.finish();
}

fn export(c: &mut Criterion) {
    let mut group = c.benchmark_group("export");
    let calls = task_mix(TASKS_PER_LIST, 7);
    for (name, peer) in peers::all() {
        replay(&*peer, &calls);
        peer.end_of_thread();
        if name == "taskmeter" {
            // taskmeter exports a published snapshot; taking one is the reader's cost, measured
            // separately here and in `record`'s reader group.
            let metrics = taskmeter::AtomicMetrics::new();
            replay(&metrics, &calls);
            metrics.snapshot();
            group.bench_function("taskmeter/export", |b| {
                b.iter(|| metrics.latest().to_prometheus())
            });
            // The same families as every peer exports (solti-prometheus's), nothing more.
            let solti_only = ExportConfig::builder()
                .extra_families(false)
                .build()
                .unwrap();
            group.bench_function("taskmeter/export, solti families", |b| {
                b.iter(|| {
                    let mut text = String::new();
                    metrics.latest().write_prometheus(&solti_only, &mut text);
                    text
                })
            });
            group.bench_function("taskmeter/snapshot and export", |b| {
                b.iter(|| metrics.snapshot().to_prometheus())
            });
            continue;
        }
        if peer.export().is_some() {
            group.bench_function(format!("{name}/export"), |b| b.iter(|| peer.export()));
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = harness::many_rows_config();
    targets = record, export
}
criterion_main!(benches);
