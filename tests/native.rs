//! The protobuf exposition: the same families and values as the text format, and native
//! histograms that hold the HDR data at the schema's resolution.
#![cfg(all(feature = "native-histograms", not(loom)))]

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as model;
use prometheus_parse::{Scrape, Value};
use prost::Message;
use taskmeter::export::native::{PROTOBUF_CONTENT_TYPE, schema_for};
use taskmeter::export::{Endpoint, ExportConfig};
use taskmeter::{AtomicMetrics, RunnerType, Snapshot, TaskOutcome};
use taskmeter_workload::{replay, task_mix};

fn decode(mut body: &[u8]) -> Vec<model::MetricFamily> {
    let mut families = Vec::new();
    while !body.is_empty() {
        families.push(model::MetricFamily::decode_length_delimited(&mut body).unwrap());
    }
    families
}

fn labels_of(metric: &model::Metric) -> BTreeMap<String, String> {
    metric
        .label
        .iter()
        .map(|pair| (pair.name.clone(), pair.value.clone()))
        .collect()
}

fn recorded(digits: u8) -> Arc<Snapshot> {
    let metrics = AtomicMetrics::builder()
        .significant_digits(digits)
        .build()
        .unwrap();
    replay(&metrics, &task_mix(20_000, 11));
    metrics.snapshot()
}

/// Every sample of the text exposition, `(name, labels) → value`, against the same read from
/// the protobuf: names, types, help texts and values agree, family by family.
#[test]
fn protobuf_carries_every_text_family_with_the_same_values() {
    let snapshot = recorded(3);
    let config = ExportConfig::builder()
        .const_label("node", "eu-1")
        .build()
        .unwrap();
    let families = decode(&snapshot.to_protobuf(&config));
    let mut text = String::new();
    snapshot.write_prometheus(&config, &mut text);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();

    let native_name = "solti_runner_task_duration_native_seconds";
    let proto_names: Vec<&str> = families
        .iter()
        .map(|f| f.name.as_str())
        .filter(|&n| n != native_name)
        .collect();
    let text_names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    assert_eq!(proto_names, text_names);
    for family in &families {
        if family.name == native_name {
            continue;
        }
        let help = format!("# HELP {} {}\n", family.name, family.help);
        assert!(text.contains(&help), "{help}");
    }

    let mut compared = 0;
    for sample in &scrape.samples {
        let family = families
            .iter()
            .find(|f| {
                sample.metric == f.name
                    || sample.metric.starts_with(&format!("{}_", f.name))
                        && f.r#type != model::MetricType::Counter as i32
            })
            .unwrap_or_else(|| panic!("{} is in the protobuf", sample.metric));
        let wanted: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .filter(|(k, _)| k != "le" && k != "quantile")
            .collect();
        assert_eq!(wanted.get("node").map(String::as_str), Some("eu-1"));
        let metric = family
            .metric
            .iter()
            .find(|m| labels_of(m) == wanted)
            .unwrap_or_else(|| panic!("{} {wanted:?} in the protobuf", sample.metric));
        let same = |a: f64, b: f64| {
            a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(1.0)
        };
        match &sample.value {
            Value::Counter(v) => assert!(same(*v, metric.counter.as_ref().unwrap().value)),
            Value::Gauge(v) if sample.metric.ends_with("timestamp_seconds") => {
                assert!((v - metric.gauge.as_ref().unwrap().value).abs() < 1e-3)
            }
            Value::Gauge(v) => assert!(same(*v, metric.gauge.as_ref().unwrap().value)),
            Value::Histogram(buckets) => {
                let histogram = metric.histogram.as_ref().unwrap();
                for bucket in buckets.iter().filter(|b| b.less_than.is_finite()) {
                    let proto = histogram
                        .bucket
                        .iter()
                        .find(|p| p.upper_bound == bucket.less_than)
                        .unwrap();
                    assert_eq!(
                        proto.cumulative_count as f64, bucket.count,
                        "{wanted:?} le {}",
                        bucket.less_than
                    );
                }
                assert_eq!(histogram.bucket.len(), buckets.len() - 1, "+Inf is implied");
            }
            Value::Summary(quantiles) => {
                let summary = metric.summary.as_ref().unwrap();
                for (text, proto) in quantiles.iter().zip(&summary.quantile) {
                    assert_eq!(text.quantile, proto.quantile);
                    assert!(
                        same(text.count, proto.value),
                        "{} vs {}",
                        text.count,
                        proto.value
                    );
                }
            }
            Value::Untyped(v) => {
                // `_sum` and `_count` of histograms and summaries.
                let (count, sum) = match (&metric.histogram, &metric.summary) {
                    (Some(h), _) => (h.sample_count, h.sample_sum),
                    (_, Some(s)) => (s.sample_count, s.sample_sum),
                    _ => panic!("{}: not a histogram or summary", sample.metric),
                };
                let proto = if sample.metric.ends_with("_count") {
                    count as f64
                } else {
                    sum
                };
                assert!(same(*v, proto), "{}: {v} vs {proto}", sample.metric);
            }
        }
        compared += 1;
    }
    assert!(compared > 100, "{compared} samples compared");
}

/// The native buckets, rebuilt from spans and deltas: `(upper bound in s, count)`.
fn native_buckets(histogram: &model::Histogram) -> Vec<(f64, u64)> {
    let growth = 2_f64.powf(2_f64.powi(-histogram.schema));
    let mut buckets = Vec::new();
    let (mut index, mut count, mut deltas) = (0_i32, 0_i64, histogram.positive_delta.iter());
    for (position, span) in histogram.positive_span.iter().enumerate() {
        index += span.offset + if position == 0 { 0 } else { 1 };
        for step in 0..span.length {
            if step > 0 {
                index += 1;
            }
            count += deltas.next().expect("a delta per bucket");
            assert!(count > 0, "no empty bucket is written");
            buckets.push((growth.powi(index), count as u64));
        }
    }
    assert!(deltas.next().is_none(), "a bucket per delta");
    buckets
}

/// Each native histogram holds exactly the HDR histogram's completions, bucket by bucket at
/// its schema, and its p99 bucket holds the HDR p99 to within one bucket.
#[test]
fn native_histograms_hold_the_hdr_data_at_the_schemas_resolution() {
    for digits in [1, 2, 3] {
        let snapshot = recorded(digits);
        let families = decode(&snapshot.to_protobuf(&ExportConfig::default()));
        let native = families
            .iter()
            .find(|f| f.name == "solti_runner_task_duration_native_seconds")
            .expect("the native family");
        assert_eq!(native.metric.len(), 12);
        for metric in &native.metric {
            let labels = labels_of(metric);
            let runner = RunnerType::ALL
                .into_iter()
                .find(|r| r.as_label() == labels["runner"])
                .unwrap();
            let outcome = TaskOutcome::ALL
                .into_iter()
                .find(|o| o.as_label() == labels["outcome"])
                .unwrap();
            let hdr = snapshot.cumulative().duration(runner, outcome);
            let histogram = metric.histogram.as_ref().unwrap();
            assert_eq!(histogram.schema, schema_for(digits));
            assert!(
                histogram.zero_threshold > 0.0,
                "marks the histogram native even when empty"
            );
            let buckets = native_buckets(histogram);
            let total: u64 = buckets.iter().map(|b| b.1).sum::<u64>() + histogram.zero_count;
            assert_eq!(total, hdr.len());
            assert_eq!(histogram.sample_count, hdr.len());
            assert_eq!(histogram.zero_count, hdr.count_between(0, 0));
            // Every bucket holds exactly the HDR slots whose lowest value it covers.
            let growth = 2_f64.powf(2_f64.powi(-histogram.schema));
            for &(upper, count) in &buckets {
                let lower = upper / growth;
                let in_hdr: u64 = hdr
                    .iter_recorded()
                    .filter(|slot| {
                        let lowest = hdr.lowest_equivalent(slot.value_iterated_to()) as f64 / 1e3;
                        lowest > lower * (1.0 + 1e-12) && lowest <= upper * (1.0 + 1e-12)
                    })
                    .map(|slot| slot.count_at_value())
                    .sum();
                assert_eq!(
                    in_hdr, count,
                    "bucket ({lower}, {upper}] at {digits} digits"
                );
            }
            if hdr.len() >= 100 {
                let rank = (0.99 * hdr.len() as f64).ceil() as u64;
                let mut seen = histogram.zero_count;
                let (upper, _) = *buckets
                    .iter()
                    .find(|b| {
                        seen += b.1;
                        seen >= rank
                    })
                    .unwrap();
                let p99 = hdr.value_at_quantile(0.99) as f64 / 1e3;
                // HDR's p99 is its slot's highest value, the native bucket its lowest one's:
                // they differ by at most a slot, 2 / sub-buckets relative (or 1 ms).
                let sub_buckets = (2.0 * 10_f64.powi(i32::from(digits))).log2().ceil().exp2();
                let slot = 2.0 / sub_buckets;
                assert!(
                    p99 >= upper / growth * (1.0 - 1e-12) && p99 <= upper * (1.0 + slot) + 1e-3,
                    "{labels:?} at {digits} digits: HDR p99 {p99} s, native bucket ≤ {upper}"
                );
            }
        }
    }
}

#[test]
fn the_endpoint_serves_protobuf_to_a_native_histogram_scrape_and_text_otherwise() {
    let metrics = Arc::new(AtomicMetrics::new());
    let endpoint = Endpoint::new(Arc::clone(&metrics));
    let prometheus_native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let response = endpoint.metrics(Some(prometheus_native));
    assert_eq!(response.content_type, PROTOBUF_CONTENT_TYPE);
    assert_eq!(
        response.body,
        metrics.latest().to_protobuf(&ExportConfig::default())
    );
    let response = endpoint.metrics(Some("text/plain;version=0.0.4"));
    assert!(response.content_type.starts_with("text/plain"));
}
