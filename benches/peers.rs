//! taskmeter side by side with the libraries people use today, on the same workload and in
//! the same run: per-call cost in five scenarios, and what one Prometheus-text scrape of the
//! same content costs the process (taskmeter: snapshot and render; peers: gather and encode). `cargo bench --bench peers`, then `scripts/bench-table` for the table.
//!
//! Each peer is driven through the same `MetricsBackend` calls, with label handles resolved
//! once where the library allows it, and is checked afterwards to have counted exactly the
//! calls made.

use std::hint::black_box;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use taskmeter::AtomicMetrics;
use taskmeter::export::ExportConfig;
use taskmeter_workload::{Call, replay, task_mix};

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

/// A thread that stays alive between batches of calls, as a runner's worker does: each
/// `record` hands it a batch and waits until it is recorded.
struct Worker {
    batches: mpsc::Sender<Option<Arc<Vec<Call>>>>,
    done: mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn new(record: impl Fn(&[Call]) + Send + 'static) -> Self {
        let (batches, to_record) = mpsc::channel::<Option<Arc<Vec<Call>>>>();
        let (recorded, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            while let Ok(Some(calls)) = to_record.recv() {
                record(&calls);
                recorded.send(()).unwrap();
            }
        });
        Worker {
            batches,
            done,
            thread: Some(thread),
        }
    }

    fn record(&self, calls: &Arc<Vec<Call>>) {
        self.batches.send(Some(Arc::clone(calls))).unwrap();
        self.done.recv().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.batches.send(None);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Times `scrape` alone, each time after `worker` recorded `calls` (outside the timing).
fn timed_after_batches(
    iters: u64,
    worker: &Worker,
    calls: &Arc<Vec<Call>>,
    mut scrape: impl FnMut(),
) -> Duration {
    let mut timed = Duration::ZERO;
    for _ in 0..iters {
        worker.record(calls);
        let start = Instant::now();
        scrape();
        timed += start.elapsed();
    }
    timed
}

/// Scrape rows, each peer's export and taskmeter's snapshot + render of the same content:
/// - `export`: nothing recorded since the previous scrape;
/// - `export, busy`: 1,000 tasks of the mix over every label recorded since, by a worker
///   thread that stays alive;
/// - `first export after 1M tasks`: a fresh backend, one worker thread (alive, idle) having
///   recorded 1M tasks of the mix.
fn export(c: &mut Criterion) {
    let mut group = c.benchmark_group("export");
    let calls = task_mix(TASKS_PER_LIST, 7);
    let busy = Arc::new(task_mix(1_000, 8));
    // The same families as every peer exports (solti-prometheus's), nothing more.
    let solti_only = ExportConfig::builder()
        .extra_families(false)
        .build()
        .unwrap();
    let solti_scrape = |metrics: &AtomicMetrics| {
        let mut text = String::new();
        metrics.snapshot().write_prometheus(&solti_only, &mut text);
        text
    };
    for (name, peer) in peers::all() {
        replay(&*peer, &calls);
        peer.end_of_thread();
        if name == "taskmeter" {
            // What a scrape costs a process: every peer's export gathers its state and encodes
            // it; taskmeter's takes a snapshot (as a scrape does when no snapshotter runs) and
            // renders it. Rendering an already-published snapshot is a row of its own.
            let metrics = Arc::new(AtomicMetrics::new());
            replay(&*metrics, &calls);
            metrics.snapshot();
            group.bench_function("taskmeter/export", |b| {
                b.iter(|| metrics.snapshot().to_prometheus())
            });
            group.bench_function("taskmeter/export, render only", |b| {
                b.iter(|| metrics.latest().to_prometheus())
            });
            group.bench_function("taskmeter/export, solti families, render only", |b| {
                b.iter(|| {
                    let mut text = String::new();
                    metrics.latest().write_prometheus(&solti_only, &mut text);
                    text
                })
            });
            group.bench_function("taskmeter/export, solti families", |b| {
                b.iter(|| solti_scrape(&metrics))
            });
            let worker = {
                let metrics = metrics.clone();
                Worker::new(move |calls| replay(&*metrics, calls))
            };
            group.bench_function("taskmeter/export, solti families, busy", |b| {
                b.iter_custom(|iters| {
                    timed_after_batches(iters, &worker, &busy, || {
                        black_box(solti_scrape(&metrics));
                    })
                })
            });
            group.bench_function("taskmeter/export, busy", |b| {
                b.iter_custom(|iters| {
                    timed_after_batches(iters, &worker, &busy, || {
                        black_box(metrics.snapshot().to_prometheus());
                    })
                })
            });
            continue;
        }
        if peer.export().is_some() {
            group.bench_function(format!("{name}/export"), |b| b.iter(|| peer.export()));
            let worker = {
                let peer = peer.clone();
                Worker::new(move |calls| replay(&*peer, calls))
            };
            group.bench_function(format!("{name}/export, busy"), |b| {
                b.iter_custom(|iters| {
                    timed_after_batches(iters, &worker, &busy, || {
                        black_box(peer.export());
                    })
                })
            });
        }
    }
    group.finish();
}

/// The first scrape of a fresh backend after one worker thread, alive and idle, recorded 1M
/// tasks of the mix: what the first scrape of a long-running process costs.
fn first_export(c: &mut Criterion) {
    let mut group = c.benchmark_group("first export");
    group.sample_size(10);
    let million = Arc::new(task_mix(1_000_000, 12));
    let solti_only = ExportConfig::builder()
        .extra_families(false)
        .build()
        .unwrap();
    for (name, make) in peers::all_fresh() {
        if make().export().is_none() && name != "taskmeter" {
            continue;
        }
        group.bench_function(format!("{name}/after 1M tasks"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let peer = make();
                    let worker = {
                        let peer = peer.clone();
                        Worker::new(move |calls| replay(&*peer, calls))
                    };
                    worker.record(&million);
                    let start = Instant::now();
                    match peer.as_taskmeter() {
                        Some(metrics) => {
                            let mut text = String::new();
                            metrics.snapshot().write_prometheus(&solti_only, &mut text);
                            black_box(text);
                        }
                        None => {
                            black_box(peer.export());
                        }
                    }
                    timed += start.elapsed();
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = harness::many_rows_config();
    targets = record, export, first_export
}
criterion_main!(benches);
