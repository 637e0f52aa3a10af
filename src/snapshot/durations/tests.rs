//! Sharing and the loose form, by their internals; the model tests check the figures.

use std::sync::Arc;

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
    assert_eq!(loose.loose().map(<[_]>::len), Some(5), "one entry a slot");
    let in_blocks = counts(layout, &values);
    assert_eq!(loose.len(), in_blocks.len());
    let mut cumulative = counts(layout, &[3, 4_000]);
    cumulative.add(&loose);
    assert!(
        loose.folded.get().is_none(),
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
        loose.folded.get().is_none(),
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
    assert!(both.loose().is_none());
    assert_eq!(both.len(), 9);
    // Loose counts taking counts in blocks become blocks.
    let mut grown = loose.clone();
    grown.add(&in_blocks);
    assert!(grown.loose().is_none());
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

/// `(lowest value, count)` of each non-empty slot of `counts`.
fn slot_values(counts: &DurationCounts) -> Vec<(u64, u64)> {
    counts.iter().map(|s| (s.lowest_ms, s.count)).collect()
}

/// A cut's interval holding `pairs` (slot order, each slot once).
fn interval_of(layout: HdrLayout, pairs: &[(u32, u64)]) -> DurationCounts {
    let mut interval = DurationCounts::empty(layout);
    interval.add_loose(pairs);
    interval.settle();
    interval
}

fn lists(counts: &DurationCounts) -> usize {
    counts.pending.as_ref().map_or(0, |p| p.lists)
}

/// A cumulative view's counts take each interval as a pending list, shared with the interval
/// and unread until a read by block; they fold once the lists are many or hold many pairs,
/// or on a read, after which the next interval pends on the folded blocks. Every step reads
/// as a plain map of slot counts kept beside it, and an earlier clone keeps its own figures.
#[test]
fn intervals_pend_shared_until_read_or_full() {
    let layout = HdrLayout::new(86_400_000, 3);
    let slot = |v: u64| layout.index_of(v) as u32;
    let value = |slot: u32| layout.value_at(slot as usize);
    let mut cumulative = counts(layout, &[3, 4_000]);
    let mut model: std::collections::BTreeMap<u32, u64> = [(slot(3), 1), (slot(4_000), 1)].into();
    let as_model = |model: &std::collections::BTreeMap<u32, u64>| -> Vec<(u64, u64)> {
        model.iter().map(|(&s, &c)| (value(s), c)).collect()
    };
    let mut earlier = Vec::new();
    let mut folds_by_size = 0;
    // Few pairs a list first (the fold comes from the number of lists), then many (from
    // their pairs), then a read after each.
    let few = MAX_PENDING_LISTS as u64;
    let many = few + 24;
    for step in 1..=many + 5 {
        // Few pairs spread out, then 150 slots in a row: a size fold within fewer lists.
        let mut pairs: Vec<(u32, u64)> = if step <= few {
            (0..3)
                .map(|i| (slot(step * (i * i * 997 + 1)), 1 + i))
                .collect()
        } else {
            (0..150)
                .map(|i| (slot(1_000_000) + i, step % 3 + 1))
                .collect()
        };
        pairs.sort_unstable();
        pairs.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        let interval = interval_of(layout, &pairs);
        let pending_before = lists(&cumulative);
        // What the list will pend on: the blocks a read folded, else the base.
        let (pairs_before, base_blocks) = match cumulative.folded.get() {
            Some(folded) => (0, folded.len()),
            None => (
                cumulative.pending.as_ref().map_or(0, |p| p.pairs),
                cumulative.base().len(),
            ),
        };
        let pairs_bound = MIN_PENDING_PAIRS.max(PENDING_PAIRS_PER_BLOCK * base_blocks);
        cumulative.add(&interval);
        for &(slot, count) in &pairs {
            *model.entry(slot).or_default() += count;
        }
        assert_eq!(cumulative.len(), model.values().sum::<u64>());
        let folded_by_size = pairs_before + pairs.len() >= pairs_bound;
        folds_by_size += usize::from(folded_by_size && pending_before + 1 < MAX_PENDING_LISTS);
        if pending_before + 1 == MAX_PENDING_LISTS || folded_by_size {
            assert_eq!(lists(&cumulative), 0, "step {step}: folded when full");
        } else if step <= many {
            assert_eq!(lists(&cumulative), pending_before + 1, "step {step}");
            let newest = cumulative.pending.as_ref().expect("pending");
            let theirs = interval.pending.as_ref().expect("loose");
            assert!(
                Arc::ptr_eq(&newest.slots, &theirs.slots),
                "the list is shared"
            );
            assert!(cumulative.folded.get().is_none(), "folded before a read");
            earlier.push((cumulative.clone(), as_model(&model)));
            continue;
        } else {
            assert_eq!(
                lists(&cumulative),
                1,
                "pending on the blocks the read folded"
            );
        }
        assert_eq!(slot_values(&cumulative), as_model(&model), "step {step}");
    }
    assert!(
        earlier.len() > MAX_PENDING_LISTS,
        "folds by the number of lists crossed"
    );
    assert!(folds_by_size > 0, "a fold by the pairs pending crossed");
    for (counts, model) in &earlier {
        assert_eq!(&slot_values(counts), model);
        assert_eq!(
            counts.max(),
            model
                .last()
                .map_or(0, |&(v, _)| layout.highest_at(layout.index_of(v)))
        );
    }
}

/// Subtracting from a clone of shared counts (a window's difference) folds the shared ones,
/// so the next cumulative view pends on that fold: one list, not the whole chain.
#[test]
fn a_difference_folds_where_the_next_view_starts() {
    let layout = HdrLayout::new(86_400_000, 3);
    let slot = |v: u64| layout.index_of(v) as u32;
    let start = counts(layout, &[3, 40]);
    let mut cumulative = start.clone();
    for step in 1..=3 {
        cumulative.add(&interval_of(layout, &[(slot(step * 100), step)]));
    }
    assert_eq!(lists(&cumulative), 3);
    let published = Arc::new(cumulative);
    // As `View::subtract` does for a window: fold the shared counts, then copy and subtract.
    let mut window = Arc::clone(&published);
    window.fold();
    Arc::make_mut(&mut window).subtract(&start);
    assert_eq!(slot_values(&window), [(100, 1), (200, 2), (300, 3)]);
    let mut next = (*published).clone();
    next.add(&interval_of(layout, &[(slot(400), 4)]));
    assert_eq!(
        lists(&next),
        1,
        "the next view starts from the difference's fold"
    );
    assert_eq!(next.len(), 2 + 1 + 2 + 3 + 4);
}

/// Counts with more lists added since an earlier state are that state plus the later lists
/// alone, taken as they are, shared, also across the last fold; past two folds, the block
/// subtraction.
#[test]
fn the_lists_since_an_earlier_state_are_its_difference() {
    let layout = HdrLayout::new(86_400_000, 3);
    let slot = |v: u64| layout.index_of(v) as u32;
    let mut cumulative = counts(layout, &[3, 40]);
    cumulative.add(&interval_of(layout, &[(slot(5), 1)]));
    let start = cumulative.clone();
    for step in 1..=2 {
        cumulative.add(&interval_of(
            layout,
            &[(slot(40), 1), (slot(step * 100), step)],
        ));
    }
    let since = cumulative
        .lists_since(&start)
        .expect("the same blocks below");
    assert_eq!(slot_values(&since), [(40, 2), (100, 1), (200, 2)]);
    assert_eq!(since.len(), 5);
    assert!(since.base.is_none() && lists(&since) == 2);
    let newest = since.pending.as_ref().unwrap();
    let theirs = cumulative.pending.as_ref().unwrap();
    assert!(
        Arc::ptr_eq(&newest.slots, &theirs.slots),
        "the lists are shared"
    );
    // Nothing since: empty.
    assert_eq!(
        cumulative.lists_since(&cumulative).map(|s| s.len()),
        Some(0)
    );
    // Across the last fold: the lists it folded since `start`, then those pending after it.
    let mut folded = cumulative.clone();
    folded.fold();
    folded.add(&interval_of(layout, &[(slot(7), 1)]));
    assert!(
        folded.base.as_ref().is_some_and(|base| base.len() > 2),
        "folded"
    );
    let across = folded
        .lists_since(&start)
        .expect("the fold started from start's blocks");
    assert_eq!(slot_values(&across), [(7, 1), (40, 2), (100, 1), (200, 2)]);
    assert_eq!(lists(&across), 3);
    // Past two folds, or counts that are not an earlier state: no shortcut.
    let mut twice = folded.clone();
    twice.fold();
    twice.add(&interval_of(layout, &[(slot(8), 1)]));
    assert!(twice.lists_since(&start).is_none());
    assert!(twice.lists_since(&folded).is_some());
    assert!(start.lists_since(&cumulative).is_none());
    let mut changed = folded.clone();
    changed.add_slots(&[(slot(9), 1)]);
    assert!(
        changed.lists_since(&start).is_none(),
        "the base changed after its fold"
    );
    let mut difference = folded.clone();
    difference.subtract(&start);
    assert_eq!(
        slot_values(&difference),
        [(7, 1), (40, 2), (100, 1), (200, 2)]
    );
}
