//! Single-threaded properties of the engine: conservation, clamping, configuration, snapshots.
#![cfg(not(loom))]

use proptest::prelude::*;
use taskmeter::{
    AtomicMetrics, ConfigError, MetricsBackend, MetricsHandle, RunnerErrorKind, RunnerType,
    Snapshot, TaskOutcome, View,
};
use taskmeter_workload::{Call, Totals, replay, task_mix};

/// Every count and sum of `view` equals the reference totals exactly, and every histogram
/// holds as many values as its completed count.
fn assert_view_equals(view: &View, expected: &Totals) {
    assert_eq!(expected.first_difference(view), None);
    for runner in RunnerType::ALL {
        for outcome in TaskOutcome::ALL {
            let completed = view.completed(runner, outcome);
            assert_eq!(view.duration(runner, outcome).len(), completed);
            let sum = u64::try_from(expected.duration_sum_ms(runner, outcome)).unwrap_or(u64::MAX);
            assert_eq!(view.duration_sum_ms(runner, outcome), sum);
        }
    }
}

fn assert_intervals_add_up(snapshots: &[std::sync::Arc<Snapshot>]) {
    let last = snapshots.last().unwrap();
    for runner in RunnerType::ALL {
        let started: u64 = snapshots.iter().map(|s| s.interval().started(runner)).sum();
        assert_eq!(started, last.cumulative().started(runner));
        for outcome in TaskOutcome::ALL {
            let completed: u64 = snapshots
                .iter()
                .map(|s| s.interval().completed(runner, outcome))
                .sum();
            assert_eq!(completed, last.cumulative().completed(runner, outcome));
            let sum: u64 = snapshots
                .iter()
                .map(|s| s.interval().duration_sum_ms(runner, outcome))
                .sum();
            assert_eq!(sum, last.cumulative().duration_sum_ms(runner, outcome));
        }
        for kind in RunnerErrorKind::ALL {
            let errors: u64 = snapshots
                .iter()
                .map(|s| s.interval().errors(runner, kind))
                .sum();
            assert_eq!(errors, last.cumulative().errors(runner, kind));
        }
    }
}

#[test]
fn a_new_engine_has_published_an_empty_snapshot() {
    let metrics = AtomicMetrics::new();
    let latest = metrics.latest();
    assert_eq!(latest.sequence(), 0);
    assert_eq!(latest.elapsed(), std::time::Duration::ZERO);
    assert_view_equals(latest.cumulative(), &Totals::default());
    assert_view_equals(latest.interval(), &Totals::default());
}

#[test]
fn arc_of_the_engine_coerces_to_a_metrics_handle() {
    let metrics = std::sync::Arc::new(AtomicMetrics::new());
    let handle: MetricsHandle = metrics.clone();
    handle.record_runner_error(RunnerType::Wasm, RunnerErrorKind::ModuleLoadFailed);
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot
            .cumulative()
            .errors(RunnerType::Wasm, RunnerErrorKind::ModuleLoadFailed),
        1
    );
}

#[test]
fn the_mix_is_conserved_across_snapshots() {
    let metrics = AtomicMetrics::builder().stripes(3).build().unwrap();
    let calls = task_mix(20_000, 1);
    let mut snapshots = vec![metrics.latest()];
    for chunk in calls.chunks(4_999) {
        replay(&metrics, chunk);
        snapshots.push(metrics.snapshot());
    }
    snapshots.push(metrics.snapshot()); // an empty interval
    let expected = Totals::of(&calls);
    let last = snapshots.last().unwrap();
    assert_view_equals(last.cumulative(), &expected);
    assert_view_equals(last.interval(), &Totals::default());
    assert_intervals_add_up(&snapshots);
    for (number, snapshot) in snapshots.iter().enumerate() {
        assert_eq!(snapshot.sequence(), number as u64);
    }
    assert!(std::sync::Arc::ptr_eq(last, &metrics.latest()));
    for runner in RunnerType::ALL {
        assert_eq!(last.in_flight(runner), 0);
    }
}

/// A thread remembers one engine's route at a time, and the hot path trusts the lease word
/// rather than checking which engine the memory came from: threads that alternate between
/// engines of different sizes (a remembered stripe may not exist in the other engine, or be
/// a shared one there, or be leased there by the same thread) must still count every call
/// exactly once, in the engine it was made on.
#[test]
fn threads_alternating_between_engines_lose_nothing() {
    let engines = [
        AtomicMetrics::builder().stripes(2).build().unwrap(),
        AtomicMetrics::builder().stripes(8).build().unwrap(),
        AtomicMetrics::builder().stripes(5).build().unwrap(),
    ];
    let totals = std::sync::Mutex::new(vec![Totals::default(); engines.len()]);
    std::thread::scope(|scope| {
        for seed in 0..4 {
            let (engines, totals) = (&engines, &totals);
            scope.spawn(move || {
                let calls = task_mix(3_000, seed);
                let mut mine = vec![Vec::new(); engines.len()];
                for (turn, chunk) in calls.chunks(97).enumerate() {
                    let engine = (turn * (seed as usize + 1)) % engines.len();
                    replay(&engines[engine], chunk);
                    mine[engine].extend_from_slice(chunk);
                    if turn % 7 == 0 {
                        engines[turn % engines.len()].snapshot();
                    }
                }
                let mut totals = totals.lock().unwrap();
                for (total, mine) in totals.iter_mut().zip(&mine) {
                    total.add(mine);
                }
            });
        }
    });
    let totals = totals.into_inner().unwrap();
    for (engine, expected) in engines.iter().zip(&totals) {
        assert!(expected.calls() > 0);
        assert_view_equals(engine.snapshot().cumulative(), expected);
    }
}

#[test]
fn in_flight_counts_started_minus_completed() {
    let metrics = AtomicMetrics::new();
    for _ in 0..5 {
        metrics.record_task_started(RunnerType::Container);
    }
    metrics.record_task_completed(RunnerType::Container, TaskOutcome::Timeout, 3);
    metrics.record_task_completed(RunnerType::Container, TaskOutcome::Success, 3);
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.in_flight(RunnerType::Container), 3);
    assert_eq!(snapshot.in_flight(RunnerType::Subprocess), 0);
    // A completion without a start is shown, not hidden.
    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Failure, 3);
    assert_eq!(metrics.snapshot().in_flight(RunnerType::Wasm), -1);
}

#[test]
fn durations_beyond_the_range_are_clamped_and_counted() {
    let metrics = AtomicMetrics::builder()
        .highest_duration_ms(1_000)
        .build()
        .unwrap();
    let (runner, outcome) = (RunnerType::Subprocess, TaskOutcome::Failure);
    for duration in [0, 1, 999, 1_000, 1_001, u64::MAX] {
        metrics.record_task_completed(runner, outcome, duration);
    }
    let snapshot = metrics.snapshot();
    let view = snapshot.cumulative();
    assert_eq!(view.completed(runner, outcome), 6);
    assert_eq!(view.clamped(runner, outcome), 2);
    let histogram = view.duration(runner, outcome);
    assert_eq!(histogram.count_between(1_000, 1_000), 3);
    assert_eq!(histogram.min(), 0);
    assert!(histogram.equivalent(histogram.max(), 1_000));
    // The true sum overflows u64: reported saturated.
    assert_eq!(view.duration_sum_ms(runner, outcome), u64::MAX);
    assert_eq!(view.clamped(runner, TaskOutcome::Success), 0);
}

#[test]
fn sums_beyond_u64_stay_exact_per_interval() {
    let metrics = AtomicMetrics::builder().stripes(1).build().unwrap();
    let (runner, outcome) = (RunnerType::Wasm, TaskOutcome::Canceled);
    // Two values whose sum wraps 2^64 in the low word: the carry is kept.
    metrics.record_task_completed(runner, outcome, u64::MAX);
    metrics.record_task_completed(runner, outcome, 1);
    let first = metrics.snapshot();
    assert_eq!(first.interval().duration_sum_ms(runner, outcome), u64::MAX);
    // The next interval starts from zero again and is exact.
    metrics.record_task_completed(runner, outcome, 7);
    let second = metrics.snapshot();
    assert_eq!(second.interval().duration_sum_ms(runner, outcome), 7);
    assert_eq!(
        second.cumulative().duration_sum_ms(runner, outcome),
        u64::MAX
    );
    assert_eq!(second.cumulative().completed(runner, outcome), 3);
}

#[test]
fn invalid_configuration_is_refused_with_the_field_value_and_range() {
    let cases: [(taskmeter::Builder, &str); 6] = [
        (
            AtomicMetrics::builder().significant_digits(0),
            "significant_digits = 0 is out of range: accepted 1 to 5",
        ),
        (
            AtomicMetrics::builder().significant_digits(6),
            "significant_digits = 6 is out of range: accepted 1 to 5",
        ),
        (
            AtomicMetrics::builder().highest_duration_ms(1),
            "highest_duration_ms = 1 is out of range: accepted 2 to 9223372036854775807",
        ),
        (
            AtomicMetrics::builder().highest_duration_ms(u64::MAX),
            "highest_duration_ms = 18446744073709551615 is out of range: accepted 2 to 9223372036854775807",
        ),
        (
            AtomicMetrics::builder().stripes(0),
            "stripes = 0 is out of range: accepted 1 to 1024",
        ),
        (
            AtomicMetrics::builder().stripes(1025),
            "stripes = 1025 is out of range: accepted 1 to 1024",
        ),
    ];
    for (builder, message) in cases {
        let error = builder.build().unwrap_err();
        assert!(matches!(error, ConfigError::OutOfRange { .. }));
        assert_eq!(error.to_string(), message);
    }
    let error = AtomicMetrics::builder()
        .significant_digits(5)
        .highest_duration_ms(i64::MAX as u64)
        .stripes(64)
        .build()
        .unwrap_err();
    assert!(
        matches!(error, ConfigError::TooMuchMemory { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("memory_limit_bytes"));
}

#[test]
fn accepted_edges_of_every_setting_build() {
    for digits in 1..=5 {
        for highest in [2, 1_000, i64::MAX as u64] {
            let metrics = AtomicMetrics::builder()
                .significant_digits(digits)
                .highest_duration_ms(highest)
                .stripes(1)
                .memory_limit_bytes(usize::MAX)
                .build();
            assert!(metrics.is_ok(), "digits {digits}, highest {highest}");
        }
    }
}

#[test]
fn memory_is_fixed_by_the_configuration() {
    // The 2-core default: three stripes, two leased (32-bit counts) and one shared (64-bit).
    let metrics = AtomicMetrics::builder().stripes(3).build().unwrap();
    // Per stripe two phases × 12 histograms × 18,432 slots, plus small change: the counters
    // and sums of 10 lanes (one per leased stripe, 8 on the shared one), 5 KiB each, the
    // 18 KiB slot-to-bucket table, and the custom labels: their 36 × 37 grid of counts (with
    // the reader's two copies, 30 KiB) and 32 names of at most 256 bytes a table (17 KiB).
    let histograms = (2 * 4 + 8) * 2 * 12 * 18_432;
    let labels = 3 * 36 * 37 * 8 + 2 * 32 * (256 + 16);
    let bytes = metrics.recording_memory_bytes();
    assert!(
        bytes >= histograms + labels && bytes < histograms + labels + 10 * 5 * 1024 + 32 * 1024,
        "{bytes}"
    );
    assert!(
        bytes <= 8 << 20,
        "the 2-core default must stay under 8 MiB: {bytes}"
    );
    // Many threads record; the recording state cannot grow (it is preallocated). A snapshot
    // holds the blocks of 64 slots written, never more than the dense layout: 3 views of 12
    // histograms of 288 blocks, each block 512 bytes of counts and a few words.
    let empty_snapshot = metrics.snapshot().memory_bytes();
    // Three views of the small arrays and the custom-label grid (35 × 35 counts by default).
    assert!(empty_snapshot < 64 * 1024, "{empty_snapshot}");
    std::thread::scope(|scope| {
        for seed in 0..16 {
            let metrics = &metrics;
            scope.spawn(move || replay(metrics, &task_mix(100, seed)));
        }
    });
    assert_eq!(metrics.recording_memory_bytes(), bytes);
    let snapshot = metrics.snapshot().memory_bytes();
    let dense_bound = 3 * 12 * 288 * (512 + 64) + 64 * 1024;
    assert!(
        snapshot > empty_snapshot && snapshot < dense_bound,
        "{snapshot}"
    );
}

proptest! {
    /// Model comparison: whatever the configuration and the values, each histogram equals one
    /// that hdrhistogram built by recording the (clamped) values itself, and every count and
    /// sum equals the plain reference.
    #[test]
    fn histograms_equal_direct_hdrhistogram_recording(
        digits in 1_u8..=3,
        highest in 2_u64..=10_000_000,
        stripes in 1_usize..=3,
        calls in prop::collection::vec(
            (0..RunnerType::COUNT, 0..TaskOutcome::COUNT, prop_oneof![
                0_u64..=100, any::<u64>(), Just(u64::MAX), Just(0)
            ]),
            0..300,
        ),
    ) {
        let metrics = AtomicMetrics::builder()
            .significant_digits(digits)
            .highest_duration_ms(highest)
            .stripes(stripes)
            .build()
            .unwrap();
        let calls: Vec<Call> = calls
            .into_iter()
            .map(|(r, o, d)| Call::Completed(RunnerType::ALL[r], TaskOutcome::ALL[o], d))
            .collect();
        let (first, second) = calls.split_at(calls.len() / 2);
        replay(&metrics, first);
        metrics.snapshot();
        replay(&metrics, second);
        let snapshot = metrics.snapshot();
        assert_view_equals(snapshot.cumulative(), &Totals::of(&calls));
        for runner in RunnerType::ALL {
            for outcome in TaskOutcome::ALL {
                let mut direct = taskmeter::Histogram::<u64>::new_with_bounds(1, highest, digits).unwrap();
                let mut clamped = 0;
                for call in &calls {
                    if let Call::Completed(r, o, d) = *call
                        && (r, o) == (runner, outcome)
                    {
                        direct.record(d.min(highest)).unwrap();
                        clamped += u64::from(d > highest);
                    }
                }
                prop_assert_eq!(snapshot.cumulative().duration(runner, outcome), &direct);
                prop_assert_eq!(snapshot.cumulative().clamped(runner, outcome), clamped);
            }
        }
    }
}

/// Errors under custom labels over several snapshots: each interval holds exactly what was
/// recorded since the previous snapshot, the cumulative view everything, the overflow too.
#[test]
fn custom_label_errors_split_into_intervals_that_add_up() {
    use taskmeter::{Label, OVERFLOW_LABEL};
    let metrics = AtomicMetrics::builder().custom_labels(1).build().unwrap();
    let custom = |label: &str| Label::Custom(label.to_owned());
    let spawn = || Label::Known(RunnerErrorKind::SpawnFailed);
    let mut cumulative = 0;
    let mut overflows = 0;
    for round in 1..=4_u64 {
        for _ in 0..round {
            metrics.record_labelled_runner_error(custom("gpu"), spawn());
            metrics.record_labelled_runner_error(custom(&format!("new-{round}")), spawn());
        }
        cumulative += round;
        overflows += round;
        let snapshot = metrics.snapshot();
        let interval: Vec<_> = snapshot.interval().labelled_errors().collect();
        assert_eq!(
            interval,
            [
                ("gpu", "spawn_failed", round),
                (OVERFLOW_LABEL, "spawn_failed", round)
            ],
            "round {round}"
        );
        assert_eq!(snapshot.interval().custom_label_overflows(), round);
        let all: Vec<_> = snapshot.cumulative().labelled_errors().collect();
        assert_eq!(
            all,
            [
                ("gpu", "spawn_failed", cumulative),
                (OVERFLOW_LABEL, "spawn_failed", cumulative)
            ]
        );
        assert_eq!(snapshot.cumulative().custom_label_overflows(), overflows);
    }
}

/// `memory_limit_bytes` bounds all the engine can hold, its read side and custom labels
/// included: 5 significant digits at the default range, whose read side could take gigabytes,
/// are refused under the default 1 GiB, and a grid of 1,024 custom labels a side counts.
#[test]
fn the_memory_limit_bounds_the_read_side_and_the_labels_too() {
    let error = AtomicMetrics::builder()
        .significant_digits(5)
        .stripes(1)
        .build()
        .unwrap_err();
    match error {
        ConfigError::TooMuchMemory { needed, limit } => {
            assert_eq!(limit, 1 << 30);
            assert!(needed > limit, "{needed}");
        }
        other => panic!("{other}"),
    }
    let bound = |labels| {
        let metrics = AtomicMetrics::builder()
            .stripes(3)
            .custom_labels(labels)
            .build()
            .unwrap();
        assert!(metrics.memory_bound_bytes() > metrics.recording_memory_bytes());
        metrics.memory_bound_bytes()
    };
    let grid = 1_028 * 1_029 * 8;
    assert!(bound(1_024) - bound(0) >= grid, "the grid's counts alone");
    let small_limit = AtomicMetrics::builder()
        .stripes(3)
        .custom_labels(1_024)
        .memory_limit_bytes(bound(0) + grid / 2)
        .build();
    assert!(matches!(
        small_limit,
        Err(ConfigError::TooMuchMemory { .. })
    ));
}
