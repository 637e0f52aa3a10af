//! What a writer thread remembers between calls: its ordinal, and where its calls go (the
//! lease it holds, or the shared stripe and lane it records on).
//!
//! One thread-local `Cell` of plain `Copy` data with no destructor: the first access
//! registers nothing and allocates nothing. It is laid out for the hot path. A thread that
//! holds a lease finds the stripe's index and its [`Holder`] credentials with no check of
//! its own: [`NO_LEASE`] fails the engine's stripe lookup, which the call makes anyway. The
//! memory does not say which engine the lease is in (see `AtomicMetrics::remembered_lease`
//! for why it need not); a shared route does, with the engine's reader epoch.

use std::cell::Cell;

use crate::lease::{FIRST_TOKEN, Holder, LEASE_THREADS};

/// The stripe index of "no lease": no engine has that many stripes.
const NO_LEASE: usize = usize::MAX;

/// A shared stripe and lane to record on: the thread found no lease free (or gave its lease
/// up) in the engine's reader `epoch`, and will not look again before the next.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedRoute {
    pub(crate) stripe: usize,
    pub(crate) lane: usize,
    pub(crate) epoch: u64,
}

#[derive(Debug, Clone, Copy)]
struct WriterState {
    /// The thread's ordinal plus one; 0 until the thread first records.
    ordinal_plus_one: u64,
    /// The stripe of the lease the thread remembers holding, or [`NO_LEASE`].
    leased_stripe: usize,
    /// Its credentials there ([`Holder::none`] with `NO_LEASE`).
    holder: Holder,
    /// The engine `shared` is for (0: none; engine ids start at 1).
    shared_engine: u64,
    shared: SharedRoute,
}

impl WriterState {
    /// Nothing remembered yet; `none` is [`Holder::none`] (a constant outside loom).
    const fn new(none: Holder) -> WriterState {
        WriterState {
            ordinal_plus_one: 0,
            leased_stripe: NO_LEASE,
            holder: none,
            shared_engine: 0,
            shared: SharedRoute {
                stripe: 0,
                lane: 0,
                epoch: 0,
            },
        }
    }
}

/// Hands out thread ordinals, which also index the lease sequence table: each is given once.
#[cfg(not(loom))]
static NEXT_ORDINAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
#[cfg(loom)]
loom::lazy_static! {
    static ref NEXT_ORDINAL: crate::sync::AtomicU64 = crate::sync::AtomicU64::new(0);
}

#[cfg(not(loom))]
std::thread_local! {
    static WRITER: Cell<WriterState> = const { Cell::new(WriterState::new(Holder::none())) };
}
#[cfg(loom)]
loom::thread_local! {
    static WRITER: Cell<WriterState> = Cell::new(WriterState::new(Holder::none()));
}

/// Changes this thread's memory (ignored while its thread-locals are torn down: then it
/// remembers nothing, and every call takes the slow path).
fn update(change: impl FnOnce(&mut WriterState)) {
    let _ = WRITER.try_with(|cell| {
        let mut state = cell.get();
        change(&mut state);
        cell.set(state);
    });
}

/// The hot path's question: the stripe of the lease this thread remembers holding (in
/// whichever engine; [`NO_LEASE`] if none), and its credentials there.
#[inline(always)]
pub(crate) fn remembered_lease() -> (usize, Holder) {
    WRITER
        .try_with(|cell| {
            // `Cell::get` copies the struct; the optimizer keeps only the fields read here.
            let state = cell.get();
            (state.leased_stripe, state.holder)
        })
        .unwrap_or_else(|_| (NO_LEASE, Holder::none()))
}

/// Remembers that this thread holds the lease of `stripe` with `holder`'s credentials; this
/// replaces its shared route.
pub(crate) fn remember_lease(stripe: usize, holder: Holder) {
    update(|state| {
        state.leased_stripe = stripe;
        state.holder = holder;
        state.shared_engine = 0;
    });
}

/// Remembers new credentials for the lease this thread holds (the phase moved on).
pub(crate) fn remember_holder(holder: Holder) {
    update(|state| state.holder = holder);
}

/// Remembers that this thread records on `route` in `engine`; this replaces its lease.
pub(crate) fn remember_shared(engine: u64, route: SharedRoute) {
    update(|state| {
        state.leased_stripe = NO_LEASE;
        state.shared_engine = engine;
        state.shared = route;
    });
}

/// The shared route this thread remembers in `engine`, if any.
pub(crate) fn shared_route(engine: u64) -> Option<SharedRoute> {
    WRITER
        .try_with(|cell| {
            let state = cell.get();
            (state.shared_engine == engine).then_some(state.shared)
        })
        .ok()
        .flatten()
}

/// This thread's ordinal (assigned on first use) and lease token, if it is one of the first
/// [`LEASE_THREADS`] to record.
pub(crate) fn thread_identity() -> (u32, Option<u64>) {
    let ordinal = WRITER
        .try_with(|cell| {
            let mut state = cell.get();
            if state.ordinal_plus_one == 0 {
                // Relaxed: a unique number is all we need; nothing is published through it.
                state.ordinal_plus_one =
                    NEXT_ORDINAL.fetch_add(1, crate::sync::Ordering::Relaxed) + 1;
                cell.set(state);
            }
            state.ordinal_plus_one - 1
        })
        // Only while the thread's TLS is torn down: no lease, any shared stripe.
        .unwrap_or(u64::MAX);
    let token = (ordinal < LEASE_THREADS as u64).then_some(ordinal + FIRST_TOKEN);
    (ordinal as u32, token)
}
