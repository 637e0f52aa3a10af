//! [`AtomicMetrics`]: the lock-free engine behind [`MetricsBackend`].
//!
//! Writers go to one of the engine's stripes (see [`crate::stripe`] for the storage and the
//! phase protocol) and never touch anything else. The reader side (`snapshot`) drains every
//! stripe under one lock, builds a [`Snapshot`], and publishes it, so `latest()` is a
//! wait-free load of an `Arc`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Builder, Config};
use crate::contract::{MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome};
use crate::lease::Seating;
use crate::publish::Published;
use crate::snapshot::{Snapshot, View};
use crate::stripe::{Buffers, Stripe, completion_label, error_label};
use crate::sync::{Mutex, lock};

/// The lock-free metrics engine.
///
/// # Guarantees
///
/// - Every `record_*` call is a few atomic operations on fixed, preallocated arrays: no lock,
///   no heap allocation, no system call, no panic, whatever the input, on any thread, a
///   thread's first call included; a writer never waits for a reader.
/// - Any `u64` duration is accepted. One above
///   [`highest_duration_ms`](Self::highest_duration_ms) goes into the histogram as that value
///   and is counted in [`View::clamped`]; the sum keeps the true value (exact to 128 bits,
///   reported saturating at `u64::MAX`).
/// - Memory is fixed at construction by the configuration
///   ([`recording_memory_bytes`](Self::recording_memory_bytes)), whatever the number of
///   threads that ever record; what a thread recorded stays after it exits.
/// - Snapshots are consistent; see [`Snapshot`].
///
/// # Costs
///
/// A thread records on a stripe it holds alone (a *lease*, claimed on its first call): one
/// locked instruction per call (entering the stripe's phase), the increments as plain loads
/// and stores, and a plain release store to leave. With more recording threads than
/// [`stripes`](Self::stripes), the threads that find none free share one extra stripe, where
/// each increment is a `fetch_add` (as fast as a shared counter can be, but contended). Leases
/// of threads that are not recording at snapshot time are handed back then, so threads that
/// exit free their stripe at the next snapshot. [`snapshot`](Self::snapshot) reads every slot
/// of every stripe that recorded: its cost grows with stripes × histogram size, not with the
/// event rate.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use taskmeter::{AtomicMetrics, MetricsHandle, RunnerType, TaskOutcome};
///
/// let metrics = Arc::new(AtomicMetrics::new());
/// let handle: MetricsHandle = metrics.clone();
/// handle.record_task_started(RunnerType::Wasm);
/// handle.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 42);
///
/// let snapshot = metrics.snapshot();
/// let view = snapshot.cumulative();
/// assert_eq!(view.completed(RunnerType::Wasm, TaskOutcome::Success), 1);
/// assert_eq!(view.duration(RunnerType::Wasm, TaskOutcome::Success).max(), 42);
/// assert_eq!(snapshot.in_flight(RunnerType::Wasm), 0);
/// ```
pub struct AtomicMetrics {
    config: Config,
    /// `config.stripes` leasable stripes, then the shared one.
    stripes: Box<[Stripe]>,
    /// One buffer per stripe, plus the reader's spare (see the stripe module).
    buffers: Buffers,
    seating: Seating,
    reader: Mutex<ReaderState>,
    published: Published<Snapshot>,
    /// Failed or panicked snapshot sink calls; read into each snapshot.
    sink_failures: std::sync::atomic::AtomicU64,
}

/// What the reader keeps between two snapshots; its lock also serializes drains.
struct ReaderState {
    previous: Arc<Snapshot>,
    previous_at: Instant,
    /// The snapshot before `previous`, once nobody else holds it: its storage is reused for
    /// the next snapshot, so a steady snapshotter allocates nothing large. Costs one snapshot
    /// of memory.
    spare: Option<Snapshot>,
    /// The zeroed buffer the next flip installs.
    spare_buffer: usize,
    /// Per stripe, its entry count at its last flip.
    entry_marks: Box<[u64]>,
}

impl AtomicMetrics {
    /// An engine with the defaults: 1 ms to 24 h, 3 significant digits, one stripe per CPU.
    pub fn new() -> Self {
        Builder::default()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to choose the range, precision and stripes.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn with_config(config: Config) -> Self {
        let layout = config.layout;
        let shared = config.stripes;
        // Stripe `i` starts on buffer `i`; the last buffer is the reader's first spare.
        let stripes: Box<[Stripe]> = (0..=shared)
            .map(|index| Stripe::new(index, index == shared))
            .collect();
        let buffer_count = shared + 2;
        let buffers = Buffers::new(buffer_count, layout.len());
        let empty = Arc::new(Snapshot {
            sequence: 0,
            taken_at: SystemTime::now(),
            elapsed: Duration::ZERO,
            cumulative: View::empty(&layout),
            interval: View::empty(&layout),
            sink_failures: 0,
        });
        AtomicMetrics {
            sink_failures: std::sync::atomic::AtomicU64::new(0),
            seating: Seating::new(config.stripes),
            reader: Mutex::new(ReaderState {
                previous: Arc::clone(&empty),
                previous_at: Instant::now(),
                spare: None,
                spare_buffer: buffer_count - 1,
                entry_marks: vec![0; stripes.len()].into_boxed_slice(),
            }),
            stripes,
            buffers,
            config,
            published: Published::new(empty),
        }
    }

    /// The top of the duration range, in ms.
    pub fn highest_duration_ms(&self) -> u64 {
        self.config.layout.highest()
    }

    /// The HDR precision, in significant decimal digits.
    pub fn significant_digits(&self) -> u8 {
        self.config.layout.significant_digits()
    }

    /// The number of stripes threads can hold alone (the shared stripe is one more).
    pub fn stripes(&self) -> usize {
        self.config.stripes
    }

    /// Bytes of recording state: fixed at construction, whatever the number of threads.
    /// At the defaults that is `(stripes + 2) × 1.7 MiB`: one buffer of twelve 18,432-slot
    /// histograms per stripe, the shared stripe's, and the reader's spare. A published
    /// [`Snapshot`] is extra: see [`Snapshot::memory_bytes`].
    pub fn recording_memory_bytes(&self) -> usize {
        Self::recording_memory_for(&self.config)
    }

    pub(crate) fn recording_memory_for(config: &Config) -> usize {
        std::mem::size_of::<Self>()
            + (config.stripes + 1) * (Stripe::memory_bytes() + std::mem::size_of::<u64>())
            + Buffers::memory_bytes(config.stripes + 2, config.layout.len())
    }

    /// Takes a snapshot now, publishes it (so [`latest`](Self::latest) returns it), and
    /// returns it.
    ///
    /// Callers on several threads are served one at a time, in the order of their sequence
    /// numbers; writers are never blocked. The cost is a scan of every histogram slot of
    /// every stripe plus building the `hdrhistogram` histograms (see the README's figures).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot_at(SystemTime::now(), Instant::now())
    }

    /// [`snapshot`](Self::snapshot) with the clocks read by the caller, so tests can move them,
    /// backwards included.
    fn snapshot_at(&self, wall_clock: SystemTime, monotonic: Instant) -> Arc<Snapshot> {
        let layout = self.config.layout;
        let mut guard = lock(&self.reader);
        let reader = &mut *guard;
        let previous = &reader.previous;
        let mut next = reader.spare.take().unwrap_or_else(|| Snapshot {
            sequence: 0,
            taken_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::ZERO,
            cumulative: View::empty(&layout),
            interval: View::empty(&layout),
            sink_failures: 0,
        });
        let interval = &mut next.interval;
        interval.clear();
        // Flip, drain and free each stripe in turn (each drained buffer is the next flip's
        // spare), reading the counters right after the last flip: see the stripe module on
        // why that keeps in-flight never negative.
        let last = self.stripes.len() - 1;
        let mut spare_buffer = reader.spare_buffer;
        let mut released = false;
        for (index, stripe) in self.stripes.iter().enumerate() {
            let entry_mark = &mut reader.entry_marks[index];
            let flipped = stripe.flip(spare_buffer, entry_mark);
            if index == last {
                // Counters are cumulative on the stripes; the interval is the growth.
                for (runner, started) in interval.started.iter_mut().enumerate() {
                    let now: u64 = self.stripes.iter().map(|s| s.started(runner)).sum();
                    *started = now - previous.cumulative.started[runner];
                }
                for (label, errors) in interval.errors.iter_mut().enumerate() {
                    let now: u64 = self.stripes.iter().map(|s| s.errors(label)).sum();
                    *errors = now - previous.cumulative.errors[label];
                }
            }
            spare_buffer = stripe.drain(flipped, &self.buffers, |drained| {
                interval.sums[drained.label] += drained.sum;
                interval.clamped[drained.label] += drained.clamped;
                for (slot, count) in drained.slots {
                    interval.record_slot(drained.label, slot, count);
                }
            });
            released |= stripe.release_if_idle(&self.buffers, *entry_mark);
        }
        reader.spare_buffer = spare_buffer;
        interval.finish_recording();
        if released {
            self.seating.note_release();
        }
        next.cumulative.copy_from(&previous.cumulative);
        next.cumulative.add(&next.interval);

        next.sequence = previous.sequence + 1;
        next.taken_at = wall_clock;
        // Saturating: never negative, whatever the caller's clocks did.
        next.elapsed = monotonic.saturating_duration_since(reader.previous_at);
        // Relaxed: a plain tally; any recent value will do.
        next.sink_failures = self
            .sink_failures
            .load(std::sync::atomic::Ordering::Relaxed);
        let snapshot = Arc::new(next);
        // Published while still holding the reader lock, so publication order is sequence
        // order and `latest()` never goes back in time.
        self.published.store(Arc::clone(&snapshot));
        reader.previous_at = reader.previous_at.max(monotonic);
        let retired = std::mem::replace(&mut reader.previous, Arc::clone(&snapshot));
        // Out of `published` and `reader` now: reuse its storage unless a user still holds it.
        reader.spare = Arc::try_unwrap(retired).ok();
        snapshot
    }

    /// Counts one failed or panicked sink call; it shows in the next snapshot.
    #[cfg(not(loom))]
    pub(crate) fn count_sink_failure(&self) {
        self.sink_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last published snapshot: wait-free, never touches the recording state.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.published.load()
    }
}

impl Default for AtomicMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AtomicMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicMetrics")
            .field("highest_duration_ms", &self.highest_duration_ms())
            .field("significant_digits", &self.significant_digits())
            .field("stripes", &self.stripes())
            .field("recording_memory_bytes", &self.recording_memory_bytes())
            .finish_non_exhaustive()
    }
}

impl MetricsBackend for AtomicMetrics {
    #[inline]
    fn record_task_started(&self, runner_type: RunnerType) {
        self.seating.record(&self.stripes, |stripe, lease| {
            stripe.record_started(lease, &self.buffers, runner_type)
        });
    }

    #[inline]
    fn record_task_completed(
        &self,
        runner_type: RunnerType,
        outcome: TaskOutcome,
        duration_ms: u64,
    ) {
        let layout = &self.config.layout;
        let clamped = duration_ms > layout.highest();
        let slot = layout.index_of(duration_ms.min(layout.highest()));
        let label = completion_label(runner_type, outcome);
        let slot_offset = self.buffers.slot_offset(label, slot);
        self.seating.record(&self.stripes, |stripe, lease| {
            stripe.record_completion(
                lease,
                &self.buffers,
                label,
                slot_offset,
                duration_ms,
                clamped,
            )
        });
    }

    #[inline]
    fn record_runner_error(&self, runner_type: RunnerType, error_kind: RunnerErrorKind) {
        let label = error_label(runner_type, error_kind);
        self.seating.record(&self.stripes, |stripe, lease| {
            stripe.record_error(lease, &self.buffers, label)
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn clocks_going_backwards_give_zero_elapsed_and_no_panic() {
        let start = Instant::now();
        let metrics = AtomicMetrics::builder().stripes(1).build().unwrap();
        let wall = SystemTime::now();
        let later = Instant::now() + Duration::from_secs(10);
        let first = metrics.snapshot_at(wall, later);
        // From the engine's creation, which lies between `start` and `later - 10 s`.
        assert!(first.elapsed() <= later - start && first.elapsed() >= Duration::from_secs(10));
        // Both clocks jump back: monotonic by a second, wall-clock to before the epoch.
        metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 3);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(3600);
        let second = metrics.snapshot_at(before_epoch, later - Duration::from_secs(1));
        assert_eq!(second.elapsed(), Duration::ZERO);
        assert_eq!(second.taken_at(), before_epoch);
        assert_eq!(
            second
                .interval()
                .completed(RunnerType::Wasm, TaskOutcome::Success),
            1
        );
        // Elapsed is measured from the latest monotonic reading, not the one that went back.
        let third = metrics.snapshot_at(wall, later + Duration::from_secs(2));
        assert_eq!(third.elapsed(), Duration::from_secs(2));
        // Exports of the odd snapshot work too.
        #[cfg(feature = "json")]
        assert!(second.to_json().contains("\"taken_at_unix_ms\":0"));
        #[cfg(feature = "hlog")]
        {
            let mut log = crate::export::interval_log::IntervalLogSink::new(Vec::new()).unwrap();
            log.write_snapshot(&second).unwrap();
            log.write_snapshot(&third).unwrap();
        }
        let _ = second.to_prometheus();
    }
}
