//! `taskmeter report` and `taskmeter compare` as CI scripts use them: outputs and exit codes
//! (0 no regression, 1 regression, 2 bad input or usage, 3 inconclusive on request).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use taskmeter::export::interval_log::IntervalLogSink;
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
use taskmeter_tune::stats::SplitMix64;

fn taskmeter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskmeter"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn directory() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskmeter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an interval log of `intervals` snapshots of 2,000 log-normal durations around
/// 100 ms (subprocess.success), each multiplied by `scale`.
fn write_log(path: &Path, intervals: usize, scale: f64, seed: u64) {
    write_log_of(RunnerType::Subprocess, path, intervals, scale, seed);
}

/// [`write_log`] for `runner`'s successes.
fn write_log_of(runner: RunnerType, path: &Path, intervals: usize, scale: f64, seed: u64) {
    let metrics = AtomicMetrics::new();
    let mut log = IntervalLogSink::create(path).unwrap();
    let mut random = SplitMix64(seed);
    for _ in 0..intervals {
        for _ in 0..2000 {
            let ms = (100.0 * scale * (0.5 * random.normal()).exp()).round() as u64;
            metrics.record_task_completed(runner, TaskOutcome::Success, ms);
        }
        log.write_snapshot(&metrics.snapshot()).unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn compare_exits_by_verdict_and_reports_in_every_format() {
    let dir = directory();
    let (a, same, slower, slower_again, short, other) = (
        dir.join("a.hlog"),
        dir.join("same.hlog"),
        dir.join("slower.hlog"),
        dir.join("slower-again.hlog"),
        dir.join("short.hlog"),
        dir.join("other.hlog"),
    );
    write_log(&a, 40, 1.0, 1);
    write_log(&same, 40, 1.0, 2);
    write_log(&slower, 40, 1.2, 3);
    write_log(&slower_again, 40, 1.2, 7);
    write_log(&short, 3, 1.0, 4);
    write_log_of(RunnerType::Wasm, &other, 40, 1.0, 8);
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();

    let unchanged = taskmeter(&["compare", &path(&a), &path(&same)]);
    assert_eq!(
        unchanged.status.code(),
        Some(0),
        "{}",
        text(&unchanged.stdout)
    );
    let regressed = taskmeter(&["compare", &path(&a), &path(&slower), "--format", "json"]);
    assert_eq!(
        regressed.status.code(),
        Some(1),
        "{}",
        text(&regressed.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&regressed.stdout).unwrap();
    assert_eq!(json["schema"], "taskmeter.compare/1");
    let p50 = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["series"] == "subprocess.success" && row["quantile"] == 0.5)
        .unwrap();
    assert_eq!(p50["verdict"], "worse");
    let change = p50["change"].as_f64().unwrap();
    assert!((0.15..0.25).contains(&change), "{change}");
    // An improvement is no regression; a 30 % band swallows the 20 % change.
    let improved = taskmeter(&["compare", &path(&slower), &path(&a)]);
    assert_eq!(improved.status.code(), Some(0));
    assert!(text(&improved.stdout).contains("better"));
    let banded = taskmeter(&["compare", &path(&a), &path(&slower), "--band", "30%"]);
    assert_eq!(banded.status.code(), Some(0), "{}", text(&banded.stdout));
    let per_quantile = taskmeter(&["compare", &path(&a), &path(&slower), "--band", "30,p50=5"]);
    assert_eq!(per_quantile.status.code(), Some(1));

    // Too few intervals for the bootstrap: inconclusive, a failure only on request.
    let few = taskmeter(&["compare", &path(&a), &path(&short)]);
    assert_eq!(few.status.code(), Some(0));
    assert!(
        text(&few.stdout).contains("too few samples"),
        "{}",
        text(&few.stdout)
    );
    let gated = taskmeter(&[
        "compare",
        &path(&a),
        &path(&short),
        "--fail-on-inconclusive",
    ]);
    assert_eq!(gated.status.code(), Some(3));

    // Several runs a side, comma-separated.
    let runs = taskmeter(&[
        "compare",
        &format!("{},{}", path(&a), path(&same)),
        &format!("{},{}", path(&slower), path(&slower_again)),
        "--format",
        "markdown",
    ]);
    assert_eq!(runs.status.code(), Some(1));
    let markdown = text(&runs.stdout);
    assert!(
        markdown.contains("| series | quantile |") && markdown.contains("runs"),
        "{markdown}"
    );
    assert!(markdown.contains("**worse"), "{markdown}");

    // No series with samples on both sides (the wrong file, say) is bad input, not a pass.
    let disjoint = taskmeter(&["compare", &path(&a), &path(&other)]);
    assert_eq!(disjoint.status.code(), Some(2));
    let said = text(&disjoint.stderr);
    assert!(
        said.contains("no series has samples on both sides"),
        "{said}"
    );
    assert!(said.contains("\"wasm.success\""), "{said}");
    // An empty name in a list of runs.
    let listed = taskmeter(&["compare", &path(&a), &format!("{},", path(&same))]);
    assert_eq!(listed.status.code(), Some(2));
    assert!(
        text(&listed.stderr).contains("empty file name"),
        "{}",
        text(&listed.stderr)
    );

    // HTML next to the text.
    let page = dir.join("compare.html");
    let with_page = taskmeter(&["compare", &path(&a), &path(&slower), "--html", &path(&page)]);
    assert_eq!(with_page.status.code(), Some(1));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn report_cuts_merges_and_writes_json() {
    let dir = directory().join("report");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.hlog"), dir.join("b.hlog"));
    write_log(&a, 10, 1.0, 5);
    write_log(&b, 10, 1.0, 6);
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let count = |args: &[&str]| -> u64 {
        let output = taskmeter(args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["schema"], "taskmeter.report/1");
        json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|run| run["series"].as_array().unwrap())
            .filter(|series| series["name"] == "subprocess.success")
            .map(|series| series["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count(&["report", &path(&a), "--format", "json"]), 20_000);
    assert_eq!(
        count(&[
            "report",
            &path(&a),
            &path(&b),
            "--merge",
            "--format",
            "json"
        ]),
        40_000
    );
    // --to before --from is a usage error, and a window that keeps no sample is bad input.
    let empty = taskmeter(&["compare", &path(&a), &path(&b), "--from", "3600"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        text(&empty.stderr).contains("no series has samples"),
        "{}",
        text(&empty.stderr)
    );
    let cut = taskmeter(&["report", &path(&a), "--from", "5", "--to", "1"]);
    assert_eq!(cut.status.code(), Some(2));
    assert!(text(&cut.stderr).contains("--to"), "{}", text(&cut.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_and_usage_exit_with_2() {
    let dir = directory().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.hlog");
    std::fs::write(&garbage, "Tag=x,0.0,1.0,1.0,@@@@\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    for args in [
        vec!["compare", garbage, garbage],
        vec!["report", garbage],
        vec!["report", "/nonexistent/run.hlog"],
        vec!["compare", "a.hlog"],
        vec!["compare", garbage, garbage, "--band", "p95x=3"],
        vec!["report"],
    ] {
        let output = taskmeter(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(!output.stderr.is_empty(), "{args:?} says why");
    }
    let named = taskmeter(&["report", garbage]);
    assert!(
        text(&named.stderr).contains("garbage.hlog:1: bad base64"),
        "{}",
        text(&named.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}
