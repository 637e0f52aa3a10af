//! One label's duration counts, kept sparse: the non-empty 64-slot blocks of its HDR layout,
//! each behind an `Arc`, so that the views and snapshots holding the same counts share them.
//!
//! # Costs
//!
//! With `b` the label's non-empty blocks (at most 288 at the default layout, 3,584 at 4
//! significant digits, and in practice the few dozen that a runner's durations land in):
//! - cloning: one reference count per block; an empty label costs O(1) everywhere;
//! - adding another label's counts: its blocks, each copied (512 bytes) only if still shared;
//! - subtracting counts that share blocks with these: a shared block is dropped unread;
//! - a quantile or a bucket bound: whole blocks skipped by their totals, then one block
//!   scanned: O(b + 64);
//! - [`DurationCounts::histogram`]: the full `hdrhistogram::Histogram` is built on first call
//!   only (144 KiB at the defaults) and kept with the counts.
//!
//! A cut's interval holds its counts loose, as one sorted `(slot, count)` list a label: an
//! interval touches about one slot a block, and a block of its own for each would cost an
//! allocation per slot. Adding an interval to the cumulative view reads the list; its blocks
//! are built on the first read by block (a quantile, a bucket bound) and kept; the slots, the
//! minimum, the maximum and the mean are read from the list.
//!
//! Every figure equals what `hdrhistogram` computes from a histogram of the same values: the
//! model tests beside this module compare them.

use std::sync::{Arc, OnceLock};

use hdrhistogram::Histogram;

use crate::layout::HdrLayout;

/// Slots per block. Larger than the recording's written blocks: a snapshot pays an allocation
/// per block it copies, and smaller blocks here meant more of them for the same durations.
const BLOCK_SLOTS: usize = 64;

/// One block's counts and their total.
#[derive(Clone)]
struct Block {
    counts: [u64; BLOCK_SLOTS],
    total: u64,
}

impl Block {
    const EMPTY: Block = Block {
        counts: [0; BLOCK_SLOTS],
        total: 0,
    };

    fn add(&mut self, other: &Block) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    fn subtract(&mut self, older: &Block) {
        for (mine, theirs) in self.counts.iter_mut().zip(&older.counts) {
            *mine -= theirs;
        }
        self.total -= older.total;
    }
}

/// One non-empty slot of a label's durations: the range of values it stands for, in ms, and
/// how many completions fell in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotCount {
    /// The lowest value of the slot (hdrhistogram's `lowest_equivalent`).
    pub lowest_ms: u64,
    /// The highest value of the slot (hdrhistogram's `highest_equivalent`).
    pub highest_ms: u64,
    /// Completions in the slot.
    pub count: u64,
}

/// The durations of one `(runner, outcome)` in one view, as the non-empty slots of the
/// engine's HDR layout: what exports read instead of a full histogram.
///
/// Every statistic equals `hdrhistogram`'s for a `Histogram<u64>` holding the same values,
/// which [`histogram`](Self::histogram) builds (once) when a caller needs one. Memory and
/// costs follow the blocks of 64 slots that hold a count, never the layout: an empty label
/// costs O(1), a quantile O(non-empty blocks + 64).
///
/// ```
/// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
///
/// let metrics = AtomicMetrics::new();
/// for ms in [3, 3, 40, 2_500] {
///     metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, ms);
/// }
/// let snapshot = metrics.snapshot();
/// let counts = snapshot.cumulative().duration_counts(RunnerType::Wasm, TaskOutcome::Success);
/// assert_eq!(counts.len(), 4);
/// assert_eq!(counts.value_at_quantile(0.5), 3);
/// assert_eq!(counts.max(), 2_501); // the top of 2,500's slot, 2 ms wide at 3 digits
/// let slots: Vec<(u64, u64)> = counts.iter().map(|s| (s.lowest_ms, s.count)).collect();
/// assert_eq!(slots, [(3, 2), (40, 1), (2_500, 1)]);
/// ```
pub struct DurationCounts {
    layout: HdrLayout,
    /// The non-empty blocks, by block index ascending; for loose counts, built from them on
    /// first read. Set whenever `loose` is `None`.
    blocks: OnceLock<Vec<(u32, Arc<Block>)>>,
    /// Counts kept as `(slot, count)`, ascending, each slot once, instead of in blocks: an
    /// interval's, whose few counts per block would each cost a block of their own. Adding
    /// them to a view in blocks reads them from here, so an interval nobody reads by block
    /// never builds its blocks.
    loose: Option<Arc<Vec<(u32, u64)>>>,
    /// Whether `loose` was added to since it was last sorted ([`settle`](Self::settle)): a cut
    /// appends each stripe's slots and sorts once at the end, so that many stripes cost one
    /// sort, not a merge of the whole list per stripe.
    unsettled: bool,
    total: u64,
    /// The full histogram, built on first use.
    dense: OnceLock<Histogram<u64>>,
}

impl Clone for DurationCounts {
    /// Shares every block and the loose counts; the built histogram, if any, is not copied.
    fn clone(&self) -> Self {
        DurationCounts {
            layout: self.layout,
            blocks: self.blocks.clone(),
            loose: self.loose.clone(),
            unsettled: self.unsettled,
            total: self.total,
            dense: OnceLock::new(),
        }
    }
}

impl DurationCounts {
    pub(crate) fn empty(layout: HdrLayout) -> Self {
        DurationCounts {
            layout,
            blocks: OnceLock::from(Vec::new()),
            loose: None,
            unsettled: false,
            total: 0,
            dense: OnceLock::new(),
        }
    }

    /// The significant decimal digits of the engine's layout.
    #[cfg_attr(
        not(any(feature = "native-histograms", feature = "hlog", feature = "json")),
        allow(dead_code)
    )]
    pub(crate) fn significant_digits(&self) -> u8 {
        self.layout.significant_digits()
    }

    /// The configured top of the range (hdrhistogram's `highest_trackable_value`).
    #[cfg_attr(
        not(any(feature = "native-histograms", feature = "hlog")),
        allow(dead_code)
    )]
    pub(crate) fn highest_trackable(&self) -> u64 {
        self.layout.highest()
    }

    /// The blocks, built from the loose counts on first call.
    fn blocks(&self) -> &[(u32, Arc<Block>)] {
        self.blocks.get_or_init(|| {
            debug_assert!(
                !self.unsettled,
                "loose counts read before they were settled"
            );
            let loose = self.loose.as_deref().map_or(&[][..], Vec::as_slice);
            let mut blocks: Vec<(u32, Arc<Block>)> = Vec::new();
            for &(slot, count) in loose {
                let index = slot / BLOCK_SLOTS as u32;
                if blocks.last().is_none_or(|(last, _)| *last != index) {
                    blocks.push((index, Arc::new(Block::EMPTY)));
                }
                let (_, block) = blocks.last_mut().expect("pushed above");
                let block = Arc::get_mut(block).expect("built here, not shared yet");
                block.counts[slot as usize % BLOCK_SLOTS] += count;
                block.total += count;
            }
            blocks
        })
    }

    /// The blocks, to change: loose counts are moved into blocks first.
    fn blocks_mut(&mut self) -> &mut Vec<(u32, Arc<Block>)> {
        if self.loose.is_some() {
            self.settle();
            self.blocks();
            self.loose = None;
        }
        self.blocks
            .get_mut()
            .expect("counts that are not loose have their blocks")
    }

    /// `(slot index, count)` of the non-empty slots, in slot order.
    /// Loose counts are walked as they are, without building their blocks: what the
    /// interval-log sink reads of every interval.
    pub(crate) fn slots(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        debug_assert!(
            !self.unsettled,
            "loose counts read before they were settled"
        );
        let loose = self.loose.as_deref();
        let in_blocks = loose.is_none().then(|| {
            self.blocks().iter().flat_map(|(index, block)| {
                let first = *index as usize * BLOCK_SLOTS;
                (block.counts.iter().enumerate())
                    .filter(|&(_, &count)| count != 0)
                    .map(move |(offset, &count)| (first + offset, count))
            })
        });
        let loose = loose.into_iter().flatten();
        (loose.map(|&(slot, count)| (slot as usize, count))).chain(in_blocks.into_iter().flatten())
    }

    /// Completions counted.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether no completion is counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The non-empty slots, by value ascending.
    pub fn iter(&self) -> impl Iterator<Item = SlotCount> + '_ {
        self.slots()
            .map(move |(slot, count)| self.slot_count(slot, count))
    }

    fn slot_count(&self, slot: usize, count: u64) -> SlotCount {
        SlotCount {
            lowest_ms: self.layout.value_at(slot),
            highest_ms: self.layout.highest_at(slot),
            count,
        }
    }

    /// The lowest value counted (the lowest of its slot), or 0 when empty:
    /// `Histogram::min`.
    pub fn min(&self) -> u64 {
        self.iter().next().map_or(0, |slot| slot.lowest_ms)
    }

    /// The highest value counted (the highest of its slot), or 0 when empty:
    /// `Histogram::max`.
    pub fn max(&self) -> u64 {
        if let Some(&(slot, _)) = self.loose.as_deref().and_then(|loose| loose.last()) {
            return self.layout.highest_at(slot as usize);
        }
        let Some((index, block)) = self.blocks().last() else {
            return 0;
        };
        let offset = block
            .counts
            .iter()
            .rposition(|&count| count != 0)
            .expect("a stored block is non-empty");
        self.layout
            .highest_at(*index as usize * BLOCK_SLOTS + offset)
    }

    /// The mean, each slot counted at its middle, or 0 when empty: `Histogram::mean`, to the
    /// last bit (the same sum in the same order).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let total = self.total as f64;
        self.iter().fold(0.0_f64, |mean, slot| {
            let width = slot.highest_ms - slot.lowest_ms + 1;
            let median = slot.lowest_ms + (width >> 1);
            mean + median as f64 * slot.count as f64 / total
        })
    }

    /// The value at `quantile` (capped at 1): the highest value of the first slot at which
    /// the running count reaches `ceil(quantile × len)` (at least 1), or the lowest for
    /// quantile 0; 0 when empty. `Histogram::value_at_quantile`.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        self.value_at(quantile, &mut RankWalk::default())
    }

    /// [`value_at_quantile`](Self::value_at_quantile) of each of `quantiles`, in one walk
    /// over the blocks when they are in ascending order (as `hdrhistogram`'s
    /// `value_at_quantiles`); a quantile below the one before it starts the walk again.
    pub fn values_at_quantiles(&self, quantiles: &[f64]) -> Vec<u64> {
        let mut walk = RankWalk::default();
        quantiles
            .iter()
            .map(|&quantile| self.value_at(quantile, &mut walk))
            .collect()
    }

    /// The value at `quantile`, walking on from where `walk` stopped.
    fn value_at(&self, quantile: f64, walk: &mut RankWalk) -> u64 {
        let quantile = if quantile > 1.0 { 1.0 } else { quantile };
        let rank = ((quantile * self.total as f64).ceil() as u64).max(1);
        match walk.slot_of_rank(self.blocks(), rank) {
            Some(slot) if quantile == 0.0 => self.layout.value_at(slot),
            Some(slot) => self.layout.highest_at(slot),
            None => 0,
        }
    }

    /// Completions whose slot starts at or below `value_ms`: what a Prometheus bucket with
    /// that upper bound counts.
    pub fn count_at_or_below(&self, value_ms: u64) -> u64 {
        let Some(last) = self.last_slot_at_or_below(value_ms) else {
            return 0;
        };
        let (last_block, last_offset) = (last / BLOCK_SLOTS, last % BLOCK_SLOTS);
        let mut count = 0;
        for (index, block) in self.blocks() {
            let index = *index as usize;
            if index < last_block {
                count += block.total;
            } else {
                if index == last_block {
                    count += block.counts[..=last_offset].iter().sum::<u64>();
                }
                break;
            }
        }
        count
    }

    /// The last slot of the layout whose lowest value is at most `value_ms`.
    fn last_slot_at_or_below(&self, value_ms: u64) -> Option<usize> {
        let slots = self.layout.len();
        if value_ms >= self.layout.value_at(slots) {
            return Some(slots - 1);
        }
        Some(self.layout.index_of(value_ms))
    }

    /// These counts as an `hdrhistogram::Histogram` of the engine's layout, built on first
    /// call and kept (the layout's size: 144 KiB at the defaults).
    pub fn histogram(&self) -> &Histogram<u64> {
        self.dense.get_or_init(|| {
            let mut histogram = self.layout.empty_histogram();
            for slot in self.iter() {
                histogram
                    .record_n(slot.lowest_ms, slot.count)
                    .expect("a slot's value lies within the layout's range");
            }
            histogram
        })
    }

    /// Adds `(slot, count)` pairs (in slot order, each slot once, no zero count: a stripe's
    /// drain) and keeps them loose when these counts are loose or empty: what a cut adds to
    /// the interval it builds. The counts must be [settled](Self::settle) before they are read.
    pub(crate) fn add_loose(&mut self, slots: &[(u32, u64)]) {
        debug_assert!(
            slots.windows(2).all(|pair| pair[0].0 < pair[1].0)
                && slots.iter().all(|&(_, count)| count != 0),
            "a drain's slots are ascending, once each, none empty"
        );
        if slots.is_empty() {
            return;
        }
        if self.loose.is_none() && self.total != 0 {
            self.add_slots(slots);
            return;
        }
        self.dense = OnceLock::new();
        self.blocks = OnceLock::new();
        self.total += slots.iter().map(|&(_, count)| count).sum::<u64>();
        match &mut self.loose {
            Some(loose) => {
                Arc::make_mut(loose).extend_from_slice(slots);
                self.unsettled = true;
            }
            None => self.loose = Some(Arc::new(slots.to_vec())),
        }
    }

    /// Whether loose counts were added since the last [`settle`](Self::settle).
    pub(crate) fn is_unsettled(&self) -> bool {
        self.unsettled
    }

    /// Sorts the loose counts added since the last call and adds up the slots found twice.
    pub(crate) fn settle(&mut self) {
        if !self.unsettled {
            return;
        }
        self.unsettled = false;
        let Some(loose) = &mut self.loose else {
            return;
        };
        let loose = Arc::make_mut(loose);
        loose.sort_unstable_by_key(|&(slot, _)| slot);
        loose.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
    }

    /// Adds `(slot, count)` pairs, in slot order.
    pub(crate) fn add_slots(&mut self, slots: &[(u32, u64)]) {
        self.dense = OnceLock::new();
        let mut rest = slots;
        while let Some(&(first, _)) = rest.first() {
            let index = first / BLOCK_SLOTS as u32;
            let in_block = rest
                .iter()
                .position(|&(slot, _)| slot / BLOCK_SLOTS as u32 != index)
                .unwrap_or(rest.len());
            let block = self.block_mut(index);
            let before = block.total;
            for &(slot, count) in &rest[..in_block] {
                block.counts[slot as usize % BLOCK_SLOTS] += count;
                block.total += count;
            }
            self.total += block.total - before;
            rest = &rest[in_block..];
        }
    }

    /// The block of `index`, inserted empty if absent, unshared.
    fn block_mut(&mut self, index: u32) -> &mut Block {
        let blocks = self.blocks_mut();
        let at = match blocks.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => at,
            Err(at) => {
                blocks.insert(at, (index, Arc::new(Block::EMPTY)));
                at
            }
        };
        Arc::make_mut(&mut blocks[at].1)
    }

    /// Adds `other`'s counts: a block these lack is shared, not copied.
    pub(crate) fn add(&mut self, other: &DurationCounts) {
        if other.total == 0 {
            return;
        }
        if let Some(loose) = &other.loose {
            // Loose counts are added slot by slot: their own blocks are never built.
            self.add_slots(loose);
            return;
        }
        self.dense = OnceLock::new();
        self.total += other.total;
        if self.total == other.total {
            self.blocks = other.blocks.clone();
            self.loose = None;
            return;
        }
        if self.add_in_place(other) {
            return;
        }
        let theirs_blocks = other.blocks();
        let blocks = self.blocks_mut();
        let mut merged = Vec::with_capacity(blocks.len() + theirs_blocks.len());
        let mut mine = std::mem::take(blocks).into_iter().peekable();
        for (index, theirs) in theirs_blocks {
            while let Some(before) = mine.next_if(|(at, _)| at < index) {
                merged.push(before);
            }
            match mine.next_if(|(at, _)| at == index) {
                Some((_, mut block)) => {
                    Arc::make_mut(&mut block).add(theirs);
                    merged.push((*index, block));
                }
                None => merged.push((*index, Arc::clone(theirs))),
            }
        }
        merged.extend(mine);
        *self.blocks_mut() = merged;
    }

    /// Adds `other`'s blocks where these have a block of the same index already, walking
    /// both lists once; returns `false`, having added nothing, if one of `other`'s blocks is
    /// new here (the caller merges the lists instead).
    fn add_in_place(&mut self, other: &DurationCounts) -> bool {
        let theirs_blocks = other.blocks();
        let blocks = self.blocks_mut();
        let mut mine = 0;
        let mut positions = Vec::with_capacity(theirs_blocks.len());
        for (index, _) in theirs_blocks {
            while blocks.get(mine).is_some_and(|(at, _)| at < index) {
                mine += 1;
            }
            match blocks.get(mine) {
                Some((at, _)) if at == index => positions.push(mine),
                _ => return false,
            }
        }
        for (&at, (_, theirs)) in positions.iter().zip(theirs_blocks) {
            Arc::make_mut(&mut blocks[at].1).add(theirs);
        }
        true
    }

    /// Subtracts `older`, whose every count these hold: a block shared with `older` is
    /// dropped without being read.
    pub(crate) fn subtract(&mut self, older: &DurationCounts) {
        if older.total == 0 {
            return;
        }
        self.dense = OnceLock::new();
        self.total -= older.total;
        let mut theirs = older.blocks().iter().peekable();
        self.blocks_mut().retain_mut(|(index, block)| {
            let Some((_, old)) = theirs.next_if(|(at, _)| at == index) else {
                return true;
            };
            if Arc::ptr_eq(block, old) {
                return false;
            }
            let block = Arc::make_mut(block);
            block.subtract(old);
            block.total != 0
        });
        assert!(
            theirs.next().is_none(),
            "a view holds every block of what is subtracted from it"
        );
    }

    /// Adds to `seen` these counts' own bytes, their block list, the blocks `seen` has not
    /// counted yet, and the built histogram if any.
    pub(crate) fn count_memory(&self, seen: &mut Allocations) {
        seen.bytes += std::mem::size_of::<Self>();
        if let Some(loose) = &self.loose
            && seen.first(Arc::as_ptr(loose))
        {
            seen.bytes += arc_allocation::<Vec<(u32, u64)>>()
                + loose.capacity() * std::mem::size_of::<(u32, u64)>();
        }
        if let Some(blocks) = self.blocks.get() {
            seen.bytes += blocks.capacity() * std::mem::size_of::<(u32, Arc<Block>)>();
            for (_, block) in blocks {
                if seen.first(Arc::as_ptr(block)) {
                    seen.bytes += arc_allocation::<Block>();
                }
            }
        }
        if let Some(histogram) = self.dense.get() {
            seen.bytes += histogram.distinct_values() * std::mem::size_of::<u64>();
        }
    }
}

/// The allocations counted so far by a memory count that visits shared ones more than once.
#[derive(Default)]
pub(crate) struct Allocations {
    counted: std::collections::HashSet<usize>,
    pub(crate) bytes: usize,
}

impl Allocations {
    /// Whether `allocation` is seen for the first time.
    pub(crate) fn first<T: ?Sized>(&mut self, allocation: *const T) -> bool {
        self.counted.insert(allocation.cast::<()>() as usize)
    }
}

/// Where a search for ranks in a label's blocks stands: the next block to look at and the
/// count in the blocks before it. Ranks searched in ascending order walk the blocks once.
#[derive(Default)]
struct RankWalk {
    at: usize,
    below: u64,
}

impl RankWalk {
    /// The first slot at which the running count reaches `rank`, or `None` past the total.
    fn slot_of_rank(&mut self, blocks: &[(u32, Arc<Block>)], rank: u64) -> Option<usize> {
        if rank <= self.below {
            *self = RankWalk::default();
        }
        while let Some((_, block)) = blocks.get(self.at) {
            if self.below + block.total >= rank {
                break;
            }
            self.below += block.total;
            self.at += 1;
        }
        let (index, block) = blocks.get(self.at)?;
        let mut running = self.below;
        let offset = block.counts.iter().position(|&count| {
            running += count;
            running >= rank
        })?;
        Some(*index as usize * BLOCK_SLOTS + offset)
    }
}

/// The bytes of one `Arc<T>` allocation: the value and its two reference counts.
pub(crate) const fn arc_allocation<T>() -> usize {
    std::mem::size_of::<T>() + 2 * std::mem::size_of::<usize>()
}

impl std::fmt::Debug for DurationCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurationCounts")
            .field("len", &self.total)
            .field("blocks", &self.blocks.get().map(Vec::len))
            .field("loose", &self.loose.as_ref().map(|loose| loose.len()))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn counts(layout: HdrLayout, values: &[u64]) -> DurationCounts {
        let mut slots: Vec<(u32, u64)> = values
            .iter()
            .map(|&v| (layout.index_of(v) as u32, 1))
            .collect();
        slots.sort_unstable();
        let mut counts = DurationCounts::empty(layout);
        counts.add_slots(&slots);
        counts
    }

    /// A block that two label counts share is not copied by a clone, is copied (and the
    /// other left alone) by an add, and is dropped unread by a subtract.
    #[test]
    fn blocks_are_shared_until_written() {
        let layout = HdrLayout::new(86_400_000, 3);
        let older = counts(layout, &[1, 2, 5_000]);
        let mut newer = older.clone();
        assert!(Arc::ptr_eq(&older.blocks()[0].1, &newer.blocks()[0].1));
        newer.add(&counts(layout, &[3]));
        assert!(!Arc::ptr_eq(&older.blocks()[0].1, &newer.blocks()[0].1));
        assert!(Arc::ptr_eq(&older.blocks()[1].1, &newer.blocks()[1].1));
        assert_eq!(older.len(), 3);
        assert_eq!(older.blocks()[0].1.counts[3], 0);
        newer.subtract(&older);
        assert_eq!(newer.len(), 1);
        assert_eq!(
            newer.blocks().len(),
            1,
            "the shared block is gone, the emptied one too"
        );
        assert_eq!(newer.iter().map(|s| s.lowest_ms).collect::<Vec<_>>(), [3]);
    }

    /// Loose counts (a cut's interval) merge as they are added, read as the same counts in
    /// blocks would, and are added to counts in blocks without building blocks of their own.
    #[test]
    fn loose_counts_read_as_blocks_and_add_without_blocks() {
        let layout = HdrLayout::new(86_400_000, 3);
        let values = [1, 2, 2, 70, 5_000, 5_000, 90_000];
        let slot = |v: u64| layout.index_of(v) as u32;
        let mut loose = DurationCounts::empty(layout);
        loose.add_loose(&[(slot(2), 1), (slot(5_000), 1), (slot(90_000), 1)]);
        loose.add_loose(&[(slot(1), 1), (slot(2), 1), (slot(70), 1), (slot(5_000), 1)]);
        loose.settle();
        assert_eq!(
            loose.loose.as_deref().map(Vec::len),
            Some(5),
            "one entry a slot"
        );
        let in_blocks = counts(layout, &values);
        assert_eq!(loose.len(), in_blocks.len());
        let mut cumulative = counts(layout, &[3, 4_000]);
        cumulative.add(&loose);
        assert!(
            loose.blocks.get().is_none(),
            "the interval's blocks were built"
        );
        assert_eq!(cumulative.len(), 9);
        assert_eq!(
            loose.iter().collect::<Vec<_>>(),
            in_blocks.iter().collect::<Vec<_>>()
        );
        assert_eq!(loose.max(), in_blocks.max());
        assert_eq!(loose.mean(), in_blocks.mean());
        assert!(
            loose.blocks.get().is_none(),
            "walking the slots built blocks"
        );
        for quantile in [0.0, 0.3, 0.5, 0.99, 1.0] {
            assert_eq!(
                loose.value_at_quantile(quantile),
                in_blocks.value_at_quantile(quantile)
            );
        }
        assert_eq!(loose.count_at_or_below(70), in_blocks.count_at_or_below(70));
        // Counts in blocks take loose ones into their blocks.
        let mut both = in_blocks.clone();
        both.add_loose(&[(slot(1), 2)]);
        assert!(both.loose.is_none());
        assert_eq!(both.len(), 9);
        // Loose counts taking counts in blocks become blocks.
        let mut grown = loose.clone();
        grown.add(&in_blocks);
        assert!(grown.loose.is_none());
        assert_eq!(grown.len(), 14);
        assert_eq!(
            grown.value_at_quantile(1.0),
            in_blocks.value_at_quantile(1.0)
        );
    }

    #[test]
    fn an_empty_label_reads_as_an_empty_histogram() {
        let layout = HdrLayout::new(86_400_000, 3);
        let empty = DurationCounts::empty(layout);
        let dense = layout.empty_histogram();
        assert_eq!(empty.min(), dense.min());
        assert_eq!(empty.max(), dense.max());
        assert_eq!(empty.mean(), dense.mean());
        for quantile in [0.0, 0.5, 1.0] {
            assert_eq!(
                empty.value_at_quantile(quantile),
                dense.value_at_quantile(quantile)
            );
        }
        assert_eq!(empty.count_at_or_below(u64::MAX), 0);
        assert!(*empty.histogram() == dense);
    }
}
