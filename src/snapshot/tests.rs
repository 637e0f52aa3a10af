use crate::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};

/// `tasks` completions with durations spread from 0 ms to past an hour, over every label.
fn record_spread(metrics: &AtomicMetrics, tasks: u64, seed: u64) {
    for task in 0..tasks {
        let runner = RunnerType::ALL[(task % 3) as usize];
        let outcome = TaskOutcome::ALL[((task + seed) % 4) as usize];
        let duration = ((task * 7_919 + seed * 104_729) % 4_000_000) >> (task % 12);
        metrics.record_task_completed(runner, outcome, duration);
    }
}

/// Model comparison: the default buckets kept while draining equal hdrhistogram's count of
/// the same histogram's slots, in both views, through intervals recorded on several stripes
/// by several threads and through the blocks shared between snapshots.
#[test]
fn default_buckets_kept_while_draining_equal_a_scan() {
    // Leased and shared stripes both drained; 2 digits keep the slots few enough for Miri.
    for digits in [2, 3] {
        if cfg!(miri) && digits == 3 {
            continue;
        }
        check_default_buckets_kept_while_draining(digits);
    }
}

/// Every count of `actual` equals `expected`'s: started, errors, histograms, default
/// buckets, sums, clamped, labelled errors and their overflow.
fn assert_same_counts(actual: &super::View, expected: &super::View) {
    assert_eq!(actual.started, expected.started);
    assert_eq!(actual.errors, expected.errors);
    let slots = |view: &super::View| -> Vec<Vec<super::SlotCount>> {
        view.durations.iter().map(|d| d.iter().collect()).collect()
    };
    assert_eq!(slots(actual), slots(expected), "histograms differ");
    assert_eq!(actual.solti_buckets, expected.solti_buckets);
    assert_eq!(actual.sums, expected.sums);
    assert_eq!(actual.clamped, expected.clamped);
    assert_eq!(actual.labelled, expected.labelled);
    assert_eq!(actual.labelled_overflows, expected.labelled_overflows);
}

/// The window's arithmetic: subtracting a view undoes adding it, in every count, so that
/// an age bucket leaving the window takes exactly what it brought.
#[test]
#[cfg_attr(miri, ignore)]
fn subtracting_a_view_undoes_adding_it_in_every_count() {
    use crate::{Label, RunnerErrorKind};
    let metrics = AtomicMetrics::builder()
        .custom_labels(1)
        .highest_duration_ms(60_000)
        .build()
        .unwrap();
    let mut intervals = Vec::new();
    for round in 1..=2_u64 {
        for task in 0..50 * round {
            let runner = RunnerType::ALL[(task % 3) as usize];
            metrics.record_task_started(runner);
            // Some above the range, clamped.
            let duration = task * task * 40 * round;
            metrics.record_task_completed(runner, TaskOutcome::ALL[(task % 4) as usize], duration);
            metrics.record_runner_error(runner, RunnerErrorKind::SpawnFailed);
            // One custom label fits; the others overflow.
            let custom = Label::Custom(format!("runner-{}", task % (round + 1)));
            metrics
                .record_labelled_runner_error(custom, Label::Known(RunnerErrorKind::SpawnFailed));
        }
        intervals.push(metrics.snapshot().interval().clone());
    }
    let [older, newer] = &intervals[..] else {
        unreachable!()
    };
    for view in [older, newer] {
        assert!(view.clamped.iter().sum::<u64>() > 0);
        assert!(view.labelled.iter().sum::<u64>() > 0 && view.labelled_overflows > 0);
        assert!(view.solti_buckets.iter().flatten().sum::<u64>() > 0);
    }
    let mut window = super::View::empty_like(older);
    window.add(older);
    window.add(newer);
    window.subtract(older);
    assert_same_counts(&window, newer);
    window.subtract(newer);
    assert_same_counts(&window, &super::View::empty_like(older));
}

#[test]
#[cfg_attr(miri, ignore)]
fn in_flight_saturates_at_the_ends_of_i64() {
    let metrics = AtomicMetrics::new();
    let runner = RunnerType::Wasm;
    for _ in 0..2 {
        metrics.record_task_completed(runner, TaskOutcome::Success, 1);
    }
    let mut snapshot = (*metrics.snapshot()).clone();
    let at = runner.index();
    fn started(snapshot: &mut super::Snapshot, at: usize) -> &mut u64 {
        &mut std::sync::Arc::make_mut(&mut snapshot.cumulative).started[at]
    }
    *started(&mut snapshot, at) = u64::MAX;
    assert_eq!(snapshot.in_flight(runner), i64::MAX);
    *started(&mut snapshot, at) = 0;
    snapshot.untracked[at] = i64::MAX - 2;
    assert_eq!(
        snapshot.in_flight(runner),
        -i64::MAX,
        "just inside the range"
    );
    snapshot.untracked[at] = i64::MAX;
    assert_eq!(snapshot.in_flight(runner), i64::MIN);
}

#[test]
#[cfg_attr(miri, ignore)]
fn debug_shows_the_counts_and_the_snapshot_s_place() {
    let metrics = AtomicMetrics::new();
    metrics.record_task_started(RunnerType::Container);
    metrics.record_task_completed(RunnerType::Container, TaskOutcome::Failure, 70_000_000_000);
    metrics.record_runner_error(RunnerType::Wasm, crate::RunnerErrorKind::SpawnFailed);
    metrics.snapshot();
    metrics.record_task_started(RunnerType::Container);
    let snapshot = metrics.snapshot();
    let view = snapshot.cumulative();
    let completed: Vec<u64> = view.durations.iter().map(|h| h.len()).collect();
    let debug = format!("{view:?}");
    for field in [
        format!("started: {:?}", view.started),
        format!("completed: {completed:?}"),
        format!("errors: {:?}", view.errors),
        format!("clamped: {:?}", view.clamped),
    ] {
        assert!(field.contains(['1', '2']), "no count in {field}");
        assert!(debug.contains(&field), "{debug} lacks {field}");
    }
    // The views differ (2 starts in all, 1 in the interval): each is shown as itself.
    let (cumulative, interval) = (format!("{view:?}"), format!("{:?}", snapshot.interval()));
    assert_ne!(cumulative, interval);
    let debug = format!("{snapshot:?}");
    assert!(debug.starts_with("Snapshot { sequence: 2,"), "{debug}");
    assert!(
        debug.contains(&format!("cumulative: {cumulative}")),
        "{debug}"
    );
    assert!(debug.contains(&format!("interval: {interval}")), "{debug}");
}

fn check_default_buckets_kept_while_draining(digits: u8) {
    let metrics = AtomicMetrics::builder()
        .stripes(2)
        .significant_digits(digits)
        .build()
        .unwrap();
    let tasks = if cfg!(miri) { 100 } else { 2_000 };
    for round in 0..4_u64 {
        std::thread::scope(|scope| {
            for seed in 0..3 {
                let metrics = &metrics;
                scope.spawn(move || record_spread(metrics, tasks, round * 10 + seed));
            }
        });
        let snapshot = metrics.snapshot();
        for view in [snapshot.cumulative(), snapshot.interval()] {
            for (label, durations) in view.durations.iter().enumerate() {
                let histogram = durations.histogram();
                let mut low = 0;
                for (bucket, bound) in super::SOLTI_BUCKETS_SECONDS.iter().enumerate() {
                    let high = (bound * 1e3).floor() as u64;
                    let scanned = histogram.count_between(low, high);
                    low = histogram.highest_equivalent(high) + 1;
                    let kept = view.solti_buckets[label][bucket];
                    assert_eq!(kept, scanned, "round {round}, label {label}, ≤ {bound} s");
                }
            }
        }
    }
}

/// The window view follows use: not computed with a snapshot whose previous window nobody
/// read, computed by the reader when it was read; the same counts either way.
#[test]
fn the_window_is_computed_by_the_reader_only_while_windows_are_read() {
    let metrics = AtomicMetrics::new();
    record_spread(&metrics, 500, 1);
    let unread = metrics.snapshot();
    assert!(
        unread.window.computed().is_none(),
        "nobody read the previous window"
    );
    let first = assert_window_is_cumulative(&unread);
    record_spread(&metrics, 500, 2);
    let eager = metrics.snapshot();
    assert!(
        eager.window.computed().is_some(),
        "the previous window was read"
    );
    assert!(!std::sync::Arc::ptr_eq(
        eager.window.computed().unwrap(),
        &first
    ));
    assert_window_is_cumulative(&eager);
    // Nothing new: the previous window itself.
    let quiet = metrics.snapshot();
    assert!(std::sync::Arc::ptr_eq(
        quiet.window.computed().unwrap(),
        eager.window.computed().unwrap()
    ));
    // Nobody read the quiet one's (computed, shared) window: the next one is left to its
    // readers.
    record_spread(&metrics, 500, 3);
    let next = metrics.snapshot();
    assert!(next.window.computed().is_none());
    assert_window_is_cumulative(&next);
}

/// Within the first quarter of the default window, the window holds everything recorded.
fn assert_window_is_cumulative(snapshot: &super::Snapshot) -> std::sync::Arc<super::View> {
    assert_same_counts(snapshot.window(), snapshot.cumulative());
    std::sync::Arc::clone(snapshot.window.computed().expect("computed on read"))
}

/// In an engine older than its window (the oldest start holds counts), the reader grows a
/// read window by each interval between rolls: the same counts as the cumulative view less
/// the start, computed from scratch.
#[test]
fn a_window_grown_by_the_reader_equals_the_difference_from_its_start() {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    let metrics = AtomicMetrics::builder()
        .window(Duration::from_millis(40))
        .build()
        .unwrap();
    let origin = metrics.window_origin();
    let at = |ms: u64| metrics.snapshot_at(SystemTime::now(), origin + Duration::from_millis(ms));
    record_spread(&metrics, 400, 1);
    at(1);
    // Past the whole window: every bucket starts at the cumulative view of that snapshot.
    record_spread(&metrics, 400, 2);
    let aged = at(60);
    assert!(!aged.window.start().is_empty(), "the start holds counts");
    aged.window();
    for (step, ms) in [61_u64, 62, 63].into_iter().enumerate() {
        record_spread(&metrics, 300, 3 + step as u64);
        let snapshot = at(ms);
        assert!(
            snapshot.window.computed().is_some(),
            "step {step}: grown by the reader"
        );
        let from_scratch = super::View::difference(&snapshot.cumulative, snapshot.window.start());
        assert_same_counts(snapshot.window(), &from_scratch);
        assert!(Arc::ptr_eq(snapshot.window.start(), aged.window.start()));
    }
}
