//! Takes snapshots in a loop while two threads record: a target for `perf record`.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use taskmeter::AtomicMetrics;
use taskmeter_workload::{replay, task_mix};

fn main() {
    let metrics = Arc::new(AtomicMetrics::new());
    let recording = Arc::new(AtomicBool::new(true));
    let writer_count: u64 = std::env::args().nth(1).map_or(2, |a| a.parse().unwrap());
    replay(&*metrics, &task_mix(50_000, 99));
    let writers: Vec<_> = (0..writer_count)
        .map(|seed| {
            let (metrics, recording) = (Arc::clone(&metrics), Arc::clone(&recording));
            std::thread::spawn(move || {
                let calls = task_mix(50_000, seed);
                while recording.load(Ordering::Relaxed) {
                    replay(&*metrics, &calls);
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        metrics.snapshot();
    }
    println!("{:?} per snapshot", started.elapsed() / 1000);
    recording.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
}
