//! A leased stripe: one thread at a time (the lease's *holder*) records into it with plain
//! loads and stores, no locked instruction at all, and the reader still takes a consistent
//! cut.
//!
//! # Why
//!
//! On a shared stripe every update is a locked read-modify-write, and the first locked
//! instruction of a call is what costs: it drains the store buffer. Dropping the locks needs
//! two things: exactly one writer per stripe (the lease), and a way for the reader to know
//! that writer is not halfway through a call when it takes its cut, without the writer paying
//! for a fence.
//!
//! # The lease
//!
//! A leased stripe has a `control` word: its active phase in the top bit ([`Phase::BIT`]) and,
//! in the other 63, who may write: [`FREE`], [`CLOSED`] (the reader is taking the lease back),
//! or the holder's *token* (its thread ordinal + [`FIRST_TOKEN`]; see `route`). A thread takes
//! a `FREE` stripe by CAS and remembers it; from then on it writes that stripe with plain
//! loads and stores, until:
//!
//! - **its thread exits**: the thread's ordinal, hence its token, goes back to the pool (see
//!   `route`), and the next thread to start takes that token over *with its leases*: a token
//!   names a writer, and a thread that inherits it finds its stripe already claimed for it.
//!   Its first call's claim acquires the exited thread's release of the ordinal, so the old
//!   holder's plain stores happen before the new holder's.
//! - **it begins no call for a whole snapshot period**: at each snapshot the reader looks at
//!   the holder's sequence word; if it has not moved since the reader last saw it, after the
//!   previous snapshot's barrier, the reader takes the lease back: `CLOSED`, wait for the
//!   holder's last call, `FREE`. An active holder never loses its lease; a holder whose only
//!   sign of life is the end of a call the last snapshot waited for does (see
//!   [`LeasedStripe::is_still`] for why that matters). The sequence word is the token's, not
//!   the engine's: a thread that stops recording into one engine but goes on in another
//!   keeps its lease in the first until it stops altogether (a missed reuse, never an error).
//!
//! # The writer's call and the reader's cut (an asymmetric Dekker handshake)
//!
//! Each token owns one word of [`SEQUENCES`]: odd while its thread is inside a call.
//!
//! - writer ([`LeasedStripe::enter`]): `seq = odd` (store); `barrier::light`; load `control`;
//!   if it is exactly the word the thread remembers (its token, in the phase it last saw: see
//!   [`Holder`]), write that phase's data with plain loads and stores; `seq = even` (store,
//!   when the [`LeasedCall`] drops). If not, `seq = even` and take the slow path, which begins
//!   the call again if the thread still holds the lease in a new phase, and else goes to a
//!   shared stripe. Because the phase is known before `control` is loaded, a completion finds
//!   and reads its count before the odd store ([`LeasedTarget`]); the decision still rests on
//!   the load after the barrier.
//! - reader ([`LeasedStripe::close`], [`LeasedStripe::is_still`], [`LeasedStripe::drain`]):
//!   CAS `control` to (the other phase, the same holder or `CLOSED`); `barrier::heavy`; load
//!   the old holder's `seq`; if odd, wait until it changes (for a bounded time: past it the
//!   stripe is carried, see `reader`); if the lease was taken back, store (new phase, `FREE`,
//!   keeping the fenced bit and the switch count); drain the old phase.
//!
//! The light barrier is a compiler fence and the heavy one `membarrier(2)`
//! (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`), which runs a full memory barrier on every CPU running
//! a thread of this process; in a *fenced* engine (the [`FENCED`] bit of every lease word, see
//! `barrier`) both are `fence(SeqCst)`, and the writer knows which from the lease word it
//! remembers, so writer and reader always agree. Either way they act as a `SeqCst` fence on
//! both sides (that is how the loom models check them): if the writer's load of `control` did
//! not see the reader's
//! CAS, the writer's barrier precedes the reader's, so everything the writer stored before its
//! barrier (its odd `seq`, and every earlier call's data) is visible to the reader's loads
//! after its barrier. So the reader either sees the writer inside (odd) and waits for the call
//! to end, or the call loaded the new `control` and writes nothing old. Both `seq` stores are
//! releases and the reader's loads acquires: the value that ends its wait carries the call's
//! data writes with it.
//!
//! A call made while its thread is already inside one (from a signal handler, or a hook that
//! runs inside a record call) finds `seq` odd: its store leaves the word as it was, and it
//! begins nothing; its caller records on a shared stripe, whose read-modify-writes nest
//! safely. If a handler interrupts a call between its load of `seq` and its store, the
//! handler's whole call happens in between and the interrupted store then moves `seq` back by
//! one; the reader can be fooled by that repeated value only into waiting, or into deciding
//! from a value earlier in `seq`'s modification order than the interrupted call's odd store,
//! after which, by the handshake above, that call sees the reader's new lease word.
//!
//! When a heavy barrier fails, the reader cannot know what an unfenced writer did; it makes the
//! engine fenced and revokes each held lease, then waits for its holder's acknowledgment (see
//! [`LeasedStripe::revoke`]).
//!
//! Why a word per *token*, not per stripe: the writer stores `seq` before it learns whether it
//! still holds the lease. A thread whose lease was taken back while it slept does that one
//! store late, maybe while a new holder is recording on the same stripe; with a word per
//! stripe it would clobber the new holder's odd value. Its own word it may write whenever it
//! likes.
//!
//! Handing over by the reader: only the reader moves a stripe out of `CLOSED`, and only after
//! the old holder's last call ended; the old holder's plain stores (its release on `seq`, the
//! reader's acquire, the reader's release store of `FREE`, the new holder's acquire CAS) happen
//! before the new holder's (later flips are read-modify-writes, so a claim that reads their
//! value still synchronizes with that `FREE` store). The reader reopens before it drains: the
//! new holder writes the other phase.
//!
//! # Costs
//!
//! A leased call: two plain stores of the thread's `seq`, one load of `control`, and plain
//! increments of the data. A completion whose count was zero in this phase also sets its
//! block's bit (see `counts`), out of line. After each snapshot, each holder's first call
//! takes the slow path once to learn the new phase. Taking a lease: one CAS, on a thread's
//! first call and again only after the lease was taken back. A snapshot with leases held: one
//! `membarrier` system call, and a wait only for holders inside a call at that moment. In a
//! fenced engine, each call also pays a `fence(SeqCst)` and a snapshot no system call.

use crossbeam_utils::CachePadded;

use super::counts::{Drained, HistogramCounts, Phase, Tallies, drain_phase};
use crate::barrier;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `control`'s bit 62: the engine is fenced (see `barrier`), so writers fence for real. Set
/// at construction, or for good by [`LeasedStripe::revoke`]; every later word keeps it.
const FENCED: u64 = 1 << 62;
/// `control`'s low 24 bits: who may write (tokens stay below 2^24).
const HOLDER_MASK: u64 = (1 << 24) - 1;
/// `control`'s bits 24 to 61: how many times the reader has switched the word, wrapping. A
/// holder's remembered word names the switch it was learned after, so that a call that
/// looked at its count before a signal handler's call, on the same thread, relearned the
/// phase and two switches brought the same phase back, still finds the word changed (see
/// [`LeasedCall::complete`]).
const SWITCHES_MASK: u64 = (FENCED - 1) & !HOLDER_MASK;
/// One switch in [`SWITCHES_MASK`].
const ONE_SWITCH: u64 = HOLDER_MASK + 1;

const _: () = assert!(TOKENS as u64 + FIRST_TOKEN <= HOLDER_MASK);

/// The token a revoked lease word waits for an acknowledgment from (see
/// [`LeasedStripe::revoke`]): a closed, fenced word carries it where the switch count is. (A
/// closed fenced word that a plain close wrote carries a count there; a thread whose token
/// equals it acknowledges to no one.)
fn awaited_by(word: u64) -> Option<u64> {
    (word & FENCED != 0 && word & HOLDER_MASK == CLOSED)
        .then_some((word & SWITCHES_MASK) / ONE_SWITCH)
}

/// `word` with its switch count moved on by one, and its holder bits cleared.
fn switched(word: u64) -> u64 {
    (word & !SWITCHES_MASK & !HOLDER_MASK) | (word.wrapping_add(ONE_SWITCH) & SWITCHES_MASK)
}
/// No holder: the next thread to CAS its token in gets the stripe.
pub(crate) const FREE: u64 = 0;
/// The reader is taking the lease back; nobody may claim it until the reader reopens it.
pub(crate) const CLOSED: u64 = 1;
/// Tokens are thread ordinals plus this.
pub(crate) const FIRST_TOKEN: u64 = 2;

/// How many threads can hold tokens at once; threads beyond them record on shared stripes.
#[cfg(not(loom))]
pub(crate) const TOKENS: usize = 16_384;
#[cfg(loom)]
pub(crate) const TOKENS: usize = 4;

/// Per token, its call sequence: odd while inside a leased call. Each word is written by the
/// thread holding the token only, so plain stores suffice; padded so that threads never
/// share a line. A static of 2 MiB, made resident 128 bytes per token used.
#[cfg(not(loom))]
static SEQUENCES: [CachePadded<AtomicU64>; TOKENS] =
    [const { CachePadded::new(AtomicU64::new(0)) }; TOKENS];

#[cfg(loom)]
loom::lazy_static! {
    static ref SEQUENCES: Vec<CachePadded<AtomicU64>> =
        (0..TOKENS).map(|_| CachePadded::new(AtomicU64::new(0))).collect();
}

/// The sequence word of `token`.
fn sequence_of(token: u64) -> &'static AtomicU64 {
    &SEQUENCES[(token - FIRST_TOKEN) as usize]
}

/// A leasing thread's credentials, as its memory keeps them: the lease word as the thread last
/// saw it while holding the lease (its token, and the phase then active), and its sequence
/// word (found once, so that a call need not index the table).
///
/// A call begins only if the lease word is exactly `control` ([`LeasedStripe::enter`]): one
/// comparison, and the phase, hence every address the call writes, is known before the lease
/// word is even loaded. After each snapshot flips the phase, the holder's next call finds the
/// word changed and takes the slow path once, which learns the new word
/// ([`LeasedStripe::enter_relearning`]).
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
    pub(crate) fn phase(&self) -> Phase {
        Phase::of_word(self.control)
    }

    /// Whether the engine was fenced when this holder last read its lease word.
    #[inline(always)]
    fn fenced(&self) -> bool {
        self.control & FENCED != 0
    }

    fn token(&self) -> u64 {
        self.control & HOLDER_MASK
    }
}

/// A stripe one thread at a time records on, with plain loads and stores.
///
/// `repr(C)`, tallies first: a completion's cell is then at the stripe's address plus an
/// offset computed from the label alone, with no constant to add on the hot path.
#[repr(C)]
pub(crate) struct LeasedStripe {
    tallies: Tallies,
    /// 32-bit counts: half the memory of a shared stripe's. A holder that finds a count full
    /// gives its lease up and records on a shared stripe instead, so a count never wraps.
    counts: [HistogramCounts<AtomicU32>; 2],
    control: CachePadded<AtomicU64>,
    /// The holder's sequence word as the reader last saw it after its barrier (see
    /// [`is_still`](Self::is_still)): if it has not moved by the next close, the holder began
    /// no call since, and loses the lease. Only the reader touches it, under its lock.
    holder_sequence_at_close: AtomicU64,
    /// The token of a writer that found this lease word fenced while it expected it not to
    /// be: after [`revoke`](Self::revoke), the holder's proof that it will never again write
    /// here under the old word (see there).
    acknowledged: AtomicU64,
}

/// What [`LeasedStripe::close`] found: the phase to drain and the holder to wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closed {
    old: Phase,
    /// The holder's token, or `FREE`: nobody held it, so nobody wrote the old phase.
    holder: u64,
    /// Whether the holder keeps the lease (it made a call since the last close).
    kept: bool,
    /// The holder's sequence at the reader's first look after its barrier.
    seen: Option<u64>,
    /// After [`LeasedStripe::revoke`]: the token whose acknowledgment ends the wait, instead of
    /// the sequence.
    awaiting: Option<u64>,
    /// Exits of threads holding that token, counted right before the revoke.
    exits_at_revoke: u64,
    /// The switch count the lease word resumes with when reopened after a revoke (the revoked
    /// word carries the awaited token in its place).
    switches_after_revoke: u64,
}

impl Closed {
    /// Whether anyone may have written the old phase (or, once revoked, either phase).
    pub(crate) fn was_held(&self) -> bool {
        self.holder >= FIRST_TOKEN || self.awaiting.is_some()
    }

    /// Whether the lease was revoked after a failed barrier (see [`LeasedStripe::revoke`]).
    pub(crate) fn is_revoked(&self) -> bool {
        self.awaiting.is_some()
    }

    /// Whether the reader has yet to take its first look after a barrier: the barrier of this
    /// close has not been made (or failed).
    pub(crate) fn needs_barrier(&self) -> bool {
        self.holder >= FIRST_TOKEN && self.seen.is_none() && self.awaiting.is_none()
    }
}

/// A call in progress by the holder: the only way to write a leased stripe. Ends (the
/// sequence goes even) when dropped, so that even an unexpected unwind cannot leave a reader
/// waiting forever.
pub(crate) struct LeasedCall<'a> {
    stripe: &'a LeasedStripe,
    /// The phase whose data this call writes.
    phase: Phase,
    /// The lease word the call began under.
    control: u64,
    sequence: &'static AtomicU64,
}

/// Where one completion goes on a leased stripe, in the phase its holder expects: its count
/// and its label's cell. Found, and its count read, before the call begins, so that the
/// count's cache miss falls outside the call (a thread preempted inside a call makes the
/// reader wait for it, and that miss is where one mostly is).
pub(crate) struct LeasedTarget<'a> {
    phase: Phase,
    count: &'a AtomicU32,
    cell: &'a super::counts::CompletionCell,
}

impl LeasedTarget<'_> {
    /// Whether the count is neither zero nor full, so [`LeasedCall::complete`] may take it:
    /// one comparison. A zero count needs its block marked and a full one a shared stripe;
    /// both go to [`LeasedCall::complete_checked`], out of line.
    #[inline(always)]
    pub(crate) fn is_usual(&self) -> bool {
        // Relaxed: the holder is the only writer of the count.
        self.count.load(Ordering::Relaxed).wrapping_sub(1) < u32::MAX - 1
    }
}

/// A completion [`LeasedCall::complete_checked`] did not record: its count is full.
pub(crate) struct CountFull;

impl LeasedStripe {
    /// A stripe nobody holds; `fenced`: its engine's writers must fence (see `barrier`).
    pub(crate) fn new(slots_per_histogram: usize, fenced: bool) -> Self {
        LeasedStripe {
            control: CachePadded::new(AtomicU64::new(if fenced { FENCED } else { 0 } | FREE)),
            holder_sequence_at_close: AtomicU64::new(0),
            acknowledged: AtomicU64::new(FREE),
            tallies: Tallies::new(),
            counts: [
                HistogramCounts::new(slots_per_histogram),
                HistogramCounts::new(slots_per_histogram),
            ],
        }
    }

    /// Bytes one leased stripe reserves.
    pub(crate) fn reserved_bytes(slots_per_histogram: usize) -> usize {
        std::mem::size_of::<Self>()
            + 2 * HistogramCounts::<AtomicU32>::reserved_bytes(slots_per_histogram)
    }

    /// Whom the lease names: `Ok(true)` this `token` (it may have inherited the lease), `Ok(false)`
    /// another thread or nobody, `Err(())` the reader is taking it back. A look, no claim.
    pub(crate) fn is_held_by(&self, token: u64) -> Result<bool, ()> {
        // Relaxed: a look; `try_claim` carries the ordering.
        match self.control.load(Ordering::Relaxed) & HOLDER_MASK {
            CLOSED => Err(()),
            holder => Ok(holder == token),
        }
    }

    /// Tries to make `token` the holder. `Ok(Some(holder))`: it holds the lease (perhaps
    /// already did), with these credentials; `Ok(None)`: another thread does; `Err(())`: the
    /// reader is switching holders.
    pub(crate) fn try_claim(&self, token: u64) -> Result<Option<Holder>, ()> {
        // Acquire: a token inherited from an exited thread was acquired with its ordinal,
        // which the old holder released after its last call (`route`); this load adds nothing
        // to that, but costs nothing on x86 and keeps the case of our own token simple.
        let control = self.control.load(Ordering::Acquire);
        match control & HOLDER_MASK {
            holder if holder == token => Ok(Some(Holder::expecting(control))),
            CLOSED => Err(()),
            FREE => {
                let claimed = (control & !HOLDER_MASK) | token;
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

    /// Where a completion of `(label, slot)` goes in `phase`: found before the holder's call
    /// begins, written inside it.
    #[inline(always)]
    pub(crate) fn target(
        &self,
        phase: Phase,
        label: usize,
        slot: usize,
    ) -> Option<LeasedTarget<'_>> {
        Some(LeasedTarget {
            phase,
            count: self.counts[phase.index()].get(label, slot)?,
            cell: self.tallies.cell(phase, label),
        })
    }

    /// Starts a call by `holder` if the lease word is still the one it expects: it holds the
    /// lease, in the phase it remembers (see [`Holder`]).
    #[inline(always)]
    pub(crate) fn enter(&self, holder: Holder) -> Option<LeasedCall<'_>> {
        self.enter_if(holder, |control| control == holder.control)
            .ok()
    }

    /// Starts a call by `holder` if it still holds the lease, in whichever phase; returns the
    /// credentials to remember for the next calls, which expect this phase.
    ///
    /// Out of the hot path, it also acknowledges a revoked lease (see
    /// [`revoke`](Self::revoke)): every call the hot path refuses comes here next.
    pub(crate) fn enter_relearning(&self, holder: Holder) -> Option<(LeasedCall<'_>, Holder)> {
        match self.enter_if(holder, |control| control & HOLDER_MASK == holder.token()) {
            Ok(call) => {
                let control = call.control;
                Some((call, Holder { control, ..holder }))
            }
            Err(seen) => {
                if !holder.fenced() && awaited_by(seen) == Some(holder.token()) {
                    self.acknowledge(holder.token());
                }
                None
            }
        }
    }

    /// The writer's side of the handshake: `holder`'s sequence goes odd, then `control` is
    /// read; the call begins if `accept` likes it. If not, the lease word read (`FREE` if
    /// none was).
    ///
    /// A call made while this thread is inside another (a signal handler, a hook run from
    /// within a record call) finds its sequence odd and begins nothing: the caller records
    /// it on a shared stripe, whose atomic read-modify-writes nest safely.
    #[inline(always)]
    fn enter_if(
        &self,
        holder: Holder,
        accept: impl Fn(u64) -> bool,
    ) -> Result<LeasedCall<'_>, u64> {
        let sequence = holder.sequence;
        // Relaxed: only this thread writes the word.
        let before = sequence.load(Ordering::Relaxed);
        // Release: a reader that waits past this value sees all our earlier calls' writes.
        // Odd already: this thread is inside a call, which this one interrupted; the store
        // leaves the word as it was, and this call begins nothing.
        sequence.store(before | 1, Ordering::Release);
        // The writer's half of the Dekker handshake: our odd store is ordered before the load
        // below, against the reader's heavy barrier (module docs).
        barrier::light(holder.fenced());
        // Acquire: the reader's zeroing of the phase we are about to write (released by its
        // CAS or by its store of FREE).
        let control = self.control.load(Ordering::Acquire);
        if before & 1 != 0 {
            return Err(FREE);
        }
        if accept(control) {
            Ok(LeasedCall {
                stripe: self,
                phase: Phase::of_word(control),
                control,
                sequence,
            })
        } else {
            // As at the end of a call; we wrote nothing in between.
            step(sequence);
            Err(control)
        }
    }

    /// On the slow path that looks for a lease: if the reader revoked this one (it is closed
    /// and fenced), tells it that `token` has seen that, as [`enter_relearning`] does. The
    /// thread may be the holder the reader waits for, with its memory pointing elsewhere.
    ///
    /// [`enter_relearning`]: Self::enter_relearning
    pub(crate) fn acknowledge_if_revoked(&self, token: u64) {
        // Acquire: as in `try_claim`; the acknowledgment's release then follows this load.
        let control = self.control.load(Ordering::Acquire);
        if awaited_by(control) == Some(token) {
            self.acknowledge(token);
        }
    }

    /// Tells a reader that revoked this lease that `token` has seen the fenced word: every
    /// call it made under the old word is over, and it will not begin another (see
    /// [`revoke`](Self::revoke)). Out of line: once per thread per revoke.
    #[cold]
    #[inline(never)]
    fn acknowledge(&self, token: u64) {
        // Release: the writes of every earlier call of this thread, for the reader's acquire.
        self.acknowledged.store(token, Ordering::Release);
    }

    /// The reader's first step: switches the phase, and takes the lease back from a holder
    /// that made no call since the last close (it exited, or went idle). A holder that did
    /// keeps it and goes on in the new phase. Callers serialize on the reader's lock, then
    /// issue one heavy barrier (`barrier::heavy`) for all stripes before [`is_still`](Self::is_still).
    pub(crate) fn close(&self) -> Closed {
        loop {
            // Relaxed: a guess for the CAS below, which carries the ordering.
            let current = self.control.load(Ordering::Relaxed);
            let holder = current & HOLDER_MASK;
            // The other phase, the fenced bit kept, the switch counted.
            let new_phase = switched(current) ^ Phase::BIT;
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
                return Closed {
                    old: Phase::of_word(current),
                    holder,
                    kept,
                    seen: None,
                    awaiting: None,
                    exits_at_revoke: 0,
                    switches_after_revoke: 0,
                };
            }
        }
    }

    /// Whether the old holder is no longer inside a call that writes the old phase; if so,
    /// the old phase's data is complete and still. Call after the heavy barrier; the first call
    /// notes the holder's sequence, later ones look for a change.
    ///
    /// The value that ends the wait is what the next close compares with to decide whether
    /// the holder kept its lease: a sequence past it belongs to a call that began after this
    /// barrier, so that call saw the new lease word and taught its thread the new phase (the
    /// handshake of the module docs). A holder that made no such call, one stopped between a
    /// look at its count in the old phase and its call, say, loses the lease at the next
    /// close, and that call cannot begin (see [`LeasedCall::complete`]).
    pub(crate) fn is_still(&self, closed: &mut Closed) -> bool {
        if !closed.was_held() {
            return true;
        }
        if let Some(token) = closed.awaiting {
            // Acquire: synchronizes with the holder's release in `acknowledge`.
            return self.acknowledged.load(Ordering::Acquire) == token
                || super::route::token_gone_since(token, closed.exits_at_revoke);
        }
        // Acquire: synchronizes with the holder's release stores (see `enter`).
        let now = sequence_of(closed.holder).load(Ordering::Acquire);
        let seen = *closed.seen.get_or_insert(now);
        let still = seen.is_multiple_of(2) || now != seen;
        if still {
            // Relaxed: only the reader reads it, under its lock.
            self.holder_sequence_at_close.store(now, Ordering::Relaxed);
        }
        still
    }

    /// Once [`is_still`](Self::is_still): reopens the lease if it was taken back, then hands
    /// each written label's old-phase content to `visit`, leaving that phase zeroed.
    pub(crate) fn drain(
        &self,
        closed: Closed,
        buffer: &mut Vec<(u32, u64)>,
        mut visit: impl FnMut(Drained<'_>),
    ) {
        if !closed.was_held() {
            // Nobody wrote the old phase since its last drain.
            return;
        }
        if closed.awaiting.is_some() {
            // Revoked and acknowledged: nobody writes either phase until we reopen, and the
            // holder may have written both (it may have learned the new phase before the
            // revoke). Drain the new one too, then reopen as at any hand-over.
            let active = Phase::of_word(self.control.load(Ordering::Relaxed));
            drain_phase(
                &self.counts[active.index()],
                std::iter::once(&self.tallies),
                active,
                buffer,
                &mut visit,
            );
            let revoked = self.control.load(Ordering::Relaxed);
            let reopened = (revoked & (Phase::BIT | FENCED)) | closed.switches_after_revoke;
            self.control.store(reopened | FREE, Ordering::Release);
        } else if !closed.kept {
            // Before the drain: the old holder is out, and a new one writes the other phase.
            // Relaxed load: only the reader changes a CLOSED control word. Release: the old
            // holder's writes (acquired through its sequence word) and our zeroing of the old
            // phase, for whoever claims next.
            let closed_word = self.control.load(Ordering::Relaxed);
            self.control
                .store((closed_word & !HOLDER_MASK) | FREE, Ordering::Release);
        }
        drain_phase(
            &self.counts[closed.old.index()],
            std::iter::once(&self.tallies),
            closed.old,
            buffer,
            visit,
        );
    }

    /// After a heavy barrier failed (see `barrier`): makes this engine's writers fence from
    /// now on, and takes the lease back from whoever may still write under the word it had.
    /// `closed` (this cut's close of the stripe) then waits for that writer's acknowledgment
    /// instead of its sequence.
    ///
    /// The revoked word names the awaited holder (where the switch count was), so that
    /// another thread that remembers this stripe from before cannot acknowledge for it.
    ///
    /// Why an acknowledgment is enough without any barrier: the writer stores it (a release)
    /// only after its own load of the lease word returned this fenced word. Every call it
    /// began before happens before the reader's acquire of it, and by read-read coherence its
    /// later loads return this word or a later one, never the word its old calls began under;
    /// no later word names it until it claims the lease again, and that claim's acquire
    /// synchronizes with the reader's reopening, which follows this store of `FENCED`, so its
    /// next calls fence. A thread that inherits the token (see `route`) and tries the lease,
    /// or a holder whose memory points elsewhere and that looks for a lease
    /// ([`acknowledge_if_revoked`](Self::acknowledge_if_revoked)), acknowledges the same way.
    ///
    /// A holder that exits instead is as good: its thread's exit count moves, or its token is
    /// found free (`route::token_gone_since`): its writes are visible, and the next thread to
    /// take the token sees this fenced word. A holder alive that never records again in this
    /// engine never acknowledges (nor does a thread that inherited the token before the revoke
    /// and does not record here): its stripe is carried, snapshot after snapshot, until it
    /// does or exits.
    pub(crate) fn revoke(&self, closed: &mut Closed) {
        if closed.awaiting.is_some() {
            // Revoked by a cut that unwound.
            return;
        }
        loop {
            // Relaxed: a guess for the CAS.
            let current = self.control.load(Ordering::Relaxed);
            let awaiting = match current & HOLDER_MASK {
                // Taken back by this cut's close: the holder it named.
                CLOSED => (closed.holder >= FIRST_TOKEN).then_some(closed.holder),
                FREE => None,
                token => Some(token),
            };
            // Counted before the revoke, so that an exit right after it shows.
            let exits = awaiting.map(super::route::exits_of);
            // The awaited token goes where the switch count was, so that only its thread
            // acknowledges (see `awaited_by`).
            let next = match awaiting {
                Some(token) => (current & Phase::BIT) | FENCED | (token * ONE_SWITCH) | CLOSED,
                None => switched(current) | FENCED | FREE,
            };
            // AcqRel: release orders our choice of fenced mode before any later claim;
            // acquire a claim that came first.
            if self
                .control
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                closed.awaiting = awaiting;
                if let Some(exits) = exits {
                    closed.kept = false;
                    closed.exits_at_revoke = exits;
                    closed.switches_after_revoke = switched(current) & SWITCHES_MASK;
                }
                return;
            }
        }
    }

    /// Tasks started on this stripe so far, per runner: written by its successive holders
    /// only, and handed from one to the next with the lease.
    pub(crate) fn started(&self, runner: usize) -> u64 {
        // Relaxed: ordered after the closes and the barrier (see `reader`).
        self.tallies.started[runner].load(Ordering::Relaxed)
    }

    /// Errors so far on this stripe, for one `(runner, kind)` label.
    pub(crate) fn errors(&self, label: usize) -> u64 {
        // Relaxed: lone counters, each read whole.
        self.tallies.errors[label].load(Ordering::Relaxed)
    }

    /// The holder bits: `FREE`, `CLOSED` or a token (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn holder(&self) -> u64 {
        self.control.load(Ordering::Relaxed) & HOLDER_MASK
    }

    /// Whether the lease word says the engine is fenced (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn word_is_fenced(&self) -> bool {
        self.control.load(Ordering::Relaxed) & FENCED != 0
    }

    /// The phase the lease word activates (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn active_phase(&self) -> Phase {
        Phase::of_word(self.control.load(Ordering::Relaxed))
    }

    /// Moves the sequence word of the thread holding this lease on by one, as its entering or
    /// leaving a call would (for tests: a writer stopped inside a call).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn step_holder_sequence(&self) {
        let holder = self.holder();
        assert!(holder >= FIRST_TOKEN, "nobody holds this lease");
        step(sequence_of(holder));
    }

    /// Sets the count of `(label, slot)` in the active phase, marking its block (for tests: a
    /// full 32-bit count takes four billion calls to reach).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_count(&self, label: usize, slot: usize, count: u32) {
        let phase = Phase::of_word(self.control.load(Ordering::Relaxed));
        let counts = &self.counts[phase.index()];
        counts.count(label, slot).store(count, Ordering::Relaxed);
        counts.mark_written_single_writer(label, slot);
    }
}

impl LeasedCall<'_> {
    /// Records a start.
    #[inline(always)]
    pub(crate) fn record_started(&self, runner: usize) {
        add_single_writer(&self.stripe.tallies.started[runner], 1);
    }

    /// Records an error.
    #[inline(always)]
    pub(crate) fn record_error(&self, label: usize) {
        add_single_writer(&self.stripe.tallies.errors[label], 1);
    }

    /// Records one completion at `target`, which [`LeasedTarget::is_usual`] found neither
    /// zero nor full before this call began, in this call's phase.
    ///
    /// No second check: the count is as it was at that look. The holder is its only writer,
    /// and the reader zeroes it only in a drain of this phase, which needs a flip away from
    /// it and, for this call to have begun, a flip back with the lease kept; two switches
    /// leave a different lease word (their count is in it), so a call that looked before
    /// them cannot begin. A lease is kept
    /// at a close only if a call of its holder began after the barrier of the close before
    /// (see [`LeasedStripe::is_still`]), and such a call would have taught the holder the new
    /// phase; this holder still expected the old one when it looked. So the reader did not
    /// touch the count.
    #[inline(always)]
    pub(crate) fn complete(self, target: LeasedTarget<'_>, duration_ms: u64, clamped: bool) {
        debug_assert_eq!(target.phase, self.phase);
        // Relaxed: the holder is the only writer; the reader gets these through its sequence.
        let count = target.count.load(Ordering::Relaxed);
        target.count.store(count + 1, Ordering::Relaxed);
        add_duration(target.cell, duration_ms, clamped);
    }

    /// Records one completion of `(label, slot)`, looking at its count first: a zero count
    /// marks its block, a full one refuses ([`CountFull`]: the caller records elsewhere).
    #[cold]
    pub(crate) fn complete_checked(
        self,
        label: usize,
        slot: usize,
        duration_ms: u64,
        clamped: bool,
    ) -> Result<(), CountFull> {
        let counts = &self.stripe.counts[self.phase.index()];
        let count = counts.count(label, slot);
        // Relaxed: the holder is the only writer.
        let before = count.load(Ordering::Relaxed);
        if before == u32::MAX {
            return Err(CountFull);
        }
        count.store(before + 1, Ordering::Relaxed);
        if before == 0 {
            counts.mark_written_single_writer(label, slot);
        }
        add_duration(
            self.stripe.tallies.cell(self.phase, label),
            duration_ms,
            clamped,
        );
        Ok(())
    }
}

impl Drop for LeasedCall<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // Hands the call's plain stores to the reader that waits on this word.
        step(self.sequence);
    }
}

/// Adds a duration to a completion's cell, by its one writer.
#[inline(always)]
fn add_duration(cell: &super::counts::CompletionCell, duration_ms: u64, clamped: bool) {
    // Relaxed: the holder is the only writer; the reader gets these through its sequence.
    let (sum_low, wrapped) = cell
        .sum_low
        .load(Ordering::Relaxed)
        .overflowing_add(duration_ms);
    cell.sum_low.store(sum_low, Ordering::Relaxed);
    if wrapped {
        add_single_writer(&cell.sum_high, 1);
    }
    if clamped {
        add_single_writer(&cell.clamped, 1);
    }
}

/// `counter += by` for a counter with one writer: a plain load and store, no locked
/// instruction. Relaxed: the lease protocol orders it.
#[inline(always)]
fn add_single_writer(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
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

#[cfg(all(test, not(loom)))]
mod tests;
