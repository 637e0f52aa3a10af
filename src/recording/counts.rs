//! What a stripe counts, whichever way it is written: the two phases, one phase's HDR
//! histogram counts with the map of where they were written, and the small tallies (starts,
//! errors, exact sums).
//!
//! # Memory that follows use
//!
//! A phase's histogram counts (`COMPLETION_LABELS` × the layout's slots, 884 KiB of 32-bit
//! counts at the defaults) come from the allocator already zeroed (`calloc`): the system
//! backs a page only when it is first written, so an engine *reserves* its stripes' counts at
//! construction but makes resident only the pages that durations land in.
//!
//! The reader must not undo that by scanning every slot. Each phase keeps a bitmap of
//! *written blocks* ([`BLOCK_SLOTS`] slots each): a writer that takes a count from 0 to 1 sets
//! its block's bit, inside the same call, so the bit is as complete as the count when the
//! reader drains. The reader visits only marked blocks and clears them with their counts: its
//! scan follows the slots written, not the slots that exist, and an idle stripe costs it one
//! load per bitmap word.

use std::ops::Range;

use crate::contract::RunnerType;
use crate::layout::{COMPLETION_LABELS, ERROR_LABELS};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// One of a stripe's two copies of its completion data: writers fill the *active* phase while
/// the reader drains the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phase(bool);

impl Phase {
    /// The bit of a control word (a phaser's or a lease's) that holds its active phase; the
    /// other 63 bits are the protocol's own.
    pub(crate) const BIT: u64 = 1 << 63;

    /// The phase a control word activates.
    #[inline(always)]
    pub(crate) fn of_word(word: u64) -> Phase {
        Phase(word & Self::BIT != 0)
    }

    /// This phase as a control word's top bit.
    #[inline(always)]
    pub(crate) fn bit(self) -> u64 {
        u64::from(self.0) << 63
    }

    /// The other phase.
    pub(crate) fn other(self) -> Phase {
        Phase(!self.0)
    }

    /// 0 or 1: the index of this phase's data.
    #[inline(always)]
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Slots per block of the written-blocks bitmap: 64 bytes of 32-bit counts (one cache line),
/// 128 of 64-bit. Small, because the drain reads every slot of a marked block and a busy
/// interval's durations are spread thin (about one per block); the bitmap stays small too
/// (18 words per label at the defaults).
pub(crate) const BLOCK_SLOTS: usize = 16;

/// A histogram count, 32-bit on a leased stripe and 64-bit on a shared one.
pub(crate) trait Count: Sized {
    /// `len` zero counts. Outside loom, zeroed memory from the allocator, not written.
    fn zeroed(len: usize) -> Box<[Self]>;
    /// The count, left at zero.
    fn take(&self) -> u64;
}

macro_rules! count {
    ($atomic:ty) => {
        impl Count for $atomic {
            fn zeroed(len: usize) -> Box<[Self]> {
                #[cfg(not(loom))]
                return bytemuck::allocation::zeroed_slice_box(len);
                #[cfg(loom)]
                return (0..len).map(|_| <$atomic>::new(0)).collect();
            }
            #[inline(always)]
            fn take(&self) -> u64 {
                let count = self.load(Ordering::Relaxed);
                self.store(0, Ordering::Relaxed);
                u64::from(count)
            }
        }
    };
}
count!(AtomicU32);
count!(AtomicU64);

/// One phase's histogram counts for every completion label, label-major, and the bitmap of
/// the blocks written since the last drain (module docs). Aligned to 64 bytes, so that a
/// stripe's two phases are a shift apart: one instruction fewer on the hot path.
#[repr(align(64))]
pub(crate) struct HistogramCounts<C> {
    counts: Box<[C]>,
    /// Per label, `words_per_label` words; bit `b` of the label's word `w` covers the slots
    /// `(64 w + b) * BLOCK_SLOTS ..` of its histogram.
    written: Box<[AtomicU64]>,
    slots_per_histogram: usize,
    words_per_label: usize,
}

impl<C: Count> HistogramCounts<C> {
    pub(crate) fn new(slots_per_histogram: usize) -> Self {
        let words_per_label = slots_per_histogram.div_ceil(BLOCK_SLOTS).div_ceil(64);
        HistogramCounts {
            counts: C::zeroed(COMPLETION_LABELS * slots_per_histogram),
            written: (0..COMPLETION_LABELS * words_per_label)
                .map(|_| AtomicU64::new(0))
                .collect(),
            slots_per_histogram,
            words_per_label,
        }
    }

    /// Bytes reserved for `slots_per_histogram` slots per histogram (resident: see the
    /// module docs).
    pub(crate) fn reserved_bytes(slots_per_histogram: usize) -> usize {
        let words = COMPLETION_LABELS * slots_per_histogram.div_ceil(BLOCK_SLOTS).div_ceil(64);
        COMPLETION_LABELS * slots_per_histogram * std::mem::size_of::<C>()
            + words * std::mem::size_of::<AtomicU64>()
    }

    /// The count of `slot` in `label`'s histogram.
    #[inline(always)]
    pub(crate) fn count(&self, label: usize, slot: usize) -> &C {
        &self.counts[label * self.slots_per_histogram + slot]
    }

    /// [`count`](Self::count), or `None` past the end of the counts (never, for a label and
    /// a slot of the layout): the hot path sends that to its cold path, which panics on it,
    /// rather than checking on its own, which compiles to more instructions.
    #[inline(always)]
    pub(crate) fn get(&self, label: usize, slot: usize) -> Option<&C> {
        self.counts.get(label * self.slots_per_histogram + slot)
    }

    /// The bitmap word and bit of the block holding `slot` of `label`'s histogram.
    #[inline(always)]
    fn block_bit(&self, label: usize, slot: usize) -> (&AtomicU64, u64) {
        let block = slot / BLOCK_SLOTS;
        (
            &self.written[label * self.words_per_label + block / 64],
            1 << (block % 64),
        )
    }

    /// Marks the block of `slot` written, by the one writer of this phase (a leased stripe's
    /// holder, inside its call): a plain load and store.
    #[inline]
    pub(crate) fn mark_written_single_writer(&self, label: usize, slot: usize) {
        let (word, bit) = self.block_bit(label, slot);
        // Relaxed: the lease protocol orders it with the count (see `leased`).
        word.store(word.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
    }

    /// Marks the block of `slot` written, by one of several writers (a shared stripe's, inside
    /// its phase).
    #[inline]
    pub(crate) fn mark_written_shared(&self, label: usize, slot: usize) {
        let (word, bit) = self.block_bit(label, slot);
        // Relaxed: published with the count by the writer's release exit (see `shared`).
        word.fetch_or(bit, Ordering::Relaxed);
    }

    /// Moves `label`'s non-zero counts into `out` as `(slot, count)`, in slot order, leaving
    /// them and the label's bitmap zero; returns how many. Visits marked blocks only. Nobody
    /// may write this phase meanwhile.
    pub(crate) fn take_label(&self, label: usize, out: &mut Vec<(u32, u64)>) -> usize {
        let histogram =
            &self.counts[label * self.slots_per_histogram..(label + 1) * self.slots_per_histogram];
        let words = &self.written[label * self.words_per_label..(label + 1) * self.words_per_label];

        let mut found = 0;
        for (word_index, word) in words.iter().enumerate() {
            // Relaxed: ordered by the protocol that handed this phase to the reader.
            let mut marked = word.load(Ordering::Relaxed);
            if marked == 0 {
                continue;
            }
            word.store(0, Ordering::Relaxed);
            // Room for every slot of this word's blocks: the buffer grows with the blocks
            // written at once, not with the layout.
            let room = found + marked.count_ones() as usize * BLOCK_SLOTS;
            if out.len() < room {
                out.resize(room, (0, 0));
            }
            while marked != 0 {
                let block = word_index * 64 + marked.trailing_zeros() as usize;
                marked &= marked - 1;
                let slots = block_range(block, self.slots_per_histogram);
                found += take_non_zero(&histogram[slots.clone()], slots.start, &mut out[found..]);
            }
        }
        found
    }
}

fn block_range(block: usize, slots_per_histogram: usize) -> Range<usize> {
    block * BLOCK_SLOTS..((block + 1) * BLOCK_SLOTS).min(slots_per_histogram)
}

/// Moves the non-zero counts of `counts` (slots `first_slot..`) into `out`; returns how many.
/// Each slot is taken and appended without a branch: a zero lands in `out` and is
/// overwritten by the next.
fn take_non_zero<C: Count>(counts: &[C], first_slot: usize, out: &mut [(u32, u64)]) -> usize {
    let mut found = 0;
    for (offset, count) in counts.iter().enumerate() {
        let value = count.take();
        out[found] = ((first_slot + offset) as u32, value);
        found += usize::from(value != 0);
    }
    found
}

/// The exact sum and the clamped count of one completion label in one phase.
#[derive(Default)]
pub(crate) struct CompletionCell {
    /// The sum modulo 2^64...
    pub(crate) sum_low: AtomicU64,
    /// ...and how many times it wrapped: with `sum_low`, an exact 128-bit sum.
    pub(crate) sum_high: AtomicU64,
    pub(crate) clamped: AtomicU64,
}

impl CompletionCell {
    /// The sum and the clamped count, left at zero. Nobody may write this phase meanwhile.
    pub(crate) fn take(&self) -> (u128, u64) {
        // Relaxed: ordered by the protocol that handed this phase to the reader.
        let sum_low = self.sum_low.load(Ordering::Relaxed);
        let sum_high = self.sum_high.load(Ordering::Relaxed);
        let clamped = self.clamped.load(Ordering::Relaxed);
        self.sum_low.store(0, Ordering::Relaxed);
        self.sum_high.store(0, Ordering::Relaxed);
        self.clamped.store(0, Ordering::Relaxed);
        ((u128::from(sum_high) << 64) | u128::from(sum_low), clamped)
    }
}

/// The small words of one writer group (a leased stripe, or a lane of a shared one): its
/// monotonic start and error counters and, per phase and completion label, a
/// [`CompletionCell`]. Each word on a line of its own: a writer touches a few of them per call.
/// `repr(C)`, cells first (see `LeasedStripe`).
#[repr(C)]
pub(crate) struct Tallies {
    pub(crate) cells: [[CachePadded<CompletionCell>; COMPLETION_LABELS]; 2],
    pub(crate) started: [CachePadded<AtomicU64>; RunnerType::COUNT],
    pub(crate) errors: [CachePadded<AtomicU64>; ERROR_LABELS],
}

impl Tallies {
    pub(crate) fn new() -> Self {
        let cells = || std::array::from_fn(|_| CachePadded::new(CompletionCell::default()));
        Tallies {
            started: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            errors: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            cells: [cells(), cells()],
        }
    }

    /// `label`'s cell in `phase`.
    #[inline(always)]
    pub(crate) fn cell(&self, phase: Phase, label: usize) -> &CompletionCell {
        &self.cells[phase.index()][label]
    }
}

/// Hands each written label's content in `phase` to `visit`, leaving it zero: its counts from
/// `counts` and its sums and clamped counts from every writer group's `tallies` (one on a
/// leased stripe, one per lane on a shared one). Labels with no count are skipped: a
/// completion always counts, so such a label has no sum either. Nobody may write this phase
/// meanwhile.
pub(crate) fn drain_phase<'t, C: Count>(
    counts: &HistogramCounts<C>,
    tallies: impl Iterator<Item = &'t Tallies> + Clone,
    phase: Phase,
    buffer: &mut Vec<(u32, u64)>,
    mut visit: impl FnMut(Drained<'_>),
) {
    for label in 0..COMPLETION_LABELS {
        let found = counts.take_label(label, buffer);
        if found == 0 {
            continue;
        }
        let (mut sum, mut clamped) = (0_u128, 0_u64);
        for group in tallies.clone() {
            let (group_sum, group_clamped) = group.cell(phase, label).take();
            // Saturating: group sums add past 2^128 ms only beyond any real run.
            sum = sum.saturating_add(group_sum);
            clamped += group_clamped;
        }
        visit(Drained {
            label,
            sum,
            clamped,
            slots: &buffer[..found],
        });
    }
}

/// What the reader drains from one stripe for one completion label.
pub(crate) struct Drained<'a> {
    pub(crate) label: usize,
    pub(crate) sum: u128,
    pub(crate) clamped: u64,
    /// `(slot, count)` of every non-zero slot, in slot order.
    pub(crate) slots: &'a [(u32, u64)],
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Model comparison: whatever slots are written, the drain returns exactly the non-zero
    /// counts, in slot order, and leaves everything zero, including blocks at the ragged end.
    #[test]
    fn a_drain_returns_exactly_the_marked_counts_and_leaves_zero() {
        use proptest::prelude::*;
        let slots = 5 * BLOCK_SLOTS + 17;
        proptest!(|(writes in proptest::collection::vec((0..COMPLETION_LABELS, 0..slots), 0..200))| {
            let counts = HistogramCounts::<AtomicU32>::new(slots);
            let mut model = vec![vec![0_u64; slots]; COMPLETION_LABELS];
            for &(label, slot) in &writes {
                let count = counts.count(label, slot);
                let before = count.load(Ordering::Relaxed);
                count.store(before + 1, Ordering::Relaxed);
                if before == 0 {
                    counts.mark_written_single_writer(label, slot);
                }
                model[label][slot] += 1;
            }
            let mut buffer = Vec::new();
            for (label, model) in model.iter().enumerate() {
                let found = counts.take_label(label, &mut buffer);
                let expected: Vec<(u32, u64)> = model
                    .iter()
                    .enumerate()
                    .filter(|(_, count)| **count != 0)
                    .map(|(slot, count)| (slot as u32, *count))
                    .collect();
                prop_assert_eq!(&buffer[..found], &expected[..]);
                prop_assert_eq!(counts.take_label(label, &mut buffer), 0);
            }
            prop_assert!(counts.counts.iter().all(|c| c.load(Ordering::Relaxed) == 0));
            prop_assert!(counts.written.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        });
    }
}
