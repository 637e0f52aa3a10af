//! Resident memory follows use: an engine sized for a large host (80 stripes) makes little
//! resident until threads record, and then about what they wrote. Each configuration is
//! measured in a child process of its own (this test binary, run again), so that the resident
//! set it reads is that configuration's alone.
#![cfg(all(target_os = "linux", not(loom), not(miri)))]

use std::process::Command;
use std::sync::Barrier;

use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};

const MIB: usize = 1 << 20;
const THREADS: u64 = 4;
const TASKS: u64 = 1_000_000;
/// Set in a child: the stripes to measure.
const STRIPES_VAR: &str = "TASKMETER_MEMORY_STRIPES";

/// This process's resident set, from `/proc/self/status`.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// A runner's durations: nine in ten log-uniform between 50 ms and 2 s, the rest between
/// 1 ms and 5 minutes. (xorshift: no allocation, no dependency.)
fn realistic_duration(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let unit = (*state >> 11) as f64 / (1_u64 << 53) as f64;
    let (low, high): (f64, f64) = if state.is_multiple_of(10) {
        (1.0, 300_000.0)
    } else {
        (50.0, 2_000.0)
    };
    (low * (high / low).powf(unit)) as u64
}

/// What one configuration makes resident: after `build()`, after four threads recorded a
/// million tasks each, and with a snapshot taken; and what it reserves. Checks the snapshot
/// against what the threads recorded.
fn measure(stripes: usize) -> [usize; 4] {
    let before = resident_bytes();
    let metrics = AtomicMetrics::builder().stripes(stripes).build().unwrap();
    let built = resident_bytes().saturating_sub(before);
    let start_line = Barrier::new(THREADS as usize);
    let mut expected_sum = 0_u128;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS)
            .map(|seed| {
                let (metrics, start_line) = (&metrics, &start_line);
                scope.spawn(move || {
                    start_line.wait();
                    let mut state = 0x9E37_79B9_7F4A_7C15 ^ (seed + 1);
                    let mut sum = 0_u128;
                    for _ in 0..TASKS {
                        let duration = realistic_duration(&mut state);
                        sum += u128::from(duration);
                        metrics.record_task_started(RunnerType::Container);
                        metrics.record_task_completed(
                            RunnerType::Container,
                            TaskOutcome::Success,
                            duration,
                        );
                    }
                    sum
                })
            })
            .collect();
        for writer in writers {
            expected_sum += writer.join().unwrap();
        }
    });
    let recorded = resident_bytes().saturating_sub(before);
    let snapshot = metrics.snapshot();
    let view = snapshot.cumulative();
    assert_eq!(
        view.completed(RunnerType::Container, TaskOutcome::Success),
        THREADS * TASKS
    );
    assert_eq!(view.started(RunnerType::Container), THREADS * TASKS);
    assert_eq!(
        view.duration_sum_ms_exact(RunnerType::Container, TaskOutcome::Success),
        expected_sum
    );
    let with_snapshot = resident_bytes().saturating_sub(before);
    [
        built,
        recorded,
        with_snapshot,
        metrics.recording_memory_bytes(),
    ]
}

/// The child's side: measures the configuration its parent named, prints the four figures.
#[test]
#[ignore = "run by resident_memory_follows_use_not_stripes in a child process"]
fn child_measures_one_configuration() {
    let stripes: usize = std::env::var(STRIPES_VAR)
        .expect("run by the parent test")
        .parse()
        .unwrap();
    let figures = measure(stripes);
    println!("figures {figures:?}");
}

/// Runs [`child_measures_one_configuration`] for `stripes` in a child process.
fn measured_in_a_child(stripes: usize) -> [usize; 4] {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_measures_one_configuration",
            "--ignored",
            "--nocapture",
        ])
        .env(STRIPES_VAR, stripes.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("figures "))
        .unwrap_or_else(|| panic!("no figures from the child: {stdout}"));
    let figures: Vec<usize> = line
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|figure| figure.parse().unwrap())
        .collect();
    figures.try_into().unwrap()
}

#[test]
fn resident_memory_follows_use_not_stripes() {
    let mib = |bytes: usize| bytes as f64 / MIB as f64;
    let mut figures = Vec::new();
    for stripes in [3, 80] {
        let [built, recorded, with_snapshot, reserved] = measured_in_a_child(stripes);
        eprintln!(
            "{stripes} stripes: resident {:.1} MiB after build, {:.1} MiB after {} tasks, \
             {:.1} MiB with a snapshot; reserved {:.1} MiB",
            mib(built),
            mib(recorded),
            THREADS * TASKS,
            mib(with_snapshot),
            mib(reserved),
        );
        figures.push((stripes, built, recorded, with_snapshot, reserved));
    }
    let (_, built, recorded, with_snapshot, reserved) = figures[1];
    assert!(
        reserved > 100 * MIB,
        "meant for an engine that reserves much"
    );
    assert!(built <= 8 * MIB, "{built} bytes resident after build()");
    assert!(recorded <= 32 * MIB, "{recorded} bytes after recording");
    assert!(
        with_snapshot <= 32 * MIB,
        "{with_snapshot} bytes with a snapshot"
    );
}
