//! [`TaskvisorMetrics`]: taskvisor's events as taskmeter tasks, and the families of
//! solti-prometheus 0.0.8's `PrometheusTaskvisorSubscriber`.
//!
//! # From events to tasks
//!
//! | taskvisor event | what taskmeter records |
//! |---|---|
//! | `AttemptStarting` | a task started (a restart too, when `attempt > 1`) |
//! | `AttemptSucceeded` | a completion, [`TaskOutcome::Success`], with the event's `duration_ms` |
//! | `AttemptFailed` | a completion, [`TaskOutcome::Failure`] |
//! | `AttemptTimedOut` | a completion, [`TaskOutcome::Timeout`]; an attempt timeout |
//! | `AttemptCanceled` | a completion, [`TaskOutcome::Canceled`] |
//! | `TaskFinished` | a final outcome (`outcome_completed`, `outcome_failed`, …); an attempt still open is closed: `Panicked` as a failure and `ForceAborted` as canceled (no attempt event comes for those; the duration is the time between the two events), any other outcome as lost (its close never arrived) |
//! | `BackoffScheduled` | a backoff by source, its delay in the backoff histogram |
//! | `SubscriberOverflow` | the events lost (`dropped`, or 1) |
//! | `SubscriberPanicked`, `RuntimeFailure`, `OwnershipCapacityRetired` | their counters |
//!
//! Attempts are counted under one runner label ([`RunnerType::Subprocess`] unless set with
//! [`TaskvisorMetrics::with_runner`] or [`TaskvisorMetrics::with_runner_of`]): taskvisor's
//! events do not say which runner ran a task.
//!
//! # In-flight, exact across lost events
//!
//! taskvisor drops events when a subscriber's queue is full, and says so afterwards with a
//! `SubscriberOverflow` event. The subscriber keeps each open attempt by its identity,
//! `(TaskId, attempt)`, so that in-flight never counts a phantom attempt for ever and never
//! goes negative:
//!
//! - a close whose open was lost records the start first, then the completion;
//! - an open attempt superseded by a later attempt of its task, or left open when the task
//!   finishes, lost its close: it leaves in-flight (`lost_attempt_closes`);
//! - an overflow of this subscriber's queue (or of taskvisor's bus) may have lost any close:
//!   every attempt open then leaves in-flight at once; one whose close arrives later is
//!   recorded then (and counts in in-flight until it does), one whose task finishes or
//!   restarts first is forgotten. In-flight may count too few attempts until their closes
//!   arrive, never too many.
//!
//! solti-prometheus sets its in-flight gauge to NaN for good after the first overflow; this
//! subscriber's `…_taskvisor_attempts_in_flight` stays a number.
//!
//! # Bounded memory, duplicates counted once
//!
//! The subscriber tracks at most [`TaskvisorMetrics::with_attempt_capacity`] attempts
//! ([`DEFAULT_ATTEMPT_CAPACITY`] unless set), open or suspect, whatever events go missing:
//!
//! - when the table is full, the suspect attempts are forgotten first (their closes were most
//!   likely lost with the overflow), and a new attempt past that is recorded as started but
//!   kept out of in-flight: in-flight may then count too few attempts, never too many.
//!   `…_forgotten_attempts_total` counts both. Each is still counted by its runner: a close
//!   that finds no attempt of its own ends one of its runner's forgotten attempts;
//! - a start or close delivered again, or one older than the attempt its task is at
//!   (taskvisor numbers a task's attempts upward), and a `TaskFinished` delivered again, are
//!   ignored and counted in `…_duplicate_attempt_events_total`. The last 4,096 closes, task
//!   ends and untracked starts are remembered for it: a copy arriving later than that counts
//!   again.
//!
//! `…_suspect_attempts` shows the attempts waiting, out of in-flight, for a close that may have
//! been lost. Several subscribers on one engine each add their own open attempts to the
//! in-flight gauge; a subscriber dropped takes its open attempts out of in-flight, the
//! engine's and the gauge, since their closes can no longer arrive.
//!
//! The table holds about 140 bytes per unit of capacity at most (the open and the suspect
//! attempts are two maps, each of which may grow to the capacity): about 9 MiB at the
//! default, plus about 0.35 MiB for the events remembered, reserved at the first one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use taskvisor::{BackoffSource, Event, EventKind, Subscribe, TaskId, TaskOutcomeKind};

use crate::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};

/// The subscriber's name, which taskvisor's overflow events carry.
pub const TASKVISOR_SUBSCRIBER_NAME: &str = "taskmeter-taskvisor";

/// taskvisor's name for its shared bus in overflow events: a loss there may be ours.
const BUS_LISTENER: &str = "subscriber_listener";

/// The queue taskvisor keeps for the subscriber, as solti-prometheus's.
const QUEUE_CAPACITY: NonZeroUsize = NonZeroUsize::new(2048).expect("non-zero");

/// The attempts a subscriber tracks by identity unless set otherwise: about 9 MiB at most.
pub const DEFAULT_ATTEMPT_CAPACITY: NonZeroUsize = NonZeroUsize::new(65_536).expect("non-zero");

/// Closes, task ends and untracked starts remembered, to recognise an event delivered twice.
const RECENT_EVENTS: usize = 4_096;

/// solti-prometheus 0.0.8's backoff histogram buckets, in seconds.
pub(crate) const BACKOFF_BUCKETS_SECONDS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Final-outcome labels, as `TaskOutcomeKind::as_label`, and `unknown` for none (or a kind
/// added later).
pub(crate) const FINAL_OUTCOMES: [&str; 8] = [
    "outcome_completed",
    "outcome_failed",
    "outcome_fatal",
    "outcome_canceled",
    "outcome_force_aborted",
    "outcome_panicked",
    "outcome_rejected",
    "unknown",
];

/// Backoff source labels, as `BackoffSource::as_label`, and `unknown` for none.
pub(crate) const BACKOFF_SOURCES: [&str; 3] = ["success", "failure", "unknown"];

/// What the subscriber counts besides tasks: written by the subscriber's worker, read by
/// snapshots. In the engine, so that every export has it.
#[derive(Default)]
pub(crate) struct TaskvisorCounters {
    /// Whether a [`TaskvisorMetrics`] was made for the engine: its families are exported then.
    attached: AtomicBool,
    attempts_in_flight: AtomicU64,
    restarts: AtomicU64,
    backoffs: [AtomicU64; BACKOFF_SOURCES.len()],
    /// Backoff delays per bucket (not cumulative; the last is above every bound), their count
    /// and exact sum.
    backoff_buckets: [AtomicU64; BACKOFF_BUCKETS_SECONDS.len() + 1],
    backoff_sum_ms: AtomicU64,
    final_outcomes: [AtomicU64; FINAL_OUTCOMES.len()],
    attempt_timeouts: AtomicU64,
    overflows: AtomicU64,
    panics: AtomicU64,
    runtime_failures: AtomicU64,
    ownership_retirements: AtomicU64,
    ownership_retired_units: AtomicU64,
    lost_attempt_closes: AtomicU64,
    repaired_attempt_opens: AtomicU64,
    suspect_attempts: AtomicU64,
    forgotten_attempts: AtomicU64,
    duplicate_attempt_events: AtomicU64,
}

/// [`TaskvisorCounters`] as read for one snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TaskvisorFigures {
    pub(crate) attempts_in_flight: u64,
    pub(crate) restarts: u64,
    pub(crate) backoffs: [u64; BACKOFF_SOURCES.len()],
    pub(crate) backoff_buckets: [u64; BACKOFF_BUCKETS_SECONDS.len() + 1],
    pub(crate) backoff_sum_ms: u64,
    pub(crate) final_outcomes: [u64; FINAL_OUTCOMES.len()],
    pub(crate) attempt_timeouts: u64,
    pub(crate) overflows: u64,
    pub(crate) panics: u64,
    pub(crate) runtime_failures: u64,
    pub(crate) ownership_retirements: u64,
    pub(crate) ownership_retired_units: u64,
    pub(crate) lost_attempt_closes: u64,
    pub(crate) repaired_attempt_opens: u64,
    pub(crate) suspect_attempts: u64,
    pub(crate) forgotten_attempts: u64,
    pub(crate) duplicate_attempt_events: u64,
}

fn read<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| counters[i].load(Ordering::Relaxed))
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl TaskvisorCounters {
    /// The figures, when a subscriber was attached.
    pub(crate) fn figures(&self) -> Option<TaskvisorFigures> {
        if !self.attached.load(Ordering::Relaxed) {
            return None;
        }
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Some(TaskvisorFigures {
            attempts_in_flight: load(&self.attempts_in_flight),
            restarts: load(&self.restarts),
            backoffs: read(&self.backoffs),
            backoff_buckets: read(&self.backoff_buckets),
            backoff_sum_ms: load(&self.backoff_sum_ms),
            final_outcomes: read(&self.final_outcomes),
            attempt_timeouts: load(&self.attempt_timeouts),
            overflows: load(&self.overflows),
            panics: load(&self.panics),
            runtime_failures: load(&self.runtime_failures),
            ownership_retirements: load(&self.ownership_retirements),
            ownership_retired_units: load(&self.ownership_retired_units),
            lost_attempt_closes: load(&self.lost_attempt_closes),
            repaired_attempt_opens: load(&self.repaired_attempt_opens),
            suspect_attempts: load(&self.suspect_attempts),
            forgotten_attempts: load(&self.forgotten_attempts),
            duplicate_attempt_events: load(&self.duplicate_attempt_events),
        })
    }
}

/// An attempt the subscriber saw open.
#[derive(Debug, Clone, Copy)]
struct Open {
    attempt: u32,
    at: SystemTime,
    runner: RunnerType,
}

/// Open attempts by task: `counted` are in in-flight, `suspect` were taken out of it by an
/// overflow; together at most `capacity`.
/// Attempts without an entry are counted per runner: those without an identity (taskvisor 0.9
/// gives every attempt event one) in `untracked`, in in-flight, and in `untracked_suspect`,
/// out of it, once an overflow made them suspect; there too the attempts the full table
/// forgot or could not take. A close that finds no entry ends one of them.
struct Attempts {
    counted: HashMap<TaskId, Open, ById>,
    suspect: HashMap<TaskId, Open, ById>,
    capacity: usize,
    untracked: [u64; RunnerType::COUNT],
    untracked_suspect: [u64; RunnerType::COUNT],
    recent: RecentEvents,
    /// This subscriber's shares of the engine's in-flight and suspect gauges, as last added.
    reported_in_flight: u64,
    reported_suspect: u64,
}

impl Attempts {
    fn new(capacity: NonZeroUsize) -> Self {
        Attempts {
            counted: HashMap::default(),
            suspect: HashMap::default(),
            capacity: capacity.get(),
            untracked: [0; RunnerType::COUNT],
            untracked_suspect: [0; RunnerType::COUNT],
            recent: RecentEvents::default(),
            reported_in_flight: 0,
            reported_suspect: 0,
        }
    }

    fn in_flight(&self) -> u64 {
        self.counted.len() as u64 + self.untracked.iter().sum::<u64>()
    }

    fn is_full(&self) -> bool {
        self.counted.len() + self.suspect.len() >= self.capacity
    }

    /// The attempt of task `id` the table holds, open or suspect.
    fn tracked_attempt(&self, id: TaskId) -> Option<u32> {
        (self.counted.get(&id).or_else(|| self.suspect.get(&id))).map(|open| open.attempt)
    }

    /// Whether an event of `attempt` of task `id` was handled already (as `seen`), or is
    /// older than the attempt the table holds (taskvisor numbers a task's attempts upward).
    fn already_handled(&self, id: TaskId, attempt: u32, seen: Seen) -> bool {
        self.recent.contains(id, seen)
            || self
                .tracked_attempt(id)
                .is_some_and(|tracked| tracked > attempt)
    }

    /// Whether a start of `attempt` of task `id` was handled already: its attempt is in the
    /// table (or a later one is), closed, or counted past the table's bound.
    fn start_handled(&self, id: TaskId, attempt: u32) -> bool {
        self.tracked_attempt(id) == Some(attempt)
            || self.recent.contains(id, Seen::Closed(attempt))
            || self.already_handled(id, attempt, Seen::Untracked(attempt))
    }
}

/// Hashes task identities: taskvisor draws them from its own sequence, so nobody chooses them
/// to collide, and SipHash's defence against that costs more than the rest of an event's
/// handling. A multiply-rotate hash (FxHash's) spreads sequential identities over the table.
#[derive(Default, Clone, Copy)]
struct ById;

impl std::hash::BuildHasher for ById {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }
}

/// An event that must not count twice, remembered once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Seen {
    /// An attempt's close.
    Closed(u32),
    /// A start past the table's bound (a tracked start is in the table itself).
    Untracked(u32),
    /// The task's end.
    Finished,
}

/// The last [`RECENT_EVENTS`] events of [`Seen`] kinds, oldest first out.
#[derive(Default)]
struct RecentEvents {
    set: HashSet<(TaskId, Seen), ById>,
    order: VecDeque<(TaskId, Seen)>,
}

impl RecentEvents {
    fn contains(&self, id: TaskId, seen: Seen) -> bool {
        self.set.contains(&(id, seen))
    }

    fn insert(&mut self, id: TaskId, seen: Seen) {
        if self.order.capacity() == 0 {
            // Room for twice the events kept, once: with removals leaving tombstones, a fuller
            // table would be rebuilt larger at some point, and its memory would move with it.
            self.set.reserve(2 * RECENT_EVENTS);
            self.order.reserve_exact(RECENT_EVENTS);
        }
        if !self.set.insert((id, seen)) {
            return;
        }
        if self.order.len() == RECENT_EVENTS
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back((id, seen));
    }
}

/// Which runner label a task's attempts are counted under.
enum RunnerOf {
    Fixed(RunnerType),
    ByTask(Box<dyn Fn(&str) -> RunnerType + Send + Sync>),
}

/// A `taskvisor::Subscribe` that records task attempts into an [`AtomicMetrics`] and counts
/// what solti-prometheus 0.0.8's `PrometheusTaskvisorSubscriber` counts; see the
/// [module docs](crate::solti::events) for the mapping and how in-flight stays exact.
///
/// taskvisor calls it serially on a worker thread of its own; recording there costs what any
/// record call costs. Its tracking of open attempts takes a lock that only that worker takes
/// (uncontended), and a map entry per open attempt, at most
/// [`with_attempt_capacity`](Self::with_attempt_capacity) of them
/// ([`DEFAULT_ATTEMPT_CAPACITY`] by default) whatever events are lost or repeated.
///
/// ```
/// use std::sync::Arc;
/// use taskmeter::{AtomicMetrics, RunnerType, TaskOutcome};
/// use taskmeter::solti::TaskvisorMetrics;
/// use taskvisor::Subscribe;
///
/// let metrics = Arc::new(AtomicMetrics::new());
/// let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics)).with_runner(RunnerType::Wasm);
/// // taskvisor calls this for every event; here by hand:
/// subscriber.on_event(&taskvisor::Event::new(taskvisor::EventKind::AttemptStarting).with_task("resize").with_attempt(1));
/// assert_eq!(metrics.snapshot().in_flight(RunnerType::Wasm), 1);
/// ```
pub struct TaskvisorMetrics {
    metrics: Arc<AtomicMetrics>,
    runner_of: RunnerOf,
    attempts: Mutex<Attempts>,
}

impl Drop for TaskvisorMetrics {
    /// Takes this subscriber's open attempts out of in-flight, the engine's and the
    /// subscribers' gauge: no close of theirs can arrive any more.
    fn drop(&mut self) {
        let attempts = self
            .attempts
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for open in attempts.counted.values() {
            self.metrics.recording.untrack(open.runner, 1);
        }
        for runner in RunnerType::ALL {
            let open = attempts.untracked[runner.index()];
            self.metrics.recording.untrack(runner, open as i64);
        }
        let counters = self.metrics.taskvisor();
        counters
            .attempts_in_flight
            .fetch_sub(attempts.reported_in_flight, Ordering::Relaxed);
        counters
            .suspect_attempts
            .fetch_sub(attempts.reported_suspect, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for TaskvisorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskvisorMetrics").finish_non_exhaustive()
    }
}

impl TaskvisorMetrics {
    /// A subscriber recording into `metrics`, attempts counted as
    /// [`RunnerType::Subprocess`]. From now on `metrics`' expositions carry the taskvisor
    /// families.
    pub fn new(metrics: Arc<AtomicMetrics>) -> Self {
        metrics.taskvisor().attached.store(true, Ordering::Relaxed);
        TaskvisorMetrics {
            metrics,
            runner_of: RunnerOf::Fixed(RunnerType::Subprocess),
            attempts: Mutex::new(Attempts::new(DEFAULT_ATTEMPT_CAPACITY)),
        }
    }

    /// Tracks at most `capacity` attempts by identity, open or suspect (see the
    /// [module docs](crate::solti::events#bounded-memory-duplicates-counted-once)): the
    /// subscriber's memory stays bounded whatever events are lost: about 140 bytes per unit
    /// of capacity at most.
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use std::sync::Arc;
    /// use taskmeter::AtomicMetrics;
    /// use taskmeter::solti::TaskvisorMetrics;
    ///
    /// let metrics = Arc::new(AtomicMetrics::new());
    /// let subscriber = TaskvisorMetrics::new(metrics)
    ///     .with_attempt_capacity(NonZeroUsize::new(10_000).unwrap());
    /// # drop(subscriber);
    /// ```
    pub fn with_attempt_capacity(mut self, capacity: NonZeroUsize) -> Self {
        let attempts = self.attempts.get_mut();
        attempts.unwrap_or_else(PoisonError::into_inner).capacity = capacity.get();
        self
    }

    /// Counts every attempt under `runner`.
    pub fn with_runner(mut self, runner: RunnerType) -> Self {
        self.runner_of = RunnerOf::Fixed(runner);
        self
    }

    /// Counts each task's attempts under the runner `runner_of` gives for the task's name
    /// (called once per attempt, on taskvisor's worker).
    pub fn with_runner_of(
        mut self,
        runner_of: impl Fn(&str) -> RunnerType + Send + Sync + 'static,
    ) -> Self {
        self.runner_of = RunnerOf::ByTask(Box::new(runner_of));
        self
    }

    fn runner_for(&self, event: &Event) -> RunnerType {
        match &self.runner_of {
            RunnerOf::Fixed(runner) => *runner,
            RunnerOf::ByTask(runner_of) => runner_of(event.task.as_deref().unwrap_or("")),
        }
    }

    fn counters(&self) -> &TaskvisorCounters {
        self.metrics.taskvisor()
    }

    fn attempt_starting(&self, attempts: &mut Attempts, event: &Event) {
        let runner = self.runner_for(event);
        let attempt = event.attempt.unwrap_or(1);
        if let Some(id) = event.id
            && attempts.start_handled(id, attempt)
        {
            // The same start twice, or one older than the task's attempt.
            bump(&self.counters().duplicate_attempt_events, 1);
            return;
        }
        if attempt > 1 {
            bump(&self.counters().restarts, 1);
        }
        self.metrics.record_task_started(runner);
        let Some(id) = event.id else {
            attempts.untracked[runner.index()] += 1;
            return;
        };
        self.forget_suspect(attempts, id);
        if let Some(superseded) = attempts.counted.remove(&id) {
            // The previous attempt's close was lost.
            self.lose(superseded);
        }
        if attempts.is_full() {
            // The suspects' closes were most likely lost with the overflow: they are counted
            // by runner from now on.
            for (_, forgotten) in attempts.suspect.drain() {
                attempts.untracked_suspect[forgotten.runner.index()] += 1;
                bump(&self.counters().forgotten_attempts, 1);
            }
        }
        if attempts.is_full() {
            // Counted by runner, out of in-flight (its start is recorded above): too few rather
            // than for ever too many (a task that ends without a close would leave it there).
            attempts.untracked_suspect[runner.index()] += 1;
            attempts.recent.insert(id, Seen::Untracked(attempt));
            self.metrics.recording.untrack(runner, 1);
            bump(&self.counters().forgotten_attempts, 1);
        } else {
            let open = Open {
                attempt,
                at: event.at,
                runner,
            };
            attempts.counted.insert(id, open);
        }
    }

    fn attempt_closed(&self, attempts: &mut Attempts, event: &Event, outcome: TaskOutcome) {
        let attempt = event.attempt.unwrap_or(1);
        if let Some(id) = event.id {
            if attempts.already_handled(id, attempt, Seen::Closed(attempt)) {
                // The same close twice, or one older than the task's attempt.
                bump(&self.counters().duplicate_attempt_events, 1);
                return;
            }
            attempts.recent.insert(id, Seen::Closed(attempt));
        }
        let open = event.id.and_then(|id| {
            if attempts
                .counted
                .get(&id)
                .is_some_and(|o| o.attempt == attempt)
            {
                attempts.counted.remove(&id)
            } else if attempts
                .suspect
                .get(&id)
                .is_some_and(|o| o.attempt == attempt)
            {
                let suspect = attempts.suspect.remove(&id)?;
                // Back into in-flight, and out again with its completion below.
                self.metrics.recording.untrack(suspect.runner, -1);
                Some(suspect)
            } else {
                // An other attempt of this task still open lost its close.
                self.forget_suspect(attempts, id);
                if let Some(stale) = attempts.counted.remove(&id) {
                    self.lose(stale);
                }
                None
            }
        });
        let runner = match open {
            Some(open) => open.runner,
            None => {
                let runner = self.runner_for(event);
                let r = runner.index();
                if event.id.is_none() && attempts.untracked[r] > 0 {
                    attempts.untracked[r] -= 1;
                } else if attempts.untracked_suspect[r] > 0 {
                    attempts.untracked_suspect[r] -= 1;
                    self.metrics.recording.untrack(runner, -1);
                } else {
                    // Its open was lost: the attempt did start.
                    bump(&self.counters().repaired_attempt_opens, 1);
                    self.metrics.record_task_started(runner);
                }
                runner
            }
        };
        let duration_ms = match (event.duration_ms, open) {
            (Some(duration_ms), _) => u64::from(duration_ms),
            (None, Some(open)) => elapsed_ms(open.at, event.at),
            (None, None) => 0,
        };
        self.metrics
            .record_task_completed(runner, outcome, duration_ms);
    }

    fn task_finished(&self, attempts: &mut Attempts, event: &Event) {
        let kind = event.outcome_kind;
        let label = match kind {
            Some(TaskOutcomeKind::Completed) => 0,
            Some(TaskOutcomeKind::Failed) => 1,
            Some(TaskOutcomeKind::Fatal) => 2,
            Some(TaskOutcomeKind::Canceled) => 3,
            Some(TaskOutcomeKind::ForceAborted) => 4,
            Some(TaskOutcomeKind::Panicked) => 5,
            Some(TaskOutcomeKind::Rejected) => 6,
            _ => 7,
        };
        if let Some(id) = event.id {
            if attempts.recent.contains(id, Seen::Finished) {
                bump(&self.counters().duplicate_attempt_events, 1);
                return;
            }
            attempts.recent.insert(id, Seen::Finished);
        }
        bump(&self.counters().final_outcomes[label], 1);
        let Some(id) = event.id else { return };
        // No attempt event comes for these two: the task's end is the attempt's.
        let ends_attempt = match kind {
            Some(TaskOutcomeKind::Panicked) => Some(TaskOutcome::Failure),
            Some(TaskOutcomeKind::ForceAborted) => Some(TaskOutcome::Canceled),
            _ => None,
        };
        if let Some(open) = attempts.counted.remove(&id) {
            match ends_attempt {
                Some(outcome) => {
                    let duration_ms = elapsed_ms(open.at, event.at);
                    self.metrics
                        .record_task_completed(open.runner, outcome, duration_ms);
                }
                None => self.lose(open),
            }
        } else if let Some(suspect) = attempts.suspect.remove(&id) {
            match ends_attempt {
                Some(outcome) => {
                    // Back into in-flight, and out again with its completion.
                    self.metrics.recording.untrack(suspect.runner, -1);
                    let duration_ms = elapsed_ms(suspect.at, event.at);
                    self.metrics
                        .record_task_completed(suspect.runner, outcome, duration_ms);
                }
                None => bump(&self.counters().lost_attempt_closes, 1),
            }
        } else if ends_attempt.is_some() {
            // Its attempt was one the table could not hold (its start is unknown here): it
            // is out of in-flight already, and its close will not come.
            let runner = self.runner_for(event).index();
            if attempts.untracked_suspect[runner] > 0 {
                attempts.untracked_suspect[runner] -= 1;
                bump(&self.counters().lost_attempt_closes, 1);
            }
        }
    }

    /// A suspect attempt whose close can no longer arrive (its task restarted or finished):
    /// it is already out of in-flight.
    fn forget_suspect(&self, attempts: &mut Attempts, id: TaskId) {
        if attempts.suspect.remove(&id).is_some() {
            bump(&self.counters().lost_attempt_closes, 1);
        }
    }

    /// An attempt whose close will never arrive leaves in-flight.
    fn lose(&self, open: Open) {
        bump(&self.counters().lost_attempt_closes, 1);
        self.metrics.recording.untrack(open.runner, 1);
    }

    fn overflowed(&self, attempts: &mut Attempts, event: &Event) {
        bump(&self.counters().overflows, event.dropped.unwrap_or(1));
        let ours = matches!(
            event.task.as_deref(),
            Some(TASKVISOR_SUBSCRIBER_NAME | BUS_LISTENER)
        );
        if !ours {
            return;
        }
        // Any close may have been lost: every open attempt leaves in-flight until its close
        // arrives.
        for (id, open) in attempts.counted.drain() {
            self.metrics.recording.untrack(open.runner, 1);
            attempts.suspect.insert(id, open);
        }
        for runner in RunnerType::ALL {
            let open = std::mem::take(&mut attempts.untracked[runner.index()]);
            attempts.untracked_suspect[runner.index()] += open;
            self.metrics.recording.untrack(runner, open as i64);
        }
    }

    fn backoff(&self, event: &Event) {
        let source = match event.backoff_source {
            Some(BackoffSource::Success) => 0,
            Some(BackoffSource::Failure) => 1,
            None => 2,
        };
        let counters = self.counters();
        bump(&counters.backoffs[source], 1);
        if let Some(delay_ms) = event.delay_ms {
            let seconds = f64::from(delay_ms) / 1e3;
            let bucket = BACKOFF_BUCKETS_SECONDS.partition_point(|&bound| bound < seconds);
            bump(&counters.backoff_buckets[bucket], 1);
            bump(&counters.backoff_sum_ms, u64::from(delay_ms));
        }
    }
}

/// Moves a shared gauge from `before` to `after` by this subscriber's difference.
fn add_difference(gauge: &AtomicU64, before: u64, after: u64) {
    if after == before {
        return;
    }
    if after > before {
        gauge.fetch_add(after - before, Ordering::Relaxed);
    } else {
        gauge.fetch_sub(before - after, Ordering::Relaxed);
    }
}

/// Milliseconds from `from` to `to` by the events' wall clock; 0 if it went back.
fn elapsed_ms(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}

impl Subscribe for TaskvisorMetrics {
    fn on_event(&self, event: &Event) {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let attempts = &mut *attempts;
        let counters = self.counters();
        match event.kind {
            EventKind::AttemptStarting => self.attempt_starting(attempts, event),
            EventKind::AttemptSucceeded => {
                self.attempt_closed(attempts, event, TaskOutcome::Success);
            }
            EventKind::AttemptFailed => self.attempt_closed(attempts, event, TaskOutcome::Failure),
            EventKind::AttemptCanceled => {
                self.attempt_closed(attempts, event, TaskOutcome::Canceled);
            }
            EventKind::AttemptTimedOut => {
                bump(&counters.attempt_timeouts, 1);
                self.attempt_closed(attempts, event, TaskOutcome::Timeout);
            }
            EventKind::TaskFinished => self.task_finished(attempts, event),
            EventKind::BackoffScheduled => self.backoff(event),
            EventKind::SubscriberOverflow => self.overflowed(attempts, event),
            EventKind::SubscriberPanicked => bump(&counters.panics, 1),
            EventKind::RuntimeFailure => bump(&counters.runtime_failures, 1),
            EventKind::OwnershipCapacityRetired => {
                bump(&counters.ownership_retirements, 1);
                let units = event.retired_units.unwrap_or(0);
                bump(
                    &counters.ownership_retired_units,
                    u64::try_from(units).unwrap_or(u64::MAX),
                );
            }
            _ => {}
        }
        // This subscriber's share of gauges that other subscribers of the engine add to.
        let in_flight = attempts.in_flight();
        let before = std::mem::replace(&mut attempts.reported_in_flight, in_flight);
        add_difference(&counters.attempts_in_flight, before, in_flight);
        let suspect = attempts.suspect.len() as u64;
        let before = std::mem::replace(&mut attempts.reported_suspect, suspect);
        add_difference(&counters.suspect_attempts, before, suspect);
    }

    fn name(&self) -> &str {
        TASKVISOR_SUBSCRIBER_NAME
    }

    fn queue_capacity(&self) -> NonZeroUsize {
        QUEUE_CAPACITY
    }
}
