//! A busy scrape in an engine older than its window: a worker thread records 1,000 tasks of
//! the mix between scrapes, and each scrape takes a snapshot and renders solti's families
//! (which read the cumulative view only). The window is 400 ms, and the engine is aged past it
//! first, so that its age buckets' starts hold counts, as in any process running longer than
//! its window (the peers bench's engine is younger than its 60 s window).
//!
//! `cargo run --release --example busy_scrape [read | interval]` prints the mean time of a
//! scrape over 20,000 of them; with `read`, each scrape also reads the snapshot's window, as an
//! exporter of the window's quantiles does; with `interval`, each scrape also walks every
//! label's interval slots, as the interval-log sink does.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use taskmeter::AtomicMetrics;
use taskmeter::export::ExportConfig;
use taskmeter_workload::{replay, task_mix};

fn main() {
    let read_window = std::env::args().nth(1).as_deref() == Some("read");
    let read_interval = std::env::args().nth(1).as_deref() == Some("interval");
    let window = Duration::from_millis(400);
    let metrics = Arc::new(AtomicMetrics::builder().window(window).build().unwrap());
    let busy = Arc::new(task_mix(1_000, 8));
    replay(&*metrics, &task_mix(100_000, 7));
    metrics.snapshot();
    let (tx, rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let m = metrics.clone();
    let b = busy.clone();
    std::thread::spawn(move || {
        for () in rx {
            replay(&*m, &b);
            done_tx.send(()).unwrap();
        }
    });
    let solti_only = ExportConfig::builder()
        .extra_families(false)
        .build()
        .unwrap();
    // Age the engine past its window: the buckets' starts hold counts.
    let start = Instant::now();
    while start.elapsed() < window * 3 / 2 {
        tx.send(()).unwrap();
        done_rx.recv().unwrap();
        let s = metrics.snapshot();
        if read_window {
            s.window();
        }
    }
    let rounds = 20_000;
    let mut timed = Duration::ZERO;
    for _ in 0..rounds {
        tx.send(()).unwrap();
        done_rx.recv().unwrap();
        let t0 = Instant::now();
        let s = metrics.snapshot();
        let mut text = String::new();
        s.write_prometheus(&solti_only, &mut text);
        if read_window {
            s.window();
        }
        if read_interval {
            let interval = s.interval();
            let slots: usize = taskmeter::RunnerType::ALL
                .iter()
                .flat_map(|&r| {
                    taskmeter::TaskOutcome::ALL
                        .iter()
                        .map(move |&o| interval.duration_counts(r, o).iter().count())
                })
                .sum();
            std::hint::black_box(slots);
        }
        timed += t0.elapsed();
    }
    println!(
        "{} {:?}",
        if read_window {
            "solti + window read"
        } else if read_interval {
            "solti + interval read"
        } else {
            "solti only"
        },
        timed / rounds
    );
}
