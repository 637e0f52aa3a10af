//! taskmeter inside real solti 0.0.2 runners (`--features solti-0-0-2`), and side by side with
//! solti-prometheus 0.0.2, the backend it replaces.
#![cfg(all(feature = "solti-0-0-2", not(loom)))]

use std::collections::BTreeSet;
use std::sync::Arc;

use prometheus_parse::{Scrape, Value};
use solti_prometheus_0_0_2 as solti_prometheus;
use solti_runner_0_0_2 as solti_runner;
use solti_runner_0_0_2::{BuildContext, MetricsHandle};
use taskmeter::AtomicMetrics;
use taskmeter::export::ExportConfig;
use taskmeter::solti_0_0_2::{error_kind_from_solti, outcome_from_solti, runner_from_solti};
use taskmeter_workload::{Call, Totals, task_mix};

const RUNNERS: [solti_runner::RunnerType; 3] = [
    solti_runner::RunnerType::Subprocess,
    solti_runner::RunnerType::Container,
    solti_runner::RunnerType::Wasm,
];
const OUTCOMES: [solti_runner::TaskOutcome; 4] = [
    solti_runner::TaskOutcome::Success,
    solti_runner::TaskOutcome::Failure,
    solti_runner::TaskOutcome::Canceled,
    solti_runner::TaskOutcome::Timeout,
];
const KINDS: [solti_runner::RunnerErrorKind; 4] = [
    solti_runner::RunnerErrorKind::CgroupPrepareFailed,
    solti_runner::RunnerErrorKind::BackendConfigFailed,
    solti_runner::RunnerErrorKind::SpawnFailed,
    solti_runner::RunnerErrorKind::ModuleLoadFailed,
];

#[test]
fn every_upstream_variant_maps_to_the_same_label() {
    for runner in RUNNERS {
        assert_eq!(runner_from_solti(runner).as_label(), runner.as_label());
    }
    for outcome in OUTCOMES {
        assert_eq!(outcome_from_solti(outcome).as_label(), outcome.as_label());
    }
    for kind in KINDS {
        assert_eq!(error_kind_from_solti(kind).as_label(), kind.as_label());
    }
}

/// Our workload's calls, in upstream types.
fn to_upstream(call: Call) -> impl Fn(&MetricsHandle) {
    let runner = |r: taskmeter::RunnerType| RUNNERS[r.index()];
    move |handle: &MetricsHandle| match call {
        Call::Started(r) => handle.record_task_started(runner(r)),
        Call::Completed(r, o, d) => handle.record_task_completed(runner(r), OUTCOMES[o.index()], d),
        Call::Error(r, k) => handle.record_runner_error(runner(r), KINDS[k.index()]),
    }
}

#[test]
fn runners_record_through_a_build_context_from_many_threads() {
    let metrics = Arc::new(AtomicMetrics::new());
    let ctx = BuildContext::default().with_metrics(metrics.solti_0_0_2_handle());
    let lists: Vec<Vec<Call>> = (0..4).map(|seed| task_mix(5_000, seed)).collect();
    std::thread::scope(|scope| {
        for calls in &lists {
            let ctx = ctx.clone();
            scope.spawn(move || {
                for &call in calls {
                    to_upstream(call)(ctx.metrics());
                }
            });
        }
    });
    let mut expected = Totals::default();
    for calls in &lists {
        expected.add(calls);
    }
    let snapshot = metrics.snapshot();
    // Every count, sum and error equal to the calls made.
    assert_eq!(expected.first_difference(snapshot.cumulative()), None);
    for runner in taskmeter::RunnerType::ALL {
        for kind in taskmeter::RunnerErrorKind::ALL {
            assert_eq!(
                snapshot.cumulative().errors(runner, kind),
                expected.errors(runner, kind)
            );
        }
        for outcome in taskmeter::TaskOutcome::ALL {
            assert_eq!(
                u128::from(snapshot.cumulative().duration_sum_ms(runner, outcome)),
                expected.duration_sum_ms(runner, outcome)
            );
        }
    }
    let text = snapshot.to_prometheus();
    let started = expected.started(taskmeter::RunnerType::Wasm);
    assert!(text.contains(&format!(
        "solti_runner_tasks_started_total{{runner=\"wasm\"}} {started}\n"
    )));
}

#[test]
fn prometheus_output_matches_solti_prometheus() {
    let theirs = Arc::new(solti_prometheus::PrometheusMetrics::new_isolated().unwrap());
    let ours = Arc::new(AtomicMetrics::new());
    let handles: [MetricsHandle; 2] = [theirs.clone(), ours.solti_0_0_2_handle()];
    let calls = task_mix(20_000, 42);
    for &call in &calls {
        for handle in &handles {
            to_upstream(call)(handle);
        }
    }
    let mut their_text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&theirs.gather(), &mut their_text)
        .unwrap();
    let our_text = ours.snapshot().to_prometheus();
    let parse = |text: &str| Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let (their_scrape, our_scrape) = (parse(&their_text), parse(&our_text));

    // Same HELP text for every family they have.
    for (family, help) in &their_scrape.docs {
        assert_eq!(our_scrape.docs.get(family), Some(help), "HELP of {family}");
    }
    let mut compared = 0;
    for sample in &their_scrape.samples {
        let mine = our_scrape
            .samples
            .iter()
            .find(|s| s.metric == sample.metric && s.labels == sample.labels)
            .unwrap_or_else(|| panic!("taskmeter lacks {}{{{}}}", sample.metric, sample.labels));
        match (&sample.value, &mine.value) {
            (Value::Counter(a), Value::Counter(b)) => assert_eq!(a, b, "{}", sample.metric),
            (Value::Untyped(a), Value::Untyped(b)) => {
                // `_sum` and `_count`: exact, up to float printing.
                assert!(
                    (a - b).abs() <= a.abs() * 1e-9,
                    "{}{{{}}}: {a} vs {b}",
                    sample.metric,
                    sample.labels
                );
            }
            (Value::Histogram(a), Value::Histogram(b)) => {
                assert_eq!(a.len(), b.len());
                let durations: Vec<u64> = calls
                    .iter()
                    .filter_map(|call| match *call {
                        Call::Completed(r, o, d)
                            if r.as_label() == sample.labels.get("runner").unwrap()
                                && o.as_label() == sample.labels.get("outcome").unwrap() =>
                        {
                            Some(d)
                        }
                        _ => None,
                    })
                    .collect();
                for (theirs, ours) in a.iter().zip(b) {
                    assert_eq!(theirs.less_than, ours.less_than);
                    // Equal, but for completions within one HDR slot (0.1 %) above the bound.
                    let bound_ms = theirs.less_than * 1e3;
                    let near = durations
                        .iter()
                        .filter(|&&d| d as f64 > bound_ms && d as f64 <= bound_ms * 1.001 + 1.0)
                        .count() as f64;
                    assert!(
                        ours.count >= theirs.count && ours.count <= theirs.count + near,
                        "le={}: {} vs {}",
                        theirs.less_than,
                        theirs.count,
                        ours.count
                    );
                }
            }
            (a, b) => panic!("{}: {a:?} vs {b:?}", sample.metric),
        }
        compared += 1;
    }
    assert!(compared > 30, "compared only {compared} series");

    // Without taskmeter's extra families, the exposition has exactly solti-prometheus's, and
    // the snapshot's timestamp and sequence that every exposition carries.
    let solti_only = ExportConfig::builder()
        .extra_families(false)
        .build()
        .unwrap();
    let mut solti_text = String::new();
    ours.latest().write_prometheus(&solti_only, &mut solti_text);
    let families = |scrape: &Scrape| scrape.docs.keys().cloned().collect::<BTreeSet<_>>();
    let mut expected = families(&their_scrape);
    expected.insert("solti_runner_snapshot_timestamp_seconds".to_owned());
    expected.insert("solti_runner_snapshot_sequence".to_owned());
    assert_eq!(families(&parse(&solti_text)), expected);
}
