//! Memory follows the samples a file holds, never the width of its histograms' layout: a small
//! file of one-sample series at both ends of a 5-digit layout (6.3 million slots each) is
//! read, reported and drawn within a few MiB.

use taskmeter_tune::input::read_run_from;
use taskmeter_tune::render::{self, html};

mod common;
mod counting;
use common::{Step, v2_line};
use counting::Peak;

#[test]
fn wide_one_sample_series_cost_their_samples_not_their_layout() {
    let top = taskmeter_tune::Layout::new(1, 5).unwrap().slot_count() as u64 - 1;
    let mut log = String::new();
    for tag in 0..40 {
        // Two intervals: one sample in slot 0, one in the last slot.
        for steps in [vec![Step::Count(1)], vec![Step::Empty(top), Step::Count(1)]] {
            log += &v2_line(5, &steps, true).replacen("Tag=t,", &format!("Tag=t{tag},"), 1);
        }
    }
    let peak = Peak::start();
    let run = read_run_from("wide.hlog".into(), log.as_bytes(), &mut |_| {}).unwrap();
    assert_eq!(run.series.len(), 40);
    let report = taskmeter_tune::report(&[run], false).unwrap();
    assert_eq!(report.runs[0].series[0].count, 2);
    let page = html::report_page(&report);
    let text = render::report_text(&report, false);
    let peak = peak.bytes();
    assert!(page.len() + text.len() > 0);
    assert!(
        peak < 8 << 20,
        "{} MiB at the peak for 80 samples",
        peak >> 20
    );
}
