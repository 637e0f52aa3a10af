//! `/metrics` and `/metrics.json` on an [axum](https://docs.rs/axum) `Router`, for users who
//! already run a server (feature `axum`).
//!
//! The routes answer as [`MetricsServer`](crate::server::MetricsServer) does, through an
//! [`Endpoint`]: the published snapshot (or a fresh one when it is stale), the format the
//! `Accept` header asks for. Merge them into the application's router:
//!
//! ```no_run
//! use std::sync::Arc;
//! use taskmeter::AtomicMetrics;
//!
//! # async fn serve() -> std::io::Result<()> {
//! let metrics = Arc::new(AtomicMetrics::new());
//! let _snapshotter = metrics.spawn_snapshotter(std::time::Duration::from_secs(1));
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my service" }))
//!     .merge(taskmeter::axum::router(Arc::clone(&metrics)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! A scrape that finds the snapshot stale takes one on the handler's task: a bounded wait
//! ([`Builder::max_snapshot_wait`](crate::Builder::max_snapshot_wait)) plus the cut itself.
//! With a snapshotter running more often than the endpoint's `max_snapshot_age`, scrapes only
//! render.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AtomicMetrics;
use crate::export::{Endpoint, Exposition};

/// A router serving `GET /metrics` and `GET /metrics.json` from `metrics`, with the default
/// export configuration.
pub fn router(metrics: Arc<AtomicMetrics>) -> Router {
    router_with(Endpoint::new(metrics))
}

/// A router serving `GET /metrics` and `GET /metrics.json` as `endpoint` answers them: its
/// export configuration (names, buckets, constant labels) and snapshot age.
pub fn router_with(endpoint: Endpoint) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics.json", get(metrics_json))
        .with_state(Arc::new(endpoint))
}

async fn metrics(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    // An `Accept` header that is not visible ASCII counts as none.
    let accept = headers.get(ACCEPT).and_then(|value| value.to_str().ok());
    respond(endpoint.metrics(accept))
}

async fn metrics_json(State(endpoint): State<Arc<Endpoint>>) -> Response {
    respond(endpoint.metrics_json())
}

fn respond(exposition: Exposition) -> Response {
    ([(CONTENT_TYPE, exposition.content_type)], exposition.body).into_response()
}
