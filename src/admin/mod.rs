//! Loopback HTTP control API and Prometheus `/metrics`.
//!
//! The server knows nothing of the concrete node: it talks to an [`AdminBackend`];
//! [`NodeBackend`] is the one over a running node, and [`AdminServer`] starts the API
//! beside a node (the node itself never imports this module). Routes:
//!
//! | method and path             | answer                                                      |
//! |-----------------------------|-------------------------------------------------------------|
//! | `GET /v1/status`            | JSON [`StatusView`]                                         |
//! | `GET /v1/members`           | JSON array of [`MemberView`]                                |
//! | `GET /v1/kv/{key}`          | raw value bytes, headers `x-gossamer-writer`, `x-gossamer-hlc`; 404 if absent |
//! | `GET /v1/kv/{key}?meta=1`   | JSON [`KvMeta`]                                             |
//! | `PUT /v1/kv/{key}`          | body = value (at most [`MAX_BODY_BYTES`], else 413); 204, or 400 if rejected |
//! | `DELETE /v1/kv/{key}`       | 204 if deleted, 404 if absent                               |
//! | `GET /v1/kv?prefix=P&limit=N&after=K` | JSON array of [`KvListItem`], sorted by key: at most `N` (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`], and about [`PAGE_BYTES`] of keys and values) after key `K`; header [`NEXT_HEADER`] carries the cursor of the next page when one remains, [`INDEX_HEADER`] the change index the page is consistent with |
//! | `GET /v1/watch?prefix=P&index=I` | newline-delimited JSON [`watch::WatchLine`]s: changes under `P` after index `I` (default: from now), a heartbeat every [`watch::HEARTBEAT`] of silence, a reset marker when `I` cannot be resumed from (see [`watch`]); 400 for a prefix over 4,096 bytes, 429 beyond `watch.max_watches` |
//! | `POST /v1/event/{name}`     | body = payload: sends a user event; 200 JSON [`events::EventSent`], 400 bad name, 413 payload over `gossip.events.max_payload`, 429 above the node's event rate (see [`events`]) |
//! | `POST /v1/query/{name}?tag=K=V&dc=DC&node=ID&timeout_ms=N` | body = payload: asks the matching members; newline-delimited JSON [`queries::QueryLine`]s: acks and answers as they arrive, then the report with the silent members; 400 bad name, filter or timeout, 413 payload too large, 429 above the node's rate or beyond [`queries::MAX_ADMIN_QUERIES`] streaming (see [`queries`]) |
//! | `GET /v1/events?after=I`    | JSON array of the recent events this node delivered ([`crate::node::events::EventView`]) |
//! | `GET /v1/watch/events?index=I` | newline-delimited JSON [`events::EventLine`]s: events after `I`, heartbeats, `missed` counts |
//! | `GET /v1/watch/members`     | newline-delimited JSON [`watch_members::MemberLine`]s: every member, then each membership change as the node applies it, a heartbeat every [`watch::HEARTBEAT`] of silence, and the whole list again when the stream fell behind; 429 beyond [`watch_members::MAX_MEMBER_WATCHES`] |
//! | `GET /v1/watch/logs?level=L` | newline-delimited JSON [`logs::LogLine`]s: the process's log lines at `L` (default `info`) or more severe as they are written, `missed` counts, heartbeats; 400 for an unknown level, 501 when the process captures no log lines, 429 beyond [`logs::MAX_LOG_WATCHES`] |
//! | `GET /metrics`              | OpenMetrics text ([`METRICS_CONTENT_TYPE`]), encoded by prometheus-client from the metrics the backend registers |
//! | `GET /ui`                   | the read-only status page (`ui.rs`); served without the token |
//!
//! Keys may contain `/`; other characters outside the URL-unreserved set are
//! percent-encoded in the path. An empty key is answered 400. With an auth token
//! configured, every request must carry `Authorization: Bearer <token>`, else 401; only
//! the status page's static files (`/ui`, which hold no data) are served without it. Errors
//! are JSON `{"error": "..."}`. The server bounds what a client can hold (`serve.rs`):
//! connections, header and idle timeouts, a per-request deadline (408) and requests in
//! flight (503).

pub mod events;
pub mod logs;
mod metrics;
mod node_backend;
pub mod queries;
mod serve;
mod ui;
pub mod watch;
pub mod watch_members;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use prometheus_client::registry::Registry;

use crate::node::events::{EventView, EventWatch, EventWatchError};
use crate::node::watch::{Watch, WatchError};
use crate::node::{KvEntry, MemberEvents, MemberView, StatusView};
use events::{EventSent, SendEventError};

pub use metrics::{encode_metrics, metrics_registry, METRICS_CONTENT_TYPE};
pub use node_backend::{AdminServer, AdminStartError, NodeBackend};
/// The metrics client [`AdminBackend::register_metrics`] speaks, re-exported so that a
/// backend uses the same version.
pub use prometheus_client;
pub use serve::{serve_with, ServeLimits, TlsSource};
pub use ui::UI_CSP;

/// Entries in a listing page unless the client asks for another `limit`.
pub const DEFAULT_PAGE: usize = 1_000;

/// Most entries a client may ask for in one listing page.
pub const MAX_PAGE: usize = 10_000;

/// About how many bytes of keys and values one listing page holds (at least one entry):
/// concurrent listings of large values must not each hold the whole store in memory.
pub const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Response header of a listing with more entries after it: pass its value back as
/// `after` for the next page (the last key of this page, percent-encoded).
pub const NEXT_HEADER: &str = "x-gossamer-next";

/// Response header of a listing page (and of a watch): the change index the page is
/// consistent with (the index the watch starts after). A watch from it misses no change
/// and repeats none that the page shows.
pub const INDEX_HEADER: &str = "x-gossamer-index";

/// Largest accepted request body (a value written with `PUT /v1/kv/{key}`): 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Response header carrying the winning writer's node id on `GET /v1/kv/{key}`.
pub const WRITER_HEADER: &str = "x-gossamer-writer";

/// Response header carrying the winning write's HLC stamp as `<wall ms>.<logical>` on
/// `GET /v1/kv/{key}`.
pub const HLC_HEADER: &str = "x-gossamer-hlc";

/// Why a node refused a write, with a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The key lies outside the node's write grant (answered 403).
    #[error("{0}")]
    Forbidden(String),
    /// Anything else: bad input (400), or a failed store (503).
    #[error("{0}")]
    Refused(String),
}

impl From<String> for WriteError {
    fn from(msg: String) -> Self {
        WriteError::Refused(msg)
    }
}

/// What the admin API needs from a node. Calls must be quick (no blocking I/O); they run
/// on the async runtime, except `kv_set` and `kv_delete`, which may wait for a commit
/// and run on tokio's blocking pool.
pub trait AdminBackend: Send + Sync + 'static {
    /// The live value of `key`, if any (tombstones are absent).
    fn kv_get(&self, key: &str) -> Option<KvEntry>;
    /// Writes `key`; `Err` carries a message for the client (e.g. a size limit).
    fn kv_set(&self, key: &str, value: Vec<u8>) -> Result<(), WriteError>;
    /// Deletes `key`; `Ok(false)` when the key was absent.
    fn kv_delete(&self, key: &str) -> Result<bool, WriteError>;
    /// Why writes can no longer be made durable (a failed commit), if they cannot: a
    /// write refused then is answered 503, not 400.
    fn store_failure(&self) -> Option<String> {
        None
    }
    /// At most `limit` live entries whose key starts with `prefix` and sorts after
    /// `after`, in key order.
    fn kv_list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KvEntry>;
    /// [`AdminBackend::kv_list`] and the change index the page is consistent with (it
    /// shows every change up to that index and none after), if the backend keeps a
    /// change log.
    fn kv_list_indexed(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<KvEntry>, Option<u64>) {
        (self.kv_list(prefix, after, limit), None)
    }
    /// Opens a watch of the keys starting with `prefix` after `index` (none: from the
    /// current index on).
    fn watch(&self, prefix: &str, index: Option<u64>) -> Result<Watch, WatchError> {
        let _ = (prefix, index);
        Err(WatchError::Unsupported)
    }
    /// Sends a user event from this node.
    fn send_event(&self, name: &str, payload: Vec<u8>) -> Result<EventSent, SendEventError> {
        let _ = (name, payload);
        Err(SendEventError::Unavailable(
            "this node does not send events".into(),
        ))
    }
    /// Asks the members that match `filter` a query from this node.
    fn query(
        &self,
        name: &str,
        payload: Vec<u8>,
        filter: crate::core::queries::QueryFilter,
        timeout: std::time::Duration,
    ) -> Result<crate::node::queries::QueryHandle, queries::AskError> {
        let _ = (name, payload, filter, timeout);
        Err(queries::AskError::Unavailable(
            "this node does not ask queries".into(),
        ))
    }
    /// The recent events this node delivered with an index above `after`.
    fn recent_events(&self, after: Option<u64>) -> Vec<EventView> {
        let _ = after;
        Vec::new()
    }
    /// Follows the events this node delivers after `index` (none: from now on).
    fn watch_events(&self, index: Option<u64>) -> Result<EventWatch, EventWatchError> {
        let _ = index;
        Err(EventWatchError::Unsupported)
    }
    /// Every member known to this node, itself included.
    fn members(&self) -> Vec<MemberView>;
    /// Membership changes from now on, if the backend can follow them.
    fn member_events(&self) -> Option<MemberEvents> {
        None
    }
    /// Summary of the local node.
    fn status(&self) -> StatusView;
    /// Registers the backend's metrics in `registry`, once, when the router is built:
    /// typed metrics it updates, and collectors that read their values at each scrape of
    /// `/metrics` (the backend keeps its counters wherever it likes).
    fn register_metrics(self: Arc<Self>, registry: &mut Registry);
}

/// `GET /v1/kv/{key}?meta=1`: an entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvMeta {
    /// The key.
    pub key: String,
    /// The value as UTF-8 (invalid sequences replaced by U+FFFD).
    pub value: String,
    /// Length of the value in bytes.
    pub value_len: usize,
    /// True when the value is valid UTF-8, so `value` is exact.
    pub utf8: bool,
    /// Node whose write won.
    pub writer: String,
    /// HLC stamp of the winning write: wall milliseconds.
    pub hlc_ms: u64,
    /// HLC stamp of the winning write: logical counter.
    pub hlc_lc: u32,
    /// Version vector (writer -> counter).
    pub version: BTreeMap<String, u64>,
}

impl From<KvEntry> for KvMeta {
    fn from(e: KvEntry) -> Self {
        let utf8 = std::str::from_utf8(&e.value).is_ok();
        Self {
            value: String::from_utf8_lossy(&e.value).into_owned(),
            value_len: e.value.len(),
            utf8,
            key: e.key,
            writer: e.writer.to_string(),
            hlc_ms: e.hlc_ms,
            hlc_lc: e.hlc_lc,
            version: e.version,
        }
    }
}

/// One element of `GET /v1/kv?prefix=P`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvListItem {
    /// The key.
    pub key: String,
    /// The value as UTF-8 (invalid sequences replaced by U+FFFD).
    pub value: String,
    /// Length of the value in bytes.
    #[serde(default)]
    pub value_len: usize,
    /// Node whose write won.
    pub writer: String,
    /// HLC stamp of the winning write: wall milliseconds.
    pub hlc_ms: u64,
    /// HLC stamp of the winning write: logical counter.
    #[serde(default)]
    pub hlc_lc: u32,
}

impl From<KvEntry> for KvListItem {
    fn from(e: KvEntry) -> Self {
        Self {
            value: String::from_utf8_lossy(&e.value).into_owned(),
            value_len: e.value.len(),
            key: e.key,
            writer: e.writer.to_string(),
            hlc_ms: e.hlc_ms,
            hlc_lc: e.hlc_lc,
        }
    }
}

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Builds the admin router. `auth_token`, when set, is required as a bearer token on every
/// request but those of the status page `/ui`. Use [`serve`] unless the router is to be
/// embedded in another server.
pub fn router(backend: Arc<dyn AdminBackend>, auth_token: Option<String>) -> Router {
    let registry = Arc::new(metrics_registry(backend.clone()));
    let member_watches = Arc::new(tokio::sync::Semaphore::new(
        watch_members::MAX_MEMBER_WATCHES,
    ));
    let log_watches = Arc::new(tokio::sync::Semaphore::new(logs::MAX_LOG_WATCHES));
    let query_slots = Arc::new(tokio::sync::Semaphore::new(queries::MAX_ADMIN_QUERIES));
    let app = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/members", get(members))
        .route("/v1/kv", get(kv_list))
        .route("/v1/kv/", get(kv_list).put(empty_key).delete(empty_key))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/event/", axum::routing::post(events::empty_name))
        .route("/v1/event/{name}", axum::routing::post(events::send))
        .route("/v1/query/", axum::routing::post(queries::empty_name))
        .route(
            "/v1/query/{name}",
            axum::routing::post(move |b: State<Backend>, p, q, body| {
                queries::ask(b, query_slots, p, q, body)
            }),
        )
        .route("/v1/events", get(events::list))
        .route("/v1/watch/events", get(events::watch))
        .route(
            "/v1/watch/members",
            get(move |b: State<Backend>| watch_members::watch_members(b, member_watches)),
        )
        .route(
            "/v1/watch/logs",
            get(move |q| logs::watch_logs(q, log_watches)),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics(&registry))),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(backend);
    let app = match auth_token {
        Some(token) => app.layer(middleware::from_fn_with_state(
            Arc::<str>::from(token),
            require_token,
        )),
        None => app,
    };
    // Merged after the token check, so the page (which holds no data) loads without it.
    app.merge(ui::routes())
}

/// [`router`] with a deadline per request (then 408) and a bound on requests in flight
/// (beyond it 503), as tower layers.
pub fn router_with(
    backend: Arc<dyn AdminBackend>,
    auth_token: Option<String>,
    limits: ServeLimits,
) -> Router {
    // Around the whole router, as one service: `Router::layer` would wrap each route
    // apart, giving every route a bound of its own.
    let bounded = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(late_or_overloaded))
        .load_shed()
        .concurrency_limit(limits.max_in_flight.max(1))
        .timeout(limits.request_timeout)
        .service(router(backend, auth_token));
    Router::new().fallback_service(bounded)
}

async fn late_or_overloaded(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        error(StatusCode::REQUEST_TIMEOUT, "request took too long")
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry",
        )
    } else {
        error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

/// Serves the admin API on `listener` within [`ServeLimits::default`] until `shutdown`
/// completes, then finishes the requests in flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn AdminBackend>,
    auth_token: Option<String>,
    tls: Option<TlsSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        backend,
        auth_token,
        tls,
        ServeLimits::default(),
        shutdown,
    )
    .await
}

type Backend = Arc<dyn AdminBackend>;

/// A write outside the grant is 403; another refused write is the client's fault (400)
/// unless the node's store has failed (503).
fn write_error_status(b: &Backend, e: &WriteError) -> StatusCode {
    if matches!(e, WriteError::Forbidden(_)) {
        StatusCode::FORBIDDEN
    } else if b.store_failure().is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: msg.into() })).into_response()
}

async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            let mut resp = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn empty_key() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "empty key: give the key after /v1/kv/",
    )
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

async fn status(State(b): State<Backend>) -> Response {
    Json(b.status()).into_response()
}

async fn members(State(b): State<Backend>) -> Response {
    Json(b.members()).into_response()
}

fn metrics(registry: &Registry) -> Response {
    match encode_metrics(registry) {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a metrics collector failed",
        ),
    }
}

/// The key of a `/v1/kv/{key}` request, or the status and message of the rejection.
fn key_from(path: Result<Path<String>, PathRejection>) -> Result<String, (StatusCode, String)> {
    match path {
        Ok(Path(key)) if !key.is_empty() => Ok(key),
        Ok(_) => Err((StatusCode::BAD_REQUEST, "empty key".to_string())),
        Err(rej) => Err((rej.status(), rej.body_text())),
    }
}

fn truthy(v: Option<&String>) -> bool {
    matches!(v.map(|s| s.as_str()), Some(s) if !matches!(s, "0" | "false" | "no"))
}

async fn kv_get(
    State(b): State<Backend>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let key = match key_from(path) {
        Ok(k) => k,
        Err((status, msg)) => return error(status, msg),
    };
    let query = match query_params(query) {
        Ok(q) => q,
        Err((status, msg)) => return error(status, msg),
    };
    let Some(entry) = b.kv_get(&key) else {
        return error(StatusCode::NOT_FOUND, format!("key {key:?} not found"));
    };
    if truthy(query.get("meta")) {
        return Json(KvMeta::from(entry)).into_response();
    }
    let mut resp = Response::new(Body::from(entry.value));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(entry.writer.as_str()) {
        h.insert(WRITER_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}.{}", entry.hlc_ms, entry.hlc_lc)) {
        h.insert(HLC_HEADER, v);
    }
    resp
}

/// A request body, or the status and message of its rejection (413 naming the limit).
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, (StatusCode, String)> {
    body.map_err(|rej| match rej.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        ),
        status => (status, rej.body_text()),
    })
}

async fn kv_put(
    State(b): State<Backend>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = match key_from(path) {
        Ok(k) => k,
        Err((status, msg)) => return error(status, msg),
    };
    let body = match body_bytes(body) {
        Ok(body) => body,
        Err((status, msg)) => return error(status, msg),
    };
    // A node with a data directory returns once the write is on disk: wait for it off
    // the async workers.
    let set = {
        let (key, b) = (key.clone(), b.clone());
        tokio::task::spawn_blocking(move || b.kv_set(&key, body.to_vec())).await
    };
    match set.unwrap_or_else(|e| Err(format!("write failed: {e}").into())) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(write_error_status(&b, &e), e.to_string()),
    }
}

async fn kv_delete(
    State(b): State<Backend>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let key = match key_from(path) {
        Ok(k) => k,
        Err((status, msg)) => return error(status, msg),
    };
    let deleted = {
        let (key, b) = (key.clone(), b.clone());
        tokio::task::spawn_blocking(move || b.kv_delete(&key)).await
    };
    match deleted.unwrap_or_else(|e| Err(format!("delete failed: {e}").into())) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("key {key:?} not found")),
        Err(e) => error(write_error_status(&b, &e), e.to_string()),
    }
}

/// A request's query parameters, or the status and message refusing a malformed query.
pub(super) fn query_params(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, (StatusCode, String)> {
    query
        .map(|Query(q)| q)
        .map_err(|rej| (rej.status(), rej.body_text()))
}

async fn kv_list(
    State(b): State<Backend>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let query = match query_params(query) {
        Ok(q) => q,
        Err((status, msg)) => return error(status, msg),
    };
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let after = query.get("after").map(String::as_str);
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be a number from 1 to {MAX_PAGE}"),
            )
        }
    };
    // One more than asked shows whether another page follows.
    let (mut entries, index) = b.kv_list_indexed(prefix, after, limit + 1);
    let mut more = entries.len() > limit;
    entries.truncate(limit);
    let mut bytes = 0usize;
    let mut items: Vec<KvListItem> = Vec::with_capacity(entries.len());
    for e in entries {
        if !items.is_empty() && bytes + e.key.len() + e.value.len() > PAGE_BYTES {
            more = true;
            break;
        }
        bytes += e.key.len() + e.value.len();
        items.push(KvListItem::from(e));
    }
    let mut resp = Json(&items).into_response();
    if let Some(index) = index {
        resp.headers_mut()
            .insert(INDEX_HEADER, HeaderValue::from(index));
    }
    if more {
        if let Some(last) = items.last() {
            let cursor = client::percent_encode(&last.key, false);
            if let Ok(v) = HeaderValue::from_str(&cursor) {
                resp.headers_mut().insert(NEXT_HEADER, v);
            }
        }
    }
    resp
}

pub mod client;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

#[cfg(all(test, feature = "testing"))]
mod tests;
