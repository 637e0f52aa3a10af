//! The demo: runs the task mix on every core against an `AtomicMetrics` with a snapshotter,
//! then prints what it measured. Arguments only; the work is in the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use taskmeter::workload::{replay, task_mix};
use taskmeter::{AtomicMetrics, RunnerType, summary_table};

/// Runs a synthetic task-runner load against taskmeter and prints the figures.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// How long to record, in seconds (fractions allowed).
    #[arg(long, default_value_t = 3.0, value_parser = positive_seconds)]
    duration: f64,
    /// Recording threads (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Snapshot period, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    period: u64,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        Ok(_) => Err("must be more than 0 and at most 86400 seconds".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let metrics = Arc::new(AtomicMetrics::new());
    println!(
        "taskmeter: {threads} threads for {:.1} s, snapshot every {} ms; recording state {:.1} MiB",
        args.duration,
        args.period,
        metrics.recording_memory_bytes() as f64 / (1 << 20) as f64
    );
    let snapshotter = metrics.spawn_snapshotter(Duration::from_millis(args.period));
    let recording = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|seed| {
            let (metrics, recording) = (Arc::clone(&metrics), Arc::clone(&recording));
            std::thread::spawn(move || {
                let calls = task_mix(100_000, seed as u64);
                while recording.load(Ordering::Relaxed) {
                    replay(&*metrics, &calls);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    recording.store(false, Ordering::Relaxed);
    for worker in workers {
        if worker.join().is_err() {
            eprintln!("taskmeter: a recording thread panicked");
            return ExitCode::FAILURE;
        }
    }
    let elapsed = started.elapsed();
    snapshotter.stop();
    let snapshot = metrics.latest();
    let view = snapshot.cumulative();
    let calls: u64 = RunnerType::ALL
        .iter()
        .map(|&runner| view.started(runner) + view.completed_all(runner))
        .sum();
    println!(
        "{calls} calls in {:.2} s: {:.1} M calls/s; {} snapshots, last one {:.1} MiB\n",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64() / 1e6,
        snapshot.sequence(),
        snapshot.memory_bytes() as f64 / (1 << 20) as f64
    );
    print!("{}", summary_table(&snapshot, view, elapsed));
    ExitCode::SUCCESS
}
