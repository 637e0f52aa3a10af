//! HdrHistogram interval logs: each snapshot's interval histograms, V2-deflate compressed, one
//! tag per `(runner, outcome)` (`subprocess.success`, …), so that HdrHistogram's tools
//! (HistogramLogAnalyzer, `hdrh` in Python, the Java `HistogramLogProcessor`) can read, merge
//! and plot them. Values are milliseconds.
//!
//! The header is written by `hdrhistogram`'s interval-log writer; each line is encoded here,
//! from the snapshot's sparse counts, into the bytes `hdrhistogram`'s `V2DeflateSerializer`
//! writes for the same histogram (a test compares them), without building the histogram: a
//! line costs the label's non-empty slots, and an empty label a few bytes.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::contract::{RunnerType, TaskOutcome};
use crate::sink::{SinkError, SnapshotSink};
use crate::snapshot::{DurationCounts, Snapshot};

/// A [`SnapshotSink`] that appends every snapshot's interval histograms to an interval log.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use taskmeter::export::interval_log::IntervalLogSink;
/// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, SnapshotterBuilder, TaskOutcome};
///
/// let path = std::env::temp_dir().join(format!("taskmeter-doc-{}.hlog", std::process::id()));
/// let metrics = Arc::new(AtomicMetrics::new());
/// let snapshotter = SnapshotterBuilder::new(Duration::from_millis(50))
///     .sink(IntervalLogSink::create(&path).unwrap())
///     .spawn(&metrics);
/// metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 12);
/// snapshotter.stop();
/// let log = std::fs::read_to_string(&path).unwrap();
/// assert!(log.contains("Tag=wasm.success,"));
/// # std::fs::remove_file(&path).ok();
/// ```
pub struct IntervalLogSink<W: Write + Send> {
    out: W,
    base_time: SystemTime,
    /// Scratch buffers, kept from line to line.
    uncompressed: Vec<u8>,
    compressed: Vec<u8>,
    line: String,
}

impl IntervalLogSink<BufWriter<File>> {
    /// Creates (or truncates) the file at `path` and writes the log's header.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write + Send> IntervalLogSink<W> {
    /// Writes the log's header to `out`; interval timestamps are relative to now.
    pub fn new(mut out: W) -> io::Result<Self> {
        let base_time = SystemTime::now();
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("taskmeter interval log: task durations in ms, one tag per runner.outcome")
            .with_start_time(base_time)
            .with_base_time(base_time)
            .begin_log_with(&mut out, &mut serializer)?;
        writeln!(
            out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        out.flush()?;
        Ok(IntervalLogSink {
            out,
            base_time,
            uncompressed: Vec::new(),
            compressed: Vec::new(),
            line: String::new(),
        })
    }

    /// The tag of `(runner, outcome)` in the log.
    pub fn tag(runner: RunnerType, outcome: TaskOutcome) -> String {
        format!("{}.{}", runner.as_label(), outcome.as_label())
    }

    /// Appends `snapshot`'s interval histograms, one line per `(runner, outcome)`, and flushes.
    pub fn write_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        // Saturating: a wall clock set back must not fail the log or give negative times.
        let start = snapshot
            .taken_at()
            .checked_sub(snapshot.elapsed())
            .and_then(|interval_start| interval_start.duration_since(self.base_time).ok())
            .unwrap_or(Duration::ZERO);
        for runner in RunnerType::ALL {
            for outcome in TaskOutcome::ALL {
                let counts = snapshot.interval().duration_counts(runner, outcome);
                self.line.clear();
                // As hdrhistogram's writer formats a line: tag, start, length, max, histogram.
                let _ = write!(
                    self.line,
                    "Tag={},{:.3},{:.3},{:.3},",
                    Self::tag(runner, outcome),
                    start.as_secs_f64(),
                    snapshot.elapsed().as_secs_f64(),
                    counts.max() as f64,
                );
                encode_v2(counts, &mut self.uncompressed);
                deflate_v2(&self.uncompressed, &mut self.compressed)?;
                base64::engine::general_purpose::STANDARD
                    .encode_string(&self.compressed, &mut self.line);
                self.line.push('\n');
                self.out.write_all(self.line.as_bytes())?;
            }
        }
        self.out.flush()?;
        Ok(())
    }
}

/// The V2 encoding's cookies and header length (HdrHistogram's `V2EncodingCookieBase` and
/// `V2CompressedEncodingCookieBase`, with the word size 8 of 64-bit counts).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
const V2_HEADER_BYTES: usize = 40;

/// Replaces `out` with the V2 encoding of `counts`: a header, then the counts from slot 0 to
/// the highest non-empty one (slot 0 alone when empty), each zig-zag LEB128, a run of more
/// than one empty slot written as its negated length.
fn encode_v2(counts: &DurationCounts, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&V2_COOKIE.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // the payload length, below
    out.extend_from_slice(&0_u32.to_be_bytes()); // normalizing index offset
    out.extend_from_slice(&u32::from(counts.significant_digits()).to_be_bytes());
    out.extend_from_slice(&crate::layout::LOWEST_DISCERNIBLE_MS.to_be_bytes());
    out.extend_from_slice(&counts.highest_trackable().to_be_bytes());
    out.extend_from_slice(&1.0_f64.to_be_bytes()); // integer-to-double conversion ratio
    debug_assert_eq!(out.len(), V2_HEADER_BYTES);
    let mut next_slot = 0_i64;
    for (slot, count) in counts.slots() {
        let empty_before = slot as i64 - next_slot;
        match empty_before {
            0 => {}
            1 => write_varint(zig_zag(0), out),
            run => write_varint(zig_zag(-run), out),
        }
        // Counts of one snapshot's interval stay far below 2^63 (saturated beyond, where
        // hdrhistogram's serializer refuses the histogram).
        write_varint(zig_zag(i64::try_from(count).unwrap_or(i64::MAX)), out);
        next_slot = slot as i64 + 1;
    }
    if next_slot == 0 {
        write_varint(zig_zag(0), out);
    }
    let payload = (out.len() - V2_HEADER_BYTES) as u32;
    out[4..8].copy_from_slice(&payload.to_be_bytes());
}

fn zig_zag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// LEB128, as HdrHistogram writes it: at most 9 bytes, the ninth whole.
fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    for _ in 0..8 {
        if value < 0x80 {
            out.push(value as u8);
            return;
        }
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Replaces `out` with the compressed V2 form of the V2 bytes `v2`: a cookie, the length, and
/// the zlib stream at the default level.
fn deflate_v2(v2: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut compressor = ZlibEncoder::new(&mut *out, Compression::default());
    compressor.write_all(v2)?;
    compressor.finish()?;
    let length = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

impl<W: Write + Send> SnapshotSink for IntervalLogSink<W> {
    fn name(&self) -> &str {
        "interval log"
    }

    fn publish(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        self.write_snapshot(snapshot)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    use proptest::prelude::*;

    use super::*;
    use crate::{AtomicMetrics, MetricsBackend};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Model comparison: the bytes written from the sparse counts are those hdrhistogram's
        /// serializers write for the same histogram, plain and compressed, empty included.
        #[test]
        fn a_line_s_histogram_is_hdrhistogram_s_encoding(
            digits in 1_u8..=4,
            durations in proptest::collection::vec(
                prop_oneof![0..3_000_u64, 0..100_000_000_u64, Just(u64::MAX)], 0..60),
        ) {
            let metrics = AtomicMetrics::builder().significant_digits(digits).build().unwrap();
            let (runner, outcome) = (RunnerType::Container, TaskOutcome::Failure);
            for &duration in &durations {
                metrics.record_task_completed(runner, outcome, duration);
            }
            let snapshot = metrics.snapshot();
            let counts = snapshot.interval().duration_counts(runner, outcome);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            encode_v2(counts, &mut ours);
            V2Serializer::new().serialize(counts.histogram(), &mut theirs).unwrap();
            prop_assert_eq!(&ours, &theirs);
            let mut compressed = Vec::new();
            deflate_v2(&ours, &mut compressed).unwrap();
            theirs.clear();
            V2DeflateSerializer::new().serialize(counts.histogram(), &mut theirs).unwrap();
            prop_assert_eq!(compressed, theirs);
        }
    }

    /// LEB128 as HdrHistogram reads it: seven bits a byte while the top bit is set, and a
    /// ninth byte taken whole.
    #[test]
    fn varints_read_back_as_hdrhistogram_reads_them() {
        let read = |bytes: &[u8]| -> u64 {
            let mut value = 0_u64;
            for (position, &byte) in bytes.iter().enumerate() {
                if position == 8 {
                    return value | (u64::from(byte) << 56);
                }
                value |= u64::from(byte & 0x7f) << (7 * position);
                if byte & 0x80 == 0 {
                    break;
                }
            }
            value
        };
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            1 << 55,
            (1 << 56) - 1,
            1 << 56,
            u64::MAX,
        ] {
            let mut bytes = Vec::new();
            write_varint(value, &mut bytes);
            assert_eq!(read(&bytes), value, "{bytes:?}");
            let expected_length = (1..=8).find(|&n| value >> (7 * n) == 0).unwrap_or(9);
            assert_eq!(bytes.len(), expected_length, "{value}");
        }
    }
}
