//! The demo: runs the task mix on every core against an `AtomicMetrics` with a snapshotter,
//! optionally serving `/metrics` and writing an interval log, then prints what it measured.
//! `taskmeter report` and `taskmeter compare` read such logs back (`tune.rs`).
//! Arguments and wiring only; the work is in the libraries.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use taskmeter::export::interval_log::IntervalLogSink;
use taskmeter::export::json::JsonLinesSink;
use taskmeter::export::{ExportConfig, Format as ExportFormat};
use taskmeter::server::{MetricsServer, ServerConfig};
use taskmeter::{AtomicMetrics, RunnerType, SinkError, Snapshot, SnapshotterBuilder};

mod table;
mod tune;

use table::{live_line, summary_table};
use taskmeter_workload::{Call, replay, task_mix};

/// Runs a synthetic task-runner load against taskmeter and prints the figures; `report` and
/// `compare` read recorded runs back.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    Report(tune::ReportArgs),
    Compare(tune::CompareArgs),
}

/// The main job's options.
#[derive(Debug, clap::Args)]
struct Args {
    /// How long to record, in seconds (fractions allowed, up to a day).
    #[arg(long, default_value_t = 3.0, value_parser = positive_seconds)]
    duration: f64,
    /// Recording threads (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Snapshot period, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    period: u64,
    /// Serve /metrics and /metrics.json on this address while running (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    serve: Option<SocketAddr>,
    /// After the run, keep serving the final snapshot for this many seconds (with --serve).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, value_parser = linger_seconds)]
    linger: f64,
    /// A constant label on every exported series, as NAME=VALUE (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = name_value)]
    labels: Vec<(String, String)>,
    /// Write every snapshot's interval histograms to this HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    hlog: Option<PathBuf>,
    /// Write every snapshot to this JSON-lines log (schema taskmeter.snapshot/2, with buckets).
    #[arg(long, value_name = "FILE")]
    json_log: Option<PathBuf>,
    /// Make every task this many percent slower (negative: faster), to try `compare` on a
    /// known change.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0, allow_negative_numbers = true, value_parser = slowdown_percent)]
    slowdown: f64,
    /// Print the final snapshot in this format on stdout (the table then goes to stderr).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Prometheus text format 0.0.4.
    Prom,
    /// OpenMetrics 1.0 text.
    Openmetrics,
    /// taskmeter's JSON schema.
    Json,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        Ok(_) => Err("must be more than 0 and at most 86400 seconds".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn linger_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.0..=86_400.0).contains(&seconds) => Ok(seconds),
        Ok(_) => Err("must be from 0 to 86400 seconds".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn slowdown_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(percent) if (-99.0..=10_000.0).contains(&percent) => Ok(percent),
        Ok(_) => Err("must be from -99 to 10000 percent".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn name_value(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    Ok((name.to_owned(), value.to_owned()))
}

fn main() -> ExitCode {
    // The library reports failing sinks and the like as `tracing` events: print them.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Report(args)) => return tune::report(args),
        Some(Command::Compare(args)) => return tune::compare(args),
        None => {}
    }
    let args = cli.run;
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("taskmeter: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `calls` with every duration multiplied by `factor`.
fn slowed(mut calls: Vec<Call>, factor: f64) -> Vec<Call> {
    if factor != 1.0 {
        for call in &mut calls {
            if let Call::Completed(_, _, duration_ms) = call {
                *duration_ms = (*duration_ms as f64 * factor).round() as u64;
            }
        }
    }
    calls
}

fn run(args: &Args) -> Result<(), SinkError> {
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    // With --format, stdout carries only the dump.
    let report = |text: &str| {
        if args.format.is_some() {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    let export = args
        .labels
        .iter()
        .fold(ExportConfig::builder(), |builder, (name, value)| {
            builder.const_label(name, value)
        })
        .build()
        .map_err(|error| format!("--label: {error}"))?;
    let metrics = Arc::new(AtomicMetrics::new());
    report(&format!(
        "taskmeter: {threads} threads for {:.1} s, snapshot every {} ms; recording state {:.1} MiB\n",
        args.duration,
        args.period,
        metrics.recording_memory_bytes() as f64 / (1 << 20) as f64
    ));

    let mut snapshotter = SnapshotterBuilder::new(Duration::from_millis(args.period));
    if let Some(path) = &args.hlog {
        let log = IntervalLogSink::create(path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        snapshotter = snapshotter.sink(log);
        report(&format!("interval log: {}\n", path.display()));
    }
    if let Some(path) = &args.json_log {
        let log = JsonLinesSink::create(path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        snapshotter = snapshotter.sink(log);
        report(&format!("JSON-lines log: {}\n", path.display()));
    }
    if std::io::stderr().is_terminal() {
        snapshotter = snapshotter.sink(|snapshot: &Snapshot| -> Result<(), SinkError> {
            eprintln!("{}", live_line(snapshot));
            Ok(())
        });
    }
    // The demo's own metrics, in an application registry that the server merges with
    // taskmeter's families: one scrape holds both.
    let application = prometheus::Registry::new();
    let batches = prometheus::IntCounter::new(
        "demo_batches_total",
        "Batches of 100,000 tasks the demo's workers replayed",
    )
    .expect("a valid name");
    application
        .register(Box::new(batches.clone()))
        .expect("a new registry");
    let server = match args.serve {
        Some(addr) => {
            let config = ServerConfig::default()
                .bind(addr)
                .export(export.clone())
                .merge_registry(application);
            let server = MetricsServer::start(Arc::clone(&metrics), config)
                .map_err(|error| format!("cannot serve on {addr}: {error}"))?;
            report(&format!("serving {}\n", server.url()));
            Some(server)
        }
        None => None,
    };
    let snapshotter = snapshotter.spawn(&metrics);

    let recording = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|seed| {
            let (metrics, recording) = (Arc::clone(&metrics), Arc::clone(&recording));
            let batches = batches.clone();
            let slowdown = 1.0 + args.slowdown / 100.0;
            std::thread::spawn(move || {
                let calls = slowed(task_mix(100_000, seed as u64), slowdown);
                while recording.load(Ordering::Relaxed) {
                    replay(&*metrics, &calls);
                    batches.inc();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    recording.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.join().map_err(|_| "a recording thread panicked")?;
    }
    let elapsed = started.elapsed();
    snapshotter.stop();

    let snapshot = metrics.latest();
    let view = snapshot.cumulative();
    let calls: u64 = RunnerType::ALL
        .iter()
        .map(|&runner| view.started(runner) + view.completed_all(runner))
        .sum();
    report(&format!(
        "{calls} calls in {:.2} s: {:.1} M calls/s; {} snapshots, last one {:.1} MiB\n\n",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64() / 1e6,
        snapshot.sequence(),
        snapshot.memory_bytes() as f64 / (1 << 20) as f64
    ));
    report(&summary_table(&snapshot, view, elapsed));
    match args.format {
        Some(Format::Prom) => print!("{}", snapshot.render(ExportFormat::Prometheus, &export)),
        Some(Format::Openmetrics) => {
            print!("{}", snapshot.render(ExportFormat::OpenMetrics, &export))
        }
        Some(Format::Json) => println!("{}", snapshot.to_json_with(&export)),
        None => {}
    }
    if let Some(server) = server {
        if args.linger > 0.0 {
            report(&format!(
                "serving the final snapshot for {} s\n",
                args.linger
            ));
            let _ = std::io::Write::flush(&mut std::io::stdout());
            std::thread::sleep(Duration::from_secs_f64(args.linger));
        }
        server.stop();
    }
    Ok(())
}
