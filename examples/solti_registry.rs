//! A solti 0.0.8 application's one `/metrics`: its own `prometheus::Registry` (an API counter,
//! the build info) with taskmeter inside it, served by axum.
//!
//! taskmeter takes solti-prometheus's place: runners record through the `BuildContext`'s
//! handle, taskvisor's events reach `TaskvisorMetrics`, and `PrometheusCollector` puts every
//! family into the application's registry, under solti-prometheus's names.
//!
//! `cargo run --release --example solti_registry --features axum,prometheus,solti [-- OUT]`
//! runs a supervisor with a few tasks, serves the registry on a loopback port, scrapes it once
//! over HTTP, checks that the scrape holds the application's metrics and taskmeter's, and
//! writes the body to `OUT` (stdout without one). CI checks that file with promtool.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};
use taskmeter::AtomicMetrics;
use taskmeter::collector::PrometheusCollector;
use taskmeter::solti::TaskvisorMetrics;
use taskvisor::{Subscribe, Supervisor, SupervisorConfig, TaskContext, TaskFn, TaskRef, TaskSpec};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The engine, where solti-prometheus's two adapters were.
    let metrics = Arc::new(AtomicMetrics::new());
    let context =
        solti_runner::BuildContext::new(solti_runner::RunnerEnv::new(), metrics.solti_handle());
    let subscriber = Arc::new(TaskvisorMetrics::new(Arc::clone(&metrics)));

    // The application's registry: its own metrics, and taskmeter's families beside them.
    let registry = Registry::new();
    let requests = IntCounter::new("api_requests_total", "API requests served").unwrap();
    let build = IntGauge::with_opts(
        Opts::new("app_build_info", "Build information").const_label("version", "1.4.0"),
    )
    .unwrap();
    build.set(1);
    registry.register(Box::new(requests.clone())).unwrap();
    registry.register(Box::new(build)).unwrap();
    registry
        .register(Box::new(PrometheusCollector::new(Arc::clone(&metrics))))
        .expect("no name of taskmeter's is taken");

    // Some work: a runner that failed to set up, and tasks under a taskvisor supervisor.
    context.metrics().record_runner_error(
        solti_runner::RunnerType::Custom("image-resize".into()),
        solti_runner::RunnerErrorKind::SpawnFailed,
    );
    let supervisor = Supervisor::new(
        SupervisorConfig::default(),
        vec![Arc::clone(&subscriber) as Arc<dyn Subscribe>],
    );
    let task: TaskRef = TaskFn::arc(|_ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    });
    let specs = (0..4)
        .map(|n| TaskSpec::once(format!("resize-{n}"), Arc::clone(&task)))
        .collect();
    supervisor.run(specs).await.expect("the tasks run");
    metrics.snapshot();

    // One route for everything.
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            let requests = requests.clone();
            async move {
                requests.inc();
                let mut body = Vec::new();
                TextEncoder::new()
                    .encode(&registry.gather(), &mut body)
                    .expect("encodes");
                String::from_utf8(body).expect("UTF-8")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let body = tokio::task::spawn_blocking(move || scrape(address))
        .await
        .expect("the scrape");
    for expected in [
        "api_requests_total 1",
        "app_build_info{version=\"1.4.0\"} 1",
        "solti_runner_tasks_completed_total{runner=\"subprocess\",outcome=\"success\"} 4",
        "solti_runner_errors_total{runner=\"image-resize\",error=\"spawn_failed\"} 1",
        "solti_taskvisor_task_final_outcomes_total{outcome=\"outcome_completed\"} 4",
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }
    match std::env::args().nth(1) {
        Some(path) => std::fs::write(&path, &body).expect("writes the scrape"),
        None => print!("{body}"),
    }
}

/// `GET /metrics` over a plain HTTP/1.1 connection; the body.
fn scrape(address: std::net::SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}
