//! A fault-injecting HTTP proxy in front of DynamoDB Local, for the failures the SDK itself sees.
//!
//! [`FaultProxy`] listens on a free port of 127.0.0.1 and forwards each request to DynamoDB Local.
//! On data-plane requests (reads, queries, scans and transactions; never table management, so
//! that setup stays reliable), a seeded draw at [`FaultPlan::rate`] injects one [`FaultKind`]:
//! a throttle or an `InternalServerError` answered without forwarding, a connection reset before
//! forwarding, an answer held past the client's attempt timeout, or an applied write whose answer
//! is lost. The SDK's own retries, its `ClientRequestToken`, its timeouts and its retry quota then
//! meet them as they would meet the real service. Counts of each kind are kept for the test to
//! print and check, and so are the `TransactWriteItems` that reach DynamoDB Local again with the
//! `ClientRequestToken` of one it applied: the SDK's retries of a write whose answer was lost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use std::{fmt, io};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The header naming a DynamoDB operation (`DynamoDB_20120810.GetItem`).
pub const TARGET_HEADER: &str = "x-amz-target";
/// DynamoDB's content type, on its answers and its errors.
pub const AMZ_JSON: &str = "application/x-amz-json-1.0";
/// Where DynamoDB's JSON protocol names an error besides the body's `__type`.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";
/// The namespace prefix of DynamoDB's error types.
const ERROR_NAMESPACE: &str = "com.amazonaws.dynamodb.v20120810";

const TRANSACT_WRITE_ITEMS: &str = "DynamoDB_20120810.TransactWriteItems";

/// Operations faults are injected into: the engine's reads and commits, and the scans of audits.
pub const DATA_PLANE_OPERATIONS: &[&str] = &[
    "DynamoDB_20120810.BatchGetItem",
    "DynamoDB_20120810.TransactWriteItems",
    "DynamoDB_20120810.GetItem",
    "DynamoDB_20120810.Query",
    "DynamoDB_20120810.Scan",
];

/// Headers that belong to one hop, not to the request: never relayed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What a faulty request meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 400 `ThrottlingException`, not forwarded.
    Throttle,
    /// 500 `InternalServerError`, not forwarded.
    InternalError,
    /// The connection reset (RST) before the request is forwarded.
    Reset,
    /// Forwarded and applied, but answered only after [`FaultPlan::delay`], past the client's
    /// attempt timeout.
    Delay,
    /// Forwarded and applied, then the connection closes instead of relaying the answer.
    LostAnswer,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] =
        [FaultKind::Throttle, FaultKind::InternalError, FaultKind::Reset, FaultKind::Delay, FaultKind::LostAnswer];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttling",
            FaultKind::InternalError => "internal_server_error",
            FaultKind::Reset => "connection_reset",
            FaultKind::Delay => "delayed_past_timeout",
            FaultKind::LostAnswer => "applied_answer_lost",
        }
    }

    fn index(self) -> usize {
        FaultKind::ALL.iter().position(|kind| *kind == self).expect("ALL lists every kind")
    }
}

/// How often and how faults strike.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Chance that one data-plane request meets a fault (0 to 1); the kind is then drawn evenly.
    pub rate: f64,
    /// Seeds the draws. Concurrent requests take them in arrival order, so a run with several
    /// clients is not replayed exactly, only its mix of faults.
    pub seed: u64,
    /// How long a [`FaultKind::Delay`] answer is held: longer than the client's attempt timeout.
    pub delay: Duration,
}

/// Requests seen and faults injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Data-plane requests received, faulty or not.
    pub data_plane: u64,
    /// Other requests (table management), always forwarded untouched.
    pub management: u64,
    /// Injected faults, by [`FaultKind::index`].
    pub injected: [u64; 5],
    /// `TransactWriteItems` forwarded with the `ClientRequestToken` of one DynamoDB Local applied.
    pub token_replays: u64,
    /// Of those, the ones DynamoDB Local answered with success, as an idempotent replay.
    pub token_replays_succeeded: u64,
}

impl FaultCounts {
    pub fn of(&self, kind: FaultKind) -> u64 {
        self.injected[kind.index()]
    }

    pub fn total_injected(&self) -> u64 {
        self.injected.iter().sum()
    }

    /// Kinds never injected.
    pub fn missing(&self) -> Vec<FaultKind> {
        FaultKind::ALL.into_iter().filter(|kind| self.of(*kind) == 0).collect()
    }
}

impl std::ops::Sub for FaultCounts {
    type Output = FaultCounts;
    fn sub(self, rhs: FaultCounts) -> FaultCounts {
        FaultCounts {
            data_plane: self.data_plane - rhs.data_plane,
            management: self.management - rhs.management,
            injected: std::array::from_fn(|index| self.injected[index] - rhs.injected[index]),
            token_replays: self.token_replays - rhs.token_replays,
            token_replays_succeeded: self.token_replays_succeeded - rhs.token_replays_succeeded,
        }
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} data-plane requests, {} injected (", self.data_plane, self.total_injected())?;
        for (position, kind) in FaultKind::ALL.into_iter().enumerate() {
            let separator = if position == 0 { "" } else { ", " };
            write!(f, "{separator}{} {}", kind.label(), self.of(kind))?;
        }
        write!(
            f,
            "); {} writes replayed with the token of an applied one, {} of them answered with success; {} management requests",
            self.token_replays, self.token_replays_succeeded, self.management
        )
    }
}

/// The running proxy. Dropping it stops it and closes every connection it holds.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://host:port`: DynamoDB Local speaks plain HTTP).
    pub async fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
        assert!((0.0..=1.0).contains(&plan.rate), "a fault rate is a probability: {}", plan.rate);
        let upstream = upstream.trim_end_matches('/').to_owned();
        assert!(upstream.starts_with("http://"), "the proxy forwards plain HTTP only, not {upstream}");
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("binding the fault proxy to a free port of 127.0.0.1");
        let address = listener.local_addr().expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            upstream,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            plan,
            rng: Mutex::new(StdRng::seed_from_u64(plan.seed)),
            data_plane: AtomicU64::new(0),
            management: AtomicU64::new(0),
            injected: Default::default(),
            tokens: Mutex::default(),
            token_replays: AtomicU64::new(0),
            token_replays_succeeded: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept(listener, Arc::clone(&shared)));
        FaultProxy { address, shared, task }
    }

    /// A proxy in front of the DynamoDB Local the environment names (`AWS_ENDPOINT_URL_DYNAMODB`,
    /// as `scripts/with-dynamodb-local.sh` sets it).
    pub async fn in_front_of_dynamodb_local(plan: FaultPlan) -> FaultProxy {
        let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
        FaultProxy::start(&upstream, plan).await
    }

    /// The endpoint URL to give a client.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn counts(&self) -> FaultCounts {
        let shared = &self.shared;
        FaultCounts {
            data_plane: shared.data_plane.load(Ordering::Relaxed),
            management: shared.management.load(Ordering::Relaxed),
            injected: std::array::from_fn(|index| shared.injected[index].load(Ordering::Relaxed)),
            token_replays: shared.token_replays.load(Ordering::Relaxed),
            token_replays_succeeded: shared.token_replays_succeeded.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it aborts them all.
        self.task.abort();
    }
}

#[derive(Debug)]
struct Shared {
    /// `http://host:port`, without a trailing slash.
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    plan: FaultPlan,
    rng: Mutex<StdRng>,
    data_plane: AtomicU64,
    management: AtomicU64,
    injected: [AtomicU64; 5],
    /// `ClientRequestToken`s of the `TransactWriteItems` forwarded so far: whether DynamoDB Local
    /// applied them, `None` while the first is in flight.
    tokens: Mutex<HashMap<String, Option<bool>>>,
    token_replays: AtomicU64,
    token_replays_succeeded: AtomicU64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Shared {
    fn draw(&self) -> Option<FaultKind> {
        let mut rng = self.rng.lock().expect("no draw panics while holding the lock");
        if !rng.random_bool(self.plan.rate) {
            return None;
        }
        let kind = FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())];
        self.injected[kind.index()].fetch_add(1, Ordering::Relaxed);
        Some(kind)
    }

    /// [`Shared::forward`], noting writes replayed with the token of one that was applied.
    async fn forward_write(&self, parts: hyper::http::request::Parts, body: Bytes) -> Result<Response<Full<Bytes>>, BoxError> {
        let is_write = parts.headers.get(TARGET_HEADER).is_some_and(|target| target == TRANSACT_WRITE_ITEMS);
        let Some(token) = is_write.then(|| client_request_token(&body)).flatten() else {
            return self.forward(parts, body).await;
        };
        // A replay of a refused write (its refusal lost) is evaluated afresh: not counted.
        let replays_applied = match self.tokens.lock().expect("no map access panics").entry(token.clone()) {
            std::collections::hash_map::Entry::Occupied(first) => *first.get() == Some(true),
            std::collections::hash_map::Entry::Vacant(first) => {
                first.insert(None);
                false
            }
        };
        let response = self.forward(parts, body).await?;
        let applied = response.status().is_success();
        if replays_applied {
            self.token_replays.fetch_add(1, Ordering::Relaxed);
            self.token_replays_succeeded.fetch_add(u64::from(applied), Ordering::Relaxed);
        } else {
            self.tokens.lock().expect("no map access panics").entry(token).and_modify(|first| *first = first.or(Some(applied)));
        }
        Ok(response)
    }

    /// Sends the request on to DynamoDB Local and reads its whole answer.
    async fn forward(&self, parts: hyper::http::request::Parts, body: Bytes) -> Result<Response<Full<Bytes>>, BoxError> {
        let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let mut request = Request::builder().method(parts.method).uri(format!("{}{path}", self.upstream)).body(Full::new(body))?;
        // The Host header is relayed as the client signed it; DynamoDB Local does not check signatures.
        *request.headers_mut() = end_to_end(parts.headers);
        let (parts, body) = self.client.request(request).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        let mut response = Response::from_parts(parts, Full::new(body));
        let headers = std::mem::take(response.headers_mut());
        *response.headers_mut() = end_to_end(headers);
        Ok(response)
    }
}

fn client_request_token(body: &[u8]) -> Option<String> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(request.get("ClientRequestToken")?.as_str()?.to_owned())
}

fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    headers
}

/// An error as DynamoDB answers it: JSON naming the type, and the type in a header too.
fn dynamodb_error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": format!("{ERROR_NAMESPACE}#{error_type}"), "message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    headers.insert(HeaderName::from_static(ERROR_TYPE_HEADER), HeaderValue::from_str(error_type).expect("error types are ASCII words"));
    let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    headers.insert(HeaderName::from_static("x-amzn-requestid"), HeaderValue::from_str(&request_id).expect("a UUID is ASCII"));
    response
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, Arc::clone(&shared)));
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait, rather than spin.
                    eprintln!("fault proxy: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so that the set does not grow for the whole run.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one client connection, keep-alive, until the client closes it or a fault does.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    // Nagle would add delays to every small answer; failing to disable it only slows the test.
    let _ = stream.set_nodelay(true);
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Resettable { stream, reset: Arc::clone(&reset) });
    let service = service_fn(move |request| handle(Arc::clone(&shared), Arc::clone(&reset), request));
    // The errors here are the injected ones, or the client hanging up on a delayed answer.
    let _ = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service).await;
}

/// One request: forwarded, or met by a fault.
async fn handle(shared: Arc<Shared>, reset: Arc<AtomicBool>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, BoxError> {
    let target = request.headers().get(TARGET_HEADER).and_then(|target| target.to_str().ok());
    let data_plane = target.is_some_and(|target| DATA_PLANE_OPERATIONS.contains(&target));
    let (parts, body) = request.into_parts();
    // The whole request first, as DynamoDB reads it before answering, even with an error.
    let body = body.collect().await?.to_bytes();
    if !data_plane {
        shared.management.fetch_add(1, Ordering::Relaxed);
        return shared.forward(parts, body).await;
    }
    shared.data_plane.fetch_add(1, Ordering::Relaxed);
    match shared.draw() {
        None => shared.forward_write(parts, body).await,
        Some(FaultKind::Throttle) => {
            Ok(dynamodb_error(StatusCode::BAD_REQUEST, "ThrottlingException", "Rate of requests exceeds the allowed throughput."))
        }
        Some(FaultKind::InternalError) => {
            Ok(dynamodb_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "Internal server error (injected)"))
        }
        Some(FaultKind::Reset) => {
            // Failing the service makes hyper drop the connection without answering; the flag
            // turns that close into a reset.
            reset.store(true, Ordering::Relaxed);
            Err("injected: connection reset before forwarding".into())
        }
        Some(FaultKind::Delay) => {
            let response = shared.forward_write(parts, body).await?;
            tokio::time::sleep(shared.plan.delay).await;
            Ok(response)
        }
        Some(FaultKind::LostAnswer) => {
            shared.forward_write(parts, body).await?;
            Err("injected: the answer to an applied request is lost".into())
        }
    }
}

/// A client connection that closes with a reset (RST) rather than a FIN once `reset` is set.
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            // A zero linger makes close() send RST at once (and never blocks). Should it fail,
            // the client still sees the connection close unanswered.
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
