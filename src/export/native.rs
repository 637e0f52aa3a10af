//! Prometheus native histograms, in the protobuf exposition (feature `native-histograms`).
//!
//! Prometheus scrapes native histograms only in its protobuf format
//! (`io.prometheus.client.MetricFamily`, length-delimited), which it asks for in the `Accept`
//! header when its `native-histograms` feature is on. [`Endpoint`](super::Endpoint) serves
//! it then; [`Snapshot::to_protobuf`] renders it. The protobuf types are
//! `prometheus-client`'s, encoded by `prost`.
//!
//! The protobuf exposition carries every family of the text formats, the classic histogram
//! included (older servers and existing dashboards keep their `_bucket` series), plus
//! `<namespace>_<subsystem>_task_duration_native_seconds`: each duration histogram as a
//! native histogram, derived from the HDR data (every HDR slot's count goes to the native
//! bucket of the slot's lowest value, the rule the classic buckets follow too).
//!
//! # Resolution
//!
//! Native buckets grow by a factor of `2^(2^-schema)`. The schema is the coarsest whose
//! buckets are no wider than the engine's HDR precision, at most 8 (the finest Prometheus
//! accepts): [`schema_for`] gives 3 for 1 significant digit (buckets 9.1 % wide), 7 for 2
//! (0.54 %), and 8 from 3 digits on (0.27 %, against HDR's 0.1 %: the native histogram is
//! then the coarser of the two). A quantile Prometheus computes from it lies in the bucket
//! holding that rank, so within about one bucket width (plus the HDR slot) of the HDR value.
//! Durations of 0 ms go to the zero bucket.

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as model;
use prost::Message;

use super::ExportConfig;
use super::families::{self, Encoder, Kind, Labels, Number};
use crate::snapshot::{DurationCounts, Snapshot};

/// `Content-Type` of the protobuf exposition.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// The zero bucket's breadth: only 0 ms falls in it (the Go client's default threshold).
const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// The finest schema Prometheus accepts.
const MAX_SCHEMA: i32 = 8;

impl Snapshot {
    /// This snapshot in Prometheus's protobuf exposition (length-delimited `MetricFamily`
    /// messages), with the native histogram family: the body of a `/metrics` response of
    /// [`PROTOBUF_CONTENT_TYPE`].
    ///
    /// ```
    /// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
    /// use taskmeter::export::ExportConfig;
    ///
    /// let metrics = AtomicMetrics::new();
    /// metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 250);
    /// let body = metrics.snapshot().to_protobuf(&ExportConfig::default());
    /// assert!(!body.is_empty());
    /// ```
    pub fn to_protobuf(&self, config: &ExportConfig) -> Vec<u8> {
        let mut encoder = ProtobufEncoder {
            families: Vec::new(),
            constant: config
                .const_labels()
                .iter()
                .map(|(name, value)| label(name, value))
                .collect(),
        };
        families::encode(self, config, &mut encoder);
        let mut body = Vec::new();
        for family in encoder.families {
            family
                .encode_length_delimited(&mut body)
                .expect("a Vec grows as needed");
        }
        body
    }
}

/// The coarsest native schema whose buckets are no wider than `significant_digits` of HDR
/// precision (`2^(2^-schema) - 1 <= 10^-digits`), at most 8.
pub fn schema_for(significant_digits: u8) -> i32 {
    let precision = 10_f64.powi(-i32::from(significant_digits));
    (-4..MAX_SCHEMA)
        .find(|&schema| growth(schema) - 1.0 <= precision)
        .unwrap_or(MAX_SCHEMA)
}

/// How much each bucket's upper bound exceeds the previous one's, as a factor.
fn growth(schema: i32) -> f64 {
    2_f64.powf(2_f64.powi(-schema))
}

/// The native bucket holding `value` (> 0, finite): bucket `i` is `(2^((i-1)/n), 2^(i/n)]`
/// with `n = 2^schema`, so `i` is the least integer with `value^n <= 2^i`: `ceil(n log2 value)`.
///
/// Exact, whatever the float library: with `value = m 2^e` (`m` odd), `n log2 value` is
/// `n e + n log2 m`, whose ceiling is read from the bit length of the integer `m^n` when the
/// estimate by `log2` is within 1e-6 of an integer (a value at or next to a boundary), and from
/// the estimate otherwise (its error is about 1e-13). Prometheus's clients compare the value's
/// fraction with a table of rounded bounds: the two agree on every value but those within a
/// rounding error of an irrational bound.
fn bucket_index(value: f64, schema: i32) -> i32 {
    debug_assert!(value > 0.0 && value.is_finite(), "{value}");
    let (odd, exponent) = odd_and_exponent(value);
    // `m` is odd: `m^n` is a power of two only for `m = 1`, which adds nothing to the ceiling.
    let above_power_of_two = i64::from(odd != 1);
    if schema <= 0 {
        // Buckets of `2^-schema` whole powers of two: the ceiling of log2 divided by that.
        let ceil_log2 =
            i64::from(exponent) + i64::from(63 - odd.leading_zeros()) + above_power_of_two;
        let index =
            ceil_log2.div_euclid(1 << -schema) + i64::from(ceil_log2.rem_euclid(1 << -schema) != 0);
        return index as i32;
    }
    let n = 1_i64 << schema;
    let estimate = value.log2() * n as f64;
    if (estimate - estimate.round()).abs() > 1e-6 {
        return estimate.ceil() as i32;
    }
    let ceil_log2 = bit_length_of_power(odd, schema as u32) as i64 - 1 + above_power_of_two;
    (i64::from(exponent) * n + ceil_log2) as i32
}

/// `value` (> 0, finite) as `odd 2^exponent`, `odd` an odd integer: exact, from its bits.
fn odd_and_exponent(value: f64) -> (u64, i32) {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exponent) = match biased {
        // Subnormal: no implicit bit.
        0 => (fraction, -1074),
        _ => (fraction | 1 << 52, biased - 1075),
    };
    let zeros = mantissa.trailing_zeros();
    (mantissa >> zeros, exponent + zeros as i32)
}

/// The bit length of `m^(2^squarings)`, computed exactly by squaring a little-endian integer.
fn bit_length_of_power(m: u64, squarings: u32) -> u64 {
    let mut limbs = vec![m];
    for _ in 0..squarings {
        let mut square = vec![0_u64; 2 * limbs.len()];
        for (i, &a) in limbs.iter().enumerate() {
            let mut carry = 0_u128;
            for (j, &b) in limbs.iter().enumerate() {
                let sum = u128::from(a) * u128::from(b) + u128::from(square[i + j]) + carry;
                square[i + j] = sum as u64;
                carry = sum >> 64;
            }
            square[i + limbs.len()] = carry as u64;
        }
        while square.last() == Some(&0) {
            square.pop();
        }
        limbs = square;
    }
    let top = limbs.last().copied().unwrap_or(0);
    (limbs.len() as u64 - 1) * 64 + u64::from(64 - top.leading_zeros())
}

/// The native histogram of `histogram` (values in ms), in seconds.
fn native(durations: &DurationCounts, count: u64, sum_ms: u128) -> model::Histogram {
    let schema = schema_for(durations.significant_digits());
    let mut native = model::Histogram {
        sample_count: count,
        sample_sum: sum_ms as f64 / 1e3,
        schema,
        zero_threshold: ZERO_THRESHOLD,
        ..Default::default()
    };
    // Buckets in increasing order, each slot's count at its lowest value's bucket.
    let mut buckets: Vec<(i32, u64)> = Vec::new();
    for slot in durations.iter() {
        let (lowest, slot_count) = (slot.lowest_ms, slot.count);
        if lowest == 0 {
            native.zero_count += slot_count;
            continue;
        }
        let index = bucket_index(lowest as f64 / 1e3, schema);
        match buckets.last_mut() {
            Some((last, total)) if *last == index => *total += slot_count,
            _ => buckets.push((index, slot_count)),
        }
    }
    // Spans of consecutive buckets; each count as a delta from the previous bucket's.
    let mut previous: Option<(i32, i64)> = None;
    for (index, bucket_count) in buckets {
        let bucket_count = i64::try_from(bucket_count).unwrap_or(i64::MAX);
        match previous {
            Some((last, _)) if index == last + 1 => {
                native.positive_span.last_mut().expect("a span").length += 1;
            }
            _ => native.positive_span.push(model::BucketSpan {
                offset: previous.map_or(index, |(last, _)| index - last - 1),
                length: 1,
            }),
        }
        let before = previous.map_or(0, |(_, count)| count);
        native.positive_delta.push(bucket_count - before);
        previous = Some((index, bucket_count));
    }
    native
}

fn label(name: &str, value: &str) -> model::LabelPair {
    model::LabelPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// The protobuf format's [`Encoder`]: one `MetricFamily` per family.
struct ProtobufEncoder {
    families: Vec<model::MetricFamily>,
    constant: Vec<model::LabelPair>,
}

impl ProtobufEncoder {
    /// Adds a series with `labels` and the constant labels to the current family.
    fn metric(&mut self, labels: Labels<'_>) -> &mut model::Metric {
        let family = self.families.last_mut().expect("a family first");
        let mut all: Vec<model::LabelPair> = labels.iter().map(|(n, v)| label(n, v)).collect();
        all.extend(self.constant.iter().cloned());
        family.metric.push(model::Metric {
            label: all,
            ..Default::default()
        });
        family.metric.last_mut().expect("just pushed")
    }
}

impl Encoder for ProtobufEncoder {
    fn family(&mut self, name: &str, kind: Kind, help: &str, _unit: Option<&str>) {
        let kind = match kind {
            Kind::Counter => model::MetricType::Counter,
            Kind::Gauge => model::MetricType::Gauge,
            Kind::Histogram => model::MetricType::Histogram,
            Kind::Summary => model::MetricType::Summary,
        };
        // The unit stays out: Prometheus's own metrics.proto before 2.50 has no such field.
        self.families.push(model::MetricFamily {
            name: name.to_owned(),
            help: help.to_owned(),
            r#type: kind as i32,
            ..Default::default()
        });
    }

    fn number(&mut self, labels: Labels<'_>, value: Number) {
        let is_counter = self.families.last().expect("a family first").r#type
            == model::MetricType::Counter as i32;
        let value = match value {
            Number::Count(value) => value as f64,
            Number::Signed(value) => value as f64,
            Number::Seconds(value) => value,
        };
        let metric = self.metric(labels);
        if is_counter {
            metric.counter = Some(model::Counter {
                value,
                ..Default::default()
            });
        } else {
            metric.gauge = Some(model::Gauge { value });
        }
    }

    fn histogram(
        &mut self,
        labels: Labels<'_>,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum_ms: u128,
    ) {
        let bucket = bounds
            .iter()
            .zip(cumulative)
            .map(|(&upper_bound, &cumulative_count)| model::Bucket {
                cumulative_count,
                upper_bound,
                ..Default::default()
            })
            .collect();
        self.metric(labels).histogram = Some(model::Histogram {
            sample_count: count,
            sample_sum: sum_ms as f64 / 1e3,
            bucket,
            ..Default::default()
        });
    }

    fn summary(
        &mut self,
        labels: Labels<'_>,
        quantiles: &[(f64, Option<u64>)],
        count: u64,
        sum_ms: u128,
    ) {
        let quantile = quantiles
            .iter()
            .map(|&(quantile, value_ms)| model::Quantile {
                quantile,
                value: value_ms.map_or(f64::NAN, |ms| ms as f64 / 1e3),
            })
            .collect();
        self.metric(labels).summary = Some(model::Summary {
            sample_count: count,
            sample_sum: sum_ms as f64 / 1e3,
            quantile,
            ..Default::default()
        });
    }

    fn carries_native_histograms(&self) -> bool {
        true
    }

    fn native_histogram(
        &mut self,
        labels: Labels<'_>,
        durations: &DurationCounts,
        count: u64,
        sum_ms: u128,
    ) {
        self.metric(labels).histogram = Some(native(durations, count, sum_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_the_coarsest_as_fine_as_the_hdr_precision() {
        assert_eq!(schema_for(1), 3);
        assert_eq!(schema_for(2), 7);
        for digits in 3..=5 {
            assert_eq!(schema_for(digits), 8);
        }
        for digits in 1..=2 {
            let schema = schema_for(digits);
            let precision = 10_f64.powi(-i32::from(digits));
            assert!(growth(schema) - 1.0 <= precision);
            assert!(growth(schema - 1) - 1.0 > precision);
        }
    }

    #[test]
    fn bucket_indexes_follow_prometheus_boundaries() {
        // Schema 0: buckets (0.5, 1], (1, 2], (2, 4]: upper bounds are inclusive.
        assert_eq!(bucket_index(1.0, 0), 0);
        assert_eq!(bucket_index(1.5, 0), 1);
        assert_eq!(bucket_index(2.0, 0), 1);
        assert_eq!(bucket_index(2.0001, 0), 2);
        assert_eq!(bucket_index(0.001, 0), -9); // (2^-10, 2^-9]
        assert_eq!(bucket_index(4.0, -1), 1); // (1, 4]
        assert_eq!(bucket_index(4.5, -1), 2);
        assert_eq!(bucket_index(0.25, -2), 0); // (2^-4, 1]
        assert_eq!(bucket_index(0.0625, -2), -1); // (2^-8, 2^-4]
        // Values away from every boundary (those are pinned exactly below), checked against
        // bounds from `powf` with a margin far above its error, which Miri perturbs.
        for schema in [3, 7, 8] {
            for ms in [1_u32, 7, 251, 999, 86_400_000] {
                let value = f64::from(ms) / 1e3;
                let index = bucket_index(value, schema);
                let upper = |i: i32| 2_f64.powf(f64::from(i) * 2_f64.powi(-schema));
                assert!(
                    upper(index - 1) * (1.0 + 1e-9) < value && value * (1.0 + 1e-9) <= upper(index),
                    "{value} s, {schema}"
                );
            }
        }
    }

    /// The values at the boundaries themselves, and one unit in the last place either side,
    /// pinned by exact arithmetic alone (no float library): the same on every platform and
    /// under Miri.
    #[test]
    fn bucket_indexes_at_boundaries_are_exact() {
        // Under Miri, where the exact path's squarings are slow, a few of each.
        let (schemas, powers): (Vec<i32>, Vec<i32>) = if cfg!(miri) {
            (vec![-4, -1, 0, 1, 8], vec![-12, -1, 0, 1, 20])
        } else {
            ((-4..=MAX_SCHEMA).collect(), (-12..=20).collect())
        };
        for &schema in &schemas {
            for &power in &powers {
                // 2^power: the upper bound of bucket `power * 2^schema` (rounded up for
                // schema < 0, where a bucket spans several powers).
                // Built from its bits: `exp2` is the float library's, which Miri perturbs.
                let value = f64::from_bits(((power + 1023) as u64) << 52);
                let expected = if schema >= 0 {
                    power << schema
                } else {
                    (power + (1 << -schema) - 1).div_euclid(1 << -schema)
                };
                assert_eq!(
                    bucket_index(value, schema),
                    expected,
                    "2^{power}, schema {schema}"
                );
                assert_eq!(
                    bucket_index(value.next_down(), schema),
                    expected,
                    "below 2^{power}, schema {schema}"
                );
                let next = if schema >= 0 || (power.rem_euclid(1 << -schema)) == 0 {
                    expected + 1
                } else {
                    expected
                };
                assert_eq!(
                    bucket_index(value.next_up(), schema),
                    next,
                    "above 2^{power}, schema {schema}"
                );
            }
        }
        // sqrt(2) lies between two doubles: the upper one is above the bound of bucket 1 of
        // schema 1 (2^(1/2)), the lower one below it, as Prometheus's bound table also says.
        let above = std::f64::consts::SQRT_2;
        let below = above.next_down();
        assert_eq!(below.to_bits() + 1, above.to_bits());
        assert_eq!(bucket_index(above, 1), 2);
        assert_eq!(bucket_index(below, 1), 1);
        // The same bound at schema 8 is bucket 128's; and 2^(3/4) at schema 2 (bucket 3).
        assert_eq!(bucket_index(above, 8), 129);
        assert_eq!(bucket_index(below, 8), 128);
        let three_quarters = 1.681_792_830_507_429_f64; // the double nearest 2^(3/4), below it
        assert_eq!(bucket_index(three_quarters, 2), 3);
        assert_eq!(bucket_index(three_quarters.next_up(), 2), 4);
        // Subnormal and huge values.
        assert_eq!(bucket_index(f64::from_bits(1), 0), -1074);
        assert_eq!(bucket_index(f64::MAX, 0), 1024);
    }

    #[test]
    fn accept_picks_protobuf_only_when_ranked_first() {
        use crate::export::Format;
        let picks = |accept| Format::from_accept(accept) == Format::Protobuf;
        let prometheus_native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(picks(Some(prometheus_native)));
        let classic = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert!(!picks(Some(classic)));
        let text_first = "text/plain;q=0.9,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5";
        assert!(!picks(Some(text_first)));
        // Another message or encoding is not this format.
        assert!(!picks(Some(
            "application/vnd.google.protobuf;proto=other;encoding=delimited"
        )));
        assert!(!picks(Some(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
        )));
        assert!(!picks(None));
    }
}
