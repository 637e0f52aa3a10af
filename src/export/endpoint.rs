//! What a `/metrics` endpoint answers, whatever serves it: [`MetricsServer`], the `axum`
//! router, or a user's own HTTP stack.
//!
//! [`Endpoint`] picks the snapshot (the published one, or a fresh one when that is stale),
//! negotiates the format from the `Accept` header, and renders the body. Serving it is one
//! call per request:
//!
//! ```
//! use std::sync::Arc;
//! use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType};
//! use taskmeter::export::Endpoint;
//!
//! let metrics = Arc::new(AtomicMetrics::new());
//! metrics.record_task_started(RunnerType::Wasm);
//! let endpoint = Endpoint::new(Arc::clone(&metrics));
//!
//! // In a request handler: the request's `Accept` header in, a content type and body out.
//! let response = endpoint.metrics(Some("text/plain;version=0.0.4"));
//! assert_eq!(response.content_type, "text/plain; version=0.0.4; charset=utf-8");
//! let body = String::from_utf8(response.body).unwrap();
//! assert!(body.contains("solti_runner_tasks_started_total{runner=\"wasm\"} 1\n"));
//! ```
//!
//! [`MetricsServer`]: crate::server::MetricsServer

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ExportConfig, Format};
use crate::{AtomicMetrics, Snapshot};

/// Default bound on the age of the snapshot a scrape is served: older, and the scrape takes
/// one itself.
pub const DEFAULT_MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(30);

/// A response body and its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposition {
    /// The value of the `Content-Type` header.
    pub content_type: &'static str,
    /// The body: text for the text formats, bytes for protobuf.
    pub body: Vec<u8>,
}

/// Answers `/metrics` scrapes from one engine: cheap to clone, shareable between threads.
///
/// Scrapes read the published snapshot ([`AtomicMetrics::latest`]), so a scrape never slows
/// recording, unless that snapshot is older than
/// [`max_snapshot_age`](Self::max_snapshot_age) by the wall clock, or none was taken yet:
/// then the scrape takes a snapshot itself, so that stale figures are never served as
/// current. A snapshot a scrape takes is an interval a snapshotter's sinks do not see; with a
/// snapshotter running more often than `max_snapshot_age`, scrapes take none.
///
/// Each body is rendered once per snapshot and format: scrapes of a snapshot already rendered
/// in their format (by this endpoint or a clone of it) copy the body, and concurrent scrapes
/// of a new one wait for a single render.
#[derive(Debug, Clone)]
pub struct Endpoint {
    metrics: Arc<AtomicMetrics>,
    export: ExportConfig,
    max_snapshot_age: Duration,
    rendered: Arc<Rendered>,
    /// An application's registry served with taskmeter's families.
    #[cfg(feature = "prometheus")]
    merged: Option<super::merged::MergedRegistry>,
}

/// Per body kind, the last body rendered.
#[derive(Debug, Default)]
struct Rendered {
    bodies: [Mutex<Option<Body>>; BODY_KINDS],
}

/// A rendered body and the sequence of its snapshot.
#[derive(Debug)]
struct Body {
    sequence: u64,
    bytes: Vec<u8>,
}

/// Prometheus text, OpenMetrics, protobuf, JSON.
const BODY_KINDS: usize = 4;

impl Rendered {
    /// The body of kind `kind` for `snapshot`, rendered by `render` unless it already was.
    fn body(&self, kind: usize, snapshot: &Snapshot, render: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        // A render that panicked left nothing behind: the cache is still sound.
        let mut cached = self.bodies[kind]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*cached {
            Some(body) if body.sequence == snapshot.sequence() => body.bytes.clone(),
            _ => {
                let bytes = render();
                *cached = Some(Body {
                    sequence: snapshot.sequence(),
                    bytes: bytes.clone(),
                });
                bytes
            }
        }
    }
}

impl Endpoint {
    /// An endpoint with the default [`ExportConfig`] and [`DEFAULT_MAX_SNAPSHOT_AGE`].
    pub fn new(metrics: Arc<AtomicMetrics>) -> Self {
        Endpoint {
            metrics,
            export: ExportConfig::default(),
            max_snapshot_age: DEFAULT_MAX_SNAPSHOT_AGE,
            rendered: Arc::default(),
            #[cfg(feature = "prometheus")]
            merged: None,
        }
    }

    /// How the expositions are named and shaped.
    ///
    /// With a [merged registry](Self::merge_registry), a family of the registry that uses one
    /// of the new configuration's names is left out of every scrape: merge after choosing the
    /// configuration to have such a registry refused instead.
    pub fn export(mut self, export: ExportConfig) -> Self {
        self.export = export;
        // Bodies rendered with another configuration are not this endpoint's.
        self.rendered = Arc::default();
        #[cfg(feature = "prometheus")]
        if let Some(merged) = &self.merged {
            let taken = super::merged::taskmeter_names(&self.metrics.latest(), &self.export);
            self.merged = Some(merged.with_taken(taken));
        }
        self
    }

    /// Serves `registry`, an application's `prometheus::Registry` (prometheus 0.14, feature
    /// `prometheus`), with taskmeter's families: one scrape holds both, in every format this
    /// endpoint negotiates (Prometheus text, OpenMetrics, and protobuf with taskmeter's
    /// native histograms; the JSON body stays taskmeter's alone). The other way round,
    /// [`PrometheusCollector`](crate::collector::PrometheusCollector) puts taskmeter's
    /// families in the registry, without native histograms.
    ///
    /// The registry is gathered at every scrape, never cached with a snapshot's body. Refused
    /// with [`RegistryCollision`](super::RegistryCollision) when one of its families uses a
    /// name of taskmeter's exposition under this endpoint's [`ExportConfig`] (a family's or a
    /// sample's, every optional family included). Left out of a scrape: a family registered
    /// after the merge under such a name, an untyped family (prometheus's text encoder, which
    /// writes the registry, has none), and everything the registry holds if one of its
    /// collectors panics.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use prometheus::{IntCounter, Registry};
    /// use taskmeter::export::Endpoint;
    /// use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType};
    ///
    /// let registry = Registry::new();
    /// let requests = IntCounter::new("api_requests_total", "API requests").unwrap();
    /// registry.register(Box::new(requests.clone())).unwrap();
    /// let metrics = Arc::new(AtomicMetrics::new());
    /// let endpoint = Endpoint::new(Arc::clone(&metrics)).merge_registry(registry).unwrap();
    ///
    /// requests.inc();
    /// metrics.record_task_started(RunnerType::Wasm);
    /// let body = String::from_utf8(endpoint.metrics(None).body).unwrap();
    /// assert!(body.contains("api_requests_total 1\n"));
    /// assert!(body.contains("solti_runner_tasks_started_total{runner=\"wasm\"} 1\n"));
    ///
    /// // A family under one of taskmeter's names is refused.
    /// let clashing = Registry::new();
    /// let started = IntCounter::new("solti_runner_tasks_started_total", "mine").unwrap();
    /// clashing.register(Box::new(started)).unwrap();
    /// let refused = Endpoint::new(metrics).merge_registry(clashing).unwrap_err();
    /// assert_eq!(refused.family(), "solti_runner_tasks_started_total");
    /// ```
    #[cfg(feature = "prometheus")]
    pub fn merge_registry(
        mut self,
        registry: prometheus::Registry,
    ) -> Result<Self, super::RegistryCollision> {
        let taken = super::merged::taskmeter_names(&self.metrics.latest(), &self.export);
        self.merged = Some(super::merged::MergedRegistry::new(registry, taken)?);
        Ok(self)
    }

    /// Past this age, a scrape takes a snapshot itself (default 30 s); `Duration::MAX`
    /// never does.
    pub fn max_snapshot_age(mut self, max_snapshot_age: Duration) -> Self {
        self.max_snapshot_age = max_snapshot_age;
        self
    }

    /// The export configuration in force.
    pub fn export_config(&self) -> &ExportConfig {
        &self.export
    }

    /// The engine this endpoint serves.
    #[cfg(feature = "prometheus")]
    pub(crate) fn engine(&self) -> &Arc<AtomicMetrics> {
        &self.metrics
    }

    /// The snapshot a scrape is served now: the published one, or a new one when that is older
    /// than `max_snapshot_age` or none was taken yet.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let latest = self.metrics.latest();
        // By the monotonic clock: a wall clock set back or forward changes no age.
        let stale = latest.sequence() == 0 || latest.age() > self.max_snapshot_age;
        if stale && self.max_snapshot_age != Duration::MAX {
            self.metrics.snapshot()
        } else {
            latest
        }
    }

    /// The answer to `GET /metrics` with this `Accept` header (`None` when absent or not
    /// readable): Prometheus text, OpenMetrics, or, with the `native-histograms` feature,
    /// Prometheus protobuf with native histograms when the header prefers it (see
    /// [`Format::from_accept`]).
    pub fn metrics(&self, accept: Option<&str>) -> Exposition {
        let snapshot = self.snapshot();
        let format = Format::from_accept(accept);
        let kind = match format {
            Format::Prometheus => 0,
            Format::OpenMetrics => 1,
            #[cfg(feature = "native-histograms")]
            Format::Protobuf => 2,
        };
        #[cfg_attr(not(feature = "prometheus"), allow(unused_mut))]
        let mut body = self
            .rendered
            .body(kind, &snapshot, || snapshot.encode(format, &self.export));
        #[cfg(feature = "prometheus")]
        if let Some(merged) = &self.merged {
            merged.append(format, &mut body);
        }
        Exposition {
            content_type: format.content_type(),
            body,
        }
    }

    /// The answer to `GET /metrics.json`: [`Snapshot::to_json_with`].
    #[cfg(feature = "json")]
    pub fn metrics_json(&self) -> Exposition {
        let snapshot = self.snapshot();
        Exposition {
            content_type: JSON_CONTENT_TYPE,
            body: self.rendered.body(3, &snapshot, || {
                snapshot.to_json_with(&self.export).into_bytes()
            }),
        }
    }
}

/// `Content-Type` of the JSON export.
#[cfg(feature = "json")]
pub const JSON_CONTENT_TYPE: &str = "application/json";

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{MetricsBackend, RunnerType};

    /// Concurrent scrapes of one snapshot pay one render; a new snapshot is rendered anew.
    #[test]
    fn a_snapshot_is_rendered_once_per_kind() {
        let metrics = Arc::new(AtomicMetrics::new());
        let rendered = Rendered::default();
        let renders = AtomicUsize::new(0);
        let render = |snapshot: &Snapshot| {
            renders.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
            snapshot.to_prometheus().into_bytes()
        };
        let first = metrics.snapshot();
        let bodies: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let scrapes: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| rendered.body(0, &first, || render(&first))))
                .collect();
            scrapes.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert_eq!(renders.load(Ordering::Relaxed), 1);
        assert!(
            bodies
                .iter()
                .all(|body| *body == first.to_prometheus().into_bytes())
        );
        // Another kind of body is its own render.
        rendered.body(1, &first, || render(&first));
        assert_eq!(renders.load(Ordering::Relaxed), 2);
        metrics.record_task_started(RunnerType::Wasm);
        let second = metrics.snapshot();
        let body = rendered.body(0, &second, || render(&second));
        assert_eq!(renders.load(Ordering::Relaxed), 3);
        assert_eq!(body, second.to_prometheus().into_bytes());
    }

    /// An endpoint serves what the snapshot it picks says, never a body cached for an earlier
    /// snapshot or rendered with another configuration.
    #[test]
    fn an_endpoint_serves_the_current_snapshot_and_configuration() {
        let metrics = Arc::new(AtomicMetrics::new());
        // Never stale: every scrape reads the published snapshot, taken here.
        let endpoint = Endpoint::new(Arc::clone(&metrics)).max_snapshot_age(Duration::MAX);
        for started in 1..=3_u64 {
            metrics.record_task_started(RunnerType::Container);
            metrics.snapshot();
            let clone = endpoint.clone();
            for scraper in [&endpoint, &clone] {
                let body = String::from_utf8(scraper.metrics(None).body).unwrap();
                let line =
                    format!("solti_runner_tasks_started_total{{runner=\"container\"}} {started}\n");
                assert!(body.contains(&line), "{body}");
            }
        }
        // The same snapshot, another configuration: rendered anew, not the cached body.
        let renamed = ExportConfig::builder().namespace("other").build().unwrap();
        let renamed = endpoint.clone().export(renamed);
        let body = String::from_utf8(renamed.metrics(None).body).unwrap();
        assert!(body.contains("other_runner_tasks_started_total"), "{body}");
        assert!(!body.contains("solti_runner_"), "{body}");
    }

    /// Staleness is measured by the monotonic clock: a wall clock set back an hour after a
    /// snapshot (the snapshot then reads as taken an hour ahead) still lets it go stale, and
    /// one set forward (the snapshot an hour behind) does not make a new one look stale. The
    /// bounds are far from the test's own pace, so that a slow machine (or Miri) changes
    /// nothing.
    #[test]
    fn staleness_follows_the_monotonic_clock_whatever_the_wall_clock_does() {
        use std::time::{Instant, SystemTime};
        let metrics = Arc::new(AtomicMetrics::new());
        let hour = Duration::from_secs(3_600);
        let quick = Endpoint::new(Arc::clone(&metrics)).max_snapshot_age(Duration::from_millis(1));
        let ahead = metrics.snapshot_at(SystemTime::now() + hour, Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        assert!(ahead.age() >= Duration::from_millis(20));
        let served = quick.snapshot();
        assert!(
            served.sequence() > ahead.sequence(),
            "stale after 20 ms, whatever its wall time"
        );
        let patient =
            Endpoint::new(Arc::clone(&metrics)).max_snapshot_age(Duration::from_secs(600));
        let behind = metrics.snapshot_at(SystemTime::now() - hour, Instant::now());
        assert_eq!(
            patient.snapshot().sequence(),
            behind.sequence(),
            "an hour behind by the wall clock, new by the monotonic one"
        );
    }
}
