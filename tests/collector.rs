//! taskmeter inside an application's registry (features `prometheus`, `prometheus-client`):
//! one scrape holds the application's metrics and taskmeter's, every taskmeter sample equal to
//! the one taskmeter's own exposition writes for the same snapshot; with prometheus 0.14,
//! colliding names are refused.
#![cfg(all(
    feature = "prometheus",
    feature = "prometheus-client",
    feature = "solti",
    not(loom)
))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};
use prometheus_parse::{Scrape, Value};
use taskmeter::collector::PrometheusCollector;
use taskmeter::export::ExportConfig;
use taskmeter::solti::TaskvisorMetrics;
use taskmeter::{AtomicMetrics, Label, MetricsBackend, RunnerErrorKind, RunnerType};
use taskmeter_workload::{replay, task_mix};
use taskvisor::{Event, EventKind, Subscribe, TaskId};

fn gather(registry: &Registry) -> String {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("encodes");
    String::from_utf8(text).expect("UTF-8")
}

/// `(metric, labels)` → value, NaN made comparable.
fn samples(text: &str) -> BTreeMap<(String, String), String> {
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("parses");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let value = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => format!("{v:?}"),
                other => format!("{other:?}"),
            };
            ((sample.metric, sample.labels.to_string()), value)
        })
        .collect()
}

fn recorded_engine() -> Arc<AtomicMetrics> {
    let metrics = Arc::new(AtomicMetrics::new());
    replay(&*metrics, &task_mix(5_000, 3));
    metrics.record_labelled_runner_error(
        Label::Custom("image-resize".into()),
        Label::Known(RunnerErrorKind::SpawnFailed),
    );
    metrics.record_task_started(RunnerType::Container); // one in flight
    metrics
}

/// [`recorded_engine`] with a taskvisor subscriber attached and one attempt open through it
/// (the subscriber is kept: dropping it takes its attempts out of in-flight).
fn recorded_engine_with_taskvisor() -> (Arc<AtomicMetrics>, TaskvisorMetrics) {
    let metrics = recorded_engine();
    let subscriber = TaskvisorMetrics::new(Arc::clone(&metrics));
    subscriber.on_event(
        &Event::new(EventKind::AttemptStarting)
            .with_task("resize")
            .with_id(TaskId::for_tests())
            .with_attempt(2),
    );
    (metrics, subscriber)
}

/// The export configuration of the comparisons: a constant label on every series.
fn constant_labelled() -> ExportConfig {
    ExportConfig::builder()
        .const_label("service", "runner-7")
        .build()
        .unwrap()
}

#[test]
fn one_scrape_holds_the_application_metrics_and_every_taskmeter_sample() {
    let (metrics, _subscriber) = recorded_engine_with_taskvisor();
    let config = constant_labelled();
    let registry = Registry::new();
    let requests = IntCounter::new("api_requests_total", "API requests").unwrap();
    registry.register(Box::new(requests.clone())).unwrap();
    let collector = PrometheusCollector::new(Arc::clone(&metrics))
        .export(config.clone())
        .max_snapshot_age(Duration::MAX);
    registry.register(Box::new(collector)).unwrap();
    requests.inc_by(3);

    let snapshot = metrics.snapshot();
    let scraped = samples(&gather(&registry));
    let mut own = String::new();
    snapshot.write_prometheus(&config, &mut own);
    let own = samples(&own);

    assert_eq!(
        scraped.get(&("api_requests_total".to_owned(), String::new())),
        Some(&"3.0".to_owned())
    );
    assert!(own.len() > 100, "{} samples", own.len());
    for (series, value) in &own {
        assert_eq!(scraped.get(series), Some(value), "{series:?}");
    }
    // Nothing of taskmeter's beyond its own exposition.
    assert_eq!(scraped.len(), own.len() + 1);
    let in_flight = (
        "solti_taskvisor_attempts_in_flight".to_owned(),
        String::new(),
    );
    assert!(scraped.keys().any(|(name, _)| name == &in_flight.0));
}

#[test]
fn a_gather_takes_a_snapshot_when_the_published_one_is_too_old() {
    let metrics = recorded_engine();
    let registry = Registry::new();
    registry
        .register(Box::new(PrometheusCollector::new(Arc::clone(&metrics))))
        .unwrap();
    // None published yet: the gather takes one, with everything recorded.
    let scraped = samples(&gather(&registry));
    let started = |scraped: &BTreeMap<(String, String), String>| {
        scraped
            .iter()
            .find(|((name, labels), _)| {
                name == "solti_runner_tasks_started_total" && labels.contains("container")
            })
            .map(|(_, value)| value.clone())
    };
    let expected = metrics.latest().cumulative().started(RunnerType::Container);
    assert!(expected > 0);
    assert_eq!(started(&scraped), Some(format!("{:?}", expected as f64)));
}

#[test]
fn colliding_names_are_refused_with_the_registry_error() {
    let metrics = Arc::new(AtomicMetrics::new());
    // A family of taskmeter's already in the registry.
    let registry = Registry::new();
    let started = IntCounter::new("solti_runner_tasks_started_total", "taken").unwrap();
    registry.register(Box::new(started)).unwrap();
    let refused = registry.register(Box::new(PrometheusCollector::new(Arc::clone(&metrics))));
    assert!(
        matches!(refused, Err(prometheus::Error::AlreadyReg)),
        "{refused:?}"
    );

    // taskvisor's families are described before any subscriber is attached.
    let registry = Registry::new();
    let gauge = IntGauge::new("solti_taskvisor_attempts_in_flight", "taken").unwrap();
    registry.register(Box::new(gauge)).unwrap();
    let refused = registry.register(Box::new(PrometheusCollector::new(Arc::clone(&metrics))));
    assert!(refused.is_err(), "{refused:?}");

    // The same collector twice.
    let registry = Registry::new();
    registry
        .register(Box::new(PrometheusCollector::new(Arc::clone(&metrics))))
        .unwrap();
    let refused = registry.register(Box::new(PrometheusCollector::new(Arc::clone(&metrics))));
    assert!(refused.is_err(), "{refused:?}");

    // Another namespace does not collide.
    let renamed = ExportConfig::builder().namespace("batch").build().unwrap();
    registry
        .register(Box::new(PrometheusCollector::new(metrics).export(renamed)))
        .unwrap();
}

/// OpenMetrics samples as `(name, labels sorted, bounds read as numbers)` → value.
fn openmetrics_samples(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = (labels.split(',').filter(|pair| !pair.is_empty()))
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("key=value");
                    let value = value.trim_matches('"');
                    let value = match (key, value.parse::<f64>()) {
                        ("le", Ok(bound)) => format!("{bound:?}"),
                        _ => value.to_owned(),
                    };
                    (key.to_owned(), value)
                })
                .collect();
            let value = value.parse::<f64>().expect("a number");
            ((name.to_owned(), labels), value)
        })
        .collect()
}

#[test]
fn a_prometheus_client_registry_holds_every_taskmeter_sample_but_the_summaries() {
    use prometheus_client::metrics::counter::Counter;
    use taskmeter::collector::PrometheusClientCollector;
    use taskmeter::export::Format;

    let (metrics, _subscriber) = recorded_engine_with_taskvisor();
    let config = constant_labelled();
    let mut registry = prometheus_client::registry::Registry::default();
    let requests = Counter::<u64>::default();
    registry.register("api_requests", "API requests", requests.clone());
    registry.register_collector(Box::new(
        PrometheusClientCollector::new(Arc::clone(&metrics))
            .export(config.clone())
            .max_snapshot_age(Duration::MAX),
    ));
    requests.inc_by(3);

    let snapshot = metrics.snapshot();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let scraped = openmetrics_samples(&text);
    let own = snapshot.render(Format::OpenMetrics, &config);
    let summary = config.metric_name("task_duration_hdr_seconds");
    let own: BTreeMap<_, _> = openmetrics_samples(&own)
        .into_iter()
        .filter(|((name, _), _)| !name.starts_with(&summary))
        .collect();

    assert_eq!(
        scraped.get(&("api_requests_total".to_owned(), BTreeMap::new())),
        Some(&3.0)
    );
    assert!(own.len() > 100, "{} samples", own.len());
    for (series, value) in &own {
        let found = scraped.get(series);
        assert!(
            found.is_some_and(|found| found == value || (found.is_nan() && value.is_nan())),
            "{series:?}: {found:?} against {value}"
        );
    }
    assert_eq!(
        scraped.len(),
        own.len() + 1,
        "nothing more than taskmeter's own"
    );
    assert!(!scraped.keys().any(|(name, _)| name.starts_with(&summary)));
}
