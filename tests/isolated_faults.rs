//! Faults made for real, each in a child process of its own (this test binary, run again with
//! one scenario named in an environment variable), killed if it runs past a deadline, so that
//! no scenario can hang the suite or leave a signal handler, a seccomp filter or a scheduling
//! policy behind:
//!
//! - a signal handler that records on a thread interrupted inside its own record call;
//! - `fork()` while threads record, the child taking snapshots and recording;
//! - a writer descheduled inside a call (`SCHED_IDLE`, pinned next to CPU hogs, and stopped
//!   by a signal handler that sleeps);
//! - `membarrier(2)` denied by a seccomp filter: on the reader's thread after start, and for
//!   the whole process before its first engine;
//! - no thread to be had for a snapshotter (an address-space limit too low for its stack).
#![cfg(all(target_os = "linux", not(loom), not(miri)))]

mod child;

use child::{exit_code, fork_and_wait, is_child_for, succeeded};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, Snapshot, TaskOutcome};

/// Every snapshot's promise for one label whose completions all last `duration_ms`.
fn check_fixed_duration(snapshot: &Snapshot, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
    for view in [snapshot.cumulative(), snapshot.interval()] {
        let completed = view.completed(runner, outcome);
        assert_eq!(
            view.duration_sum_ms_exact(runner, outcome),
            u128::from(completed) * u128::from(ms),
            "snapshot {}: a sum that does not match its count",
            snapshot.sequence()
        );
    }
}

/// Takes snapshots until one carries no stripe (at most `limit`), and returns it.
fn settled(metrics: &AtomicMetrics, limit: usize) -> std::sync::Arc<Snapshot> {
    for _ in 0..limit {
        let snapshot = metrics.snapshot();
        if snapshot.carried_stripes() == 0 {
            return snapshot;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("still carrying stripes after {limit} snapshots with every writer stopped");
}

// --- A signal handler that records -------------------------------------------------------

static SIGNAL_ENGINE: OnceLock<AtomicMetrics> = OnceLock::new();
static HANDLED: AtomicU64 = AtomicU64::new(0);
const SIGNAL_MS: u64 = 7;

extern "C" fn record_from_handler(_: libc::c_int) {
    // `OnceLock::get` is a load; the record paths take no lock and allocate nothing.
    if let Some(metrics) = SIGNAL_ENGINE.get() {
        metrics.record_task_started(RunnerType::Wasm);
        metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, SIGNAL_MS);
        HANDLED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_signal_handler_recording_inside_a_record_call_is_counted_exactly() {
    const NAME: &str = "a_signal_handler_recording_inside_a_record_call_is_counted_exactly";
    if !is_child_for(NAME, "signal", Duration::from_secs(120)) {
        return;
    }
    let metrics = SIGNAL_ENGINE.get_or_init(AtomicMetrics::new);
    let stop = AtomicBool::new(false);
    let (calls, snapshots) = std::thread::scope(|scope| {
        let (thread_id, id_sent) = std::sync::mpsc::sync_channel(1);
        let stop = &stop;
        let writer = scope.spawn(move || {
            // One call first: the thread's first call registers its exit destructor, which
            // is not async-signal-safe (README, Reliability).
            metrics.record_task_started(RunnerType::Wasm);
            metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, SIGNAL_MS);
            // SAFETY: installing a handler that only records and counts; the process is this
            // test's own child.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = record_from_handler as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                assert_eq!(
                    libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
                    0
                );
            }
            thread_id.send(unsafe { libc::pthread_self() }).unwrap();
            let mut calls = 1_u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1_000 {
                    metrics.record_task_started(RunnerType::Wasm);
                    metrics.record_task_completed(
                        RunnerType::Wasm,
                        TaskOutcome::Success,
                        SIGNAL_MS,
                    );
                }
                calls += 1_000;
            }
            calls
        });
        let target = id_sent.recv().unwrap();
        let mut snapshots = 0_u64;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            for _ in 0..20 {
                // SAFETY: the writer thread is alive until `stop` is set below.
                unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
                std::thread::sleep(Duration::from_micros(50));
            }
            let snapshot = metrics.snapshot();
            check_fixed_duration(&snapshot, RunnerType::Wasm, TaskOutcome::Success, SIGNAL_MS);
            assert!(snapshot.in_flight(RunnerType::Wasm) >= 0);
            snapshots += 1;
        }
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), snapshots)
    });
    let handled = HANDLED.load(Ordering::Relaxed);
    assert!(handled > 1_000, "only {handled} signals were handled");
    let last = settled(metrics, 10);
    check_fixed_duration(&last, RunnerType::Wasm, TaskOutcome::Success, SIGNAL_MS);
    let view = last.cumulative();
    assert_eq!(
        view.completed(RunnerType::Wasm, TaskOutcome::Success),
        calls + handled
    );
    assert_eq!(view.started(RunnerType::Wasm), calls + handled);
    println!(
        "{handled} signals recorded into {calls} calls, {snapshots} snapshots: every one exact"
    );
}

// --- fork() while recording ----------------------------------------------------------------

#[test]
fn a_child_forked_while_threads_record_takes_snapshots_of_what_it_records() {
    const NAME: &str = "a_child_forked_while_threads_record_takes_snapshots_of_what_it_records";
    if !is_child_for(NAME, "fork", Duration::from_secs(120)) {
        return;
    }
    const TRIALS: usize = 40;
    // A label the parent's threads never use.
    const CHILD: (RunnerType, TaskOutcome, u64) =
        (RunnerType::Subprocess, TaskOutcome::Canceled, 3);
    let metrics = AtomicMetrics::new();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    metrics.record_task_started(RunnerType::Container);
                    metrics.record_task_completed(RunnerType::Container, TaskOutcome::Success, 5);
                }
            });
        }
        for trial in 0..TRIALS {
            std::thread::sleep(Duration::from_micros(if trial % 2 == 0 { 0 } else { 100 }));
            let status = fork_and_wait(20, || {
                exit_code({
                    let (runner, outcome, ms) = CHILD;
                    metrics.snapshot();
                    for _ in 0..100 {
                        metrics.record_task_completed(runner, outcome, ms);
                    }
                    (0..10)
                        .any(|_| metrics.snapshot().cumulative().completed(runner, outcome) == 100)
                })
            });
            assert!(
                succeeded(status),
                "trial {trial}: the forked child failed or hung (status {status:#x})"
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!("{TRIALS} children forked while 3 threads recorded: each saw its own 100 calls");
}

#[test]
fn a_child_forked_while_another_thread_takes_a_snapshot_takes_its_own() {
    const NAME: &str = "a_child_forked_while_another_thread_takes_a_snapshot_takes_its_own";
    if !is_child_for(NAME, "fork-snapshot", Duration::from_secs(120)) {
        return;
    }
    const TRIALS: usize = 40;
    const CHILD: (RunnerType, TaskOutcome, u64) =
        (RunnerType::Subprocess, TaskOutcome::Canceled, 3);
    let metrics = AtomicMetrics::new();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // A snapshot loop and a writer: the fork lands inside a cut most of the time.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                metrics.snapshot();
            }
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                metrics.record_task_started(RunnerType::Container);
                metrics.record_task_completed(RunnerType::Container, TaskOutcome::Success, 5);
            }
        });
        let mut hung = None;
        for trial in 0..TRIALS {
            std::thread::sleep(Duration::from_micros(if trial % 2 == 0 { 50 } else { 500 }));
            let status = fork_and_wait(2, || {
                exit_code({
                    let (runner, outcome, ms) = CHILD;
                    let before = metrics.snapshot();
                    for _ in 0..100 {
                        metrics.record_task_completed(runner, outcome, ms);
                    }
                    let after = metrics.snapshot();
                    check_fixed_duration(&after, runner, outcome, ms);
                    // The parent's calls, whatever its cut had done of them: whole ones.
                    check_fixed_duration(&after, RunnerType::Container, TaskOutcome::Success, 5);
                    after.sequence() > before.sequence()
                        && after.cumulative().completed(runner, outcome)
                            == before.cumulative().completed(runner, outcome) + 100
                })
            });
            if !succeeded(status) {
                hung = Some((trial, status));
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        if let Some((trial, status)) = hung {
            panic!("trial {trial}: the forked child failed or hung (status {status:#x})");
        }
    });
    println!("{TRIALS} children forked while a thread took snapshots: each took its own");
}

/// The narrowed promise (README, Reliability): with one shared stripe and no lease, a child
/// forked while a parent thread was inside a call there finds that stripe carried for good.
/// Its snapshots still never hang, and what they count is exact: never more than the child
/// recorded, sums matching counts, and all of it whenever nothing is carried.
#[test]
fn a_child_forked_while_a_thread_is_inside_a_shared_stripe_never_hangs_nor_miscounts() {
    const NAME: &str =
        "a_child_forked_while_a_thread_is_inside_a_shared_stripe_never_hangs_nor_miscounts";
    if !is_child_for(NAME, "fork-shared", Duration::from_secs(120)) {
        return;
    }
    const TRIALS: usize = 40;
    const CHILD: (RunnerType, TaskOutcome, u64) =
        (RunnerType::Subprocess, TaskOutcome::Canceled, 3);
    let metrics = AtomicMetrics::builder().stripes(1).build().unwrap();
    assert_eq!(metrics.leased_stripes(), 0);
    let stop = AtomicBool::new(false);
    let mut carried_children = 0;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    metrics.record_task_started(RunnerType::Container);
                    metrics.record_task_completed(RunnerType::Container, TaskOutcome::Success, 5);
                }
            });
        }
        let mut failed = None;
        for trial in 0..TRIALS {
            std::thread::sleep(Duration::from_micros(100));
            let status = fork_and_wait(5, || {
                let (runner, outcome, ms) = CHILD;
                let before = metrics.snapshot().cumulative().completed(runner, outcome);
                for _ in 0..100 {
                    metrics.record_task_completed(runner, outcome, ms);
                }
                let after = metrics.snapshot();
                check_fixed_duration(&after, runner, outcome, ms);
                let counted = after.cumulative().completed(runner, outcome) - before;
                match (counted, after.carried_stripes()) {
                    (100, 0) => 0,
                    (0..=100, 1..) => 2, // carried for good: narrowed
                    _ => 1,
                }
            });
            match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
                (true, 0) => {}
                (true, 2) => carried_children += 1,
                _ => {
                    failed = Some((trial, status));
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        if let Some((trial, status)) = failed {
            panic!("trial {trial}: the forked child failed or hung (status {status:#x})");
        }
    });
    println!(
        "{TRIALS} children forked with one shared stripe: {carried_children} found it carried for good"
    );
}

// --- A writer descheduled inside a call ----------------------------------------------------

fn pin_this_thread_to(cpu: usize) {
    // SAFETY: a plain CPU set for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

/// Stands for a thread stopped where it was: the handler sleeps on the interrupted thread,
/// which may be inside a record call.
extern "C" fn sleep_in_handler(_: libc::c_int) {
    // SAFETY: `nanosleep` is async-signal-safe.
    unsafe {
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        libc::nanosleep(&pause, std::ptr::null_mut());
    }
}

#[test]
fn a_writer_descheduled_inside_a_call_does_not_hold_snapshots() {
    const NAME: &str = "a_writer_descheduled_inside_a_call_does_not_hold_snapshots";
    if !is_child_for(NAME, "descheduled", Duration::from_secs(120)) {
        return;
    }
    let metrics = AtomicMetrics::builder()
        .max_snapshot_wait(Duration::from_millis(5))
        .build()
        .unwrap();
    // 0: stopped now and then by a handler that sleeps; 1: `SCHED_IDLE` next to CPU hogs;
    // 2: stop.
    let phase = std::sync::atomic::AtomicU8::new(0);
    let hog = AtomicBool::new(true);
    let (calls, stopped, starved) = std::thread::scope(|scope| {
        let (thread_id, id_sent) = std::sync::mpsc::sync_channel(1);
        let (metrics, phase) = (&metrics, &phase);
        let writer = scope.spawn(move || {
            // SAFETY: a handler that only sleeps.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = sleep_in_handler as *const () as libc::sighandler_t;
                assert_eq!(
                    libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
                    0
                );
                thread_id.send(libc::pthread_self()).unwrap();
            }
            let mut calls = 0_u64;
            let mut idle = false;
            loop {
                match phase.load(Ordering::Relaxed) {
                    0 => {}
                    1 if !idle => {
                        pin_this_thread_to(0);
                        // SAFETY: lowering this thread's own policy.
                        unsafe {
                            let param = libc::sched_param { sched_priority: 0 };
                            assert_eq!(libc::sched_setscheduler(0, libc::SCHED_IDLE, &param), 0);
                        }
                        idle = true;
                    }
                    1 => {}
                    _ => return calls,
                }
                metrics.record_task_started(RunnerType::Wasm);
                metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Timeout, 9);
                calls += 1;
            }
        });
        let target = id_sent.recv().unwrap();
        // Snapshots for `period`, with `between` before each; returns the slowest and how
        // many carried a stripe.
        let snapshots = |period: Duration, between: &dyn Fn()| {
            let (mut slowest, mut carrying) = (Duration::ZERO, 0_usize);
            let deadline = Instant::now() + period;
            while Instant::now() < deadline {
                between();
                let began = Instant::now();
                let snapshot = metrics.snapshot();
                slowest = slowest.max(began.elapsed());
                carrying += usize::from(snapshot.carried_stripes() > 0);
                check_fixed_duration(&snapshot, RunnerType::Wasm, TaskOutcome::Timeout, 9);
                assert!(snapshot.in_flight(RunnerType::Wasm) >= 0);
            }
            (slowest, carrying)
        };
        // A stop every 210 ms, longer than the handler's sleep, so that the writer runs and
        // is stopped at a new place each time: about 50 stops.
        let next_stop = std::cell::Cell::new(Instant::now());
        let stopped = snapshots(Duration::from_secs(11), &|| {
            if Instant::now() >= next_stop.get() {
                // SAFETY: the writer thread is alive until phase 2.
                unsafe { libc::pthread_kill(target, libc::SIGUSR2) };
                next_stop.set(Instant::now() + Duration::from_millis(210));
            }
            std::thread::sleep(Duration::from_millis(2));
        });
        for _ in 0..2 {
            scope.spawn(|| {
                pin_this_thread_to(0);
                while hog.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        phase.store(1, Ordering::Relaxed);
        if std::thread::available_parallelism().map_or(1, usize::from) > 1 {
            pin_this_thread_to(1);
        }
        let starved = snapshots(Duration::from_secs(2), &|| {
            std::thread::sleep(Duration::from_millis(2));
        });
        hog.store(false, Ordering::Relaxed);
        phase.store(2, Ordering::Relaxed);
        (writer.join().unwrap(), stopped, starved)
    });
    // Liveness bounds, not performance figures: a wait that tracked the writer's scheduling
    // would last as long as the handler's sleep (200 ms), or the starved writer's turn
    // (seconds); the bounded wait is 5 ms, far enough below either that a reader preempted
    // on a busy 2-core machine stays within the bound.
    for (slowest, _) in [stopped, starved] {
        assert!(
            slowest < Duration::from_millis(100),
            "a snapshot took {slowest:?}"
        );
    }
    // About one stop in five lands inside a call (50 stops): the carrying path was taken.
    assert!(
        stopped.1 > 0,
        "no snapshot found the writer stopped inside a call"
    );
    let last = settled(&metrics, 10);
    assert_eq!(
        last.cumulative()
            .completed(RunnerType::Wasm, TaskOutcome::Timeout),
        calls
    );
    println!(
        "stopped by a handler: slowest snapshot {:?}, {} of them carrying; starved: slowest \
         {:?}, {} carrying; {calls} calls exact",
        stopped.0, stopped.1, starved.0, starved.1
    );
}

// --- membarrier denied by seccomp ----------------------------------------------------------

/// Makes `membarrier(2)` fail with `EPERM` on this thread (and the threads it starts later),
/// as a sandbox might. Returns false where seccomp filters cannot be installed.
fn deny_membarrier_on_this_thread() -> bool {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    // SAFETY: a four-instruction filter for this thread only (no TSYNC), checked by the kernel.
    unsafe {
        let code = |code: u32| code as u16;
        let mut filter = [
            // Another architecture's system call numbers mean other calls: allow them.
            libc::BPF_STMT(code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS), 4),
            libc::BPF_JUMP(
                code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
                ARCH,
                0,
                3,
            ),
            libc::BPF_STMT(code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS), 0),
            libc::BPF_JUMP(
                code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
                libc::SYS_membarrier as u32,
                0,
                1,
            ),
            libc::BPF_STMT(
                code(libc::BPF_RET | libc::BPF_K),
                libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            ),
            libc::BPF_STMT(code(libc::BPF_RET | libc::BPF_K), libc::SECCOMP_RET_ALLOW),
        ];
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) == 0
    }
}

/// Records `rounds` × 1,000 tasks of one label on this thread; returns how many.
fn record_rounds(metrics: &AtomicMetrics, rounds: u64) -> u64 {
    for _ in 0..rounds * 1_000 {
        metrics.record_task_started(RunnerType::Container);
        metrics.record_task_completed(RunnerType::Container, TaskOutcome::Failure, 11);
    }
    rounds * 1_000
}

#[test]
fn membarrier_denied_to_the_reader_after_start_makes_the_engine_fenced_and_exact() {
    const NAME: &str =
        "membarrier_denied_to_the_reader_after_start_makes_the_engine_fenced_and_exact";
    if !is_child_for(NAME, "seccomp-later", Duration::from_secs(120)) {
        return;
    }
    let metrics = AtomicMetrics::new();
    assert!(
        !metrics.is_fenced(),
        "this host has no membarrier: nothing to deny"
    );
    let stop = AtomicBool::new(false);
    let recorded = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let mut calls = 0;
                    while !stop.load(Ordering::Relaxed) {
                        calls += record_rounds(&metrics, 1);
                    }
                    calls
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            if !deny_membarrier_on_this_thread() {
                return false;
            }
            for _ in 0..200 {
                let snapshot = metrics.snapshot();
                check_fixed_duration(&snapshot, RunnerType::Container, TaskOutcome::Failure, 11);
                assert!(snapshot.in_flight(RunnerType::Container) >= 0);
            }
            true
        });
        let denied = reader.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        let calls: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        denied.then_some(calls)
    });
    let Some(calls) = recorded else {
        println!("seccomp filters cannot be installed here: scenario skipped");
        return;
    };
    assert!(metrics.is_fenced());
    // The writers' threads have exited: their revoked leases are handed back by their exits.
    let last = settled(&metrics, 10);
    assert_eq!(
        last.cumulative()
            .completed(RunnerType::Container, TaskOutcome::Failure),
        calls
    );
    assert_eq!(last.cumulative().started(RunnerType::Container), calls);
    println!("{calls} calls exact across a barrier that failed mid-run");
}

#[test]
fn membarrier_denied_before_the_first_engine_gives_a_fenced_exact_engine() {
    const NAME: &str = "membarrier_denied_before_the_first_engine_gives_a_fenced_exact_engine";
    if !is_child_for(NAME, "seccomp-first", Duration::from_secs(120)) {
        return;
    }
    // Threads started from here on inherit the filter.
    if !deny_membarrier_on_this_thread() {
        println!("seccomp filters cannot be installed here: scenario skipped");
        return;
    }
    let metrics = AtomicMetrics::builder().stripes(6).build().unwrap();
    assert!(metrics.is_fenced());
    let calls: u64 = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| record_rounds(&metrics, 50)))
            .collect();
        for _ in 0..50 {
            let snapshot = metrics.snapshot();
            check_fixed_duration(&snapshot, RunnerType::Container, TaskOutcome::Failure, 11);
        }
        writers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let last = settled(&metrics, 10);
    assert_eq!(
        last.cumulative()
            .completed(RunnerType::Container, TaskOutcome::Failure),
        calls
    );
    println!("{calls} calls exact on an engine built without membarrier");
}

// --- No thread to be had ------------------------------------------------------------------

/// This process's virtual memory, from `/proc/self/status`.
fn virtual_memory_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_snapshotter_with_no_thread_to_be_had_is_an_error_and_the_engine_goes_on() {
    const NAME: &str = "a_snapshotter_with_no_thread_to_be_had_is_an_error_and_the_engine_goes_on";
    if !is_child_for(NAME, "no-thread", Duration::from_secs(60)) {
        return;
    }
    let metrics = std::sync::Arc::new(AtomicMetrics::new());
    metrics.record_task_started(RunnerType::Wasm);
    // Room for a few small allocations, not for a thread's stack (2 MiB).
    let limit = virtual_memory_bytes() + 512 * 1024;
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: lowering this child's own address-space limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
    let error = taskmeter::SnapshotterBuilder::new(Duration::from_millis(1))
        .try_spawn(&metrics)
        .expect_err("no thread can be created under this limit");
    let raised = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: as above, back to no limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &raised) }, 0);
    assert_eq!(metrics.snapshot().cumulative().started(RunnerType::Wasm), 1);
    println!("try_spawn: {error}; the engine went on");
}
