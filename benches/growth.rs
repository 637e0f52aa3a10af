//! How taskmeter's costs grow: per-call cost with 1, 2, 4 and 8 recording threads; snapshot
//! time and memory against significant digits (2, 3, 4) and against how many short-lived
//! threads ever recorded (1 to 64). `cargo bench --bench growth`; the memory figures go to
//! `target/criterion/growth-memory.json` for `scripts/bench-table`.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use taskmeter::AtomicMetrics;
use taskmeter_workload::{Totals, replay, task_mix};

#[path = "common/harness.rs"]
mod harness;

use harness::{TASKS_PER_LIST, calls_of_batch, replay_on_threads};

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("growth threads");
    for threads in [1_u64, 2, 4, 8] {
        let lists: Vec<_> = (0..threads)
            .map(|seed| task_mix(TASKS_PER_LIST / 5, seed))
            .collect();
        group.throughput(Throughput::Elements(lists[0].len() as u64));
        let metrics = Arc::new(AtomicMetrics::new());
        let mut made = 0;
        group.bench_function(format!("{threads} threads"), |b| {
            b.iter_custom(|iters| {
                // The snapshotter's turns between batches (see `Peer::between_batches`).
                metrics.snapshot();
                metrics.snapshot();
                made += calls_of_batch(&lists, iters, false);
                replay_on_threads(&metrics, &lists, iters, |_| {})
            })
        });
        // Every call made, counted once.
        let snapshot = metrics.snapshot();
        let view = snapshot.cumulative();
        let counted: u64 = taskmeter::RunnerType::ALL
            .iter()
            .map(|&runner| {
                view.started(runner)
                    + view.completed_all(runner)
                    + taskmeter::RunnerErrorKind::ALL
                        .iter()
                        .map(|&kind| view.errors(runner, kind))
                        .sum::<u64>()
            })
            .sum();
        assert_eq!(counted, made, "{threads} threads: counted of made");
    }
    group.finish();
}

fn digits(c: &mut Criterion, memory: &mut Vec<String>) {
    let mut group = c.benchmark_group("growth digits");
    let calls = task_mix(10_000, 5);
    for digits in [2_u8, 3, 4] {
        let metrics = AtomicMetrics::builder()
            .significant_digits(digits)
            .build()
            .unwrap();
        group.bench_function(format!("snapshot after 10k tasks/{digits} digits"), |b| {
            b.iter_batched(
                || replay(&metrics, &calls),
                |()| metrics.snapshot(),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("scrape after 10k tasks/{digits} digits"), |b| {
            b.iter_batched(
                || replay(&metrics, &calls),
                |()| metrics.snapshot().to_prometheus(),
                BatchSize::PerIteration,
            )
        });
        memory.push(format!(
            "\"{digits} digits\": {{\"recording_bytes\": {}, \"snapshot_bytes\": {}}}",
            metrics.recording_memory_bytes(),
            metrics.latest().memory_bytes()
        ));
    }
    group.finish();
}

fn threads_ever(c: &mut Criterion, memory: &mut Vec<String>) {
    let mut group = c.benchmark_group("growth threads ever recorded");
    for spawned in [1_u64, 8, 64] {
        let metrics = AtomicMetrics::new();
        let before = metrics.recording_memory_bytes();
        let lists: Vec<_> = (0..spawned).map(|seed| task_mix(1_000, seed)).collect();
        std::thread::scope(|scope| {
            for calls in &lists {
                let metrics = &metrics;
                scope.spawn(move || replay(metrics, calls));
            }
        });
        // Nothing an exited thread recorded is lost, and memory did not move.
        let mut expected = Totals::default();
        lists.iter().for_each(|calls| expected.add(calls));
        let snapshot = metrics.snapshot();
        for runner in taskmeter::RunnerType::ALL {
            assert_eq!(
                snapshot.cumulative().started(runner),
                expected.started(runner)
            );
        }
        assert_eq!(metrics.recording_memory_bytes(), before);
        let one_task = task_mix(1, 0);
        group.bench_function(format!("snapshot/{spawned} threads"), |b| {
            b.iter_batched(
                || replay(&metrics, &one_task),
                |()| metrics.snapshot(),
                BatchSize::PerIteration,
            )
        });
        memory.push(format!(
            "\"{spawned} threads ever\": {{\"recording_bytes\": {}, \"snapshot_bytes\": {}}}",
            metrics.recording_memory_bytes(),
            snapshot.memory_bytes()
        ));
    }
    group.finish();
}

fn growth(c: &mut Criterion) {
    threads(c);
    let mut memory = Vec::new();
    digits(c, &mut memory);
    threads_ever(c, &mut memory);
    let json = format!("{{{}}}\n", memory.join(", "));
    let _ = std::fs::create_dir_all("target/criterion");
    let _ = std::fs::write("target/criterion/growth-memory.json", json);
}

criterion_group! {
    name = benches;
    config = harness::many_rows_config();
    targets = growth
}
criterion_main!(benches);
