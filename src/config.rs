//! Engine configuration: the builder, its defaults, and the errors it refuses bad values with.

use std::fmt;
use std::time::Duration;

use crate::AtomicMetrics;
use crate::layout::HdrLayout;
use crate::window::WINDOW_AGE_BUCKETS;

/// Default top of the duration range: 24 hours, in ms.
pub const DEFAULT_HIGHEST_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Default HDR precision: 3 significant digits (values are kept within 0.1 %).
pub const DEFAULT_SIGNIFICANT_DIGITS: u8 = 3;
/// Default cap on the memory an engine can hold (its recording state and its read side at
/// their worst), so that a configuration cannot quietly ask for gigabytes.
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 1 << 30;
/// Default bound on a snapshot's wait for writers inside a call.
pub const DEFAULT_MAX_SNAPSHOT_WAIT: Duration = Duration::from_millis(5);
/// Default span of the sliding window ([`Builder::window`]): four scrapes at Prometheus's
/// usual 15 s, the span `rate()` is commonly taken over.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// The longest sliding window accepted: a year.
const MAX_WINDOW_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// Default capacity of each custom-label table ([`Builder::custom_labels`]).
pub const DEFAULT_CUSTOM_LABELS: usize = 32;
/// The most custom labels a table accepts.
const MAX_CUSTOM_LABELS: usize = 1024;
/// The most stripes an engine accepts.
pub const MAX_STRIPES: usize = 1024;

/// A configuration value [`Builder::build`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting lies outside the range it accepts.
    OutOfRange {
        /// The builder method's name.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// The memory this configuration can take exceeds the memory limit.
    TooMuchMemory {
        /// Bytes the engine could take: see [`AtomicMetrics::memory_bound_bytes`].
        needed: usize,
        /// The limit in force ([`Builder::memory_limit_bytes`]).
        limit: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::OutOfRange {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "{field} = {value} is out of range: accepted {min} to {max}"
            ),
            ConfigError::TooMuchMemory { needed, limit } => write!(
                f,
                "the engine could take {needed} bytes (its recording state and read side at their \
                 worst), over memory_limit_bytes = {limit}: lower stripes, significant_digits, \
                 highest_duration_ms or custom_labels, or raise the limit"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A validated configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) layout: HdrLayout,
    pub(crate) stripes: usize,
    pub(crate) max_snapshot_wait: Duration,
    pub(crate) window: Duration,
    pub(crate) custom_labels: usize,
}

impl Config {
    /// How many stripes are shared: a fifth, at least one, so that threads beyond the leases
    /// still spread over several stripes on a big machine.
    pub(crate) fn shared(&self) -> usize {
        self.stripes.div_ceil(5)
    }

    /// How many stripes are leased to one writer at a time: the rest.
    pub(crate) fn leased(&self) -> usize {
        self.stripes - self.shared()
    }
}

/// Configures an [`AtomicMetrics`]; made by [`AtomicMetrics::builder`].
///
/// Every value is checked by [`build`](Self::build), which names the first one that is wrong:
///
/// ```
/// use taskmeter::AtomicMetrics;
///
/// let metrics = AtomicMetrics::builder()
///     .highest_duration_ms(60 * 60 * 1000) // one hour
///     .significant_digits(2)
///     .build()
///     .expect("valid configuration");
/// assert_eq!(metrics.highest_duration_ms(), 3_600_000);
///
/// let refused = AtomicMetrics::builder().significant_digits(7).build().unwrap_err();
/// assert_eq!(refused.to_string(), "significant_digits = 7 is out of range: accepted 1 to 5");
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    highest_duration_ms: u64,
    significant_digits: u8,
    stripes: Option<usize>,
    memory_limit_bytes: usize,
    max_snapshot_wait: Duration,
    window: Duration,
    custom_labels: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            highest_duration_ms: DEFAULT_HIGHEST_DURATION_MS,
            significant_digits: DEFAULT_SIGNIFICANT_DIGITS,
            stripes: None,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            max_snapshot_wait: DEFAULT_MAX_SNAPSHOT_WAIT,
            window: DEFAULT_WINDOW,
            custom_labels: DEFAULT_CUSTOM_LABELS,
        }
    }
}

impl Builder {
    /// The top of the duration range, in ms (default 24 h). Durations above it are recorded
    /// as this value and counted as clamped. Accepted: 2 to `i64::MAX` (the range of
    /// HdrHistogram's interchange formats).
    pub fn highest_duration_ms(mut self, highest_duration_ms: u64) -> Self {
        self.highest_duration_ms = highest_duration_ms;
        self
    }

    /// HDR precision in significant decimal digits (default 3: within 0.1 %). Accepted: 1 to 5.
    /// Each more digit multiplies the slots per histogram by about 10.
    pub fn significant_digits(mut self, significant_digits: u8) -> Self {
        self.significant_digits = significant_digits;
        self
    }

    /// How many independent copies of the recording state threads spread over. Four in five
    /// (rounded down) are *leased*: one thread at a time records there without any locked
    /// instruction, with 32-bit histogram counts. The rest are *shared* by the threads beyond
    /// the leases, with atomic read-modify-writes. Accepted: 1 to 1024 (one stripe is
    /// shared, with no lease).
    ///
    /// Default: enough leased stripes for two recording threads per CPU this process may run
    /// on, and at least 16, within the memory limit. A stripe nobody writes costs a few KiB
    /// resident and a CAS per snapshot; its counts are only reserved (see
    /// [`AtomicMetrics`](crate::AtomicMetrics#memory)), so a default sized for the threads
    /// that may record costs little where fewer do.
    pub fn stripes(mut self, stripes: usize) -> Self {
        self.stripes = Some(stripes);
        self
    }

    /// The most memory the engine may take (default 1 GiB): its recording state and its read
    /// side at their worst, every block of every label written; see
    /// [`AtomicMetrics::memory_bound_bytes`]. Snapshots that users hold beyond the latest are
    /// theirs, outside it.
    pub fn memory_limit_bytes(mut self, memory_limit_bytes: usize) -> Self {
        self.memory_limit_bytes = memory_limit_bytes;
        self
    }

    /// How long a snapshot waits for a writer that is inside a record call when the snapshot
    /// switches its stripe (default 5 ms; any value is accepted, zero included). A writer is
    /// inside a call for nanoseconds unless the system deschedules it there; past this wait
    /// the snapshot leaves that stripe's calls, whole, to a later snapshot (see
    /// [`Snapshot::carried_stripes`](crate::Snapshot::carried_stripes)), so a stopped or
    /// starved thread never holds up the reader for longer.
    pub fn max_snapshot_wait(mut self, max_snapshot_wait: Duration) -> Self {
        self.max_snapshot_wait = max_snapshot_wait;
        self
    }

    /// The span of the sliding window, [`Snapshot::window`](crate::Snapshot::window), whose
    /// quantiles the exports' HDR summary reads (default [`DEFAULT_WINDOW`], 60 s). Accepted:
    /// 4 ms to a year (refused values are reported in ms). The window moves with the snapshots:
    /// take them more often than the window's quarter, or its view holds only the latest
    /// interval. Each of its four age buckets keeps one set of histograms (see
    /// [`crate::window`]).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many custom runner labels, and as many custom error labels, the engine keeps
    /// apart (default [`DEFAULT_CUSTOM_LABELS`], 32; accepted 0 to 1024): the labels of
    /// [`AtomicMetrics::record_labelled_runner_error`](crate::AtomicMetrics::record_labelled_runner_error)
    /// and solti's `Custom` variants. Past it, new labels are counted under
    /// [`OVERFLOW_LABEL`](crate::OVERFLOW_LABEL). The counts take
    /// `(3 + n + 1) × (4 + n + 1)` counters of 8 bytes (11 KiB at 32).
    pub fn custom_labels(mut self, custom_labels: usize) -> Self {
        self.custom_labels = custom_labels;
        self
    }

    /// Checks every setting and allocates the engine; nothing is allocated after this.
    pub fn build(self) -> Result<AtomicMetrics, ConfigError> {
        Ok(AtomicMetrics::with_config(self.validate()?))
    }

    pub(crate) fn validate(&self) -> Result<Config, ConfigError> {
        check(
            "highest_duration_ms",
            self.highest_duration_ms,
            2,
            i64::MAX as u64,
        )?;
        check(
            "significant_digits",
            u64::from(self.significant_digits),
            1,
            5,
        )?;
        let stripes = match self.stripes {
            Some(stripes) => stripes,
            None => self.default_stripes(),
        };
        check("stripes", stripes as u64, 1, MAX_STRIPES as u64)?;
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        check(
            "window",
            window_ms,
            u64::from(WINDOW_AGE_BUCKETS),
            MAX_WINDOW_MS,
        )?;
        check(
            "custom_labels",
            self.custom_labels as u64,
            0,
            MAX_CUSTOM_LABELS as u64,
        )?;
        let config = Config {
            layout: HdrLayout::new(self.highest_duration_ms, self.significant_digits),
            stripes,
            max_snapshot_wait: self.max_snapshot_wait,
            window: self.window,
            custom_labels: self.custom_labels,
        };
        let needed = AtomicMetrics::memory_bound_for(&config);
        if needed > self.memory_limit_bytes {
            return Err(ConfigError::TooMuchMemory {
                needed,
                limit: self.memory_limit_bytes,
            });
        }
        Ok(config)
    }
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

impl Builder {
    /// Two leased stripes per CPU and at least 16, with a shared one per four leased (see
    /// [`Builder::stripes`]); fewer where the memory limit asks for it, never under one.
    fn default_stripes(&self) -> usize {
        let cpus = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let leased = (2 * cpus).max(16);
        let mut stripes = (leased + leased.div_ceil(4)).min(MAX_STRIPES);
        while stripes > 1 {
            let config = Config {
                layout: HdrLayout::new(self.highest_duration_ms, self.significant_digits),
                stripes,
                max_snapshot_wait: self.max_snapshot_wait,
                window: self.window,
                custom_labels: self.custom_labels,
            };
            if AtomicMetrics::memory_bound_for(&config) <= self.memory_limit_bytes {
                break;
            }
            stripes -= 1;
        }
        stripes
    }
}
