//! # taskmeter
//!
//! A lock-free, allocation-free, in-process metrics engine for task runners.
//!
//! Runners report every task's start, completion (outcome and duration in ms) and every runner
//! setup error through [`MetricsBackend`], the contract of `solti-runner` 0.0.2.
//! [`AtomicMetrics`] serves those calls from fixed arrays of cache-padded atomics, keeps the
//! durations in HDR-layout histograms, and publishes consistent [`Snapshot`]s for readers.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use taskmeter::{AtomicMetrics, MetricsHandle, RunnerType, TaskOutcome};
//!
//! let metrics = Arc::new(AtomicMetrics::new());
//! let snapshotter = metrics.spawn_snapshotter(Duration::from_secs(1));
//!
//! // What a runner holds and calls:
//! let handle: MetricsHandle = metrics.clone();
//! handle.record_task_started(RunnerType::Subprocess);
//! handle.record_task_completed(RunnerType::Subprocess, TaskOutcome::Success, 1_250);
//!
//! // What a dashboard reads, without touching the hot path:
//! snapshotter.stop(); // takes a final snapshot
//! let snapshot = metrics.latest();
//! let p99 = snapshot
//!     .cumulative()
//!     .duration(RunnerType::Subprocess, TaskOutcome::Success)
//!     .value_at_quantile(0.99);
//! assert!(p99.abs_diff(1_250) <= 1);
//! ```
//!
//! The architecture and its guarantees are described in the modules' documentation:
//! [`AtomicMetrics`] (the engine), the two write protocols next to the code (the lease of a
//! leased stripe, written with no locked instruction, and the phase protocol of a shared
//! one), and [`Snapshot`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(all(feature = "axum", not(loom)))]
pub mod axum;
mod barrier;
#[cfg(all(any(feature = "prometheus", feature = "prometheus-client"), not(loom)))]
pub mod collector;
mod config;
mod contract;
mod engine;
pub mod export;
mod layout;
mod publish;
mod reader;
mod recording;
#[cfg(all(feature = "server", not(loom)))]
pub mod server;
#[cfg(not(loom))]
mod sink;
mod snapshot;
#[cfg(not(loom))]
mod snapshotter;
#[cfg(all(feature = "solti", not(loom)))]
pub mod solti;
#[cfg(feature = "solti-0-0-2")]
pub mod solti_0_0_2;
mod sync;
pub mod window;

#[cfg(loom)]
#[doc(hidden)]
pub use barrier::fail_barriers as loom_fail_barriers;
pub use config::{
    Builder, ConfigError, DEFAULT_CUSTOM_LABELS, DEFAULT_HIGHEST_DURATION_MS,
    DEFAULT_MAX_SNAPSHOT_WAIT, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_SIGNIFICANT_DIGITS,
    DEFAULT_WINDOW, MAX_STRIPES,
};
pub use contract::{
    MetricsBackend, MetricsHandle, NoOpMetrics, RunnerErrorKind, RunnerType, TaskOutcome,
    noop_metrics,
};
pub use engine::AtomicMetrics;
pub use hdrhistogram::Histogram;
pub use recording::labelled::{Label, LabelRef, MAX_CUSTOM_LABEL_BYTES, OVERFLOW_LABEL};
#[cfg(loom)]
#[doc(hidden)]
pub use recording::route::exit_thread as loom_exit_thread;
#[cfg(not(loom))]
pub use sink::{SinkError, SnapshotSink};
pub use snapshot::{DurationCounts, SlotCount, Snapshot, View};
#[cfg(not(loom))]
pub use snapshotter::{MIN_SNAPSHOT_PERIOD, Snapshotter, SnapshotterBuilder, StopTimedOut};
pub use window::WINDOW_AGE_BUCKETS;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
