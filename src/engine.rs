//! [`AtomicMetrics`]: the lock-free engine behind [`MetricsBackend`].
//!
//! Writers go to one of the engine's stripes (see [`crate::stripe`] for the storage and the
//! phase protocol) and never touch anything else. The reader side (`snapshot`) drains every
//! stripe under one lock, builds a [`Snapshot`], and publishes it, so `latest()` is a
//! wait-free load of an `Arc`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Builder, Config};
use crate::contract::{MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome};
use crate::lease::{Closed, Holder, LeasedCall};
use crate::publish::Published;
use crate::route::{self, SharedRoute, thread_identity};
use crate::snapshot::{Snapshot, View};
use crate::stripe::Flipped;
use crate::stripe::{DrainedCompletions, SHARED_LANES, Stripe, completion_label, error_label};
use crate::sync::{Mutex, Spin, heavy_barrier, lock};

/// The lock-free metrics engine.
///
/// # Guarantees
///
/// - Every `record_*` call is a few atomic operations on fixed, preallocated arrays: no lock,
///   no heap allocation, no system call, no panic, whatever the input, on any thread; a
///   writer never waits for a reader.
/// - Any `u64` duration is accepted. One above
///   [`highest_duration_ms`](Self::highest_duration_ms) goes into the histogram as that value
///   and is counted in [`View::clamped`]; the sum keeps the true value (exact to 128 bits,
///   reported saturating at `u64::MAX`).
/// - Memory is fixed at construction by the configuration
///   ([`recording_memory_bytes`](Self::recording_memory_bytes)), whatever the number of
///   threads that ever record; what a thread recorded stays after it exits.
/// - Snapshots are consistent; see [`Snapshot`].
///
/// # Costs
///
/// A thread that holds a *leased* stripe (see [`Builder::stripes`]; the first threads to
/// record get one each, one per CPU by default) records with plain loads and stores and no
/// locked instruction: two increments of its own sequence word, a load of the lease word,
/// and the increments of the data (18 instructions for a start, 65 for a completion with
/// its HDR slot, on x86-64). Other threads record on *shared* stripes (spread over their
/// lanes, so that they rarely share a cache line), with atomic read-modify-writes:
/// `record_task_started` and `record_runner_error` one uncontended `fetch_add`,
/// `record_task_completed` four (enter the phase, bucket, sum, leave the phase), plus one when
/// clamped. Leases of threads that exited or went idle are freed by the next snapshot.
/// [`snapshot`](Self::snapshot) reads every slot of every stripe: its cost grows with stripes
/// × histogram size, not with the event rate; with leases it also makes one `membarrier`
/// system call.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use taskmeter::{AtomicMetrics, MetricsHandle, RunnerType, TaskOutcome};
///
/// let metrics = Arc::new(AtomicMetrics::new());
/// let handle: MetricsHandle = metrics.clone();
/// handle.record_task_started(RunnerType::Wasm);
/// handle.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 42);
///
/// let snapshot = metrics.snapshot();
/// let view = snapshot.cumulative();
/// assert_eq!(view.completed(RunnerType::Wasm, TaskOutcome::Success), 1);
/// assert_eq!(view.duration(RunnerType::Wasm, TaskOutcome::Success).max(), 42);
/// assert_eq!(snapshot.in_flight(RunnerType::Wasm), 0);
/// ```
pub struct AtomicMetrics {
    config: Config,
    /// `stripes[..leased]` are leased to one writer at a time, the rest shared.
    stripes: Box<[Stripe]>,
    leased: usize,
    /// Names this engine in the threads' lease memory.
    id: u64,
    /// Snapshots taken; each may free the leases of idle holders, so threads that found none
    /// free look again after it.
    /// A `std` atomic under loom too: only a hint.
    epoch: std::sync::atomic::AtomicU64,
    reader: Mutex<ReaderState>,
    published: Published<Snapshot>,
    /// Failed or panicked snapshot sink calls; read into each snapshot.
    sink_failures: std::sync::atomic::AtomicU64,
    /// Per HDR slot, its default (solti) export bucket: see `View::solti_buckets`.
    solti_bucket_of_slot: Box<[u8]>,
}

/// What the reader keeps between two snapshots; its lock also serializes drains.
struct ReaderState {
    previous: Arc<Snapshot>,
    previous_at: Instant,
    /// The snapshot before `previous`, once nobody else holds it: its storage is reused for
    /// the next snapshot, so a steady snapshotter allocates nothing large. Costs one snapshot
    /// of memory.
    spare: Option<Snapshot>,
    /// One histogram's non-zero slots during a drain; kept so that draining allocates
    /// nothing after the first snapshot.
    drain_buffer: Vec<(u32, u64)>,
}

/// Engine identities for the threads' lease memory; 0 means none.
static NEXT_ENGINE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many of `stripes` are shared: a fifth, at least one, so that threads beyond the leases
/// still spread over several stripes on a big machine. The default stripe count (CPUs plus a
/// quarter) thus leases one stripe per CPU.
pub(crate) fn shared_stripes(stripes: usize) -> usize {
    stripes.div_ceil(5)
}

/// How many of `stripes` are leased to one writer at a time: the rest.
pub(crate) fn leased_stripes(stripes: usize) -> usize {
    stripes - shared_stripes(stripes)
}

/// A stripe the reader has switched and has yet to drain.
enum Pending<'a> {
    Leased(&'a Stripe, Closed),
    Shared(&'a Stripe, Flipped),
}

/// Where a duration goes in a histogram: the slot of the duration clamped to the highest
/// trackable value, and whether it was clamped. (The exact duration goes into the sum.)
#[derive(Clone, Copy)]
struct Placement {
    slot: usize,
    clamped: bool,
}

/// Where one call records.
enum Writer<'a> {
    Leased(&'a Stripe, LeasedCall),
    /// A shared stripe, and the lane of it this thread uses.
    Shared(&'a Stripe, usize),
}

impl AtomicMetrics {
    /// An engine with the defaults: 1 ms to 24 h, 3 significant digits, one stripe per CPU.
    pub fn new() -> Self {
        Builder::default()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to choose the range, precision and stripes.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn with_config(config: Config) -> Self {
        let layout = config.layout;
        let leased = leased_stripes(config.stripes);
        let stripes: Box<[Stripe]> = (0..config.stripes)
            .map(|index| Stripe::new(layout.len(), index < leased))
            .collect();
        let empty = Arc::new(Snapshot {
            sequence: 0,
            taken_at: SystemTime::now(),
            elapsed: Duration::ZERO,
            cumulative: View::empty(&layout),
            interval: View::empty(&layout),
            sink_failures: 0,
        });
        AtomicMetrics {
            sink_failures: std::sync::atomic::AtomicU64::new(0),
            solti_bucket_of_slot: crate::export::solti_bucket_of_slots(&layout),
            leased,
            // Relaxed: a unique number is all we need.
            id: NEXT_ENGINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            epoch: std::sync::atomic::AtomicU64::new(0),
            stripes,
            config,
            reader: Mutex::new(ReaderState {
                previous: Arc::clone(&empty),
                previous_at: Instant::now(),
                spare: None,
                drain_buffer: Vec::new(),
            }),
            published: Published::new(empty),
        }
    }

    /// The top of the duration range, in ms.
    pub fn highest_duration_ms(&self) -> u64 {
        self.config.layout.highest()
    }

    /// The HDR precision, in significant decimal digits.
    pub fn significant_digits(&self) -> u8 {
        self.config.layout.significant_digits()
    }

    /// The number of stripes threads spread over.
    pub fn stripes(&self) -> usize {
        self.config.stripes
    }

    /// Bytes of recording state: fixed at construction, whatever the number of threads.
    /// At the defaults that is `stripes × 3.4 MiB` (two phases of twelve 18,432-slot
    /// histograms per stripe). A published [`Snapshot`] is extra: see
    /// [`Snapshot::memory_bytes`].
    pub fn recording_memory_bytes(&self) -> usize {
        Self::recording_memory_for(&self.config)
    }

    pub(crate) fn recording_memory_for(config: &Config) -> usize {
        std::mem::size_of::<Self>()
            + leased_stripes(config.stripes) * Stripe::memory_bytes(config.layout.len(), true)
            + shared_stripes(config.stripes) * Stripe::memory_bytes(config.layout.len(), false)
            + config.layout.len() // the slot-to-default-bucket table
    }

    /// The lease this thread remembers holding: that stripe of this engine, and the holder's
    /// credentials. The memory may be another engine's: which engine it came from is not
    /// checked, to keep the hot path short, because the lease word is what a call checks
    /// (see `Lease::enter`), and a stripe of this engine carries this thread's token only if
    /// the thread holds that stripe here too. A stripe index this engine lacks is no lease.
    #[inline(always)]
    fn remembered_lease(&self) -> Option<(&Stripe, Holder)> {
        let (stripe, holder) = route::remembered_lease();
        // `NO_LEASE` fails this lookup too: one comparison for both.
        Some((self.stripes.get(stripe)?, holder))
    }

    /// The hot path of every call: this thread's leased stripe and a call opened on it, if
    /// the thread holds a lease and it still does. Otherwise the caller takes its
    /// out-of-line unleased path, so that the leased path stays short (a call through
    /// `MetricsHandle` is not inlined, and each call's prologue saves only what it uses).
    #[inline(always)]
    fn leased_call(&self) -> Option<(&Stripe, LeasedCall)> {
        let (stripe, holder) = self.remembered_lease()?;
        Some((stripe, stripe.lease.enter(holder)?))
    }

    /// Where a call goes when the leased path did not take it: the thread's lease still, in
    /// a new phase (it learns the new lease word, once per snapshot); else its remembered
    /// shared stripe; else the slow path.
    #[inline(always)]
    fn unleased_writer(&self) -> Writer<'_> {
        if let Some((stripe, holder)) = self.remembered_lease()
            && let Some((call, holder)) = stripe.lease.enter_relearning(holder)
        {
            route::remember_holder(holder);
            return Writer::Leased(stripe, call);
        }
        match route::shared_route(self.id) {
            // Relaxed: a hint; a stale epoch only delays a claim to a later call.
            Some(SharedRoute {
                stripe,
                lane,
                epoch,
            }) if epoch == self.epoch.load(std::sync::atomic::Ordering::Relaxed) => {
                Writer::Shared(&self.stripes[stripe], lane)
            }
            _ => self.find_route(),
        }
    }

    /// Takes a free lease if there is one (starting at the thread's own stripe, so threads
    /// spread out), else records on a shared stripe until the next snapshot frees leases.
    #[cold]
    fn find_route(&self) -> Writer<'_> {
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Relaxed);
        let (ordinal, token) = thread_identity();
        let mut closed_seen = false;
        if let Some(token) = token.filter(|_| self.leased > 0) {
            let first = ordinal as usize % self.leased;
            for offset in 0..self.leased {
                let stripe = (first + offset) % self.leased;
                let lease = &self.stripes[stripe].lease;
                match lease.try_claim(token) {
                    Ok(Some(holder)) => {
                        if let Some((call, holder)) = lease.enter_relearning(holder) {
                            route::remember_lease(stripe, holder);
                            return Writer::Leased(&self.stripes[stripe], call);
                        }
                        // The reader took it back already: the shared path, this once.
                        closed_seen = true;
                        break;
                    }
                    Ok(None) => {}
                    Err(()) => closed_seen = true,
                }
            }
        }
        let (stripe, lane) = self.shared_lane_of(ordinal);
        if !closed_seen {
            // Every lease is taken (or none is for us): stop looking until the next snapshot.
            self.remember_shared(stripe, lane, epoch);
        }
        Writer::Shared(&self.stripes[stripe], lane)
    }

    /// The shared stripe and lane for the thread with `ordinal`: threads spread round-robin
    /// over the shared stripes, then over their lanes. Off the hot path: the route remembers
    /// the result.
    fn shared_lane_of(&self, ordinal: u32) -> (usize, usize) {
        let shared = self.stripes.len() - self.leased;
        let ordinal = ordinal as usize;
        (
            self.leased + ordinal % shared,
            ordinal / shared % SHARED_LANES,
        )
    }

    /// Gives this thread's lease up until the next snapshot (a histogram slot of its stripe
    /// is full), and records the completion on the shared stripe its later calls go to.
    #[cold]
    #[inline(never)]
    fn complete_giving_up_lease(&self, label: usize, duration_ms: u64) {
        let (ordinal, _) = thread_identity();
        let (stripe, lane) = self.shared_lane_of(ordinal);
        self.remember_shared(
            stripe,
            lane,
            self.epoch.load(std::sync::atomic::Ordering::Relaxed),
        );
        let Placement { slot, clamped } = self.placement(duration_ms);
        self.stripes[stripe].record_completion(lane, label, slot, duration_ms, clamped);
    }

    /// Where `duration_ms` goes in the histograms.
    #[inline(always)]
    fn placement(&self, duration_ms: u64) -> Placement {
        let layout = &self.config.layout;
        Placement {
            slot: layout.index_of(duration_ms.min(layout.highest())),
            clamped: duration_ms > layout.highest(),
        }
    }

    /// Sends this thread's later calls to shared `stripe`, in `lane`, until the reader's epoch
    /// moves past `epoch`.
    fn remember_shared(&self, stripe: usize, lane: usize, epoch: u64) {
        let route = SharedRoute {
            stripe,
            lane,
            epoch,
        };
        route::remember_shared(self.id, route);
    }

    /// Takes a snapshot now, publishes it (so [`latest`](Self::latest) returns it), and
    /// returns it.
    ///
    /// Callers on several threads are served one at a time, in the order of their sequence
    /// numbers; writers are never blocked. The cost is a scan of every histogram slot of
    /// every stripe plus building the `hdrhistogram` histograms (see the README's figures).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot_at(SystemTime::now(), Instant::now())
    }

    /// [`snapshot`](Self::snapshot) with the clocks read by the caller, so tests can move them,
    /// backwards included.
    fn snapshot_at(&self, wall_clock: SystemTime, monotonic: Instant) -> Arc<Snapshot> {
        let layout = self.config.layout;
        let mut guard = lock(&self.reader);
        let reader = &mut *guard;
        let previous = &reader.previous;
        let mut next = reader.spare.take().unwrap_or_else(|| Snapshot {
            sequence: 0,
            taken_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::ZERO,
            cumulative: View::empty(&layout),
            interval: View::empty(&layout),
            sink_failures: 0,
        });
        let interval = &mut next.interval;
        interval.clear();
        // Flip every stripe (taking leases back), then read the counters, then drain: see the
        // stripe and lease modules on why this order keeps in-flight exact and never negative.
        let (leased, shared) = self.stripes.split_at(self.leased);
        let closed: Vec<_> = leased.iter().map(Stripe::close_lease).collect();
        let flipped: Vec<_> = shared.iter().map(Stripe::flip).collect();
        if closed.iter().any(|closed| closed.was_held()) {
            // Every holder's call is now either visible to us or sees the closed lease.
            heavy_barrier();
        }
        // Counters are cumulative on the stripes; the interval is the growth since last time.
        for (runner, started) in interval.started.iter_mut().enumerate() {
            let now: u64 = self.stripes.iter().map(|s| s.started(runner)).sum();
            *started = now - previous.cumulative.started[runner];
        }
        for (label, errors) in interval.errors.iter_mut().enumerate() {
            let now: u64 = self.stripes.iter().map(|s| s.errors(label)).sum();
            *errors = now - previous.cumulative.errors[label];
        }
        let mut collect = |drained: DrainedCompletions<'_>| {
            interval.sums[drained.label] += drained.sum;
            interval.clamped[drained.label] += drained.clamped;
            for &(slot, count) in drained.slots {
                let slot = slot as usize;
                let bucket = self.solti_bucket_of_slot[slot];
                interval.record_slot(drained.label, slot, count, bucket);
            }
        };
        // Drain whichever stripe is ready first: a writer descheduled inside a call (likely
        // when there are more busy threads than cores) delays only its own stripe, and the
        // others are drained meanwhile.
        let mut pending: Vec<Pending<'_>> = leased
            .iter()
            .zip(closed)
            .map(|(stripe, closed)| Pending::Leased(stripe, closed))
            .chain(
                shared
                    .iter()
                    .zip(flipped)
                    .map(|(stripe, flipped)| Pending::Shared(stripe, flipped)),
            )
            .collect();
        let spin = Spin::new();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain_mut(|pending| match pending {
                Pending::Leased(stripe, closed) => {
                    let ready = stripe.leased_ready(closed);
                    if ready {
                        stripe.drain_leased(*closed, &mut reader.drain_buffer, &mut collect);
                    }
                    !ready
                }
                Pending::Shared(stripe, flipped) => {
                    let ready = stripe.shared_ready(flipped);
                    if ready {
                        stripe.drain(*flipped, &mut reader.drain_buffer, &mut collect);
                    }
                    !ready
                }
            });
            if pending.len() == before {
                spin.wait();
            }
        }
        // Relaxed: a hint for threads that found every lease taken (see `writer`).
        self.epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        next.cumulative.copy_from(&previous.cumulative);
        next.cumulative.add(&next.interval);

        next.sequence = previous.sequence + 1;
        next.taken_at = wall_clock;
        // Saturating: never negative, whatever the caller's clocks did.
        next.elapsed = monotonic.saturating_duration_since(reader.previous_at);
        // Relaxed: a plain tally; any recent value will do.
        next.sink_failures = self
            .sink_failures
            .load(std::sync::atomic::Ordering::Relaxed);
        let snapshot = Arc::new(next);
        // Published while still holding the reader lock, so publication order is sequence
        // order and `latest()` never goes back in time.
        self.published.store(Arc::clone(&snapshot));
        reader.previous_at = reader.previous_at.max(monotonic);
        let retired = std::mem::replace(&mut reader.previous, Arc::clone(&snapshot));
        // Out of `published` and `reader` now: reuse its storage unless a user still holds it.
        reader.spare = Arc::try_unwrap(retired).ok();
        snapshot
    }

    /// Counts one failed or panicked sink call; it shows in the next snapshot.
    #[cfg(not(loom))]
    pub(crate) fn count_sink_failure(&self) {
        self.sink_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last published snapshot: wait-free, never touches the recording state.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.published.load()
    }
}

impl Default for AtomicMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AtomicMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicMetrics")
            .field("highest_duration_ms", &self.highest_duration_ms())
            .field("significant_digits", &self.significant_digits())
            .field("stripes", &self.stripes())
            .field("recording_memory_bytes", &self.recording_memory_bytes())
            .finish_non_exhaustive()
    }
}

impl MetricsBackend for AtomicMetrics {
    #[inline]
    fn record_task_started(&self, runner_type: RunnerType) {
        if let Some((stripe, _call)) = self.leased_call() {
            return stripe.record_started_leased(runner_type);
        }
        self.record_started_unleased(runner_type);
    }

    #[inline]
    fn record_task_completed(
        &self,
        runner_type: RunnerType,
        outcome: TaskOutcome,
        duration_ms: u64,
    ) {
        let label = completion_label(runner_type, outcome);
        let Placement { slot, clamped } = self.placement(duration_ms);
        if let Some((stripe, holder)) = self.remembered_lease() {
            // The completion's target (its count's address above all) is found, and the count
            // read, before the call begins, so that its cache miss falls outside the call: a
            // thread preempted inside a call makes the reader wait for it, and that miss is
            // where one mostly is (this cut the reader's waits with two threads recording on
            // two cores from 0.9 to 0.1 ms; README, "Where taskmeter leads"). The phase is the
            // one the holder expects; the call begins only in that phase, so the target holds.
            if let Some(target) = stripe.leased_target(holder.phase(), label, slot) {
                if target.is_full() {
                    return self.complete_giving_up_lease(label, duration_ms);
                }
                if let Some(_call) = stripe.lease.enter(holder) {
                    return target.record(duration_ms, clamped);
                }
            }
        }
        // The cold paths take only the label and the duration, and work the rest out again:
        // then nothing else must outlive the leased path, whose prologue saves fewer
        // registers.
        self.complete_unleased(label, duration_ms);
    }

    #[inline]
    fn record_runner_error(&self, runner_type: RunnerType, error_kind: RunnerErrorKind) {
        let label = error_label(runner_type, error_kind);
        if let Some((stripe, _call)) = self.leased_call() {
            return stripe.record_error_leased(label);
        }
        self.record_error_unleased(label);
    }
}

/// The record paths of a thread without a (valid) lease, out of line: see `leased_call`.
/// Each reads the thread's route again rather than take it as an argument, which would make
/// the leased path keep it on the stack.
impl AtomicMetrics {
    #[inline(never)]
    fn record_started_unleased(&self, runner: RunnerType) {
        match self.unleased_writer() {
            Writer::Leased(stripe, _call) => stripe.record_started_leased(runner),
            Writer::Shared(stripe, lane) => stripe.record_started(lane, runner),
        }
    }

    #[inline(never)]
    fn complete_unleased(&self, label: usize, duration_ms: u64) {
        let Placement { slot, clamped } = self.placement(duration_ms);
        match self.unleased_writer() {
            Writer::Leased(stripe, call) => match stripe.leased_target(call.phase, label, slot) {
                Some(target) if !target.is_full() => target.record(duration_ms, clamped),
                // Full (or, were a leased stripe ever without 32-bit counts, missing): a
                // shared stripe takes it.
                _ => {
                    drop(call);
                    self.complete_giving_up_lease(label, duration_ms)
                }
            },
            Writer::Shared(stripe, lane) => {
                stripe.record_completion(lane, label, slot, duration_ms, clamped)
            }
        }
    }

    #[inline(never)]
    fn record_error_unleased(&self, label: usize) {
        match self.unleased_writer() {
            Writer::Leased(stripe, _call) => stripe.record_error_leased(label),
            Writer::Shared(stripe, lane) => stripe.record_error(lane, label),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn clocks_going_backwards_give_zero_elapsed_and_no_panic() {
        let start = Instant::now();
        let metrics = AtomicMetrics::builder().stripes(1).build().unwrap();
        let wall = SystemTime::now();
        let later = Instant::now() + Duration::from_secs(10);
        let first = metrics.snapshot_at(wall, later);
        // From the engine's creation, which lies between `start` and `later - 10 s`.
        assert!(first.elapsed() <= later - start && first.elapsed() >= Duration::from_secs(10));
        // Both clocks jump back: monotonic by a second, wall-clock to before the epoch.
        metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 3);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(3600);
        let second = metrics.snapshot_at(before_epoch, later - Duration::from_secs(1));
        assert_eq!(second.elapsed(), Duration::ZERO);
        assert_eq!(second.taken_at(), before_epoch);
        assert_eq!(
            second
                .interval()
                .completed(RunnerType::Wasm, TaskOutcome::Success),
            1
        );
        // Elapsed is measured from the latest monotonic reading, not the one that went back.
        let third = metrics.snapshot_at(wall, later + Duration::from_secs(2));
        assert_eq!(third.elapsed(), Duration::from_secs(2));
        // Exports of the odd snapshot work too.
        #[cfg(feature = "json")]
        assert!(second.to_json().contains("\"taken_at_unix_ms\":0"));
        #[cfg(feature = "hlog")]
        {
            let mut log = crate::export::interval_log::IntervalLogSink::new(Vec::new()).unwrap();
            log.write_snapshot(&second).unwrap();
            log.write_snapshot(&third).unwrap();
        }
        let _ = second.to_prometheus();
    }

    fn small_engine_with_one_lease() -> AtomicMetrics {
        AtomicMetrics::builder()
            .stripes(2)
            .significant_digits(1)
            .highest_duration_ms(1_000)
            .build()
            .unwrap()
    }

    #[test]
    fn a_lease_stays_while_its_holder_records_and_goes_after_an_idle_period() {
        use crate::lease::{FIRST_TOKEN, FREE};
        // One leased stripe, one shared; a small layout, so that Miri runs this quickly.
        let metrics = small_engine_with_one_lease();
        assert_eq!(metrics.leased, 1);
        let lease = &metrics.stripes[0].lease;
        let task = |metrics: &AtomicMetrics| {
            metrics.record_task_started(RunnerType::Wasm);
            metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 7);
        };
        let holder_after_a_task_on_a_new_thread = |metrics: &AtomicMetrics| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        task(metrics);
                        lease.holder()
                    })
                    .join()
                    .unwrap()
            })
        };
        // An active holder keeps its lease across snapshots.
        task(&metrics);
        let mine = lease.holder();
        assert!(mine >= FIRST_TOKEN, "the first thread took the free lease");
        for _ in 0..3 {
            metrics.snapshot();
            task(&metrics);
            assert_eq!(lease.holder(), mine);
        }
        // Now this thread stops: the next snapshot sees it active in the last period and keeps
        // it; another thread meanwhile records on the shared stripe.
        metrics.snapshot();
        assert_eq!(holder_after_a_task_on_a_new_thread(&metrics), mine);
        // A whole period without a call: the lease is taken back, and the next thread gets it.
        metrics.snapshot();
        assert_eq!(lease.holder(), FREE);
        let next = holder_after_a_task_on_a_new_thread(&metrics);
        assert!(next >= FIRST_TOKEN && next != mine);
        let snapshot = metrics.snapshot();
        let view = snapshot.cumulative();
        assert_eq!(view.started(RunnerType::Wasm), 6);
        assert_eq!(view.completed(RunnerType::Wasm, TaskOutcome::Success), 6);
        assert_eq!(
            view.duration_sum_ms(RunnerType::Wasm, TaskOutcome::Success),
            42
        );
        assert_eq!(snapshot.in_flight(RunnerType::Wasm), 0);
    }

    #[test]
    fn a_full_32_bit_count_sends_the_holder_to_a_shared_stripe_and_loses_nothing() {
        let metrics = small_engine_with_one_lease();
        let (runner, outcome, duration) = (RunnerType::Container, TaskOutcome::Timeout, 5);
        metrics.record_task_completed(runner, outcome, duration);
        let label = completion_label(runner, outcome);
        let slot = metrics.config.layout.index_of(duration);
        // This thread holds the lease; its count for the slot is now one short of full.
        metrics.stripes[0].set_leased_count(label, slot, u32::MAX - 1);
        for _ in 0..3 {
            metrics.record_task_completed(runner, outcome, duration);
        }
        let snapshot = metrics.snapshot();
        let view = snapshot.interval();
        let expected = u64::from(u32::MAX) - 1 + 3;
        assert_eq!(view.completed(runner, outcome), expected);
        assert_eq!(view.duration(runner, outcome).count_at(duration), expected);
        // The sum saw only the four real calls: it lives in 64-bit cells.
        assert_eq!(view.duration_sum_ms(runner, outcome), 4 * duration);
        // After the snapshot the thread leases again, with a fresh count.
        metrics.record_task_completed(runner, outcome, duration);
        assert!(metrics.stripes[0].lease.holder() >= crate::lease::FIRST_TOKEN);
        assert_eq!(metrics.snapshot().interval().completed(runner, outcome), 1);
    }
}
