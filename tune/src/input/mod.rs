//! Recorded runs, read from HdrHistogram interval logs or taskmeter's JSON-lines logs.
//!
//! A [`Run`] is one file: named series (a log's tags; `runner.outcome` for taskmeter), each a
//! sequence of intervals holding the non-empty slots of that interval's histogram. Nothing is
//! ever expanded to a full-range histogram: an interval's slots are packed as varints (the
//! gap from the previous slot, then the count), about 2 to 3 bytes per non-empty slot.
//!
//! Reading never panics on bad input and never returns part of a file: a truncated line, bad
//! base64, a histogram that does not decode, a DoubleHistogram log or a JSON document of the
//! wrong schema is an [`InputError`] naming the file, the line and the reason.

mod hlog;
mod jsonl;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::Path;

use crate::distribution::Distribution;
use crate::layout::Layout;

/// The name of the series that a log's untagged lines form.
pub const UNTAGGED: &str = "(untagged)";

/// The most non-empty slots a file may hold over all its intervals: 2^26, about 67 million
/// (an hour of 12 series at 10,000 tasks a second holds about 36 million), so that a small
/// hostile file of compressed histograms cannot make a reader hold gigabytes. Past it, reading
/// fails at the line that passes it.
pub const MAX_SLOTS_PER_FILE: u64 = 1 << 26;

/// What a file may still hold, and the checks every interval passes before it is kept.
pub(crate) struct Budget {
    slots_left: u64,
}

impl Budget {
    pub(crate) fn new() -> Self {
        Budget {
            slots_left: MAX_SLOTS_PER_FILE,
        }
    }

    /// Checks that `slots` may join `series`: within the file's budget, and no count past
    /// 2^64 in the series.
    pub(crate) fn admit(&mut self, series: &Series, slots: &[(u32, u64)]) -> Result<(), String> {
        let taken = slots.len() as u64;
        if taken > self.slots_left {
            return Err(format!(
                "more than {MAX_SLOTS_PER_FILE} non-empty slots in the file, the most one is read with"
            ));
        }
        self.slots_left -= taken;
        slots
            .iter()
            .try_fold(series.total(), |sum, &(_, count)| sum.checked_add(count))
            .map(|_| ())
            .ok_or_else(|| "counts that add up past 2^64 in one series".into())
    }
}

/// Why a file could not be read: where, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file, as given.
    pub file: String,
    /// The 1-based line, when the problem is on one.
    pub line: Option<usize>,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for InputError {}

/// One interval of a series: when, how long, and which of the series' entries it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// Start, in seconds from the start of the run.
    pub start_s: f64,
    /// Length, in seconds.
    pub length_s: f64,
    /// Samples in it.
    pub total: u64,
    entries: Range<usize>,
}

/// The intervals of one series, their non-empty slots packed one after another.
#[derive(Debug, Clone)]
pub struct Series {
    layout: Layout,
    intervals: Vec<Interval>,
    /// Each interval's non-empty slots, ascending, as LEB128 pairs: the slot's distance from
    /// the previous one (from 0 for the first), then its count.
    packed: Vec<u8>,
    /// Scratch for sorting an interval's slots.
    sorting: Vec<(u32, u64)>,
}

impl Series {
    /// An empty series of `layout`.
    pub fn new(layout: Layout) -> Self {
        Series {
            layout,
            intervals: Vec::new(),
            packed: Vec::new(),
            sorting: Vec::new(),
        }
    }

    /// The layout of its histograms.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Its intervals, in the order read.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Samples over all its intervals (saturating at `u64::MAX`; the readers refuse files
    /// that reach it).
    pub fn total(&self) -> u64 {
        self.intervals
            .iter()
            .fold(0_u64, |sum, interval| sum.saturating_add(interval.total))
    }

    /// Appends an interval holding `slots` (`(index, count)`, any order, a slot more than
    /// once and zero counts allowed).
    pub fn push_interval(
        &mut self,
        start_s: f64,
        length_s: f64,
        slots: impl IntoIterator<Item = (u32, u64)>,
    ) {
        let mut sorting = std::mem::take(&mut self.sorting);
        sorting.clear();
        sorting.extend(slots.into_iter().filter(|&(_, count)| count > 0));
        sorting.sort_unstable_by_key(|&(slot, _)| slot);
        let first = self.packed.len();
        let (mut total, mut previous) = (0_u64, 0_u32);
        for same in sorting.chunk_by(|a, b| a.0 == b.0) {
            let slot = same[0].0;
            let count = same
                .iter()
                .fold(0_u64, |sum, &(_, c)| sum.saturating_add(c));
            total = total.saturating_add(count);
            write_varint(u64::from(slot - previous), &mut self.packed);
            write_varint(count, &mut self.packed);
            previous = slot;
        }
        self.sorting = sorting;
        self.intervals.push(Interval {
            start_s,
            length_s,
            total,
            entries: first..self.packed.len(),
        });
    }

    /// The `(slot, count)` entries of `interval` (one of [`intervals`](Self::intervals)),
    /// ascending by slot.
    pub fn entries(&self, interval: &Interval) -> impl Iterator<Item = (u32, u64)> + '_ {
        let mut bytes = &self.packed[interval.entries.clone()];
        let mut slot = 0_u32;
        std::iter::from_fn(move || {
            if bytes.is_empty() {
                return None;
            }
            slot += read_varint(&mut bytes) as u32;
            Some((slot, read_varint(&mut bytes)))
        })
    }

    /// Moves every interval's start by `seconds`.
    pub(crate) fn shift_starts(&mut self, seconds: f64) {
        for interval in &mut self.intervals {
            interval.start_s += seconds;
        }
    }

    /// Frees what reading reserved beyond what it kept.
    pub(crate) fn shrink(&mut self) {
        self.packed.shrink_to_fit();
        self.intervals.shrink_to_fit();
        self.sorting = Vec::new();
    }

    /// The merge of the intervals `keep` selects.
    pub fn merged(&self, keep: impl Fn(&Interval) -> bool) -> Distribution {
        Distribution::from_slots(
            self.layout,
            self.intervals
                .iter()
                .filter(|i| keep(i))
                .flat_map(|interval| self.entries(interval)),
        )
    }

    /// Keeps only the intervals that start in `from_s..to_s`.
    pub fn retain_between(&mut self, from_s: f64, to_s: f64) {
        self.intervals
            .retain(|interval| interval.start_s >= from_s && interval.start_s < to_s);
    }

    /// Bytes of its storage.
    pub fn memory_bytes(&self) -> usize {
        self.intervals.capacity() * std::mem::size_of::<Interval>() + self.packed.capacity()
    }
}

impl PartialEq for Series {
    /// Equal layouts and intervals holding equal slots (the scratch space aside).
    fn eq(&self, other: &Series) -> bool {
        self.layout == other.layout
            && self.intervals == other.intervals
            && self.packed == other.packed
    }
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads what [`write_varint`] wrote (the series' own bytes, so never malformed).
fn read_varint(bytes: &mut &[u8]) -> u64 {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().expect("packed by write_varint");
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

/// One recorded run: a file's series by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The file it was read from (or a name given by the caller).
    pub source: String,
    /// Its series by name, in name order.
    pub series: BTreeMap<String, Series>,
    /// Comment lines of the file (without `#`), as written: untrusted text.
    pub comments: Vec<String>,
}

impl Run {
    /// An empty run named `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Run {
            source: source.into(),
            series: BTreeMap::new(),
            comments: Vec::new(),
        }
    }

    /// Keeps only the intervals that start in `from_s..to_s` seconds from the run's start.
    pub fn retain_between(&mut self, from_s: f64, to_s: f64) {
        for series in self.series.values_mut() {
            series.retain_between(from_s, to_s);
        }
    }

    /// The end of its last interval, in seconds from its start.
    pub fn duration_s(&self) -> f64 {
        self.series
            .values()
            .flat_map(|series| series.intervals())
            .map(|interval| interval.start_s + interval.length_s)
            .fold(0.0, f64::max)
    }
}

/// Reads the run in the file at `path`: an HdrHistogram interval log, or a taskmeter JSON-lines
/// log (schema `taskmeter.snapshot/2`), told apart by their first non-blank character.
///
/// ```
/// let path = std::env::temp_dir().join(format!("tune-doc-{}.jsonl", std::process::id()));
/// std::fs::write(&path, r#"{"schema": "taskmeter.snapshot/1"}"#).unwrap();
/// let error = taskmeter_tune::read_run(&path).unwrap_err();
/// assert_eq!(error.line, Some(1));
/// assert!(error.reason.contains("no buckets"), "{error}");
/// # std::fs::remove_file(&path).ok();
/// ```
pub fn read_run(path: impl AsRef<Path>) -> Result<Run, InputError> {
    read_run_with_progress(path, &mut |_| {})
}

/// [`read_run`], calling `progress` with the lines read so far every 1,000 lines.
pub fn read_run_with_progress(
    path: impl AsRef<Path>,
    progress: &mut dyn FnMut(usize),
) -> Result<Run, InputError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|error| InputError {
        file: name.clone(),
        line: None,
        reason: format!("cannot open: {error}"),
    })?;
    read_run_from(name, BufReader::new(file), progress)
}

/// [`read_run`] from any reader; `source` names it in errors.
pub fn read_run_from(
    source: String,
    mut input: impl BufRead,
    progress: &mut dyn FnMut(usize),
) -> Result<Run, InputError> {
    let fail = |line: Option<usize>, reason: String| InputError {
        file: source.clone(),
        line,
        reason,
    };
    let mut first = String::new();
    let mut lines = 0;
    // Blank lines before the content count, so that errors name the right line.
    loop {
        first.clear();
        let read = input
            .read_line(&mut first)
            .map_err(|error| fail(Some(lines + 1), format!("cannot read: {error}")))?;
        if read == 0 {
            return Err(fail(None, "empty file: no intervals".into()));
        }
        lines += 1;
        if !first.trim().is_empty() {
            break;
        }
    }
    let rest = first.as_bytes().chain(input);
    let mut reader = LineReader::new(rest, lines - 1, progress);
    let mut run = if first.trim_start().starts_with('{') {
        jsonl::read(source.clone(), &mut reader)
    } else {
        hlog::read(source.clone(), &mut reader)
    }
    .map_err(|(line, reason)| fail(line, reason))?;
    if run.series.is_empty() {
        return Err(fail(None, "no intervals".into()));
    }
    run.series.values_mut().for_each(Series::shrink);
    Ok(run)
}

/// Why a format's reader stopped: the line, when on one, and the reason.
type Failure = (Option<usize>, String);

/// Lines with their numbers, reporting progress.
struct LineReader<'p, R> {
    input: R,
    number: usize,
    buffer: String,
    progress: &'p mut dyn FnMut(usize),
}

impl<'p, R: BufRead> LineReader<'p, R> {
    fn new(input: R, number: usize, progress: &'p mut dyn FnMut(usize)) -> Self {
        LineReader {
            input,
            number,
            buffer: String::new(),
            progress,
        }
    }

    /// The next line without its end, with its 1-based number; `Err` names the line.
    fn next_line(&mut self) -> Result<Option<(usize, &str)>, Failure> {
        self.buffer.clear();
        let read = self
            .input
            .read_line(&mut self.buffer)
            .map_err(|error| (Some(self.number + 1), format!("cannot read: {error}")))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.number.is_multiple_of(1000) {
            (self.progress)(self.number);
        }
        let line = self.buffer.trim_end_matches(['\n', '\r']);
        Ok(Some((self.number, line)))
    }
}
