//! Exports one snapshot of the peers benchmark's content in a loop: a target for `perf record`
//! on the Prometheus text export. Prints µs per export. With `solti` as the second argument,
//! only the families solti-prometheus exports.
use taskmeter::AtomicMetrics;
use taskmeter::export::ExportConfig;
use taskmeter_workload::{replay, task_mix};

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().map_or(2_000, |a| a.parse().unwrap());
    let solti_only = args.next().as_deref() == Some("solti");
    let config = ExportConfig::builder()
        .extra_families(!solti_only)
        .build()
        .unwrap();
    let metrics = AtomicMetrics::new();
    replay(&metrics, &task_mix(50_000, 7));
    let fresh = std::env::var("FRESH").is_ok();
    let mut snapshot = metrics.snapshot();
    let mut bytes = 0;
    let mut spent = std::time::Duration::ZERO;
    for _ in 0..rounds {
        if fresh {
            snapshot = metrics.snapshot();
        }
        let started = std::time::Instant::now();
        let mut text = String::new();
        snapshot.write_prometheus(&config, &mut text);
        spent += started.elapsed();
        bytes += text.len();
    }
    let per_export = spent.as_secs_f64() * 1e6 / f64::from(rounds);
    println!(
        "{per_export:.1} µs per export of {} bytes",
        bytes / rounds as usize
    );
}
