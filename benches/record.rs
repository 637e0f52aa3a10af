//! The record path and the reader, measured against a baseline in the same run.
//!
//! Every scenario replays the pre-generated mix of `taskmeter::workload` through a
//! `MetricsHandle` (dynamic dispatch, as runners call it). Figures are per call, per thread:
//! each thread replays its own list, and the time is the wall time of the slowest thread.
//!
//! - `1 thread`: one thread, the mix;
//! - `2 threads`: two threads, each with its own list of the mix;
//! - `2 threads, hot label`: two threads, all calls on (subprocess, success, 1 ms);
//!
//! each for taskmeter alone, taskmeter with a snapshotter running inside the timed window
//! (`taskmeter, snapshotter`), and the baseline.
//!
//! The baseline is the simplest correct design: one plain array of `CachePadded<AtomicU64>`
//! with one `fetch_add` per counter touched (started; completed, sum and one log2 bucket), and
//! no consistent reader. Run: `cargo bench --bench record`; `scripts/bench-table` prints the
//! table for the README.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use taskmeter::{AtomicMetrics, MetricsBackend};
use taskmeter_workload::{replay, task_mix};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/peers.rs"]
mod peers;

use harness::{TASKS_PER_LIST, calls_of_batch, replay_on_threads, scenarios};
use peers::{Peer, SharedFetchAdd};

/// How often the snapshotter of the `taskmeter, snapshotter` rows snapshots: ten times the
/// demo's rate, so that several snapshots fall inside every timed batch.
const SNAPSHOT_PERIOD: Duration = Duration::from_millis(50);

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for (scenario, lists) in scenarios() {
        group.throughput(Throughput::Elements(lists[0].len() as u64));
        // The engine with a snapshotter running inside the timed windows: what the writers pay
        // for the snapshots (their slow path after each switch, the lines the reader takes).
        let observed = Arc::new(AtomicMetrics::new());
        let snapshotter = observed.spawn_snapshotter(SNAPSHOT_PERIOD);
        let backends: [(&str, Arc<dyn Peer>); 3] = [
            ("taskmeter", Arc::new(AtomicMetrics::new())),
            ("taskmeter, snapshotter", observed.clone()),
            ("baseline shared fetch_add", Arc::new(SharedFetchAdd::new())),
        ];
        for (name, backend) in backends {
            let mut made = 0;
            group.bench_function(format!("{name}/{scenario}"), |b| {
                b.iter_custom(|iters| {
                    backend.between_batches();
                    made += calls_of_batch(&lists, iters, false);
                    replay_on_threads(&backend, &lists, iters, |_| {})
                })
            });
            // Nobody is measured doing nothing: every call made was counted, once (a filtered
            // run, `cargo bench -- NAME`, may not have run this row: then none were made).
            let counted = backend.calls_counted();
            assert_eq!(counted, made, "{name}/{scenario}: counted of made");
        }
        snapshotter.stop();
    }
    group.finish();
}

fn reader(c: &mut Criterion) {
    let mut group = c.benchmark_group("reader");
    let metrics = Arc::new(AtomicMetrics::new());
    replay(&*metrics, &task_mix(TASKS_PER_LIST, 9));
    group.bench_function("snapshot/idle", |b| b.iter(|| metrics.snapshot()));
    // The same, while a thread holds a lease and records a task now and then (every ~50 µs):
    // each snapshot then makes its `membarrier` call and may wait for the holder.
    let holding = Arc::new(AtomicBool::new(true));
    let holder = {
        let (metrics, holding) = (Arc::clone(&metrics), Arc::clone(&holding));
        std::thread::spawn(move || {
            while holding.load(Ordering::Relaxed) {
                metrics.record_task_started(taskmeter::RunnerType::Wasm);
                metrics.record_task_completed(
                    taskmeter::RunnerType::Wasm,
                    taskmeter::TaskOutcome::Success,
                    3,
                );
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    group.bench_function("snapshot/idle, a lease holder active", |b| {
        b.iter(|| metrics.snapshot())
    });
    holding.store(false, Ordering::Relaxed);
    holder.join().unwrap();
    // Idle snapshots of engines with few and many stripes (80: what the default gives a
    // 32-CPU host), each after the mix was recorded once: the cut follows what was written.
    for stripes in [3, 80] {
        let sized = AtomicMetrics::builder().stripes(stripes).build().unwrap();
        replay(&sized, &task_mix(TASKS_PER_LIST, 9));
        group.bench_function(format!("snapshot/idle, {stripes} stripes"), |b| {
            b.iter(|| sized.snapshot())
        });
    }
    // A snapshot that drains 10,000 tasks of the mix (recorded outside the timing).
    let ten_thousand = task_mix(10_000, 11);
    group.bench_function("snapshot/after 10k tasks", |b| {
        b.iter_batched(
            || replay(&*metrics, &ten_thousand),
            |()| metrics.snapshot(),
            criterion::BatchSize::PerIteration,
        )
    });

    // The same with a window of 4 ms, so that every snapshot rolls it (its start moves on),
    // against the default window, each after the same 1 ms pause; and each with the window
    // read, as an exporter of its quantiles does (a window nobody reads is never computed).
    for (name, window) in [
        ("window 60 s", Duration::from_secs(60)),
        (
            "window 4 ms, rolling every snapshot",
            Duration::from_millis(4),
        ),
    ] {
        for read in [false, true] {
            let metrics = AtomicMetrics::builder().window(window).build().unwrap();
            let row = if read { ", window read" } else { "" };
            group.bench_function(format!("snapshot/after 10k tasks, {name}{row}"), |b| {
                b.iter_batched(
                    || {
                        replay(&metrics, &ten_thousand);
                        std::thread::sleep(Duration::from_millis(1));
                    },
                    |()| {
                        let snapshot = metrics.snapshot();
                        if read {
                            std::hint::black_box(snapshot.window());
                        }
                        snapshot
                    },
                    criterion::BatchSize::PerIteration,
                )
            });
        }
    }

    // Two threads record the mix at full speed while snapshots are taken.
    let recording = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..2)
        .map(|seed| {
            let (metrics, recording) = (Arc::clone(&metrics), Arc::clone(&recording));
            std::thread::spawn(move || {
                let calls = task_mix(TASKS_PER_LIST, 10 + seed);
                while recording.load(Ordering::Relaxed) {
                    replay(&*metrics, &calls);
                }
            })
        })
        .collect();
    group.bench_function("snapshot/2 threads recording", |b| {
        b.iter(|| metrics.snapshot())
    });
    recording.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    group.bench_function("latest", |b| b.iter(|| metrics.latest()));
    group.finish();
}

/// The `solti-0-0-2` feature's mapping: the same list through taskmeter's trait and through
/// `solti_runner` 0.0.2's (`cargo bench --bench record -- solti`).
#[cfg(feature = "solti-0-0-2")]
fn solti(c: &mut Criterion) {
    use solti_runner_0_0_2 as solti_runner;
    use taskmeter::MetricsHandle;
    use taskmeter_workload::Call;
    let calls = task_mix(TASKS_PER_LIST, 1);
    // Converted up front, so the loop measures only the calls.
    enum Upstream {
        Started(solti_runner::RunnerType),
        Completed(solti_runner::RunnerType, solti_runner::TaskOutcome, u64),
        Error(solti_runner::RunnerType, solti_runner::RunnerErrorKind),
    }
    let upstream: Vec<Upstream> = calls
        .iter()
        .map(|&call| match call {
            Call::Started(r) => Upstream::Started(peers::to_solti_runner(r)),
            Call::Completed(r, o, d) => {
                Upstream::Completed(peers::to_solti_runner(r), peers::to_solti_outcome(o), d)
            }
            Call::Error(r, k) => {
                Upstream::Error(peers::to_solti_runner(r), peers::to_solti_kind(k))
            }
        })
        .collect();
    let metrics = Arc::new(AtomicMetrics::new());
    let ours: MetricsHandle = metrics.clone();
    let theirs = metrics.solti_0_0_2_handle();
    let mut group = c.benchmark_group("solti");
    group.throughput(Throughput::Elements(calls.len() as u64));
    group.bench_function("taskmeter trait", |b| b.iter(|| replay(&*ours, &calls)));
    group.bench_function("solti_runner trait", |b| {
        b.iter(|| {
            for call in &upstream {
                match *call {
                    Upstream::Started(r) => theirs.record_task_started(r),
                    Upstream::Completed(r, o, d) => theirs.record_task_completed(r, o, d),
                    Upstream::Error(r, k) => theirs.record_runner_error(r, k),
                }
            }
        })
    });
    // A runner error under a built-in label and under a custom label already in the table,
    // through `record_labelled_runner_error`; the labels are made outside the timing (a
    // custom one is a `String` the call takes and drops, as solti's `Custom(String)` is).
    const ERRORS: usize = 1_000;
    let spawn = taskmeter::Label::Known(taskmeter::RunnerErrorKind::SpawnFailed);
    let plugin = || taskmeter::Label::Custom("image-resize".to_owned());
    metrics.record_labelled_runner_error(plugin(), spawn.clone());
    for (name, custom) in [("built-in label", false), ("known custom label", true)] {
        group.throughput(Throughput::Elements(ERRORS as u64));
        group.bench_function(format!("runner error, {name}"), |b| {
            b.iter_batched(
                || {
                    (0..ERRORS)
                        .map(|_| {
                            if custom {
                                plugin()
                            } else {
                                taskmeter::Label::Known(taskmeter::RunnerType::Wasm)
                            }
                        })
                        .collect::<Vec<_>>()
                },
                |labels| {
                    for runner in labels {
                        metrics.record_labelled_runner_error(runner, spawn.clone());
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

#[cfg(not(feature = "solti-0-0-2"))]
fn solti(_: &mut Criterion) {}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = record, reader, solti
}
criterion_main!(benches);
