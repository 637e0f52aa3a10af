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
fn at_the_limit_the_oldest_connection_makes_room_for_a_new_one() {
    let config = ServerConfig::default()
        .max_connections(2)
        .header_timeout(Duration::from_secs(5));
    let (_metrics, server) = start(config);
    let addr = server.local_addr();
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // The third is served: the oldest held connection, which sent nothing, is closed.
    let third = get(addr, "/metrics", None);
    assert_eq!(third.status, 200);
    held[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut raw = Vec::new();
    assert_eq!(
        held[0].read_to_end(&mut raw).unwrap(),
        0,
        "the oldest was not closed"
    );
    drop(held);
    // Capacity returns once the held connections are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(addr, "/metrics", None).status != 200 {
        assert!(Instant::now() < deadline, "the server did not recover");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one request on a kept-alive connection and reads its response (by content length).
fn keep_alive_request(stream: &mut TcpStream) -> u16 {
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    loop {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "closed before the response ended");
        raw.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|length| length.trim().parse().ok())
                .expect("a content length");
            if body.len() >= length {
                return head.split(' ').nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

#[test]
fn idle_keep_alive_connections_never_keep_a_scrape_out() {
    let (_metrics, server) = start(ServerConfig::default().max_connections(64));
    let addr = server.local_addr();
    // Every slot taken by a client that scraped once and keeps its connection open.
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            assert_eq!(keep_alive_request(&mut stream), 200);
            stream
        })
        .collect();
    for scrape in 0..36 {
        assert_eq!(get(addr, "/metrics", None).status, 200, "scrape {scrape}");
    }
    drop(idle);
}

/// Clients that send part of a request head and wait, each replaced by a new one as soon as
/// the server closes it, more of them than the server's connections: every scrape between
/// them is served.
#[test]
fn slow_clients_holding_request_heads_never_keep_a_scrape_out() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_metrics, server) = start(ServerConfig::default().max_connections(8));
    let addr = server.local_addr();
    let stop = AtomicBool::new(false);
    let slow_client = || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: sl")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        stream
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut clients: Vec<TcpStream> = (0..10).map(|_| slow_client()).collect();
            while !stop.load(Ordering::Relaxed) {
                for client in &mut clients {
                    let mut byte = [0_u8; 1];
                    let waiting = match client.read(&mut byte) {
                        Err(error) => matches!(
                            error.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                        // Closed, or answered: the server is done with it.
                        Ok(_) => false,
                    };
                    if !waiting {
                        *client = slow_client();
                    }
                }
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let statuses: Vec<Option<u16>> = (0..8)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                exchange(addr, request).map(|reply| reply.status)
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(statuses, vec![Some(200); 8], "scrapes among slow clients");
    });
}

#[test]
fn a_scrape_never_serves_a_snapshot_older_than_the_bound() {
    let (metrics, server) =
        start(ServerConfig::default().max_snapshot_age(Duration::from_millis(50)));
    let addr = server.local_addr();
    let sequence_in = |body: &str| -> u64 {
        body.lines()
            .find_map(|line| line.strip_prefix("solti_runner_snapshot_sequence "))
            .expect("the sequence gauge")
            .parse()
            .unwrap()
    };
    // Fresh: served as published.
    let published = metrics.latest().sequence();
    assert_eq!(sequence_in(&get(addr, "/metrics", None).body), published);
    // Stale: the scrape takes a snapshot, with what was recorded since.
    metrics.record_task_started(RunnerType::Container);
    std::thread::sleep(Duration::from_millis(100));
    let body = get(addr, "/metrics", None).body;
    assert!(sequence_in(&body) > published);
    assert!(body.contains("solti_runner_tasks_started_total{runner=\"container\"} 1\n"));

    // With no snapshot ever taken, a scrape takes the first.
    let unsnapshotted = Arc::new(AtomicMetrics::new());
    unsnapshotted.record_task_started(RunnerType::Wasm);
    let server = MetricsServer::start(
        Arc::clone(&unsnapshotted),
        ServerConfig::default().bind("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let body = get(server.local_addr(), "/metrics", None).body;
    assert_eq!(sequence_in(&body), 1);
    assert!(body.contains("solti_runner_tasks_started_total{runner=\"wasm\"} 1\n"));
    // Never, when asked: sequence 0 is served as it is.
    let never = MetricsServer::start(
        Arc::new(AtomicMetrics::new()),
        ServerConfig::default()
            .bind("127.0.0.1:0".parse().unwrap())
            .max_snapshot_age(Duration::MAX),
    )
    .unwrap();
    assert_eq!(
        sequence_in(&get(never.local_addr(), "/metrics", None).body),
        0
    );
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
