//! What the read side holds, counted by the allocator rather than by the engine's own
//! accounting: every byte the process holds beyond the engine's recording state, in steady
//! state with one snapshot held (the published one), after 20 rounds of 10,000 tasks each
//! followed by a snapshot; and what one snapshot taken with nothing recorded allocates while
//! the previous one is still held (as an exporter would).
//!
//! `cargo run --release --example read_side_memory` prints one line per mix and precision.
//! The mixes: the benchmarks' task mix, and a runner's (log2 of the duration in ms normally
//! distributed, mean 9.5, standard deviation 2).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
use taskmeter_workload::{replay, task_mix};

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size, Ordering::Relaxed);
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: as above; `ptr` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A runner's durations: log2 of the duration normally distributed (Box-Muller on a
/// xorshift), over every label, weighted like the task mix's runners and outcomes.
fn runner_mix(metrics: &AtomicMetrics, tasks: usize, state: &mut u64) {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1_u64 << 53) as f64
    };
    for _ in 0..tasks {
        let (u, v) = (next().max(f64::MIN_POSITIVE), next());
        let normal = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        let ms = 2_f64.powf(9.5 + 2.0 * normal) as u64;
        let pick = next();
        let runner = RunnerType::ALL[(pick * 100.0) as usize % 3];
        let outcome = TaskOutcome::ALL[(next() * 4.0) as usize % 4];
        metrics.record_task_started(runner);
        metrics.record_task_completed(runner, outcome, ms);
    }
}

fn main() {
    for mix in ["task mix", "runner mix"] {
        for digits in [3_u8, 4] {
            let metrics = AtomicMetrics::builder()
                .significant_digits(digits)
                .build()
                .unwrap();
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            let mut held = metrics.snapshot();
            for round in 0..20 {
                match mix {
                    "task mix" => replay(&metrics, &task_mix(10_000, round)),
                    _ => runner_mix(&metrics, 10_000, &mut state),
                }
                held = metrics.snapshot();
            }
            // Nothing recorded since: what one more snapshot allocates while `held` is kept.
            let before = ALLOCATED.load(Ordering::Relaxed);
            let quiet = metrics.snapshot();
            let quiet_allocated = ALLOCATED.load(Ordering::Relaxed) - before;
            drop(held);
            drop(quiet);
            let read_side = HELD.load(Ordering::Relaxed) - metrics.recording_memory_bytes();
            println!(
                "{mix}, {digits} digits: read side holds {:.2} MiB; a quiet snapshot allocates {:.1} KiB",
                read_side as f64 / (1 << 20) as f64,
                quiet_allocated as f64 / 1024.0,
            );
        }
    }
}
