//! The `solti` feature: today's solti SDK on taskmeter.
//!
//! - `solti_runner::MetricsBackend` (solti-runner 0.0.8) for [`AtomicMetrics`]: runner errors,
//!   with solti's `Custom(String)` labels kept in the engine's bounded label tables (see
//!   [`AtomicMetrics::record_labelled_runner_error`]);
//! - [`TaskvisorMetrics`], a `taskvisor::Subscribe` (taskvisor 0.9): task attempts recorded as
//!   taskmeter tasks (started, completed by outcome, duration in the HDR histograms,
//!   in-flight kept exact across lost events), and the families of solti-prometheus 0.0.8's
//!   `PrometheusTaskvisorSubscriber`.
//!
//! Each of solti-prometheus 0.0.8's two adapters is swapped with one line:
//!
//! ```
//! use std::sync::Arc;
//! use taskmeter::AtomicMetrics;
//! use taskmeter::solti::TaskvisorMetrics;
//!
//! let metrics = Arc::new(AtomicMetrics::new());
//! // was: BuildContext::new(env, Arc::new(PrometheusRunnerMetrics::new(&registry)?))
//! let ctx = solti_runner::BuildContext::new(solti_runner::RunnerEnv::new(), metrics.solti_handle());
//! // was: Arc::new(PrometheusTaskvisorSubscriber::new(&registry)?)
//! let subscriber: Arc<dyn taskvisor::Subscribe> = Arc::new(TaskvisorMetrics::new(Arc::clone(&metrics)));
//!
//! ctx.metrics().record_runner_error(
//!     solti_runner::RunnerType::Custom("image-resize".into()),
//!     solti_runner::RunnerErrorKind::SpawnFailed,
//! );
//! let snapshot = metrics.snapshot();
//! let errors: Vec<_> = snapshot.cumulative().labelled_errors().collect();
//! assert_eq!(errors, [("image-resize", "spawn_failed", 1)]);
//! # drop(subscriber);
//! ```
//!
//! The contract taskmeter restates (solti-runner 0.0.2) stays taskmeter's own
//! [`MetricsBackend`](crate::MetricsBackend); its adapter is the `solti-0-0-2` feature
//! ([`crate::solti_0_0_2`]).

pub mod events;

use std::sync::Arc;

use crate::{AtomicMetrics, Label, RunnerErrorKind, RunnerType};

pub(crate) use events::{
    BACKOFF_BUCKETS_SECONDS, BACKOFF_SOURCES, FINAL_OUTCOMES, TaskvisorCounters, TaskvisorFigures,
};
pub use events::{DEFAULT_ATTEMPT_CAPACITY, TASKVISOR_SUBSCRIBER_NAME, TaskvisorMetrics};

/// The label an upstream `RunnerType` is counted under: built-in variants as taskmeter's own
/// labels, `Custom` as the application's label. (The upstream enum is `#[non_exhaustive]`: a
/// variant added later is counted under its own `as_label()` string, as a custom label.)
pub fn runner_label(runner: solti_runner::RunnerType) -> Label<RunnerType> {
    match runner {
        solti_runner::RunnerType::Subprocess => Label::Known(RunnerType::Subprocess),
        solti_runner::RunnerType::Container => Label::Known(RunnerType::Container),
        solti_runner::RunnerType::Wasm => Label::Known(RunnerType::Wasm),
        solti_runner::RunnerType::Custom(label) => Label::Custom(label),
        other => Label::Custom(other.as_label().to_owned()),
    }
}

/// The label an upstream `RunnerErrorKind` is counted under, as [`runner_label`].
pub fn error_label(kind: solti_runner::RunnerErrorKind) -> Label<RunnerErrorKind> {
    use solti_runner::RunnerErrorKind as Upstream;
    match kind {
        Upstream::CgroupPrepareFailed => Label::Known(RunnerErrorKind::CgroupPrepareFailed),
        Upstream::BackendConfigFailed => Label::Known(RunnerErrorKind::BackendConfigFailed),
        Upstream::SpawnFailed => Label::Known(RunnerErrorKind::SpawnFailed),
        Upstream::ModuleLoadFailed => Label::Known(RunnerErrorKind::ModuleLoadFailed),
        Upstream::Custom(label) => Label::Custom(label),
        other => Label::Custom(other.as_label().to_owned()),
    }
}

impl solti_runner::MetricsBackend for AtomicMetrics {
    /// Built-in labels take the stripes' path; a custom label is found in the engine's label
    /// table without a lock or an allocation (added once, the first time).
    #[inline]
    fn record_runner_error(
        &self,
        runner_type: solti_runner::RunnerType,
        error_kind: solti_runner::RunnerErrorKind,
    ) {
        self.record_labelled_runner_error(runner_label(runner_type), error_label(error_kind));
    }
}

impl AtomicMetrics {
    /// This engine as a `solti_runner` 0.0.8 `MetricsHandle`, for `BuildContext::new` or
    /// `with_metrics`.
    pub fn solti_handle(self: &Arc<Self>) -> solti_runner::MetricsHandle {
        Arc::clone(self) as solti_runner::MetricsHandle
    }
}
