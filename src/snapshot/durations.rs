//! One label's duration counts, kept sparse: the non-empty 64-slot blocks of its HDR layout,
//! each behind an `Arc`, so that the views and snapshots holding the same counts share them,
//! and loose `(slot, count)` lists added on top of them and not folded in yet.
//!
//! # Costs
//!
//! With `b` the label's non-empty blocks (at most 288 at the default layout, 3,584 at 4
//! significant digits, and in practice the few dozen that a runner's durations land in) and
//! `p` the pairs of the lists pending on them:
//! - cloning: O(1), everything is shared; an empty label costs O(1) everywhere;
//! - adding an interval (a cut's loose list): O(1), the list joins the pending ones and is
//!   shared with the interval's view. At most 64 lists, or 16 pairs a block of the base, are
//!   kept pending: past that, they are folded into the blocks, each block they touch copied
//!   once (512 bytes; a fold costs O(b + p + lists × blocks touched)). A cumulative view that
//!   nothing reads by block thus copies the blocks its intervals touched once a fold (every 64
//!   snapshots, sooner when intervals are large) instead of at every snapshot. Its pending
//!   lists, and the lists its last fold took in (kept so that a window from before that fold
//!   is still those lists, see [`DurationCounts::lists_since`]), each hold at most about
//!   half the memory of its blocks;
//! - adding counts in blocks: their blocks, each copied only if still shared;
//! - subtracting counts that share blocks with these: a shared block is dropped unread;
//! - the first read by block (a quantile, a bucket bound, a slot walk of anything but a lone
//!   interval) folds the pending lists into blocks kept with the counts: O(b + p), once; when
//!   the read comes before the reader's next cut (a sink, a scrape of the latest snapshot),
//!   the next view starts from those blocks, and a read of an older snapshot folds its own
//!   copy of the blocks its lists touched;
//! - a quantile or a bucket bound: whole blocks skipped by their totals, then one block
//!   scanned: O(b + 64);
//! - [`DurationCounts::histogram`]: the full `hdrhistogram::Histogram` is built on first call
//!   only (144 KiB at the defaults) and kept with the counts.
//!
//! A cut's interval holds its counts as one loose list a label: an interval touches about
//! one slot a block, and a block of its own for each would cost an allocation per slot. Its
//! slots, minimum, maximum and mean are read from the list; its blocks are built only on a
//! read by block. The exports of the default families read neither: they read the totals and
//! the default buckets counted as the reader drained.
//!
//! Every figure equals what `hdrhistogram` computes from a histogram of the same values: the
//! model tests beside this module compare them.

mod blocks;
#[cfg(all(test, not(loom)))]
mod tests;

use std::sync::{Arc, OnceLock, Weak};

use hdrhistogram::Histogram;

use crate::layout::HdrLayout;
use blocks::{BLOCK_SLOTS, Block, Blocks, Pending, RankWalk, fold};

/// Pending lists a label keeps at most before they are folded into its blocks. The unit
/// tests fold after a few, so that their few snapshots cross folds.
const MAX_PENDING_LISTS: usize = if cfg!(test) { 4 } else { 64 };
/// Pairs a label's pending lists hold at most per block of its base before they are folded:
/// a pair is 16 bytes, a block 528 and its entry.
const PENDING_PAIRS_PER_BLOCK: usize = 16;
/// Pairs pending that never alone cause a fold: a young label with few blocks still shares
/// a few lists.
const MIN_PENDING_PAIRS: usize = if cfg!(test) { 32 } else { 1_024 };

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
    /// Counts in blocks; `None` for none (an empty list would be an allocation of its own).
    base: Option<Arc<Blocks>>,
    /// Loose lists counted on top of `base`, newest first. A cut's interval is one list on an
    /// empty base; a cumulative view adds each interval's list here.
    pending: Option<Arc<Pending>>,
    /// Whether the newest pending list was added to since it was last sorted
    /// ([`settle`](Self::settle)): a cut appends each stripe's slots and sorts once at the
    /// end, so that many stripes cost one sort, not a merge of the whole list per stripe.
    unsettled: bool,
    total: u64,
    /// `base` with the pending lists folded in, built on the first read by block.
    folded: OnceLock<Arc<Blocks>>,
    /// What `base` was last folded from, when nothing changed it since.
    folded_from: Option<FoldedFrom>,
    /// The full histogram, built on first use.
    dense: OnceLock<Histogram<u64>>,
}

impl Clone for DurationCounts {
    /// Shares the blocks and the pending lists; the built histogram, if any, is not copied.
    fn clone(&self) -> Self {
        DurationCounts {
            layout: self.layout,
            base: self.base.clone(),
            pending: self.pending.clone(),
            unsettled: self.unsettled,
            total: self.total,
            folded: self.folded.clone(),
            folded_from: self.folded_from.clone(),
            dense: OnceLock::new(),
        }
    }
}

/// The blocks a base was folded on and the lists folded into it, so that counts from before
/// the fold still find the lists added since them
/// ([`lists_since`](DurationCounts::lists_since)). The earlier blocks are held weakly: only
/// compared with blocks a caller holds, never read, and their allocation cannot be reused
/// while this is held.
#[derive(Clone)]
struct FoldedFrom {
    base: Option<Weak<Blocks>>,
    lists: Arc<Pending>,
}

impl FoldedFrom {
    /// Whether `base` is the blocks this fold started from.
    fn started_from(&self, base: &Option<Arc<Blocks>>) -> bool {
        match (&self.base, base) {
            (None, None) => true,
            (Some(earlier), Some(base)) => std::ptr::eq(earlier.as_ptr(), Arc::as_ptr(base)),
            _ => false,
        }
    }
}

impl DurationCounts {
    pub(crate) fn empty(layout: HdrLayout) -> Self {
        DurationCounts {
            layout,
            base: None,
            pending: None,
            unsettled: false,
            total: 0,
            folded: OnceLock::new(),
            folded_from: None,
            dense: OnceLock::new(),
        }
    }

    /// The most bytes one label's counts can hold in one view, every block of `layout`
    /// written: the base blocks and a fold of them (each block copied), the pending lists and
    /// the lists the last fold took in (within once and twice the bound that makes a fold), or an
    /// interval's list of every slot and its blocks; the
    /// [`histogram`](Self::histogram) once built, and the structure itself. Allocator
    /// overhead is not counted.
    pub(crate) fn worst_case_bytes(layout: &HdrLayout) -> usize {
        use std::mem::size_of;
        let arc = 2 * size_of::<usize>();
        let blocks = layout.len().div_ceil(BLOCK_SLOTS);
        let one_block = size_of::<(u32, Arc<Block>)>() + arc + size_of::<Block>();
        let block_list = arc + size_of::<Blocks>() + blocks * one_block;
        let pair = size_of::<(u32, u64)>();
        let pending_pairs = MIN_PENDING_PAIRS.max(PENDING_PAIRS_PER_BLOCK * blocks);
        let list = arc + size_of::<Pending>() + arc + size_of::<Vec<(u32, u64)>>();
        let lists = |pairs: usize| pairs * pair + MAX_PENDING_LISTS * list;
        let dense = size_of::<Histogram<u64>>() + layout.len() * size_of::<u64>();
        // Counts in blocks with lists pending; or a cut's interval: one list, a slot at most
        // once, and its blocks once read by block.
        let in_blocks = 2 * block_list + lists(pending_pairs) + lists(2 * pending_pairs);
        let interval = lists(layout.len()) + block_list;
        arc + size_of::<Self>() + in_blocks.max(interval) + dense
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
    #[cfg_attr(not(feature = "hlog"), allow(dead_code))]
    pub(crate) fn highest_trackable(&self) -> u64 {
        self.layout.highest()
    }

    /// The base blocks, without the pending lists.
    fn base(&self) -> &[(u32, Arc<Block>)] {
        self.base.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The counts as one loose list, when that is all they are: a cut's interval.
    fn loose(&self) -> Option<&[(u32, u64)]> {
        debug_assert!(
            !self.unsettled,
            "loose counts read before they were settled"
        );
        match &self.pending {
            Some(pending) if pending.earlier.is_none() && self.base().is_empty() => {
                Some(&pending.slots)
            }
            _ => None,
        }
    }

    /// The blocks, with the pending lists folded in on first call.
    fn blocks(&self) -> &[(u32, Arc<Block>)] {
        match &self.pending {
            None => self.base(),
            Some(pending) => self.fold_of(pending),
        }
    }

    /// The base with `pending`, these counts' pending lists, folded in: built once.
    fn fold_of(&self, pending: &Pending) -> &Arc<Blocks> {
        debug_assert!(
            !self.unsettled,
            "loose counts read before they were settled"
        );
        self.folded
            .get_or_init(|| Arc::new(pending.fold_into(self.base())))
    }

    /// Folds the pending lists into blocks now, kept with these counts: a caller about to
    /// change a clone of counts that other views share folds them first, so that the fold is
    /// done once for all of them (the reader's next view starts from it) instead of in the
    /// clone alone.
    pub(crate) fn fold(&self) {
        self.blocks();
    }

    /// The blocks, to change: the pending lists are folded in first, and the block list is
    /// copied if shared (its blocks stay shared until written).
    fn blocks_mut(&mut self) -> &mut Blocks {
        self.fold_pending();
        // The base changes: no longer what a fold made.
        self.folded_from = None;
        Arc::make_mut(self.base.get_or_insert_default())
    }

    /// Folds the pending lists into the base blocks.
    fn fold_pending(&mut self) {
        self.settle();
        if let Some(pending) = self.pending.clone() {
            let folded = Arc::clone(self.fold_of(&pending));
            self.take_folded(folded);
        }
        self.folded = OnceLock::new();
    }

    /// Makes `folded`, the base with the pending lists folded in, the base, and remembers
    /// where it came from.
    fn take_folded(&mut self, folded: Arc<Blocks>) {
        let lists = self.pending.take().expect("a fold of pending lists");
        // Kept within twice the bound that makes a fold (which the list that made it may take
        // them past), so that these counts hold at most three times that bound in lists (see
        // `worst_case_bytes`): a window across a fold of more falls back to subtracting blocks.
        self.folded_from = (lists.pairs <= 2 * self.pending_bound()).then(|| FoldedFrom {
            base: self.base.as_ref().map(Arc::downgrade),
            lists,
        });
        self.base = Some(folded);
        self.folded = OnceLock::new();
    }

    /// `(slot index, count)` of the non-empty slots, in slot order. A lone loose list is
    /// walked as it is, without building its blocks: what the interval-log sink reads of
    /// every interval.
    pub(crate) fn slots(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let loose = self.loose();
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
        if let Some(&(slot, _)) = self.loose().and_then(<[_]>::last) {
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
        let lone_list =
            self.base().is_empty() && self.pending.as_ref().is_some_and(|p| p.earlier.is_none());
        if self.total != 0 && !lone_list {
            self.add_slots(slots);
            return;
        }
        self.dense = OnceLock::new();
        self.folded = OnceLock::new();
        self.total += slots.iter().map(|&(_, count)| count).sum::<u64>();
        match &mut self.pending {
            Some(pending) => {
                let pending = Arc::make_mut(pending);
                Arc::make_mut(&mut pending.slots).extend_from_slice(slots);
                pending.pairs = pending.slots.len();
                self.unsettled = true;
            }
            None => self.pending = Some(Arc::new(Pending::on(Arc::new(slots.to_vec()), None))),
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
        let Some(pending) = &mut self.pending else {
            return;
        };
        let pending = Arc::make_mut(pending);
        let slots = Arc::make_mut(&mut pending.slots);
        slots.sort_unstable_by_key(|&(slot, _)| slot);
        slots.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        pending.pairs = slots.len() + pending.earlier.as_ref().map_or(0, |p| p.pairs);
    }

    /// Adds `(slot, count)` pairs, in slot order.
    pub(crate) fn add_slots(&mut self, slots: &[(u32, u64)]) {
        self.dense = OnceLock::new();
        self.fold_pending();
        let (blocks, added) = fold(self.base(), std::iter::once(slots));
        self.base = Some(Arc::new(blocks));
        self.folded_from = None;
        self.total += added;
    }

    /// Adds `other`'s counts. A lone loose list (an interval) joins the pending lists, shared;
    /// counts in blocks are added block by block, a block these lack shared, not copied.
    pub(crate) fn add(&mut self, other: &DurationCounts) {
        if other.total == 0 {
            return;
        }
        if self.total == 0 {
            *self = other.clone();
            return;
        }
        self.dense = OnceLock::new();
        if let (Some(_), Some(theirs)) = (other.loose(), &other.pending) {
            if let Some(folded) = self.folded.take() {
                // Somebody read these counts by block: the next fold starts from there.
                self.take_folded(folded);
            }
            self.settle();
            self.total += other.total;
            let earlier = self.pending.take();
            self.pending = Some(Arc::new(Pending::on(Arc::clone(&theirs.slots), earlier)));
            if self.pending_is_full() {
                self.fold_pending();
            }
            return;
        }
        self.total += other.total;
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

    /// Whether the pending lists are to be folded into the blocks now: they are bounded in
    /// number, so that a fold and a read by block after it stay cheap, and in memory, against
    /// the blocks they will be folded into.
    fn pending_is_full(&self) -> bool {
        self.pending.as_ref().is_some_and(|pending| {
            pending.lists >= MAX_PENDING_LISTS || pending.pairs >= self.pending_bound()
        })
    }

    /// The pairs pending that make a fold: at most about half the memory of the base blocks.
    fn pending_bound(&self) -> usize {
        MIN_PENDING_PAIRS.max(PENDING_PAIRS_PER_BLOCK * self.base().len())
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

    /// These counts less `older`, when these are `older` with more lists added since (an
    /// earlier cumulative view): the later lists alone, shared, with nothing folded or copied
    /// but their list nodes. Found while `older`'s blocks are these counts' base, or the
    /// blocks their last fold started from; `None` otherwise.
    pub(crate) fn lists_since(&self, older: &DurationCounts) -> Option<DurationCounts> {
        if self.unsettled || older.unsettled {
            return None;
        }
        let same_base = match (&self.base, &older.base) {
            (None, None) => true,
            (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs),
            _ => false,
        };
        // The chains to walk back to `older`'s lists: the pending ones, and past the last
        // fold, the lists it folded.
        let chains = match &self.folded_from {
            _ if same_base => [self.pending.as_ref(), None],
            Some(from) if from.started_from(&older.base) => {
                [self.pending.as_ref(), Some(&from.lists)]
            }
            _ => return None,
        };
        let mut since = Vec::new();
        let last = chains.iter().rposition(Option::is_some).unwrap_or(0);
        for (at, chain) in chains.into_iter().enumerate() {
            let mut node = chain;
            while let Some(mine) = node {
                if older
                    .pending
                    .as_ref()
                    .is_some_and(|theirs| Arc::ptr_eq(mine, theirs))
                {
                    break;
                }
                since.push(Arc::clone(&mine.slots));
                node = mine.earlier.as_ref();
            }
            // Stopped at `older`'s newest list, or walked to the end when it has none.
            let reached = node.is_some() == older.pending.is_some();
            if at == last {
                if !reached {
                    return None;
                }
            } else if node.is_some() {
                // `older`'s lists are pending on this same chain, before the fold.
                return None;
            }
        }
        let mut pending = None;
        for slots in since.into_iter().rev() {
            pending = Some(Arc::new(Pending::on(slots, pending)));
        }
        Some(DurationCounts {
            layout: self.layout,
            base: None,
            pending,
            unsettled: false,
            total: self.total - older.total,
            folded: OnceLock::new(),
            folded_from: None,
            dense: OnceLock::new(),
        })
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

    /// Adds to `seen` these counts' own bytes, their block lists, the blocks and pending
    /// lists `seen` has not counted yet, and the built histogram if any.
    pub(crate) fn count_memory(&self, seen: &mut Allocations) {
        seen.bytes += std::mem::size_of::<Self>();
        if let Some(base) = &self.base {
            count_blocks(base, seen);
        }
        if let Some(folded) = self.folded.get() {
            count_blocks(folded, seen);
        }
        count_lists(self.pending.as_deref(), seen);
        if let Some(from) = &self.folded_from {
            count_lists(Some(&from.lists), seen);
            // A base nothing holds any more keeps its allocation (not its blocks) for the
            // weak reference.
            if let Some(earlier) = &from.base
                && earlier.strong_count() == 0
                && seen.first(earlier.as_ptr())
            {
                seen.bytes += arc_allocation::<Blocks>();
            }
        }
        if let Some(histogram) = self.dense.get() {
            seen.bytes += histogram.distinct_values() * std::mem::size_of::<u64>();
        }
    }
}

/// Adds to `seen` the list nodes from `newest` back, and their slot lists, not counted yet.
fn count_lists(newest: Option<&Pending>, seen: &mut Allocations) {
    for pending in newest.into_iter().flat_map(Pending::lists) {
        if !seen.first(pending) {
            break;
        }
        seen.bytes += arc_allocation::<Pending>();
        if seen.first(Arc::as_ptr(&pending.slots)) {
            seen.bytes += arc_allocation::<Vec<(u32, u64)>>()
                + pending.slots.capacity() * std::mem::size_of::<(u32, u64)>();
        }
    }
}

/// Adds to `seen` a block list and the blocks it has not counted yet.
fn count_blocks(blocks: &Arc<Blocks>, seen: &mut Allocations) {
    if !seen.first(Arc::as_ptr(blocks)) {
        return;
    }
    seen.bytes +=
        arc_allocation::<Blocks>() + blocks.capacity() * std::mem::size_of::<(u32, Arc<Block>)>();
    for (_, block) in blocks.iter() {
        if seen.first(Arc::as_ptr(block)) {
            seen.bytes += arc_allocation::<Block>();
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

/// The bytes of one `Arc<T>` allocation: the value and its two reference counts.
pub(crate) const fn arc_allocation<T>() -> usize {
    std::mem::size_of::<T>() + 2 * std::mem::size_of::<usize>()
}

impl std::fmt::Debug for DurationCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurationCounts")
            .field("len", &self.total)
            .field("blocks", &self.base().len())
            .field(
                "pending",
                &self.pending.as_ref().map(|p| (p.lists, p.pairs)),
            )
            .finish_non_exhaustive()
    }
}
