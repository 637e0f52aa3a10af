//! The hot path: one stripe of recording state, the lease that makes a stripe single-writer,
//! and the phase protocol that lets a reader take a consistent cut while writers keep going.
//!
//! # What a stripe holds
//!
//! - `started[runner]` and `errors[runner][kind]`: monotonic counters, never reset;
//! - the index of its active *phase buffer* in the engine's [`Buffers`] pool. A buffer holds,
//!   per `(runner, outcome)`, the exact duration sum (a 128-bit pair of words), the clamped
//!   count and an HDR-layout array of bucket counts, plus the exit counts of the writers that
//!   used it. The number of completions is the histogram's total, so count and histogram
//!   cannot disagree.
//!
//! # Leases: one writer per stripe
//!
//! A locked read-modify-write costs about 2 ns here, as much as the rest of a record call, so
//! a stripe is written by one thread at a time, with plain `load` + `store` increments: the
//! *lease holder*. The engine has `stripes` leasable stripes and one *shared* stripe that
//! anyone may write with `fetch_add`, for threads that find no stripe free (`crate::lease`).
//!
//! The lease lives in the same word as the buffer index, so a writer learns both from the one
//! read-modify-write it makes per call anyway, and computes every address it writes from that
//! word without another load:
//!
//! ```text
//!  63          44 43                 11 10          0
//! [ entries mod 2^20 | lease (0 = free)  | buffer index ]
//! ```
//!
//! - A free stripe (lease 0) is claimed with a compare-and-swap that sets the lease bits to a
//!   number unique to the claim.
//! - Only the reader frees a stripe, and only when no writer is inside it (`release_if_idle`).
//! - A writer enters with `fetch_add(1 << 44)`. If the lease bits it got back are not its own
//!   lease, it writes nothing, counts itself as *bounced* and records elsewhere.
//!
//! So between a claim and the release that ends it, only the claimer passes the lease check:
//! no two threads ever make plain writes to one stripe at once. A new holder sees everything
//! the previous one wrote: the holder's writes come before its release-store of its exit
//! count; the reader acquires that value before its freeing compare-and-swap (release), and
//! the claimer's compare-and-swap (acquire) reads from it or from a later read-modify-write of
//! the word.
//!
//! # The phase protocol (a WriterReaderPhaser per stripe, with rotating buffers)
//!
//! A completion touches several words (bucket, sum, perhaps clamped), and a snapshot must see
//! all of them or none.
//!
//! - writer: `w = word.fetch_add(1 << 44)`; check the lease; write into buffer `b = w & 0x7ff`;
//!   then `exited[b] += 1` (a release store by the holder, a `fetch_add` on the shared stripe).
//!   One locked instruction per call, and never a wait.
//! - reader (one at a time, under the engine's reader lock): `old = word.fetch_xor(b ^ spare)`
//!   (the *flip*) installs a zeroed spare buffer. The entries of buffer `b` are the growth of
//!   the entry field since the previous flip; wait until `exited[b] + bounced[b]` equals them
//!   (mod 2^20), read buffer `b` and zero it (the *drain*); it is the spare for the next
//!   stripe. N stripes share N + 1 buffers.
//!
//! Why the reader sees exactly the writes that entered buffer `b`, each one whole: the entries
//! and the flip are read-modify-writes of one word, so they are totally ordered. A writer
//! ordered before the flip read `b` and is counted; one ordered after it read the spare and
//! writes there. There is no store-then-load race (as in Dekker's algorithm) to fence against.
//! When the exits reach the entries, every counted writer has finished; each exit is a release
//! and the reader's loads acquire, so all their data writes happen before the reader's reads.
//! Nobody writes buffer `b` again until a later flip installs it, and that flip is a release:
//! the zeroing (plain relaxed stores) happens before every writer that enters afterwards,
//! since entries acquire.
//!
//! The entry field wraps at 2^20; counts are compared modulo 2^20, which is exact while fewer
//! than 2^20 writers are inside one stripe at once. Wrapping falls off the top of the word, so
//! it never disturbs the lease or the buffer index. Leases are 33 bits, from a process-wide
//! claim counter: a stale lease could match again only after 2^33 - 1 further claims.
//!
//! Costs and limits: a writer never waits for a reader. A reader waits only for writers that
//! were inside the old buffer when it flipped (a few instructions each), so a writer
//! descheduled mid-record delays the snapshot by that much, never forever (lock-free for the
//! reader, wait-free for writers).
//!
//! `started` and `errors` need no phase: each is one word. The reader flips every stripe,
//! reads them right after the last flip, and drains that stripe last. A completion it drains
//! entered before its stripe's flip; the task's start happened before that entry, which is a
//! release that the flip (an acquire) synchronizes with, so the start is seen on whichever
//! stripe it was recorded: `in_flight` never goes negative. Tasks started after a stripe's
//! flip but before the last flip may show as in flight until the next snapshot.

use crossbeam_utils::CachePadded;

use crate::contract::{RunnerErrorKind, RunnerType, TaskOutcome};
use crate::sync::{AtomicU64, Ordering, Spin};

/// Labels of a completion: one per `(runner, outcome)`.
pub(crate) const COMPLETION_LABELS: usize = RunnerType::COUNT * TaskOutcome::COUNT;
/// Labels of an error: one per `(runner, kind)`.
pub(crate) const ERROR_LABELS: usize = RunnerType::COUNT * RunnerErrorKind::COUNT;

/// The buffer index field: bits 0 to 10, enough for `MAX_STRIPES + 2` buffers.
const BUFFER_MASK: u64 = (1 << 11) - 1;
const LEASE_SHIFT: u32 = 11;
const LEASE_BITS: u32 = 33;
/// The lease field: bits 11 to 43.
const LEASE_MASK: u64 = ((1 << LEASE_BITS) - 1) << LEASE_SHIFT;
const ENTRY_SHIFT: u32 = LEASE_SHIFT + LEASE_BITS;
/// One entry, as added to the word.
const ENTRY: u64 = 1 << ENTRY_SHIFT;
/// Entry counts are kept and compared modulo 2^20.
const ENTRY_COUNT_MASK: u64 = (1 << (64 - ENTRY_SHIFT)) - 1;

/// The most buffers an engine may have.
pub(crate) const MAX_BUFFERS: usize = BUFFER_MASK as usize + 1;

#[inline]
pub(crate) fn completion_label(runner: RunnerType, outcome: TaskOutcome) -> usize {
    runner.index() * TaskOutcome::COUNT + outcome.index()
}

#[inline]
pub(crate) fn error_label(runner: RunnerType, kind: RunnerErrorKind) -> usize {
    runner.index() * RunnerErrorKind::COUNT + kind.index()
}

/// The lease of claim number `claim` (any `u64`), in place in the word: never 0 (free).
pub(crate) fn lease_of_claim(claim: u64) -> u64 {
    ((claim % ((1 << LEASE_BITS) - 1)) + 1) << LEASE_SHIFT
}

/// `cell += by` for the only thread allowed to write `cell`: a load and a store, no lock
/// prefix. `order` orders the store.
#[inline]
fn add_exclusive(cell: &AtomicU64, by: u64, order: Ordering) -> u64 {
    // Relaxed: nobody else writes this cell, so the load sees our own last store, or the
    // previous writer's, published to us by the lease handover (module docs).
    let previous = cell.load(Ordering::Relaxed);
    cell.store(previous.wrapping_add(by), order);
    previous
}

/// The exact sum and the clamped count of one `(runner, outcome)` in one buffer.
#[derive(Default)]
struct CompletionCell {
    /// The sum modulo 2^64...
    sum_low: AtomicU64,
    /// ...and how many times it wrapped: with `sum_low`, an exact 128-bit sum.
    sum_high: AtomicU64,
    clamped: AtomicU64,
}

/// How many writers left a buffer since it was installed.
#[derive(Default)]
struct Exits {
    /// Entrants that wrote and left.
    exited: AtomicU64,
    /// Entrants that found another lease and left without writing.
    bounced: AtomicU64,
}

/// The engine's pool of phase buffers, stored flat so that a writer finds its words from the
/// buffer index by arithmetic alone.
pub(crate) struct Buffers {
    /// `buffers × COMPLETION_LABELS` histograms of `slots_per_histogram` counts, buffer-major
    /// then label-major.
    slots: Box<[AtomicU64]>,
    /// `buffers × COMPLETION_LABELS` sums and clamped counts.
    cells: Box<[CachePadded<CompletionCell>]>,
    exits: Box<[CachePadded<Exits>]>,
    slots_per_histogram: usize,
}

impl Buffers {
    /// `buffers` zeroed buffers of `slots_per_histogram`-slot histograms.
    pub(crate) fn new(buffers: usize, slots_per_histogram: usize) -> Self {
        assert!(buffers <= MAX_BUFFERS, "at most {MAX_BUFFERS} buffers");
        Buffers {
            slots: (0..buffers * COMPLETION_LABELS * slots_per_histogram)
                .map(|_| AtomicU64::new(0))
                .collect(),
            cells: (0..buffers * COMPLETION_LABELS)
                .map(|_| CachePadded::new(CompletionCell::default()))
                .collect(),
            exits: (0..buffers)
                .map(|_| CachePadded::new(Exits::default()))
                .collect(),
            slots_per_histogram,
        }
    }

    /// Heap bytes of `buffers` buffers.
    pub(crate) fn memory_bytes(buffers: usize, slots_per_histogram: usize) -> usize {
        std::mem::size_of::<Buffers>()
            + buffers
                * (COMPLETION_LABELS * slots_per_histogram * std::mem::size_of::<AtomicU64>()
                    + COMPLETION_LABELS * std::mem::size_of::<CachePadded<CompletionCell>>()
                    + std::mem::size_of::<CachePadded<Exits>>())
    }

    /// Where `slot` of `label`'s histogram lies within a buffer: computed before entering.
    #[inline]
    pub(crate) fn slot_offset(&self, label: usize, slot: usize) -> usize {
        label * self.slots_per_histogram + slot
    }

    #[inline]
    fn slots_per_buffer(&self) -> usize {
        COMPLETION_LABELS * self.slots_per_histogram
    }
}

/// The counters no phase covers. One writer (the holder) per leased stripe: packed together.
struct Counters {
    started: [AtomicU64; RunnerType::COUNT],
    errors: [AtomicU64; ERROR_LABELS],
}

/// The word every call enters through, on its own cache line.
struct Phaser {
    /// `entries mod 2^20 | lease | buffer index`, see the module docs.
    word: AtomicU64,
    /// The shared stripe takes every writer, with read-modify-writes; the others take only
    /// their lease holder.
    shared: bool,
}

/// One stripe of recording state.
pub(crate) struct Stripe {
    phaser: CachePadded<Phaser>,
    counters: CachePadded<Counters>,
}

/// The result of [`Stripe::flip`]: what [`Stripe::drain`] needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flipped {
    /// The buffer taken out.
    buffer: usize,
    /// Entries into it, modulo 2^20.
    entered: u64,
}

/// A drained buffer's content for one label, handed to the reader's callback.
pub(crate) struct DrainedCompletions<'a> {
    pub(crate) label: usize,
    pub(crate) sum: u128,
    pub(crate) clamped: u64,
    /// `(slot, count)` for every non-zero slot; the counts have been reset to zero.
    pub(crate) slots: &'a mut dyn Iterator<Item = (usize, u64)>,
}

fn zeroed<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Stripe {
    /// A stripe writing into `buffer` (an index below [`MAX_BUFFERS`]). `shared`: the stripe
    /// every thread may write, with read-modify-writes.
    pub(crate) fn new(buffer: usize, shared: bool) -> Self {
        assert!(buffer < MAX_BUFFERS);
        Stripe {
            phaser: CachePadded::new(Phaser {
                word: AtomicU64::new(buffer as u64),
                shared,
            }),
            counters: CachePadded::new(Counters {
                started: zeroed(),
                errors: zeroed(),
            }),
        }
    }

    /// Inline bytes of one stripe (its buffers are counted by [`Buffers::memory_bytes`]).
    pub(crate) fn memory_bytes() -> usize {
        std::mem::size_of::<Stripe>()
    }

    #[inline]
    pub(crate) fn is_shared(&self) -> bool {
        self.phaser.shared
    }

    /// Enters the stripe and returns the buffer to write, or `None` when `lease` is not this
    /// stripe's (nothing may be written).
    #[inline]
    fn enter(&self, lease: u64, buffers: &Buffers) -> Option<usize> {
        // Acquire: see the reader's zeroing of this buffer (released by its flip), and the
        // previous holder's writes (released through the lease handover).
        // Release: whatever this thread did before (the task's start) is visible to the
        // reader once its flip reads past our entry; that keeps in-flight from going negative.
        let word = self.phaser.word.fetch_add(ENTRY, Ordering::AcqRel);
        let buffer = (word & BUFFER_MASK) as usize;
        if !self.phaser.shared && (lease == 0 || word & LEASE_MASK != lease) {
            // Release: the reader that counts us must not think we are still inside.
            buffers.exits[buffer]
                .bounced
                .fetch_add(1, Ordering::Release);
            return None;
        }
        Some(buffer)
    }

    /// Leaves `buffer`; every write made inside goes to the reader with it.
    #[inline]
    fn leave(&self, buffer: usize, buffers: &Buffers) {
        let exited = &buffers.exits[buffer].exited;
        // Release: hands everything written inside to the reader that waits for this count.
        if self.phaser.shared {
            exited.fetch_add(1, Ordering::Release);
        } else {
            add_exclusive(exited, 1, Ordering::Release);
        }
    }

    /// `cell += by`: plain on a leased stripe, a `fetch_add` on the shared one. Returns the
    /// previous value.
    #[inline]
    fn add(&self, cell: &AtomicU64, by: u64) -> u64 {
        // Relaxed: published by `leave`'s release.
        if self.phaser.shared {
            cell.fetch_add(by, Ordering::Relaxed)
        } else {
            add_exclusive(cell, by, Ordering::Relaxed)
        }
    }

    /// Counts a start; false (nothing counted) when `lease` is not this stripe's.
    #[inline]
    pub(crate) fn record_started(&self, lease: u64, buffers: &Buffers, runner: RunnerType) -> bool {
        self.record_counter(lease, buffers, &self.counters.started[runner.index()])
    }

    /// Counts an error for `label`; false (nothing counted) when `lease` is not this stripe's.
    #[inline]
    pub(crate) fn record_error(&self, lease: u64, buffers: &Buffers, label: usize) -> bool {
        self.record_counter(lease, buffers, &self.counters.errors[label])
    }

    #[inline]
    fn record_counter(&self, lease: u64, buffers: &Buffers, counter: &AtomicU64) -> bool {
        if self.phaser.shared {
            // A lone word written by read-modify-writes needs no phase. Relaxed: the reader
            // orders it through the completion that follows (module docs).
            counter.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // The entry is what makes the holder's plain store safe: it proves the lease.
        let Some(buffer) = self.enter(lease, buffers) else {
            return false;
        };
        add_exclusive(counter, 1, Ordering::Relaxed);
        self.leave(buffer, buffers);
        true
    }

    /// Records one completion: `slot_offset` locates the bucket of the (clamped) value
    /// ([`Buffers::slot_offset`]), `duration_ms` is the true value for the sum. False (nothing
    /// recorded) when `lease` is not this stripe's.
    #[inline]
    pub(crate) fn record_completion(
        &self,
        lease: u64,
        buffers: &Buffers,
        label: usize,
        slot_offset: usize,
        duration_ms: u64,
        clamped: bool,
    ) -> bool {
        let Some(buffer) = self.enter(lease, buffers) else {
            return false;
        };
        self.add(
            &buffers.slots[buffer * buffers.slots_per_buffer() + slot_offset],
            1,
        );
        let cell = &buffers.cells[buffer * COMPLETION_LABELS + label];
        let previous = self.add(&cell.sum_low, duration_ms);
        if previous.checked_add(duration_ms).is_none() {
            self.add(&cell.sum_high, 1);
        }
        if clamped {
            self.add(&cell.clamped, 1);
        }
        self.leave(buffer, buffers);
        true
    }

    /// Claims a free stripe for `lease` (from [`lease_of_claim`]). False if another thread
    /// holds it, or for the shared stripe.
    pub(crate) fn try_claim(&self, lease: u64) -> bool {
        debug_assert!(lease != 0 && lease & !LEASE_MASK == 0);
        if self.phaser.shared {
            return false;
        }
        let mut word = self.phaser.word.load(Ordering::Relaxed);
        while word & LEASE_MASK == 0 {
            // AcqRel on success: acquire the previous holder's writes, handed over by the
            // reader's release (module docs). Fails only when a writer entered (and bounced)
            // meanwhile, so the loop is lock-free.
            match self.phaser.word.compare_exchange_weak(
                word,
                word | lease,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
        false
    }

    /// Installs `spare` (a zeroed buffer) in place of the current one. `entry_mark` is the
    /// entry field at this stripe's previous flip, updated here. Callers serialize on the
    /// engine's reader lock: two concurrent flips or drains of one stripe would break the
    /// protocol.
    pub(crate) fn flip(&self, spare: usize, entry_mark: &mut u64) -> Flipped {
        // Relaxed: only flips change the buffer index, and they are serialized by the lock.
        let current = self.phaser.word.load(Ordering::Relaxed) & BUFFER_MASK;
        // AcqRel: release publishes the spare's zeroing to the writers who enter after us;
        // acquire synchronizes with every entry so far (each is a release), so whatever a
        // counted writer did before entering, a task's start included, is visible to us.
        let old = self
            .phaser
            .word
            .fetch_xor(current ^ spare as u64, Ordering::AcqRel);
        let entries = old >> ENTRY_SHIFT;
        let entered = entries.wrapping_sub(*entry_mark) & ENTRY_COUNT_MASK;
        *entry_mark = entries;
        Flipped {
            buffer: current as usize,
            entered,
        }
    }

    /// Waits for the writers counted in `flipped` to leave the old buffer, hands each label's
    /// content to `visit`, and leaves that buffer zeroed. Returns the buffer: the next spare.
    pub(crate) fn drain(
        &self,
        flipped: Flipped,
        buffers: &Buffers,
        mut visit: impl FnMut(DrainedCompletions<'_>),
    ) -> usize {
        let Flipped { buffer, entered } = flipped;
        let exits = &buffers.exits[buffer];
        let spin = Spin::new();
        // Acquire: synchronizes with every counted writer's release.
        let wrote = loop {
            let wrote = exits.exited.load(Ordering::Acquire);
            let left = wrote.wrapping_add(exits.bounced.load(Ordering::Acquire));
            if left & ENTRY_COUNT_MASK == entered {
                break wrote;
            }
            spin.wait();
        };
        // Relaxed: published to the next writers of this buffer by the flip that installs it.
        exits.exited.store(0, Ordering::Relaxed);
        exits.bounced.store(0, Ordering::Relaxed);
        if wrote == 0 {
            // Nobody wrote it: it is still all zero from its last drain, so an idle stripe
            // costs a flip instead of a scan.
            return buffer;
        }

        let slots_per_histogram = buffers.slots_per_histogram;
        let first_slot = buffer * buffers.slots_per_buffer();
        let first_cell = buffer * COMPLETION_LABELS;
        for label in 0..COMPLETION_LABELS {
            let cell = &buffers.cells[first_cell + label];
            // Relaxed loads and stores: no writer touches this buffer until a flip installs it.
            let sum_low = cell.sum_low.load(Ordering::Relaxed);
            let sum_high = cell.sum_high.load(Ordering::Relaxed);
            let clamped = cell.clamped.load(Ordering::Relaxed);
            cell.sum_low.store(0, Ordering::Relaxed);
            cell.sum_high.store(0, Ordering::Relaxed);
            cell.clamped.store(0, Ordering::Relaxed);
            let start = first_slot + label * slots_per_histogram;
            let histogram = &buffers.slots[start..start + slots_per_histogram];
            let mut slots = histogram.iter().enumerate().filter_map(|(slot, count)| {
                let value = count.load(Ordering::Relaxed);
                if value == 0 {
                    return None;
                }
                count.store(0, Ordering::Relaxed);
                Some((slot, value))
            });
            visit(DrainedCompletions {
                label,
                sum: (u128::from(sum_high) << 64) | u128::from(sum_low),
                clamped,
                slots: &mut slots,
            });
            // Drain whatever the visitor left, so the buffer is zero for its next use.
            slots.for_each(drop);
        }
        buffer
    }

    /// Frees the stripe if a thread holds it and none is inside now, so that a thread that
    /// exited (or went quiet) hands its stripe back. `entry_mark` is the mark
    /// [`flip`](Self::flip) left. Called by the reader, under its lock, after draining. A
    /// holder that is still alive just claims a stripe again on its next call.
    pub(crate) fn release_if_idle(&self, buffers: &Buffers, entry_mark: u64) -> bool {
        if self.phaser.shared {
            return false;
        }
        // Acquire: keeps the loads below after this one.
        let word = self.phaser.word.load(Ordering::Acquire);
        if word & LEASE_MASK == 0 {
            return false;
        }
        let exits = &buffers.exits[(word & BUFFER_MASK) as usize];
        let entered = (word >> ENTRY_SHIFT).wrapping_sub(entry_mark) & ENTRY_COUNT_MASK;
        // Acquire: the holder's last exit (a release) carries all its writes; our release
        // below hands them to the next holder.
        let left = exits
            .exited
            .load(Ordering::Acquire)
            .wrapping_add(exits.bounced.load(Ordering::Acquire));
        if left & ENTRY_COUNT_MASK != entered {
            return false; // a writer is inside
        }
        // Succeeds only if nobody entered since `word`: then nobody is inside now.
        self.phaser
            .word
            .compare_exchange(
                word,
                word & !LEASE_MASK,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Tasks started so far on this stripe, per runner. Call after flipping every stripe.
    pub(crate) fn started(&self, runner: usize) -> u64 {
        // Relaxed: ordered after the flips' acquire, which is what in-flight needs.
        self.counters.started[runner].load(Ordering::Relaxed)
    }

    /// Errors so far on this stripe, for one `(runner, kind)` label.
    pub(crate) fn errors(&self, label: usize) -> u64 {
        self.counters.errors[label].load(Ordering::Relaxed)
    }
}
