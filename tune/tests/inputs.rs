//! Reading recorded runs: taskmeter's own logs read back exactly, and bad input refused with
//! the file, the line and the reason, never a panic or a partial result.

use std::io::Write as _;

use base64::Engine as _;
use proptest::prelude::*;
use taskmeter::export::interval_log::IntervalLogSink;
use taskmeter::export::json::JsonLinesSink;
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};
use taskmeter_tune::input::{UNTAGGED, read_run_from};
use taskmeter_tune::render::{self, html};
use taskmeter_tune::{InputError, Run};

mod common;
use common::{Step, v2_line};

fn read_text(name: &str, text: &[u8]) -> Result<Run, InputError> {
    read_run_from(name.into(), text, &mut |_| {})
}

/// Both logs of an engine that recorded `batches` (one snapshot each), as bytes.
fn logs_of(digits: u8, batches: &[Vec<(usize, u64)>]) -> (Vec<u8>, Vec<u8>, AtomicMetrics) {
    let metrics = AtomicMetrics::builder()
        .significant_digits(digits)
        .build()
        .unwrap();
    let (hlog_bytes, jsonl_bytes) = (Shared::default(), Shared::default());
    let mut hlog = IntervalLogSink::new(hlog_bytes.clone()).unwrap();
    let mut jsonl = JsonLinesSink::new(jsonl_bytes.clone());
    for batch in batches {
        for &(label, duration) in batch {
            let runner = RunnerType::ALL[label % RunnerType::COUNT];
            let outcome = TaskOutcome::ALL[label / RunnerType::COUNT % TaskOutcome::COUNT];
            metrics.record_task_completed(runner, outcome, duration);
        }
        let snapshot = metrics.snapshot();
        hlog.write_snapshot(&snapshot).unwrap();
        jsonl.write_snapshot(&snapshot).unwrap();
    }
    let bytes = |shared: Shared| shared.0.lock().unwrap().clone();
    (bytes(hlog_bytes), bytes(jsonl_bytes), metrics)
}

/// A writer whose bytes stay readable while a sink owns it.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Model comparison: the intervals of both logs merge, series by series and slot by slot,
    /// into the engine's cumulative view, and each log has one interval per snapshot.
    #[test]
    fn taskmeter_s_logs_read_back_slot_for_slot(
        digits in 1_u8..=4,
        batches in proptest::collection::vec(
            proptest::collection::vec((0_usize..12, prop_oneof![0..3_000_u64, 0..100_000_000_u64, Just(u64::MAX)]), 0..40),
            1..6),
    ) {
        let (hlog, jsonl, metrics) = logs_of(digits, &batches);
        let cumulative = metrics.latest();
        for (name, bytes) in [("run.hlog", &hlog), ("run.jsonl", &jsonl)] {
            let run = read_text(name, bytes).unwrap();
            prop_assert_eq!(run.series.len(), 12);
            for runner in RunnerType::ALL {
                for outcome in TaskOutcome::ALL {
                    let series = &run.series[&format!("{}.{}", runner.as_label(), outcome.as_label())];
                    prop_assert_eq!(series.intervals().len(), batches.len());
                    prop_assert_eq!(series.layout().significant_digits(), digits);
                    let merged = series.merged(|_| true);
                    let read: Vec<(u64, u64)> = merged
                        .slots()
                        .map(|(index, count)| (series.layout().range(index).unwrap().0, count))
                        .collect();
                    let expected: Vec<(u64, u64)> = cumulative
                        .cumulative()
                        .duration_counts(runner, outcome)
                        .iter()
                        .map(|slot| (slot.lowest_ms, slot.count))
                        .collect();
                    prop_assert_eq!(read, expected, "{} {:?} {:?}", name, runner, outcome);
                }
            }
        }
    }

    /// Whatever a line holds, reading returns a run or an error naming the line: never a panic.
    #[test]
    fn any_line_reads_or_fails_cleanly(
        histogram in proptest::collection::vec(any::<u8>(), 0..200),
        cookie in prop_oneof![Just(0x1c84_9313_u32), Just(0x1c84_9314), Just(0x0c72_124f), any::<u32>()],
        prefix in "(Tag=[a-z<>]{0,4},)?[0-9.,]{0,12}",
    ) {
        let mut bytes = cookie.to_be_bytes().to_vec();
        bytes.extend_from_slice(&histogram);
        let line = format!(
            "{prefix}0.1,1.0,3.0,{}\n",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        if let Err(error) = read_text("fuzz.hlog", line.as_bytes()) {
            prop_assert_eq!(error.file, "fuzz.hlog");
        }
    }
}

/// A valid interval line of taskmeter's, with its tag.
fn valid_line() -> String {
    let (hlog, _, _) = logs_of(3, &[vec![(0, 40), (0, 2_500)]]);
    String::from_utf8(hlog)
        .unwrap()
        .lines()
        .find(|line| line.starts_with("Tag=subprocess.success,"))
        .unwrap()
        .to_owned()
}

fn header() -> &'static str {
    "#[StartTime: 1700000000.000 (seconds since epoch)]\n#[BaseTime: 1700000000.000 (seconds since epoch)]\n"
}

/// `(what, log text, line expected in the error, words of the reason)`.
fn bad_logs() -> Vec<(&'static str, Vec<u8>, Option<usize>, &'static str)> {
    let line = valid_line();
    let histogram = line.rsplit(',').next().unwrap().to_owned();
    let encoded = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut double = 0x0c72_124f_u32.to_be_bytes().to_vec();
    double.extend_from_slice(&[0; 40]);
    let mut v1 = 0x1c84_9301_u32.to_be_bytes().to_vec();
    v1.extend_from_slice(&[0; 40]);
    // A V2 histogram whose counts inflate to 65 MiB of zeros.
    let mut v2 = 0x1c84_9313_u32.to_be_bytes().to_vec();
    v2.extend_from_slice(&(65_u32 << 20).to_be_bytes());
    v2.extend_from_slice(&0_u32.to_be_bytes());
    v2.extend_from_slice(&3_u32.to_be_bytes());
    v2.extend_from_slice(&1_u64.to_be_bytes());
    v2.extend_from_slice(&3_600_000_u64.to_be_bytes());
    v2.extend_from_slice(&1.0_f64.to_be_bytes());
    v2.resize(v2.len() + (65 << 20), 0);
    let mut bomb = 0x1c84_9314_u32.to_be_bytes().to_vec();
    let mut deflated = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    deflated.write_all(&v2).unwrap();
    let deflated = deflated.finish().unwrap();
    bomb.extend_from_slice(&(deflated.len() as u32).to_be_bytes());
    bomb.extend_from_slice(&deflated);
    let with = |text: String| format!("{}{text}\n", header()).into_bytes();
    let (cut_in_a_quad, cut_by_quads) = (&line[..line.len() - 10], &line[..line.len() - 12]);
    let schema_1 = AtomicMetrics::new().snapshot().to_json();
    let (_, jsonl, _) = logs_of(3, &[vec![(0, 40)]]);
    let jsonl = String::from_utf8(jsonl).unwrap();
    vec![
        (
            "a histogram cut mid-character",
            with(format!("{line}\n{cut_in_a_quad}")),
            Some(4),
            "base64",
        ),
        (
            "a truncated histogram",
            with(format!("{line}\n{cut_by_quads}")),
            Some(4),
            "shorter than its length",
        ),
        (
            "a line cut before its histogram",
            with(line[..20].to_owned()),
            Some(3),
            "truncated line",
        ),
        (
            "a line missing a field",
            with(line[..line.rfind(',').unwrap()].to_owned()),
            Some(3),
            "3 fields",
        ),
        (
            "bad base64",
            with(line.replace(&histogram, "@@@@")),
            Some(3),
            "base64",
        ),
        (
            "an empty tag",
            with(format!("Tag=,{}", &line[line.find(',').unwrap() + 1..])),
            Some(3),
            "empty tag",
        ),
        (
            "a DoubleHistogram",
            with(format!("Tag=d,0.0,1.0,1.0,{}", encoded(&double))),
            Some(3),
            "DoubleHistogram",
        ),
        (
            "a V1 histogram",
            with(format!("0.0,1.0,1.0,{}", encoded(&v1))),
            Some(3),
            "V1",
        ),
        (
            "a histogram inflating past 64 MiB",
            with(format!("0.0,1.0,1.0,{}", encoded(&bomb))),
            Some(3),
            "64 MiB",
        ),
        (
            "a bad start",
            with(line.replacen(",0.", ",x.", 1)),
            Some(3),
            "start",
        ),
        (
            "a bad StartTime",
            b"#[StartTime: soon]\n".to_vec(),
            Some(1),
            "bad time",
        ),
        (
            "bytes that are not UTF-8",
            [header().as_bytes(), b"Tag=\xff\xfe,1\n"].concat(),
            Some(3),
            "read",
        ),
        ("an empty file", b"\n\n".to_vec(), None, "empty"),
        (
            "a header and no intervals",
            header().as_bytes().to_vec(),
            None,
            "no intervals",
        ),
        (
            "a JSON document of schema 1",
            format!("\n{schema_1}\n").into_bytes(),
            Some(2),
            "no buckets",
        ),
        (
            "JSON that is not a snapshot",
            b"{\"schema\": 3}\n".to_vec(),
            Some(1),
            "not a taskmeter snapshot",
        ),
        (
            "a JSON bucket that is not a slot",
            jsonl.replace("[40,40,1]", "[40,41,1]").into_bytes(),
            Some(1),
            "not a slot",
        ),
        (
            "JSON buckets that do not add up",
            jsonl.replace("[40,40,1]", "[40,40,2]").into_bytes(),
            Some(1),
            "count says",
        ),
        (
            "a truncated JSON line",
            jsonl.as_bytes()[..jsonl.len() / 2].to_vec(),
            Some(1),
            "not a taskmeter snapshot",
        ),
    ]
}

/// Each bad log is refused, naming the file, the line and the reason.
#[test]
fn bad_input_is_refused_with_file_line_and_reason() {
    for (what, text, line, reason) in bad_logs() {
        let error = read_text("bad.log", &text).expect_err(what);
        assert_eq!(error.file, "bad.log", "{what}");
        assert_eq!(error.line, line, "{what}: {error}");
        assert!(error.reason.contains(reason), "{what}: {error}");
        let shown = error.to_string();
        assert!(shown.starts_with("bad.log"), "{shown}");
    }
}

/// A series whose histograms change layout mid-log is refused at the line that changes it.
#[test]
fn a_series_that_changes_layout_is_refused() {
    let (three, _, _) = logs_of(3, &[vec![(0, 40)]]);
    let (two, _, _) = logs_of(2, &[vec![(0, 40)]]);
    let data = |log: Vec<u8>| -> Vec<String> {
        String::from_utf8(log)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("Tag=subprocess.success"))
            .map(str::to_owned)
            .collect()
    };
    let text = format!("{}{}\n{}\n", header(), data(three)[0], data(two)[0]);
    let error = read_text("mixed.hlog", text.as_bytes()).unwrap_err();
    assert_eq!(error.line, Some(4));
    assert!(error.reason.contains("changes its histogram"), "{error}");
}

/// Untagged lines form one series; comments are kept as text; times come from the headers.
#[test]
fn untagged_lines_comments_and_times() {
    let line = valid_line();
    let untagged = &line[line.find(',').unwrap() + 1..];
    let fields: Vec<&str> = untagged.split(',').collect();
    let text = format!(
        "#[Written by another tool]\n{}2.500,1.0,{},{}\n3.500,1.0,{},{}\n",
        header(),
        fields[2],
        fields[3],
        fields[2],
        fields[3]
    );
    let run = read_text("other.hlog", text.as_bytes()).unwrap();
    let series = &run.series[UNTAGGED];
    let starts: Vec<f64> = series.intervals().iter().map(|i| i.start_s).collect();
    assert_eq!(starts, [2.5, 3.5]);
    assert_eq!(series.merged(|_| true).total(), 4);
    assert_eq!(run.comments, ["[Written by another tool]"]);
}

/// Text from a log is only ever text: a tag and a comment made of markup are escaped in the
/// HTML page, inert in markdown, and control characters are shown escaped in text.
#[test]
fn text_from_a_log_is_escaped_wherever_it_is_shown() {
    let line = valid_line();
    let rest = &line[line.find(',').unwrap() + 1..];
    let text = format!(
        "# <img src=x onerror=alert(1)>\n{}Tag=<script>alert(1)</script>|x*\u{1b}[2J,{rest}\n",
        header()
    );
    let run = read_text("hostile.hlog", text.as_bytes()).unwrap();
    let report = taskmeter_tune::report(&[run], false).unwrap();
    let page = html::report_page(&report);
    assert!(
        !page.contains("<script") && !page.contains("<img"),
        "markup from the log"
    );
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    let markdown = render::report_text(&report, true);
    assert!(
        markdown.contains("\\<script\\>alert(1)\\</script\\>\\|x\\*"),
        "{markdown}"
    );
    let plain = render::report_text(&report, false);
    assert!(
        !plain.contains('\u{1b}') && plain.contains("\\u{1b}[2J"),
        "{plain}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Model comparison of the varint decoder, with runs and counts up to `u64`'s and `i64`'s
    /// ends: the slots read are the model's, or the line is refused when a count lands past the
    /// layout's last slot or the counts pass 2^64; never a slot index that wraps around.
    #[test]
    fn counts_decode_as_the_model_says_or_are_refused(
        digits in 0_u8..=5,
        compress in any::<bool>(),
        steps in proptest::collection::vec(prop_oneof![
            (1_u64..5).prop_map(Step::Empty),
            prop_oneof![Just(1_u64 << 20), Just(1 << 40), Just(i64::MAX as u64 / 2 + 1), Just(i64::MAX as u64)].prop_map(Step::Empty),
            (0_u64..4).prop_map(Step::Count),
            prop_oneof![Just(1_u64 << 62), Just(i64::MAX as u64)].prop_map(Step::Count),
        ], 0..12),
    ) {
        let layout = taskmeter_tune::Layout::new(1, digits).unwrap();
        let mut model = Vec::new();
        let (mut index, mut total, mut refused) = (0_u128, 0_u128, false);
        for step in &steps {
            match *step {
                Step::Empty(run) => index += u128::from(run.min(i64::MAX as u64)),
                Step::Count(count) => {
                    if index >= u128::from(layout.slot_count()) {
                        refused = true;
                        break;
                    }
                    if count > 0 {
                        model.push((index as u32, count));
                    }
                    total += u128::from(count);
                    index += 1;
                }
            }
        }
        refused |= total > u128::from(u64::MAX);
        let read = read_text("steps.hlog", v2_line(digits, &steps, compress).as_bytes());
        match read {
            Err(error) => {
                prop_assert!(refused, "refused a valid histogram: {}", error);
                prop_assert_eq!(error.line, Some(1));
            }
            Ok(run) => {
                prop_assert!(!refused, "accepted {:?}", steps);
                let series = &run.series["t"];
                let slots: Vec<(u32, u64)> = series.entries(&series.intervals()[0]).collect();
                prop_assert_eq!(slots, model);
            }
        }
    }
}
