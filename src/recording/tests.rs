//! Where calls go, counted: how many take the out-of-line path and which barrier the leased
//! ones make. The costs the module docs state are properties a change can break without
//! losing a count, so they are checked here, call by call, on threads of their own.

use std::cell::Cell;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::barrier::tests::{fail_heavy_barriers_here, light_barriers_here};
use crate::{AtomicMetrics, MetricsBackend, RunnerErrorKind, RunnerType, Snapshot, TaskOutcome};

std::thread_local! {
    static UNLEASED_CALLS: Cell<u64> = const { Cell::new(0) };
    static ROUTE_SEARCHES: Cell<u64> = const { Cell::new(0) };
}

pub(super) fn count_unleased_call() {
    UNLEASED_CALLS.set(UNLEASED_CALLS.get() + 1);
}

pub(super) fn count_route_search() {
    ROUTE_SEARCHES.set(ROUTE_SEARCHES.get() + 1);
}

/// How many times `calls` made this thread search for a route.
fn searches(calls: impl FnOnce()) -> u64 {
    let before = ROUTE_SEARCHES.get();
    calls();
    ROUTE_SEARCHES.get() - before
}

/// What `calls` made this thread pay: out-of-line calls, and light barriers
/// `[compiler fences, real fences]`.
fn paid(calls: impl FnOnce()) -> (u64, [u64; 2]) {
    let (unleased, [compiler, real]) = (UNLEASED_CALLS.get(), light_barriers_here());
    calls();
    let [compiler_after, real_after] = light_barriers_here();
    (
        UNLEASED_CALLS.get() - unleased,
        [compiler_after - compiler, real_after - real],
    )
}

/// One leased and one shared stripe: a thread's lease is the only one.
pub(super) fn one_lease() -> AtomicMetrics {
    AtomicMetrics::builder()
        .stripes(2)
        .significant_digits(2)
        .highest_duration_ms(10_000)
        .max_snapshot_wait(Duration::from_millis(1))
        .build()
        .unwrap()
}

/// No leased stripe at all: a thread recording there remembers a shared route and no lease.
pub(super) fn no_lease() -> AtomicMetrics {
    AtomicMetrics::builder().stripes(1).build().unwrap()
}

/// A snapshot taken while this thread's heavy barriers fail, as a seccomp filter would make
/// them: held leases are revoked and the engine becomes fenced.
pub(super) fn snapshot_with_a_failing_barrier(metrics: &AtomicMetrics) -> Arc<Snapshot> {
    fail_heavy_barriers_here(true);
    let snapshot = metrics.snapshot();
    fail_heavy_barriers_here(false);
    snapshot
}

/// `snapshot` carries no stripe and counts exactly `tasks` tasks of [`tasks`].
pub(super) fn assert_whole(snapshot: &Snapshot, tasks: u64, carried_why: &str) {
    assert_eq!(snapshot.carried_stripes(), 0, "{carried_why}");
    let view = snapshot.cumulative();
    assert_eq!(view.started(RunnerType::Container), tasks);
    assert_eq!(
        view.completed(RunnerType::Container, TaskOutcome::Success),
        tasks
    );
}

/// `tasks` tasks of one label and duration, each a start, a completion and an error.
pub(super) fn tasks(metrics: &AtomicMetrics, tasks: u64) {
    for _ in 0..tasks {
        metrics.record_task_started(RunnerType::Container);
        metrics.record_task_completed(RunnerType::Container, TaskOutcome::Success, 40);
        metrics.record_runner_error(RunnerType::Container, RunnerErrorKind::SpawnFailed);
    }
}

/// A thread of its own that runs the jobs it is given, one at a time, and stays alive (with
/// its ordinal and its leases) until dropped.
pub(super) struct Worker<'scope> {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send + 'scope>>,
    thread: std::thread::ScopedJoinHandle<'scope, ()>,
}

impl<'scope> Worker<'scope> {
    pub(super) fn spawn<'env>(scope: &'scope std::thread::Scope<'scope, 'env>) -> Self {
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send + 'scope>>();
        let thread = scope.spawn(move || queue.into_iter().for_each(|job| job()));
        Worker { jobs, thread }
    }

    pub(super) fn run<T: Send + 'scope>(&self, job: impl FnOnce() -> T + Send + 'scope) -> T {
        let (done, result) = mpsc::sync_channel(1);
        let job = move || drop(done.send(job()));
        self.jobs.send(Box::new(job)).unwrap();
        result.recv().unwrap()
    }

    /// Ends the thread, and returns once it has exited (its ordinal back in the pool).
    pub(super) fn exit(self) {
        drop(self.jobs);
        self.thread.join().unwrap();
    }
}

/// Runs `body` on a new thread: one that remembers no lease yet.
fn on_a_new_thread<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(body).join().unwrap())
}

#[test]
fn a_holder_leaves_the_hot_path_once_per_snapshot_and_once_per_new_count() {
    let metrics = one_lease();
    let fenced = usize::from(metrics.is_fenced());
    on_a_new_thread(|| {
        // The first call claims the lease; the first completion of the slot marks its block.
        let (unleased, barriers) = paid(|| tasks(&metrics, 1_000));
        assert_eq!(unleased, 2);
        assert_eq!(barriers[1 - fenced], 0, "a barrier of the other mode");
        assert!(barriers[fenced] >= 3_000, "{barriers:?}");
        metrics.snapshot();
        // After a snapshot: the first call learns the new phase, and the first completion
        // finds its count zero in it.
        let (unleased, barriers) = paid(|| tasks(&metrics, 1_000));
        assert_eq!(unleased, 2);
        assert_eq!(barriers[1 - fenced], 0, "a barrier of the other mode");
        // Between snapshots, every call is a hot one, with one barrier each.
        let (unleased, barriers) = paid(|| tasks(&metrics, 1_000));
        assert_eq!(unleased, 0);
        assert_eq!(barriers[fenced], 3_000);
        assert_eq!(barriers[1 - fenced], 0);
    });
    let view = metrics.snapshot();
    let view = view.cumulative();
    assert_eq!(view.started(RunnerType::Container), 3_000);
    assert_eq!(
        view.duration_sum_ms(RunnerType::Container, TaskOutcome::Success),
        3_000 * 40
    );
}

#[test]
fn once_fenced_a_holder_fences_every_call() {
    let metrics = one_lease();
    if metrics.is_fenced() {
        // Built fenced (no membarrier here): the first test covers that mode.
        return;
    }
    std::thread::scope(|scope| {
        let writer = Worker::spawn(scope);
        let (_, barriers) = writer.run(|| paid(|| tasks(&metrics, 100)));
        assert_eq!(barriers[1], 0, "a real fence before the engine was fenced");
        assert!(!metrics.recording.leased[0].word_is_fenced());
        // The holder is idle when the barrier fails: its lease is revoked.
        snapshot_with_a_failing_barrier(&metrics);
        assert!(metrics.is_fenced());
        assert!(metrics.recording.leased[0].word_is_fenced());
        // Its next call acknowledges the revoke; the lease it claims after the next snapshot
        // is fenced, and its calls then fence for real.
        writer.run(|| tasks(&metrics, 1));
        metrics.snapshot();
        writer.run(|| tasks(&metrics, 1));
        let (unleased, barriers) = writer.run(|| paid(|| tasks(&metrics, 1_000)));
        assert_eq!(unleased, 0);
        assert_eq!(barriers, [0, 3_000]);
    });
    assert_whole(&metrics.snapshot(), 1_102, "a stripe still carried");
}

#[test]
fn a_thread_back_from_another_engine_finds_the_lease_its_token_holds() {
    let leased = one_lease();
    let shared_only = no_lease();
    on_a_new_thread(|| {
        tasks(&leased, 10);
        // The thread's memory now names a shared route in the other engine, and no lease.
        tasks(&shared_only, 10);
        // Back: one call finds the lease its token still holds, then the hot path.
        let (unleased, _) = paid(|| tasks(&leased, 1_000));
        assert_eq!(unleased, 1);
    });
    assert_eq!(
        leased
            .snapshot()
            .cumulative()
            .started(RunnerType::Container),
        1_010
    );
}

#[test]
fn a_holder_whose_memory_moved_on_still_acknowledges_a_revoked_lease() {
    let leased = one_lease();
    let shared_only = no_lease();
    if leased.is_fenced() {
        // No barrier to fail: a fenced engine never revokes.
        return;
    }
    std::thread::scope(|scope| {
        let holder = Worker::spawn(scope);
        holder.run(|| tasks(&leased, 10));
        holder.run(|| tasks(&shared_only, 10));
        assert_eq!(
            snapshot_with_a_failing_barrier(&leased).carried_stripes(),
            1
        );
        // The holder comes back with no lease in mind: its search for one finds the revoked
        // word and acknowledges it.
        holder.run(|| tasks(&leased, 10));
        assert_whole(&leased.snapshot(), 20, "the acknowledgment was lost");
    });
}

#[test]
fn a_holder_idle_when_the_barrier_fails_is_waited_for_all_the_same() {
    let metrics = one_lease();
    if metrics.is_fenced() {
        return;
    }
    std::thread::scope(|scope| {
        let holder = Worker::spawn(scope);
        holder.run(|| tasks(&metrics, 10));
        metrics.snapshot();
        // Idle since: the failing cut's close takes the lease back, and without a barrier it
        // cannot know the holder did not begin a call since; it waits for its acknowledgment.
        assert_eq!(
            snapshot_with_a_failing_barrier(&metrics).carried_stripes(),
            1
        );
        assert_eq!(metrics.snapshot().carried_stripes(), 1);
        holder.run(|| tasks(&metrics, 10));
        assert_whole(&metrics.snapshot(), 20, "a stripe still carried");
    });
}

/// Alone in a child process: another test's threads would take the freed ordinal first.
#[test]
fn a_revoked_holder_that_exited_is_no_longer_waited_for_once_its_ordinal_is_taken_again() {
    const NAME: &str = "recording::tests::\
        a_revoked_holder_that_exited_is_no_longer_waited_for_once_its_ordinal_is_taken_again";
    super::route::tests::alone_in_a_child_process(NAME, revoked_holder_exits);
}

fn revoked_holder_exits() {
    let metrics = one_lease();
    if metrics.is_fenced() {
        return;
    }
    std::thread::scope(|scope| {
        let holder = Worker::spawn(scope);
        let ordinal = holder.run(|| {
            tasks(&metrics, 10);
            super::route::identity().ordinal
        });
        assert_eq!(
            snapshot_with_a_failing_barrier(&metrics).carried_stripes(),
            1
        );
        holder.exit();
        // A new thread takes the ordinal (lowest first: one of the next few does), and with it
        // the token, but records nothing here: only the exit tells the reader the old holder
        // is gone.
        let mut aside = Vec::new();
        loop {
            let next = Worker::spawn(scope);
            let took = next.run(|| super::route::identity().ordinal);
            aside.push(next);
            if took == ordinal {
                break;
            }
            assert!(aside.len() < 64, "no new thread took ordinal {ordinal}");
        }
        assert_whole(&metrics.snapshot(), 10, "the exit went unseen");
    });
}

/// Three leased stripes, and a holder whose lease is not the first stripe its search for
/// one tries: another thread held that stripe when it searched, and has since let it go.
/// Returns the holder and the two stripes, with the threads kept aside for the search.
struct AwayFromFirst<'scope> {
    holder: Worker<'scope>,
    /// The holder's lease.
    held: usize,
    /// The free stripe its search starts at.
    first: usize,
    _aside: Vec<Worker<'scope>>,
}

impl<'scope> AwayFromFirst<'scope> {
    fn new<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        metrics: &'scope AtomicMetrics,
    ) -> Self {
        assert_eq!(metrics.leased_stripes(), 3);
        let other = Worker::spawn(scope);
        let first = other.run(|| {
            tasks(metrics, 1);
            super::route::remembered_lease().0
        });
        let mut aside = vec![other];
        let holder = starting_at(scope, first, &mut aside);
        let held = holder.run(|| {
            tasks(metrics, 1);
            super::route::remembered_lease().0
        });
        assert_ne!(held, first);
        // Two closes with the other thread idle take its lease back; the holder keeps its own.
        for _ in 0..2 {
            metrics.snapshot();
            holder.run(|| tasks(metrics, 1));
        }
        AwayFromFirst {
            holder,
            held,
            first,
            _aside: aside,
        }
    }
}

fn three_leases() -> AtomicMetrics {
    AtomicMetrics::builder()
        .stripes(4)
        .max_snapshot_wait(Duration::from_millis(1))
        .build()
        .unwrap()
}

/// A new thread whose search for one of [`three_leases`]' leases starts at `stripe`. Ordinals
/// are taken lowest first, so one of the next few threads starts there; the others are kept
/// alive in `aside`, so that their ordinals are not taken again.
fn starting_at<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    stripe: usize,
    aside: &mut Vec<Worker<'scope>>,
) -> Worker<'scope> {
    loop {
        let candidate = Worker::spawn(scope);
        if candidate.run(|| super::route::identity().ordinal % 3) == stripe as u64 {
            return candidate;
        }
        assert!(
            aside.len() < 64,
            "no thread's search starts at stripe {stripe}"
        );
        aside.push(candidate);
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_search_for_a_lease_tries_every_stripe_from_wherever_it_starts() {
    for free in 0..3 {
        for start in 0..3 {
            let metrics = three_leases();
            std::thread::scope(|scope| {
                let mut aside = Vec::new();
                for held in (0..3).filter(|&stripe| stripe != free) {
                    // Its own stripe is free: its search claims it.
                    let holder = starting_at(scope, held, &mut aside);
                    holder.run(|| tasks(&metrics, 1));
                    aside.push(holder);
                }
                let searcher = starting_at(scope, start, &mut aside);
                let lease = searcher.run(|| {
                    tasks(&metrics, 1);
                    super::route::remembered_lease().0
                });
                assert_eq!(
                    lease, free,
                    "a search from stripe {start} missed the free lease"
                );
            });
            assert_whole(&metrics.snapshot(), 3, "nobody records any more");
        }
    }
}

#[test]
fn a_thread_back_from_another_engine_keeps_its_lease_rather_than_claim_a_free_one() {
    let (metrics, shared_only) = (three_leases(), no_lease());
    std::thread::scope(|scope| {
        let away = AwayFromFirst::new(scope, &metrics);
        away.holder.run(|| tasks(&shared_only, 1));
        let (back_in, token) = away.holder.run(|| {
            tasks(&metrics, 1);
            let token = super::route::identity().token.unwrap();
            (super::route::remembered_lease().0, token)
        });
        assert_eq!(back_in, away.held);
        let named: Vec<usize> = (0..3)
            .filter(|&stripe| metrics.recording.leased[stripe].holder() == token)
            .collect();
        assert_eq!(
            named,
            [away.held],
            "a token holds two leases; one is lost to all"
        );
        assert_ne!(away.first, away.held);
    });
    assert_eq!(
        metrics
            .snapshot()
            .cumulative()
            .started(RunnerType::Container),
        5
    );
}

#[test]
fn a_revoked_holder_acknowledges_before_its_search_claims_another_lease() {
    // The search claims the free stripe it starts at and never looks at the revoked one:
    // only the holder's own relearning call can acknowledge.
    let metrics = three_leases();
    if metrics.is_fenced() {
        return;
    }
    std::thread::scope(|scope| {
        let away = AwayFromFirst::new(scope, &metrics);
        assert_eq!(
            snapshot_with_a_failing_barrier(&metrics).carried_stripes(),
            1
        );
        let moved_to = away.holder.run(|| {
            tasks(&metrics, 1);
            super::route::remembered_lease().0
        });
        assert_eq!(
            moved_to, away.first,
            "the search did not start where expected"
        );
        assert_whole(&metrics.snapshot(), 5, "the acknowledgment was lost");
    });
}

#[test]
fn a_call_made_inside_another_goes_elsewhere_and_the_outer_one_stays_open() {
    let metrics = one_lease();
    on_a_new_thread(|| {
        tasks(&metrics, 10);
        let (index, holder) = super::route::remembered_lease();
        let outer = metrics.recording.leased[index]
            .enter(holder)
            .expect("the holder's call begins");
        // What a signal handler, or a hook run inside a record call, would record.
        let (unleased, _) = paid(|| tasks(&metrics, 5));
        assert_eq!(unleased, 15, "a nested call took the hot path");
        // The outer call is still inside: the reader waits for it, then carries its stripe.
        assert_eq!(metrics.snapshot().carried_stripes(), 1);
        drop(outer);
        assert_whole(&metrics.snapshot(), 15, "a stripe still carried");
    });
}

#[test]
fn a_thread_on_shared_stripes_searches_for_a_route_once_per_snapshot() {
    let shared_only = no_lease();
    let leased = one_lease();
    std::thread::scope(|scope| {
        // Another thread holds `leased`'s only lease.
        let holder = Worker::spawn(scope);
        holder.run(|| tasks(&leased, 1));
        on_a_new_thread(|| {
            for metrics in [&leased, &shared_only] {
                assert_eq!(searches(|| tasks(metrics, 1_000)), 1);
                assert_eq!(searches(|| tasks(metrics, 1_000)), 0);
            }
            // A snapshot may free a lease: the next call looks again, once.
            shared_only.snapshot();
            assert_eq!(searches(|| tasks(&shared_only, 1_000)), 1);
            assert_eq!(searches(|| tasks(&shared_only, 1_000)), 0);
        });
    });
    assert_whole(&shared_only.snapshot(), 4_000, "nothing is leased");
    let view = leased.snapshot();
    assert_eq!(view.cumulative().started(RunnerType::Container), 2_001);
}

#[test]
#[cfg_attr(miri, ignore)]
fn consecutive_ordinals_spread_over_every_shared_stripe_then_over_every_lane() {
    use super::shared::SHARED_LANES;
    let mut most_shared = 0;
    for stripes in [1, 2, 3, 8, 16, 64] {
        let metrics = AtomicMetrics::builder().stripes(stripes).build().unwrap();
        let recording = &metrics.recording;
        let shared = recording.shared.len();
        most_shared = most_shared.max(shared);
        let places: Vec<(usize, usize)> = (0..(shared * SHARED_LANES) as u64)
            .map(|ordinal| recording.shared_lane_of(ordinal))
            .collect();
        assert!(
            places
                .iter()
                .all(|&(stripe, lane)| stripe < shared && lane < SHARED_LANES)
        );
        let stripes_first: std::collections::HashSet<usize> =
            places[..shared].iter().map(|&(stripe, _)| stripe).collect();
        assert_eq!(stripes_first.len(), shared, "{stripes} stripes: {places:?}");
        let every_place: std::collections::HashSet<(usize, usize)> =
            places.iter().copied().collect();
        assert_eq!(
            every_place.len(),
            places.len(),
            "{stripes} stripes: {places:?}"
        );
    }
    assert!(most_shared >= 2, "no configuration with two shared stripes");
}
