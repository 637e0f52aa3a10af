//! The index that makes repeated exports cheap: for one histogram of a snapshot, its non-zero
//! slots in ascending order, with the running total of their counts.
//!
//! A histogram at the defaults has 18,432 slots; a scrape wants 15 bucket counts and a few
//! quantiles from it. hdrhistogram answers each by scanning the slots. With this index, a
//! bucket count is a binary search for the last slot that starts at or below the bound, and a
//! quantile a binary search for the first running total that reaches its target, so an export
//! costs a few hundred comparisons per histogram, whatever was recorded.
//!
//! The index is built by one scan of the histogram, the first time an export of the snapshot
//! asks for it, and kept with the snapshot: the reader, which takes snapshots whether or not
//! anyone exports them, pays nothing for it. Memory: 12 bytes per non-zero slot (a `u32` slot
//! and a `u64` running total), at most 1.5 times the histogram's own 8 bytes per slot.

use hdrhistogram::Histogram;

use crate::layout::HdrLayout;

/// The non-zero slots of one histogram, ascending, with the running total of their counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecordedSlots {
    slots: Vec<u32>,
    /// `running[i]`: the counts of `slots[..=i]`.
    running: Vec<u64>,
}

impl RecordedSlots {
    /// The index of `histogram`, whose layout is `layout`: one scan of its counts.
    pub(crate) fn of(histogram: &Histogram<u64>, layout: &HdrLayout) -> Self {
        let mut index = RecordedSlots::default();
        let mut total = 0_u64;
        for slot in histogram.iter_recorded() {
            // The slot's lowest value is within the layout's range (its highest may not be).
            let lowest = histogram.lowest_equivalent(slot.value_iterated_to());
            total += slot.count_at_value();
            index.slots.push(layout.index_of(lowest) as u32);
            index.running.push(total);
        }
        index
    }

    /// Completions in slots whose lowest value is at most `value`.
    pub(crate) fn count_up_to(&self, layout: &HdrLayout, value: u64) -> u64 {
        let below = self
            .slots
            .partition_point(|&slot| layout.value_at(slot as usize) <= value);
        below.checked_sub(1).map_or(0, |last| self.running[last])
    }

    /// The first slot where the running total reaches `target`, if any.
    pub(crate) fn slot_reaching(&self, target: u64) -> Option<usize> {
        let index = self.running.partition_point(|&running| running < target);
        self.slots.get(index).map(|&slot| slot as usize)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
            + self.running.capacity() * std::mem::size_of::<u64>()
    }

    /// `(slot, count)` of each non-zero slot, ascending.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let before = std::iter::once(0).chain(self.running.iter().copied());
        self.slots
            .iter()
            .zip(self.running.iter().zip(before))
            .map(|(&slot, (&running, before))| (slot, running - before))
    }
}
