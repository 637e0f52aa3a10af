//! taskmeter on today's solti SDK (`--features solti`): solti-runner 0.0.8's `BuildContext`
//! with taskmeter's handle, taskvisor 0.9 supervisors with taskmeter's subscriber, lost events,
//! and the exposition side by side with solti-prometheus 0.0.8's two adapters.
#![cfg(all(feature = "solti", not(loom)))]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_parse::{Scrape, Value};
use solti_runner::{BuildContext, MetricsHandle, RunnerEnv};
use taskmeter::solti::TaskvisorMetrics;
use taskmeter::{AtomicMetrics, RunnerErrorKind, RunnerType, Snapshot, TaskOutcome};
use taskvisor::{Event, EventKind, Subscribe, TaskId, TaskOutcomeKind};

const RUNNER: RunnerType = RunnerType::Subprocess;

/// Runner errors from several threads through a `BuildContext`, built-in and custom labels
/// mixed: every call counted once, under its label.
#[test]
fn runners_record_errors_through_a_build_context_with_custom_labels() {
    let metrics = Arc::new(AtomicMetrics::new());
    let ctx = BuildContext::new(RunnerEnv::new(), metrics.solti_handle());
    let runners = [
        solti_runner::RunnerType::Subprocess,
        solti_runner::RunnerType::Wasm,
        solti_runner::RunnerType::Custom("image-resize".into()),
        solti_runner::RunnerType::Custom("gpu".into()),
    ];
    let kinds = [
        solti_runner::RunnerErrorKind::SpawnFailed,
        solti_runner::RunnerErrorKind::Custom("runtime_unavailable".into()),
    ];
    let threads = 4;
    let calls_per_pair = 250;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let ctx = ctx.clone();
            let (runners, kinds) = (runners.clone(), kinds.clone());
            scope.spawn(move || {
                for _ in 0..calls_per_pair {
                    for runner in &runners {
                        for kind in &kinds {
                            ctx.metrics()
                                .record_runner_error(runner.clone(), kind.clone());
                        }
                    }
                }
            });
        }
    });
    let snapshot = metrics.snapshot();
    let view = snapshot.cumulative();
    let each = threads * calls_per_pair;
    assert_eq!(
        view.errors(RunnerType::Subprocess, RunnerErrorKind::SpawnFailed),
        each
    );
    assert_eq!(
        view.errors(RunnerType::Wasm, RunnerErrorKind::SpawnFailed),
        each
    );
    let labelled: BTreeMap<(String, String), u64> = view
        .labelled_errors()
        .map(|(r, k, n)| ((r.to_owned(), k.to_owned()), n))
        .collect();
    let expected: BTreeMap<(String, String), u64> = [
        ("subprocess", "runtime_unavailable"),
        ("wasm", "runtime_unavailable"),
        ("image-resize", "spawn_failed"),
        ("image-resize", "runtime_unavailable"),
        ("gpu", "spawn_failed"),
        ("gpu", "runtime_unavailable"),
    ]
    .into_iter()
    .map(|(r, k)| ((r.to_owned(), k.to_owned()), each))
    .collect();
    assert_eq!(labelled, expected);
    assert_eq!(view.custom_label_overflows(), 0);
}

#[test]
fn custom_labels_past_the_capacity_are_counted_under_the_overflow_label() {
    let metrics = Arc::new(AtomicMetrics::builder().custom_labels(2).build().unwrap());
    let handle = metrics.solti_handle();
    for runner in ["a", "b", "c", "d", "a"] {
        handle.record_runner_error(
            solti_runner::RunnerType::Custom(runner.into()),
            solti_runner::RunnerErrorKind::SpawnFailed,
        );
    }
    let snapshot = metrics.snapshot();
    let labelled: Vec<_> = snapshot.cumulative().labelled_errors().collect();
    assert_eq!(
        labelled,
        [
            ("a", "spawn_failed", 2),
            ("b", "spawn_failed", 1),
            (taskmeter::OVERFLOW_LABEL, "spawn_failed", 2)
        ]
    );
    assert_eq!(snapshot.cumulative().custom_label_overflows(), 2);
    let text = snapshot.to_prometheus();
    assert!(text.contains("solti_runner_custom_label_overflows_total 2\n"));
    assert!(
        text.contains("solti_runner_errors_total{runner=\"_overflow\",error=\"spawn_failed\"} 2\n")
    );
}

/// Events as taskvisor sends them, for a task `id`.
fn attempt(kind: EventKind, id: TaskId, attempt: u32, duration_ms: u64) -> Event {
    let event = Event::new(kind)
        .with_task("task")
        .with_id(id)
        .with_attempt(attempt);
    if kind == EventKind::AttemptStarting {
        event
    } else {
        event.with_duration(Duration::from_millis(duration_ms))
    }
}

fn finished(id: TaskId, outcome: TaskOutcomeKind) -> Event {
    Event::new(EventKind::TaskFinished)
        .with_task("task")
        .with_id(id)
        .with_outcome_kind(outcome)
}

fn overflow(subscriber: &str, dropped: u64) -> Event {
    Event::subscriber_overflow(subscriber.to_owned(), "full").with_dropped(dropped)
}

fn completed(snapshot: &Snapshot, outcome: TaskOutcome) -> u64 {
    snapshot.cumulative().completed(RUNNER, outcome)
}

#[test]
fn attempts_are_recorded_as_tasks_with_their_outcomes_and_durations() {
    let metrics = Arc::new(AtomicMetrics::new());
    let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics));
    let outcomes = [
        (EventKind::AttemptSucceeded, TaskOutcome::Success, 40),
        (EventKind::AttemptFailed, TaskOutcome::Failure, 50),
        (EventKind::AttemptTimedOut, TaskOutcome::Timeout, 60),
        (EventKind::AttemptCanceled, TaskOutcome::Canceled, 70),
    ];
    for (kind, _, duration) in outcomes {
        let id = TaskId::for_tests();
        subscriber.on_event(&attempt(EventKind::AttemptStarting, id, 1, 0));
        assert_eq!(metrics.snapshot().in_flight(RUNNER), 1);
        subscriber.on_event(&attempt(kind, id, 1, duration));
    }
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.cumulative().started(RUNNER), 4);
    for (_, outcome, duration) in outcomes {
        assert_eq!(completed(&snapshot, outcome), 1, "{outcome:?}");
        let histogram = snapshot.cumulative().duration(RUNNER, outcome);
        assert_eq!((histogram.min(), histogram.max()), (duration, duration));
    }
    assert_eq!(snapshot.in_flight(RUNNER), 0);
}

/// The ways events go missing, each alone: in-flight is exact after each, never negative.
#[test]
fn in_flight_stays_exact_when_events_are_lost() {
    let metrics = Arc::new(AtomicMetrics::new());
    let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics));
    let in_flight = || metrics.snapshot().in_flight(RUNNER);
    let send = |event: Event| subscriber.on_event(&event);

    // A lost close, repaired when the task finishes.
    let a = TaskId::for_tests();
    send(attempt(EventKind::AttemptStarting, a, 1, 0));
    send(finished(a, TaskOutcomeKind::Completed));
    assert_eq!(in_flight(), 0);

    // A lost close, repaired by the task's next attempt.
    let b = TaskId::for_tests();
    send(attempt(EventKind::AttemptStarting, b, 1, 0));
    send(attempt(EventKind::AttemptStarting, b, 2, 0));
    assert_eq!(in_flight(), 1);
    send(attempt(EventKind::AttemptFailed, b, 2, 5));
    send(finished(b, TaskOutcomeKind::Failed));
    assert_eq!(in_flight(), 0);

    // A lost open: the close records the start it implies.
    let c = TaskId::for_tests();
    send(attempt(EventKind::AttemptSucceeded, c, 1, 9));
    assert_eq!(in_flight(), 0);

    // Panicked and force-aborted tasks end their attempt with no attempt event.
    for outcome in [TaskOutcomeKind::Panicked, TaskOutcomeKind::ForceAborted] {
        let d = TaskId::for_tests();
        send(attempt(EventKind::AttemptStarting, d, 1, 0));
        send(finished(d, outcome));
        assert_eq!(in_flight(), 0);
    }

    // An overflow of this subscriber's queue: open attempts leave in-flight; a close that
    // arrives later is recorded once, and in-flight does not go below zero.
    let (e, f) = (TaskId::for_tests(), TaskId::for_tests());
    send(attempt(EventKind::AttemptStarting, e, 1, 0));
    send(attempt(EventKind::AttemptStarting, f, 1, 0));
    send(overflow(taskmeter::solti::TASKVISOR_SUBSCRIBER_NAME, 3));
    assert_eq!(in_flight(), 0);
    send(attempt(EventKind::AttemptSucceeded, e, 1, 11));
    assert_eq!(in_flight(), 0);
    send(finished(f, TaskOutcomeKind::Completed)); // f's close was among the lost
    assert_eq!(in_flight(), 0);
    // Another subscriber's overflow is not ours.
    let g = TaskId::for_tests();
    send(attempt(EventKind::AttemptStarting, g, 1, 0));
    send(overflow("someone-else", 1));
    assert_eq!(in_flight(), 1);
    send(attempt(EventKind::AttemptSucceeded, g, 1, 1));

    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.in_flight(RUNNER), 0);
    // Completions only for the closes that arrived, and the two tasks that ended without one.
    assert_eq!(completed(&snapshot, TaskOutcome::Success), 3); // c, e, g
    assert_eq!(completed(&snapshot, TaskOutcome::Failure), 2); // b's second, the panic
    assert_eq!(completed(&snapshot, TaskOutcome::Canceled), 1); // the forced abort
    // Starts: a, b twice, c (repaired), d twice, e, f, g.
    assert_eq!(snapshot.cumulative().started(RUNNER), 9);
    let text = snapshot.to_prometheus();
    assert!(
        text.contains("solti_taskvisor_lost_attempt_closes_total 3\n"),
        "a, b's first, f"
    );
    assert!(text.contains("solti_taskvisor_repaired_attempt_opens_total 1\n"));
    assert!(text.contains("solti_taskvisor_subscriber_overflows_total 4\n"));
    assert!(text.contains("solti_taskvisor_attempts_in_flight 0\n"));
}

/// Model comparison: tasks run attempts; the event stream loses events at random, each loss
/// reported afterwards by an overflow event, as taskvisor does, and delivers some twice. At every step in-flight is at
/// least 0, and at most the attempts truly open whenever every loss so far was reported (a
/// lost close counts until then); once every task has finished it is 0, and the completions
/// recorded are exactly the closes delivered.
#[test]
fn in_flight_follows_a_model_through_random_losses() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    // The default attempt table, and tables smaller than the tasks open at once, which count
    // the attempts past them by runner and forget suspects.
    let capacities = [taskmeter::solti::DEFAULT_ATTEMPT_CAPACITY.get(), 3, 1];
    for round in 0..30 {
        let capacity = std::num::NonZeroUsize::new(capacities[round % capacities.len()]).unwrap();
        let metrics = Arc::new(AtomicMetrics::new());
        let subscriber =
            TaskvisorMetrics::new(Arc::clone(&metrics)).with_attempt_capacity(capacity);
        // Per task: its id, its current attempt and whether it is open.
        let mut tasks: Vec<(TaskId, u32, bool)> =
            (0..8).map(|_| (TaskId::for_tests(), 0, false)).collect();
        let mut finished_tasks: HashMap<usize, ()> = HashMap::new();
        let mut delivered_closes = 0;
        let (mut delivered_starts, mut duplicated) = (0, 0);
        let mut lost_since_report = 0;
        for _ in 0..400 {
            let task = random(tasks.len() as u64) as usize;
            if finished_tasks.contains_key(&task) {
                continue;
            }
            let (id, attempt_no, open) = tasks[task];
            let (event, closes) = if !open {
                tasks[task] = (id, attempt_no + 1, true);
                (
                    attempt(EventKind::AttemptStarting, id, attempt_no + 1, 0),
                    false,
                )
            } else if random(5) == 0 {
                tasks[task].2 = false;
                finished_tasks.insert(task, ());
                (finished(id, TaskOutcomeKind::Completed), false)
            } else {
                tasks[task].2 = false;
                let kind =
                    [EventKind::AttemptSucceeded, EventKind::AttemptFailed][random(2) as usize];
                (attempt(kind, id, attempt_no, random(100)), true)
            };
            if random(6) == 0 {
                lost_since_report += 1; // dropped
            } else {
                subscriber.on_event(&event);
                delivered_closes += u64::from(closes);
                delivered_starts += u64::from(event.kind == EventKind::AttemptStarting);
                if random(8) == 0 {
                    subscriber.on_event(&event); // delivered twice: counted once
                    duplicated += 1;
                }
            }
            if lost_since_report > 0 && random(3) == 0 {
                subscriber.on_event(&overflow(
                    taskmeter::solti::TASKVISOR_SUBSCRIBER_NAME,
                    lost_since_report,
                ));
                lost_since_report = 0;
            }
            let in_flight = metrics.snapshot().in_flight(RUNNER);
            let truly_open = tasks.iter().filter(|t| t.2).count() as i64;
            assert!(in_flight >= 0, "round {round}: {in_flight}");
            if lost_since_report == 0 {
                assert!(
                    in_flight <= truly_open,
                    "round {round}: {in_flight} of {truly_open}"
                );
            }
        }
        // Every task finishes; the last losses are reported.
        for (task, &(id, _, _)) in tasks.iter().enumerate() {
            if !finished_tasks.contains_key(&task) {
                subscriber.on_event(&finished(id, TaskOutcomeKind::Completed));
            }
        }
        if lost_since_report > 0 {
            subscriber.on_event(&overflow(
                taskmeter::solti::TASKVISOR_SUBSCRIBER_NAME,
                lost_since_report,
            ));
        }
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.in_flight(RUNNER), 0, "round {round}");
        let recorded =
            completed(&snapshot, TaskOutcome::Success) + completed(&snapshot, TaskOutcome::Failure);
        assert_eq!(recorded, delivered_closes, "round {round}");
        // Every repeat recognised; every start counted once, plus those repaired at a close.
        assert_eq!(
            taskvisor_counter(&metrics, "duplicate_attempt_events_total"),
            duplicated,
            "round {round}"
        );
        let repaired = taskvisor_counter(&metrics, "repaired_attempt_opens_total");
        assert_eq!(
            snapshot.cumulative().started(RUNNER),
            delivered_starts + repaired,
            "round {round}"
        );
    }
}

/// A real taskvisor supervisor runs tasks that succeed, fail, time out and are canceled, with
/// taskmeter's subscriber registered: the snapshot's counts are exact.
#[test]
fn a_real_supervisor_feeds_the_engine() {
    use taskvisor::{
        Supervisor, SupervisorConfig, TaskContext, TaskError, TaskFn, TaskRef, TaskSpec,
    };

    let metrics = Arc::new(AtomicMetrics::new());
    let subscriber = Arc::new(TaskvisorMetrics::new(Arc::clone(&metrics)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let supervisor = Supervisor::new(
            SupervisorConfig::default(),
            vec![Arc::clone(&subscriber) as Arc<dyn Subscribe>],
        );
        let ok: TaskRef = TaskFn::arc(|_ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        });
        let fail: TaskRef = TaskFn::arc(|_ctx: TaskContext| async move {
            Err(TaskError::fail("boom").with_exit_code(7))
        });
        let slow: TaskRef = TaskFn::arc(|_ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        let canceled: TaskRef =
            TaskFn::arc(|_ctx: TaskContext| async move { Err(TaskError::Canceled) });
        let mut specs = Vec::new();
        for n in 0..3 {
            specs.push(TaskSpec::once(format!("ok-{n}"), Arc::clone(&ok)));
        }
        specs.push(TaskSpec::once("fail", fail));
        specs.push(TaskSpec::once("slow", slow).with_timeout(Duration::from_millis(50)));
        specs.push(TaskSpec::once("canceled", canceled));
        supervisor.run(specs).await.unwrap();
    });
    // `run` drains the subscriber's queue before it returns.
    let snapshot = metrics.snapshot();
    let view = snapshot.cumulative();
    assert_eq!(view.started(RUNNER), 6);
    assert_eq!(view.completed(RUNNER, TaskOutcome::Success), 3);
    assert_eq!(view.completed(RUNNER, TaskOutcome::Failure), 1);
    assert_eq!(view.completed(RUNNER, TaskOutcome::Timeout), 1);
    assert_eq!(view.completed(RUNNER, TaskOutcome::Canceled), 1);
    assert!(view.duration(RUNNER, TaskOutcome::Success).min() >= 20);
    assert!(view.duration(RUNNER, TaskOutcome::Timeout).min() >= 50);
    assert_eq!(snapshot.in_flight(RUNNER), 0);
    let text = snapshot.to_prometheus();
    assert!(
        text.contains(
            "solti_taskvisor_task_final_outcomes_total{outcome=\"outcome_completed\"} 3\n"
        ),
        "{text}"
    );
    assert!(text.contains("solti_taskvisor_attempt_timeouts_total 1\n"));
}

/// `# HELP` and `# TYPE` of every family, and every sample, of a Prometheus text exposition.
struct Exposition {
    families: BTreeMap<String, (String, String)>,
    samples: BTreeMap<(String, String), f64>,
}

fn exposition(text: &str) -> Exposition {
    let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            families.entry(name.to_owned()).or_default().0 = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.to_owned()).or_default().1 = kind.to_owned();
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut samples = BTreeMap::new();
    for sample in scrape.samples {
        let labels = sample.labels.to_string();
        match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                samples.insert((sample.metric, labels), v);
            }
            Value::Histogram(buckets) => {
                for bucket in buckets {
                    samples.insert(
                        (
                            format!("{}_bucket", sample.metric),
                            format!("{labels},le={}", bucket.less_than),
                        ),
                        bucket.count,
                    );
                }
            }
            Value::Summary(_) => {}
        }
    }
    Exposition { families, samples }
}

/// The same runner errors and events into solti-prometheus 0.0.8's two adapters and into
/// taskmeter: every family they export is in taskmeter's, with the same name, type and HELP,
/// and every sample they export has the same labels and value in taskmeter's.
#[test]
fn the_exposition_matches_solti_prometheus_family_by_family() {
    let registry = solti_prometheus::Registry::new();
    let theirs_runner: MetricsHandle =
        Arc::new(solti_prometheus::PrometheusRunnerMetrics::new(&registry).unwrap());
    let theirs_events = solti_prometheus::PrometheusTaskvisorSubscriber::new(&registry).unwrap();
    let metrics = Arc::new(AtomicMetrics::new());
    let ours_runner = metrics.solti_handle();
    let ours_events = TaskvisorMetrics::new(Arc::clone(&metrics));

    for handle in [&theirs_runner, &ours_runner] {
        handle.record_runner_error(
            solti_runner::RunnerType::Container,
            solti_runner::RunnerErrorKind::SpawnFailed,
        );
        handle.record_runner_error(
            solti_runner::RunnerType::Custom("image-resize".into()),
            solti_runner::RunnerErrorKind::Custom("runtime_unavailable".into()),
        );
    }
    let (a, b, c) = (
        TaskId::for_tests(),
        TaskId::for_tests(),
        TaskId::for_tests(),
    );
    let at = SystemTime::now();
    let events = [
        attempt(EventKind::AttemptStarting, a, 1, 0),
        attempt(EventKind::AttemptFailed, a, 1, 30),
        Event::new(EventKind::BackoffScheduled)
            .with_backoff_failure()
            .with_task("task")
            .with_id(a)
            .with_attempt(1)
            .with_delay(Duration::from_millis(150)),
        attempt(EventKind::AttemptStarting, a, 2, 0),
        attempt(EventKind::AttemptSucceeded, a, 2, 20),
        finished(a, TaskOutcomeKind::Completed),
        attempt(EventKind::AttemptStarting, b, 1, 0),
        attempt(EventKind::AttemptTimedOut, b, 1, 50).with_timeout(Duration::from_millis(50)),
        finished(b, TaskOutcomeKind::Failed),
        attempt(EventKind::AttemptStarting, c, 1, 0),
        Event::subscriber_panicked("other", "boom"),
        Event::runtime_failure("registry", "oops"),
        Event::ownership_capacity_retired(8, 6, 2),
    ];
    for event in &events {
        assert!(event.at >= at);
        theirs_events.on_event(event);
        ours_events.on_event(event);
    }

    let mut theirs_text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut theirs_text)
        .unwrap();
    let theirs = exposition(&theirs_text);
    let ours = exposition(&metrics.snapshot().to_prometheus());
    assert!(theirs.families.len() >= 12, "{:?}", theirs.families.keys());
    for (family, (help, kind)) in &theirs.families {
        let Some((our_help, our_kind)) = ours.families.get(family) else {
            panic!("{family} is missing from taskmeter's exposition");
        };
        assert_eq!((our_help, our_kind), (help, kind), "{family}");
    }
    assert!(theirs.samples.len() >= 20);
    for ((metric, labels), value) in &theirs.samples {
        let ours = ours.samples.get(&(metric.clone(), labels.clone()));
        assert_eq!(ours, Some(value), "{metric}{{{labels}}}");
    }
    // taskmeter's additions: the attempts as tasks, with their durations.
    let snapshot = metrics.latest();
    assert_eq!(snapshot.cumulative().started(RUNNER), 4);
    assert_eq!(snapshot.in_flight(RUNNER), 1);
    assert_eq!(
        snapshot
            .cumulative()
            .duration(RUNNER, TaskOutcome::Timeout)
            .max(),
        50
    );
}

/// An event delivered twice (a close, a start, a task's end) counts once, and is counted as a
/// duplicate.
#[test]
fn a_duplicated_event_counts_once() {
    let metrics = Arc::new(AtomicMetrics::new());
    let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics));
    let id = TaskId::for_tests();
    let start = attempt(EventKind::AttemptStarting, id, 1, 0);
    let close = attempt(EventKind::AttemptSucceeded, id, 1, 30);
    let end = finished(id, TaskOutcomeKind::Completed);
    for event in [&start, &start, &close, &close, &start, &end, &end] {
        subscriber.on_event(event);
    }
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.cumulative().started(RUNNER), 1);
    assert_eq!(completed(&snapshot, TaskOutcome::Success), 1);
    assert_eq!(snapshot.in_flight(RUNNER), 0);
    let text = snapshot.to_prometheus();
    assert!(text.contains("solti_taskvisor_duplicate_attempt_events_total 4\n"));
    assert!(
        text.contains(
            "solti_taskvisor_task_final_outcomes_total{outcome=\"outcome_completed\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains("solti_taskvisor_repaired_attempt_opens_total 0\n"));
}

/// Two subscribers on one engine (two supervisors): the in-flight gauge is the sum of both,
/// and a dropped subscriber takes its attempts out of it.
#[test]
fn several_subscribers_on_one_engine_each_count_their_own_attempts() {
    let metrics = Arc::new(AtomicMetrics::new());
    let first = TaskvisorMetrics::new(Arc::clone(&metrics));
    let second = TaskvisorMetrics::new(Arc::clone(&metrics));
    for _ in 0..6 {
        first.on_event(&attempt(
            EventKind::AttemptStarting,
            TaskId::for_tests(),
            1,
            0,
        ));
    }
    let last = TaskId::for_tests();
    second.on_event(&attempt(EventKind::AttemptStarting, last, 1, 0));
    let gauge = |metrics: &AtomicMetrics| {
        let text = metrics.snapshot().to_prometheus();
        let line = text
            .lines()
            .find(|line| line.starts_with("solti_taskvisor_attempts_in_flight "))
            .expect("the gauge")
            .to_owned();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    assert_eq!(gauge(&metrics), 7);
    second.on_event(&attempt(EventKind::AttemptSucceeded, last, 1, 5));
    assert_eq!(gauge(&metrics), 6);
    second.on_event(&attempt(
        EventKind::AttemptStarting,
        TaskId::for_tests(),
        1,
        0,
    ));
    assert_eq!(gauge(&metrics), 7);
    drop(second);
    assert_eq!(gauge(&metrics), 6);
    // Its open attempt's close can no longer arrive: out of the engine's in-flight too.
    assert_eq!(metrics.snapshot().in_flight(RUNNER), 6);
}

/// Past the attempt table's bound, attempts are recorded and kept out of in-flight (too few,
/// never too many), counted as forgotten; each close ends one of them, without a second start.
/// Suspects are forgotten first.
#[test]
fn attempts_past_the_capacity_are_counted_and_suspects_are_forgotten_first() {
    use std::num::NonZeroUsize;
    let metrics = Arc::new(AtomicMetrics::new());
    let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics))
        .with_attempt_capacity(NonZeroUsize::new(4).unwrap());
    let in_flight = || metrics.snapshot().in_flight(RUNNER);
    let ids: Vec<TaskId> = (0..10).map(|_| TaskId::for_tests()).collect();
    for &id in &ids {
        subscriber.on_event(&attempt(EventKind::AttemptStarting, id, 1, 0));
    }
    assert_eq!(in_flight(), 4);
    let text = metrics.snapshot().to_prometheus();
    assert!(
        text.contains("solti_taskvisor_forgotten_attempts_total 6\n"),
        "{text}"
    );
    for &id in &ids {
        subscriber.on_event(&attempt(EventKind::AttemptFailed, id, 1, 7));
    }
    assert_eq!(in_flight(), 0);
    let snapshot = metrics.snapshot();
    assert_eq!(completed(&snapshot, TaskOutcome::Failure), 10);
    assert_eq!(snapshot.cumulative().started(RUNNER), 10);
    assert!(
        snapshot
            .to_prometheus()
            .contains("solti_taskvisor_repaired_attempt_opens_total 0\n")
    );

    // Three attempts open, an overflow makes them suspect, their closes are lost; new tasks
    // fill the table: the suspects are forgotten, counted, and in-flight holds the new ones.
    let lost: Vec<TaskId> = (0..3).map(|_| TaskId::for_tests()).collect();
    for &id in &lost {
        subscriber.on_event(&attempt(EventKind::AttemptStarting, id, 1, 0));
    }
    subscriber.on_event(&overflow(taskmeter::solti::TASKVISOR_SUBSCRIBER_NAME, 3));
    let text = metrics.snapshot().to_prometheus();
    assert!(
        text.contains("solti_taskvisor_suspect_attempts 3\n"),
        "{text}"
    );
    for _ in 0..2 {
        subscriber.on_event(&attempt(
            EventKind::AttemptStarting,
            TaskId::for_tests(),
            1,
            0,
        ));
    }
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.in_flight(RUNNER), 2);
    let text = snapshot.to_prometheus();
    assert!(
        text.contains("solti_taskvisor_suspect_attempts 0\n"),
        "{text}"
    );
    assert!(
        text.contains("solti_taskvisor_forgotten_attempts_total 9\n"),
        "{text}"
    );
    // A forgotten suspect's late close is its runner's: recorded, and no second start.
    subscriber.on_event(&attempt(EventKind::AttemptSucceeded, lost[0], 1, 3));
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.in_flight(RUNNER), 2);
    assert_eq!(snapshot.cumulative().started(RUNNER), 15);
    assert_eq!(completed(&snapshot, TaskOutcome::Success), 1);
    let text = snapshot.to_prometheus();
    assert!(text.contains("solti_taskvisor_repaired_attempt_opens_total 0\n"));
}

/// A counter of the taskvisor families, by its name after `solti_taskvisor_`.
fn taskvisor_counter(metrics: &AtomicMetrics, family: &str) -> u64 {
    let text = metrics.snapshot().to_prometheus();
    let prefix = format!("solti_taskvisor_{family} ");
    let line = text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{family} in:\n{text}"));
    line[prefix.len()..].parse().unwrap()
}

/// Repeats the table no longer holds as open, and events older than their task's attempt:
/// each counted once, as a duplicate.
#[test]
fn repeats_of_suspect_untracked_and_older_attempts_count_once() {
    use std::num::NonZeroUsize;
    let metrics = Arc::new(AtomicMetrics::new());
    let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics))
        .with_attempt_capacity(NonZeroUsize::new(1).unwrap());
    let send = |event: Event| subscriber.on_event(&event);
    let started = || metrics.snapshot().cumulative().started(RUNNER);

    // A start repeated after an overflow made its attempt suspect.
    let a = TaskId::for_tests();
    send(attempt(EventKind::AttemptStarting, a, 1, 0));
    send(overflow(taskmeter::solti::TASKVISOR_SUBSCRIBER_NAME, 1));
    send(attempt(EventKind::AttemptStarting, a, 1, 0));
    assert_eq!(started(), 1);
    assert_eq!(
        taskvisor_counter(&metrics, "duplicate_attempt_events_total"),
        1
    );
    // Its task panics: the suspect attempt's completion is recorded.
    send(finished(a, TaskOutcomeKind::Panicked));
    assert_eq!(completed(&metrics.snapshot(), TaskOutcome::Failure), 1);
    assert_eq!(metrics.snapshot().in_flight(RUNNER), 0);

    // A start past the table's bound, repeated.
    let (b, c) = (TaskId::for_tests(), TaskId::for_tests());
    send(attempt(EventKind::AttemptStarting, b, 1, 0));
    send(attempt(EventKind::AttemptStarting, c, 1, 0)); // the table holds b
    send(attempt(EventKind::AttemptStarting, c, 1, 0));
    assert_eq!(started(), 3);
    assert_eq!(
        taskvisor_counter(&metrics, "duplicate_attempt_events_total"),
        2
    );
    send(attempt(EventKind::AttemptSucceeded, b, 1, 4));
    send(attempt(EventKind::AttemptSucceeded, c, 1, 4));
    assert_eq!(metrics.snapshot().in_flight(RUNNER), 0);
    assert_eq!(completed(&metrics.snapshot(), TaskOutcome::Success), 2);

    // A close of an earlier attempt arriving after the next one started, long after the
    // recent events forgot it: ignored, the open attempt stays open.
    let d = TaskId::for_tests();
    send(attempt(EventKind::AttemptStarting, d, 1, 0));
    send(attempt(EventKind::AttemptFailed, d, 1, 2));
    for _ in 0..5_000 {
        let other = TaskId::for_tests();
        send(finished(other, TaskOutcomeKind::Completed));
    }
    send(attempt(EventKind::AttemptStarting, d, 2, 0));
    send(attempt(EventKind::AttemptFailed, d, 1, 2));
    assert_eq!(metrics.snapshot().in_flight(RUNNER), 1);
    send(attempt(EventKind::AttemptSucceeded, d, 2, 2));
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.in_flight(RUNNER), 0);
    assert_eq!(snapshot.cumulative().started(RUNNER), 5);
    assert_eq!(completed(&snapshot, TaskOutcome::Failure), 2); // a's panic, d's first
    assert_eq!(completed(&snapshot, TaskOutcome::Success), 3);
    assert_eq!(
        taskvisor_counter(&metrics, "duplicate_attempt_events_total"),
        3
    );
    assert_eq!(
        taskvisor_counter(&metrics, "repaired_attempt_opens_total"),
        0
    );
}
