//! The two forms a label's counts take inside [`DurationCounts`](super::DurationCounts):
//! 64-slot blocks shared behind `Arc`, and loose `(slot, count)` lists waiting to be added
//! to them.

use std::sync::Arc;

/// Slots per block. Larger than the recording's written blocks: a snapshot pays an allocation
/// per block it copies, and smaller blocks here meant more of them for the same durations.
pub(super) const BLOCK_SLOTS: usize = 64;

/// One block's counts and their total.
#[derive(Clone)]
pub(super) struct Block {
    pub(super) counts: [u64; BLOCK_SLOTS],
    pub(super) total: u64,
}

impl Block {
    pub(super) const EMPTY: Block = Block {
        counts: [0; BLOCK_SLOTS],
        total: 0,
    };

    pub(super) fn add(&mut self, other: &Block) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    pub(super) fn subtract(&mut self, older: &Block) {
        for (mine, theirs) in self.counts.iter_mut().zip(&older.counts) {
            *mine -= theirs;
        }
        self.total -= older.total;
    }
}

/// A label's non-empty blocks, by block index ascending.
pub(super) type Blocks = Vec<(u32, Arc<Block>)>;

/// `base` with every `(slot, count)` of `lists` added, and the count added. The lists are
/// merged by block: each block they touch is copied (or created) once and takes every list's
/// slots in it, and the others stay shared with `base`. Costs O(pairs + base blocks + lists ×
/// touched blocks).
pub(super) fn fold<'a>(
    base: &[(u32, Arc<Block>)],
    lists: impl Iterator<Item = &'a [(u32, u64)]>,
) -> (Blocks, u64) {
    let block_of = |&(slot, _): &(u32, u64)| slot / BLOCK_SLOTS as u32;
    let mut rests: Vec<&[(u32, u64)]> = lists.filter(|list| !list.is_empty()).collect();
    let mut blocks =
        Vec::with_capacity(base.len() + rests.iter().map(|l| l.len()).max().unwrap_or(0));
    let mut kept = base.iter().peekable();
    let mut added = 0;
    // The lowest block any list has slots in, until none has.
    while let Some(index) = rests.iter().map(|rest| block_of(&rest[0])).min() {
        while let Some((before, block)) = kept.next_if(|&&(at, _)| at < index) {
            blocks.push((*before, Arc::clone(block)));
        }
        let mut shared = match kept.next_if(|&&(at, _)| at == index) {
            Some((_, block)) => Arc::clone(block),
            None => Arc::new(Block::EMPTY),
        };
        let block = Arc::make_mut(&mut shared);
        for rest in &mut rests {
            let run = rest
                .iter()
                .take_while(|pair| block_of(pair) == index)
                .count();
            for &(slot, count) in &rest[..run] {
                block.counts[slot as usize % BLOCK_SLOTS] += count;
                block.total += count;
                added += count;
            }
            *rest = &rest[run..];
        }
        rests.retain(|rest| !rest.is_empty());
        blocks.push((index, shared));
    }
    blocks.extend(kept.map(|(index, block)| (*index, Arc::clone(block))));
    (blocks, added)
}

/// Loose lists counted on top of a label's blocks and not added to them yet, newest first: a
/// persistent list, so that a view and the next one share every list they both hold. Each
/// list is `(slot, count)` ascending, each slot once, no zero count (a cut's interval).
#[derive(Clone)]
pub(super) struct Pending {
    pub(super) slots: Arc<Vec<(u32, u64)>>,
    pub(super) earlier: Option<Arc<Pending>>,
    /// Pairs in this list and the earlier ones.
    pub(super) pairs: usize,
    /// This list and the earlier ones.
    pub(super) lists: usize,
}

impl Pending {
    /// `slots`, pending on top of `earlier`.
    pub(super) fn on(slots: Arc<Vec<(u32, u64)>>, earlier: Option<Arc<Pending>>) -> Self {
        let (pairs, lists) = earlier.as_ref().map_or((0, 0), |p| (p.pairs, p.lists));
        Pending {
            pairs: pairs + slots.len(),
            lists: lists + 1,
            slots,
            earlier,
        }
    }

    /// This list and the earlier ones, newest first.
    pub(super) fn lists(&self) -> impl Iterator<Item = &Pending> {
        std::iter::successors(Some(self), |pending| pending.earlier.as_deref())
    }

    /// `base` with every pending list added: the blocks no list touches stay shared.
    pub(super) fn fold_into(&self, base: &[(u32, Arc<Block>)]) -> Blocks {
        fold(base, self.lists().map(|pending| &pending.slots[..])).0
    }
}

/// Where a search for ranks in a label's blocks stands: the next block to look at and the
/// count in the blocks before it. Ranks searched in ascending order walk the blocks once.
#[derive(Default)]
pub(super) struct RankWalk {
    at: usize,
    below: u64,
}

impl RankWalk {
    /// The first slot at which the running count reaches `rank`, or `None` past the total.
    pub(super) fn slot_of_rank(
        &mut self,
        blocks: &[(u32, Arc<Block>)],
        rank: u64,
    ) -> Option<usize> {
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
