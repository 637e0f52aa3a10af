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

/// A cumulative view's counts take each interval as a pending list, shared with the interval
/// and unread until a read by block; they fold once the lists are many, or on a read, after
/// which the next interval pends on the folded blocks. Every step reads as the same counts
/// added block by block, and an earlier clone keeps its own figures.
#[test]
fn intervals_pend_shared_until_read_or_full() {
    let layout = HdrLayout::new(86_400_000, 3);
    let slot = |v: u64| layout.index_of(v) as u32;
    let mut cumulative = counts(layout, &[3, 4_000]);
    let mut model = counts(layout, &[3, 4_000]);
    let mut earlier = Vec::new();
    let lists = |counts: &DurationCounts| counts.pending.as_ref().map_or(0, |p| p.lists);
    for step in 1..=MAX_PENDING_LISTS as u64 + 5 {
        let mut pairs: Vec<(u32, u64)> = [step, step * 37, step * step * 1_001]
            .iter()
            .map(|&v| (slot(v), 1))
            .collect();
        pairs.sort_unstable();
        pairs.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        let mut interval = DurationCounts::empty(layout);
        interval.add_loose(&pairs);
        interval.settle();
        cumulative.add(&interval);
        model.add_slots(&pairs);
        assert_eq!(cumulative.len(), model.len());
        let step = step as usize;
        if step < MAX_PENDING_LISTS {
            assert_eq!(lists(&cumulative), step);
            let newest = cumulative.pending.as_ref().expect("pending");
            let theirs = interval.pending.as_ref().expect("loose");
            assert!(
                Arc::ptr_eq(&newest.slots, &theirs.slots),
                "the list is shared"
            );
            assert!(cumulative.folded.get().is_none(), "folded before a read");
            earlier.push((cumulative.clone(), model.clone()));
            continue;
        }
        if step == MAX_PENDING_LISTS {
            assert_eq!(lists(&cumulative), 0, "{MAX_PENDING_LISTS} lists pending");
        } else {
            assert_eq!(lists(&cumulative), 1, "pending on the folded blocks");
        }
        assert_eq!(
            cumulative.iter().collect::<Vec<_>>(),
            model.iter().collect::<Vec<_>>(),
            "step {step}"
        );
        assert_eq!(
            cumulative.value_at_quantile(0.5),
            model.value_at_quantile(0.5)
        );
    }
    for (counts, model) in &earlier {
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            model.iter().collect::<Vec<_>>()
        );
        assert_eq!(counts.max(), model.max());
    }
}
