//! Runner errors under labels the application chooses (solti's `Custom(String)` variants), in
//! memory fixed at construction.
//!
//! Each of the two label sets (runners, error kinds) is a [`LabelTable`] of a configured
//! capacity ([`Builder::custom_labels`](crate::Builder::custom_labels)). A label already in
//! its table is found by a scan of the published names: no lock, no allocation. A new label
//! is added once, under a lock taken only to add (the call's own `String` is kept, so adding
//! allocates nothing either). Once a table is full, calls with a new label are counted under
//! [`OVERFLOW_LABEL`], and counted again in the overflow counter, so nothing is lost and the
//! label set (and so the exposition) stays bounded.
//!
//! Errors are rare next to task calls, so their counts here are one shared grid of atomic
//! counters, one per (runner label, error label), incremented with one `fetch_add`. Pairs of
//! two built-in labels never come here: they take the stripes' path, as the contract's calls.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::contract::{RunnerErrorKind, RunnerType};
use crate::layout::LabelGrid;

/// The label a custom label is counted under once its table is full.
pub const OVERFLOW_LABEL: &str = "_overflow";

/// A runner or error-kind label: one of the contract's, or one the application chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Label<T> {
    /// One of the contract's labels.
    Known(T),
    /// The application's own label (solti's `Custom(String)`), written as it is.
    Custom(String),
}

impl Label<RunnerType> {
    /// A custom label that spells one of the contract's is that label: the exposition never
    /// carries two series with the same labels.
    pub(crate) fn canonical(self) -> Self {
        match self {
            Label::Custom(label) => {
                match RunnerType::ALL.into_iter().find(|r| r.as_label() == label) {
                    Some(runner) => Label::Known(runner),
                    None => Label::Custom(label),
                }
            }
            known => known,
        }
    }
}

impl Label<RunnerErrorKind> {
    /// As for runners: a custom label that spells a contract label is that label.
    pub(crate) fn canonical(self) -> Self {
        match self {
            Label::Custom(label) => {
                match RunnerErrorKind::ALL
                    .into_iter()
                    .find(|k| k.as_label() == label)
                {
                    Some(kind) => Label::Known(kind),
                    None => Label::Custom(label),
                }
            }
            known => known,
        }
    }
}

/// Names added once, read without a lock: `names[..published]` are set and never change.
pub(crate) struct LabelTable {
    names: Box<[OnceLock<String>]>,
    /// How many names are set. Stored with release after the name is set, loaded with acquire
    /// before reading names, so a reader that counts a name sees it.
    published: AtomicUsize,
    /// Taken only to add a name, so that a name is never added twice.
    adding: Mutex<()>,
}

impl LabelTable {
    fn new(capacity: usize) -> Self {
        LabelTable {
            names: (0..capacity).map(|_| OnceLock::new()).collect(),
            published: AtomicUsize::new(0),
            adding: Mutex::new(()),
        }
    }

    /// The published names, in the order added.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        let published = self.published.load(Ordering::Acquire);
        self.names[..published]
            .iter()
            .map(|name| name.get().map_or("", String::as_str))
    }

    fn find(&self, label: &str) -> Option<usize> {
        self.names().position(|name| name == label)
    }

    /// The index of `label`, added if it is new and there is room (the capacity for
    /// [`OVERFLOW_LABEL`] itself); `None` when the table is full.
    fn index_of(&self, label: String) -> Option<usize> {
        if label == OVERFLOW_LABEL {
            // Its own cell is the overflow's: one series per label pair.
            return Some(self.capacity());
        }
        if let Some(index) = self.find(&label) {
            return Some(index);
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have added it while this one waited.
        if let Some(index) = self.find(&label) {
            return Some(index);
        }
        let index = self.published.load(Ordering::Relaxed);
        let slot = self.names.get(index)?;
        // Only this thread, holding `adding`, sets names: the slot is empty.
        let _ = slot.set(label);
        self.published.store(index + 1, Ordering::Release);
        Some(index)
    }

    fn capacity(&self) -> usize {
        self.names.len()
    }
}

/// The counts of runner errors with at least one custom label.
pub(crate) struct LabelledErrors {
    pub(crate) runners: LabelTable,
    pub(crate) kinds: LabelTable,
    /// One counter per (runner row, kind column): built-in labels first, then the table's,
    /// then the overflow label.
    counts: Box<[AtomicU64]>,
    /// Calls counted under [`OVERFLOW_LABEL`] (once even if both labels overflowed).
    overflows: AtomicU64,
}

impl LabelledErrors {
    /// Room for `capacity` custom runner labels and as many custom error labels.
    pub(crate) fn new(capacity: usize) -> Self {
        let runners = LabelTable::new(capacity);
        let kinds = LabelTable::new(capacity);
        let cells = Self::rows_for(capacity) * Self::columns_for(capacity);
        LabelledErrors {
            runners,
            kinds,
            counts: (0..cells).map(|_| AtomicU64::new(0)).collect(),
            overflows: AtomicU64::new(0),
        }
    }

    fn rows_for(capacity: usize) -> usize {
        RunnerType::COUNT + capacity + 1
    }

    fn columns_for(capacity: usize) -> usize {
        RunnerErrorKind::COUNT + capacity + 1
    }

    /// Cells in the grid: the length of a view's copy.
    pub(crate) fn cells(&self) -> usize {
        self.counts.len()
    }

    /// Counts one error with these labels (at least one custom).
    pub(crate) fn record(&self, runner: Label<RunnerType>, kind: Label<RunnerErrorKind>) {
        let mut overflowed = false;
        let mut place = |label: Result<usize, String>, table: &LabelTable, known: usize| match label
        {
            Ok(index) => index,
            Err(custom) => match table.index_of(custom) {
                Some(index) => known + index,
                None => {
                    overflowed = true;
                    known + table.capacity()
                }
            },
        };
        let row = place(
            match runner {
                Label::Known(runner) => Ok(runner.index()),
                Label::Custom(label) => Err(label),
            },
            &self.runners,
            RunnerType::COUNT,
        );
        let column = place(
            match kind {
                Label::Known(kind) => Ok(kind.index()),
                Label::Custom(label) => Err(label),
            },
            &self.kinds,
            RunnerErrorKind::COUNT,
        );
        let columns = Self::columns_for(self.kinds.capacity());
        self.counts[row * columns + column].fetch_add(1, Ordering::Relaxed);
        if overflowed {
            self.overflows.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The grid's counts into `into` (of [`cells`](Self::cells) length), and the overflows.
    pub(crate) fn read(&self, into: &mut [u64]) -> u64 {
        for (count, cell) in into.iter_mut().zip(&*self.counts) {
            *count = cell.load(Ordering::Relaxed);
        }
        self.overflows.load(Ordering::Relaxed)
    }

    /// The labels of a grid cell: `(runner, error kind)`, `None` for a custom label not
    /// published yet (its count is then 0).
    pub(crate) fn labels_of(&self, cell: usize) -> Option<(&str, &str)> {
        let columns = Self::columns_for(self.kinds.capacity());
        let (row, column) = (cell / columns, cell % columns);
        let runner = label_at(&self.runners, row, RunnerType::COUNT, |i| {
            RunnerType::ALL[i].as_label()
        })?;
        let kind = label_at(&self.kinds, column, RunnerErrorKind::COUNT, |i| {
            RunnerErrorKind::ALL[i].as_label()
        })?;
        Some((runner, kind))
    }
}

impl LabelGrid for LabelledErrors {
    fn cells(&self) -> usize {
        LabelledErrors::cells(self)
    }

    fn labels_of(&self, cell: usize) -> Option<(&str, &str)> {
        LabelledErrors::labels_of(self, cell)
    }
}

fn label_at(
    table: &LabelTable,
    index: usize,
    known: usize,
    known_label: impl Fn(usize) -> &'static str,
) -> Option<&str> {
    if index < known {
        Some(known_label(index))
    } else if index - known == table.capacity() {
        Some(OVERFLOW_LABEL)
    } else {
        table.names().nth(index - known)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn custom<T>(label: &str) -> Label<T> {
        Label::Custom(label.to_owned())
    }

    fn counts(errors: &LabelledErrors) -> Vec<((String, String), u64)> {
        let mut grid = vec![0; errors.cells()];
        errors.read(&mut grid);
        grid.iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(cell, &count)| {
                let (runner, kind) = errors.labels_of(cell).unwrap();
                ((runner.to_owned(), kind.to_owned()), count)
            })
            .collect()
    }

    /// The labels of one side, each with the name it is counted under: the known ones, then
    /// one custom label more than the table keeps.
    fn one_side<T: Copy>(
        known: &[T],
        name_of: impl Fn(T) -> &'static str,
        prefix: &str,
        capacity: usize,
    ) -> Vec<(Label<T>, String)> {
        let known = known
            .iter()
            .map(|&label| (Label::Known(label), name_of(label).to_owned()));
        let customs = (0..=capacity).map(|i| {
            let name = format!("{prefix}-{i}");
            let counted_as = if i < capacity {
                name.clone()
            } else {
                OVERFLOW_LABEL.into()
            };
            (custom(&name), counted_as)
        });
        known.chain(customs).collect()
    }

    /// Model comparison: every pair of labels, known or custom, is counted in a cell of its
    /// own, and a pair with a label past the capacity in that side's overflow cell, whatever
    /// the capacity.
    #[test]
    fn every_pair_of_labels_is_counted_in_its_own_cell_or_an_overflow_cell() {
        for capacity in [0, 1, 3] {
            let errors = LabelledErrors::new(capacity);
            let runners = one_side(&RunnerType::ALL, RunnerType::as_label, "runner", capacity);
            let kinds = one_side(
                &RunnerErrorKind::ALL,
                RunnerErrorKind::as_label,
                "kind",
                capacity,
            );
            let mut expected = std::collections::BTreeMap::new();
            let (mut calls, mut overflows) = (0, 0);
            for (runner, runner_shown) in &runners {
                for (kind, kind_shown) in &kinds {
                    if matches!((runner, kind), (Label::Known(_), Label::Known(_))) {
                        continue;
                    }
                    // A distinct number of calls per pair, so that no two cells can swap.
                    calls += 1;
                    for _ in 0..calls {
                        errors.record(runner.clone(), kind.clone());
                    }
                    *expected
                        .entry((runner_shown.clone(), kind_shown.clone()))
                        .or_insert(0) += calls;
                    if runner_shown == OVERFLOW_LABEL || kind_shown == OVERFLOW_LABEL {
                        overflows += calls;
                    }
                }
            }
            let seen: std::collections::BTreeMap<_, _> = counts(&errors).into_iter().collect();
            assert_eq!(seen, expected, "capacity {capacity}");
            let mut grid = vec![0; errors.cells()];
            assert_eq!(errors.read(&mut grid), overflows, "capacity {capacity}");
        }
    }

    #[test]
    fn labels_are_added_once_and_overflow_past_the_capacity() {
        let errors = LabelledErrors::new(2);
        errors.record(
            custom("image-resize"),
            Label::Known(RunnerErrorKind::SpawnFailed),
        );
        errors.record(custom("image-resize"), custom("runtime_unavailable"));
        errors.record(
            Label::Known(RunnerType::Wasm),
            custom("runtime_unavailable"),
        );
        errors.record(custom("gpu"), custom("oom"));
        // The runner table is full (image-resize, gpu): a third runner label overflows.
        errors.record(custom("third"), custom("oom"));
        let names: Vec<&str> = errors.runners.names().collect();
        assert_eq!(names, ["image-resize", "gpu"]);
        let kinds: Vec<&str> = errors.kinds.names().collect();
        assert_eq!(kinds, ["runtime_unavailable", "oom"]);
        let seen = counts(&errors);
        let expected = [
            (("image-resize", "spawn_failed"), 1),
            (("image-resize", "runtime_unavailable"), 1),
            (("gpu", "oom"), 1),
            (("_overflow", "oom"), 1),
            (("wasm", "runtime_unavailable"), 1),
        ];
        assert_eq!(seen.len(), expected.len(), "{seen:?}");
        for ((runner, kind), count) in expected {
            assert!(
                seen.contains(&((runner.to_owned(), kind.to_owned()), count)),
                "{runner}/{kind} in {seen:?}"
            );
        }
        let mut grid = vec![0; errors.cells()];
        assert_eq!(errors.read(&mut grid), 1);
    }

    #[test]
    fn the_overflow_label_spelled_by_the_application_shares_the_overflow_cell() {
        let errors = LabelledErrors::new(1);
        errors.record(custom(OVERFLOW_LABEL), custom("x"));
        errors.record(custom("a"), custom("x"));
        errors.record(custom("b"), custom("x")); // overflows
        let seen = counts(&errors);
        assert_eq!(
            seen,
            [
                (("a".into(), "x".into()), 1),
                (("_overflow".into(), "x".into()), 2)
            ]
        );
        let mut grid = vec![0; errors.cells()];
        assert_eq!(
            errors.read(&mut grid),
            1,
            "only the real overflow is counted as one"
        );
    }

    #[test]
    fn custom_labels_that_spell_contract_labels_are_those_labels() {
        assert_eq!(
            custom::<RunnerType>("wasm").canonical(),
            Label::Known(RunnerType::Wasm)
        );
        assert_eq!(
            custom::<RunnerErrorKind>("spawn_failed").canonical(),
            Label::Known(RunnerErrorKind::SpawnFailed)
        );
        assert_eq!(custom::<RunnerType>("wasm2").canonical(), custom("wasm2"));
    }

    #[test]
    fn threads_adding_the_same_labels_add_each_once_and_lose_no_call() {
        let errors = LabelledErrors::new(8);
        let threads = if cfg!(miri) { 2 } else { 4 };
        let calls = if cfg!(miri) { 20 } else { 2_000 };
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for call in 0..calls {
                        let runner = format!("runner-{}", call % 5);
                        errors.record(custom(&runner), custom("boom"));
                    }
                });
            }
        });
        let names: Vec<&str> = errors.runners.names().collect();
        assert_eq!(names.len(), 5, "{names:?}");
        let total: u64 = counts(&errors).iter().map(|(_, count)| count).sum();
        assert_eq!(total, threads * calls);
    }
}
