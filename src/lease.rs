//! Which stripe a thread records on: a small per-thread table of *seats* (one per engine the
//! thread records into), and the claim that fills a seat.
//!
//! A thread's first call on an engine claims a free stripe (a compare-and-swap on the stripe's
//! phase word, see `crate::stripe`) and remembers it with its lease; every later call is one
//! thread-local read and a compare before the stripe's own work. The reader frees stripes
//! whose holder is not inside at snapshot time, so the stripes of threads that exited go back
//! to the pool at the next snapshot, and a live holder that was freed just claims again (one
//! bounced call, about a hundred nanoseconds, at most once per snapshot).
//!
//! A thread that finds no free stripe records on the engine's shared stripe, with
//! read-modify-writes, and looks again whenever the reader has freed a stripe since it last
//! looked. Nothing here allocates or registers a thread-local destructor: the seats are a
//! `const` thread-local of plain words, so a thread's first call is as free of system calls
//! and allocation as every other.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::stripe::{Stripe, lease_of_claim};
use crate::sync::thread_cache;

/// Where a thread records for one engine: two words, read together on every call.
///
/// Only the lease check on the stripe keeps writers apart; the engine tag just saves a bounce.
/// A seat that points at the wrong stripe (a tag shared by two engines, after 2^32 of them)
/// costs one bounced call, never a wrong count: leases are unique process-wide, and the shared
/// stripe takes anyone.
#[derive(Clone, Copy)]
struct Seat {
    /// `engine tag << 32 | stripe index`; tag 0 marks an empty seat.
    key: u64,
    /// On a leased stripe, the lease. On the shared stripe, the engine's release count when
    /// the thread last looked for a free stripe.
    token: u64,
}

const EMPTY_SEAT: Seat = Seat { key: 0, token: 0 };

/// Seats per thread, direct-mapped by engine id: a thread recording into up to this many
/// engines (created one after another) keeps a seat in each.
const SEATS: usize = 4;

thread_cache! {
    static SEATS_OF_THREAD: [Cell<Seat>; SEATS] = [const { Cell::new(EMPTY_SEAT) }; SEATS];
}

thread_cache! {
    /// This thread's ordinal plus one; 0 until it first looks for a stripe.
    static THREAD_ORDINAL: Cell<u64> = Cell::new(0);
}

/// Engine tags: 32 bits, never 0.
static NEXT_ENGINE_TAG: AtomicU32 = AtomicU32::new(1);
/// Claims attempted so far, process-wide: each attempt's lease is made from its number, so
/// no two live claims share a lease (until 2^39 - 1 claims later).
static CLAIMS: AtomicU64 = AtomicU64::new(0);
/// Spreads threads' first claims over the stripes.
static NEXT_THREAD_ORDINAL: AtomicU64 = AtomicU64::new(0);

/// Where to start looking for a free stripe: distinct threads start at distinct stripes.
fn thread_ordinal() -> u64 {
    THREAD_ORDINAL
        .try_with(|ordinal| {
            if ordinal.get() == 0 {
                // Relaxed: any distinct-ish number will do; nothing is published through it.
                ordinal.set(NEXT_THREAD_ORDINAL.fetch_add(1, Ordering::Relaxed) + 1);
            }
            ordinal.get() - 1
        })
        .unwrap_or(0)
}

/// An engine's side of the seating: its tag and its release count.
///
/// The stripes are `0..leasable` plus the shared one at index `leasable`. These counters are
/// hints and unique numbers, not synchronization, so they stay `std` atomics under loom.
pub(crate) struct Seating {
    /// The engine's tag, shifted into place in a seat's key.
    tag: u64,
    leasable: usize,
    /// Stripes the reader has freed so far. Read on every call on the shared stripe: on its
    /// own cache line, written only when a snapshot frees a stripe.
    releases: CachePadded<AtomicU64>,
}

impl Seating {
    /// Seating for `leasable` leasable stripes followed by the shared one.
    pub(crate) fn new(leasable: usize) -> Self {
        // Relaxed: a tag only needs to differ from recent ones.
        let tag = match NEXT_ENGINE_TAG.fetch_add(1, Ordering::Relaxed) {
            0 => NEXT_ENGINE_TAG.fetch_add(1, Ordering::Relaxed),
            tag => tag,
        };
        Seating {
            tag: u64::from(tag) << 32,
            leasable,
            releases: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Makes `write(stripe, token)` succeed on this thread's stripe of `stripes`: `write`
    /// returns false when the stripe refused the token (another thread's lease), and is then
    /// retried on a stripe found by [`record_slow`](Self::record_slow).
    #[inline]
    pub(crate) fn record(&self, stripes: &[Stripe], write: impl Fn(&Stripe, u64) -> bool) {
        let seat = SEATS_OF_THREAD
            .try_with(|seats| seats[self.seat_index()].get())
            .unwrap_or(EMPTY_SEAT);
        if seat.key >> 32 == self.tag >> 32
            && let Some(stripe) = stripes.get((seat.key as u32) as usize)
            // Relaxed: a hint that a stripe may be free; the claim itself synchronizes.
            && (!stripe.is_shared() || seat.token == self.releases.load(Ordering::Relaxed))
            && write(stripe, seat.token)
        {
            return;
        }
        self.record_slow(stripes, seat, write);
    }

    /// A thread's first call, a call after its lease was freed, or a call on the shared stripe
    /// after stripes were freed: claim a free stripe, or take the shared one.
    #[cold]
    #[inline(never)]
    fn record_slow(&self, stripes: &[Stripe], seat: Seat, write: impl Fn(&Stripe, u64) -> bool) {
        // Read before looking, so that a release during the search sends us looking again.
        let releases = self.releases.load(Ordering::Relaxed);
        // The stripe this thread held last, if any: a live holder usually gets it back.
        let seated = (seat.key as u32) as usize;
        let preferred = if seat.key >> 32 == self.tag >> 32 && seated < self.leasable {
            seated
        } else {
            (thread_ordinal() % self.leasable as u64) as usize
        };
        // Relaxed: only uniqueness matters.
        let lease = lease_of_claim(CLAIMS.fetch_add(1, Ordering::Relaxed));
        for offset in 0..self.leasable {
            let index = (preferred + offset) % self.leasable;
            if stripes[index].try_claim(lease) {
                self.sit(index, lease);
                if write(&stripes[index], lease) {
                    return;
                }
                // A snapshot freed it already (nobody was inside): this call goes to the
                // shared stripe; the release count moved, so the next call looks again.
                break;
            }
        }
        let shared = self.leasable;
        self.sit(shared, releases);
        let written = write(&stripes[shared], releases);
        debug_assert!(written, "the shared stripe takes every writer");
    }

    fn sit(&self, stripe: usize, token: u64) {
        // A thread being torn down has no seats: it just takes the slow path every time.
        let _ = SEATS_OF_THREAD.try_with(|seats| {
            seats[self.seat_index()].set(Seat {
                key: self.tag | stripe as u64,
                token,
            })
        });
    }

    /// This engine's seat in every thread's table.
    #[inline]
    fn seat_index(&self) -> usize {
        (self.tag >> 32) as usize % SEATS
    }

    /// Tells threads on the shared stripe that a stripe was freed.
    pub(crate) fn note_release(&self) {
        // Relaxed: a hint; see `record`.
        self.releases.fetch_add(1, Ordering::Relaxed);
    }
}
