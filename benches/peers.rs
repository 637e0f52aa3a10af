//! taskmeter side by side with the libraries people use today, on the same workload and in
//! the same run: per-call cost in five scenarios, and what one Prometheus-text scrape of the
//! same content costs the process (taskmeter: snapshot and render; peers: gather and encode). `cargo bench --bench peers`, then `scripts/bench-table` for the table.
//!
//! Each peer is driven through the same `MetricsBackend` calls, with label handles resolved
//! once where the library allows it, and is checked afterwards to have counted exactly the
//! calls made.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use taskmeter::export::ExportConfig;
use taskmeter_workload::{replay, task_mix};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/peers.rs"]
mod peers;

use harness::{
    TASKS_PER_LIST, calls_of_batch, oversubscribed, replay_churning, replay_on_threads, scenarios,
};

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
        for (name, peer) in peers::all() {
            let mut made = 0;
            group.bench_function(format!("{name}/{scenario}"), |b| {
                b.iter_custom(|iters| {
                    peer.between_batches();
                    made += calls_of_batch(&lists, iters, churning);
                    if churning {
                        replay_churning(&peer, &lists, iters, |p| p.end_of_thread())
                    } else {
                        replay_on_threads(&peer, &lists, iters, |p| p.end_of_thread())
                    }
                })
            });
            // Every call made, counted once, by the backend's own reader (a filtered run may
            // not have run this row: then none were made).
            let counted = peer.calls_counted();
            assert!(
                counted == u64::MAX || counted == made,
                "{name} counted {counted} of the {made} calls made"
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
            // What a scrape costs a process: every peer's export gathers its state and encodes
            // it; taskmeter's takes a snapshot (as a scrape does when no snapshotter runs) and
            // renders it. Rendering an already-published snapshot is the second row.
            let metrics = taskmeter::AtomicMetrics::new();
            replay(&metrics, &calls);
            metrics.snapshot();
            group.bench_function("taskmeter/export", |b| {
                b.iter(|| metrics.snapshot().to_prometheus())
            });
            group.bench_function("taskmeter/export, render only", |b| {
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
                    metrics.snapshot().write_prometheus(&solti_only, &mut text);
                    text
                })
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
