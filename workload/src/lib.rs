//! A synthetic task mix, shared by the benchmarks, the demo binary and the tests, so that
//! all of them measure and check the same load. Not part of taskmeter's API: a workspace
//! member that is never published.
//!
//! Per task: `record_task_started`, then `record_task_completed`. Runners are 60/30/10 %
//! subprocess/container/wasm; outcomes 90/5/3/2 % success/failure/timeout/canceled; durations
//! log-uniform from 1 ms to 10 min; one `record_runner_error` per 100 tasks. The mix is
//! generated up front, from a seed, so replaying it costs only the calls themselves.
//!
//! ```
//! use taskmeter_workload::{Totals, replay, task_mix};
//! use taskmeter::{AtomicMetrics, RunnerType};
//!
//! let calls = task_mix(1_000, 7);
//! let metrics = AtomicMetrics::new();
//! replay(&metrics, &calls);
//! let expected = Totals::of(&calls);
//! let snapshot = metrics.snapshot();
//! assert_eq!(
//!     snapshot.cumulative().started(RunnerType::Subprocess),
//!     expected.started(RunnerType::Subprocess)
//! );
//! ```

use taskmeter::{MetricsBackend, RunnerErrorKind, RunnerType, TaskOutcome, View};

/// One call of the [`MetricsBackend`] contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `record_task_started(runner)`.
    Started(RunnerType),
    /// `record_task_completed(runner, outcome, duration_ms)`.
    Completed(RunnerType, TaskOutcome, u64),
    /// `record_runner_error(runner, kind)`.
    Error(RunnerType, RunnerErrorKind),
}

impl Call {
    /// Makes this call on `backend`.
    #[inline]
    pub fn apply(self, backend: &(impl MetricsBackend + ?Sized)) {
        match self {
            Call::Started(runner) => backend.record_task_started(runner),
            Call::Completed(runner, outcome, duration_ms) => {
                backend.record_task_completed(runner, outcome, duration_ms)
            }
            Call::Error(runner, kind) => backend.record_runner_error(runner, kind),
        }
    }
}

/// Makes every call of `calls` on `backend`, in order.
#[inline]
pub fn replay(backend: &(impl MetricsBackend + ?Sized), calls: &[Call]) {
    for &call in calls {
        call.apply(backend);
    }
}

/// The longest duration the mix draws: 10 minutes, in ms.
pub const MAX_MIX_DURATION_MS: u64 = 10 * 60 * 1000;

/// The calls of `tasks` tasks drawn from the mix described in the module docs.
pub fn task_mix(tasks: usize, seed: u64) -> Vec<Call> {
    let mut random = SplitMix64(seed);
    let mut calls = Vec::with_capacity(tasks * 2 + tasks / 100);
    for task in 0..tasks {
        let runner = match random.below(100) {
            0..60 => RunnerType::Subprocess,
            60..90 => RunnerType::Container,
            _ => RunnerType::Wasm,
        };
        let outcome = match random.below(100) {
            0..90 => TaskOutcome::Success,
            90..95 => TaskOutcome::Failure,
            95..98 => TaskOutcome::Timeout,
            _ => TaskOutcome::Canceled,
        };
        // Log-uniform in [1, MAX]: e^(u * ln MAX).
        let exponent = random.unit() * (MAX_MIX_DURATION_MS as f64).ln();
        let duration_ms = (exponent.exp() as u64).clamp(1, MAX_MIX_DURATION_MS);
        calls.push(Call::Started(runner));
        calls.push(Call::Completed(runner, outcome, duration_ms));
        if task % 100 == 99 {
            let kind = RunnerErrorKind::ALL[random.below(RunnerErrorKind::COUNT as u64) as usize];
            calls.push(Call::Error(runner, kind));
        }
    }
    calls
}

/// The calls of `tasks` tasks all on one label, (subprocess, success, 1 ms): the worst case for
/// contention when several threads replay it.
pub fn hot_label(tasks: usize) -> Vec<Call> {
    (0..tasks)
        .flat_map(|_| {
            [
                Call::Started(RunnerType::Subprocess),
                Call::Completed(RunnerType::Subprocess, TaskOutcome::Success, 1),
            ]
        })
        .collect()
}

/// Exact totals of a list of calls: the reference a backend's counts are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    started: [u64; RunnerType::COUNT],
    completed: [[u64; TaskOutcome::COUNT]; RunnerType::COUNT],
    duration_sum_ms: [[u128; TaskOutcome::COUNT]; RunnerType::COUNT],
    errors: [[u64; RunnerErrorKind::COUNT]; RunnerType::COUNT],
}

impl Totals {
    /// The totals of `calls`.
    pub fn of(calls: &[Call]) -> Self {
        let mut totals = Totals::default();
        totals.add(calls);
        totals
    }

    /// Adds the totals of `calls`.
    pub fn add(&mut self, calls: &[Call]) {
        for &call in calls {
            match call {
                Call::Started(r) => self.started[r.index()] += 1,
                Call::Completed(r, o, d) => {
                    self.completed[r.index()][o.index()] += 1;
                    self.duration_sum_ms[r.index()][o.index()] += u128::from(d);
                }
                Call::Error(r, k) => self.errors[r.index()][k.index()] += 1,
            }
        }
    }

    /// Calls to `record_task_started(runner)`.
    pub fn started(&self, runner: RunnerType) -> u64 {
        self.started[runner.index()]
    }

    /// Calls to `record_task_completed(runner, outcome, _)`.
    pub fn completed(&self, runner: RunnerType, outcome: TaskOutcome) -> u64 {
        self.completed[runner.index()][outcome.index()]
    }

    /// The exact sum of those calls' durations.
    pub fn duration_sum_ms(&self, runner: RunnerType, outcome: TaskOutcome) -> u128 {
        self.duration_sum_ms[runner.index()][outcome.index()]
    }

    /// Calls to `record_runner_error(runner, kind)`.
    pub fn errors(&self, runner: RunnerType, kind: RunnerErrorKind) -> u64 {
        self.errors[runner.index()][kind.index()]
    }

    /// The first count or sum in which `view` differs from these totals, described; `None`
    /// when every started, completed, error count and exact duration sum is equal.
    pub fn first_difference(&self, view: &View) -> Option<String> {
        for runner in RunnerType::ALL {
            if view.started(runner) != self.started(runner) {
                return Some(format!(
                    "started {runner:?}: {} recorded, {} called",
                    view.started(runner),
                    self.started(runner)
                ));
            }
            for outcome in TaskOutcome::ALL {
                let (recorded, called) = (
                    view.completed(runner, outcome),
                    self.completed(runner, outcome),
                );
                if recorded != called {
                    return Some(format!(
                        "completed {runner:?}/{outcome:?}: {recorded} recorded, {called} called"
                    ));
                }
                let (recorded, called) = (
                    view.duration_sum_ms_exact(runner, outcome),
                    self.duration_sum_ms(runner, outcome),
                );
                if recorded != called {
                    return Some(format!(
                        "duration sum {runner:?}/{outcome:?}: {recorded} recorded, {called} called"
                    ));
                }
            }
            for kind in RunnerErrorKind::ALL {
                let (recorded, called) = (view.errors(runner, kind), self.errors(runner, kind));
                if recorded != called {
                    return Some(format!(
                        "errors {runner:?}/{kind:?}: {recorded} recorded, {called} called"
                    ));
                }
            }
        }
        None
    }

    /// Every call counted.
    pub fn calls(&self) -> u64 {
        self.started.iter().sum::<u64>()
            + self.completed.iter().flatten().sum::<u64>()
            + self.errors.iter().flatten().sum::<u64>()
    }
}

/// SplitMix64: tiny, fast, and good enough to draw a load from.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// Uniform in [0, 1].
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }
}
