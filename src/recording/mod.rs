//! The write side, read top-down: this module routes a call to a stripe; [`route`] is the
//! thread's memory of where its calls go; [`leased`] and [`shared`] are the two kinds of
//! stripe, each with its protocol and the proof of it; [`counts`] is what both count.
//!
//! # Where a call goes
//!
//! A thread that holds a lease on one of the engine's *leased* stripes records there with
//! plain loads and stores (the hot path, inlined into the caller: the thread's memory, the
//! lease word, the data). Every other case takes one out-of-line path
//! ([`Recording::unleased_writer`]): the thread still holds its lease but a snapshot moved
//! the phase (it learns the new one); it has no lease yet (it claims a free one, or finds the
//! one its token inherited); or no lease is free, and it records on one of the *shared*
//! stripes, spread over them and their lanes by ordinal, until the next snapshot, when it
//! looks for a lease again.
//!
//! # Why this many leases
//!
//! A leased call costs a fraction of a shared one (no locked instruction), and a leased stripe
//! that nobody holds costs almost nothing resident (its counts are zeroed pages the system
//! has not backed) nor at snapshots (a CAS, no scan). So the default leases many stripes (see
//! [`crate::Builder::stripes`]): every thread of a process that runs a few per CPU leases one,
//! exited threads hand theirs on at once (see [`route`]), and the shared stripes serve only
//! threads beyond that. Choosing a stripe by the CPU a thread runs on would need restartable
//! sequences to keep plain stores exact across a migration, which safe Rust cannot express.

pub(crate) mod counts;
pub(crate) mod labelled;
pub(crate) mod leased;
pub(crate) mod route;
pub(crate) mod shared;
#[cfg(all(test, not(loom)))]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::layout::{HdrLayout, completion_label, error_label};
use leased::{CountFull, Holder, LeasedCall, LeasedStripe};
use route::SharedRoute;
use shared::{SHARED_LANES, SharedStripe};

/// Every stripe of an engine, and how calls find theirs.
pub(crate) struct Recording {
    layout: HdrLayout,
    pub(crate) leased: Box<[LeasedStripe]>,
    pub(crate) shared: Box<[SharedStripe]>,
    /// Names this engine in the threads' shared routes.
    id: u64,
    /// Snapshots taken; each may free leases, so threads that found none free look again
    /// after it. A `std` atomic under loom too: only a hint.
    epoch: std::sync::atomic::AtomicU64,
    /// Whether the leased writers fence (see `barrier`): set at construction when the process
    /// could not register for `membarrier`, or by the reader when a barrier failed. Only the
    /// reader writes it; the writers learn the mode from the lease words, never from here.
    fenced: std::sync::atomic::AtomicBool,
    /// Runner errors with a custom label; shared with the views, which name their cells.
    pub(crate) labelled: Arc<labelled::LabelledErrors>,
    /// Per runner, started tasks whose completion will never be recorded as such: an
    /// integration that lost track of them (see `solti::TaskvisorMetrics`) takes them out of
    /// in-flight here. Written by that integration, read by the reader before the counters.
    untracked: [AtomicI64; RunnerType::COUNT],
    /// What `solti::TaskvisorMetrics` counts besides tasks, for the snapshots.
    #[cfg(all(feature = "solti", not(loom)))]
    pub(crate) taskvisor: crate::solti::TaskvisorCounters,
}

/// Engine identities for the threads' shared routes; 0 means none.
static NEXT_ENGINE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Where a duration goes in a histogram: the slot of the duration clamped to the highest
/// trackable value, and whether it was clamped. (The exact duration goes into the sum.)
#[derive(Clone, Copy)]
struct Placement {
    slot: usize,
    clamped: bool,
}

/// Where one call records, when the hot path did not take it.
enum Writer<'a> {
    Leased(LeasedCall<'a>),
    /// A shared stripe, and the lane of it this thread uses.
    Shared(&'a SharedStripe, usize),
}

impl Recording {
    /// `leased` leased and `shared` shared stripes (at least one shared).
    pub(crate) fn new(
        layout: HdrLayout,
        leased: usize,
        shared: usize,
        custom_labels: usize,
    ) -> Self {
        let fenced = !crate::barrier::prepare();
        Recording {
            labelled: Arc::new(labelled::LabelledErrors::new(custom_labels)),
            untracked: std::array::from_fn(|_| AtomicI64::new(0)),
            #[cfg(all(feature = "solti", not(loom)))]
            taskvisor: Default::default(),
            layout,
            fenced: std::sync::atomic::AtomicBool::new(fenced),
            leased: (0..leased)
                .map(|_| LeasedStripe::new(layout.len(), fenced))
                .collect(),
            shared: (0..shared)
                .map(|_| SharedStripe::new(layout.len()))
                .collect(),
            // Relaxed: a unique number is all we need.
            id: NEXT_ENGINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Bytes reserved by `leased` and `shared` stripes of `layout`.
    pub(crate) fn reserved_bytes(layout: &HdrLayout, leased: usize, shared: usize) -> usize {
        std::mem::size_of::<Self>()
            + leased * LeasedStripe::reserved_bytes(layout.len())
            + shared * SharedStripe::reserved_bytes(layout.len())
    }

    /// Tells threads that found no lease free to look again: called by the reader after
    /// each cut, which may have freed some.
    pub(crate) fn next_epoch(&self) {
        // Relaxed: a hint; a thread that reads an old epoch looks again a call later.
        self.epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The number that names this engine in the threads' shared routes.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether the leased writers fence (see `barrier`).
    pub(crate) fn is_fenced(&self) -> bool {
        // Relaxed: written by the reader only, under its lock; other readers get a hint.
        self.fenced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// After a failed heavy barrier: from now on the writers fence. The caller revokes the
    /// leases (see `LeasedStripe::revoke`).
    pub(crate) fn become_fenced(&self) {
        // Relaxed: as in `is_fenced`.
        self.fenced
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tasks of `runner` started so far, on every stripe. The reader calls it after closing and
    /// flipping every stripe (see `reader`).
    pub(crate) fn started(&self, runner: usize) -> u64 {
        self.leased.iter().map(|s| s.started(runner)).sum::<u64>()
            + self.shared.iter().map(|s| s.started(runner)).sum::<u64>()
    }

    /// Takes `delta` started tasks of `runner` out of in-flight (or back in, negative).
    #[cfg_attr(not(feature = "solti"), allow(dead_code))]
    pub(crate) fn untrack(&self, runner: RunnerType, delta: i64) {
        // Release: the reader that sees this sees the starts recorded before it.
        self.untracked[runner.index()].fetch_add(delta, Ordering::Release);
    }

    /// Started tasks of each runner taken out of in-flight; read before the counters.
    pub(crate) fn untracked(&self) -> [i64; RunnerType::COUNT] {
        std::array::from_fn(|runner| self.untracked[runner].load(Ordering::Acquire))
    }

    /// Errors of one `(runner, kind)` label so far, on every stripe.
    pub(crate) fn errors(&self, label: usize) -> u64 {
        self.leased.iter().map(|s| s.errors(label)).sum::<u64>()
            + self.shared.iter().map(|s| s.errors(label)).sum::<u64>()
    }

    /// Where `duration_ms` goes in the histograms.
    #[inline(always)]
    fn placement(&self, duration_ms: u64) -> Placement {
        Placement {
            slot: self.layout.index_of(duration_ms.min(self.layout.highest())),
            clamped: duration_ms > self.layout.highest(),
        }
    }

    /// The lease this thread remembers holding: that stripe of this engine, and the holder's
    /// credentials. The memory may be another engine's (see [`route`]); a stripe index this
    /// engine lacks is no lease.
    #[inline(always)]
    fn remembered_lease(&self) -> Option<(&LeasedStripe, Holder)> {
        let (stripe, holder) = route::remembered_lease();
        // `NO_LEASE` fails this lookup too: one comparison for both.
        Some((self.leased.get(stripe)?, holder))
    }

    #[inline]
    pub(crate) fn record_started(&self, runner: RunnerType) {
        if let Some((stripe, holder)) = self.remembered_lease()
            && let Some(call) = stripe.enter(holder)
        {
            return call.record_started(runner.index());
        }
        self.record_started_unleased(runner.index());
    }

    #[inline]
    pub(crate) fn record_completed(&self, runner: RunnerType, outcome: TaskOutcome, ms: u64) {
        let label = completion_label(runner, outcome);
        let Placement { slot, clamped } = self.placement(ms);
        if let Some((stripe, holder)) = self.remembered_lease() {
            // The target is found, and its count read, before the call begins (see
            // `LeasedTarget`). The phase is the one the holder expects; the call begins only in
            // that phase, so the target holds.
            if let Some(target) = stripe.target(holder.phase(), label, slot)
                && target.is_usual()
                && let Some(call) = stripe.enter(holder)
            {
                return call.complete(target, ms, clamped);
            }
        }
        // The cold paths take only the label and the duration and work the rest out again,
        // so that nothing else must outlive the hot path, whose prologue saves fewer registers.
        self.complete_unleased(label, ms);
    }

    #[inline]
    pub(crate) fn record_error(&self, runner: RunnerType, kind: RunnerErrorKind) {
        let label = error_label(runner, kind);
        if let Some((stripe, holder)) = self.remembered_lease()
            && let Some(call) = stripe.enter(holder)
        {
            return call.record_error(label);
        }
        self.record_error_unleased(label);
    }

    /// Where a call goes when the hot path did not take it: the thread's lease still, in a new
    /// phase (it learns the new lease word, once per snapshot); else its remembered shared
    /// stripe; else [`find_route`](Self::find_route).
    #[inline(always)]
    fn unleased_writer(&self) -> Writer<'_> {
        #[cfg(all(test, not(loom)))]
        tests::count_unleased_call();
        if let Some((stripe, holder)) = self.remembered_lease()
            && let Some((call, holder)) = stripe.enter_relearning(holder)
        {
            route::remember_holder(holder);
            return Writer::Leased(call);
        }
        match route::shared_route(self.id) {
            // Relaxed: a hint; a stale epoch only delays a claim to a later call.
            Some(SharedRoute {
                stripe,
                lane,
                epoch,
            }) if epoch == self.epoch.load(std::sync::atomic::Ordering::Relaxed) => {
                Writer::Shared(&self.shared[stripe], lane)
            }
            _ => self.find_route(),
        }
    }

    /// The lease this thread's token already names (inherited from an exited thread, or held
    /// in an earlier call), else a free one (starting at the thread's own stripe, so threads
    /// spread out), else a shared stripe until the next snapshot frees leases.
    #[cold]
    fn find_route(&self) -> Writer<'_> {
        #[cfg(all(test, not(loom)))]
        tests::count_route_search();
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Relaxed);
        let identity = route::identity();
        let mut closed_seen = false;
        if let Some(token) = identity.token.filter(|_| !self.leased.is_empty()) {
            let first = identity.ordinal as usize % self.leased.len();
            let order = (0..self.leased.len()).map(|offset| (first + offset) % self.leased.len());
            let named = order
                .clone()
                .find(|&stripe| self.leased[stripe].is_held_by(token) == Ok(true));
            for stripe in named.into_iter().chain(order) {
                let lease = &self.leased[stripe];
                match lease.try_claim(token) {
                    Ok(Some(holder)) => {
                        if let Some((call, holder)) = lease.enter_relearning(holder) {
                            route::remember_lease(stripe, holder);
                            return Writer::Leased(call);
                        }
                        // The reader took it back already: the shared path, this once.
                        closed_seen = true;
                        break;
                    }
                    Ok(None) => {}
                    Err(()) => {
                        lease.acknowledge_if_revoked(token);
                        closed_seen = true;
                    }
                }
            }
        }
        let (stripe, lane) = self.shared_lane_of(identity.ordinal);
        if !closed_seen {
            // Every lease is taken (or none is for us): stop looking until the next snapshot.
            self.remember_shared(stripe, lane, epoch);
        }
        Writer::Shared(&self.shared[stripe], lane)
    }

    /// The shared stripe and lane for the thread with `ordinal`: threads spread round-robin
    /// over the shared stripes, then over their lanes.
    fn shared_lane_of(&self, ordinal: u64) -> (usize, usize) {
        let shared = self.shared.len() as u64;
        (
            (ordinal % shared) as usize,
            (ordinal / shared % SHARED_LANES as u64) as usize,
        )
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

    /// Gives this thread's lease up until the next snapshot (a histogram count of its stripe
    /// is full), and records the completion on the shared stripe its later calls go to.
    #[cold]
    #[inline(never)]
    fn complete_giving_up_lease(&self, label: usize, duration_ms: u64) {
        let (stripe, lane) = self.shared_lane_of(route::identity().ordinal);
        self.remember_shared(
            stripe,
            lane,
            self.epoch.load(std::sync::atomic::Ordering::Relaxed),
        );
        let Placement { slot, clamped } = self.placement(duration_ms);
        self.shared[stripe].record_completion(lane, label, slot, duration_ms, clamped);
    }

    /// The record paths that the hot path did not take, out of line. Each reads the thread's
    /// route again rather than take it as an argument, which would make the hot path keep it.
    #[inline(never)]
    fn record_started_unleased(&self, runner: usize) {
        match self.unleased_writer() {
            Writer::Leased(call) => call.record_started(runner),
            Writer::Shared(stripe, lane) => stripe.record_started(lane, runner),
        }
    }

    #[inline(never)]
    fn complete_unleased(&self, label: usize, duration_ms: u64) {
        let Placement { slot, clamped } = self.placement(duration_ms);
        match self.unleased_writer() {
            Writer::Leased(call) => {
                if let Err(CountFull) = call.complete_checked(label, slot, duration_ms, clamped) {
                    self.complete_giving_up_lease(label, duration_ms)
                }
            }
            Writer::Shared(stripe, lane) => {
                stripe.record_completion(lane, label, slot, duration_ms, clamped)
            }
        }
    }

    #[inline(never)]
    fn record_error_unleased(&self, label: usize) {
        match self.unleased_writer() {
            Writer::Leased(call) => call.record_error(label),
            Writer::Shared(stripe, lane) => stripe.record_error(lane, label),
        }
    }
}
