//! The `axum` feature's router, served by axum on loopback and asked with real requests.
#![cfg(all(feature = "axum", not(loom)))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use taskmeter::export::{Endpoint, ExportConfig};
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};

/// `(status, lower-cased head, body)` of one `GET` with `Connection: close`.
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Serves `app` on a loopback port from a runtime on its own thread, for the test's life.
fn serve(app: axum::Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}

#[test]
fn the_router_serves_every_format_next_to_the_applications_routes() {
    let metrics = Arc::new(AtomicMetrics::new());
    metrics.record_task_started(RunnerType::Wasm);
    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 1_500);
    let export = ExportConfig::builder()
        .const_label("node", "eu-1")
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the application" }))
        .merge(taskmeter::axum::router_with(
            Endpoint::new(Arc::clone(&metrics)).export(export.clone()),
        ));
    let addr = serve(app);

    assert_eq!(get(addr, "/", None).2, "the application");

    // No snapshot was taken yet: the first scrape takes one, and sees the calls.
    let (status, head, body) = get(addr, "/metrics", None);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(metrics.latest().sequence(), 1);
    assert_eq!(
        body,
        metrics
            .latest()
            .render(taskmeter::export::Format::Prometheus, &export)
    );
    assert!(body.contains("solti_runner_tasks_started_total{runner=\"wasm\",node=\"eu-1\"} 1\n"));

    let prometheus_scrape =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, head, body) = get(addr, "/metrics", Some(prometheus_scrape));
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/openmetrics-text; version=1.0.0"));
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(
        metrics.latest().sequence(),
        1,
        "a fresh snapshot is served as it is"
    );

    let (status, head, body) = get(addr, "/metrics.json", None);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["labels"]["node"], "eu-1");
    assert_eq!(json["cumulative"]["started"]["wasm"], 1);

    assert_eq!(get(addr, "/metrics/other", None).0, 404);
}
