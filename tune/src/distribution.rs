//! A merged distribution: counts per slot of one layout, with HdrHistogram's quantiles.

use crate::layout::Layout;

/// The counts of one series over some intervals, by non-empty slot: memory and every query
/// follow the slots that hold samples, never the layout's range (a 5-digit layout has
/// millions of slots).
///
/// Quantiles follow HdrHistogram's Python implementation, so that a log gives the same figures
/// here as in its tools: the value at quantile `q` of `n` samples is the
/// highest value of the slot holding the `max(1, ⌊q·n + ½⌋)`-th smallest sample (Python's
/// rank; Java's rounds `q·n` up instead, which picks the next sample when `q·n` has a
/// fraction below ½).
///
/// ```
/// use taskmeter_tune::{Distribution, Layout};
///
/// let mut distribution = Distribution::new(Layout::new(1, 3).unwrap());
/// for ms in [3, 3, 40, 2_500] {
///     distribution.add_value(ms, 1);
/// }
/// assert_eq!(distribution.total(), 4);
/// let median = distribution.quantile(0.5).unwrap();
/// assert_eq!((median.value_ms, median.resolution_ms), (3, 1));
/// assert_eq!(distribution.quantile(1.0).unwrap().value_ms, 2_501); // the slot's top
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    layout: Layout,
    /// `(slot, count)`, ascending by slot, each slot once, no zero count.
    counts: Vec<(u32, u64)>,
    total: u64,
}

/// A quantile of a [`Distribution`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Quantile {
    /// The quantile asked for, in `[0, 1]`.
    pub quantile: f64,
    /// The value there: the highest value of its slot (the lowest for quantile 0).
    pub value_ms: u64,
    /// The slot's width: values closer than this cannot be told apart.
    pub resolution_ms: u64,
    /// The middle of the slot, what changes are computed from (never 0, so ratios exist).
    #[serde(skip)]
    pub midpoint_ms: f64,
}

impl Distribution {
    /// An empty distribution.
    pub fn new(layout: Layout) -> Self {
        Distribution {
            layout,
            counts: Vec::new(),
            total: 0,
        }
    }

    /// The layout of its slots.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// How many samples it holds.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The distribution of `slots` (`(index, count)`, any order, a slot more than once and
    /// zero counts allowed), sorted a chunk at a time and merged: `n log n` time, and memory for
    /// the distinct slots and one chunk, however many entries there are.
    pub fn from_slots(layout: Layout, slots: impl IntoIterator<Item = (u32, u64)>) -> Self {
        const CHUNK: usize = 1 << 16;
        let mut distribution = Distribution::new(layout);
        let mut chunk = Vec::with_capacity(CHUNK);
        for slot in slots {
            chunk.push(slot);
            if chunk.len() == CHUNK {
                distribution.merge(&Distribution::sorted(layout, &mut chunk));
            }
        }
        if distribution.counts.is_empty() {
            return Distribution::sorted(layout, &mut chunk);
        }
        distribution.merge(&Distribution::sorted(layout, &mut chunk));
        distribution
    }

    /// The distribution of `slots`, which it leaves empty.
    fn sorted(layout: Layout, slots: &mut Vec<(u32, u64)>) -> Self {
        slots.retain(|&(_, count)| count > 0);
        slots.sort_unstable_by_key(|&(slot, _)| slot);
        slots.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.saturating_add(later.1);
            }
            same
        });
        let total = slots
            .iter()
            .fold(0_u64, |sum, &(_, count)| sum.saturating_add(count));
        // Copied out, so that the caller's buffer keeps its capacity for the next chunk.
        let counts = slots.to_vec();
        slots.clear();
        Distribution {
            layout,
            counts,
            total,
        }
    }

    /// Adds `count` samples to slot `index` (a search and an insertion: build from many slots
    /// with [`from_slots`](Self::from_slots)).
    pub fn add_slot(&mut self, index: u32, count: u64) {
        if count == 0 {
            return;
        }
        match self.counts.binary_search_by_key(&index, |&(slot, _)| slot) {
            Ok(at) => self.counts[at].1 = self.counts[at].1.saturating_add(count),
            Err(at) => self.counts.insert(at, (index, count)),
        }
        self.total = self.total.saturating_add(count);
    }

    /// Adds `count` samples of `value_ms`.
    pub fn add_value(&mut self, value_ms: u64, count: u64) {
        self.add_slot(self.layout.index_of(value_ms), count);
    }

    /// Adds every sample of `other`, which must share the layout.
    pub fn merge(&mut self, other: &Distribution) {
        assert_eq!(
            self.layout, other.layout,
            "merging distributions of two layouts"
        );
        let mut merged = Vec::with_capacity(self.counts.len() + other.counts.len());
        let (mut mine, mut theirs) = (
            self.counts.iter().peekable(),
            other.counts.iter().peekable(),
        );
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (Some(&&(a, x)), Some(&&(b, y))) if a == b => {
                    mine.next();
                    theirs.next();
                    (a, x.saturating_add(y))
                }
                (Some(&&(a, _)), Some(&&(b, _))) if b < a => *theirs.next().expect("peeked"),
                (Some(_), _) => *mine.next().expect("peeked"),
                (None, Some(_)) => *theirs.next().expect("peeked"),
                (None, None) => break,
            };
            merged.push(next);
        }
        self.counts = merged;
        self.total = self.total.saturating_add(other.total);
    }

    /// The non-empty slots, ascending: `(index, count)`.
    pub fn slots(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.counts.iter().copied()
    }

    /// The value at `quantile` (clamped to `[0, 1]`); `None` when empty.
    pub fn quantile(&self, quantile: f64) -> Option<Quantile> {
        let quantile = if quantile.is_nan() {
            0.0
        } else {
            quantile.clamp(0.0, 1.0)
        };
        let rank = target_rank(quantile, self.total)?;
        let mut seen = 0_u64;
        let &(index, _) = self.counts.iter().find(|(_, count)| {
            seen = seen.saturating_add(*count);
            seen >= rank
        })?;
        Some(quantile_at(self.layout, index as usize, quantile))
    }

    /// The highest value recorded (the top of the highest non-empty slot); `None` when empty.
    pub fn max(&self) -> Option<u64> {
        let &(index, _) = self.counts.last()?;
        Some(quantile_at(self.layout, index as usize, 1.0).value_ms)
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.counts.clear();
        self.total = 0;
    }
}

/// HdrHistogram's rank of `quantile` among `total` samples, 1-based; `None` when empty.
pub(crate) fn target_rank(quantile: f64, total: u64) -> Option<u64> {
    (total > 0).then(|| ((quantile * total as f64 + 0.5) as u64).clamp(1, total))
}

/// The [`Quantile`] of slot `index` for `quantile`.
pub(crate) fn quantile_at(layout: Layout, index: usize, quantile: f64) -> Quantile {
    let (lowest, highest) = layout
        .range(index as u32)
        .expect("slots hold counts only where the layout has values");
    Quantile {
        quantile,
        value_ms: if quantile == 0.0 { lowest } else { highest },
        resolution_ms: highest - lowest + 1,
        midpoint_ms: ((lowest as f64 + highest as f64 + 1.0) / 2.0).max(0.5),
    }
}
