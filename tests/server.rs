//! The `/metrics` endpoint over real loopback connections, well-behaved and not.
#![cfg(all(feature = "server", not(loom)))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use taskmeter::server::{MetricsServer, ServerConfig};
use taskmeter::{AtomicMetrics, MetricsBackend, RunnerType, TaskOutcome};

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// Sends raw bytes, then reads until the server closes or `Connection: close` completes.
fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    })
}

fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n");
    exchange(addr, request.as_bytes()).expect("a response")
}

fn start(config: ServerConfig) -> (Arc<AtomicMetrics>, MetricsServer) {
    let metrics = Arc::new(AtomicMetrics::new());
    metrics.record_task_started(RunnerType::Wasm);
    metrics.record_task_completed(RunnerType::Wasm, TaskOutcome::Success, 1_500);
    metrics.snapshot();
    let server = MetricsServer::start(
        Arc::clone(&metrics),
        config.bind("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    (metrics, server)
}

#[test]
fn serves_prometheus_openmetrics_and_json() {
    let (metrics, server) = start(ServerConfig::default());
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());

    let reply = get(addr, "/metrics", None);
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(reply.body, metrics.latest().to_prometheus());
    assert!(
        reply
            .body
            .contains("solti_runner_tasks_started_total{runner=\"wasm\"} 1\n")
    );

    let prometheus_accept =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let reply = get(addr, "/metrics", Some(prometheus_accept));
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .contains("content-type: application/openmetrics-text; version=1.0.0")
    );
    assert!(reply.body.ends_with("# EOF\n"));

    let reply = get(addr, "/metrics.json", None);
    assert_eq!(reply.status, 200);
    assert!(reply.headers.contains("content-type: application/json"));
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        json["cumulative"]["completed"]["wasm"]["success"]["count"],
        1
    );

    // What a scrape shows follows the published snapshots.
    metrics.record_task_started(RunnerType::Wasm);
    metrics.snapshot();
    assert!(
        get(addr, "/metrics", None)
            .body
            .contains("solti_runner_tasks_started_total{runner=\"wasm\"} 2\n")
    );
    server.stop();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[test]
fn wrong_paths_and_methods_get_clear_statuses() {
    let (_metrics, server) = start(ServerConfig::default());
    let addr = server.local_addr();
    assert_eq!(get(addr, "/", None).status, 404);
    assert_eq!(get(addr, "/metrics/extra", None).status, 404);
    let reply = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .unwrap();
    assert_eq!(reply.status, 405);
    assert!(reply.headers.contains("allow: get, head"));
    let reply = exchange(
        addr,
        b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
}

#[test]
fn malformed_oversized_and_slow_requests_are_refused_and_serving_goes_on() {
    let config = ServerConfig::default()
        .header_timeout(Duration::from_millis(300))
        .max_header_bytes(4 * 1024);
    let (_metrics, server) = start(config);
    let addr = server.local_addr();

    // Garbage: 400 or a closed connection, never a hang.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        if let Some(reply) = exchange(addr, garbage) {
            assert!((400..500).contains(&reply.status), "{}", reply.status);
        }
    }
    // A head over the limit: 431 or closed.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    if let Some(reply) = exchange(addr, huge.as_bytes()) {
        assert_eq!(reply.status, 431);
    }
    // A client that never finishes its head is cut off after the header timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    assert_eq!(get(addr, "/metrics", None).status, 200);
}

#[test]
fn connections_over_the_limit_are_closed_and_capacity_comes_back() {
    let config = ServerConfig::default()
        .max_connections(2)
        .header_timeout(Duration::from_secs(5));
    let (_metrics, server) = start(config);
    let addr = server.local_addr();
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // The third is accepted and closed at once: no response, end of stream.
    let mut third = TcpStream::connect(addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    let _ = third.read_to_end(&mut raw);
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    drop(held);
    // Capacity returns once the held connections are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .is_some_and(|r| r.status == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn invalid_limits_and_busy_ports_are_reported() {
    let metrics = Arc::new(AtomicMetrics::new());
    let error = MetricsServer::start(
        Arc::clone(&metrics),
        ServerConfig::default().max_connections(0),
    )
    .unwrap_err();
    assert!(error.to_string().contains("max_connections"));
    let error = MetricsServer::start(
        Arc::clone(&metrics),
        ServerConfig::default().max_header_bytes(10),
    )
    .unwrap_err();
    assert!(error.to_string().contains("max_header_bytes = 10"));
    let first = MetricsServer::start(
        Arc::clone(&metrics),
        ServerConfig::default().bind("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let busy = MetricsServer::start(metrics, ServerConfig::default().bind(first.local_addr()));
    assert!(busy.is_err());
}
