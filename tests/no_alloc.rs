//! The record paths allocate nothing after construction, a thread's first call included; and
//! what an engine says it reserves is what its stripes allocate.
//!
//! A counting global allocator counts every allocation of the process, and the bytes each
//! thread holds; the tests only look at what one thread does, so the harness's own threads do
//! not disturb them.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use taskmeter::{
    AtomicMetrics, MetricsBackend, MetricsHandle, RunnerErrorKind, RunnerType, TaskOutcome,
};
use taskmeter_workload::{replay, task_mix};

struct CountingAllocator;

std::thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread (wrapping: a thread may free what
    /// another allocated).
    static HELD_BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    // try_with: the allocator may run while this thread's TLS is being torn down.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

fn count_bytes(allocated: usize, freed: usize) {
    let _ = HELD_BYTES.try_with(|held| {
        held.set(
            held.get()
                .wrapping_add(allocated as u64)
                .wrapping_sub(freed as u64),
        )
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        count_bytes(layout.size(), 0);
        // SAFETY: forwarded unchanged to the system allocator, under the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        count_bytes(layout.size(), 0);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        count_bytes(new_size, layout.size());
        // SAFETY: as for `alloc`; `ptr` came from this allocator, which is `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_bytes(0, layout.size());
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Runs `record` on a fresh thread (so its very first record call is measured) and returns how
/// many allocations that thread made while recording.
fn allocations_of(record: impl FnOnce() + Send) -> u64 {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let before = allocations_on_this_thread();
                record();
                allocations_on_this_thread() - before
            })
            .join()
            .unwrap()
    })
}

#[test]
fn the_counter_sees_allocations() {
    // The instrument works: a Vec on the measured thread is counted.
    assert!(allocations_of(|| drop(std::hint::black_box(vec![1_u8; 64]))) >= 1);
}

#[test]
fn record_paths_allocate_nothing_from_a_threads_first_call() {
    let metrics = Arc::new(
        AtomicMetrics::builder()
            .highest_duration_ms(10_000)
            .build()
            .unwrap(),
    );
    let handle: MetricsHandle = metrics.clone();
    let calls = task_mix(10_000, 3);
    let allocations = allocations_of(|| {
        handle.record_task_started(RunnerType::Wasm);
        handle.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 5);
        handle.record_runner_error(RunnerType::Wasm, RunnerErrorKind::SpawnFailed);
        // Every label, and durations at the edges and beyond the range (clamped).
        for runner in RunnerType::ALL {
            for outcome in TaskOutcome::ALL {
                for duration in [0, 1, 9_999, 10_000, 10_001, u64::MAX] {
                    handle.record_task_started(runner);
                    handle.record_task_completed(runner, outcome, duration);
                }
            }
            for kind in RunnerErrorKind::ALL {
                handle.record_runner_error(runner, kind);
            }
        }
        replay(&*handle, &calls);
    });
    assert_eq!(allocations, 0);
    // And the recording was real.
    let snapshot = metrics.snapshot();
    assert!(snapshot.cumulative().started(RunnerType::Wasm) > 12);
}

#[test]
fn recording_while_snapshots_are_taken_allocates_nothing_on_the_writer() {
    let metrics = Arc::new(AtomicMetrics::new());
    // The snapshotter's sink says how far it got: the recording thread reads an atomic, not
    // `latest()`, whose first use on a thread may allocate arc-swap's per-thread node.
    let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let snapshotter = taskmeter::SnapshotterBuilder::new(std::time::Duration::from_millis(1))
        .sink({
            let taken = Arc::clone(&taken);
            move |snapshot: &taskmeter::Snapshot| -> Result<(), taskmeter::SinkError> {
                taken.store(snapshot.sequence(), std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        })
        .spawn(&metrics);
    let calls = task_mix(50_000, 4);
    let mut published = (0, 0);
    let allocations = allocations_of(|| {
        // Replays until the snapshotter has published two snapshots since the first replay
        // began (bounded: a stalled snapshotter fails the check below).
        let sequence = || taken.load(std::sync::atomic::Ordering::Relaxed);
        let first = sequence();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            replay(&*metrics, &calls);
            let now = sequence();
            if now >= first + 2 || std::time::Instant::now() > deadline {
                published = (first, now);
                break;
            }
        }
    });
    snapshotter.stop();
    assert_eq!(allocations, 0);
    let (first, last) = published;
    assert!(
        last >= first + 2,
        "snapshots {first} to {last} during the replays"
    );
}

/// What a new engine of `stripes` stripes holds allocated right after `build()`, and what it
/// says it reserves.
fn held_and_reserved(stripes: usize) -> (u64, u64) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let before = HELD_BYTES.with(Cell::get);
                let metrics = AtomicMetrics::builder().stripes(stripes).build().unwrap();
                let held = HELD_BYTES.with(Cell::get).wrapping_sub(before);
                (held, metrics.recording_memory_bytes() as u64)
            })
            .join()
            .unwrap()
    })
}

#[test]
fn the_memory_an_engine_reserves_is_what_each_stripe_allocates() {
    // Per stripe, the engine reserves exactly what its stripes allocate, plus the reader's
    // note of where the stripe stands in a cut; everything else is the same whatever the
    // number of stripes (the layout, the first snapshot), so it cancels out.
    let (fewer, more) = (16, 80);
    let (held_fewer, reserved_fewer) = held_and_reserved(fewer);
    let (held_more, reserved_more) = held_and_reserved(more);
    let held = held_more - held_fewer;
    let reserved = reserved_more - reserved_fewer;
    let extra_per_stripe = held
        .checked_sub(reserved)
        .unwrap_or_else(|| panic!("{reserved} bytes said reserved for {held} allocated"))
        / (more - fewer) as u64;
    assert!(
        extra_per_stripe <= 128,
        "{extra_per_stripe} bytes a stripe allocated beyond what the engine reports"
    );
}

/// Every count in a snapshot of its own: each label, a custom-label error, and a built
/// histogram; the engine is then dropped, and dropping the snapshot frees what it reported.
/// Asserts that `snapshot.memory_bytes()` is what dropping it frees, on this thread.
fn assert_reports_what_dropping_frees(snapshot: Arc<taskmeter::Snapshot>) {
    let reported = snapshot.memory_bytes();
    let before = HELD_BYTES.with(Cell::get);
    drop(snapshot);
    let freed = before.wrapping_sub(HELD_BYTES.with(Cell::get)) as usize;
    // What the `Arc<Snapshot>` itself held: the snapshot and two reference counts.
    let header = 2 * std::mem::size_of::<usize>();
    assert_eq!(reported + header, freed);
}

#[test]
fn the_memory_a_snapshot_reports_is_what_dropping_it_frees() {
    use taskmeter::{Label, RunnerErrorKind};
    let metrics = AtomicMetrics::builder().custom_labels(4).build().unwrap();
    // Holds the tables the snapshot shares with the engine (they are not the snapshot's).
    let first = metrics.latest();
    for (task, runner) in RunnerType::ALL.into_iter().enumerate() {
        for outcome in TaskOutcome::ALL {
            metrics.record_task_completed(runner, outcome, 10_u64.pow(task as u32));
            metrics.record_task_completed(runner, outcome, 7_000_000);
        }
    }
    metrics.record_labelled_runner_error(
        Label::Custom("plugin".to_owned()),
        Label::Known(RunnerErrorKind::SpawnFailed),
    );
    let snapshot = metrics.snapshot();
    let built = snapshot
        .window()
        .duration(RunnerType::Wasm, TaskOutcome::Success);
    assert_eq!(built.len(), 2);
    drop(metrics);
    assert_reports_what_dropping_frees(snapshot);
    drop(first);
}

/// In an engine older than its window, a snapshot keeps the earlier cumulative view its window
/// is computed from: counted, and freed with the snapshot once the engine is gone.
#[test]
fn the_memory_a_snapshot_reports_includes_its_window_start() {
    let metrics = AtomicMetrics::builder()
        .window(std::time::Duration::from_millis(40))
        .build()
        .unwrap();
    // Holds the tables the snapshot shares with the engine (they are not the snapshot's).
    let first = metrics.latest();
    // A custom label in each phase, so that the labelled counts are the snapshots' own, not
    // the engine's empty ones (which `first` holds).
    let plugin_error = || {
        metrics.record_labelled_runner_error(
            taskmeter::Label::Custom("plugin".to_owned()),
            taskmeter::Label::Known(taskmeter::RunnerErrorKind::SpawnFailed),
        )
    };
    replay(&metrics, &task_mix(2_000, 5));
    plugin_error();
    metrics.snapshot();
    // Past the whole window: the next snapshot's window starts at the cumulative view above.
    std::thread::sleep(std::time::Duration::from_millis(60));
    replay(&metrics, &task_mix(2_000, 6));
    plugin_error();
    let snapshot = metrics.snapshot();
    drop(metrics);
    assert_reports_what_dropping_frees(snapshot);
    drop(first);
}

/// A snapshot with nothing new shares the previous one's views: taken while an exporter still
/// holds the previous snapshot, it allocates a few hundred bytes, at 3 digits and at 4 (whose
/// dense views were 63 MiB), after every label recorded.
#[test]
fn a_quiet_snapshot_allocates_almost_nothing() {
    for digits in [3, 4] {
        let metrics = AtomicMetrics::builder()
            .significant_digits(digits)
            .build()
            .unwrap();
        replay(&metrics, &task_mix(10_000, 3));
        let held = metrics.snapshot();
        let (before, allocations) = (HELD_BYTES.with(Cell::get), allocations_on_this_thread());
        let quiet = metrics.snapshot();
        let allocated = HELD_BYTES.with(Cell::get).wrapping_sub(before);
        let allocations = allocations_on_this_thread() - allocations;
        assert!(allocated <= 1024, "{digits} digits: {allocated} bytes");
        // The snapshot itself, and no temporary either.
        assert_eq!(allocations, 1, "{digits} digits");
        assert_eq!(quiet.sequence(), held.sequence() + 1);
        assert_eq!(
            quiet.cumulative().completed_all(RunnerType::Subprocess),
            held.cumulative().completed_all(RunnerType::Subprocess)
        );
    }
}

/// taskvisor's subscriber under tasks whose closes and ends are all lost after overflows: the
/// memory it holds stops growing at its attempt table's bound (here 1,000 attempts), however
/// many such tasks come.
#[cfg(feature = "solti")]
#[test]
fn the_taskvisor_subscriber_holds_bounded_memory_whatever_events_are_lost() {
    use std::num::NonZeroUsize;
    use taskmeter::solti::{TASKVISOR_SUBSCRIBER_NAME, TaskvisorMetrics};
    use taskvisor::{Event, EventKind, Subscribe, TaskId};

    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let metrics = Arc::new(AtomicMetrics::new());
                let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics))
                    .with_attempt_capacity(NonZeroUsize::new(1_000).unwrap());
                let held_before = HELD_BYTES.with(Cell::get);
                let mut held_after = Vec::new();
                for task in 0..200_000_u32 {
                    let start = Event::new(EventKind::AttemptStarting)
                        .with_task("task")
                        .with_id(TaskId::for_tests())
                        .with_attempt(1);
                    subscriber.on_event(&start);
                    if task % 100 == 99 {
                        // The closes (and the tasks' ends) were lost with the overflow.
                        let overflow = Event::subscriber_overflow(
                            TASKVISOR_SUBSCRIBER_NAME.to_owned(),
                            "full",
                        )
                        .with_dropped(100);
                        subscriber.on_event(&overflow);
                    }
                    if task % 20_000 == 19_999 {
                        held_after.push(HELD_BYTES.with(Cell::get).wrapping_sub(held_before));
                    }
                }
                // Past the first rounds (the table filling up), nothing more is held: a
                // kilobyte of slack for the maps' rehashing, against 1.3 MB per round if
                // entries were kept.
                let settled = held_after[1];
                for (round, &held) in held_after.iter().enumerate().skip(2) {
                    assert!(
                        held <= settled + 1024,
                        "after {} tasks: {held} bytes held, against {settled} at 40,000",
                        (round + 1) * 20_000
                    );
                }
                assert!(
                    settled < 1 << 20,
                    "{settled} bytes for a 1,000-attempt table"
                );
                drop(subscriber);
                drop(metrics);
            })
            .join()
            .unwrap()
    });
}

/// taskvisor's subscriber under many short tasks whose every event arrives (start, close, end):
/// the events it remembers to recognise repeats stop growing at their bound.
#[cfg(feature = "solti")]
#[test]
fn the_taskvisor_subscriber_forgets_old_events_at_its_bound() {
    use taskmeter::solti::TaskvisorMetrics;
    use taskvisor::{Event, EventKind, Subscribe, TaskId, TaskOutcomeKind};

    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let metrics = Arc::new(AtomicMetrics::new());
                let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics));
                let held_before = HELD_BYTES.with(Cell::get);
                let mut held_after = Vec::new();
                for task in 0..100_000_u32 {
                    let id = TaskId::for_tests();
                    let event = |kind| Event::new(kind).with_task("task").with_id(id);
                    subscriber.on_event(&event(EventKind::AttemptStarting).with_attempt(1));
                    subscriber.on_event(
                        &event(EventKind::AttemptSucceeded)
                            .with_attempt(1)
                            .with_duration(std::time::Duration::from_millis(3)),
                    );
                    subscriber.on_event(
                        &event(EventKind::TaskFinished)
                            .with_outcome_kind(TaskOutcomeKind::Completed),
                    );
                    if task % 10_000 == 9_999 {
                        held_after.push(HELD_BYTES.with(Cell::get).wrapping_sub(held_before));
                    }
                }
                // 4,096 events remembered are reached within the first round: past it, a
                // kilobyte of slack for rehashing, against 0.5 MB per round if kept.
                let settled = held_after[1];
                for (round, &held) in held_after.iter().enumerate().skip(2) {
                    assert!(
                        held <= settled + 1024,
                        "after {} tasks: {held} bytes held, against {settled} at 20,000",
                        (round + 1) * 10_000
                    );
                }
                assert_eq!(metrics.snapshot().in_flight(RunnerType::Subprocess), 0);
            })
            .join()
            .unwrap()
    });
}

/// What an engine with `custom_labels` holds on this thread after it was offered 33 labels
/// of 4 MiB, then had both its label tables filled with the longest labels kept; and what it
/// says it reserves.
fn held_with_full_label_tables(custom_labels: usize) -> (u64, u64) {
    use taskmeter::{Label, LabelRef, MAX_CUSTOM_LABEL_BYTES};
    let before = HELD_BYTES.with(Cell::get);
    let metrics = AtomicMetrics::builder()
        .custom_labels(custom_labels)
        .build()
        .unwrap();
    for i in 0..33 {
        let huge = format!("{i}{}", "x".repeat(4 << 20));
        metrics
            .record_labelled_runner_error(Label::Custom(huge.clone()), Label::Custom(huge.clone()));
        metrics.record_labelled_runner_error_ref(LabelRef::Custom(&huge), LabelRef::Custom(&huge));
    }
    for i in 0..=custom_labels {
        let longest = |side: &str| {
            format!(
                "{side}{i:0>width$}",
                width = MAX_CUSTOM_LABEL_BYTES - side.len()
            )
        };
        metrics
            .record_labelled_runner_error(Label::Custom(longest("r")), Label::Custom(longest("k")));
    }
    let held = HELD_BYTES.with(Cell::get).wrapping_sub(before);
    (held, metrics.recording_memory_bytes() as u64)
}

#[test]
fn custom_labels_hold_no_more_than_the_engine_reserves_for_them() {
    let (held_none, reserved_none) = held_with_full_label_tables(0);
    for labels in [32, 1024] {
        let (held, reserved) = held_with_full_label_tables(labels);
        let (held, reserved) = (held - held_none, reserved - reserved_none);
        assert!(
            held <= reserved,
            "{labels} custom labels: {held} bytes held, {reserved} reserved for them"
        );
        // The grid alone: a counter per (runner, error kind) pair of labels.
        assert!(
            reserved >= ((labels + 8) * (labels + 8) * 8) as u64,
            "{reserved}"
        );
    }
}

/// What `memory_bound_bytes` promises: however the engine is used, what it holds stays within
/// it. Every slot of every label written (a small layout, so that it is quick), a window that
/// rolls at every snapshot, every view read by block and its full histogram built, custom
/// labels added: the most the engine held after any snapshot (the published one included,
/// the caller's handle on it dropped) is within the bound.
#[test]
fn the_memory_an_engine_holds_stays_within_its_bound() {
    use taskmeter::LabelRef;
    let before = HELD_BYTES.with(Cell::get);
    let metrics = AtomicMetrics::builder()
        .significant_digits(2)
        .highest_duration_ms(10_000)
        .window(std::time::Duration::from_millis(4))
        .stripes(2)
        .custom_labels(2)
        .build()
        .unwrap();
    let outcomes = [
        TaskOutcome::Success,
        TaskOutcome::Failure,
        TaskOutcome::Canceled,
        TaskOutcome::Timeout,
    ];
    let mut peak = 0;
    for round in 0..24_u64 {
        // Every slot in one round of three, a spread of them in the others.
        let step = if round % 3 == 0 {
            1
        } else {
            5 + round as usize
        };
        for runner in RunnerType::ALL {
            for outcome in outcomes {
                for ms in (round..=10_000).step_by(step) {
                    metrics.record_task_started(runner);
                    metrics.record_task_completed(runner, outcome, ms);
                }
            }
        }
        let runner = if round % 2 == 0 {
            "gpu"
        } else {
            "image-resize"
        };
        metrics.record_labelled_runner_error_ref(
            LabelRef::Custom(runner),
            LabelRef::Known(RunnerErrorKind::SpawnFailed),
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        let snapshot = metrics.snapshot();
        for view in [
            snapshot.cumulative(),
            snapshot.interval(),
            snapshot.window(),
        ] {
            for runner in RunnerType::ALL {
                for outcome in outcomes {
                    view.duration_counts(runner, outcome)
                        .value_at_quantile(0.99);
                    view.duration(runner, outcome);
                }
            }
        }
        drop(snapshot);
        peak = peak.max(HELD_BYTES.with(Cell::get).wrapping_sub(before));
    }
    let bound = metrics.memory_bound_bytes() as u64;
    assert!(
        peak <= bound,
        "the engine held {peak} bytes, over its bound of {bound}"
    );
    println!("held at most {peak} bytes of a bound of {bound}");
}
