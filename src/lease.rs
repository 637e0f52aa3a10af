//! Single-writer leases: how one thread at a time records into a stripe with plain loads and
//! stores (no locked instruction at all), and how the reader still takes a consistent cut.
//!
//! # Why
//!
//! On the shared stripes (see [`crate::stripe`]) every update is a locked read-modify-write.
//! Profiling showed that the first locked instruction of a call is what costs: it drains the
//! store buffer. A call with none at all costs about 2 ns less on the 2-core machine of the
//! README (6.4 → 4.2 ns per call in a probe without any lease check; 6.45 → 5.18 ns in
//! `--bench peers` with this module's protocol). Dropping the locks needs two things: exactly
//! one writer per stripe (a *lease*), and a way for the reader to know that writer is not
//! halfway through a call when it takes its cut, without the writer paying for a fence.
//!
//! # The lease
//!
//! A leasable stripe has a `control` word: its active phase in the top bit and, in the other
//! 63, who may write: [`FREE`], [`CLOSED`] (the reader is switching holders), or the holder's
//! token (its thread ordinal + [`FIRST_TOKEN`]). A thread takes a `FREE` stripe by CAS and
//! remembers it in its thread-local state; from then on it writes that stripe with plain
//! loads and stores. At each snapshot the reader switches the stripe's phase and looks at the
//! holder's sequence word: if it has not moved since the last snapshot, the holder made no
//! call for a whole period (it exited, or went idle), and the reader takes the lease back:
//! `CLOSED`, wait for the holder's last call, `FREE`. A lease held by a thread that exited
//! thus lasts two snapshot periods at most, and an active holder never loses its lease (so
//! it never falls back to a shared stripe, whose drain would cost the reader a scan). Threads
//! without a lease record on the engine's shared stripes, as before. Because the sequence word
//! belongs to the thread, a thread that stops recording into one engine but goes on in
//! another keeps its lease in the first until it stops altogether: a missed reuse, never an
//! error.
//!
//! # The writer's call and the reader's cut (an asymmetric Dekker handshake)
//!
//! Each leasing thread owns one word of [`SEQUENCES`]: odd while it is inside a call.
//!
//! - writer: `seq = odd` (store); `light_barrier()`; load `control`; if it is exactly the
//!   word the thread remembers (its token, in the phase it last saw: see [`Holder`]), write
//!   that phase's data with plain loads and stores; `seq = even` (store). If not, `seq =
//!   even` and take the slow path, which begins the call again if the thread still holds the
//!   lease in a new phase (and remembers that phase), and else goes to a shared stripe.
//!   Because the phase is known before `control` is loaded, a completion computes and touches
//!   its count's address before the odd store; the decision still rests on the load after
//!   the barrier.
//! - reader: CAS `control` to (the other phase, the same holder or `CLOSED`);
//!   `heavy_barrier()`; load the old holder's `seq`; if odd, wait until it changes; if the
//!   lease was taken back, store (new phase, `FREE`); drain the old phase.
//!
//! `light_barrier` is a compiler fence and `heavy_barrier` is `membarrier(2)`
//! (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`, through the `membarrier2` crate), which runs a full
//! memory barrier on every CPU running a thread of this process. Together they act as a
//! `SeqCst` fence on both sides (that is how the loom models check them): if the writer's
//! load of `control` did not see the reader's swap, the writer's barrier precedes the
//! reader's, so everything the writer stored before its barrier (its odd `seq`, and every
//! earlier call's data) is visible to the reader's loads after its barrier. So the reader
//! either sees the writer inside (odd) and waits for the call to end, or the call loaded the
//! new `control` and writes nothing old. Both `seq` stores are releases and the reader's loads
//! acquires: the value that ends its wait carries the call's data writes with it (a later odd
//! value carries them too, being a release later in the writer's program order).
//!
//! Why a word per *thread*, not per stripe: the writer stores `seq` before it learns whether
//! it still holds the lease. A thread whose lease was taken back while it slept does that one
//! store late, maybe while a new holder is recording on the same stripe; with a word per
//! stripe it would clobber the new holder's odd value and the reader could drain under a
//! running call. Its own word it may write whenever it likes.
//!
//! Handing over: only the reader moves a stripe out of `CLOSED`, and only after the old
//! holder's last call ended; the old holder's plain stores (its release on `seq`, the
//! reader's acquire, the reader's release store of `FREE`, the new holder's acquire CAS)
//! happen before the new holder's (later flips are read-modify-writes, so a claim that reads
//! their value still synchronizes with that `FREE` store). The started and error counters of a
//! leased stripe are cumulative and written only by its successive holders, so that chain is
//! all they need. The reader's zeroing of a phase reaches the next holder the same way, or
//! through the release CAS of the next flip and the writer's acquire load of `control`. The
//! reader reopens before it drains: the new holder writes the other phase.
//!
//! # Costs and limits
//!
//! - A leased call: two plain stores of the thread's `seq`, one load of `control`, and plain
//!   increments (callgrind counts 18 instructions for a start on x86-64 and 65 for a
//!   completion, the HDR slot's computation included). A completion also reads its histogram
//!   count just *before* its call, so that the count's cache miss, where a preempted thread is
//!   most often caught, falls outside the call and the reader need not wait for it. After
//!   each snapshot, each holder's first call takes the slow path once to learn the new
//!   phase. Taking a lease: one CAS, on the first call and again only after the lease was
//!   taken back.
//! - A snapshot with leases: one `membarrier` system call (about 0.3 µs here), and a wait
//!   only for holders inside a call at that moment. The reader's CAS on `control` retries
//!   only if a thread claimed the lease in between. Without `membarrier` (not Linux, or an
//!   old kernel), the `membarrier2` crate falls back to a slower process-wide barrier.
//! - Only the first [`LEASE_THREADS`] threads of the process to record can ever lease (their
//!   words are a fixed 2 MiB static table, touched 128 bytes per leasing thread). Later
//!   threads always record on shared stripes: correct, just with locked instructions.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering, light_barrier};

/// `control`'s top bit: the active phase of a leasable stripe.
pub(crate) const PHASE_BIT: u64 = 1 << 63;
/// `control`'s low 63 bits: who may write.
pub(crate) const HOLDER_MASK: u64 = PHASE_BIT - 1;
/// No holder: the next thread to CAS its token in gets the stripe.
pub(crate) const FREE: u64 = 0;
/// The reader is taking the lease back; nobody may claim it until the reader reopens it.
pub(crate) const CLOSED: u64 = 1;
/// Tokens are thread ordinals plus this.
pub(crate) const FIRST_TOKEN: u64 = 2;

/// How many threads (the first to record in this process) can ever hold a lease.
#[cfg(not(loom))]
pub(crate) const LEASE_THREADS: usize = 16_384;
#[cfg(loom)]
pub(crate) const LEASE_THREADS: usize = 4;

/// Per leasing thread, its call sequence: odd while inside a leased call. Each word is written
/// by one thread only, so plain stores suffice; padded so that threads never share a line.
#[cfg(not(loom))]
static SEQUENCES: [CachePadded<AtomicU64>; LEASE_THREADS] =
    [const { CachePadded::new(AtomicU64::new(0)) }; LEASE_THREADS];

#[cfg(loom)]
loom::lazy_static! {
    static ref SEQUENCES: Vec<CachePadded<AtomicU64>> =
        (0..LEASE_THREADS).map(|_| CachePadded::new(AtomicU64::new(0))).collect();
}

/// The sequence word of the thread holding `token`.
pub(crate) fn sequence_of(token: u64) -> &'static AtomicU64 {
    &SEQUENCES[(token - FIRST_TOKEN) as usize]
}

/// The phase a `control` word activates.
#[inline(always)]
pub(crate) fn phase_of(control: u64) -> usize {
    (control >> 63) as usize
}

/// A leasing thread's credentials, as its thread-local memory keeps them: the lease word as
/// the thread last saw it while holding the lease (its token, and the phase then active), and
/// its sequence word (found once, so that a call need not index the table).
///
/// A call begins only if the lease word is exactly `control` ([`Lease::enter`]): one
/// comparison, and the phase, hence every address the call writes, is known before the lease
/// word is even loaded. After each snapshot flips the phase, the holder's next call finds the
/// word changed and takes the slow path once, which learns the new word
/// ([`Lease::enter_relearning`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holder {
    control: u64,
    sequence: &'static AtomicU64,
}

impl Holder {
    /// The credentials of the thread whose token is in `control`'s holder bits, expecting
    /// that lease word.
    fn expecting(control: u64) -> Self {
        Holder {
            control,
            sequence: sequence_of(control & HOLDER_MASK),
        }
    }

    /// Stands where a thread remembers no lease; never enters a call (its `control` is
    /// `FREE`, which names no holder, and the memory pairs it with no stripe).
    #[cfg(not(loom))]
    pub(crate) const fn none() -> Holder {
        /// Never written: no call begins with `none`.
        static NO_SEQUENCE: AtomicU64 = AtomicU64::new(0);
        Holder {
            control: FREE,
            sequence: &NO_SEQUENCE,
        }
    }

    /// See the other `none`; under loom the table is built at first use.
    #[cfg(loom)]
    pub(crate) fn none() -> Holder {
        Holder {
            control: FREE,
            sequence: &SEQUENCES[0],
        }
    }

    /// The phase this holder expects to write.
    #[inline(always)]
    pub(crate) fn phase(&self) -> usize {
        phase_of(self.control)
    }

    fn token(&self) -> u64 {
        self.control & HOLDER_MASK
    }
}

/// The `control` word and what the reader needs to take a lease back.
pub(crate) struct Lease {
    control: AtomicU64,
    /// The holder's sequence word at the last close: if it has not moved by the next one,
    /// the holder made no call for a whole snapshot period and loses the lease. Only the
    /// reader touches it, under its lock.
    holder_sequence_at_close: AtomicU64,
}

/// What [`Lease::close`] found: the phase to drain and the holder to wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closed {
    pub(crate) old_phase: usize,
    /// The holder's token, or `FREE`: nobody held it, so nobody wrote the old phase.
    holder: u64,
    /// Whether the holder keeps the lease (it made a call since the last close).
    kept: bool,
    /// The holder's sequence at the reader's first look after its barrier.
    seen: Option<u64>,
}

impl Closed {
    /// Whether anyone may have written the old phase.
    pub(crate) fn was_held(&self) -> bool {
        self.holder >= FIRST_TOKEN
    }

    /// Whether the lease was taken back and must be reopened after the wait.
    pub(crate) fn was_taken_back(&self) -> bool {
        self.was_held() && !self.kept
    }
}

impl Lease {
    pub(crate) fn new() -> Self {
        Lease {
            control: AtomicU64::new(FREE),
            holder_sequence_at_close: AtomicU64::new(0),
        }
    }

    /// Tries to make `token` the holder. `Ok(Some(holder))`: it holds the lease (perhaps
    /// already did), with these credentials; `Ok(None)`: another thread does; `Err(())`: the
    /// reader is switching holders.
    pub(crate) fn try_claim(&self, token: u64) -> Result<Option<Holder>, ()> {
        // Relaxed: only a hint for the CAS below, which carries the ordering.
        let control = self.control.load(Ordering::Relaxed);
        match control & HOLDER_MASK {
            holder if holder == token => Ok(Some(Holder::expecting(control))),
            CLOSED => Err(()),
            FREE => {
                let claimed = (control & PHASE_BIT) | token;
                Ok(self
                    .control
                    // Acquire: the reader's release store of FREE carries the old holder's
                    // counters and the zeroed phase to us (module docs, "Handing over").
                    .compare_exchange(control, claimed, Ordering::Acquire, Ordering::Relaxed)
                    .ok()
                    .map(|_| Holder::expecting(claimed)))
            }
            _ => Ok(None),
        }
    }

    /// Starts a call by `holder` if the lease word is still the one it expects: it holds the
    /// lease, in the phase it remembers (see [`Holder`]).
    #[inline(always)]
    pub(crate) fn enter(&self, holder: Holder) -> Option<LeasedCall> {
        self.enter_if(holder, |control| control == holder.control)
    }

    /// Starts a call by `holder` if it still holds the lease, in whichever phase; returns the
    /// credentials to remember for the next calls, which expect this phase.
    pub(crate) fn enter_relearning(&self, holder: Holder) -> Option<(LeasedCall, Holder)> {
        let call = self.enter_if(holder, |control| control & HOLDER_MASK == holder.token())?;
        let control = call.control;
        Some((call, Holder { control, ..holder }))
    }

    /// The writer's side of the handshake: `holder`'s sequence goes odd, then `control` is
    /// read; the call begins if `accept` likes it.
    #[inline(always)]
    fn enter_if(&self, holder: Holder, accept: impl Fn(u64) -> bool) -> Option<LeasedCall> {
        let sequence = holder.sequence;
        // Release: a reader that waits past this value sees all our earlier calls' writes.
        step(sequence);
        // The writer's half of the Dekker handshake: our odd store is ordered before the load
        // below, against the reader's heavy barrier (module docs).
        light_barrier();
        // Acquire: the reader's zeroing of the phase we are about to write (released by its
        // swap or by its store of FREE).
        let control = self.control.load(Ordering::Acquire);
        if accept(control) {
            Some(LeasedCall {
                phase: phase_of(control),
                control,
                sequence,
            })
        } else {
            // As at the end of a call; we wrote nothing in between.
            step(sequence);
            None
        }
    }

    /// The reader's first step: switches the phase, and takes the lease back from a holder
    /// that made no call since the last close (it exited, or went idle). A holder that did
    /// keeps it and goes on in the new phase. Callers serialize on the engine's reader lock,
    /// then issue one `heavy_barrier` for all stripes before
    /// [`holder_is_out`](Self::holder_is_out).
    pub(crate) fn close(&self) -> Closed {
        loop {
            // Relaxed: a guess for the CAS below, which carries the ordering.
            let current = self.control.load(Ordering::Relaxed);
            let holder = current & HOLDER_MASK;
            let new_phase = (current & PHASE_BIT) ^ PHASE_BIT;
            // Relaxed: the sequence is only a sign of life here, not a synchronization.
            let sequence =
                (holder >= FIRST_TOKEN).then(|| sequence_of(holder).load(Ordering::Relaxed));
            let kept = sequence
                .is_some_and(|now| now != self.holder_sequence_at_close.load(Ordering::Relaxed));
            let next = match (holder >= FIRST_TOKEN, kept) {
                (false, _) => new_phase | FREE,
                (true, true) => new_phase | holder,
                (true, false) => new_phase | CLOSED,
            };
            // AcqRel: acquire a claim CAS that came first (and what its thread did before);
            // release our last zeroing of the phase we now activate. Fails only when a thread
            // claimed the FREE lease meanwhile: then decide again.
            if self
                .control
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                if let Some(now) = sequence {
                    self.holder_sequence_at_close.store(now, Ordering::Relaxed);
                }
                return Closed {
                    old_phase: phase_of(current),
                    holder,
                    kept,
                    seen: None,
                };
            }
        }
    }

    /// Whether the old holder is no longer inside a call that writes the old phase; if so,
    /// the old phase's data is complete and still. Call after `heavy_barrier`; the first call
    /// notes the holder's sequence, later ones look for a change.
    pub(crate) fn holder_is_out(&self, closed: &mut Closed) -> bool {
        if !closed.was_held() {
            return true;
        }
        // Acquire: synchronizes with the holder's release stores (see `enter`).
        let now = sequence_of(closed.holder).load(Ordering::Acquire);
        let seen = *closed.seen.get_or_insert(now);
        seen.is_multiple_of(2) || now != seen
    }

    /// The holder bits: `FREE`, `CLOSED` or a token (for tests).
    #[cfg(test)]
    pub(crate) fn holder(&self) -> u64 {
        self.control.load(Ordering::Relaxed) & HOLDER_MASK
    }

    /// The phase a holder writes now (for tests).
    #[cfg(test)]
    pub(crate) fn active_phase(&self) -> usize {
        phase_of(self.control.load(Ordering::Relaxed))
    }

    /// The reader's last step: anyone may claim the lease again.
    pub(crate) fn reopen(&self) {
        // Relaxed load: only the reader changes a CLOSED control word.
        let active = self.control.load(Ordering::Relaxed) & PHASE_BIT;
        // Release: the old holder's writes (acquired through its sequence word) and our
        // zeroing of the old phase, for whoever claims next.
        self.control.store(active | FREE, Ordering::Release);
    }
}

/// A call in progress on a leased stripe; ends (the sequence goes even) when dropped, so
/// that even an unexpected unwind cannot leave a reader waiting forever.
pub(crate) struct LeasedCall {
    /// The phase whose data this call writes.
    pub(crate) phase: usize,
    /// The lease word the call began under.
    control: u64,
    sequence: &'static AtomicU64,
}

impl Drop for LeasedCall {
    #[inline]
    fn drop(&mut self) {
        // Hands the call's plain stores to the reader that waits on this word.
        step(self.sequence);
    }
}

/// Moves this thread's `sequence` word on by one (into or out of a call), with a plain load
/// and store: only this thread writes it. Reading it again rather than carrying the value
/// through the call lets x86-64 do it in one instruction (`inc` on memory, not locked).
#[inline(always)]
fn step(sequence: &AtomicU64) {
    // Relaxed load: only this thread writes the word. Release store: a reader that acquires
    // this value (or a later one) sees every write this thread made before it.
    sequence.store(sequence.load(Ordering::Relaxed) + 1, Ordering::Release);
}
