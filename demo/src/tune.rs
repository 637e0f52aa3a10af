//! `taskmeter report` and `taskmeter compare`: arguments, files and exit codes around
//! `taskmeter_tune`, which does the work.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use taskmeter_tune::render::{self, html};
use taskmeter_tune::{Bands, CompareOptions, Run};

/// Usage and input errors: the exit code scripts see for bad input.
const BAD_INPUT: u8 = 2;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Text,
    /// A markdown table (for a pull-request comment).
    Markdown,
    /// The versioned JSON schema (`taskmeter.report/1`, `taskmeter.compare/1`).
    Json,
}

/// Report the latency distributions of recorded runs.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Interval logs (.hlog) or JSON-lines logs (--json-log).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Report the merge of the files instead of each one.
    #[arg(long)]
    merge: bool,
    /// Also write a self-contained HTML page with plots here.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    format: Output,
    #[command(flatten)]
    window: Window,
}

/// Compare two setups' runs and say, per series and quantile, whether B is better or worse.
///
/// Exit codes: 0 no regression, 1 a regression beyond the band, 2 bad input or usage,
/// 3 too few samples somewhere (with --fail-on-inconclusive).
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A's runs: a file, or several runs of one setup as a comma-separated list.
    #[arg(value_name = "A")]
    a: String,
    /// B's runs, as A's.
    #[arg(value_name = "B")]
    b: String,
    /// The practical band: PERCENT, or pNN=PERCENT,... per quantile (the rest at 5 %).
    #[arg(long, default_value = "5%", value_parser = Bands::parse)]
    band: Bands,
    /// Also write a self-contained HTML page with the overlaid distributions here.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    format: Output,
    /// Exit with 3 when a series or quantile has too few samples for a verdict.
    #[arg(long)]
    fail_on_inconclusive: bool,
    /// Bootstrap resamples (with one run on a side).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    resamples: u32,
    #[command(flatten)]
    window: Window,
}

/// Which intervals count: a warm-up left out, a tail cut.
#[derive(Debug, Args)]
struct Window {
    /// Leave out intervals that start before this many seconds into the run (by default none
    /// is left out, not even one a log places before its StartTime).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    from: Option<f64>,
    /// Leave out intervals that start at or after this many seconds into the run.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    to: Option<f64>,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s >= 0.0 => Ok(s),
        Ok(_) => Err("must not be negative".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    // Errors quote what files hold: shown, never obeyed by the terminal.
    eprintln!("taskmeter: {}", render::printable(&message.to_string()));
    ExitCode::from(BAD_INPUT)
}

fn read(paths: &[PathBuf], window: &Window) -> Result<Vec<Run>, String> {
    let (from, to) = (
        window.from.unwrap_or(f64::NEG_INFINITY),
        window.to.unwrap_or(f64::INFINITY),
    );
    if to <= from {
        return Err(format!("--to {to} is not after --from {from}"));
    }
    let terminal = std::io::stderr().is_terminal();
    paths
        .iter()
        .map(|path| {
            let mut progress = |lines: usize| {
                if terminal && lines.is_multiple_of(10_000) {
                    eprint!("\rreading {}: {lines} lines", path.display());
                }
            };
            let run = taskmeter_tune::input::read_run_with_progress(path, &mut progress);
            if terminal {
                eprint!("\r\x1b[K");
            }
            let mut run = run.map_err(|error| error.to_string())?;
            run.retain_between(from, to);
            Ok(run)
        })
        .collect()
}

fn write_page(path: &Path, page: &str) -> Result<(), String> {
    std::fs::write(path, page).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("reports hold finite numbers and string keys")
}

pub fn report(args: &ReportArgs) -> ExitCode {
    let runs = match read(&args.files, &args.window) {
        Ok(runs) => runs,
        Err(error) => return fail(error),
    };
    let report = match taskmeter_tune::report(&runs, args.merge) {
        Ok(report) => report,
        Err(error) => return fail(error),
    };
    if let Some(path) = &args.html
        && let Err(error) = write_page(path, &html::report_page(&report))
    {
        return fail(error);
    }
    match args.format {
        Output::Text => print!("{}", render::report_text(&report, false)),
        Output::Markdown => print!("{}", render::report_text(&report, true)),
        Output::Json => println!("{}", json(&report)),
    }
    ExitCode::SUCCESS
}

pub fn compare(args: &CompareArgs) -> ExitCode {
    let side = |list: &str| -> Result<Vec<Run>, String> {
        let paths: Vec<PathBuf> = list.split(',').map(PathBuf::from).collect();
        if paths.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(format!("{list:?}: an empty file name in the list"));
        }
        read(&paths, &args.window)
    };
    let (a, b) = match (side(&args.a), side(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(error), _) | (_, Err(error)) => return fail(error),
    };
    let options = CompareOptions {
        bands: args.band.clone(),
        resamples: args.resamples as usize,
        ..CompareOptions::default()
    };
    let comparison = match taskmeter_tune::compare(&a, &b, &options) {
        Ok(comparison) => comparison,
        Err(error) => return fail(error),
    };
    if let Some(path) = &args.html {
        let written =
            html::compare_page(&comparison, &a, &b).and_then(|page| write_page(path, &page));
        if let Err(error) = written {
            return fail(error);
        }
    }
    match args.format {
        Output::Text => print!("{}", render::compare_text(&comparison, false)),
        Output::Markdown => print!("{}", render::compare_text(&comparison, true)),
        Output::Json => println!("{}", json(&comparison)),
    }
    ExitCode::from(comparison.exit_code(args.fail_on_inconclusive))
}
