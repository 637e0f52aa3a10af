//! The fuzz targets' bodies, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz, libFuzzer) and by
//! `tests/fuzz_corpus.rs`, which replays every committed corpus file on stable. Each function
//! takes the raw input and decodes it with `arbitrary::Unstructured`, exactly as a libFuzzer
//! run does, so a corpus file means the same thing in both places.

// Each target uses only its own part of this file.
#![allow(dead_code)]

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Result, Unstructured};
use taskmeter::export::ExportConfig;
use taskmeter::export::json::JsonSnapshot;
use taskmeter::{
    AtomicMetrics, ConfigError, MetricsBackend, RunnerErrorKind, RunnerType, Snapshot, TaskOutcome,
};

#[derive(Debug, Arbitrary)]
enum Op {
    Started(u8),
    Completed(u8, u8, Duration),
    Error(u8, u8),
    Snapshot,
}

/// Durations: anything, with the edges over-represented.
#[derive(Debug, Arbitrary)]
enum Duration {
    Any(u64),
    Small(u16),
    Zero,
    Max,
}

impl Duration {
    fn ms(&self) -> u64 {
        match *self {
            Duration::Any(ms) => ms,
            Duration::Small(ms) => u64::from(ms),
            Duration::Zero => 0,
            Duration::Max => u64::MAX,
        }
    }
}

fn runner(byte: u8) -> RunnerType {
    RunnerType::ALL[usize::from(byte) % RunnerType::COUNT]
}

fn outcome(byte: u8) -> TaskOutcome {
    TaskOutcome::ALL[usize::from(byte) % TaskOutcome::COUNT]
}

fn kind(byte: u8) -> RunnerErrorKind {
    RunnerErrorKind::ALL[usize::from(byte) % RunnerErrorKind::COUNT]
}

fn label(runner: RunnerType, outcome: TaskOutcome) -> usize {
    runner.index() * TaskOutcome::COUNT + outcome.index()
}

/// The reference: plain integers and exact value counts.
#[derive(Default)]
struct Model {
    started: [u64; RunnerType::COUNT],
    errors: [u64; RunnerType::COUNT * RunnerErrorKind::COUNT],
    sums: [u128; 12],
    clamped: [u64; 12],
    /// Per label: clamped value -> how many times it was recorded.
    values: [BTreeMap<u64, u64>; 12],
}

impl Model {
    fn completed(&self, label: usize) -> u64 {
        self.values[label].values().sum()
    }

    /// The value hdrhistogram's `value_at_quantile` looks for: rank `max(1, ceil(q × n))`.
    fn value_at_quantile(&self, label: usize, quantile: f64) -> Option<u64> {
        let total = self.completed(label);
        if total == 0 {
            return None;
        }
        let rank = ((quantile * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (&value, &count) in &self.values[label] {
            seen += count;
            if seen >= rank {
                return Some(value);
            }
        }
        self.values[label].keys().next_back().copied()
    }
}

/// Builds an engine from the input, replays arbitrary calls on it and on the model, and checks
/// they agree after every snapshot: counts and sums exactly, quantiles within the HDR slot.
pub fn ops(data: &[u8]) -> Result<()> {
    let mut input = Unstructured::new(data);
    let digits = input.int_in_range(1..=3)?;
    let highest = input.int_in_range(2..=1_u64 << 40)?;
    let stripes = input.int_in_range(1..=3)?;
    let metrics = AtomicMetrics::builder()
        .significant_digits(digits)
        .highest_duration_ms(highest)
        .stripes(stripes)
        .build()
        .expect("valid by construction");
    let mut model = Model::default();
    let mut previous: Option<std::sync::Arc<Snapshot>> = None;
    for op in input.arbitrary_iter::<Op>()? {
        match op? {
            Op::Started(r) => {
                metrics.record_task_started(runner(r));
                model.started[runner(r).index()] += 1;
            }
            Op::Completed(r, o, duration) => {
                let ms = duration.ms();
                metrics.record_task_completed(runner(r), outcome(o), ms);
                let label = label(runner(r), outcome(o));
                model.sums[label] += u128::from(ms);
                model.clamped[label] += u64::from(ms > highest);
                *model.values[label].entry(ms.min(highest)).or_default() += 1;
            }
            Op::Error(r, k) => {
                metrics.record_runner_error(runner(r), kind(k));
                model.errors[runner(r).index() * RunnerErrorKind::COUNT + kind(k).index()] += 1;
            }
            Op::Snapshot => {
                let snapshot = metrics.snapshot();
                check_against_model(&snapshot, &model, previous.as_deref());
                previous = Some(snapshot);
            }
        }
    }
    let snapshot = metrics.snapshot();
    check_against_model(&snapshot, &model, previous.as_deref());
    Ok(())
}

fn check_against_model(snapshot: &Snapshot, model: &Model, previous: Option<&Snapshot>) {
    let view = snapshot.cumulative();
    for runner in RunnerType::ALL {
        assert_eq!(view.started(runner), model.started[runner.index()]);
        for kind in RunnerErrorKind::ALL {
            let expected = model.errors[runner.index() * RunnerErrorKind::COUNT + kind.index()];
            assert_eq!(view.errors(runner, kind), expected);
        }
        for outcome in TaskOutcome::ALL {
            let label = label(runner, outcome);
            let histogram = view.duration(runner, outcome);
            assert_eq!(view.completed(runner, outcome), model.completed(label));
            assert_eq!(histogram.len(), model.completed(label));
            assert_eq!(
                view.duration_sum_ms_exact(runner, outcome),
                model.sums[label]
            );
            assert_eq!(
                view.duration_sum_ms(runner, outcome),
                u64::try_from(model.sums[label]).unwrap_or(u64::MAX)
            );
            assert_eq!(view.clamped(runner, outcome), model.clamped[label]);
            for quantile in [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let Some(expected) = model.value_at_quantile(label, quantile) else {
                    assert!(histogram.is_empty());
                    continue;
                };
                let got = histogram.value_at_quantile(quantile);
                assert!(
                    histogram.equivalent(got, expected),
                    "q{quantile} of {runner:?}/{outcome:?}: {got} is not within the HDR slot of {expected}"
                );
            }
            if let Some(previous) = previous {
                // Intervals add up: previous cumulative + this interval = this cumulative.
                let before = previous.cumulative().completed(runner, outcome);
                let interval = snapshot.interval().completed(runner, outcome);
                assert_eq!(before + interval, view.completed(runner, outcome));
            }
        }
    }
}

/// Arbitrary builder inputs: `build()` either succeeds with exactly those settings, or refuses
/// with a `ConfigError` that names a setting outside its range.
pub fn config(data: &[u8]) -> Result<()> {
    let mut input = Unstructured::new(data);
    let highest: u64 = input.arbitrary()?;
    let digits: u8 = input.arbitrary()?;
    let stripes: usize = input.int_in_range(0..=2048)?;
    // Capped so that a valid configuration never allocates more than the fuzzer can afford.
    let limit: usize = input.int_in_range(0..=(64 << 20))?;
    let built = AtomicMetrics::builder()
        .highest_duration_ms(highest)
        .significant_digits(digits)
        .stripes(stripes)
        .memory_limit_bytes(limit)
        .build();
    match built {
        Ok(metrics) => {
            assert_eq!(metrics.highest_duration_ms(), highest);
            assert_eq!(metrics.significant_digits(), digits);
            assert_eq!(metrics.stripes(), stripes);
            assert!(metrics.recording_memory_bytes() <= limit);
            metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, highest);
            assert_eq!(
                metrics
                    .snapshot()
                    .cumulative()
                    .completed(RunnerType::Wasm, TaskOutcome::Success),
                1
            );
        }
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        }) => {
            assert!(value < min || value > max);
            let given = match field {
                "highest_duration_ms" => highest,
                "significant_digits" => u64::from(digits),
                "stripes" => stripes as u64,
                other => panic!("unknown field {other}"),
            };
            assert_eq!(given, value);
        }
        Err(ConfigError::TooMuchMemory {
            needed,
            limit: reported,
        }) => {
            assert_eq!(reported, limit);
            assert!(needed > limit);
        }
        Err(other) => panic!("unexpected error {other}"),
    }
    Ok(())
}

/// Arbitrary content and export settings: every format parses back to the snapshot's values.
pub fn export(data: &[u8]) -> Result<()> {
    let mut input = Unstructured::new(data);
    let metrics = AtomicMetrics::builder()
        .highest_duration_ms(input.int_in_range(2..=1_u64 << 40)?)
        .significant_digits(input.int_in_range(1..=3)?)
        .stripes(1)
        .build()
        .expect("valid by construction");
    let namespace: String = input.arbitrary()?;
    let buckets: Vec<f64> = input.arbitrary()?;
    let quantiles: Vec<f64> = input.arbitrary()?;
    for op in input.arbitrary_iter::<Op>()? {
        match op? {
            Op::Started(r) => metrics.record_task_started(runner(r)),
            Op::Completed(r, o, duration) => {
                metrics.record_task_completed(runner(r), outcome(o), duration.ms())
            }
            Op::Error(r, k) => metrics.record_runner_error(runner(r), kind(k)),
            Op::Snapshot => {
                metrics.snapshot();
            }
        }
    }
    let snapshot = metrics.snapshot();
    // Arbitrary settings are refused or exported; valid defaults always are.
    let config = ExportConfig::builder()
        .namespace(namespace)
        .buckets_seconds(buckets)
        .quantiles(quantiles)
        .build()
        .unwrap_or_default();
    let mut prometheus = String::new();
    snapshot.write_prometheus(&config, &mut prometheus);
    let mut openmetrics = String::new();
    snapshot.write_openmetrics(&config, &mut openmetrics);
    let samples = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(samples(&prometheus), samples(&openmetrics));
    assert!(openmetrics.ends_with("# EOF\n"));
    let scrape = prometheus_parse::Scrape::parse(prometheus.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text parses");
    let started_name = config.metric_name("tasks_started_total");
    let completed_name = config.metric_name("tasks_completed_total");
    for sample in &scrape.samples {
        let runner = RunnerType::ALL
            .into_iter()
            .find(|r| Some(r.as_label()) == sample.labels.get("runner"));
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if sample.metric == started_name {
            assert_eq!(value, snapshot.cumulative().started(runner.unwrap()) as f64);
        }
        if sample.metric == completed_name {
            let outcome = TaskOutcome::ALL
                .into_iter()
                .find(|o| Some(o.as_label()) == sample.labels.get("outcome"))
                .unwrap();
            assert_eq!(
                value,
                snapshot.cumulative().completed(runner.unwrap(), outcome) as f64
            );
        }
    }
    let json = snapshot.to_json();
    let read: JsonSnapshot = serde_json::from_str(&json).expect("the JSON parses");
    assert_eq!(read, JsonSnapshot::new(&snapshot, &[0.5, 0.9, 0.99, 0.999]));
    Ok(())
}
