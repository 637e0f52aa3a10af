//! The HTTP endpoint: `GET /metrics` (Prometheus text, or OpenMetrics when the `Accept` header
//! prefers it) and `GET /metrics.json`, served from [`AtomicMetrics::latest`].
//!
//! The server runs hyper on a private single-threaded tokio runtime in a thread of its own, so
//! callers need no async runtime. It trusts no client: request headers are bounded in size
//! (`max_header_bytes`) and in time (`header_timeout`), every connection in lifetime
//! (`connection_lifetime`), and connections in number (`max_connections`). At the limit, a new
//! connection makes the oldest one close gracefully (at once if it is idle, as a keep-alive
//! connection between requests is; after its response if not; within 50 ms in any case, so a
//! slow client's request head still arriving is dropped) and gets its slot; if none frees
//! within 100 ms, the new one is closed. So neither idle keep-alive connections nor slow
//! clients keep a scrape out.
//!
//! Scrapes read the published snapshot ([`AtomicMetrics::latest`]), so a scrape never slows
//! recording, unless that snapshot is older than `max_snapshot_age` (default 30 s): then the
//! scrape takes a snapshot itself, so the server never serves stale figures as current when
//! no snapshotter runs or it stalled. Every exposition carries its snapshot's timestamp and
//! sequence (`…_snapshot_timestamp_seconds`, `…_snapshot_sequence`). A snapshot a scrape takes
//! is an interval the snapshotter's sinks do not see; with a snapshotter running more often
//! than `max_snapshot_age`, scrapes take none.
//!
//! ```
//! use std::sync::Arc;
//! use taskmeter::AtomicMetrics;
//! use taskmeter::server::{MetricsServer, ServerConfig};
//!
//! let metrics = Arc::new(AtomicMetrics::new());
//! // Port 0 picks a free port; the default is 127.0.0.1:9464.
//! let config = ServerConfig::default().bind("127.0.0.1:0".parse().unwrap());
//! let server = MetricsServer::start(Arc::clone(&metrics), config).unwrap();
//! println!("scrape {}", server.url());
//! server.stop();
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::AtomicMetrics;
use crate::export::{DEFAULT_MAX_SNAPSHOT_AGE, Endpoint, ExportConfig};

/// The default address: loopback only, on the port OpenMetrics exporters commonly use.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Limits and address of a [`MetricsServer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ServerConfig {
    addr: SocketAddr,
    max_connections: usize,
    max_header_bytes: usize,
    header_timeout: Duration,
    connection_lifetime: Duration,
    max_snapshot_age: Duration,
    export: ExportConfig,
    #[cfg(feature = "prometheus")]
    registry: Option<prometheus::Registry>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: DEFAULT_ADDR.parse().expect("a valid socket address"),
            max_connections: 64,
            max_header_bytes: 8 * 1024,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_snapshot_age: DEFAULT_MAX_SNAPSHOT_AGE,
            export: ExportConfig::default(),
            #[cfg(feature = "prometheus")]
            registry: None,
        }
    }
}

impl ServerConfig {
    /// Where to listen (default `127.0.0.1:9464`; port 0 picks a free one).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Connections served at once (default 64, at least 1); more are closed on accept.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// The largest request head accepted (default 8 KiB, 1 KiB to 1 MiB); a larger one gets
    /// `431` or a closed connection.
    pub fn max_header_bytes(mut self, max_header_bytes: usize) -> Self {
        self.max_header_bytes = max_header_bytes;
        self
    }

    /// How long a client may take to send a request head (default 5 s, at least 1 ms).
    pub fn header_timeout(mut self, header_timeout: Duration) -> Self {
        self.header_timeout = header_timeout;
        self
    }

    /// How long one connection may stay open, keep-alive included (default 60 s).
    pub fn connection_lifetime(mut self, connection_lifetime: Duration) -> Self {
        self.connection_lifetime = connection_lifetime;
        self
    }

    /// The oldest published snapshot a scrape is served from (default 30 s); an older one, or
    /// none yet, makes the scrape take a snapshot first. `Duration::MAX`: never; the scrape
    /// serves whatever was published last (sequence 0, all zeros, until a snapshot is taken).
    pub fn max_snapshot_age(mut self, max_snapshot_age: Duration) -> Self {
        self.max_snapshot_age = max_snapshot_age;
        self
    }

    /// Names, buckets and quantiles of the Prometheus and OpenMetrics responses.
    pub fn export(mut self, export: ExportConfig) -> Self {
        self.export = export;
        self
    }

    /// Serves an application's `prometheus::Registry` with taskmeter's families (feature
    /// `prometheus`; see [`Endpoint::merge_registry`]). [`MetricsServer::start`] refuses a
    /// registry using one of taskmeter's names with `InvalidInput`.
    #[cfg(feature = "prometheus")]
    pub fn merge_registry(mut self, registry: prometheus::Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The endpoint the server answers with.
    fn endpoint(&self, metrics: Arc<AtomicMetrics>) -> io::Result<Endpoint> {
        let endpoint = Endpoint::new(metrics)
            .export(self.export.clone())
            .max_snapshot_age(self.max_snapshot_age);
        #[cfg(feature = "prometheus")]
        if let Some(registry) = &self.registry {
            return endpoint
                .merge_registry(registry.clone())
                .map_err(|collision| io::Error::new(io::ErrorKind::InvalidInput, collision));
        }
        Ok(endpoint)
    }

    fn validate(&self) -> io::Result<()> {
        let refuse = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        if self.max_connections == 0 {
            return refuse("max_connections = 0: accepted 1 or more".into());
        }
        if !(1024..=1 << 20).contains(&self.max_header_bytes) {
            return refuse(format!(
                "max_header_bytes = {} is out of range: accepted 1024 to 1048576",
                self.max_header_bytes
            ));
        }
        if self.header_timeout < Duration::from_millis(1)
            || self.connection_lifetime < Duration::from_millis(1)
        {
            return refuse("header_timeout and connection_lifetime must be at least 1 ms".into());
        }
        Ok(())
    }
}

/// A running `/metrics` server; stops when [`stop`](Self::stop) is called or it is dropped.
pub struct MetricsServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `config`'s address now (so a busy port is reported here) and serves from a new
    /// thread.
    pub fn start(metrics: Arc<AtomicMetrics>, config: ServerConfig) -> io::Result<Self> {
        config.validate()?;
        let endpoint = Arc::new(config.endpoint(metrics)?);
        let listener = TcpListener::bind(config.addr)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (shutdown, stop_requested) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("taskmeter-server".into())
            .spawn(move || {
                runtime.block_on(serve(listener, endpoint, Arc::new(config), stop_requested));
            })?;
        Ok(MetricsServer {
            local_addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.local_addr)
    }

    /// Stops accepting, closes every connection, and joins the server thread.
    pub fn stop(mut self) {
        self.shutdown_and_join();
    }

    fn shutdown_and_join(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown_and_join();
    }
}

async fn serve(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    config: Arc<ServerConfig>,
    mut stop_requested: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "taskmeter server: cannot listen");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut connections = JoinSet::new();
    // The connections open, oldest first: their ids, and how to ask each to close.
    let mut open: VecDeque<(tokio::task::Id, oneshot::Sender<()>)> = VecDeque::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop_requested => break,
            // Reap finished connections so that the set does not grow.
            // A connection that ended, or whose task panicked, leaves the list by its task id.
            Some(finished) = connections.join_next_with_id(), if !connections.is_empty() => {
                let ended = finished.map_or_else(|error| error.id(), |(id, ())| id);
                open.retain(|(id, _)| *id != ended);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "taskmeter server: accept failed; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // At the limit: the oldest connection closes gracefully to make room.
                if let Some((_, close)) = open.pop_front() {
                    let _ = close.send(());
                }
                let freed = tokio::time::timeout(EVICTION_WAIT, Arc::clone(&slots).acquire_owned());
                match freed.await {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        drop(stream); // nothing freed in time: closed at once
                        continue;
                    }
                }
            }
        };
        let (close, close_requested) = oneshot::channel();
        let (endpoint, limits) = (Arc::clone(&endpoint), Arc::clone(&config));
        let task = connections.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, &endpoint);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(limits.max_header_bytes)
                .serve_connection(TokioIo::new(stream), service);
            let served = async move {
                let mut connection = std::pin::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    Ok(()) = close_requested => {
                        // Graceful: a response under way ends first. A request head still
                        // arriving (a slow client) would hold the slot until its header
                        // timeout: past `EVICTION_GRACE`, the connection is dropped.
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(EVICTION_GRACE, connection).await;
                    }
                }
            };
            // Errors are the client's (malformed, too slow, gone): the connection ends.
            let _ = tokio::time::timeout(limits.connection_lifetime, served).await;
        });
        open.push_back((task.id(), close));
    }
    connections.shutdown().await;
}

/// How long a connection over the limit waits for the oldest to close.
const EVICTION_WAIT: Duration = Duration::from_millis(100);
/// How long an evicted connection may take to close gracefully: less than `EVICTION_WAIT`.
const EVICTION_GRACE: Duration = Duration::from_millis(50);

fn respond(request: &Request<Incoming>, endpoint: &Endpoint) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/metrics.json" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /metrics.json\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let exposition = if path == "/metrics.json" {
        endpoint.metrics_json()
    } else {
        // An `Accept` header that is not visible ASCII counts as none.
        endpoint.metrics(request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()))
    };
    let mut response = Response::new(Full::new(Bytes::from(exposition.body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(exposition.content_type),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
