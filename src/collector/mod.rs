//! taskmeter's families inside an application's own registry: one `/metrics` for everything.
//!
//! An application that already serves a registry (a solti application does: solti-prometheus's
//! families, its API's metrics, the build info) registers a collector of taskmeter's families
//! in it, beside everything else:
//!
//! | registry | collector | feature |
//! |---|---|---|
//! | `prometheus::Registry` (prometheus 0.14) | [`PrometheusCollector`] | `prometheus` |
//! | `prometheus_client::registry::Registry` (prometheus-client 0.26) | [`PrometheusClientCollector`] | `prometheus-client` |
//!
//! # Guarantees
//!
//! - **The same exposition.** Every family, name, HELP text, label, bucket and summary
//!   quantile is the one taskmeter's own exposition writes for the same snapshot and
//!   [`ExportConfig`](crate::export::ExportConfig): each collector is one more encoder of the
//!   one list of families. Tests render each registry and taskmeter's own text and compare
//!   them sample by sample. What a registry's data model cannot carry is said at its
//!   collector.
//! - **Fresh figures.** A scrape reads the published snapshot, or takes one when that is
//!   older than `max_snapshot_age` (30 s by default), exactly as
//!   [`Endpoint`](crate::export::Endpoint) does: stale figures are never served as current.
//! - **The record paths are never touched**: a collector reads snapshots only.

#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "prometheus-client")]
mod prometheus_client;

#[cfg(feature = "prometheus")]
pub use self::prometheus::PrometheusCollector;
#[cfg(feature = "prometheus-client")]
pub use self::prometheus_client::PrometheusClientCollector;
