//! HdrHistogram interval logs: each snapshot's interval histograms, V2-deflate compressed, one
//! tag per `(runner, outcome)` (`subprocess.success`, …), written by `hdrhistogram`'s own
//! interval-log writer so that HdrHistogram's tools (HistogramLogAnalyzer, `hdrh` in Python,
//! the Java `HistogramLogProcessor`) can read, merge and plot them. Values are milliseconds.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::contract::{RunnerType, TaskOutcome};
use crate::sink::{SinkError, SnapshotSink};
use crate::snapshot::Snapshot;

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
    serializer: V2DeflateSerializer,
    base_time: SystemTime,
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
            serializer,
            base_time,
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
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        for runner in RunnerType::ALL {
            for outcome in TaskOutcome::ALL {
                let tag = Self::tag(runner, outcome);
                let histogram = snapshot.interval().duration(runner, outcome);
                writer.write_histogram(histogram, start, snapshot.elapsed(), Tag::new(&tag))?;
            }
        }
        self.out.flush()?;
        Ok(())
    }
}

impl<W: Write + Send> SnapshotSink for IntervalLogSink<W> {
    fn name(&self) -> &str {
        "interval log"
    }

    fn publish(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        self.write_snapshot(snapshot)
    }
}
