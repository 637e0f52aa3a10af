//! taskmeter's tuning toolkit: read recorded runs, report their latency distributions, and
//! compare two setups soundly enough for a CI to gate on.
//!
//! The `taskmeter` binary's `report` and `compare` subcommands are thin wrappers over this
//! library, so a runner's own benchmark harness can call the same code:
//!
//! ```
//! use taskmeter_tune::{CompareOptions, Verdict, compare, synthetic::Generator};
//!
//! // Two runs of one setup, except that B's slow tail is 20 % slower.
//! let generator = Generator::default();
//! let a = generator.run("a", 1);
//! let b = Generator { tail_scale: 1.2, ..Generator::default() }.run("b", 2);
//! let comparison = compare(&[a], &[b], &CompareOptions::default()).unwrap();
//! let p99 = comparison.rows.iter().find(|r| r.series == "work" && r.quantile == 0.99).unwrap();
//! assert_eq!(p99.verdict, Verdict::Worse);
//! assert_eq!(comparison.exit_code(false), 1);
//! ```
//!
//! Inputs ([`input`]): HdrHistogram interval logs (from taskmeter's `IntervalLogSink` or any
//! HdrHistogram implementation) and taskmeter's JSON-lines logs (`JsonLinesSink`). Outputs:
//! [`Report`] and [`Comparison`], serializable to their versioned JSON schemas, and rendered
//! by [`render`] as text, markdown and self-contained HTML pages.

pub mod compare;
pub mod distribution;
pub mod input;
pub mod layout;
pub mod render;
pub mod report;
pub mod stats;
pub mod synthetic;

pub use compare::{Bands, CompareOptions, Comparison, Row, Verdict, compare};
pub use distribution::{Distribution, Quantile};
pub use input::{InputError, Interval, Run, Series, read_run};
pub use layout::Layout;
pub use report::{Report, report};
