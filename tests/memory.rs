//! Resident memory follows use: an engine sized for a large host (80 stripes) makes little
//! resident until threads record, and then about what they wrote. One test in its own
//! process, so that the resident set it reads is its own.
#![cfg(all(target_os = "linux", not(loom), not(miri)))]

use std::sync::Barrier;

use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};

const MIB: usize = 1 << 20;

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

#[test]
fn eighty_stripes_make_resident_what_their_threads_write() {
    const THREADS: u64 = 4;
    const TASKS: u64 = 1_000_000;
    let before = resident_bytes();
    let metrics = AtomicMetrics::builder().stripes(80).build().unwrap();
    let built = resident_bytes().saturating_sub(before);
    assert!(
        metrics.recording_memory_bytes() > 100 * MIB,
        "the test is meant for an engine that reserves much: {} bytes",
        metrics.recording_memory_bytes()
    );
    assert!(
        built <= 8 * MIB,
        "{built} bytes resident after build(), reserved {}",
        metrics.recording_memory_bytes()
    );

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
    assert!(
        recorded <= 32 * MIB,
        "{recorded} bytes resident after recording"
    );

    let snapshot = metrics.snapshot();
    let view = snapshot.cumulative();
    let completed = view.completed(RunnerType::Container, TaskOutcome::Success);
    assert_eq!(completed, THREADS * TASKS);
    assert_eq!(view.started(RunnerType::Container), THREADS * TASKS);
    assert_eq!(
        view.duration_sum_ms_exact(RunnerType::Container, TaskOutcome::Success),
        expected_sum
    );
    let with_snapshot = resident_bytes().saturating_sub(before);
    assert!(
        with_snapshot <= 32 * MIB,
        "{with_snapshot} bytes resident with a snapshot taken"
    );
    eprintln!(
        "resident: {:.1} MiB after build, {:.1} MiB after {} tasks, {:.1} MiB with a snapshot; \
         reserved {:.1} MiB",
        built as f64 / MIB as f64,
        recorded as f64 / MIB as f64,
        THREADS * TASKS,
        with_snapshot as f64 / MIB as f64,
        metrics.recording_memory_bytes() as f64 / MIB as f64,
    );
}
