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

/// An application registry: a counter, a counter without `_total` whose label value needs
/// escapes, a gauge, and a histogram.
fn application_registry() -> (Registry, IntCounter) {
    use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
    let registry = Registry::new();
    let requests = IntCounter::new("api_requests_total", "API requests").unwrap();
    let errors = IntCounterVec::new(Opts::new("api_errors", "API errors"), &["path"]).unwrap();
    let open = IntGauge::new("api_connections", "Open connections \\ now").unwrap();
    let latency = Histogram::with_opts(
        HistogramOpts::new("api_latency_seconds", "API latency").buckets(vec![0.1, 1.0]),
    )
    .unwrap();
    for collector in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(errors.clone()),
        Box::new(open.clone()),
        Box::new(latency.clone()),
    ] {
        registry.register(collector).unwrap();
    }
    requests.inc_by(2);
    errors.with_label_values(&["/a\"b\\c\nd"]).inc_by(5);
    open.set(-3);
    for seconds in [0.05, 0.5, 0.7, 4.0] {
        latency.observe(seconds);
    }
    (registry, requests)
}

/// A merged endpoint serves, in each text format, exactly taskmeter's own body and the
/// registry's families, read at the scrape; OpenMetrics keeps one `# EOF`, last.
#[test]
fn a_merged_registry_is_served_with_taskmeter_in_each_text_format() {
    use taskmeter::export::Endpoint;
    let metrics = recorded_engine();
    metrics.snapshot();
    let own = Endpoint::new(Arc::clone(&metrics)).max_snapshot_age(Duration::MAX);
    let (registry, requests) = application_registry();
    let merged = own.clone().merge_registry(registry.clone()).unwrap();

    let taskmeter_text = String::from_utf8(own.metrics(None).body).unwrap();
    let text = String::from_utf8(merged.metrics(None).body).unwrap();
    assert_eq!(text, format!("{taskmeter_text}{}", gather(&registry)));
    let scraped = samples(&text);
    assert_eq!(
        scraped.get(&("api_requests_total".to_owned(), String::new())),
        Some(&"2.0".to_owned())
    );
    requests.inc();
    let again = samples(&String::from_utf8(merged.metrics(None).body).unwrap());
    assert_eq!(
        again.get(&("api_requests_total".to_owned(), String::new())),
        Some(&"3.0".to_owned()),
        "the registry is read at each scrape, not cached with the snapshot's body"
    );

    let openmetrics = Some("application/openmetrics-text; version=1.0.0");
    let om_own = String::from_utf8(own.metrics(openmetrics).body).unwrap();
    let om = String::from_utf8(merged.metrics(openmetrics).body).unwrap();
    assert!(om.starts_with(om_own.trim_end_matches("# EOF\n")));
    assert!(om.ends_with("\n# EOF\n") && om.matches("# EOF").count() == 1);
    let tail = &om[om_own.len() - "# EOF\n".len()..];
    for line in [
        "# TYPE api_requests counter\n",
        "api_requests_total 3\n",
        "# TYPE api_errors unknown\n",
        "api_errors{path=\"/a\\\"b\\\\c\\nd\"} 5\n",
        "# HELP api_connections Open connections \\\\ now\n",
        "api_connections -3\n",
        "# TYPE api_latency_seconds histogram\n",
        "api_latency_seconds_bucket{le=\"0.1\"} 1\n",
        "api_latency_seconds_bucket{le=\"1\"} 3\n",
        "api_latency_seconds_bucket{le=\"+Inf\"} 4\n",
        "api_latency_seconds_count 4\n",
    ] {
        assert!(tail.contains(line), "{line:?} not in\n{tail}");
    }
    let om_samples = openmetrics_samples(&om);
    let own_samples = openmetrics_samples(&om_own);
    // A counter, a counter without `_total`, a gauge, and 2 buckets, +Inf, sum and count.
    assert_eq!(om_samples.len(), own_samples.len() + 8);
}

/// With native histograms, the protobuf body holds taskmeter's families, its native
/// histograms among them, and the registry's, each metric read back whole.
#[test]
fn a_merged_registry_is_served_in_protobuf_with_the_native_histograms() {
    use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as model;
    use prost::Message;
    use taskmeter::export::Endpoint;
    let metrics = recorded_engine();
    let (registry, _) = application_registry();
    let merged = Endpoint::new(metrics).merge_registry(registry).unwrap();
    let accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                  encoding=delimited";
    let response = merged.metrics(Some(accept));
    let mut body = &response.body[..];
    let mut families = BTreeMap::new();
    while !body.is_empty() {
        let family = model::MetricFamily::decode_length_delimited(&mut body).unwrap();
        assert!(
            families.insert(family.name.clone(), family).is_none(),
            "a family twice"
        );
    }
    let native = &families["solti_runner_task_duration_native_seconds"];
    assert!(native.metric.iter().any(|m| {
        m.histogram
            .as_ref()
            .is_some_and(|h| h.schema != 0 && !h.positive_delta.is_empty())
    }));
    let value = |name: &str| {
        let metric = &families[name].metric[0];
        (metric.counter.as_ref().map(|c| c.value)).or(metric.gauge.as_ref().map(|g| g.value))
    };
    assert_eq!(value("api_requests_total"), Some(2.0));
    assert_eq!(value("api_connections"), Some(-3.0));
    let errors = &families["api_errors"].metric[0];
    assert_eq!(errors.label[0].value, "/a\"b\\c\nd");
    assert_eq!(errors.counter.as_ref().map(|c| c.value), Some(5.0));
    let latency = families["api_latency_seconds"].metric[0]
        .histogram
        .clone()
        .unwrap();
    assert_eq!(latency.sample_count, 4);
    assert!((latency.sample_sum - 5.25).abs() < 1e-9);
    let buckets: Vec<(f64, u64)> = (latency.bucket.iter())
        .map(|b| (b.upper_bound, b.cumulative_count))
        .collect();
    assert_eq!(buckets, [(0.1, 1), (1.0, 3)]);
}

/// A registry holding one of taskmeter's names, a sample's included, is refused, and the
/// names follow the export configuration; a family registered under such a name after the
/// merge is left out of the scrape.
#[test]
fn a_merged_registry_may_not_use_taskmeter_names() {
    use prometheus::Gauge;
    use taskmeter::export::Endpoint;
    let metrics = recorded_engine();
    for name in [
        "solti_runner_tasks_started_total",
        "solti_runner_tasks_started",
        "solti_runner_task_duration_seconds_bucket",
        "solti_runner_task_duration_hdr_seconds_count",
        "solti_runner_task_duration_native_seconds",
    ] {
        let registry = Registry::new();
        registry
            .register(Box::new(Gauge::new(name, "mine").unwrap()))
            .unwrap();
        let refused = Endpoint::new(Arc::clone(&metrics))
            .merge_registry(registry.clone())
            .unwrap_err();
        assert_eq!(refused.family(), name);
        assert!(refused.to_string().contains(name));
        let renamed = ExportConfig::builder().namespace("other").build().unwrap();
        let accepted = Endpoint::new(Arc::clone(&metrics))
            .export(renamed)
            .merge_registry(registry);
        assert!(accepted.is_ok(), "{name} under another namespace");
    }
    let registry = Registry::new();
    let merged = Endpoint::new(Arc::clone(&metrics))
        .merge_registry(registry.clone())
        .unwrap();
    let late = Gauge::new("solti_runner_tasks_in_flight", "mine").unwrap();
    late.set(1234.0);
    registry.register(Box::new(late)).unwrap();
    let text = String::from_utf8(merged.metrics(None).body).unwrap();
    assert_eq!(
        text.matches("# TYPE solti_runner_tasks_in_flight").count(),
        1
    );
    assert!(!text.contains("1234"));
}

/// The built-in server refuses, when started, a registry that uses one of taskmeter's names.
#[test]
fn the_server_refuses_a_colliding_registry_when_started() {
    use taskmeter::server::{MetricsServer, ServerConfig};
    let registry = Registry::new();
    let clash = IntGauge::new("solti_runner_tasks_in_flight", "mine").unwrap();
    registry.register(Box::new(clash)).unwrap();
    let config = ServerConfig::default()
        .bind("127.0.0.1:0".parse().unwrap())
        .merge_registry(registry);
    let error = MetricsServer::start(recorded_engine(), config).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("solti_runner_tasks_in_flight"),
        "{error}"
    );
}
