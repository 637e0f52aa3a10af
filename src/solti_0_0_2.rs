//! The `solti-0-0-2` feature: `AtomicMetrics` as `solti_runner` 0.0.2's own `MetricsBackend`
//! (the version taskmeter's contract restates), so a runner on that SDK swaps taskmeter in
//! with one line:
//!
//! ```
//! use std::sync::Arc;
//! use solti_runner_0_0_2 as solti_runner;
//! use taskmeter::AtomicMetrics;
//!
//! let metrics = Arc::new(AtomicMetrics::new());
//! let ctx = solti_runner::BuildContext::default().with_metrics(metrics.solti_0_0_2_handle());
//! // Runners call it as always:
//! ctx.metrics().record_task_started(solti_runner::RunnerType::Wasm);
//! assert_eq!(metrics.snapshot().cumulative().started(taskmeter::RunnerType::Wasm), 1);
//! ```
//!
//! The upstream enums are `#[non_exhaustive]`, so each conversion has a wildcard arm. The
//! dependency is pinned to `=0.0.2`, whose variants all map one to one (a test checks every
//! label string); should a later version add a variant, the call is still counted, never
//! dropped, under a documented fallback: an unknown runner counts as
//! [`RunnerType::Subprocess`], an unknown outcome as [`TaskOutcome::Failure`], an unknown error
//! kind as [`RunnerErrorKind::BackendConfigFailed`].
//!
//! Both traits have the same method names: with both in scope, call through one of them
//! (`MetricsBackend::record_task_started(&*metrics, ..)`) or through a handle.

use std::sync::Arc;

use solti_runner_0_0_2 as solti_runner;

use crate::{AtomicMetrics, MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome};

/// The runner an upstream `RunnerType` is counted as.
#[inline]
pub fn runner_from_solti(runner: solti_runner::RunnerType) -> RunnerType {
    match runner {
        solti_runner::RunnerType::Subprocess => RunnerType::Subprocess,
        solti_runner::RunnerType::Container => RunnerType::Container,
        solti_runner::RunnerType::Wasm => RunnerType::Wasm,
        _ => RunnerType::Subprocess,
    }
}

/// The outcome an upstream `TaskOutcome` is counted as.
#[inline]
pub fn outcome_from_solti(outcome: solti_runner::TaskOutcome) -> TaskOutcome {
    match outcome {
        solti_runner::TaskOutcome::Success => TaskOutcome::Success,
        solti_runner::TaskOutcome::Failure => TaskOutcome::Failure,
        solti_runner::TaskOutcome::Canceled => TaskOutcome::Canceled,
        solti_runner::TaskOutcome::Timeout => TaskOutcome::Timeout,
        _ => TaskOutcome::Failure,
    }
}

/// The error kind an upstream `RunnerErrorKind` is counted as.
#[inline]
pub fn error_kind_from_solti(kind: solti_runner::RunnerErrorKind) -> RunnerErrorKind {
    match kind {
        solti_runner::RunnerErrorKind::CgroupPrepareFailed => RunnerErrorKind::CgroupPrepareFailed,
        solti_runner::RunnerErrorKind::BackendConfigFailed => RunnerErrorKind::BackendConfigFailed,
        solti_runner::RunnerErrorKind::SpawnFailed => RunnerErrorKind::SpawnFailed,
        solti_runner::RunnerErrorKind::ModuleLoadFailed => RunnerErrorKind::ModuleLoadFailed,
        _ => RunnerErrorKind::BackendConfigFailed,
    }
}

impl solti_runner::MetricsBackend for AtomicMetrics {
    #[inline]
    fn record_task_started(&self, runner_type: solti_runner::RunnerType) {
        MetricsBackend::record_task_started(self, runner_from_solti(runner_type));
    }

    #[inline]
    fn record_task_completed(
        &self,
        runner_type: solti_runner::RunnerType,
        outcome: solti_runner::TaskOutcome,
        duration_ms: u64,
    ) {
        MetricsBackend::record_task_completed(
            self,
            runner_from_solti(runner_type),
            outcome_from_solti(outcome),
            duration_ms,
        );
    }

    #[inline]
    fn record_runner_error(
        &self,
        runner_type: solti_runner::RunnerType,
        error_kind: solti_runner::RunnerErrorKind,
    ) {
        MetricsBackend::record_runner_error(
            self,
            runner_from_solti(runner_type),
            error_kind_from_solti(error_kind),
        );
    }
}

impl AtomicMetrics {
    /// This engine as a `solti_runner` 0.0.2 `MetricsHandle`, for `BuildContext::new` or
    /// `with_metrics`.
    pub fn solti_0_0_2_handle(self: &Arc<Self>) -> solti_runner::MetricsHandle {
        Arc::clone(self) as solti_runner::MetricsHandle
    }
}
