//! The index that makes exports cheap: for one histogram of a snapshot, its non-zero slots in
//! ascending order, with the running total of their counts.
//!
//! A histogram at the defaults has 18,432 slots; a scrape wants 15 bucket counts and a few
//! quantiles from it. hdrhistogram answers each by scanning the slots. With this index, a
//! bucket count is a binary search for the last slot that starts at or below the bound, and a
//! quantile a binary search for the first running total that reaches its target, so an export
//! costs a few hundred comparisons per histogram, whatever was recorded. The reader builds
//! the index while it drains (it sees every non-zero slot anyway) and merges it into the
//! cumulative view's, in time linear in the number of non-zero slots.
//!
//! Memory: 12 bytes per non-zero slot (a `u32` slot and a `u64` running total), so at most
//! 1.5 times the histogram's own 8 bytes per slot, and usually far less.

use crate::layout::HdrLayout;

/// The non-zero slots of one histogram, ascending, with the running total of their counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecordedSlots {
    slots: Vec<u32>,
    /// `running[i]`: the counts of `slots[..=i]` once [`finish`](Self::finish)ed; before
    /// that, the count of `slots[i]` alone.
    running: Vec<u64>,
}

impl RecordedSlots {
    /// Notes `count` more completions in `slot`, in any order and possibly repeated (one
    /// entry per stripe); [`finish`](Self::finish) sorts and sums them.
    pub(crate) fn push(&mut self, slot: usize, count: u64) {
        self.slots.push(slot as u32);
        self.running.push(count);
    }

    /// Sorts the pushed slots, adds up repeated ones and turns counts into running totals.
    pub(crate) fn finish(&mut self) {
        if !self.slots.is_sorted() {
            let mut pairs: Vec<(u32, u64)> = self
                .slots
                .iter()
                .copied()
                .zip(self.running.iter().copied())
                .collect();
            pairs.sort_unstable_by_key(|&(slot, _)| slot);
            self.slots.clear();
            self.running.clear();
            for (slot, count) in pairs {
                if self.slots.last() == Some(&slot) {
                    *self.running.last_mut().expect("paired with slots") += count;
                } else {
                    self.slots.push(slot);
                    self.running.push(count);
                }
            }
        } else {
            self.sum_repeats();
        }
        let mut total = 0_u64;
        for running in &mut self.running {
            total += *running;
            *running = total;
        }
    }

    /// Adds up adjacent repeats of a slot in a sorted list.
    fn sum_repeats(&mut self) {
        if self.slots.windows(2).all(|pair| pair[0] < pair[1]) {
            return;
        }
        let (mut write, len) = (0, self.slots.len());
        for read in 0..len {
            if write > 0 && self.slots[write - 1] == self.slots[read] {
                self.running[write - 1] += self.running[read];
            } else {
                self.slots[write] = self.slots[read];
                self.running[write] = self.running[read];
                write += 1;
            }
        }
        self.slots.truncate(write);
        self.running.truncate(write);
    }

    /// `self += other`, both finished: one pass over both.
    pub(crate) fn merge(&mut self, other: &RecordedSlots) {
        let Some(&first) = other.slots.first() else {
            return;
        };
        let base = self.total();
        if self.slots.last().is_none_or(|&last| last < first) {
            self.slots.extend_from_slice(&other.slots);
            self.running
                .extend(other.running.iter().map(|&running| running + base));
            return;
        }
        let mut merged = RecordedSlots::default();
        merged.slots.reserve(self.slots.len() + other.slots.len());
        merged.running.reserve(self.slots.len() + other.slots.len());
        let (mut mine, mut theirs) = (self.counts().peekable(), other.counts().peekable());
        let mut total = 0_u64;
        loop {
            let (slot, count) = match (mine.peek(), theirs.peek()) {
                (Some(&(a, _)), Some(&(b, _))) if a < b => mine.next(),
                (Some(&(a, _)), Some(&(b, _))) if a > b => theirs.next(),
                (Some(_), Some(_)) => {
                    let (slot, count) = mine.next().expect("peeked");
                    let (_, more) = theirs.next().expect("peeked");
                    Some((slot, count + more))
                }
                (Some(_), None) => mine.next(),
                (None, Some(_)) => theirs.next(),
                (None, None) => break,
            }
            .expect("one side has a next slot");
            total += count;
            merged.slots.push(slot);
            merged.running.push(total);
        }
        drop(mine);
        *self = merged;
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.running.clear();
    }

    /// `(slot, count)` of each non-zero slot, ascending (finished lists only).
    pub(crate) fn counts(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let previous = std::iter::once(0).chain(self.running.iter().copied());
        self.slots
            .iter()
            .zip(self.running.iter().zip(previous))
            .map(|(&slot, (&running, before))| (slot, running - before))
    }

    fn total(&self) -> u64 {
        self.running.last().copied().unwrap_or(0)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(pushed: &[(usize, u64)]) -> RecordedSlots {
        let mut slots = RecordedSlots::default();
        for &(slot, count) in pushed {
            slots.push(slot, count);
        }
        slots.finish();
        slots
    }

    fn counts(slots: &RecordedSlots) -> Vec<(u32, u64)> {
        slots.counts().collect()
    }

    #[test]
    fn finishing_sorts_and_sums_repeats() {
        assert_eq!(counts(&finished(&[])), []);
        assert_eq!(
            counts(&finished(&[(3, 1), (1, 2), (3, 4)])),
            [(1, 2), (3, 5)]
        );
        assert_eq!(
            counts(&finished(&[(1, 2), (1, 1), (4, 1)])),
            [(1, 3), (4, 1)]
        );
        assert_eq!(finished(&[(2, 5), (7, 1)]).running, [5, 6]);
    }

    #[test]
    fn merging_keeps_one_ascending_entry_per_slot_and_adds_counts() {
        type Pushed = &'static [(usize, u64)];
        type Merged = &'static [(u32, u64)];
        let cases: [(Pushed, Pushed, Merged); 5] = [
            (&[], &[(1, 1), (2, 1)], &[(1, 1), (2, 1)]),
            (&[(1, 1), (2, 4)], &[], &[(1, 1), (2, 4)]),
            (
                &[(1, 1), (5, 2)],
                &[(7, 1), (9, 3)],
                &[(1, 1), (5, 2), (7, 1), (9, 3)],
            ),
            (
                &[(1, 1), (5, 2), (9, 1)],
                &[(2, 1), (5, 3), (10, 1)],
                &[(1, 1), (2, 1), (5, 5), (9, 1), (10, 1)],
            ),
            (
                &[(3, 1)],
                &[(1, 1), (2, 2), (3, 3)],
                &[(1, 1), (2, 2), (3, 4)],
            ),
        ];
        for (mine, theirs, merged) in cases {
            let mut list = finished(mine);
            list.merge(&finished(theirs));
            assert_eq!(counts(&list), merged, "{mine:?} + {theirs:?}");
            let total: u64 = merged.iter().map(|&(_, count)| count).sum();
            assert_eq!(list.total(), total);
        }
    }
}
