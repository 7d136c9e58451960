//! A small HTTP/1.1 client for a node's admin API (see [`crate::admin`]).
//!
//! One TCP connection per request: the CLI issues a request or two per run, so pooling
//! would buy nothing. With [`AdminClient::with_tls`] each connection is HTTPS (see
//! [`crate::identity::admin_client_config`]).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::admin::{ErrorBody, KvListItem, KvMeta};

mod events;
mod logs;
mod members;
mod queries;
mod watch;
pub use queries::query_path;
pub use watch::{IndexedListing, LineStream, StreamLine, WatchStream, WATCH_SILENCE};

/// Time allowed for each request, from connecting to reading the whole answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted a connection at the admin address.
    #[error(
        "cannot connect to the admin API at {addr}: {source} \
         (is the node running? pass its admin address with --admin ADDR)"
    )]
    Connect {
        /// The admin address used.
        addr: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate refused by either side, plain HTTP server).
    #[error(
        "TLS handshake with the admin API at {addr} failed: {source} (check --ca, --cert and \
         --key: the node must hold a certificate of the CA in --ca, and takes operator \
         certificates from `gossamer certs issue --client NAME`)"
    )]
    Tls {
        /// The admin address used.
        addr: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The node did not answer in time.
    #[error("the admin API at {addr} did not answer within {} s", timeout.as_secs())]
    Timeout {
        /// The admin address used.
        addr: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The HTTP exchange failed (connection reset, malformed response...).
    #[error("HTTP error talking to the admin API at {addr}: {source}{hint}")]
    Http {
        /// The admin address used.
        addr: String,
        /// Underlying error.
        source: hyper::Error,
        /// What probably went wrong, when the error suggests it (else empty).
        hint: &'static str,
    },
    /// The node requires a bearer token and none, or a wrong one, was given.
    #[error("the admin API at {addr} refused the request: {message} (pass the admin token with --token)")]
    Unauthorized {
        /// The admin address used.
        addr: String,
        /// The server's explanation.
        message: String,
    },
    /// The node answered with an error status.
    #[error("the admin API answered {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("unexpected answer from the admin API: {0}")]
    Decode(String),
    /// The request cannot be made (bad address or key).
    #[error("{0}")]
    Invalid(String),
}

/// A raw answer: status, headers and body.
#[derive(Debug)]
struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Client for one node's admin API.
#[derive(Clone)]
pub struct AdminClient {
    addr: String,
    token: Option<String>,
    timeout: Duration,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl AdminClient {
    /// A client for the admin API at `addr` (`host:port`; a leading `http://` is accepted,
    /// and `https://` once [`AdminClient::with_tls`] is called), sending
    /// `token` as a bearer token when given.
    pub fn new(addr: impl Into<String>, token: Option<String>) -> Self {
        let addr = addr.into();
        let addr = addr
            .strip_prefix("http://")
            .unwrap_or(&addr)
            .trim_end_matches('/')
            .to_string();
        Self {
            addr,
            token,
            timeout: REQUEST_TIMEOUT,
            tls: None,
        }
    }

    /// Speaks HTTPS with `config` (from [`crate::identity::admin_client_config`]).
    pub fn with_tls(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        if let Some(rest) = self.addr.strip_prefix("https://") {
            self.addr = rest.to_string();
        }
        self.tls = Some(TlsConnector::from(config));
        self
    }

    /// Replaces the per-request timeout (default [`REQUEST_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The admin address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The value of `key`, or `None` if absent.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let resp = self.request(Method::GET, &kv_path(key)?, None).await?;
        match resp.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(resp.body.to_vec())),
            _ => Err(self.error(resp)),
        }
    }

    /// The value of `key` with its writer, HLC stamp and version vector, or `None` if absent.
    pub async fn get_meta(&self, key: &str) -> Result<Option<KvMeta>, ClientError> {
        let path = format!("{}?meta=1", kv_path(key)?);
        let resp = self.request(Method::GET, &path, None).await?;
        match resp.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => decode(&resp.body).map(Some),
            _ => Err(self.error(resp)),
        }
    }

    /// Writes `key = value`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), ClientError> {
        let resp = self
            .request(Method::PUT, &kv_path(key)?, Some(value.to_vec()))
            .await?;
        if resp.status.is_success() {
            Ok(())
        } else {
            Err(self.error(resp))
        }
    }

    /// Deletes `key`; `false` if it was absent.
    pub async fn delete(&self, key: &str) -> Result<bool, ClientError> {
        let resp = self.request(Method::DELETE, &kv_path(key)?, None).await?;
        match resp.status {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self.error(resp)),
        }
    }

    /// Live entries whose key starts with `prefix`, sorted by key: every page of the
    /// listing, one request each.
    pub async fn list(&self, prefix: &str) -> Result<Vec<KvListItem>, ClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = self.list_page(prefix, after.as_deref(), None).await?;
            all.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// One page of a listing: at most `limit` entries (the server's default without one)
    /// whose key starts with `prefix` and sorts after `after` (a cursor this returned
    /// before), and the cursor of the next page if there is one.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<KvListItem>, Option<String>), ClientError> {
        let mut path = format!("/v1/kv?prefix={}", percent_encode(prefix, false));
        if let Some(a) = after {
            // A cursor is a percent-encoded key already.
            path.push_str("&after=");
            path.push_str(a);
        }
        if let Some(l) = limit {
            path.push_str(&format!("&limit={l}"));
        }
        let resp = self.request(Method::GET, &path, None).await?;
        if !resp.status.is_success() {
            return Err(self.error(resp));
        }
        let next = resp
            .headers
            .get(super::NEXT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((decode(&resp.body)?, next))
    }

    /// The members as seen by the node, itself first.
    pub async fn members(&self) -> Result<Vec<crate::node::MemberView>, ClientError> {
        self.get_json("/v1/members").await
    }

    /// The node's status.
    pub async fn status(&self) -> Result<crate::node::StatusView, ClientError> {
        self.get_json("/v1/status").await
    }

    /// The node's metrics in the OpenMetrics text format, as `/metrics` serves them.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let resp = self.request(Method::GET, "/metrics", None).await?;
        if !resp.status.is_success() {
            return Err(self.error(resp));
        }
        String::from_utf8(resp.body.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.request(Method::GET, path, None).await?;
        if !resp.status.is_success() {
            return Err(self.error(resp));
        }
        decode(&resp.body)
    }

    fn error(&self, resp: RawResponse) -> ClientError {
        let message = match serde_json::from_slice::<ErrorBody>(&resp.body) {
            Ok(b) => b.error,
            Err(_) if resp.body.is_empty() => resp
                .status
                .canonical_reason()
                .unwrap_or("no explanation")
                .to_string(),
            Err(_) => String::from_utf8_lossy(&resp.body).trim().to_string(),
        };
        if resp.status == StatusCode::UNAUTHORIZED {
            ClientError::Unauthorized {
                addr: self.addr.clone(),
                message,
            }
        } else {
            ClientError::Status {
                status: resp.status.as_u16(),
                message,
            }
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let open = self.open(method, path, body).await?;
        let status = open.resp.status();
        let headers = open.resp.headers().clone();
        let body = open.resp.into_body().collect().await;
        open.driver.abort();
        let body = body.map_err(|e| self.http_err(e))?.to_bytes();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// The error of a failed HTTP exchange, with a hint when the error suggests one.
    fn http_err(&self, source: hyper::Error) -> ClientError {
        let hint = match (self.tls.is_some(), source.is_parse()) {
            (false, true) => {
                " (does the node serve HTTPS, admin_tls? then pass --ca, --cert and --key)"
            }
            // TLS 1.3 clients learn of a refused client certificate only from the
            // alert that ends the connection.
            (true, false) => {
                " (did the node refuse our client certificate? it takes operator \
                 certificates from `gossamer certs issue --client NAME` of its CA, passed \
                 with --cert and --key; its log names the reason)"
            }
            _ => "",
        };
        ClientError::Http {
            addr: self.addr.clone(),
            source,
            hint,
        }
    }

    /// Connects, sends the request and returns once the answer's header is in; its
    /// body is read from the connection as the caller goes.
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Open, ClientError> {
        if self.addr.contains("://") {
            return Err(ClientError::Invalid(format!(
                "admin address {:?} must be host:port (https:// is chosen with --ca)",
                self.addr
            )));
        }
        let http_err = |e| self.http_err(e);
        let stream =
            TcpStream::connect(&self.addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: self.addr.clone(),
                    source,
                })?;
        let _ = stream.set_nodelay(true);
        let req = self.build_request(method, path, body)?;
        match &self.tls {
            None => send(TokioIo::new(stream), req, http_err).await,
            Some(tls) => {
                // Nodes are verified by chain and node URI, not by name (as QUIC peers).
                let name = rustls::pki_types::ServerName::try_from(crate::identity::SNI)
                    .map_err(|e| ClientError::Invalid(e.to_string()))?;
                let stream =
                    tls.connect(name, stream)
                        .await
                        .map_err(|source| ClientError::Tls {
                            addr: self.addr.clone(),
                            source,
                        })?;
                send(TokioIo::new(stream), req, http_err).await
            }
        }
    }

    fn build_request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.as_str())
            .header(
                header::USER_AGENT,
                concat!("gossamer/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Invalid("the token contains invalid characters".into())
            })?;
            builder = builder.header(header::AUTHORIZATION, value);
        }
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/octet-stream");
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Invalid(format!("cannot build request: {e}")))
    }
}

/// An answer whose header is in and whose body is read as the caller goes, with the
/// task driving its connection (abort it when done).
struct Open {
    resp: hyper::Response<hyper::body::Incoming>,
    driver: tokio::task::JoinHandle<()>,
    /// Kept until the body is read: the connection is not to end before.
    _sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

/// Sends `req` on a fresh connection `io` and waits for the answer's header.
async fn send<I>(
    io: I,
    req: Request<Full<Bytes>>,
    http_err: impl Fn(hyper::Error) -> ClientError,
) -> Result<Open, ClientError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(&http_err)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "admin client connection ended");
        }
    });
    match sender.send_request(req).await {
        Ok(resp) => Ok(Open {
            resp,
            driver,
            _sender: sender,
        }),
        Err(e) => {
            driver.abort();
            Err(http_err(e))
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
}

/// The path of `key` under `/v1/kv/`.
fn kv_path(key: &str) -> Result<String, ClientError> {
    if key.is_empty() {
        return Err(ClientError::Invalid("the key must not be empty".into()));
    }
    Ok(format!("/v1/kv/{}", encode_key(key)))
}

/// Percent-encodes a key for use in a path: unreserved characters and `/` stay as they
/// are, except that a `/` that would produce an empty segment (leading, trailing or
/// doubled) and `.`/`..` segments are encoded too, so the path survives normalisation.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| match seg {
            "" => String::new(),
            "." => "%2E".to_string(),
            ".." => "%2E%2E".to_string(),
            s => percent_encode(s, false),
        })
        .enumerate()
        .fold(String::new(), |mut acc, (i, seg)| {
            if i > 0 {
                // A separator stays literal only between two non-empty segments.
                let prev_empty = acc.is_empty() || acc.ends_with("%2F");
                if prev_empty || seg.is_empty() {
                    acc.push_str("%2F");
                } else {
                    acc.push('/');
                }
            }
            acc.push_str(&seg);
            acc
        })
}

/// Percent-encodes `s` byte by byte, keeping RFC 3986 unreserved characters (and `/` when
/// `keep_slash`).
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_client_percent_encoding() {
        assert_eq!(percent_encode("a-b_c.d~e", false), "a-b_c.d~e");
        assert_eq!(percent_encode("a/b c", false), "a%2Fb%20c");
        assert_eq!(percent_encode("a/b c", true), "a/b%20c");
        assert_eq!(percent_encode("é?&=+#%", false), "%C3%A9%3F%26%3D%2B%23%25");
        assert_eq!(encode_key("a/b/c"), "a/b/c");
        assert_eq!(encode_key("/a"), "%2Fa");
        assert_eq!(encode_key("a/"), "a%2F");
        assert_eq!(encode_key("a//b"), "a%2F%2Fb");
        assert_eq!(encode_key("a/../b"), "a/%2E%2E/b");
        assert_eq!(encode_key("./x"), "%2E/x");
        assert_eq!(encode_key("/"), "%2F");
        assert_eq!(encode_key("sp ace/q?"), "sp%20ace/q%3F");
    }

    #[test]
    fn admin_client_normalises_addr() {
        assert_eq!(
            AdminClient::new("http://127.0.0.1:1/", None).addr(),
            "127.0.0.1:1"
        );
        assert_eq!(AdminClient::new("127.0.0.1:1", None).addr(), "127.0.0.1:1");
    }

    #[tokio::test]
    async fn admin_client_connection_refused_names_address() {
        // Bind then drop a listener to get a port that is (almost certainly) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let err = AdminClient::new(addr.clone(), None)
            .status()
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&addr), "{msg}");
        assert!(msg.contains("--admin"), "{msg}");
    }

    #[tokio::test]
    async fn admin_client_timeout() {
        // A listener that accepts but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                if let Ok((s, _)) = listener.accept().await {
                    held.push(s);
                }
            }
        });
        let err = AdminClient::new(addr.clone(), None)
            .with_timeout(Duration::from_millis(200))
            .status()
            .await
            .unwrap_err();
        hold.abort();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr));
    }

    #[tokio::test]
    async fn admin_client_rejects_other_schemes() {
        let err = AdminClient::new("https://127.0.0.1:1", None)
            .status()
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Invalid(_)), "{err:?}");
    }
}
