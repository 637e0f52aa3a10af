//! The cut under faults made from inside: a panic at each of its steps, writers stopped inside a
//! call on either kind of stripe, and a heavy barrier that fails. Each test compares the
//! snapshots with an independent tally of what was recorded.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Duration;

use super::{Step, faults};
use crate::barrier::tests::fail_heavy_barriers_here;
use crate::{AtomicMetrics, MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome, View};

/// What was recorded, counted apart from the engine.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    started: [u64; RunnerType::COUNT],
    completed: [[u64; TaskOutcome::COUNT]; RunnerType::COUNT],
    sums: [[u128; TaskOutcome::COUNT]; RunnerType::COUNT],
    errors: [[u64; RunnerErrorKind::COUNT]; RunnerType::COUNT],
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        for r in 0..RunnerType::COUNT {
            self.started[r] += other.started[r];
            for o in 0..TaskOutcome::COUNT {
                self.completed[r][o] += other.completed[r][o];
                self.sums[r][o] += other.sums[r][o];
            }
            for k in 0..RunnerErrorKind::COUNT {
                self.errors[r][k] += other.errors[r][k];
            }
        }
    }

    /// Only the starts and errors: monotonic counters, which a snapshot reads at once even
    /// from a stripe it carries.
    fn starts_and_errors(&self) -> Tally {
        Tally {
            started: self.started,
            errors: self.errors,
            ..Tally::default()
        }
    }

    /// The same quantities read from `view`; the completed count is the histogram's.
    fn of(view: &View) -> Tally {
        let mut tally = Tally::default();
        for (r, runner) in RunnerType::ALL.into_iter().enumerate() {
            tally.started[r] = view.started(runner);
            for (o, outcome) in TaskOutcome::ALL.into_iter().enumerate() {
                tally.completed[r][o] = view.duration(runner, outcome).len();
                tally.sums[r][o] = view.duration_sum_ms_exact(runner, outcome);
            }
            for (k, kind) in RunnerErrorKind::ALL.into_iter().enumerate() {
                tally.errors[r][k] = view.errors(runner, kind);
            }
        }
        tally
    }
}

/// Records `tasks` tasks (start, completion, an error every 7th) over every label, and
/// returns their tally.
fn record(metrics: &AtomicMetrics, seed: u64, tasks: u64) -> Tally {
    // Miri runs a hundred times fewer: the same paths, at its speed.
    let tasks = if cfg!(miri) {
        tasks.div_ceil(100)
    } else {
        tasks
    };
    let mut tally = Tally::default();
    for task in seed..seed + tasks {
        let r = (task % 3) as usize;
        let o = (task / 3 % 4) as usize;
        let duration = task * 37 % 5_000;
        metrics.record_task_started(RunnerType::ALL[r]);
        metrics.record_task_completed(RunnerType::ALL[r], TaskOutcome::ALL[o], duration);
        tally.started[r] += 1;
        tally.completed[r][o] += 1;
        tally.sums[r][o] += u128::from(duration);
        if task % 7 == 0 {
            let k = (task / 7 % 4) as usize;
            metrics.record_runner_error(RunnerType::ALL[r], RunnerErrorKind::ALL[k]);
            tally.errors[r][k] += 1;
        }
    }
    tally
}

/// Records on `threads` threads at once, each a new thread (so some find no lease free when
/// the engine has fewer), and returns the tally of all of them.
fn record_on_threads(metrics: &AtomicMetrics, threads: u64, tasks: u64) -> Tally {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|seed| scope.spawn(move || record(metrics, seed * 1_000_003, tasks)))
            .collect();
        let mut tally = Tally::default();
        for handle in handles {
            tally.add(&handle.join().unwrap());
        }
        tally
    })
}

fn engine(stripes: usize, max_wait: Duration) -> AtomicMetrics {
    AtomicMetrics::builder()
        .stripes(stripes)
        .significant_digits(2)
        // Durations stay below 5 s: a small layout, so that snapshots are quick under Miri.
        .highest_duration_ms(5_000)
        .max_snapshot_wait(max_wait)
        .build()
        .unwrap()
}

#[test]
fn a_cut_that_panics_at_any_step_leaves_the_next_one_exact() {
    // Under Miri, one engine with a leased and a shared stripe: the same paths, at its speed.
    let engines: &[usize] = if cfg!(miri) { &[3] } else { &[1, 3, 6] };
    for &stripes in engines {
        for step in [Step::Switched, Step::Barrier, Step::OneDrained] {
            let metrics = engine(stripes, Duration::from_secs(10));
            // This thread holds a lease, if any, so that the barrier is made.
            let mut expected = record(&metrics, 0, 1_000);
            expected.add(&record_on_threads(&metrics, 3, 2_000));
            let first = metrics.snapshot();
            assert_eq!(Tally::of(first.cumulative()), expected);
            expected.add(&record(&metrics, 5, 1_000));
            expected.add(&record_on_threads(&metrics, 3, 2_000));
            faults::panic_at(metrics.recording.id(), step);
            let unwound = catch_unwind(AssertUnwindSafe(|| metrics.snapshot()));
            assert!(
                unwound.is_err(),
                "{stripes} stripes, {step:?}: no panic injected"
            );
            assert_eq!(
                metrics.latest().sequence(),
                1,
                "a cut that unwound published"
            );
            // The next cut drains what the one that unwound switched, and nothing twice.
            let after = metrics.snapshot();
            assert_eq!(after.sequence(), 2);
            assert_eq!(after.carried_stripes(), 0);
            assert_eq!(
                Tally::of(after.cumulative()),
                expected,
                "{stripes} stripes, after a panic {step:?}"
            );
            // The interval holds everything since the last published snapshot, once.
            let mut since_first = Tally::of(first.cumulative());
            since_first.add(&Tally::of(after.interval()));
            assert_eq!(since_first, expected);
            // Calls made after a cut unwound are counted by the next cuts, once.
            expected.add(&record_on_threads(&metrics, 2, 1_000));
            let last = metrics.snapshot();
            assert_eq!(
                Tally::of(last.cumulative()),
                expected,
                "{stripes} stripes, {step:?}"
            );
            let idle = metrics.snapshot();
            assert_eq!(Tally::of(idle.interval()), Tally::default());
        }
    }
}

#[test]
fn a_writer_stopped_inside_a_leased_call_is_carried_then_drained_whole() {
    // Two leased stripes, one shared.
    let metrics = engine(3, Duration::from_millis(1));
    let mut expected = record(&metrics, 0, 500);
    let stopped = metrics
        .recording
        .leased
        .iter()
        .find(|stripe| stripe.holder() >= crate::recording::leased::FIRST_TOKEN)
        .expect("this thread holds a lease");
    let before_stop = metrics.snapshot();
    assert_eq!(Tally::of(before_stop.cumulative()), expected);
    // This thread's next calls, then it "stops inside a call": its sequence goes odd.
    let in_stopped_stripe = record(&metrics, 11, 300);
    stopped.step_holder_sequence();
    // Other threads go on (on the other lease and the shared stripe).
    let others = record_on_threads(&metrics, 2, 1_000);
    // Everything but the stopped stripe's calls since its switch, each call whole. Starts and
    // errors are monotonic counters, read at once.
    let mut seen = Tally::of(before_stop.cumulative());
    seen.add(&others);
    let starts_only = in_stopped_stripe.starts_and_errors();
    seen.add(&starts_only);
    for _ in 0..3 {
        let carried = metrics.snapshot();
        assert_eq!(carried.carried_stripes(), 1);
        assert_eq!(Tally::of(carried.cumulative()), seen);
        assert!(carried.in_flight(RunnerType::Wasm) >= 0);
    }
    // The call ends: the next snapshot drains the carried stripe, whole and once.
    stopped.step_holder_sequence();
    expected.add(&in_stopped_stripe);
    expected.add(&others);
    let resumed = metrics.snapshot();
    assert_eq!(resumed.carried_stripes(), 0);
    assert_eq!(Tally::of(resumed.cumulative()), expected);
    expected.add(&record(&metrics, 99, 100));
    assert_eq!(Tally::of(metrics.snapshot().cumulative()), expected);
}

/// Within the bound, a cut waits: a writer inside a call that leaves after 30 ms, on a leased
/// and on a shared stripe, is drained by the snapshot it delayed, which carries nothing.
#[test]
fn a_snapshot_waits_within_its_bound_for_a_writer_inside_a_call() {
    let inside = Duration::from_millis(30);
    for stripes in [3, 1] {
        let metrics = engine(stripes, Duration::from_secs(5));
        let expected = record(&metrics, 0, 200);
        // This thread is inside a call on its leased stripe, or on the shared stripe's lane.
        let leased = metrics
            .recording
            .leased
            .iter()
            .find(|stripe| stripe.holder() >= crate::recording::leased::FIRST_TOKEN);
        let shared_call = match leased {
            Some(stripe) => {
                stripe.step_holder_sequence();
                None
            }
            None => Some(metrics.recording.shared[0].enter_lane(3)),
        };
        std::thread::scope(|scope| {
            let snapshot = scope.spawn(|| {
                let snapshot = metrics.snapshot();
                (snapshot, std::time::Instant::now())
            });
            std::thread::sleep(inside);
            let left = std::time::Instant::now();
            match leased {
                Some(stripe) => stripe.step_holder_sequence(),
                None => drop(shared_call),
            }
            let (snapshot, returned) = snapshot.join().unwrap();
            assert_eq!(snapshot.carried_stripes(), 0, "{stripes} stripes");
            assert!(
                returned >= left,
                "{stripes} stripes: returned before the writer left"
            );
            assert_eq!(Tally::of(snapshot.cumulative()), expected);
        });
    }
}

#[test]
fn a_writer_stopped_inside_a_shared_phase_is_carried_then_drained_whole() {
    // No lease: every call goes to the one shared stripe.
    let metrics = engine(1, Duration::from_millis(1));
    let before = record(&metrics, 0, 500);
    let stopped = metrics.recording.shared[0].enter_lane(3);
    let carried = metrics.snapshot();
    assert_eq!(carried.carried_stripes(), 1);
    // Starts are monotonic counters, read at once; completions wait with their stripe.
    let starts_only = before.starts_and_errors();
    assert_eq!(Tally::of(carried.cumulative()), starts_only);
    // The stripe is not switched again while carried: these calls wait in its new phase.
    let during = record_on_threads(&metrics, 2, 500);
    assert_eq!(metrics.snapshot().carried_stripes(), 1);
    drop(stopped);
    // The next cut drains the old phase, switches the stripe again and drains the new one.
    let drained = metrics.snapshot();
    assert_eq!(drained.carried_stripes(), 0);
    let mut expected = before;
    expected.add(&during);
    assert_eq!(Tally::of(drained.cumulative()), expected);
    assert_eq!(Tally::of(metrics.snapshot().interval()), Tally::default());
}

#[test]
fn a_failing_barrier_makes_the_engine_fenced_and_loses_nothing() {
    // This thread's lease, idle during the snapshots, is carried after a wait of 50 ms.
    let metrics = engine(6, Duration::from_millis(50));
    let expected = Mutex::new(record(&metrics, 0, 100));
    let running = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|scope| {
        for seed in 1..=3 {
            let (metrics, expected, running) = (&metrics, &expected, &running);
            scope.spawn(move || {
                let mut mine = Tally::default();
                let mut round = 0;
                while running.load(std::sync::atomic::Ordering::Relaxed) || round < 3 {
                    mine.add(&record(metrics, seed * 1_000_003 + round * 1_000, 200));
                    round += 1;
                }
                expected.lock().unwrap().add(&mine);
            });
        }
        assert!(!metrics.recording.is_fenced());
        fail_heavy_barriers_here(true);
        for _ in 0..if cfg!(miri) { 3 } else { 20 } {
            let snapshot = metrics.snapshot();
            let cumulative = Tally::of(snapshot.cumulative());
            for r in 0..RunnerType::COUNT {
                let completed: u64 = cumulative.completed[r].iter().sum();
                assert!(cumulative.started[r] >= completed, "negative in-flight");
            }
        }
        fail_heavy_barriers_here(false);
        assert!(metrics.recording.is_fenced());
        running.store(false, std::sync::atomic::Ordering::Relaxed);
    });
    // The recording threads made calls after the revoke and acknowledged it; their stripes
    // drain. This thread's lease, idle since, is carried until it records again.
    let mut expected = expected.into_inner().unwrap();
    expected.add(&record(&metrics, 77, 10));
    // A writer's thread-exit bookkeeping may still be running after the join: a few tries.
    let mut last = metrics.snapshot();
    for _ in 0..5 {
        if last.carried_stripes() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        last = metrics.snapshot();
    }
    assert_eq!(last.carried_stripes(), 0);
    assert_eq!(Tally::of(last.cumulative()), expected);
    expected.add(&record_on_threads(&metrics, 4, 500));
    assert_eq!(Tally::of(metrics.snapshot().cumulative()), expected);
}

#[test]
fn after_a_failing_barrier_an_idle_holder_is_carried_until_it_records_again() {
    let metrics = engine(3, Duration::from_millis(1));
    let mut expected = record(&metrics, 0, 100);
    fail_heavy_barriers_here(true);
    let revoked = metrics.snapshot();
    assert_eq!(revoked.carried_stripes(), 1);
    // Its starts and errors are monotonic counters, read at once; its completions wait.
    let starts_only = expected.starts_and_errors();
    assert_eq!(Tally::of(revoked.cumulative()), starts_only);
    assert_eq!(metrics.snapshot().carried_stripes(), 1);
    // The holder's next call sees the fenced lease word, acknowledges, and records elsewhere.
    expected.add(&record(&metrics, 5, 100));
    let acknowledged = metrics.snapshot();
    assert_eq!(acknowledged.carried_stripes(), 0);
    assert_eq!(Tally::of(acknowledged.cumulative()), expected);
    fail_heavy_barriers_here(false);
    assert!(metrics.recording.is_fenced());
    expected.add(&record_on_threads(&metrics, 3, 300));
    assert_eq!(Tally::of(metrics.snapshot().cumulative()), expected);
}

#[test]
fn a_call_that_looked_before_two_switches_cannot_begin_after_them() {
    // A thread looks at its count in phase P (the hot path does, before its call begins) and
    // is interrupted; a signal handler's call on the same thread relearns the next phase; two
    // snapshots later the phase is P again, with the lease kept. The interrupted call must
    // not begin: its count was drained in between.
    let metrics = engine(2, Duration::from_secs(1));
    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 3);
    let (index, looked) = crate::recording::route::remembered_lease();
    let stripe = &metrics.recording.leased[index];
    metrics.snapshot();
    // The handler's call: the thread learns the new phase and keeps its lease.
    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 3);
    metrics.snapshot();
    assert_eq!(
        stripe.active_phase(),
        looked.phase(),
        "two switches bring it back"
    );
    assert_eq!(
        stripe.holder(),
        crate::recording::route::identity().token.unwrap()
    );
    assert!(
        stripe.enter(looked).is_none(),
        "a call began under a lease word from before two switches"
    );
    // The thread's own memory still works.
    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 3);
    let last = metrics.snapshot();
    assert_eq!(
        last.cumulative()
            .completed(RunnerType::Wasm, TaskOutcome::Success),
        3
    );
}

#[test]
fn a_fenced_engine_stays_fenced_through_every_hand_over() {
    let metrics = engine(4, Duration::from_millis(1));
    let mut expected = record(&metrics, 0, 50);
    fail_heavy_barriers_here(true);
    metrics.snapshot();
    fail_heavy_barriers_here(false);
    // Acknowledges, and claims another lease, fenced.
    expected.add(&record(&metrics, 1, 50));
    // Idle periods: leases taken back and reopened; new threads claim them.
    for round in 0..4 {
        metrics.snapshot();
        metrics.snapshot();
        expected.add(&record_on_threads(&metrics, 3, 100 + round));
        for (index, stripe) in metrics.recording.leased.iter().enumerate() {
            assert!(
                stripe.word_is_fenced(),
                "round {round}: stripe {index} lost FENCED"
            );
        }
    }
    // A stripe whose writer was descheduled past the 1 ms wait (other tests share the CPUs)
    // is carried, and lands whole in a later snapshot.
    let mut last = metrics.snapshot();
    for _ in 0..1_000 {
        if last.carried_stripes() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        last = metrics.snapshot();
    }
    assert_eq!(last.carried_stripes(), 0);
    assert_eq!(Tally::of(last.cumulative()), expected);
}

#[test]
fn only_the_awaited_holder_acknowledges_a_revoked_lease() {
    use std::sync::mpsc;
    // One leased stripe. A holds it, goes idle and loses it; B takes it. A still remembers it.
    let metrics = engine(2, Duration::from_millis(1));
    let lease = &metrics.recording.leased[0];
    std::thread::scope(|scope| {
        let (to_a, a_commands) = mpsc::channel::<()>();
        let (a_done, from_a) = mpsc::channel::<Tally>();
        let metrics = &metrics;
        scope.spawn(move || {
            for () in a_commands {
                a_done.send(record(metrics, 3, 10)).unwrap();
            }
        });
        let mut expected = Tally::default();
        to_a.send(()).unwrap();
        expected.add(&from_a.recv().unwrap());
        let a_token = lease.holder();
        // Two idle periods: the lease goes back; B (this thread) takes it.
        metrics.snapshot();
        metrics.snapshot();
        expected.add(&record(metrics, 4, 10));
        let b_token = lease.holder();
        assert_ne!(a_token, b_token);
        // The barrier fails: the lease is revoked, awaiting B.
        fail_heavy_barriers_here(true);
        metrics.snapshot();
        fail_heavy_barriers_here(false);
        // B acknowledges, then A, whose memory names the stripe from before, records: it
        // must not acknowledge in B's place.
        expected.add(&record(metrics, 5, 10));
        to_a.send(()).unwrap();
        expected.add(&from_a.recv().unwrap());
        let last = metrics.snapshot();
        assert_eq!(last.carried_stripes(), 0, "B's acknowledgment was lost");
        assert_eq!(Tally::of(last.cumulative()), expected);
    });
}
