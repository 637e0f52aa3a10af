//! A shared stripe: written by any number of threads with atomic read-modify-writes, and
//! cut by the reader through a phaser (a WriterReaderPhaser per lane).
//!
//! # The phaser
//!
//! A completion touches several words (count, written-block bit, sum, perhaps clamped), and a
//! snapshot must see all of them or none. A lane's `phase` word holds the active phase in its
//! top bit ([`Phase::BIT`]) and, in the other 63, how many writers have *entered* it since it
//! became active:
//!
//! - writer ([`Phaser::enter`]): `e = phase.fetch_add(1)`; write into the data of the phase in
//!   `e`'s top bit; on drop of the [`Entered`] guard, `exited[p].fetch_add(1)`. Two locked
//!   instructions on a line its lane owns, and never a wait.
//! - reader ([`SharedStripe::flip`], then [`SharedStripe::is_still`] and
//!   [`SharedStripe::drain`]): `old = phase.swap(other phase, 0 entered)` on every lane, then
//!   wait until `exited[old] == entered in old` on every lane, then read phase `old`, zero
//!   it, and reset `exited[old]` to 0.
//!
//! Why the reader sees exactly the writes that entered the old phase, each one whole: the
//! `fetch_add`s and the `swap` on one `phase` word are read-modify-writes of one word, so they
//! are totally ordered. A writer ordered before the swap read the old phase and is counted in
//! `entered`; one ordered after it read the new phase and writes elsewhere. There is no
//! store-then-load race to fence against. When `exited` reaches `entered`, every counted
//! writer has finished; each `exited` increment is a release and the reader's load an acquire
//! (the increments form one release sequence), so all their data writes happen before the
//! reader's reads. Nobody writes the old phase's data again until the reader's *next* swap,
//! which is a release: the zeroing (relaxed stores) happens before every writer that enters
//! that phase afterwards, because a writer's `fetch_add` is an acquire. All of this holds
//! lane by lane, and the histogram counts and bitmap that lanes share need nothing more: they
//! are written only by writers counted in some lane's entries, read only after every lane's
//! wait, and every lane's swap releases the zeroing to the writers entering through it.
//!
//! `started` and `errors` need no phase: each is one monotonic word. The reader's flip is an
//! acquire of every entry so far, and every entry a release, so the start of a task whose
//! completion the reader will drain is visible to the reader's read of the counters after
//! its flips: in-flight is never negative (see `reader`).
//!
//! # Lanes
//!
//! Threads on one shared stripe spread over its [`SHARED_LANES`] lanes, each with its own
//! phaser and [`Tallies`], so that two threads running at once rarely pass the same lines
//! between their cores; they meet only on histogram counts, which durations spread over many
//! lines. The reader flips and waits for every lane.
//!
//! # Costs
//!
//! A start or an error: one `fetch_add`. A completion: four (enter, count, sum, exit), one
//! more when clamped, a `fetch_or` when its count was zero. A writer never waits; the reader
//! waits only for writers inside the old phase when it swapped.

use crossbeam_utils::CachePadded;

use super::counts::{Drained, HistogramCounts, Phase, Tallies, drain_phase};
use crate::sync::{AtomicU64, Ordering};

/// Lanes per shared stripe.
#[cfg(not(loom))]
pub(crate) const SHARED_LANES: usize = 8;
#[cfg(loom)]
pub(crate) const SHARED_LANES: usize = 2;

const ENTERED_MASK: u64 = Phase::BIT - 1;

/// One lane's phaser words: one line, touched by the lane's writers on every completion.
struct Phaser {
    /// Top bit: the active phase. Low 63 bits: writers that entered it.
    phase: AtomicU64,
    /// Writers that finished, per phase.
    exited: [AtomicU64; 2],
}

/// A writer inside a phase: its writes go to [`phase`](Self::phase)'s data; dropping it
/// exits, handing them to the reader.
pub(crate) struct Entered<'a> {
    phaser: &'a Phaser,
    pub(crate) phase: Phase,
}

impl Phaser {
    fn new() -> Self {
        Phaser {
            phase: AtomicU64::new(0),
            exited: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Enters the active phase.
    #[inline]
    fn enter(&self) -> Entered<'_> {
        // Acquire: our writes must not be seen before we are counted in this phase, and we
        // must see the reader's zeroing of this phase's data (released by its swap).
        // Release: whatever this thread did before (the task's start) is visible to the
        // reader once its swap reads past our entry; that keeps in-flight from going negative.
        let entered = self.phase.fetch_add(1, Ordering::AcqRel);
        Entered {
            phaser: self,
            phase: Phase::of_word(entered),
        }
    }
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: hands every write of the call to the reader that waits for this count.
        self.phaser.exited[self.phase.index()].fetch_add(1, Ordering::Release);
    }
}

struct Lane {
    phaser: CachePadded<Phaser>,
    tallies: Tallies,
}

/// A stripe any number of threads record on, through its lanes.
pub(crate) struct SharedStripe {
    lanes: Box<[Lane]>,
    counts: [HistogramCounts<AtomicU64>; 2],
}

/// What [`SharedStripe::flip`] found: the phase to drain and how many writers entered it,
/// over all lanes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flipped {
    old: Phase,
    entered: u64,
}

impl SharedStripe {
    pub(crate) fn new(slots_per_histogram: usize) -> Self {
        SharedStripe {
            lanes: (0..SHARED_LANES)
                .map(|_| Lane {
                    phaser: CachePadded::new(Phaser::new()),
                    tallies: Tallies::new(),
                })
                .collect(),
            counts: [
                HistogramCounts::new(slots_per_histogram),
                HistogramCounts::new(slots_per_histogram),
            ],
        }
    }

    /// Bytes one shared stripe reserves.
    pub(crate) fn reserved_bytes(slots_per_histogram: usize) -> usize {
        std::mem::size_of::<Self>()
            + SHARED_LANES * std::mem::size_of::<Lane>()
            + 2 * HistogramCounts::<AtomicU64>::reserved_bytes(slots_per_histogram)
    }

    /// Records a start in `lane` (`< SHARED_LANES`).
    #[inline]
    pub(crate) fn record_started(&self, lane: usize, runner: usize) {
        // Relaxed: the reader orders this through the completion that follows it (module docs).
        self.lanes[lane].tallies.started[runner].fetch_add(1, Ordering::Relaxed);
    }

    /// Records an error in `lane`.
    #[inline]
    pub(crate) fn record_error(&self, lane: usize, label: usize) {
        // Relaxed: a lone counter, read whole whenever it is read.
        self.lanes[lane].tallies.errors[label].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one completion through `lane`'s phaser: `slot` is the bucket of the (clamped)
    /// value, `duration_ms` the true value for the sum.
    #[inline]
    pub(crate) fn record_completion(
        &self,
        lane: usize,
        label: usize,
        slot: usize,
        duration_ms: u64,
        clamped: bool,
    ) {
        let lane = &self.lanes[lane];
        let entered = lane.phaser.enter();
        let phase = entered.phase;
        let counts = &self.counts[phase.index()];
        // Relaxed, here and below: published to the reader by the release of `entered`'s exit.
        if counts.count(label, slot).fetch_add(1, Ordering::Relaxed) == 0 {
            counts.mark_written_shared(label, slot);
        }
        let cell = lane.tallies.cell(phase, label);
        let previous = cell.sum_low.fetch_add(duration_ms, Ordering::Relaxed);
        if previous.checked_add(duration_ms).is_none() {
            cell.sum_high.fetch_add(1, Ordering::Relaxed);
        }
        if clamped {
            cell.clamped.fetch_add(1, Ordering::Relaxed);
        }
        drop(entered);
    }

    /// Switches every lane to the other phase and returns what [`drain`](Self::drain) needs.
    /// Callers serialize on the reader's lock: two concurrent flips or drains of one stripe
    /// would break the protocol.
    ///
    /// The lanes are switched one after another, so for a moment some writers enter the new
    /// phase while others (through lanes not yet switched) still enter the old one. That is
    /// harmless: each completion is counted in the entries of the phase it writes, and the
    /// old phase is read only once every lane's exits match its entries.
    pub(crate) fn flip(&self) -> Flipped {
        // Relaxed: only flips change the phase bit, serialized by the reader lock; every lane
        // carries the same bit.
        let old = Phase::of_word(self.lanes[0].phaser.phase.load(Ordering::Relaxed));
        let mut entered = 0;
        for lane in self.lanes.iter() {
            // AcqRel: release publishes our last zeroing of the phase we now activate to the
            // writers who enter it through this lane; acquire synchronizes with every entry
            // so far (each is a release), so whatever a counted writer did before entering, a
            // task's start included, is visible to us from here on.
            let word = lane.phaser.phase.swap(old.other().bit(), Ordering::AcqRel);
            entered += word & ENTERED_MASK;
        }
        Flipped { old, entered }
    }

    /// Whether the writers counted in `flipped` have left the old phase, so that
    /// [`drain`](Self::drain) may read it.
    pub(crate) fn is_still(&self, flipped: &Flipped) -> bool {
        // A lane's exits never exceed its entries (a writer leaves the phase it entered), so
        // the totals match only when every lane's do.
        flipped.entered == 0
            || self
                .lanes
                .iter()
                // Acquire: synchronizes with every counted writer's release increment.
                .map(|lane| lane.phaser.exited[flipped.old.index()].load(Ordering::Acquire))
                .sum::<u64>()
                == flipped.entered
    }

    /// Hands each written label's old-phase content to `visit`, leaving that phase zeroed.
    /// Only once [`is_still`](Self::is_still).
    pub(crate) fn drain(
        &self,
        flipped: Flipped,
        buffer: &mut Vec<(u32, u64)>,
        visit: impl FnMut(Drained<'_>),
    ) {
        let Flipped { old, entered } = flipped;
        if entered == 0 {
            // No completion in the old phase: its data is still all zero from the last drain.
            return;
        }
        drain_phase(
            &self.counts[old.index()],
            self.lanes.iter().map(|lane| &lane.tallies),
            old,
            buffer,
            visit,
        );
        for lane in self.lanes.iter() {
            // Relaxed: published to the next writers of this phase by our next swap's release.
            lane.phaser.exited[old.index()].store(0, Ordering::Relaxed);
        }
    }

    /// Enters `lane`'s active phase and stays there until the guard drops (for tests: a
    /// writer stopped inside a call).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn enter_lane(&self, lane: usize) -> Entered<'_> {
        self.lanes[lane].phaser.enter()
    }

    /// Tasks started on this stripe so far, per runner. Call after flipping every stripe.
    pub(crate) fn started(&self, runner: usize) -> u64 {
        self.lanes
            .iter()
            // Relaxed: ordered after the flips' acquire, which is what in-flight needs.
            .map(|lane| lane.tallies.started[runner].load(Ordering::Relaxed))
            .sum()
    }

    /// Errors so far on this stripe, for one `(runner, kind)` label.
    pub(crate) fn errors(&self, label: usize) -> u64 {
        self.lanes
            .iter()
            // Relaxed: lone counters, each read whole.
            .map(|lane| lane.tallies.errors[label].load(Ordering::Relaxed))
            .sum()
    }
}
