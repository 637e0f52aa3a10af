//! The reader: the cut that turns the stripes into a consistent interval, and the snapshot
//! built and published from it.
//!
//! # The cut ([`cut`])
//!
//! 1. **Close and flip every stripe** not carried from an earlier cut: each leased stripe's
//!    lease word and each shared stripe's lane phasers switch to the other phase. From here on
//!    new calls write the new phase; the old phase holds exactly the calls that began before
//!    its switch.
//! 2. **One barrier** (see `barrier`), only if some lease was held: every leased call either
//!    saw its stripe's new lease word, or is visible to the reader as in progress (see
//!    `recording::leased`). If the barrier fails, the engine becomes fenced and the leases
//!    are revoked, each waiting for its holder's acknowledgment instead.
//! 3. **Read the monotonic counters** (`started`, `errors`). A completion the reader will drain
//!    began before its stripe's switch, and its task's start happened before it, so the
//!    start is visible here, on whichever stripe it was recorded: in-flight (`started` minus
//!    completed) is never negative. Reading right after the switches, not after the drains,
//!    keeps starts whose completions fall in the next interval to the moment between the
//!    switches and this read, so in-flight is not inflated by the snapshot's own cost.
//! 4. **Wait and drain, for a bounded time**: each stripe is drained as soon as the writers
//!    that were inside its old phase have left it (whichever stripe is ready first), visiting
//!    only the blocks written (see `recording::counts`), and zeroed for its next turn. A
//!    stripe still busy when the wait ends ([`crate::Builder::max_snapshot_wait`]) is
//!    *carried*: left switched and undrained, it is not switched again, and a later cut
//!    drains it once its writer has left, without waiting for it. Its calls are then in that
//!    later snapshot's interval: nothing is lost, nothing counted twice, and each interval is
//!    still made of whole calls. A carried stripe does not hold back the wait of later cuts,
//!    so a writer that never leaves (a thread stopped for good, or one that does not exist in
//!    a forked child) costs each snapshot one look.
//!
//! Before switching, a cut drains what earlier cuts carried and is still now (leases revoked
//! after a failed barrier only here, before the counters), so that it switches those stripes
//! again: a snapshot that carries nothing holds every call that ended before it began. A
//! lease that a cut which unwound closed but did not follow with a barrier waits for this
//! cut's barrier.
//!
//! Snapshots are taken one at a time, under the reader's lock. Everything a cut has switched
//! or drained is kept in that lock's state as it goes, not on the stack: a cut that unwinds
//! (a panic anywhere in it) leaves the next one to carry on with what it switched and what it
//! drained, so nothing is lost or counted twice.
//!
//! That lock and state belong to one process: a child forked while another thread was inside a
//! snapshot builds its own, from the last published snapshot (see [`ProcessState`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::barrier;
use crate::contract::RunnerType;
use crate::layout::{ERROR_LABELS, HdrLayout, LabelGrid};
use crate::publish::Published;
use crate::recording::Recording;
use crate::recording::counts::Drained;
use crate::recording::leased::Closed;
use crate::recording::shared::Flipped;
use crate::snapshot::{DrainedLabel, Snapshot, View, WindowView};
use crate::sync::{Backoff, Mutex, lock};
use crate::window::{AgeBuckets, WINDOW_AGE_BUCKETS};

/// What the reader keeps between two snapshots, and the published pointer.
pub(crate) struct Reader {
    state: ProcessState,
    published: Published<Snapshot>,
    /// How long a cut waits for writers inside a call before carrying their stripes.
    max_wait: Duration,
    /// The sliding window's span.
    window: Duration,
}

/// The reader's lock and state, as the process that takes snapshots owns them.
///
/// `fork()` copies memory, not threads: a child forked while another thread of its parent
/// was inside a snapshot finds the lock held by a thread that does not exist in it, for
/// ever. So the state is tagged with the process that built it, and a process that finds
/// another's builds its own, from the last published snapshot (a consistent one: publication
/// follows a whole cut); its window starts anew.
///
/// What the parent's cut in progress had in hand is not resumed, since its record of the
/// stripes it switched is in the parent's state: the calls it had drained stay the parent's
/// (their starts stay in the child's in-flight); a shared stripe it had switched and not
/// drained may stay carried in the child (its exit count is off by the parent's writers);
/// a leased stripe it had closed keeps its undrained calls uncounted until a thread of the
/// child claims it. Resuming them needs the switch records kept in the stripes. A child told
/// apart by nothing but its pid is not told apart: one in a new pid namespace, or given an
/// ancestor's pid again, uses that ancestor's state.
///
/// Costs a `getpid` a snapshot. Under loom and Miri, which fork nothing, it is the state.
struct ProcessState {
    #[cfg(not(any(loom, miri)))]
    current: arc_swap::ArcSwap<OwnedState>,
    #[cfg(any(loom, miri))]
    current: OwnedState,
}

struct OwnedState {
    #[cfg_attr(any(loom, miri), allow(dead_code))]
    pid: u32,
    state: Mutex<ReaderState>,
}

impl ProcessState {
    fn new(state: ReaderState) -> Self {
        let owned = OwnedState {
            pid: std::process::id(),
            state: Mutex::new(state),
        };
        ProcessState {
            #[cfg(not(any(loom, miri)))]
            current: arc_swap::ArcSwap::from_pointee(owned),
            #[cfg(any(loom, miri))]
            current: owned,
        }
    }

    /// This process's state: built by `fresh` if it is not this process's yet.
    #[cfg(not(any(loom, miri)))]
    fn get(&self, fresh: impl Fn() -> ReaderState) -> Arc<OwnedState> {
        let pid = std::process::id();
        loop {
            let current = self.current.load_full();
            if current.pid == pid {
                return current;
            }
            let owned = Arc::new(OwnedState {
                pid,
                state: Mutex::new(fresh()),
            });
            // Two threads of the child may find the parent's state at once: one replaces it,
            // and both use the replacement.
            self.current.compare_and_swap(&current, owned);
        }
    }

    #[cfg(any(loom, miri))]
    fn get(&self, _fresh: impl Fn() -> ReaderState) -> &OwnedState {
        &self.current
    }
}

struct ReaderState {
    previous: Arc<Snapshot>,
    previous_at: Instant,
    /// The empty view: the interval of every snapshot that found nothing new, and what a new
    /// interval starts from (sharing its tables, allocating nothing).
    empty: Arc<View>,
    /// The interval a cut is building: here rather than on the stack so that a cut that
    /// unwinds leaves what it drained to the next cut.
    building: Option<View>,
    /// The sliding window's age buckets.
    age_buckets: AgeBuckets,
    /// The labelled error counts as read by the last cut; kept so that reading them
    /// allocates nothing.
    labelled_buffer: Vec<u64>,
    /// The stripes switched and not yet drained.
    switched: Switched,
    /// One histogram's non-zero slots during a drain; kept so that draining allocates
    /// nothing after the first snapshot.
    drain_buffer: Vec<(u32, u64)>,
}

impl ReaderState {
    /// The state after `previous`, published at `now`, with nothing switched: where a reader
    /// starts, and where a forked child's starts again (see [`ProcessState`]).
    fn after(
        previous: &Arc<Snapshot>,
        empty: Arc<View>,
        recording: &Recording,
        window: Duration,
        now: Instant,
    ) -> Self {
        ReaderState {
            previous: Arc::clone(previous),
            previous_at: now,
            // The window starts at `previous`: it holds what comes after.
            age_buckets: AgeBuckets::new(window, now, &previous.cumulative),
            empty,
            building: None,
            switched: Switched {
                leased: recording.leased.iter().map(|_| None).collect(),
                shared: recording.shared.iter().map(|_| None).collect(),
            },
            drain_buffer: Vec::new(),
            labelled_buffer: Vec::new(),
        }
    }
}

/// Per stripe, what its switch found, until it is drained.
struct Switched {
    leased: Vec<Option<Pending<Closed>>>,
    shared: Vec<Option<Pending<Flipped>>>,
}

/// A stripe switched and not yet drained.
struct Pending<T> {
    switch: T,
    /// Switched by an earlier cut that gave up waiting for it: looked at, never waited for.
    carried: bool,
}

impl<T> Pending<T> {
    fn new(switch: T) -> Self {
        Pending {
            switch,
            carried: false,
        }
    }
}

/// Where a test makes a cut panic, to show that the next one carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(any(not(test), loom), allow(dead_code))]
pub(crate) enum Step {
    /// Every stripe switched.
    Switched,
    /// The barrier made.
    Barrier,
    /// One stripe drained.
    OneDrained,
}

#[cfg(all(test, not(loom)))]
pub(crate) mod faults {
    use std::sync::Mutex;

    /// The engine whose next cut panics, and where.
    /// Per engine, armed by tests that may run at once.
    static PANIC_AT: Mutex<Vec<(u64, super::Step)>> = Mutex::new(Vec::new());

    /// Makes the next cut of the engine with `id` panic at `step`, once, on whichever thread
    /// takes it.
    pub(crate) fn panic_at(id: u64, step: super::Step) {
        let mut armed = PANIC_AT.lock().unwrap_or_else(|p| p.into_inner());
        armed.retain(|&(engine, _)| engine != id);
        armed.push((id, step));
    }

    pub(super) fn point(id: u64, step: super::Step) {
        let mut armed = PANIC_AT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = armed.iter().position(|&fault| fault == (id, step)) {
            armed.swap_remove(at);
            drop(armed);
            panic!("fault injected at {step:?}");
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[inline(always)]
fn fault_point(_recording: &Recording, _step: Step) {
    #[cfg(all(test, not(loom)))]
    faults::point(_recording.id(), _step);
}

/// Takes a consistent cut of `recording` into `interval`, given the cumulative view of the
/// previous snapshot: see the module docs. Returns how many stripes it carried. The caller
/// holds the reader's lock.
fn cut(
    recording: &Recording,
    previous: &View,
    interval: &mut View,
    switched: &mut Switched,
    buffer: &mut Vec<(u32, u64)>,
    labelled: &mut Vec<u64>,
    max_wait: Duration,
) -> usize {
    let mut collect = |drained: Drained<'_>| {
        interval.add_drained(DrainedLabel {
            label: drained.label,
            sum: drained.sum,
            clamped: drained.clamped,
            slots: drained.slots,
        });
    };
    // 0. Drain what earlier cuts carried and is still now, so that this cut switches it again.
    drain_what_is_still(recording, switched, buffer, &mut collect, true);
    // 1. Close and flip what is not carried.
    for (stripe, slot) in recording.leased.iter().zip(switched.leased.iter_mut()) {
        if slot.is_none() {
            *slot = Some(Pending::new(stripe.close()));
        }
    }
    for (stripe, slot) in recording.shared.iter().zip(switched.shared.iter_mut()) {
        if slot.is_none() {
            *slot = Some(Pending::new(stripe.flip()));
        }
    }
    fault_point(recording, Step::Switched);
    // 2. One barrier, if a close has yet to be followed by one.
    let needs_barrier = switched
        .leased
        .iter()
        .flatten()
        .any(|pending| pending.switch.needs_barrier());
    if needs_barrier && barrier::heavy(recording.is_fenced()).is_err() {
        // Every lease is revoked (which cannot fail), then the engine is marked fenced.
        for (stripe, pending) in recording.leased.iter().zip(switched.leased.iter_mut()) {
            if let Some(pending) = pending {
                stripe.revoke(&mut pending.switch);
            }
        }
        recording.become_fenced();
    }
    fault_point(recording, Step::Barrier);
    // 3. The counters: cumulative on the stripes; the interval is the growth since last time.
    // (Kept aside until the drains are over: they add to `interval`.)
    let started: [u64; RunnerType::COUNT] =
        std::array::from_fn(|runner| recording.started(runner) - previous.started[runner]);
    let errors: [u64; ERROR_LABELS] =
        std::array::from_fn(|label| recording.errors(label) - previous.errors[label]);
    // 4. Wait and drain, whichever stripe is ready first, for at most `max_wait`.
    let deadline = Deadline::after(max_wait);
    let mut backoff = Backoff::new();
    while drain_what_is_still(recording, switched, buffer, &mut collect, false)
        && !deadline.has_passed()
    {
        backoff.wait();
    }
    interval.started = started;
    interval.errors = errors;
    // The labelled errors: counters of their own, outside the stripes, bound to no completion.
    // Kept aside unless one changed, so that a quiet interval shares the empty view's.
    labelled.resize(previous.labelled.len(), 0);
    let overflows = recording.labelled.read(labelled);
    if labelled.iter().ne(previous.labelled.iter()) {
        let growth = labelled.iter().zip(previous.labelled.iter());
        interval.labelled = Arc::new(growth.map(|(now, before)| now - before).collect());
    }
    interval.labelled_overflows = overflows - previous.labelled_overflows;
    recording.next_epoch();
    // 5. What is left is carried.
    let mut carried = 0;
    for pending in switched.leased.iter_mut().flatten() {
        pending.carried = true;
        carried += 1;
    }
    for pending in switched.shared.iter_mut().flatten() {
        pending.carried = true;
        carried += 1;
    }
    carried
}

/// Drains every switched stripe whose writers have left it (one look each); returns whether
/// a stripe this cut switched is still busy.
///
/// A revoked lease is drained only `before_counters` (at the start of a cut): its holder's
/// acknowledgment, unlike a barrier, may come after the cut read the counters, and the starts
/// of the completions it hands over must be among those read. A lease closed by a cut that
/// unwound before its barrier is drained only after this cut's barrier.
fn drain_what_is_still(
    recording: &Recording,
    switched: &mut Switched,
    buffer: &mut Vec<(u32, u64)>,
    collect: &mut impl FnMut(Drained<'_>),
    before_counters: bool,
) -> bool {
    let mut busy = false;
    for (stripe, slot) in recording.leased.iter().zip(switched.leased.iter_mut()) {
        let Some(pending) = slot else { continue };
        let ready_now = if before_counters {
            // Not one switched by a cut that unwound before its barrier: this cut makes the
            // barrier first.
            !pending.switch.needs_barrier()
        } else {
            !pending.switch.is_revoked()
        };
        if !ready_now {
            continue;
        }
        if stripe.is_still(&mut pending.switch) {
            let closed = pending.switch;
            *slot = None;
            stripe.drain(closed, buffer, &mut *collect);
            fault_point(recording, Step::OneDrained);
        } else {
            busy |= !pending.carried;
        }
    }
    for (stripe, slot) in recording.shared.iter().zip(switched.shared.iter_mut()) {
        let Some(pending) = slot else { continue };
        if stripe.is_still(&pending.switch) {
            let flipped = pending.switch;
            *slot = None;
            stripe.drain(flipped, buffer, &mut *collect);
            fault_point(recording, Step::OneDrained);
        } else {
            busy |= !pending.carried;
        }
    }
    busy
}

/// The end of a cut's wait. Under loom, where time does not pass, a zero wait carries at
/// once and any other waits for good.
struct Deadline {
    #[cfg(not(loom))]
    at: Option<Instant>,
    #[cfg(loom)]
    immediate: bool,
}

impl Deadline {
    fn after(wait: Duration) -> Self {
        Deadline {
            // Saturating: a wait too long for the clock is no deadline at all.
            #[cfg(not(loom))]
            at: Instant::now().checked_add(wait),
            #[cfg(loom)]
            immediate: wait.is_zero(),
        }
    }

    fn has_passed(&self) -> bool {
        #[cfg(not(loom))]
        return self.at.is_some_and(|at| Instant::now() >= at);
        #[cfg(loom)]
        return self.immediate;
    }
}

impl Reader {
    /// A reader of `recording` whose first snapshot (sequence 0) is empty and taken now, and
    /// whose cuts wait at most `max_wait` for writers inside a call, with a sliding window of
    /// `window`.
    pub(crate) fn new(
        layout: &HdrLayout,
        recording: &Recording,
        max_wait: Duration,
        window: Duration,
    ) -> Self {
        let grid: Arc<dyn LabelGrid> = recording.labelled.clone();
        let empty = Arc::new(View::empty(layout, &grid));
        let now = Instant::now();
        let first = Arc::new(Snapshot {
            sequence: 0,
            taken_at: SystemTime::now(),
            taken_at_monotonic: now,
            elapsed: Duration::ZERO,
            interval: Arc::clone(&empty),
            window: WindowView::new(Arc::clone(&empty), None),
            cumulative: Arc::clone(&empty),
            untracked: [0; RunnerType::COUNT],
            #[cfg(all(feature = "solti", not(loom)))]
            taskvisor: None,
            sink_failures: 0,
            snapshot_failures: 0,
            carried_stripes: 0,
        });
        let state = ReaderState::after(&first, empty, recording, window, now);
        Reader {
            state: ProcessState::new(state),
            published: Published::new(first),
            max_wait,
            window,
        }
    }

    /// The most bytes the reader can hold, every block of `layout` written in every label:
    /// the views it keeps (the published snapshot's cumulative view, interval and window, the
    /// start of each of the window's age buckets, and the interval a cut builds), each at its
    /// worst (see [`View::worst_case_bytes`]), its drain buffer and the snapshot itself.
    /// Snapshots that users hold beyond the latest are theirs, outside this bound.
    pub(crate) fn worst_case_bytes(layout: &HdrLayout, labelled_cells: usize) -> usize {
        let views = WINDOW_AGE_BUCKETS as usize + 4;
        let drain_buffer = layout.len() * std::mem::size_of::<(u32, u64)>();
        std::mem::size_of::<Self>()
            + std::mem::size_of::<OwnedState>()
            + 2 * std::mem::size_of::<Snapshot>()
            + views * View::worst_case_bytes(layout, labelled_cells)
            + drain_buffer
    }

    /// Cuts `recording`, builds the snapshot with the given clocks, publishes it and returns
    /// it.
    ///
    /// What did not change is shared with the previous snapshot, never copied: with nothing
    /// drained, counted or expired, the new snapshot's views are the previous ones; otherwise
    /// the cumulative view copies only the blocks of counts the interval touched (see
    /// `snapshot::durations`), and the window is moved as `window` describes.
    pub(crate) fn snapshot_at(
        &self,
        recording: &Recording,
        (sink_failures, snapshot_failures): (u64, u64),
        wall_clock: SystemTime,
        monotonic: Instant,
    ) -> Arc<Snapshot> {
        let owned = self.state.get(|| {
            let previous = self.published.load();
            let empty = Arc::new(View::empty_like(&previous.cumulative));
            ReaderState::after(&previous, empty, recording, self.window, Instant::now())
        });
        let mut guard = lock(&owned.state);
        let reader = &mut *guard;
        let empty = &reader.empty;
        let building = reader.building.get_or_insert_with(|| View::clone(empty));
        // Before the counters: every start an untracked task had was recorded before it was
        // untracked (acquire, in `untracked`), so the counters read after include it and
        // in-flight is never pushed below zero by it.
        let untracked = recording.untracked();
        let carried = cut(
            recording,
            &reader.previous.cumulative,
            building,
            &mut reader.switched,
            &mut reader.drain_buffer,
            &mut reader.labelled_buffer,
            self.max_wait,
        );
        // Kept in `building` until published: a panic from here on leaves the next cut to
        // carry on with what this one drained.
        let building = reader.building.as_mut().expect("built above");
        building.settle();
        let interval = View::clone(building);
        let previous = &reader.previous;
        let (interval, cumulative) = if interval.is_empty() {
            (Arc::clone(&reader.empty), Arc::clone(&previous.cumulative))
        } else {
            let mut cumulative = View::clone(&previous.cumulative);
            cumulative.add(&interval);
            (Arc::new(interval), Arc::new(cumulative))
        };
        let now = monotonic.max(reader.previous_at);
        let (window_start, window) = reader.age_buckets.slide(
            now,
            &previous.cumulative,
            &previous.window,
            &interval,
            &cumulative,
        );
        let snapshot = Arc::new(Snapshot {
            sequence: previous.sequence + 1,
            taken_at: wall_clock,
            taken_at_monotonic: now,
            // Saturating: never negative, whatever the caller's clocks did.
            elapsed: monotonic.saturating_duration_since(reader.previous_at),
            cumulative,
            interval,
            window: WindowView::new(window_start, window),
            untracked,
            #[cfg(all(feature = "solti", not(loom)))]
            taskvisor: recording.taskvisor.figures(),
            sink_failures,
            snapshot_failures,
            carried_stripes: carried,
        });
        // Published while still holding the reader lock, so publication order is sequence
        // order and `latest()` never goes back in time.
        self.published.store(Arc::clone(&snapshot));
        reader.building = None;
        reader.previous_at = reader.previous_at.max(monotonic);
        reader.previous = Arc::clone(&snapshot);
        snapshot
    }

    /// When the window's first age bucket began: the origin of its rolls.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn window_origin(&self) -> Instant {
        let owned = self.state.get(|| unreachable!("tests do not fork"));
        lock(&owned.state).age_buckets.origin()
    }

    /// The last published snapshot: wait-free.
    pub(crate) fn latest(&self) -> Arc<Snapshot> {
        self.published.load()
    }
}
