//! Custom labels under the faults that a lock would turn into hangs, each in a child process
//! killed past a deadline (see `child`):
//!
//! - a signal handler recording under custom labels on a thread interrupted inside its own
//!   custom-label call, in the table and past it;
//! - `fork()` while threads record under custom labels past a full table, the child
//!   recording under them too.
#![cfg(all(target_os = "linux", not(loom), not(miri)))]

mod child;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use child::{exit_code, fork_and_wait, is_child_for, succeeded};
use taskmeter::{AtomicMetrics, LabelRef, OVERFLOW_LABEL, RunnerErrorKind, Snapshot};

/// A runner label the table keeps, and one past it (the table holds one runner label).
const IN_TABLE: LabelRef<'static, taskmeter::RunnerType> = LabelRef::Custom("image-resize");
const PAST_TABLE: LabelRef<'static, taskmeter::RunnerType> = LabelRef::Custom("gpu-batch");
const KIND: LabelRef<'static, RunnerErrorKind> = LabelRef::Known(RunnerErrorKind::SpawnFailed);

fn one_label_engine() -> AtomicMetrics {
    let metrics = AtomicMetrics::builder().custom_labels(1).build().unwrap();
    // Added outside any handler: adding a label copies it (an allocation).
    metrics.record_labelled_runner_error_ref(IN_TABLE, KIND);
    metrics
}

/// Records one error in the table and one past it.
fn record_both(metrics: &AtomicMetrics) {
    metrics.record_labelled_runner_error_ref(IN_TABLE, KIND);
    metrics.record_labelled_runner_error_ref(PAST_TABLE, KIND);
}

/// `(in the table, overflowed, overflows counted)` in the cumulative view.
fn counted(snapshot: &Snapshot) -> (u64, u64, u64) {
    let view = snapshot.cumulative();
    let of = |runner: &str| {
        let mut pairs = view.labelled_errors().filter(|&(r, _, _)| r == runner);
        pairs.next().map_or(0, |(_, kind, count)| {
            assert_eq!(kind, "spawn_failed");
            count
        })
    };
    (
        of("image-resize"),
        of(OVERFLOW_LABEL),
        view.custom_label_overflows(),
    )
}

// --- A signal handler that records under custom labels ------------------------------------

static SIGNAL_ENGINE: OnceLock<AtomicMetrics> = OnceLock::new();
static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn record_labels_from_handler(_: libc::c_int) {
    if let Some(metrics) = SIGNAL_ENGINE.get() {
        record_both(metrics);
        HANDLED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_signal_handler_recording_custom_labels_inside_such_a_call_is_counted_exactly() {
    const NAME: &str =
        "a_signal_handler_recording_custom_labels_inside_such_a_call_is_counted_exactly";
    if !is_child_for(NAME, "labels-signal", Duration::from_secs(60)) {
        return;
    }
    let metrics = SIGNAL_ENGINE.get_or_init(one_label_engine);
    let stop = AtomicBool::new(false);
    let calls = std::thread::scope(|scope| {
        let (thread_id, id_sent) = std::sync::mpsc::sync_channel(1);
        let stop = &stop;
        let writer = scope.spawn(move || {
            // SAFETY: installing a handler that only records and counts, in this test's child.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = record_labels_from_handler as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                assert_eq!(
                    libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
                    0
                );
            }
            thread_id.send(unsafe { libc::pthread_self() }).unwrap();
            let mut calls = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1_000 {
                    record_both(metrics);
                }
                calls += 1_000;
            }
            calls
        });
        let target = id_sent.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            // SAFETY: the writer thread is alive until `stop` is set below.
            unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
            std::thread::sleep(Duration::from_micros(50));
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap()
    });
    let handled = HANDLED.load(Ordering::Relaxed);
    assert!(handled > 1_000, "only {handled} signals were handled");
    let each = 1 + calls + handled;
    assert_eq!(
        counted(&metrics.snapshot()),
        (each, each - 1, each - 1),
        "{calls} calls and {handled} signals, each one error in the table and one past it"
    );
}

// --- fork() while threads record under custom labels --------------------------------------

#[test]
fn a_child_forked_while_threads_record_custom_labels_records_them_too() {
    const NAME: &str = "a_child_forked_while_threads_record_custom_labels_records_them_too";
    if !is_child_for(NAME, "labels-fork", Duration::from_secs(120)) {
        return;
    }
    const TRIALS: usize = 40;
    let metrics = one_label_engine();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    record_both(&metrics);
                }
            });
        }
        for trial in 0..TRIALS {
            std::thread::sleep(Duration::from_micros(if trial % 2 == 0 { 0 } else { 100 }));
            let status = fork_and_wait(20, || {
                exit_code({
                    let (in_table, past, overflows) = counted(&metrics.snapshot());
                    for _ in 0..100 {
                        record_both(&metrics);
                    }
                    counted(&metrics.snapshot()) == (in_table + 100, past + 100, overflows + 100)
                })
            });
            assert!(
                succeeded(status),
                "trial {trial}: the forked child failed or hung (status {status:#x})"
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
}
