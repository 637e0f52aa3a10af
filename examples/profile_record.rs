//! One thread replays the mix through a `MetricsHandle` in a loop: a target for `perf record`
//! on the record path. Prints ns per call.
use std::sync::Arc;

use taskmeter::{AtomicMetrics, MetricsHandle};
use taskmeter_workload::{hot_label, replay, task_mix};

fn main() {
    let rounds: u32 = std::env::args().nth(1).map_or(200, |a| a.parse().unwrap());
    let digits: u8 = std::env::var("DIGITS").map_or(3, |d| d.parse().unwrap());
    let metrics = Arc::new(
        AtomicMetrics::builder()
            .significant_digits(digits)
            .build()
            .unwrap(),
    );
    let handle: MetricsHandle = match std::env::args().nth(3).as_deref() {
        Some("noop") => taskmeter::noop_metrics(),
        _ => metrics.clone(),
    };
    let calls = match std::env::args().nth(2).as_deref() {
        Some("hot") => hot_label(50_000),
        _ => task_mix(50_000, 1),
    };
    replay(&*handle, &calls);
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        replay(&*handle, &calls);
    }
    let per_call = started.elapsed().as_secs_f64() * 1e9 / (f64::from(rounds) * calls.len() as f64);
    println!("{per_call:.2} ns per call");
    assert!(metrics.snapshot().sequence() == 1);
}
