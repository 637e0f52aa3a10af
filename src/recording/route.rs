//! What a writer thread remembers between calls: its ordinal, and where its calls go (the
//! lease it holds, or the shared stripe and lane it records on).
//!
//! # The hot memory
//!
//! One thread-local `Cell` of plain `Copy` data with no destructor, laid out for the hot path:
//! a thread that holds a lease finds the stripe's index and its [`Holder`] credentials with no
//! check of its own ([`NO_LEASE`] fails the engine's stripe lookup, which the call makes
//! anyway). The memory does not say which engine the lease is in: the lease word is what a
//! call checks, and a stripe of this engine carries this thread's token only if the thread
//! holds it here. A shared route does name its engine, with the engine's reader epoch.
//!
//! # Ordinals, recycled
//!
//! A thread's ordinal (and its lease token, ordinal + `FIRST_TOKEN`) is the lowest one free
//! in a fixed pool of [`TOKENS`], taken at its first call that needs one. A second
//! thread-local, with a destructor, gives it back when the thread exits: it first makes the
//! hot memory forget the lease (later calls from other destructors on this thread go to a
//! shared stripe), then frees the ordinal with a release. The next thread to start takes the
//! lowest free ordinal, usually that one, and with the token it inherits the exited thread's
//! leases in every engine (see `leased`): a process whose threads come and go keeps recording
//! on leased stripes, and the number of threads it ever ran does not matter. Only threads
//! beyond [`TOKENS`] alive at once go without a token, to shared stripes.
//!
//! Registering the destructor is the C runtime's work: glibc allocates a small node with its
//! own `malloc`, once per thread, not through Rust's global allocator. On a thread started by
//! Rust's `std`, glibc has set up the thread's allocator before the thread's code runs, so
//! the registration makes no system call (`strace` shows none in a thread's first call); a
//! thread started some other way whose first allocation is this one may see glibc map its
//! allocator's arena then.

use std::cell::Cell;

use super::leased::{FIRST_TOKEN, Holder, TOKENS};

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

/// An ordinal for spreading threads over shared stripes, and perhaps a lease token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub(crate) ordinal: u64,
    /// `Some` for an ordinal of the pool: the thread may lease.
    pub(crate) token: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct WriterState {
    identity: Option<Identity>,
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
            identity: None,
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

#[cfg(not(loom))]
std::thread_local! {
    static WRITER: Cell<WriterState> = const { Cell::new(WriterState::new(Holder::none())) };
    static ORDINAL: OrdinalGuard = OrdinalGuard::take();
}
#[cfg(loom)]
loom::thread_local! {
    static WRITER: Cell<WriterState> = Cell::new(WriterState::new(Holder::none()));
    static ORDINAL: OrdinalGuard = OrdinalGuard::take();
}

/// The pool of ordinals: bit `i` of word `i / 64` is set while a thread holds ordinal `i`.
#[cfg(not(loom))]
static POOL: [crate::sync::AtomicU64; TOKENS / 64] =
    [const { crate::sync::AtomicU64::new(0) }; TOKENS / 64];
#[cfg(loom)]
loom::lazy_static! {
    static ref POOL: [crate::sync::AtomicU64; 1] = [crate::sync::AtomicU64::new(0)];
}

/// Per ordinal, how many threads holding it have exited.
#[cfg(not(loom))]
static EXITS: [crate::sync::AtomicU64; TOKENS] = [const { crate::sync::AtomicU64::new(0) }; TOKENS];
#[cfg(loom)]
loom::lazy_static! {
    static ref EXITS: Vec<crate::sync::AtomicU64> =
        (0..TOKENS).map(|_| crate::sync::AtomicU64::new(0)).collect();
}

/// How many threads holding `token` have exited so far, read with a read-modify-write, so
/// that it is the latest count, and with acquire and release (see `LeasedStripe::revoke`).
pub(crate) fn exits_of(token: u64) -> u64 {
    EXITS[(token - FIRST_TOKEN) as usize].fetch_add(0, crate::sync::Ordering::AcqRel)
}

/// Whether the thread that held `token` when `exits` was read has since exited or no thread
/// holds it now: either way, every write made under the token before is visible to the
/// caller, and whoever takes it next sees what the caller did before asking. Both reads are
/// read-modify-writes, so neither can be stale.
pub(crate) fn token_gone_since(token: u64, exits: u64) -> bool {
    let ordinal = (token - FIRST_TOKEN) as usize;
    exits_of(token) != exits
        // AcqRel: as in `exits_of`, on the pool word.
        || POOL[ordinal / 64].fetch_or(0, crate::sync::Ordering::AcqRel) & (1 << (ordinal % 64))
            == 0
}

/// Ordinals for threads beyond the pool: only for spreading them over shared stripes.
static OVERFLOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(TOKENS as u64);

/// A thread's ordinal from the pool, given back when the thread exits.
struct OrdinalGuard {
    identity: Identity,
}

impl OrdinalGuard {
    /// The lowest free ordinal, or one beyond the pool (no token) if none is free.
    fn take() -> OrdinalGuard {
        for (index, word) in POOL.iter().enumerate() {
            // Relaxed: a guess for the CAS, which carries the ordering.
            let mut bits = word.load(crate::sync::Ordering::Relaxed);
            while bits != u64::MAX {
                let bit = (!bits).trailing_zeros();
                // Acquire: the release of the thread that held this ordinal before, so its
                // writes under the token (its leased stripes) happen before ours.
                match word.compare_exchange(
                    bits,
                    bits | (1 << bit),
                    crate::sync::Ordering::Acquire,
                    crate::sync::Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let ordinal = (index * 64) as u64 + u64::from(bit);

                        let token = (ordinal < TOKENS as u64).then_some(ordinal + FIRST_TOKEN);
                        return OrdinalGuard {
                            identity: Identity { ordinal, token },
                        };
                    }
                    Err(now) => bits = now,
                }
            }
        }
        // Relaxed: a distinct number is all we need.
        let ordinal = OVERFLOW.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OrdinalGuard {
            identity: Identity {
                ordinal,
                token: None,
            },
        }
    }
}

#[cfg(not(loom))]
impl Drop for OrdinalGuard {
    fn drop(&mut self) {
        self.release();
    }
}

/// What the thread-exit destructor does, for loom models to call at the end of a thread:
/// loom's thread-locals cannot make atomic operations in their destructors (tokio-rs/loom
/// issue 290), so the models run the same step explicitly.
#[cfg(loom)]
pub fn exit_thread() {
    let _ = ORDINAL.try_with(|guard| {
        if !matches!(
            WRITER.try_with(|cell| cell.get().identity),
            Ok(Some(Identity { token: None, .. }))
        ) {
            guard.release();
        }
    });
}

impl OrdinalGuard {
    /// Gives the ordinal back: once, when its thread exits.
    fn release(&self) {
        // First forget the lease, so that no later call of this thread (from another
        // destructor) writes under the token once it is free; such calls find no identity
        // (this thread-local is gone) and go to a shared stripe.
        update(|state| {
            *state = WriterState {
                identity: Some(Identity {
                    token: None,
                    ..self.identity
                }),
                ..WriterState::new(Holder::none())
            }
        });
        if self.identity.token.is_some() {
            let ordinal = self.identity.ordinal as usize;
            // AcqRel: release every write this thread made under its token to a reader that
            // revoked one of its leases (`token_gone_since`); acquire that reader's revoke, so
            // that whoever takes the ordinal next sees it.
            EXITS[ordinal].fetch_add(1, crate::sync::Ordering::AcqRel);
            // Release: every write this thread made under its token, for the next thread
            // that takes the ordinal (its acquire CAS in `take`).
            POOL[ordinal / 64].fetch_and(!(1 << (ordinal % 64)), crate::sync::Ordering::Release);
        }
    }
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

/// This thread's identity, taking an ordinal from the pool at its first use. While the
/// thread's thread-locals are torn down: the identity it had, without its token, or an
/// ordinal beyond the pool.
pub(crate) fn identity() -> Identity {
    if let Ok(Some(identity)) = WRITER.try_with(|cell| cell.get().identity) {
        return identity;
    }
    let identity = ORDINAL
        .try_with(|guard| guard.identity)
        .unwrap_or_else(|_| Identity {
            ordinal: OVERFLOW.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            token: None,
        });
    update(|state| state.identity = Some(identity));
    identity
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests;
