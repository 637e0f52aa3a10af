//! Runner errors under labels the application chooses (solti's `Custom(String)` variants), in
//! memory fixed at construction.
//!
//! Each of the two label sets (runners, error kinds) is a [`LabelTable`] of a configured
//! capacity ([`Builder::custom_labels`](crate::Builder::custom_labels)). No call here takes a
//! lock of its own or waits for another thread, so a signal handler, or a child forked while
//! another thread was inside a call, records without hanging:
//! - a label already in its table is found by a scan of the names set: no allocation either;
//! - a new label claims the next free slot with one atomic add and sets its name there (the
//!   call's own `String`, or a copy of a borrowed label: that copy is an allocation, whose
//!   allocator may lock, so a signal handler must not add a label);
//! - once a table is full, or for a label longer than [`MAX_CUSTOM_LABEL_BYTES`], the call is
//!   counted under [`OVERFLOW_LABEL`], and counted again in the overflow counter, so nothing
//!   is lost and the label set (and so the exposition and the memory) stays bounded.
//!
//! Two threads adding the same new label at once may each claim a slot for it. Each counts in
//! its own slot until it finds the other's name; nothing is lost, and a view sums the cells of
//! one name pair ([`LabelGrid::names_may_repeat`] says when it must look).
//!
//! Errors are rare next to task calls, so their counts here are one shared grid of atomic
//! counters, one per (runner label, error label), incremented with one `fetch_add`. Pairs of
//! two built-in labels never come here: they take the stripes' path, as the contract's calls.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::contract::{RunnerErrorKind, RunnerType};
use crate::layout::LabelGrid;

/// The label a custom label is counted under once its table is full.
pub const OVERFLOW_LABEL: &str = "_overflow";

/// The longest custom label kept, in bytes: a longer one is counted under
/// [`OVERFLOW_LABEL`], as a label past a full table is, so that the labels an engine holds
/// stay within the memory its configuration reserves.
pub const MAX_CUSTOM_LABEL_BYTES: usize = 256;

/// A runner or error-kind label: one of the contract's, or one the application chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Label<T> {
    /// One of the contract's labels.
    Known(T),
    /// The application's own label (solti's `Custom(String)`), written as it is.
    Custom(String),
}

/// A [`Label`] whose custom name is borrowed: what
/// [`AtomicMetrics::record_labelled_runner_error_ref`](crate::AtomicMetrics::record_labelled_runner_error_ref)
/// takes, so that a call under a label already counted allocates and frees nothing (a signal
/// handler may make it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelRef<'a, T> {
    /// One of the contract's labels.
    Known(T),
    /// The application's own label, written as it is.
    Custom(&'a str),
}

impl<T: Copy> Label<T> {
    /// The label, borrowed.
    pub fn as_ref(&self) -> LabelRef<'_, T> {
        match self {
            Label::Known(known) => LabelRef::Known(*known),
            Label::Custom(name) => LabelRef::Custom(name),
        }
    }
}

/// A contract label, as [`Label`] and [`LabelRef`] resolve a custom name that spells one.
pub(crate) trait ContractLabel: Copy + 'static {
    const ALL_LABELS: &'static [Self];
    fn label(self) -> &'static str;

    /// The contract label `name` spells, if any: the exposition never carries two series
    /// with the same labels.
    fn spelled(name: &str) -> Option<Self> {
        Self::ALL_LABELS.iter().copied().find(|l| l.label() == name)
    }
}

impl ContractLabel for RunnerType {
    const ALL_LABELS: &'static [Self] = &RunnerType::ALL;
    fn label(self) -> &'static str {
        self.as_label()
    }
}

impl ContractLabel for RunnerErrorKind {
    const ALL_LABELS: &'static [Self] = &RunnerErrorKind::ALL;
    fn label(self) -> &'static str {
        self.as_label()
    }
}

/// The contract label, or the custom name to look up (owned: kept if it is added).
pub(crate) fn resolve<T: ContractLabel>(label: Label<T>) -> Result<T, Cow<'static, str>> {
    match label {
        Label::Known(known) => Ok(known),
        Label::Custom(name) => T::spelled(&name).ok_or(Cow::Owned(name)),
    }
}

/// The contract label, or the custom name to look up (borrowed: copied if it is added).
pub(crate) fn resolve_ref<T: ContractLabel>(label: LabelRef<'_, T>) -> Result<T, Cow<'_, str>> {
    match label {
        LabelRef::Known(known) => Ok(known),
        LabelRef::Custom(name) => T::spelled(name).ok_or(Cow::Borrowed(name)),
    }
}

/// Names added once, read and added without a lock.
pub(crate) struct LabelTable {
    /// Set once each, by the call that claimed the slot; read with `get`, which never waits.
    names: Box<[OnceLock<Box<str>>]>,
    /// Slots claimed: those below it are set, or about to be by the call that claimed them.
    claimed: AtomicUsize,
    /// Set when two calls may have added the same name in two slots (see the module docs).
    may_repeat: AtomicBool,
}

impl LabelTable {
    fn new(capacity: usize) -> Self {
        LabelTable {
            names: (0..capacity).map(|_| OnceLock::new()).collect(),
            claimed: AtomicUsize::new(0),
            may_repeat: AtomicBool::new(false),
        }
    }

    /// The slots claimed, each with its name once set (`None` for a moment, while the call
    /// that claimed it sets it).
    fn slots(&self) -> impl Iterator<Item = Option<&str>> {
        // Relaxed: a slot's name is read through its `OnceLock`, which synchronizes.
        let claimed = self.claimed.load(Ordering::Relaxed).min(self.capacity());
        self.names[..claimed]
            .iter()
            .map(|name| name.get().map(|n| &**n))
    }

    /// The names set, in the order claimed. A name may repeat (see the module docs).
    #[cfg(all(test, not(loom)))]
    fn names(&self) -> impl Iterator<Item = &str> {
        self.slots().flatten()
    }

    fn find(&self, label: &str) -> Option<usize> {
        self.slots().position(|name| name == Some(label))
    }

    /// The index of `label`, added if it is new and there is room (the capacity for
    /// [`OVERFLOW_LABEL`] itself); `None` when the table is full or the label too long.
    fn index_of(&self, label: Cow<'_, str>) -> Option<usize> {
        if label == OVERFLOW_LABEL {
            // Its own cell is the overflow's: one series per label pair.
            return Some(self.capacity());
        }
        if label.len() > MAX_CUSTOM_LABEL_BYTES {
            return None;
        }
        if let Some(index) = self.find(&label) {
            return Some(index);
        }
        // Relaxed: the claim orders nothing; the name is published by its `OnceLock`.
        let index = self
            .claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |claimed| {
                (claimed < self.capacity()).then_some(claimed + 1)
            })
            .ok()?;
        // Another call may have claimed an earlier slot for the same name (set or not yet):
        // say so before this name can be found. `set` releases the flag to every call that
        // finds the name, and their counts release it to the reader, so that no view meets
        // two cells of one name without summing them.
        let may_repeat = (self.slots().take(index)).any(|name| name.is_none_or(|n| *n == *label));
        if may_repeat {
            self.may_repeat.store(true, Ordering::Relaxed);
        }
        // Only this call sets this slot, so `set` finds it empty and never waits.
        let _ = self.names[index].set(label.into_owned().into_boxed_str());
        if may_repeat {
            // The earliest slot of the name is used once it is set.
            return Some(self.find(self.name(index)).unwrap_or(index));
        }
        Some(index)
    }

    fn name(&self, index: usize) -> &str {
        self.names[index].get().map_or("", |n| n)
    }

    fn capacity(&self) -> usize {
        self.names.len()
    }

    /// The most bytes a table of `capacity` labels holds, its names included.
    fn reserved_bytes(capacity: usize) -> usize {
        capacity * (std::mem::size_of::<OnceLock<Box<str>>>() + MAX_CUSTOM_LABEL_BYTES)
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

    /// Cells in the grid of tables of `capacity` labels.
    pub(crate) fn cells_for(capacity: usize) -> usize {
        Self::rows_for(capacity) * Self::columns_for(capacity)
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

    /// Counts one error with these labels (at least one custom): each resolved label is the
    /// contract's, or a custom name to look up.
    pub(crate) fn record(
        &self,
        runner: Result<RunnerType, Cow<'_, str>>,
        kind: Result<RunnerErrorKind, Cow<'_, str>>,
    ) {
        let mut overflowed = false;
        let mut place =
            |label: Result<usize, Cow<'_, str>>, table: &LabelTable, known: usize| match label {
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
            runner.map(RunnerType::index),
            &self.runners,
            RunnerType::COUNT,
        );
        let column = place(
            kind.map(RunnerErrorKind::index),
            &self.kinds,
            RunnerErrorKind::COUNT,
        );
        let columns = Self::columns_for(self.kinds.capacity());
        // Release: a reader that sees this count sees the tables' `may_repeat` as this call
        // left it (see `names_may_repeat`).
        self.counts[row * columns + column].fetch_add(1, Ordering::Release);
        if overflowed {
            self.overflows.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The most bytes the grid and the tables of `capacity` labels hold, label names
    /// included, with the reader's two copies of the grid's counts (the counts as last read,
    /// and its empty view's): part of the recording state the memory limit bounds.
    pub(crate) fn reserved_bytes(capacity: usize) -> usize {
        let grid = Self::rows_for(capacity) * Self::columns_for(capacity);
        std::mem::size_of::<Self>()
            + grid * std::mem::size_of::<AtomicU64>()
            + 2 * grid * std::mem::size_of::<u64>()
            + 2 * LabelTable::reserved_bytes(capacity)
    }

    /// The grid's counts into `into` (of [`cells`](Self::cells) length), and the overflows.
    pub(crate) fn read(&self, into: &mut [u64]) -> u64 {
        for (count, cell) in into.iter_mut().zip(&*self.counts) {
            // Acquire: see `record`.
            *count = cell.load(Ordering::Acquire);
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

    fn names_may_repeat(&self) -> bool {
        // Relaxed: ordered by the counts' release and acquire (see `record`).
        self.runners.may_repeat.load(Ordering::Relaxed)
            || self.kinds.may_repeat.load(Ordering::Relaxed)
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
        table.slots().nth(index - known).flatten()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn custom<T>(label: &str) -> Label<T> {
        Label::Custom(label.to_owned())
    }

    impl LabelledErrors {
        /// As the engine records: contract labels resolved first.
        fn record_labels(&self, runner: Label<RunnerType>, kind: Label<RunnerErrorKind>) {
            self.record(resolve(runner), resolve(kind));
        }
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
                        errors.record_labels(runner.clone(), kind.clone());
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
        errors.record_labels(
            custom("image-resize"),
            Label::Known(RunnerErrorKind::SpawnFailed),
        );
        errors.record_labels(custom("image-resize"), custom("runtime_unavailable"));
        errors.record_labels(
            Label::Known(RunnerType::Wasm),
            custom("runtime_unavailable"),
        );
        errors.record_labels(custom("gpu"), custom("oom"));
        // The runner table is full (image-resize, gpu): a third runner label overflows.
        errors.record_labels(custom("third"), custom("oom"));
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
        errors.record_labels(custom(OVERFLOW_LABEL), custom("x"));
        errors.record_labels(custom("a"), custom("x"));
        errors.record_labels(custom("b"), custom("x")); // overflows
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
        assert_eq!(resolve(custom::<RunnerType>("wasm")), Ok(RunnerType::Wasm));
        assert_eq!(
            resolve_ref(LabelRef::Custom("spawn_failed")),
            Ok(RunnerErrorKind::SpawnFailed)
        );
        assert_eq!(
            resolve(custom::<RunnerType>("wasm2")),
            Err(Cow::Borrowed("wasm2"))
        );
        assert_eq!(
            resolve_ref::<RunnerType>(LabelRef::Custom("wasm2")),
            Err(Cow::Borrowed("wasm2"))
        );
    }

    #[test]
    fn a_label_longer_than_the_bound_is_counted_as_an_overflow_and_not_kept() {
        let errors = LabelledErrors::new(4);
        let longest = "x".repeat(MAX_CUSTOM_LABEL_BYTES);
        let too_long = "y".repeat(MAX_CUSTOM_LABEL_BYTES + 1);
        errors.record_labels(custom(&longest), custom("boom"));
        errors.record_labels(custom(&too_long), custom("boom"));
        errors.record(
            Ok(RunnerType::Wasm),
            resolve_ref(LabelRef::Custom(&too_long)),
        );
        let names: Vec<&str> = errors.runners.names().collect();
        assert_eq!(names, [longest.as_str()]);
        assert_eq!(errors.kinds.names().collect::<Vec<_>>(), ["boom"]);
        let seen = counts(&errors);
        assert_eq!(
            seen,
            [
                (("wasm".into(), OVERFLOW_LABEL.into()), 1),
                ((longest.clone(), "boom".into()), 1),
                ((OVERFLOW_LABEL.into(), "boom".into()), 1),
            ]
        );
        let mut grid = vec![0; errors.cells()];
        assert_eq!(errors.read(&mut grid), 2);
    }

    /// Two calls adding one new label at once, laid out by hand: the first claimed its slot
    /// and has not set it when the second claims the next. Each counts in its own slot until
    /// both are set, and the engine's views sum them: one series, nothing lost.
    #[test]
    fn a_label_added_twice_at_once_is_one_series_in_the_views() {
        let metrics = crate::AtomicMetrics::builder()
            .custom_labels(4)
            .build()
            .unwrap();
        let errors = &metrics.recording.labelled;
        let spawn = LabelRef::Known(RunnerErrorKind::SpawnFailed);
        // The first call's claim, its name not set yet.
        assert_eq!(errors.runners.claimed.fetch_add(1, Ordering::Relaxed), 0);
        assert!(!errors.runners.may_repeat.load(Ordering::Relaxed));
        metrics.record_labelled_runner_error_ref(LabelRef::Custom("gpu"), spawn);
        assert!(errors.runners.may_repeat.load(Ordering::Relaxed));
        assert_eq!(
            errors.runners.slots().collect::<Vec<_>>(),
            [None, Some("gpu")]
        );
        let before = metrics.snapshot();
        // The first call sets its name and counts there; later calls find the first slot.
        errors.runners.names[0].set("gpu".into()).unwrap();
        errors.record(Err(Cow::Borrowed("gpu")), Ok(RunnerErrorKind::SpawnFailed));
        metrics.record_labelled_runner_error_ref(LabelRef::Custom("gpu"), spawn);
        let after = metrics.snapshot();
        let labelled = |view: &crate::View| {
            view.labelled_errors()
                .map(|(r, k, n)| (r.to_owned(), k.to_owned(), n))
                .collect::<Vec<_>>()
        };
        let one = |count| vec![("gpu".to_owned(), "spawn_failed".to_owned(), count)];
        assert_eq!(labelled(before.cumulative()), one(1));
        assert_eq!(labelled(after.cumulative()), one(3));
        assert_eq!(labelled(after.interval()), one(2));
        let mut grid = vec![0; errors.cells()];
        errors.read(&mut grid);
        let per_cell: Vec<u64> = grid.into_iter().filter(|&n| n > 0).collect();
        assert_eq!(per_cell, [2, 1], "each slot kept its own counts");
    }

    #[test]
    fn threads_adding_the_same_labels_lose_no_call() {
        let metrics = crate::AtomicMetrics::builder()
            .custom_labels(16)
            .build()
            .unwrap();
        let threads = if cfg!(miri) { 2 } else { 4 };
        let calls = if cfg!(miri) { 20 } else { 2_000 };
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for call in 0..calls {
                        let runner = format!("runner-{}", call % 5);
                        metrics.record_labelled_runner_error_ref(
                            LabelRef::Custom(&runner),
                            LabelRef::Custom("boom"),
                        );
                    }
                });
            }
        });
        let snapshot = metrics.snapshot();
        let mut seen: Vec<(&str, &str, u64)> = snapshot.cumulative().labelled_errors().collect();
        seen.sort();
        let expected: Vec<(String, &str, u64)> = (0..5)
            .map(|i| (format!("runner-{i}"), "boom", threads * calls / 5))
            .collect();
        let expected: Vec<(&str, &str, u64)> = expected
            .iter()
            .map(|(r, k, n)| (r.as_str(), *k, *n))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(snapshot.cumulative().custom_label_overflows(), 0);
    }
}
