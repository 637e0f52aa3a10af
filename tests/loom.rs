//! loom models of the phase protocol: recording against snapshotting, concurrent snapshots,
//! and publication. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p taskmeter --release --no-default-features --test loom --target-dir target/loom`.
//!
//! The engine is built with a tiny layout (1 significant digit, 2 ms: 32 slots). With one
//! stripe there is no lease (one stripe is always shared), so the first models check the
//! shared stripes' phase protocol; with two stripes (one leased, one shared) the `leased_`
//! models check the lease protocol, its asymmetric barriers modelled as `SeqCst` fences.
//! Every interleaving of the protocols' atomics is explored, up to loom's preemption bound
//! (`LOOM_MAX_PREEMPTIONS`, 3 in `.ci/run`). Every writer thread ends with the step its
//! thread-exit destructor takes (`loom_exit_thread`: it gives its ordinal back; loom's
//! thread-locals cannot make atomic operations in destructors, tokio-rs/loom issue 290), so
//! the models also cover a lease passed on with a token.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, Snapshot, TaskOutcome};

const RUNNER: RunnerType = RunnerType::Container;
const OUTCOME: TaskOutcome = TaskOutcome::Failure;
const DURATION_MS: u64 = 1;
/// Clamped to the 2 ms top of the range: exercises the third word of a completion.
const LONG_DURATION_MS: u64 = 5;

/// Runs `body` under loom. A snapshot scans every slot (12 × 32 loads and stores), each a
/// branch point for loom, so the branch limit is raised well above its default of 1,000; the
/// preemption bound still comes from `LOOM_MAX_PREEMPTIONS`.
///
/// The body runs on a thread with a roomy stack: building an engine and a snapshot puts a few
/// kilobytes of fixed arrays on the stack for a moment, which overflows loom's default
/// coroutine stack. That thread is one of loom's five; the models use at most four more.
fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    let body = std::sync::Arc::new(body);
    builder.check(move || {
        let body = std::sync::Arc::clone(&body);
        thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || body())
            .unwrap()
            .join()
            .unwrap();
    });
}

fn tiny_engine() -> Arc<AtomicMetrics> {
    engine_with_stripes(1)
}

/// One leased stripe and one shared stripe.
fn leased_engine() -> Arc<AtomicMetrics> {
    engine_with_stripes(2)
}

fn engine_with_stripes(stripes: usize) -> Arc<AtomicMetrics> {
    Arc::new(
        AtomicMetrics::builder()
            .highest_duration_ms(2)
            .significant_digits(1)
            .stripes(stripes)
            .build()
            .unwrap(),
    )
}

/// One task: start, then complete with `duration`.
fn task(metrics: &AtomicMetrics, duration: u64) {
    metrics.record_task_started(RUNNER);
    metrics.record_task_completed(RUNNER, OUTCOME, duration);
}

/// Two threads, each recording one task: a short one and a long (clamped) one.
fn two_writers(metrics: &Arc<AtomicMetrics>) -> Vec<thread::JoinHandle<()>> {
    [DURATION_MS, LONG_DURATION_MS]
        .into_iter()
        .map(|duration| {
            let metrics = Arc::clone(metrics);
            thread::spawn(move || {
                task(&metrics, duration);
                taskmeter::loom_exit_thread();
            })
        })
        .collect()
}

/// The consistency every snapshot owes its readers, whatever the interleaving.
fn check(snapshot: &Snapshot) {
    for view in [snapshot.cumulative(), snapshot.interval()] {
        let completed = view.completed(RUNNER, OUTCOME);
        let clamped = view.clamped(RUNNER, OUTCOME);
        // Each completion is either short (1 ms) or long (5 ms, clamped): the sum pins both.
        assert_eq!(
            view.duration_sum_ms(RUNNER, OUTCOME),
            (completed - clamped) * DURATION_MS + clamped * LONG_DURATION_MS
        );
        // The histogram's two slots against the counters and the sum's cells.
        assert_eq!(view.duration(RUNNER, OUTCOME).count_between(2, 2), clamped);
        assert_eq!(
            view.duration(RUNNER, OUTCOME).count_between(1, 1),
            completed - clamped
        );
    }
    assert!(snapshot.in_flight(RUNNER) >= 0);
}

#[test]
fn a_snapshot_during_recording_sees_whole_completions() {
    model(|| snapshot_during_recording(tiny_engine()));
}

/// A writer records three tasks (the second clamped, the third in the first's slot, so that
/// on a leased stripe it takes the hot path with the phase its holder remembers) while a
/// snapshot is taken: each snapshot is consistent, and the two intervals hold every task
/// exactly once.
fn snapshot_during_recording(metrics: Arc<AtomicMetrics>) {
    let writer = {
        let metrics = Arc::clone(&metrics);
        thread::spawn(move || {
            task(&metrics, DURATION_MS);
            task(&metrics, LONG_DURATION_MS);
            task(&metrics, DURATION_MS);
            taskmeter::loom_exit_thread();
        })
    };
    let during = metrics.snapshot();
    check(&during);
    writer.join().unwrap();
    let after = metrics.snapshot();
    check(&after);
    assert_eq!(after.cumulative().completed(RUNNER, OUTCOME), 3);
    assert_eq!(after.cumulative().started(RUNNER), 3);
    assert_eq!(after.cumulative().clamped(RUNNER, OUTCOME), 1);
    assert_eq!(
        during.interval().completed(RUNNER, OUTCOME) + after.interval().completed(RUNNER, OUTCOME),
        3
    );
}

#[test]
fn two_writers_and_two_readers() {
    model(|| {
        let metrics = tiny_engine();
        let writers = two_writers(&metrics);
        let reader = {
            let metrics = Arc::clone(&metrics);
            thread::spawn(move || {
                let snapshot = metrics.snapshot();
                check(&snapshot);
                snapshot
            })
        };
        let mine = metrics.snapshot();
        check(&mine);
        let theirs = reader.join().unwrap();
        for writer in writers {
            writer.join().unwrap();
        }
        // The two concurrent readers were serialized: distinct sequence numbers, and the later
        // one's cumulative view includes the earlier one's.
        assert_ne!(mine.sequence(), theirs.sequence());
        let (early, late) = if mine.sequence() < theirs.sequence() {
            (&mine, &theirs)
        } else {
            (&theirs, &mine)
        };
        assert!(
            late.cumulative().completed(RUNNER, OUTCOME)
                >= early.cumulative().completed(RUNNER, OUTCOME)
        );
        let last = metrics.snapshot();
        check(&last);
        assert_eq!(last.cumulative().completed(RUNNER, OUTCOME), 2);
        assert_eq!(
            early.interval().completed(RUNNER, OUTCOME)
                + late.interval().completed(RUNNER, OUTCOME)
                + last.interval().completed(RUNNER, OUTCOME),
            2
        );
    });
}

#[test]
fn latest_never_goes_back_and_sees_what_snapshot_returned() {
    model(|| {
        let metrics = tiny_engine();
        let reader = {
            let metrics = Arc::clone(&metrics);
            thread::spawn(move || {
                let first = metrics.latest().sequence();
                let second = metrics.latest().sequence();
                assert!(second >= first);
            })
        };
        task(&metrics, DURATION_MS);
        let taken = metrics.snapshot();
        assert!(metrics.latest().sequence() >= taken.sequence());
        assert_eq!(metrics.latest().cumulative().completed(RUNNER, OUTCOME), 1);
        reader.join().unwrap();
    });
}

#[test]
fn leased_writer_against_a_snapshot_loses_and_splits_nothing() {
    // The writer's first call takes the lease; every call then writes with plain stores.
    model(|| snapshot_during_recording(leased_engine()));
}

#[test]
fn leased_stripe_changes_hands_across_snapshots_without_a_lost_update() {
    model(|| {
        let metrics = leased_engine();
        // Two threads compete for the one lease while two snapshots run: a holder seen idle
        // for a whole period (between the two) loses the lease, maybe just as it starts
        // another call, and the other thread may take it. Plain increments of the cumulative
        // `started` counter by successive holders must all survive.
        let writers = two_writers(&metrics);
        let first = metrics.snapshot();
        check(&first);
        let second = metrics.snapshot();
        check(&second);
        for writer in writers {
            writer.join().unwrap();
        }
        let after = metrics.snapshot();
        check(&after);
        assert_eq!(after.cumulative().started(RUNNER), 2);
        assert_eq!(after.cumulative().completed(RUNNER, OUTCOME), 2);
        assert_eq!(after.cumulative().clamped(RUNNER, OUTCOME), 1);
        assert_eq!(after.in_flight(RUNNER), 0);
    });
}

#[test]
fn an_exited_threads_lease_passes_to_the_next_thread_without_a_lost_update() {
    model(|| {
        let metrics = leased_engine();
        // Two threads record one task each, with no snapshot: the second may start after the
        // first exited, take its ordinal back from the pool, and with it the lease, going on
        // with plain stores where the first stopped. Nothing orders the two but the pool's
        // release and acquire.
        for writer in two_writers(&metrics) {
            writer.join().unwrap();
        }
        let after = metrics.snapshot();
        check(&after);
        assert_eq!(after.cumulative().started(RUNNER), 2);
        assert_eq!(after.cumulative().completed(RUNNER, OUTCOME), 2);
        assert_eq!(after.in_flight(RUNNER), 0);
    });
}

#[test]
fn leased_writer_against_two_snapshots_in_a_row_loses_nothing() {
    model(|| {
        let metrics = leased_engine();
        // Two tasks in one slot: the second completion takes the hot path, looking at its
        // count in the phase its holder remembers before its call begins. Two snapshots in a
        // row may both switch the phase in between, the first while the holder is inside the
        // second task's start; the lease must not survive the second unless the holder has
        // learned the phase since.
        let writer = {
            let metrics = Arc::clone(&metrics);
            thread::spawn(move || {
                task(&metrics, DURATION_MS);
                task(&metrics, DURATION_MS);
                taskmeter::loom_exit_thread();
            })
        };
        let first = metrics.snapshot();
        check(&first);
        let second = metrics.snapshot();
        check(&second);
        writer.join().unwrap();
        let after = metrics.snapshot();
        check(&after);
        assert_eq!(after.cumulative().completed(RUNNER, OUTCOME), 2);
        assert_eq!(after.cumulative().started(RUNNER), 2);
        assert_eq!(after.in_flight(RUNNER), 0);
    });
}

/// Takes snapshots until none carries a stripe (at most `limit`), checking each, and returns
/// the last.
fn snapshot_until_nothing_is_carried(
    metrics: &AtomicMetrics,
    limit: usize,
) -> std::sync::Arc<Snapshot> {
    for _ in 0..limit {
        let snapshot = metrics.snapshot();
        check(&snapshot);
        if snapshot.carried_stripes() == 0 {
            return snapshot;
        }
    }
    panic!("a stripe is still carried after {limit} snapshots with no writer left");
}

/// A writer records two tasks (the second clamped) against two snapshots that never wait for
/// it, on an engine of `stripes` (its busy stripes are carried); once it has exited,
/// snapshots settle with both tasks, once.
fn two_tasks_against_two_snapshots_that_never_wait(stripes: usize) {
    let metrics = Arc::new(
        AtomicMetrics::builder()
            .highest_duration_ms(2)
            .significant_digits(1)
            .stripes(stripes)
            .max_snapshot_wait(std::time::Duration::ZERO)
            .build()
            .unwrap(),
    );
    let writer = {
        let metrics = Arc::clone(&metrics);
        thread::spawn(move || {
            task(&metrics, DURATION_MS);
            task(&metrics, LONG_DURATION_MS);
            taskmeter::loom_exit_thread();
        })
    };
    check(&metrics.snapshot());
    check(&metrics.snapshot());
    writer.join().unwrap();
    let after = snapshot_until_nothing_is_carried(&metrics, 2);
    assert_eq!(after.cumulative().completed(RUNNER, OUTCOME), 2);
    assert_eq!(after.cumulative().clamped(RUNNER, OUTCOME), 1);
    assert_eq!(after.in_flight(RUNNER), 0);
}

#[test]
fn snapshots_that_never_wait_carry_busy_stripes_and_lose_nothing() {
    // A zero wait: any stripe a writer is inside of when the cut looks is carried to the next.
    for stripes in [1, 2] {
        model(move || {
            two_tasks_against_two_snapshots_that_never_wait(stripes);
        });
    }
}

#[test]
fn a_failing_barrier_hands_leases_back_by_acknowledgment() {
    model(|| {
        // The heavy barrier fails, and the leased writer's light barrier is the bare compiler
        // fence it is at run time: nothing orders its calls against the two snapshots taken
        // meanwhile but the protocol that follows a failed barrier (the holder's
        // acknowledgment of the revoked lease word, or its exit).
        taskmeter::loom_fail_barriers(true);
        two_tasks_against_two_snapshots_that_never_wait(2);
        taskmeter::loom_fail_barriers(false);
    });
}
