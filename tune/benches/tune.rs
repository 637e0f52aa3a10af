//! What `taskmeter report` and `taskmeter compare` cost on an hour of recording: two interval
//! logs of 3,600 one-second intervals, 12 series, 1,000 tasks a second in all with the main
//! job's duration mix (`task_mix`), written by taskmeter's `IntervalLogSink`.
//!
//! `cargo bench -p taskmeter-tune --bench tune`. For each command, as the binary does it
//! (read, compute, render text and the HTML page): CPU seconds (user + system, `getrusage`)
//! and the peak of live heap memory (a counting allocator), the median of five runs.

use std::path::Path;

use taskmeter::AtomicMetrics;
use taskmeter::export::interval_log::IntervalLogSink;
use taskmeter_tune::render::{self, html};
use taskmeter_tune::{CompareOptions, compare, read_run, report};
use taskmeter_workload::{replay, task_mix};

#[path = "../tests/counting/mod.rs"]
mod counting;

use counting::Peak;

const INTERVALS: usize = 3600;
const TASKS_PER_SECOND: usize = 1000;

/// CPU seconds this process has used, user and system.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// An hour of the main job's mix, one snapshot a "second", written to `path`.
fn write_hour(path: &Path, seed: u64) {
    let metrics = AtomicMetrics::new();
    let mut log = IntervalLogSink::create(path).unwrap();
    let calls = task_mix(TASKS_PER_SECOND * INTERVALS, seed);
    // Each task is two calls (start, completion), plus an error every 100 tasks.
    for second in calls.chunks(calls.len().div_ceil(INTERVALS)) {
        replay(&metrics, second);
        log.write_snapshot(&metrics.snapshot()).unwrap();
    }
}

/// CPU seconds and peak heap bytes of `work`, the median of five runs.
fn measure(work: impl Fn()) -> (f64, f64) {
    let mut runs: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let peak = Peak::start();
            let start = cpu_seconds();
            work();
            let cpu = cpu_seconds() - start;
            (cpu, peak.bytes() as f64)
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let cpu = runs[2].0;
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    (cpu, runs[2].1)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("taskmeter-tune-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.hlog"), dir.join("b.hlog"));
    write_hour(&a, 1);
    write_hour(&b, 2);
    let size = std::fs::metadata(&a).unwrap().len();
    println!(
        "two logs of {INTERVALS} intervals, 12 series, {TASKS_PER_SECOND} tasks/s: {:.1} MiB each",
        size as f64 / (1 << 20) as f64
    );
    let (cpu, peak) = measure(|| {
        let run = read_run(&a).unwrap();
        let report = report(&[run], false).unwrap();
        std::hint::black_box(render::report_text(&report, false));
        std::hint::black_box(html::report_page(&report));
    });
    println!(
        "report (read, text, HTML):          {cpu:.3} s CPU, peak heap {:.1} MiB",
        peak / (1 << 20) as f64
    );
    let (cpu, peak) = measure(|| {
        let runs = [read_run(&a).unwrap(), read_run(&b).unwrap()];
        let (side_a, side_b) = runs.split_at(1);
        let comparison = compare(side_a, side_b, &CompareOptions::default()).unwrap();
        std::hint::black_box(render::compare_text(&comparison, false));
        std::hint::black_box(html::compare_page(&comparison, side_a, side_b).unwrap());
    });
    println!(
        "compare (1,000 resamples, text, HTML): {cpu:.3} s CPU, peak heap {:.1} MiB",
        peak / (1 << 20) as f64
    );
    std::fs::remove_dir_all(&dir).ok();
}
