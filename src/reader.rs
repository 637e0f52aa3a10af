//! The reader: the cut that turns the stripes into a consistent interval, and the snapshot
//! built and published from it.
//!
//! # The cut ([`cut`])
//!
//! 1. **Close and flip every stripe**: each leased stripe's lease word and each shared
//!    stripe's lane phasers switch to the other phase. From here on new calls write the new
//!    phase; the old phase holds exactly the calls that began before its switch.
//! 2. **One barrier** (`membarrier`, only if some lease was held): every leased call either
//!    saw its stripe's new lease word, or is visible to the reader as in progress (see
//!    `recording::leased`).
//! 3. **Read the monotonic counters** (`started`, `errors`). A completion the reader will drain
//!    began before its stripe's switch, and its task's start happened before it, so the
//!    start is visible here, on whichever stripe it was recorded: in-flight (`started` minus
//!    completed) is never negative. Reading right after the switches, not after the drains,
//!    keeps starts whose completions fall in the next interval to the moment between the
//!    switches and this read, so in-flight is not inflated by the snapshot's own cost.
//! 4. **Wait and drain**: each stripe is drained as soon as the writers that were inside its
//!    old phase have left it (whichever stripe is ready first), visiting only the blocks
//!    written (see `recording::counts`), and zeroed for its next turn.
//!
//! Snapshots are taken one at a time, under the reader's lock.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::layout::HdrLayout;
use crate::publish::Published;
use crate::recording::Recording;
use crate::recording::counts::Drained;
use crate::recording::leased::{Closed, LeasedStripe};
use crate::recording::shared::{Flipped, SharedStripe};
use crate::snapshot::{Snapshot, View};
use crate::sync::{Mutex, Spin, heavy_barrier, lock};

/// What the reader keeps between two snapshots, and the published pointer.
pub(crate) struct Reader {
    state: Mutex<ReaderState>,
    published: Published<Snapshot>,
}

struct ReaderState {
    previous: Arc<Snapshot>,
    previous_at: Instant,
    /// The snapshot before `previous`, once nobody else holds it: its storage is reused for
    /// the next snapshot, so a steady snapshotter allocates nothing large. Costs one snapshot
    /// of memory.
    spare: Option<Snapshot>,
    /// One histogram's non-zero slots during a drain; kept so that draining allocates
    /// nothing after the first snapshot.
    drain_buffer: Vec<(u32, u64)>,
}

/// A stripe switched by the cut and not yet drained.
enum Pending<'a> {
    Leased(&'a LeasedStripe, Closed),
    Shared(&'a SharedStripe, Flipped),
}

/// Takes a consistent cut of `recording` into `interval` (cleared first), given the
/// cumulative view of the previous snapshot: see the module docs. The caller holds the
/// reader's lock.
fn cut(recording: &Recording, previous: &View, interval: &mut View, buffer: &mut Vec<(u32, u64)>) {
    interval.clear();
    // 1. Close and flip.
    let closed: Vec<Closed> = recording.leased.iter().map(LeasedStripe::close).collect();
    let flipped: Vec<Flipped> = recording.shared.iter().map(SharedStripe::flip).collect();
    // 2. One barrier, if any lease was held.
    if closed.iter().any(Closed::was_held) {
        heavy_barrier();
    }
    // 3. The counters: cumulative on the stripes; the interval is the growth since last time.
    for (runner, started) in interval.started.iter_mut().enumerate() {
        *started = recording.started(runner) - previous.started[runner];
    }
    for (label, errors) in interval.errors.iter_mut().enumerate() {
        *errors = recording.errors(label) - previous.errors[label];
    }
    // 4. Wait and drain, whichever stripe is ready first: a writer descheduled inside a call
    // delays only its own stripe.
    let mut collect = |drained: Drained<'_>| interval.add_drained(drained);
    let mut pending: Vec<Pending<'_>> = recording
        .leased
        .iter()
        .zip(closed)
        .filter(|(_, closed)| closed.was_held())
        .map(|(stripe, closed)| Pending::Leased(stripe, closed))
        .chain(
            recording
                .shared
                .iter()
                .zip(flipped)
                .map(|(stripe, flipped)| Pending::Shared(stripe, flipped)),
        )
        .collect();
    let spin = Spin::new();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain_mut(|pending| {
            let ready = match pending {
                Pending::Leased(stripe, closed) => stripe.is_still(closed),
                Pending::Shared(stripe, flipped) => stripe.is_still(flipped),
            };
            if ready {
                match pending {
                    Pending::Leased(stripe, closed) => stripe.drain(*closed, buffer, &mut collect),
                    Pending::Shared(stripe, flipped) => {
                        stripe.drain(*flipped, buffer, &mut collect)
                    }
                }
            }
            !ready
        });
        if pending.len() == before {
            spin.wait();
        }
    }
    recording.next_epoch();
}

impl Reader {
    /// A reader whose first snapshot (sequence 0) is empty and taken now.
    pub(crate) fn new(layout: &HdrLayout) -> Self {
        let empty = View::empty(layout);
        let first = Arc::new(Snapshot {
            sequence: 0,
            taken_at: SystemTime::now(),
            elapsed: Duration::ZERO,
            interval: empty.clone(),
            cumulative: empty,
            sink_failures: 0,
        });
        Reader {
            state: Mutex::new(ReaderState {
                previous: Arc::clone(&first),
                previous_at: Instant::now(),
                spare: None,
                drain_buffer: Vec::new(),
            }),
            published: Published::new(first),
        }
    }

    /// Cuts `recording`, builds the snapshot with the given clocks, publishes it and returns
    /// it.
    pub(crate) fn snapshot_at(
        &self,
        recording: &Recording,
        sink_failures: u64,
        wall_clock: SystemTime,
        monotonic: Instant,
    ) -> Arc<Snapshot> {
        let mut guard = lock(&self.state);
        let reader = &mut *guard;
        let previous = &reader.previous;
        let mut next = reader.spare.take().unwrap_or_else(|| Snapshot {
            sequence: 0,
            taken_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::ZERO,
            cumulative: View::empty_like(&previous.cumulative),
            interval: View::empty_like(&previous.cumulative),
            sink_failures: 0,
        });
        cut(
            recording,
            &previous.cumulative,
            &mut next.interval,
            &mut reader.drain_buffer,
        );
        next.cumulative.copy_from(&previous.cumulative);
        next.cumulative.add(&next.interval);
        next.sequence = previous.sequence + 1;
        next.taken_at = wall_clock;
        // Saturating: never negative, whatever the caller's clocks did.
        next.elapsed = monotonic.saturating_duration_since(reader.previous_at);
        next.sink_failures = sink_failures;
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

    /// The last published snapshot: wait-free.
    pub(crate) fn latest(&self) -> Arc<Snapshot> {
        self.published.load()
    }
}
