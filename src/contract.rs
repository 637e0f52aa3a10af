//! The runner metrics contract: the [`MetricsBackend`] trait, its label enums, and the no-op
//! backend.
//!
//! Names, variants, label strings, derives and signatures are those of `solti-runner` 0.0.2's
//! `metrics` module, so code written against that contract compiles against this one. taskmeter
//! adds what fixed-array storage needs: every enum has `ALL` (every variant, in discriminant
//! order), `COUNT` (`ALL.len()`) and `index()` (the position in `ALL`), so a label is an array
//! index and never a hash-map lookup.

use std::sync::Arc;

/// Runner implementation type for metrics labeling.
///
/// Passed to [`MetricsBackend`] methods so dashboards can slice metrics by runner backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunnerType {
    /// OS subprocess runner.
    Subprocess,
    /// Container (OCI) runner.
    Container,
    /// WebAssembly runner.
    Wasm,
}

impl RunnerType {
    /// Every variant, in the order of [`index`](Self::index).
    pub const ALL: [Self; 3] = [Self::Subprocess, Self::Container, Self::Wasm];
    /// The number of variants.
    pub const COUNT: usize = Self::ALL.len();

    /// Return label value for metrics.
    #[inline]
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Subprocess => "subprocess",
            Self::Container => "container",
            Self::Wasm => "wasm",
        }
    }

    /// Position of this variant in [`ALL`](Self::ALL), always `< COUNT`.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Runner setup/teardown error kind for metrics labeling.
///
/// Passed to [`MetricsBackend::record_runner_error`] so dashboards can slice errors by a bounded,
/// low-cardinality label rather than free-form strings.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunnerErrorKind {
    /// cgroup v2 preparation (creation / attribute write) failed.
    CgroupPrepareFailed,
    /// Applying runner-specific configuration to the task command failed (rlimits,
    /// capabilities, namespaces, …).
    BackendConfigFailed,
    /// Spawning the child process or actor failed.
    SpawnFailed,
    /// Loading the runner module (WASM / container image) failed.
    ModuleLoadFailed,
}

impl RunnerErrorKind {
    /// Every variant, in the order of [`index`](Self::index).
    pub const ALL: [Self; 4] = [
        Self::CgroupPrepareFailed,
        Self::BackendConfigFailed,
        Self::SpawnFailed,
        Self::ModuleLoadFailed,
    ];
    /// The number of variants.
    pub const COUNT: usize = Self::ALL.len();

    /// Return label value for metrics.
    #[inline]
    pub fn as_label(self) -> &'static str {
        match self {
            Self::CgroupPrepareFailed => "cgroup_prepare_failed",
            Self::BackendConfigFailed => "backend_config_failed",
            Self::SpawnFailed => "spawn_failed",
            Self::ModuleLoadFailed => "module_load_failed",
        }
    }

    /// Position of this variant in [`ALL`](Self::ALL), always `< COUNT`.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Task execution outcome for metrics classification.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Task completed successfully.
    Success,
    /// Task failed.
    Failure,
    /// Task canceled.
    Canceled,
    /// Task timeout.
    Timeout,
}

impl TaskOutcome {
    /// Every variant, in the order of [`index`](Self::index).
    pub const ALL: [Self; 4] = [Self::Success, Self::Failure, Self::Canceled, Self::Timeout];
    /// The number of variants.
    pub const COUNT: usize = Self::ALL.len();

    /// Return label value for metrics.
    #[inline]
    pub fn as_label(&self) -> &'static str {
        match self {
            TaskOutcome::Success => "success",
            TaskOutcome::Failure => "failure",
            TaskOutcome::Canceled => "canceled",
            TaskOutcome::Timeout => "timeout",
        }
    }

    /// Position of this variant in [`ALL`](Self::ALL), always `< COUNT`.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Backend metrics collection interface.
///
/// This trait abstracts metrics collection across different backends. Runners hold a
/// [`MetricsHandle`] and call it for every task.
///
/// ## Also
///
/// - [`NoOpMetrics`]: zero-size default backend.
/// - [`AtomicMetrics`](crate::AtomicMetrics): taskmeter's lock-free engine.
pub trait MetricsBackend: Send + Sync + 'static {
    /// Record task spawn event.
    ///
    /// Called when a task is submitted and starts executing.
    fn record_task_started(&self, runner_type: RunnerType);

    /// Record task completion with outcome and duration.
    ///
    /// Called when task exits (success, failure, timeout, cancel).
    fn record_task_completed(
        &self,
        runner_type: RunnerType,
        outcome: TaskOutcome,
        duration_ms: u64,
    );

    /// Record runner-specific error during task setup/teardown.
    ///
    /// Called when runner fails to spawn/cleanup a task.
    /// This is separate from task failures (which are `record_task_completed` with `Failure`).
    fn record_runner_error(&self, runner_type: RunnerType, error_kind: RunnerErrorKind);
}

/// Shared handle to metrics backend.
///
/// Cloned into each runner and task; `Arc<AtomicMetrics>` coerces to it.
pub type MetricsHandle = Arc<dyn MetricsBackend>;

/// No-op metrics backend that compiles to nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOpMetrics;

impl MetricsBackend for NoOpMetrics {
    #[inline(always)]
    fn record_task_started(&self, _: RunnerType) {}

    #[inline(always)]
    fn record_task_completed(&self, _: RunnerType, _: TaskOutcome, _: u64) {}

    #[inline(always)]
    fn record_runner_error(&self, _: RunnerType, _: RunnerErrorKind) {}
}

/// Create a no-op metrics handle.
#[inline]
pub fn noop_metrics() -> MetricsHandle {
    Arc::new(NoOpMetrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn indexes_agree_with_all_and_count() {
        for (position, runner) in RunnerType::ALL.iter().enumerate() {
            assert_eq!(runner.index(), position);
        }
        for (position, outcome) in TaskOutcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), position);
        }
        for (position, kind) in RunnerErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), position);
        }
        assert_eq!(RunnerType::COUNT, 3);
        assert_eq!(TaskOutcome::COUNT, 4);
        assert_eq!(RunnerErrorKind::COUNT, 4);
    }

    #[test]
    fn labels_are_the_upstream_strings_and_distinct() {
        let runners: Vec<_> = RunnerType::ALL.iter().map(|r| r.as_label()).collect();
        assert_eq!(runners, ["subprocess", "container", "wasm"]);
        let outcomes: Vec<_> = TaskOutcome::ALL.iter().map(|o| o.as_label()).collect();
        assert_eq!(outcomes, ["success", "failure", "canceled", "timeout"]);
        let kinds: Vec<_> = RunnerErrorKind::ALL.iter().map(|k| k.as_label()).collect();
        assert_eq!(
            kinds,
            [
                "cgroup_prepare_failed",
                "backend_config_failed",
                "spawn_failed",
                "module_load_failed"
            ]
        );
        for labels in [&runners, &outcomes, &kinds] {
            assert_eq!(labels.iter().collect::<HashSet<_>>().len(), labels.len());
        }
    }

    #[test]
    fn noop_metrics_is_zero_size_and_callable() {
        assert_eq!(std::mem::size_of::<NoOpMetrics>(), 0);
        let metrics = noop_metrics();
        metrics.record_task_started(RunnerType::Subprocess);
        metrics.record_runner_error(RunnerType::Wasm, RunnerErrorKind::SpawnFailed);
        metrics.record_task_completed(RunnerType::Container, TaskOutcome::Success, u64::MAX);
    }
}
