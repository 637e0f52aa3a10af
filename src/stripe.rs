//! The hot path: one stripe of recording state, and the phase protocol that lets a reader take
//! a consistent cut of it while writers keep going.
//!
//! # What a stripe holds
//!
//! Fixed arrays of atomics indexed by the label enums' `index()`:
//! - `started[runner]` and `errors[runner][kind]`: plain monotonic counters;
//! - per phase (two of them) and per `(runner, outcome)`: the exact duration sum (as a 128-bit
//!   pair of words), the clamped count, and an HDR-layout array of bucket counts. The number of
//!   completions is the histogram's total, so count and histogram cannot disagree.
//!
//! The small words (counters, sums, the phaser below) are kept per *lane*: a shared stripe
//! has [`SHARED_LANES`] lanes, each with its own copy, and its writers spread over them, so
//! that two threads on one shared stripe do not pass the same lines between cores on every
//! call. The histogram counts are shared by a stripe's lanes. The reader adds the lanes up.
//!
//! A stripe is written in one of two ways, fixed when the engine is built (see
//! `AtomicMetrics`):
//! - *shared*: threads spread over the engine's shared stripes, several may share one, so
//!   every update is an atomic read-modify-write, under the phase protocol below;
//! - *leased*: one thread at a time holds the stripe's lease and updates it with plain loads
//!   and stores; [`crate::lease`] has that protocol. The data layout is the same.
//!
//! # The phase protocol (a WriterReaderPhaser per stripe)
//!
//! A completion touches several words (bucket, sum, perhaps clamped), and a snapshot must see
//! all of them or none. The stripe's `phase` word holds the active phase in its top bit and, in
//! the other 63, how many writers have *entered* it since it became active:
//!
//! - writer: `e = phase.fetch_add(1)`; write into the data of phase `p = top bit of e`;
//!   `exited[p].fetch_add(1)`. Two locked instructions on a line the writer's lane owns, and
//!   never a wait.
//! - reader (one at a time, under the engine's reader lock): `old = phase.swap(other phase, 0
//!   entered)` on every lane (the *flip*), then wait until `exited[old phase] == entered count
//!   in old` on every lane, then read phase `old` and zero it, and reset `exited[old phase]`
//!   to 0 (the *drain*).
//!
//! Why the reader sees exactly the writes that entered the old phase, each one whole: all
//! `fetch_add`s and the `swap` on `phase` are read-modify-writes of one word, so they are
//! totally ordered. A writer ordered before the swap read the old phase and is counted in
//! `entered`; one ordered after it read the new phase and writes elsewhere. There is no
//! store-then-load race (as in Dekker's algorithm) to fence against. When `exited` reaches
//! `entered`, every counted writer has finished; each `exited` increment is a release and the
//! reader's load an acquire (the increments form one release sequence), so all their data
//! writes happen before the reader's reads. Nobody writes the old phase's data again until the
//! reader's *next* swap, which is a release: the zeroing (plain relaxed stores) happens before
//! every writer that enters that phase afterwards, because a writer's `fetch_add` is an acquire.
//! All of this holds lane by lane, and the histogram counts that lanes share need nothing
//! more: a count of the old phase is written only by writers counted in some lane's entries,
//! the reader reads it only after every lane's wait, and every lane's swap releases the
//! zeroing to the writers entering through that lane.
//!
//! Costs and limits: a writer never waits for a reader. A reader waits only for writers that
//! were already inside the old phase when it swapped (a few instructions each), so a writer
//! descheduled mid-record delays the snapshot by that much, never forever (the protocol is
//! lock-free for readers, wait-free for writers). 63 bits of entries per phase cannot overflow
//! between two snapshots.
//!
//! Why this protocol: Go's `client_golang` histogram gets the same all-or-nothing cut with a
//! hot/cold pair and a count bumped last, but its reader waits on *every* in-flight
//! observation of a shared histogram; Java's `LongAdder` stripes counters to stop cache-line
//! ping-pong but offers no cut across several words. Striping the state (LongAdder) and giving
//! each stripe its own phaser (HdrHistogram's `WriterReaderPhaser`) keeps writers on their own
//! cache lines and the reader's wait short; the price is two copies of the histograms.
//!
//! `started` and `errors` need no phase: each is one word. The reader first flips *every*
//! stripe, then reads the `started` counters, then drains. A completion it will drain entered
//! before its stripe's swap; the task's start happened before that entry, which is a release
//! that the swap (an acquire) synchronizes with, so the start is seen on whichever stripe it
//! was recorded: `in_flight` never goes negative. Reading right after the flips, not after the
//! drains, keeps starts whose completions land in the next interval to the few nanoseconds
//! between the swaps and the read, so `in_flight` is not inflated by the snapshot's own cost.

use crossbeam_utils::CachePadded;

use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::lease::{Closed, Lease};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Labels of a completion: one per `(runner, outcome)`.
pub(crate) const COMPLETION_LABELS: usize = RunnerType::COUNT * TaskOutcome::COUNT;
/// Labels of an error: one per `(runner, kind)`.
pub(crate) const ERROR_LABELS: usize = RunnerType::COUNT * RunnerErrorKind::COUNT;

const PHASE_BIT: u64 = 1 << 63;
const ENTERED_MASK: u64 = PHASE_BIT - 1;

#[inline]
pub(crate) fn completion_label(runner: RunnerType, outcome: TaskOutcome) -> usize {
    runner.index() * TaskOutcome::COUNT + outcome.index()
}

#[inline]
pub(crate) fn error_label(runner: RunnerType, kind: RunnerErrorKind) -> usize {
    runner.index() * RunnerErrorKind::COUNT + kind.index()
}

/// The phaser's words. One cache line: the stripe's writers touch it on every completion.
struct Phaser {
    /// Top bit: the active phase. Low 63 bits: writers that entered it.
    phase: AtomicU64,
    /// Writers that finished, per phase.
    exited: [AtomicU64; 2],
}

/// The exact sum and the clamped count of one `(runner, outcome)` in one phase.
#[derive(Default)]
struct CompletionCell {
    /// The sum modulo 2^64...
    sum_low: AtomicU64,
    /// ...and how many times it wrapped: with `sum_low`, an exact 128-bit sum.
    sum_high: AtomicU64,
    clamped: AtomicU64,
}

/// The words of one *lane* of a stripe: a group of its writers with a phaser, counters and
/// sums of its own. The histogram counts, which hold nearly all of a stripe's memory, are
/// shared by its lanes.
///
/// Why lanes: the words every call touches (the phase word and exit counts, a runner's
/// `started`, a label's sum) would otherwise be the same few lines for every writer of a
/// shared stripe, and two threads running at once on one shared stripe (more busy threads
/// than leases) would pass those lines between their cores on every call. Threads spread
/// over the lanes ([`SHARED_LANES`] per shared stripe) and so meet only on histogram counts,
/// which the durations spread over thousands of lines. A lane costs 5 KiB; the
/// protocol is unchanged, with every lane flipped and waited for (see `flip`).
struct Lane {
    /// Used on shared stripes.
    phaser: CachePadded<Phaser>,
    started: [CachePadded<AtomicU64>; RunnerType::COUNT],
    errors: [CachePadded<AtomicU64>; ERROR_LABELS],
    /// Per phase, per label.
    cells: [[CachePadded<CompletionCell>; COMPLETION_LABELS]; 2],
}

/// Lanes per shared stripe; a leased stripe has one (its one writer). Threads beyond the
/// leases spread over shared stripes first, then over lanes.
#[cfg(not(loom))]
pub(crate) const SHARED_LANES: usize = 8;
#[cfg(loom)]
pub(crate) const SHARED_LANES: usize = 2;

/// What one phase's histograms accumulate between two snapshots.
struct PhaseCounts {
    /// `COMPLETION_LABELS` histograms of `slots_per_histogram` counts each, label-major:
    /// 64-bit counts on a shared stripe (`narrow` is empty)...
    wide: Box<[AtomicU64]>,
    /// ...32-bit counts on a leased one (`wide` is empty). Half the memory, so that a
    /// 2-core machine gets two leased stripes within the default 8 MiB. A holder that finds
    /// a count at `u32::MAX` gives its lease up and records on a shared stripe instead, so a
    /// count never wraps (see `LeasedTarget`).
    narrow: Box<[AtomicU32]>,
}

/// One stripe of recording state.
pub(crate) struct Stripe {
    /// Used on leased stripes.
    pub(crate) lease: CachePadded<Lease>,
    /// The one lane of a leased stripe, the first of a shared one: inline, so that a leased
    /// call reaches its counters without a pointer to follow.
    first_lane: Lane,
    /// A shared stripe's other `SHARED_LANES - 1` lanes; empty on a leased stripe.
    more_lanes: Box<[Lane]>,
    phases: [PhaseCounts; 2],
    slots_per_histogram: usize,
}

/// The result of [`Stripe::flip`]: which phase to drain and how many writers entered it,
/// over all lanes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flipped {
    old_phase: usize,
    entered: u64,
}

/// A drained phase's content for one label, handed to the reader's callback.
pub(crate) struct DrainedCompletions<'a> {
    pub(crate) label: usize,
    pub(crate) sum: u128,
    pub(crate) clamped: u64,
    /// `(slot, count)` for every non-zero slot, in slot order; the counts have been reset to
    /// zero.
    pub(crate) slots: &'a [(u32, u64)],
}

/// Where one completion goes on a leased stripe, in one phase: its histogram count and its
/// label's sum and clamped count. Found before the holder's call begins, so that the call
/// itself is a handful of plain loads and stores.
pub(crate) struct LeasedTarget<'a> {
    count: &'a AtomicU32,
    cell: &'a CompletionCell,
}

impl LeasedTarget<'_> {
    /// Whether the 32-bit count is full: the completion must go elsewhere (a shared stripe),
    /// so that the count never wraps. Read before the call, as a guess at first; see
    /// [`record`](Self::record) for why the guess is enough.
    #[inline(always)]
    pub(crate) fn is_full(&self) -> bool {
        // Relaxed: the holder is the only writer of the count.
        self.count.load(Ordering::Relaxed) == u32::MAX
    }

    /// Records one completion, inside the holder's call into this target's phase, once
    /// [`is_full`](Self::is_full) said no, whether before the call or inside it.
    ///
    /// No second check for a full count: between that look and this call the count can only
    /// have been zeroed, never raised. The holder is its only writer while it holds the lease
    /// (a holder that loses the lease cannot get it back while it is inside this completion:
    /// only it claims with its token, and the call checked that the lease word is still the
    /// one it remembers, so it held the lease since before its look); the reader only zeroes
    /// a phase, and read-read coherence forbids seeing the zero and then the older value.
    #[inline(always)]
    pub(crate) fn record(&self, duration_ms: u64, clamped: bool) {
        // Relaxed: the holder is the only writer (see `add_single_writer`); never wraps, as
        // argued above.
        let count = self.count.load(Ordering::Relaxed);
        self.count.store(count.wrapping_add(1), Ordering::Relaxed);
        let cell = self.cell;
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
}

/// A histogram count of either width, as the drain reads it.
trait Count {
    /// The count, with no ordering (see `drain_phase`).
    fn peek(&self) -> u64;
    /// The count, left at zero.
    fn take(&self) -> u64;
}

impl Count for AtomicU64 {
    #[inline(always)]
    fn peek(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
    #[inline(always)]
    fn take(&self) -> u64 {
        let count = self.load(Ordering::Relaxed);
        self.store(0, Ordering::Relaxed);
        count
    }
}

impl Count for AtomicU32 {
    #[inline(always)]
    fn peek(&self) -> u64 {
        u64::from(self.load(Ordering::Relaxed))
    }
    #[inline(always)]
    fn take(&self) -> u64 {
        let count = self.load(Ordering::Relaxed);
        self.store(0, Ordering::Relaxed);
        u64::from(count)
    }
}

/// Moves the non-zero counts of `counts` into `out` as `(slot, count)`, in slot order,
/// leaving `counts` zero; returns how many. `out` holds at least `counts.len()` entries.
///
/// Written for speed on the reader's path: runs of 8 zero slots (most of a histogram's tail)
/// cost 8 loads and one predictable branch, and inside a non-zero run each slot is taken and
/// appended without a branch (a zero lands in `out` and is overwritten by the next).
fn take_non_zero<C: Count>(counts: &[C], out: &mut [(u32, u64)]) -> usize {
    const RUN: usize = 8;
    let mut found = 0;
    for (run_index, run) in counts.chunks(RUN).enumerate() {
        if run.iter().fold(0, |any, count| any | count.peek()) == 0 {
            continue;
        }
        for (offset, count) in run.iter().enumerate() {
            let value = count.take();
            out[found] = ((run_index * RUN + offset) as u32, value);
            found += usize::from(value != 0);
        }
    }
    found
}

/// `counter += by` for a counter with one writer: a plain load and store, no locked
/// instruction. Relaxed: the lease protocol orders it (see [`crate::lease`]).
#[inline]
fn add_single_writer(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

fn zeroed<const N: usize>() -> [CachePadded<AtomicU64>; N] {
    std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0)))
}

impl Lane {
    fn new() -> Self {
        let cells = || std::array::from_fn(|_| CachePadded::new(CompletionCell::default()));
        Lane {
            phaser: CachePadded::new(Phaser {
                phase: AtomicU64::new(0),
                exited: [AtomicU64::new(0), AtomicU64::new(0)],
            }),
            started: zeroed(),
            errors: zeroed(),
            cells: [cells(), cells()],
        }
    }
}

impl PhaseCounts {
    fn new(slots_per_histogram: usize, leased: bool) -> Self {
        let (wide, narrow) = match leased {
            false => (COMPLETION_LABELS * slots_per_histogram, 0),
            true => (0, COMPLETION_LABELS * slots_per_histogram),
        };
        PhaseCounts {
            wide: (0..wide).map(|_| AtomicU64::new(0)).collect(),
            narrow: (0..narrow).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl Stripe {
    /// A shared stripe, or a `leased` one (32-bit histogram counts, one lane).
    pub(crate) fn new(slots_per_histogram: usize, leased: bool) -> Self {
        Stripe {
            lease: CachePadded::new(Lease::new()),
            first_lane: Lane::new(),
            more_lanes: (1..Self::lane_count(leased)).map(|_| Lane::new()).collect(),
            phases: [
                PhaseCounts::new(slots_per_histogram, leased),
                PhaseCounts::new(slots_per_histogram, leased),
            ],
            slots_per_histogram,
        }
    }

    fn lane_count(leased: bool) -> usize {
        if leased { 1 } else { SHARED_LANES }
    }

    /// Lane `index` (`< SHARED_LANES` on a shared stripe, 0 on a leased one).
    #[inline(always)]
    fn lane(&self, index: usize) -> &Lane {
        match index {
            0 => &self.first_lane,
            _ => &self.more_lanes[index - 1],
        }
    }

    /// Every lane, the reader's way round.
    fn lanes(&self) -> impl Iterator<Item = &Lane> {
        std::iter::once(&self.first_lane).chain(self.more_lanes.iter())
    }

    /// Heap and inline bytes of one stripe with `slots_per_histogram` slots per histogram.
    pub(crate) fn memory_bytes(slots_per_histogram: usize, leased: bool) -> usize {
        let count_bytes = match leased {
            false => std::mem::size_of::<AtomicU64>(),
            true => std::mem::size_of::<AtomicU32>(),
        };
        std::mem::size_of::<Stripe>()
            + (Self::lane_count(leased) - 1) * std::mem::size_of::<Lane>()
            + 2 * COMPLETION_LABELS * slots_per_histogram * count_bytes
    }

    /// On a shared stripe, records a start in `lane` (`< SHARED_LANES`).
    #[inline]
    pub(crate) fn record_started(&self, lane: usize, runner: RunnerType) {
        // Relaxed: the reader orders this through the completion that follows it (module docs).
        self.lane(lane).started[runner.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// On a shared stripe, records an error in `lane`.
    #[inline]
    pub(crate) fn record_error(&self, lane: usize, label: usize) {
        // Relaxed: a lone counter, read whole whenever it is read.
        self.lane(lane).errors[label].fetch_add(1, Ordering::Relaxed);
    }

    /// On a shared stripe, records one completion through `lane`'s phaser: `slot` is the
    /// bucket of the (clamped) value, `duration_ms` the true value for the sum.
    #[inline]
    pub(crate) fn record_completion(
        &self,
        lane: usize,
        label: usize,
        slot: usize,
        duration_ms: u64,
        clamped: bool,
    ) {
        let lane = self.lane(lane);
        // Acquire: our writes below must not be seen before we are counted in this phase, and
        // we must see the reader's zeroing of this phase's data (released by its swap).
        // Release: whatever this thread did before (the task's start) is visible to the
        // reader once its swap reads past our entry; that keeps in-flight from going negative.
        let entered = lane.phaser.phase.fetch_add(1, Ordering::AcqRel);
        let phase = (entered >> 63) as usize;
        // Relaxed: published to the reader by the release on `exited` below.
        self.phases[phase].wide[label * self.slots_per_histogram + slot]
            .fetch_add(1, Ordering::Relaxed);
        let cell = &lane.cells[phase][label];
        let previous = cell.sum_low.fetch_add(duration_ms, Ordering::Relaxed);
        if previous.checked_add(duration_ms).is_none() {
            cell.sum_high.fetch_add(1, Ordering::Relaxed);
        }
        if clamped {
            cell.clamped.fetch_add(1, Ordering::Relaxed);
        }
        // Release: hands everything above to the reader that waits for this count.
        lane.phaser.exited[phase].fetch_add(1, Ordering::Release);
    }

    /// [`record_started`](Self::record_started) by the lease holder, inside its call.
    #[inline]
    pub(crate) fn record_started_leased(&self, runner: RunnerType) {
        add_single_writer(&self.first_lane.started[runner.index()], 1);
    }

    /// [`record_error`](Self::record_error) by the lease holder, inside its call.
    #[inline]
    pub(crate) fn record_error_leased(&self, label: usize) {
        add_single_writer(&self.first_lane.errors[label], 1);
    }

    /// On a leased stripe, where a completion of `(label, slot)` goes in `phase`: found
    /// before the holder's call begins (see `AtomicMetrics::record_task_completed`), written
    /// inside it. `None` on a shared stripe (it has no 32-bit counts): the hot path may look
    /// before it knows whether it holds the stripe.
    #[inline(always)]
    pub(crate) fn leased_target(
        &self,
        phase: usize,
        label: usize,
        slot: usize,
    ) -> Option<LeasedTarget<'_>> {
        Some(LeasedTarget {
            count: self.phases[phase]
                .narrow
                .get(label * self.slots_per_histogram + slot)?,
            cell: &self.first_lane.cells[phase][label],
        })
    }

    /// Sets a leased stripe's count of `(label, slot)` in the holder's phase (for tests: a
    /// full 32-bit count takes four billion calls to reach).
    #[cfg(test)]
    pub(crate) fn set_leased_count(&self, label: usize, slot: usize, count: u32) {
        let data = &self.phases[self.lease.active_phase()];
        data.narrow[label * self.slots_per_histogram + slot].store(count, Ordering::Relaxed);
    }

    /// Closes a leased stripe: see [`Lease::close`].
    pub(crate) fn close_lease(&self) -> Closed {
        self.lease.close()
    }

    /// Whether a leased stripe closed by [`close_lease`](Self::close_lease) can be drained:
    /// its holder left the old phase (see [`Lease::holder_is_out`]).
    pub(crate) fn leased_ready(&self, closed: &mut Closed) -> bool {
        self.lease.holder_is_out(closed)
    }

    /// Drains a leased stripe once [`leased_ready`](Self::leased_ready), and reopens the
    /// lease if it was taken back.
    pub(crate) fn drain_leased(
        &self,
        closed: Closed,
        buffer: &mut Vec<(u32, u64)>,
        visit: impl FnMut(DrainedCompletions<'_>),
    ) {
        if closed.was_taken_back() {
            // Before the drain: the old holder is out, and a new one writes the other phase.
            // Threads that found the lease closed record on a shared stripe meanwhile, so the
            // sooner the better.
            self.lease.reopen();
        }
        if closed.was_held() {
            self.drain_phase(closed.old_phase, buffer, visit);
        }
    }

    /// Switches every lane of the stripe to the other phase and returns what
    /// [`drain`](Self::drain) needs to collect the old one. Callers serialize on the engine's
    /// reader lock: two concurrent flips or drains of one stripe would break the protocol.
    ///
    /// The lanes are switched one after another, so for a moment some writers enter the new
    /// phase while others (through lanes not yet switched) still enter the old one. That is
    /// harmless: each completion is counted in the entries of the phase it writes, and the
    /// old phase is read only once every lane's exits match its entries.
    pub(crate) fn flip(&self) -> Flipped {
        // Relaxed: only flips change the phase bit, and they are serialized by the reader lock;
        // every lane carries the same bit.
        let active = self.first_lane.phaser.phase.load(Ordering::Relaxed) & PHASE_BIT;
        let mut entered = 0;
        for lane in self.lanes() {
            // AcqRel: release publishes our last zeroing of the phase we now activate to the
            // writers who enter it through this lane; acquire synchronizes with every entry
            // so far (each is a release), so whatever a counted writer did before entering, a
            // task's start included, is visible to us from here on.
            let old = lane.phaser.phase.swap(active ^ PHASE_BIT, Ordering::AcqRel);
            entered += old & ENTERED_MASK;
        }
        Flipped {
            old_phase: (active >> 63) as usize,
            entered,
        }
    }

    /// Whether the writers counted in `flipped` have left the old phase, so that
    /// [`drain`](Self::drain) may read it.
    pub(crate) fn shared_ready(&self, flipped: &Flipped) -> bool {
        // A lane's exits never exceed its entries (a writer leaves the phase it entered), so
        // the totals match only when every lane's do.
        flipped.entered == 0
            || self
                .lanes()
                // Acquire: synchronizes with every counted writer's release increment.
                .map(|lane| lane.phaser.exited[flipped.old_phase].load(Ordering::Acquire))
                .sum::<u64>()
                == flipped.entered
    }

    /// Hands each label's old-phase content to `visit`, leaving that phase zeroed. Only once
    /// [`shared_ready`](Self::shared_ready).
    pub(crate) fn drain(
        &self,
        flipped: Flipped,
        buffer: &mut Vec<(u32, u64)>,
        visit: impl FnMut(DrainedCompletions<'_>),
    ) {
        let Flipped { old_phase, entered } = flipped;
        if entered == 0 {
            // No completion in the old phase: its data is still all zero from the last drain,
            // so an idle stripe costs one swap per lane instead of a scan.
            return;
        }
        self.drain_phase(old_phase, buffer, visit);
        for lane in self.lanes() {
            // Relaxed: published to the next writers of this phase by our next swap's release.
            lane.phaser.exited[old_phase].store(0, Ordering::Relaxed);
        }
    }

    /// Hands each label's content in `phase` to `visit` and zeroes it. Nobody may write that
    /// phase meanwhile.
    fn drain_phase(
        &self,
        phase: usize,
        buffer: &mut Vec<(u32, u64)>,
        mut visit: impl FnMut(DrainedCompletions<'_>),
    ) {
        let counts = &self.phases[phase];
        buffer.resize(self.slots_per_histogram, (0, 0));
        for label in 0..COMPLETION_LABELS {
            let (mut sum, mut clamped) = (0_u128, 0_u64);
            for lane in self.lanes() {
                let cell = &lane.cells[phase][label];
                // Relaxed loads and stores: no writer touches this phase until the reader
                // hands it back (its next swap on a shared stripe, its reopening of a leased
                // one).
                let sum_low = cell.sum_low.load(Ordering::Relaxed);
                let sum_high = cell.sum_high.load(Ordering::Relaxed);
                // Saturating: lane sums add past 2^128 ms only beyond any real run.
                sum = sum.saturating_add((u128::from(sum_high) << 64) | u128::from(sum_low));
                clamped += cell.clamped.load(Ordering::Relaxed);
                cell.sum_low.store(0, Ordering::Relaxed);
                cell.sum_high.store(0, Ordering::Relaxed);
                cell.clamped.store(0, Ordering::Relaxed);
            }
            let range = label * self.slots_per_histogram..(label + 1) * self.slots_per_histogram;
            // One of the two is empty.
            let found = match counts.wide.get(range.clone()) {
                Some(wide) => take_non_zero(wide, buffer),
                None => take_non_zero(&counts.narrow[range], buffer),
            };
            visit(DrainedCompletions {
                label,
                sum,
                clamped,
                slots: &buffer[..found],
            });
        }
    }

    /// Tasks started so far on this stripe, per runner. Call after flipping every stripe.
    pub(crate) fn started(&self, runner: usize) -> u64 {
        self.lanes()
            // Relaxed: ordered after the flips' acquire, which is what in-flight needs.
            .map(|lane| lane.started[runner].load(Ordering::Relaxed))
            .sum()
    }

    /// Errors so far on this stripe, for one `(runner, kind)` label.
    pub(crate) fn errors(&self, label: usize) -> u64 {
        self.lanes()
            // Relaxed: lone counters, each read whole.
            .map(|lane| lane.errors[label].load(Ordering::Relaxed))
            .sum()
    }
}
