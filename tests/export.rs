//! Exports parse back, with independent parsers, to the snapshot's values.
#![cfg(all(feature = "json", not(loom)))]

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};
use taskmeter::export::{ExportConfig, Format};
use taskmeter::{
    AtomicMetrics, MetricsBackend, RunnerErrorKind, RunnerType, Snapshot, TaskOutcome,
};
use taskmeter_workload::{Call, Totals, replay, task_mix};

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("parses")
}

/// `(metric, sorted labels)` → the sample's value.
fn by_series(scrape: &Scrape) -> BTreeMap<(String, String), Value> {
    scrape
        .samples
        .iter()
        .map(|s| ((s.metric.clone(), s.labels.to_string()), s.value.clone()))
        .collect()
}

fn scalar(series: &BTreeMap<(String, String), Value>, metric: &str, labels: &str) -> f64 {
    match series.get(&(metric.to_owned(), labels.to_owned())) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{metric}{{{labels}}}: {other:?}"),
    }
}

fn recorded_snapshot() -> (Snapshot, Vec<Call>) {
    let metrics = AtomicMetrics::builder()
        .highest_duration_ms(3_600_000)
        .build()
        .unwrap();
    let mut calls = task_mix(5_000, 21);
    // Values at bucket edges and beyond the range.
    for duration in [10, 25, 1_000, 2_500, 3_600_000, 7_200_000, 0] {
        calls.push(Call::Started(RunnerType::Wasm));
        calls.push(Call::Completed(
            RunnerType::Wasm,
            TaskOutcome::Timeout,
            duration,
        ));
    }
    calls.push(Call::Started(RunnerType::Container)); // one in flight
    replay(&metrics, &calls);
    (Snapshot::clone(&metrics.snapshot()), calls)
}

#[test]
fn prometheus_text_parses_back_to_the_snapshot() {
    let (snapshot, calls) = recorded_snapshot();
    let totals = Totals::of(&calls);
    let text = snapshot.to_prometheus();
    let series = by_series(&parse(&text));
    let view = snapshot.cumulative();
    for runner in RunnerType::ALL {
        let r = runner.as_label();
        let labels = format!("runner=\"{r}\"");
        assert_eq!(
            scalar(&series, "solti_runner_tasks_started_total", &labels),
            totals.started(runner) as f64
        );
        assert_eq!(
            scalar(&series, "solti_runner_tasks_in_flight", &labels),
            snapshot.in_flight(runner) as f64
        );
        for kind in RunnerErrorKind::ALL {
            let labels = format!("error=\"{}\",runner=\"{r}\"", kind.as_label());
            assert_eq!(
                scalar(&series, "solti_runner_errors_total", &labels),
                totals.errors(runner, kind) as f64
            );
        }
        for outcome in TaskOutcome::ALL {
            let labels = format!("outcome=\"{}\",runner=\"{r}\"", outcome.as_label());
            let completed = totals.completed(runner, outcome);
            assert_eq!(
                scalar(&series, "solti_runner_tasks_completed_total", &labels),
                completed as f64
            );
            let Some(Value::Histogram(buckets)) = series.get(&(
                "solti_runner_task_duration_seconds".to_owned(),
                labels.clone(),
            )) else {
                panic!("no histogram for {labels}");
            };
            // Every bucket against the true values: exact up to 2 s (1 ms slots), within one
            // slot (0.1 %) above.
            let durations: Vec<u64> = calls
                .iter()
                .filter_map(|call| match *call {
                    Call::Completed(cr, co, d) if (cr, co) == (runner, outcome) => {
                        Some(d.min(3_600_000))
                    }
                    _ => None,
                })
                .collect();
            for bucket in buckets {
                let bound_ms = bucket.less_than * 1e3;
                let exact = durations.iter().filter(|&&d| d as f64 <= bound_ms).count() as f64;
                if bound_ms <= 2_000.0 || bound_ms.is_infinite() {
                    assert_eq!(bucket.count, exact, "{labels} le={}", bucket.less_than);
                } else {
                    let loose = durations
                        .iter()
                        .filter(|&&d| d as f64 <= bound_ms * 1.001 + 1.0)
                        .count() as f64;
                    assert!(
                        (exact..=loose).contains(&bucket.count),
                        "{labels} le={}",
                        bucket.less_than
                    );
                }
            }
            let sum = scalar(&series, "solti_runner_task_duration_seconds_sum", &labels);
            let exact_sum = totals.duration_sum_ms(runner, outcome) as f64 / 1e3;
            assert!(
                (sum - exact_sum).abs() <= exact_sum * 1e-12,
                "{sum} vs {exact_sum}"
            );
            assert_eq!(
                scalar(&series, "solti_runner_task_duration_seconds_count", &labels),
                completed as f64
            );
            let Some(Value::Summary(quantiles)) = series.get(&(
                "solti_runner_task_duration_hdr_seconds".to_owned(),
                labels.clone(),
            )) else {
                panic!("no summary for {labels}");
            };
            // The summary's quantiles are over the window (here: the one interval).
            let histogram = snapshot.window().duration(runner, outcome);
            assert_eq!(quantiles.len(), 5);
            for quantile in quantiles {
                let expected = if histogram.is_empty() {
                    f64::NAN
                } else if quantile.quantile == 1.0 {
                    histogram.max() as f64 / 1e3
                } else {
                    histogram.value_at_quantile(quantile.quantile) as f64 / 1e3
                };
                assert!(
                    quantile.count == expected || (quantile.count.is_nan() && expected.is_nan()),
                    "{labels} q={}: {} vs {expected}",
                    quantile.quantile,
                    quantile.count
                );
            }
            assert_eq!(
                scalar(&series, "solti_runner_task_duration_clamped_total", &labels),
                view.clamped(runner, outcome) as f64
            );
        }
    }
    assert_eq!(view.clamped(RunnerType::Wasm, TaskOutcome::Timeout), 1);
}

#[test]
fn every_series_is_present_from_the_first_scrape() {
    let snapshot = AtomicMetrics::new().latest();
    let text = snapshot.to_prometheus();
    let series = by_series(&parse(&text));
    for family in ["tasks_started_total", "tasks_in_flight"] {
        for runner in RunnerType::ALL {
            let labels = format!("runner=\"{}\"", runner.as_label());
            assert_eq!(
                scalar(&series, &format!("solti_runner_{family}"), &labels),
                0.0
            );
        }
    }
    let samples = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(samples("solti_runner_tasks_completed_total{"), 12);
    assert_eq!(samples("solti_runner_errors_total{"), 12);
    assert_eq!(
        samples("solti_runner_task_duration_seconds_bucket{"),
        12 * 16
    );
    assert_eq!(samples("solti_runner_task_duration_hdr_seconds{"), 12 * 5);
    for line in text.lines().filter(|l| l.starts_with("# HELP")) {
        assert!(line.split(' ').count() > 3, "HELP without text: {line}");
    }
    let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("# HELP")).count(),
        families
    );
}

#[test]
fn openmetrics_carries_the_same_samples_with_its_own_rules() {
    let (snapshot, _) = recorded_snapshot();
    let prometheus = snapshot.to_prometheus();
    let openmetrics = snapshot.to_openmetrics();
    assert!(openmetrics.ends_with("# EOF\n"));
    assert_eq!(openmetrics.matches("# EOF").count(), 1);
    assert!(openmetrics.contains("# TYPE solti_runner_tasks_started counter\n"));
    assert!(openmetrics.contains("# UNIT solti_runner_task_duration_seconds seconds\n"));
    assert!(openmetrics.contains("# UNIT solti_runner_task_duration_hdr_seconds seconds\n"));
    assert!(prometheus.contains("# TYPE solti_runner_tasks_started_total counter\n"));
    // Sample lines are identical; only the metadata differs.
    let samples = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(samples(&prometheus), samples(&openmetrics));
}

#[test]
fn any_bucket_layout_and_names_at_export_time() {
    let (snapshot, calls) = recorded_snapshot();
    let config = ExportConfig::builder()
        .namespace("acme")
        .subsystem("")
        .buckets_seconds([0.001, 0.5, 100.0])
        .quantiles([0.25, 1.0])
        .build()
        .unwrap();
    let mut text = String::from("# leading content is kept\n");
    snapshot.write_prometheus(&config, &mut text);
    assert!(text.starts_with("# leading content is kept\n"));
    let series = by_series(&parse(&text));
    let labels = "outcome=\"success\",runner=\"subprocess\"".to_owned();
    let Some(Value::Histogram(buckets)) =
        series.get(&("acme_task_duration_seconds".to_owned(), labels.clone()))
    else {
        panic!("no custom histogram");
    };
    let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
    assert_eq!(bounds, [0.001, 0.5, 100.0, f64::INFINITY]);
    let under_half_second = calls
        .iter()
        .filter(|c| matches!(c, Call::Completed(RunnerType::Subprocess, TaskOutcome::Success, d) if *d <= 500))
        .count() as f64;
    assert_eq!(buckets[1].count, under_half_second);
    let Some(Value::Summary(quantiles)) =
        series.get(&("acme_task_duration_hdr_seconds".to_owned(), labels))
    else {
        panic!("no custom summary");
    };
    assert_eq!(
        quantiles.iter().map(|q| q.quantile).collect::<Vec<_>>(),
        [0.25, 1.0]
    );
}

#[test]
fn invalid_export_configuration_is_refused() {
    let cases = [
        (ExportConfig::builder().namespace("9lives"), "namespace"),
        (ExportConfig::builder().subsystem("a-b"), "subsystem"),
        (
            ExportConfig::builder().buckets_seconds([0.0]),
            "buckets_seconds contains 0",
        ),
        (
            ExportConfig::builder().buckets_seconds([f64::NAN]),
            "buckets_seconds contains NaN",
        ),
        (
            ExportConfig::builder().buckets_seconds([1.0, 1.0]),
            "strictly increasing",
        ),
        (
            ExportConfig::builder().quantiles([1.5]),
            "quantiles contains 1.5",
        ),
    ];
    for (builder, message) in cases {
        let error = builder.build().unwrap_err().to_string();
        assert!(error.contains(message), "{error}");
    }
}

#[test]
fn json_round_trips_and_matches_the_snapshot() {
    use taskmeter::export::json::{JSON_SCHEMA, JsonSnapshot};
    let (snapshot, calls) = recorded_snapshot();
    let totals = Totals::of(&calls);
    let json = snapshot.to_json();
    let read: JsonSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(read, JsonSnapshot::new(&snapshot, &[0.5, 0.9, 0.99, 0.999]));
    assert_eq!(read.schema, JSON_SCHEMA);
    assert_eq!(read.sequence, snapshot.sequence());
    for runner in RunnerType::ALL {
        let r = runner.as_label();
        assert_eq!(read.cumulative.started[r], totals.started(runner));
        assert_eq!(read.in_flight[r], snapshot.in_flight(runner));
        for outcome in TaskOutcome::ALL {
            let durations = &read.cumulative.completed[r][outcome.as_label()];
            assert_eq!(durations.count, totals.completed(runner, outcome));
            assert_eq!(
                u128::from(durations.sum_ms),
                totals.duration_sum_ms(runner, outcome)
            );
            let histogram = snapshot.cumulative().duration(runner, outcome);
            if durations.count > 0 {
                assert_eq!(durations.max_ms, Some(histogram.max()));
                assert_eq!(
                    durations.quantiles_ms["0.99"],
                    histogram.value_at_quantile(0.99)
                );
            } else {
                assert_eq!(durations.max_ms, None);
                assert!(durations.quantiles_ms.is_empty());
            }
        }
        for kind in RunnerErrorKind::ALL {
            assert_eq!(
                read.cumulative.errors[r][kind.as_label()],
                totals.errors(runner, kind)
            );
        }
    }
    // Every label combination is present even with no events.
    let empty: JsonSnapshot =
        serde_json::from_str(&AtomicMetrics::new().latest().to_json()).unwrap();
    assert_eq!(
        empty
            .cumulative
            .completed
            .values()
            .map(BTreeMap::len)
            .sum::<usize>(),
        12
    );
}

/// JSON's minimum is the smallest value's slot, not a low quantile: one fast task among
/// thousands of slow ones is its minimum, while its 0.1 % quantile is a slow one.
#[test]
fn json_minimum_and_maximum_are_the_extremes_not_quantiles() {
    use taskmeter::export::json::JsonSnapshot;
    let metrics = AtomicMetrics::new();
    let (runner, outcome) = (RunnerType::Container, TaskOutcome::Failure);
    metrics.record_task_completed(runner, outcome, 1);
    for _ in 0..3_000 {
        metrics.record_task_completed(runner, outcome, 100);
    }
    metrics.record_task_completed(runner, outcome, 90_000);
    let snapshot = metrics.snapshot();
    let read: JsonSnapshot = serde_json::from_str(&snapshot.to_json()).unwrap();
    let durations = &read.cumulative.completed["container"]["failure"];
    assert_eq!(durations.min_ms, Some(1));
    assert_eq!(
        durations.max_ms,
        Some(snapshot.cumulative().duration(runner, outcome).max())
    );
    assert!((89_999..=90_100).contains(&durations.max_ms.unwrap()));
    assert_eq!(durations.quantiles_ms["0.999"], 100);
    assert_eq!(
        snapshot
            .cumulative()
            .duration_counts(runner, outcome)
            .value_at_quantile(0.001),
        100
    );
}

#[test]
fn every_exposition_carries_its_snapshots_timestamp_and_sequence() {
    let metrics = AtomicMetrics::new();
    metrics.record_task_started(RunnerType::Wasm);
    for _ in 0..3 {
        metrics.snapshot();
    }
    let snapshot = metrics.latest();
    let seconds = snapshot
        .taken_at()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let value_of = |text: &str, name: &str| -> f64 {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line[name.len() + 1..].parse().unwrap()
    };
    for extra in [true, false] {
        let config = ExportConfig::builder()
            .extra_families(extra)
            .build()
            .unwrap();
        let (mut prometheus, mut openmetrics) = (String::new(), String::new());
        snapshot.write_prometheus(&config, &mut prometheus);
        snapshot.write_openmetrics(&config, &mut openmetrics);
        for text in [&prometheus, &openmetrics] {
            let stamp = value_of(text, "solti_runner_snapshot_timestamp_seconds");
            assert!((stamp - seconds).abs() < 0.001, "{stamp} vs {seconds}");
            assert_eq!(value_of(text, "solti_runner_snapshot_sequence"), 3.0);
        }
        assert!(openmetrics.contains("# UNIT solti_runner_snapshot_timestamp_seconds seconds\n"));
    }
}

#[test]
fn render_writes_each_format_whole_and_families_join_without_eof() {
    let metrics = AtomicMetrics::new();
    replay(&metrics, &task_mix(1_000, 7));
    let snapshot = metrics.snapshot();
    let config = ExportConfig::default();
    let mut prometheus = String::new();
    snapshot.write_prometheus(&config, &mut prometheus);
    assert_eq!(snapshot.render(Format::Prometheus, &config), prometheus);
    let mut families = String::new();
    snapshot.write_openmetrics_families(&config, &mut families);
    assert!(!families.contains("# EOF"));
    let openmetrics = snapshot.render(Format::OpenMetrics, &config);
    assert_eq!(format!("{families}# EOF\n"), openmetrics);
    assert_eq!(
        Format::from_accept(Some("application/openmetrics-text; version=1.0.0")).content_type(),
        taskmeter::export::prometheus::OPENMETRICS_CONTENT_TYPE
    );
    assert_eq!(
        Format::Prometheus.content_type(),
        taskmeter::export::prometheus::PROMETHEUS_CONTENT_TYPE
    );
}

#[test]
fn constant_labels_are_on_every_series_of_every_format_and_checked() {
    let metrics = AtomicMetrics::new();
    replay(&metrics, &task_mix(1_000, 11));
    let snapshot = metrics.snapshot();
    let config = ExportConfig::builder()
        .const_label("instance", "runner-7")
        .const_label("node", "eu \"1\"\nb")
        .build()
        .unwrap();
    let without = ExportConfig::default();
    for (with, plain) in [
        (
            snapshot.render(Format::Prometheus, &config),
            snapshot.render(Format::Prometheus, &without),
        ),
        (
            snapshot.render(Format::OpenMetrics, &config),
            snapshot.render(Format::OpenMetrics, &without),
        ),
    ] {
        let samples: Vec<&str> = with.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples.len(),
            plain.lines().filter(|l| !l.starts_with('#')).count()
        );
        for line in &samples {
            assert!(
                line.contains(r#"instance="runner-7",node="eu \"1\"\nb""#),
                "a series without the constant labels: {line}"
            );
        }
        // Parsed back (Prometheus text), every sample carries both (prometheus-parse keeps
        // the escapes).
        if !with.contains("# EOF") {
            let scrape = parse(&with);
            assert!(scrape.samples.len() > 30);
            for sample in &scrape.samples {
                assert_eq!(sample.labels.get("instance"), Some("runner-7"));
                assert_eq!(sample.labels.get("node"), Some(r#"eu \"1\"\nb"#));
            }
        }
    }
    let json: serde_json::Value = serde_json::from_str(&snapshot.to_json_with(&config)).unwrap();
    assert_eq!(json["labels"]["instance"], "runner-7");
    assert_eq!(json["labels"]["node"], "eu \"1\"\nb");
    assert!(!snapshot.to_json().contains("\"labels\""));

    for (name, value, why) in [
        ("1node", "x", "label name"),
        ("no-de", "x", "label name"),
        ("", "x", "label name"),
        ("__name__", "x", "reserved"),
        ("runner", "x", "own series"),
        ("quantile", "x", "own series"),
        ("node", "", "empty value"),
    ] {
        let refused = ExportConfig::builder()
            .const_label(name, value)
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("const_label {name:?}")),
            "{refused}"
        );
        assert!(refused.contains(why), "{name:?}: {refused}");
    }
    let twice = ExportConfig::builder()
        .const_label("node", "a")
        .const_label("node", "b")
        .build()
        .unwrap_err();
    assert!(twice.to_string().contains("given twice"));
}
