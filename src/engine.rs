//! [`AtomicMetrics`]: the engine behind [`MetricsBackend`], joining the write side
//! ([`crate::recording`]) to the reader ([`crate::reader`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::config::{Builder, Config};
use crate::contract::{MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome};
use crate::reader::Reader;
use crate::recording::Recording;
use crate::recording::labelled::{Label, LabelRef, LabelledErrors, resolve, resolve_ref};
use crate::snapshot::Snapshot;

/// The lock-free metrics engine.
///
/// # Guarantees
///
/// - Every `record_*` call is a few operations on fixed, preallocated arrays: no lock, no
///   heap allocation, no system call, no panic, whatever the input, on any thread; a writer
///   never waits for a reader. (A thread's first call registers a thread-exit destructor
///   with the C runtime, which allocates a small node there once; see below.)
/// - Record calls are async-signal-safe once their thread has made one call: a call from a
///   signal handler, or from any code that runs inside a record call on the same thread, is
///   counted exactly and breaks no snapshot (it records on a shared stripe). Make one call on
///   a thread before a handler on it records: the first call's registration above is not
///   async-signal-safe.
/// - [`snapshot`](Self::snapshot) returns in bounded time whatever the writers' scheduling,
///   and leaves the engine able to take the next one if it unwinds; see there.
/// - Any `u64` duration is accepted. One above
///   [`highest_duration_ms`](Self::highest_duration_ms) goes into the histogram as that value
///   and is counted in [`View::clamped`](crate::View::clamped); the sum keeps the true value
///   (exact to 128 bits, reported saturating at `u64::MAX`).
/// - Memory is bounded at construction by the configuration
///   ([`recording_memory_bytes`](Self::recording_memory_bytes)), whatever the number of
///   threads that ever record; what is resident follows use (see below). What a thread
///   recorded stays after it exits.
/// - Snapshots are consistent; see [`Snapshot`].
///
/// # Costs
///
/// The engine has *leased* stripes and *shared* stripes ([`Builder::stripes`]). A thread
/// that holds a lease records with plain loads and stores and no locked instruction: two
/// increments of its own sequence word, a load of the lease word, and the increments of the
/// data. Threads lease at their first call; a thread that exits hands its lease to the next
/// thread to start, and a snapshot takes back the lease of a thread idle for a whole period.
/// Threads beyond the leases record on shared stripes, spread over their lanes, with atomic
/// read-modify-writes: `record_task_started` and `record_runner_error` one uncontended
/// `fetch_add`, `record_task_completed` four, plus one when clamped.
///
/// [`snapshot`](Self::snapshot) switches every stripe (a CAS or a swap each), makes one
/// `membarrier` system call if a lease is held (see [`is_fenced`](Self::is_fenced) for
/// where it cannot), and drains only the histogram blocks written
/// since the last snapshot: its cost grows with what was recorded and with the stripes
/// written, plus a fixed cost per snapshot for building the `hdrhistogram` views.
///
/// # Memory
///
/// Each stripe reserves two phases of histogram counts for every `(runner, outcome)` label
/// (32-bit counts on a leased stripe, 64-bit on a shared one) and a few KiB of counters.
/// The counts come zeroed from the allocator, so the system backs a page only when a duration
/// first lands in it: an engine makes resident a few KiB per stripe at construction, then
/// what its recording threads write. [`recording_memory_bytes`](Self::recording_memory_bytes)
/// is the bound: everything reserved.
///
/// The read side holds the published snapshot and the window's
/// [`WINDOW_AGE_BUCKETS`](crate::WINDOW_AGE_BUCKETS) bucket starts, which share every block of
/// counts that did not change: it follows the blocks of slots ever written, not the layout
/// (see [`Snapshot::memory_bytes`](crate::Snapshot::memory_bytes)).
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
    pub(crate) recording: Recording,
    reader: Reader,
    /// Failed or panicked snapshot sink calls; read into each snapshot.
    sink_failures: std::sync::atomic::AtomicU64,
    /// Snapshots a snapshotter took that panicked; read into each snapshot.
    snapshot_failures: std::sync::atomic::AtomicU64,
}

impl AtomicMetrics {
    /// An engine with the defaults: 1 ms to 24 h, 3 significant digits, and the stripes of
    /// [`Builder::stripes`].
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
        let recording = Recording::new(
            config.layout,
            config.leased(),
            config.shared(),
            config.custom_labels,
        );
        AtomicMetrics {
            reader: Reader::new(
                &config.layout,
                &recording,
                config.max_snapshot_wait,
                config.window,
            ),
            recording,
            sink_failures: std::sync::atomic::AtomicU64::new(0),
            snapshot_failures: std::sync::atomic::AtomicU64::new(0),
            config,
        }
    }

    /// Whether leased writers pay a fence on each call: the process could not use
    /// `membarrier(2)` when this engine was built (a kernel without it, a sandbox that refuses
    /// it), or a snapshot's barrier failed since. Recording stays exact either way; a fenced
    /// leased call costs one locked instruction more. See the README's Reliability section.
    pub fn is_fenced(&self) -> bool {
        self.recording.is_fenced()
    }

    /// The span of [`Snapshot::window`](crate::Snapshot::window) ([`Builder::window`]).
    pub fn window(&self) -> std::time::Duration {
        self.config.window
    }

    /// Counts a runner error whose runner or error label may be the application's own (solti's
    /// `Custom(String)` variants). Two contract labels take the same path as
    /// [`record_runner_error`](MetricsBackend::record_runner_error). A custom label already
    /// seen is found without a lock or an allocation; a new one is added once (the `String`
    /// given is kept), without a lock either; past [`Builder::custom_labels`], or longer than
    /// [`MAX_CUSTOM_LABEL_BYTES`](crate::MAX_CUSTOM_LABEL_BYTES), new labels are counted under
    /// [`OVERFLOW_LABEL`](crate::OVERFLOW_LABEL) and in
    /// [`View::custom_label_overflows`](crate::View::custom_label_overflows).
    ///
    /// ```
    /// use taskmeter::{AtomicMetrics, Label, RunnerErrorKind};
    ///
    /// let metrics = AtomicMetrics::new();
    /// let runner = Label::Custom("image-resize".to_owned());
    /// metrics.record_labelled_runner_error(runner, Label::Known(RunnerErrorKind::SpawnFailed));
    /// let snapshot = metrics.snapshot();
    /// let errors: Vec<_> = snapshot.cumulative().labelled_errors().collect();
    /// assert_eq!(errors, [("image-resize", "spawn_failed", 1)]);
    /// ```
    pub fn record_labelled_runner_error(
        &self,
        runner: Label<RunnerType>,
        kind: Label<RunnerErrorKind>,
    ) {
        self.record_resolved_error(resolve(runner), resolve(kind));
    }

    /// [`record_labelled_runner_error`](Self::record_labelled_runner_error) with borrowed
    /// labels. A custom label not in its table yet is copied into it (one allocation, once
    /// per label); after that, a call under it allocates and frees nothing, as does a call
    /// counted under [`OVERFLOW_LABEL`](crate::OVERFLOW_LABEL). Neither ever takes a lock,
    /// so a signal handler may make such a call (see the README's Reliability section);
    /// [`record_labelled_runner_error`](Self::record_labelled_runner_error) frees the
    /// `String` it is given when the label is already counted, which a handler must not.
    ///
    /// ```
    /// use taskmeter::{AtomicMetrics, LabelRef, RunnerErrorKind};
    ///
    /// let metrics = AtomicMetrics::new();
    /// let runner = LabelRef::Custom("image-resize");
    /// // The first call adds the label (a copy); the others find it.
    /// for _ in 0..3 {
    ///     metrics.record_labelled_runner_error_ref(runner, LabelRef::Known(RunnerErrorKind::SpawnFailed));
    /// }
    /// let snapshot = metrics.snapshot();
    /// let errors: Vec<_> = snapshot.cumulative().labelled_errors().collect();
    /// assert_eq!(errors, [("image-resize", "spawn_failed", 3)]);
    /// ```
    pub fn record_labelled_runner_error_ref(
        &self,
        runner: LabelRef<'_, RunnerType>,
        kind: LabelRef<'_, RunnerErrorKind>,
    ) {
        self.record_resolved_error(resolve_ref(runner), resolve_ref(kind));
    }

    fn record_resolved_error(
        &self,
        runner: Result<RunnerType, std::borrow::Cow<'_, str>>,
        kind: Result<RunnerErrorKind, std::borrow::Cow<'_, str>>,
    ) {
        match (runner, kind) {
            (Ok(runner), Ok(kind)) => self.recording.record_error(runner, kind),
            (runner, kind) => self.recording.labelled.record(runner, kind),
        }
    }

    #[cfg(all(feature = "solti", not(loom)))]
    pub(crate) fn taskvisor(&self) -> &crate::solti::TaskvisorCounters {
        &self.recording.taskvisor
    }

    /// The top of the duration range, in ms.
    pub fn highest_duration_ms(&self) -> u64 {
        self.config.layout.highest()
    }

    /// The HDR precision, in significant decimal digits.
    pub fn significant_digits(&self) -> u8 {
        self.config.layout.significant_digits()
    }

    /// The number of stripes threads spread over, leased and shared.
    pub fn stripes(&self) -> usize {
        self.config.stripes
    }

    /// How many of the [`stripes`](Self::stripes) are leased: that many threads at once
    /// record without a locked instruction.
    pub fn leased_stripes(&self) -> usize {
        self.config.leased()
    }

    /// Bytes of recording state reserved at construction: the bound on what it can make
    /// resident, whatever the number of threads. Resident memory follows use (see
    /// [Memory](Self#memory)). The read side is extra: see
    /// [`memory_bound_bytes`](Self::memory_bound_bytes) and [`Snapshot::memory_bytes`].
    pub fn recording_memory_bytes(&self) -> usize {
        Self::recording_memory_for(&self.config)
    }

    /// The most memory this engine can hold: its [recording state](Self::recording_memory_bytes)
    /// and its read side at their worst, every block of every label written (the published
    /// snapshot, the window's age buckets, the interval a snapshot builds, each with its
    /// folds, pending lists and built histograms). What
    /// [`Builder::memory_limit_bytes`](crate::Builder::memory_limit_bytes) bounds. Snapshots
    /// that users hold beyond the latest are theirs, outside it (see
    /// [`Snapshot::memory_bytes`]); in practice the read side holds a small part of its bound,
    /// since durations touch few blocks.
    pub fn memory_bound_bytes(&self) -> usize {
        Self::memory_bound_for(&self.config)
    }

    pub(crate) fn memory_bound_for(config: &Config) -> usize {
        let cells = LabelledErrors::cells_for(config.custom_labels);
        Self::recording_memory_for(config) + Reader::worst_case_bytes(&config.layout, cells)
    }

    pub(crate) fn recording_memory_for(config: &Config) -> usize {
        std::mem::size_of::<Self>()
            + Recording::reserved_bytes(&config.layout, config.leased(), config.shared())
            + LabelledErrors::reserved_bytes(config.custom_labels)
    }

    /// Takes a snapshot now, publishes it (so [`latest`](Self::latest) returns it), and
    /// returns it.
    ///
    /// Callers on several threads are served one at a time, in the order of their sequence
    /// numbers; writers are never blocked. See [Costs](Self#costs).
    ///
    /// # Bounded, and safe to unwind
    ///
    /// A snapshot waits at most [`Builder::max_snapshot_wait`] for writers inside a call; the
    /// calls of one still inside go, whole, into a later snapshot
    /// ([`Snapshot::carried_stripes`]). It makes no call that can block on another thread of
    /// the process but the reader lock. Should a snapshot panic midway, what it switched and
    /// drained stays with the engine, and the next snapshot holds it: nothing is lost or
    /// counted twice, and nothing is published by the one that panicked.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot_at(SystemTime::now(), Instant::now())
    }

    /// When the window's age buckets began: the origin of its rolls, for tests that model
    /// them.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn window_origin(&self) -> Instant {
        self.reader.window_origin()
    }

    /// [`snapshot`](Self::snapshot) with the clocks read by the caller, so tests can move them,
    /// backwards included.
    pub(crate) fn snapshot_at(&self, wall_clock: SystemTime, monotonic: Instant) -> Arc<Snapshot> {
        // Relaxed: a plain tally; any recent value will do.
        let sink_failures = self
            .sink_failures
            .load(std::sync::atomic::Ordering::Relaxed);
        self.reader.snapshot_at(
            &self.recording,
            (
                sink_failures,
                self.snapshot_failures
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            wall_clock,
            monotonic,
        )
    }

    /// Counts one failed or panicked sink call; it shows in the next snapshot.
    #[cfg(not(loom))]
    pub(crate) fn count_sink_failure(&self) {
        self.sink_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one snapshot that panicked in a snapshotter; it shows in the next snapshot.
    #[cfg(not(loom))]
    pub(crate) fn count_snapshot_failure(&self) {
        self.snapshot_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last published snapshot: wait-free, never touches the recording state.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.reader.latest()
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
            .field("leased_stripes", &self.leased_stripes())
            .field("recording_memory_bytes", &self.recording_memory_bytes())
            .finish_non_exhaustive()
    }
}

impl MetricsBackend for AtomicMetrics {
    #[inline]
    fn record_task_started(&self, runner_type: RunnerType) {
        self.recording.record_started(runner_type);
    }

    #[inline]
    fn record_task_completed(
        &self,
        runner_type: RunnerType,
        outcome: TaskOutcome,
        duration_ms: u64,
    ) {
        self.recording
            .record_completed(runner_type, outcome, duration_ms);
    }

    #[inline]
    fn record_runner_error(&self, runner_type: RunnerType, error_kind: RunnerErrorKind) {
        self.recording.record_error(runner_type, error_kind);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

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

    fn small_engine_with_one_lease() -> AtomicMetrics {
        AtomicMetrics::builder()
            .stripes(2)
            .significant_digits(1)
            .highest_duration_ms(1_000)
            .build()
            .unwrap()
    }

    #[test]
    fn a_lease_stays_while_its_holder_records_and_goes_after_an_idle_period() {
        use crate::recording::leased::{FIRST_TOKEN, FREE};
        // One leased stripe, one shared; a small layout, so that Miri runs this quickly.
        let metrics = small_engine_with_one_lease();
        assert_eq!(metrics.leased_stripes(), 1);
        let lease = &metrics.recording.leased[0];
        let task = |metrics: &AtomicMetrics| {
            metrics.record_task_started(RunnerType::Wasm);
            metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 7);
        };
        let holder_after_a_task_on_a_new_thread = |metrics: &AtomicMetrics| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        task(metrics);
                        lease.holder()
                    })
                    .join()
                    .unwrap()
            })
        };
        // An active holder keeps its lease across snapshots.
        task(&metrics);
        let mine = lease.holder();
        assert!(mine >= FIRST_TOKEN, "the first thread took the free lease");
        for _ in 0..3 {
            metrics.snapshot();
            task(&metrics);
            assert_eq!(lease.holder(), mine);
        }
        // Now this thread stops: the next snapshot sees it active in the last period and keeps
        // it; another thread meanwhile records on the shared stripe.
        metrics.snapshot();
        assert_eq!(holder_after_a_task_on_a_new_thread(&metrics), mine);
        // A whole period without a call: the lease is taken back, and the next thread gets it.
        metrics.snapshot();
        assert_eq!(lease.holder(), FREE);
        let next = holder_after_a_task_on_a_new_thread(&metrics);
        assert!(next >= FIRST_TOKEN && next != mine);
        let snapshot = metrics.snapshot();
        let view = snapshot.cumulative();
        assert_eq!(view.started(RunnerType::Wasm), 6);
        assert_eq!(view.completed(RunnerType::Wasm, TaskOutcome::Success), 6);
        assert_eq!(
            view.duration_sum_ms(RunnerType::Wasm, TaskOutcome::Success),
            42
        );
        assert_eq!(snapshot.in_flight(RunnerType::Wasm), 0);
    }

    #[test]
    fn a_full_32_bit_count_sends_the_holder_to_a_shared_stripe_and_loses_nothing() {
        let metrics = small_engine_with_one_lease();
        let (runner, outcome, duration) = (RunnerType::Container, TaskOutcome::Timeout, 5);
        metrics.record_task_completed(runner, outcome, duration);
        let label = crate::layout::completion_label(runner, outcome);
        let slot = metrics.config.layout.index_of(duration);
        // This thread holds the lease; its count for the slot is now one short of full.
        metrics.recording.leased[0].set_count(label, slot, u32::MAX - 1);
        for _ in 0..3 {
            metrics.record_task_completed(runner, outcome, duration);
        }
        let snapshot = metrics.snapshot();
        let view = snapshot.interval();
        let expected = u64::from(u32::MAX) - 1 + 3;
        assert_eq!(view.completed(runner, outcome), expected);
        assert_eq!(view.duration(runner, outcome).count_at(duration), expected);
        // The sum saw only the four real calls: it lives in 64-bit cells.
        assert_eq!(view.duration_sum_ms(runner, outcome), 4 * duration);
        // After the snapshot the thread leases again, with a fresh count.
        metrics.record_task_completed(runner, outcome, duration);
        assert!(metrics.recording.leased[0].holder() >= crate::recording::leased::FIRST_TOKEN);
        assert_eq!(metrics.snapshot().interval().completed(runner, outcome), 1);
    }

    /// The full-count fallback with a clamped duration, reached both from the hot path and
    /// from the first call after a snapshot (which relearns the phase on the cold path): the
    /// calls that go to the shared stripe keep their clamped flag and their true duration.
    #[test]
    fn a_full_count_of_a_clamped_duration_falls_back_whole_before_and_after_a_snapshot() {
        let metrics = small_engine_with_one_lease();
        let (runner, outcome) = (RunnerType::Wasm, TaskOutcome::Failure);
        let duration = metrics.highest_duration_ms() + 5_000; // clamped
        let label = crate::layout::completion_label(runner, outcome);
        let slot = metrics
            .config
            .layout
            .index_of(metrics.highest_duration_ms());
        for after_a_snapshot in [false, true] {
            metrics.record_task_completed(runner, outcome, duration);
            if after_a_snapshot {
                // The holder's next call relearns the new phase out of line, and finds it full.
                metrics.snapshot();
            }
            metrics.recording.leased[0].set_count(label, slot, u32::MAX - 1);
            for _ in 0..3 {
                metrics.record_task_completed(runner, outcome, duration);
            }
            let snapshot = metrics.snapshot();
            let view = snapshot.interval();
            let calls = if after_a_snapshot { 3 } else { 4 };
            // The preset count stands for the calls before it (the first call among them).
            assert_eq!(view.completed(runner, outcome), u64::from(u32::MAX) - 1 + 3);
            assert_eq!(
                view.clamped(runner, outcome),
                calls,
                "after a snapshot: {after_a_snapshot}"
            );
            assert_eq!(view.duration_sum_ms(runner, outcome), calls * duration);
            metrics.snapshot();
        }
    }

    /// The token, hence the lease, of a thread that exited passes to the next thread, with
    /// no snapshot in between; what both recorded is all there.
    ///
    /// Other tests of this process take ordinals meanwhile, and one may take the freed one
    /// first: then the next thread gets another token, and the attempt is made again with a
    /// new engine. Whenever the next thread does get the freed token, it must hold the lease.
    #[test]
    fn an_exited_threads_lease_passes_to_the_next_thread_at_once() {
        use crate::recording::leased::FIRST_TOKEN;
        for _attempt in 0..50 {
            let metrics = Arc::new(small_engine_with_one_lease());
            // A thread records a task and exits; `join` waits for its destructors too.
            let task_on_a_new_thread = || {
                let metrics = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    metrics.record_task_started(RunnerType::Wasm);
                    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 7);
                    let holder = metrics.recording.leased[0].holder();
                    (holder, crate::recording::route::identity().token)
                })
                .join()
                .unwrap()
            };
            let (first_holder, first_token) = task_on_a_new_thread();
            assert_eq!(Some(first_holder), first_token);
            assert!(first_holder >= FIRST_TOKEN);
            let (second_holder, second_token) = task_on_a_new_thread();
            if second_token != first_token {
                continue;
            }
            assert_eq!(
                second_holder, first_holder,
                "the next thread holds the lease"
            );
            let snapshot = metrics.snapshot();
            let view = snapshot.cumulative();
            assert_eq!(view.started(RunnerType::Wasm), 2);
            assert_eq!(
                view.duration_sum_ms(RunnerType::Wasm, TaskOutcome::Success),
                14
            );
            assert_eq!(snapshot.in_flight(RunnerType::Wasm), 0);
            return;
        }
        panic!("in 50 attempts, no thread took the ordinal its predecessor freed");
    }

    /// More threads than the pool has ordinals run one after another, and the last still
    /// leases: ordinals are recycled.
    #[test]
    fn ordinals_are_recycled_so_the_thread_after_the_pool_size_still_leases() {
        use crate::recording::leased::TOKENS;
        if cfg!(miri) {
            return;
        }
        let metrics = Arc::new(small_engine_with_one_lease());
        let threads = TOKENS as u64 + 600;
        let on_a_new_thread = || {
            let metrics = Arc::clone(&metrics);
            // `join` waits for the thread's destructors, which give its ordinal back.
            std::thread::spawn(move || {
                metrics.record_task_started(RunnerType::Subprocess);
                crate::recording::route::identity().token
            })
            .join()
            .unwrap()
        };
        for _ in 0..threads {
            on_a_new_thread();
        }
        let token = on_a_new_thread();
        assert!(token.is_some(), "thread {} got no token", threads + 1);
        // Some thread's token holds the one lease (other tests of this process may have
        // taken the last thread's predecessor's ordinal, and with it the lease).
        assert!(metrics.recording.leased[0].holder() >= crate::recording::leased::FIRST_TOKEN);
        assert_eq!(
            metrics
                .snapshot()
                .cumulative()
                .started(RunnerType::Subprocess),
            threads + 1
        );
    }
}
