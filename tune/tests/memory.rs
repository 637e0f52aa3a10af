//! Memory follows the samples a file holds, never the width of its histograms' layout: a small
//! file of one-sample series at both ends of a 5-digit layout (6.3 million slots each) is
//! read, reported and drawn within a few MiB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use taskmeter_tune::input::read_run_from;
use taskmeter_tune::render::{self, html};

mod common;
use common::{Step, v2_line};

struct Counting;

static HELD: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn grew(bytes: i64) {
    let held = HELD.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(held, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as i64);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as i64 - layout.size() as i64);
        // SAFETY: as above; `ptr` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    let before = HELD.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let run = read_run_from("wide.hlog".into(), log.as_bytes(), &mut |_| {}).unwrap();
    assert_eq!(run.series.len(), 40);
    let report = taskmeter_tune::report(&[run], false).unwrap();
    assert_eq!(report.runs[0].series[0].count, 2);
    let page = html::report_page(&report);
    let text = render::report_text(&report, false);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(page.len() + text.len() > 0);
    assert!(
        peak < 8 << 20,
        "{} MiB at the peak for 80 samples",
        peak >> 20
    );
}
