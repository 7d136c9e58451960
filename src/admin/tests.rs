//! Admin API tests against a real listener on 127.0.0.1 with an in-memory backend.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::testing::{TestServer, FAKE_FORBIDDEN, FAKE_MAX_KEY};
use super::{ErrorBody, KvListItem, KvMeta, ServeLimits, MAX_BODY_BYTES, MAX_PAGE, NEXT_HEADER};
use crate::admin::client::{AdminClient, ClientError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one raw request and returns status, headers and body.
async fn raw(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", server.addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {}", String::from_utf8_lossy(body)))
        .error
}

fn client(server: &TestServer) -> AdminClient {
    AdminClient::new(server.addr.to_string(), None)
}

#[tokio::test]
async fn admin_kv_roundtrip_with_client() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    assert_eq!(c.get("missing").await.unwrap(), None);
    c.set("greeting", b"hello").await.unwrap();
    assert_eq!(
        c.get("greeting").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    c.set("greeting", b"bye").await.unwrap();
    assert_eq!(
        c.get("greeting").await.unwrap().as_deref(),
        Some(&b"bye"[..])
    );
    let meta = c.get_meta("greeting").await.unwrap().unwrap();
    assert_eq!(meta.value, "bye");
    assert_eq!(meta.value_len, 3);
    assert!(meta.utf8);
    assert_eq!(meta.writer, "n1");
    assert_eq!(meta.version.get("n1"), Some(&2));
    assert!(c.delete("greeting").await.unwrap());
    assert!(!c.delete("greeting").await.unwrap());
    assert_eq!(c.get("greeting").await.unwrap(), None);
    assert_eq!(c.get_meta("greeting").await.unwrap(), None);
    // Empty values are values.
    c.set("empty", b"").await.unwrap();
    assert_eq!(c.get("empty").await.unwrap(), Some(vec![]));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_keys_with_special_characters() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    let keys = [
        "a/b/c",
        "/leading",
        "trailing/",
        "dou//ble",
        "sp ace",
        "q?x=1&y#z",
        "per%cent",
        "ünï/cødé",
        "a/../b",
        ".",
        "..",
        "/",
        "plus+sign",
    ];
    for (i, k) in keys.iter().enumerate() {
        c.set(k, format!("v{i}").as_bytes()).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            c.get(k).await.unwrap(),
            Some(format!("v{i}").into_bytes()),
            "key {k:?}"
        );
        let stored = server.backend.kv_get_for_test(k);
        assert!(stored, "key {k:?} stored under another name");
    }
    let listed: Vec<String> = c
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let mut expected: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Prefixes with reserved characters.
    let listed = c.list("q?x=1&").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "q?x=1&y#z");
    let listed = c.list("plus+").await.unwrap();
    assert_eq!(listed.len(), 1);
    for k in keys {
        assert!(c.delete(k).await.unwrap(), "key {k:?}");
    }
    assert!(c.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn admin_kv_get_raw_headers_and_binary() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    let binary = vec![0u8, 159, 146, 150, 255, b'\n'];
    c.set("bin", &binary).await.unwrap();
    let (status, headers, body) = raw(&server, "GET", "/v1/kv/bin", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], &binary[..]);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-gossamer-writer"], "n1");
    let hlc = headers["x-gossamer-hlc"].to_str().unwrap();
    let (ms, lc) = hlc.split_once('.').unwrap();
    assert!(ms.parse::<u64>().unwrap() > 1_700_000_000_000);
    assert_eq!(lc, "2");

    let (status, headers, body) = raw(&server, "GET", "/v1/kv/bin?meta=1", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let meta: KvMeta = serde_json::from_slice(&body).unwrap();
    assert_eq!(meta.value_len, binary.len());
    assert!(!meta.utf8);
    assert_eq!(meta.hlc_lc, 2);

    let (status, headers, body) = raw(&server, "GET", "/v1/kv/nope", &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(error_text(&body).contains("nope"));
}

#[tokio::test]
async fn admin_kv_put_rejections() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    // Rejected by the backend: 400 with its message.
    let long_key = "k".repeat(FAKE_MAX_KEY + 1);
    let err = c.set(&long_key, b"v").await.unwrap_err();
    match &err {
        ClientError::Status { status, message } => {
            assert_eq!(*status, 400);
            assert!(message.contains("key is longer"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let (status, _, body) = raw(&server, "PUT", "/v1/kv/x", &[], vec![0; 300 * 1024]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_text(&body).contains("value is longer"));
    // Over the body limit: 413.
    let (status, _, body) = raw(&server, "PUT", "/v1/kv/x", &[], vec![0; MAX_BODY_BYTES + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_text(&body).contains("limit"));
    let err = c.set("x", &vec![1; MAX_BODY_BYTES + 10]).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status: 413, .. }),
        "{err:?}"
    );
    // Invalid UTF-8 in the key.
    let (status, _, body) = raw(&server, "PUT", "/v1/kv/%FF", &[], b"v".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!error_text(&body).is_empty());
    assert_eq!(server.backend.len_for_test(), 0);
}

#[tokio::test]
async fn admin_list_json_shape() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    c.set("app/b", b"2").await.unwrap();
    c.set("app/a", b"1").await.unwrap();
    c.set("other", b"3").await.unwrap();
    let (status, _, body) = raw(&server, "GET", "/v1/kv?prefix=app%2F", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["key"], "app/a");
    assert_eq!(arr[0]["value"], "1");
    assert_eq!(arr[0]["writer"], "n1");
    assert!(arr[0]["hlc_ms"].as_u64().is_some());
    assert_eq!(arr[1]["key"], "app/b");
    let items: Vec<KvListItem> = c.list("app/").await.unwrap();
    assert_eq!(items.len(), 2);
    let all = c.list("").await.unwrap();
    assert_eq!(all.len(), 3);
    let (status, _, body) = raw(&server, "GET", "/v1/kv", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let v: Vec<KvListItem> = serde_json::from_slice(&body).unwrap();
    assert_eq!(v.len(), 3);
}

#[tokio::test]
async fn admin_status_members_metrics() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    c.set("k", b"v").await.unwrap();
    let status = c.status().await.unwrap();
    assert_eq!(status.node_id.as_str(), "n1");
    assert_eq!(status.keys, 1);
    assert_eq!(status.members.get("alive"), Some(&1));
    let members = c.members().await.unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].id.as_str(), "n2");
    assert_eq!(members[0].status, "suspect");
    assert_eq!(members[0].rtt_ms, Some(0.42));
    assert_eq!(members[1].last_heard_ms_ago, None);
    assert!(members[1].is_self);

    let (status, headers, body) = raw(&server, "GET", "/metrics", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("# TYPE gossamer_keys gauge\ngossamer_keys 1\n"),
        "{text}"
    );
    assert!(
        text.contains("gossamer_members{status=\"alive\"} 1\n"),
        "{text}"
    );
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert_eq!(c.metrics().await.unwrap(), text);
}

#[tokio::test]
async fn admin_unknown_routes_and_methods() {
    let server = TestServer::start(None).await;
    let (status, _, body) = raw(&server, "GET", "/v2/nothing", &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!error_text(&body).is_empty());
    let (status, _, body) = raw(&server, "POST", "/v1/status", &[], vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!error_text(&body).is_empty());
    let (status, _, _) = raw(&server, "POST", "/v1/kv/x", &[], b"v".to_vec()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn admin_bearer_token() {
    let server = TestServer::start(Some("s3cret")).await;
    for (path, headers) in [
        ("/v1/status", vec![]),
        ("/metrics", vec![]),
        ("/v1/kv/x", vec![("authorization", "Bearer wrong")]),
        ("/v1/members", vec![("authorization", "Basic s3cret")]),
        ("/nowhere", vec![("authorization", "Bearer s3cre")]),
    ] {
        let (status, headers, body) = raw(&server, "GET", path, &headers, vec![]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert!(error_text(&body).contains("token"));
    }
    let (status, _, _) = raw(
        &server,
        "GET",
        "/v1/status",
        &[("authorization", "bearer s3cret")],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let err = client(&server).status().await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("--token"));
    let wrong = AdminClient::new(server.addr.to_string(), Some("nope".into()));
    assert!(matches!(
        wrong.set("k", b"v").await.unwrap_err(),
        ClientError::Unauthorized { .. }
    ));
    assert_eq!(server.backend.len_for_test(), 0);
    let good = AdminClient::new(server.addr.to_string(), Some("s3cret".into()));
    good.set("k", b"v").await.unwrap();
    assert_eq!(good.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(good.status().await.unwrap().keys, 1);
}

#[tokio::test]
async fn admin_ui_served_without_token_with_csp() {
    let server = TestServer::start(Some("s3cret")).await;
    for (path, content_type, marker) in [
        ("/ui", "text/html; charset=utf-8", "/ui/app.js"),
        ("/ui/", "text/html; charset=utf-8", "/ui/style.css"),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "textContent",
        ),
        ("/ui/style.css", "text/css; charset=utf-8", "status-suspect"),
    ] {
        let (status, headers, body) = raw(&server, "GET", path, &[], vec![]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["content-security-policy"], super::UI_CSP, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains(marker), "{path} lacks {marker:?}");
        // Nothing is fetched from elsewhere.
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}"
        );
    }
    assert!(super::UI_CSP.starts_with("default-src 'self'"));
    // The data stays behind the token, and so does everything else under /ui.
    for path in [
        "/v1/status",
        "/v1/members",
        "/v1/kv?prefix=",
        "/metrics",
        "/ui/x",
    ] {
        let (status, _, _) = raw(&server, "GET", path, &[], vec![]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // The page reads a key with every `/` percent-encoded (so that a browser does not
    // resolve `..` segments in it): the server decodes it back.
    let auth = [("authorization", "Bearer s3cret")];
    server.backend.insert_for_test("app/../x", b"v");
    let (status, _, body) = raw(&server, "GET", "/v1/kv/app%2F..%2Fx?meta=1", &auth, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<KvMeta>(&body).unwrap().key,
        "app/../x"
    );
}

#[tokio::test]
async fn admin_graceful_shutdown_returns() {
    let server = TestServer::start(None).await;
    let addr = server.addr;
    client(&server).status().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server.shutdown())
        .await
        .expect("serve returned after shutdown")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_write_refused_by_a_failed_store_is_503_and_a_bad_key_400() {
    let server = TestServer::start(None).await;
    let long = "k".repeat(FAKE_MAX_KEY + 1);
    let (status, _, _) = raw(
        &server,
        "PUT",
        &format!("/v1/kv/{long}"),
        &[],
        b"v".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server
        .backend
        .fail_store_for_test("writes are no longer persisted");
    let (status, _, body) = raw(&server, "PUT", "/v1/kv/k", &[], b"v".to_vec()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error_text(&body).contains("no longer persisted"));
    let (status, _, _) = raw(&server, "DELETE", "/v1/kv/k", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// #17: a write outside the node's grant is 403, with a message naming the prefixes.
#[tokio::test]
async fn a_write_outside_the_grant_is_403_naming_the_prefixes() {
    let server = TestServer::start(None).await;
    let key = format!("/v1/kv/{FAKE_FORBIDDEN}x");
    let (status, _, body) = raw(&server, "PUT", &key, &[], b"v".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error_text(&body).contains("app/"), "{}", error_text(&body));
    let (status, _, _) = raw(&server, "PUT", "/v1/kv/app/x", &[], b"v".to_vec()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// #20: a listing comes in pages; walking them with the cursor yields every key exactly
/// once, in order, whatever the page size.
#[tokio::test]
async fn a_listing_of_10000_keys_is_walked_exactly_once_in_pages() {
    let server = TestServer::start(None).await;
    for i in 0..10_000 {
        server.backend.insert_for_test(&format!("k/{i:05}"), b"v");
    }
    server.backend.insert_for_test("other", b"v");
    let c = client(&server);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let (page, next) = c
            .list_page("k/", after.as_deref(), Some(777))
            .await
            .unwrap();
        assert!(page.len() <= 777);
        seen.extend(page.into_iter().map(|i| i.key));
        pages += 1;
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages < 100, "the cursor does not advance");
    }
    let want: Vec<String> = (0..10_000).map(|i| format!("k/{i:05}")).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 13);
    // The walking client, with the server's default page.
    assert_eq!(c.list("k/").await.unwrap().len(), 10_000);
    // Bad limits are refused, naming the bound.
    for bad in ["0", "x", &(MAX_PAGE + 1).to_string()] {
        let (status, _, body) =
            raw(&server, "GET", &format!("/v1/kv?limit={bad}"), &[], vec![]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(error_text(&body).contains("limit"));
    }
    // The last page carries no cursor.
    let (_, headers, _) = raw(&server, "GET", "/v1/kv?prefix=other", &[], vec![]).await;
    assert!(headers.get(NEXT_HEADER).is_none());
}

/// #20: `PUT /v1/kv/` answered 405; an empty key is a client error that says so.
#[tokio::test]
async fn an_empty_key_is_a_400_that_names_it() {
    let server = TestServer::start(None).await;
    for method in ["PUT", "DELETE"] {
        let (status, _, body) = raw(&server, method, "/v1/kv/", &[], b"v".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method}");
        assert!(error_text(&body).contains("empty key"));
    }
}

fn tight() -> ServeLimits {
    ServeLimits {
        max_connections: 4,
        max_in_flight: 64,
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        request_timeout: Duration::from_millis(500),
    }
}

/// Reads until the server closes the connection (or the deadline passes); returns what
/// was read and whether it closed.
async fn read_until_closed(s: &mut tokio::net::TcpStream, deadline: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// #20: connections that send nothing, half a header, or a body that never comes are
/// closed at the timeouts instead of being held for ever.
#[tokio::test]
async fn idle_slow_and_stalled_connections_are_closed_at_the_timeouts() {
    let server = TestServer::start_with(None, tight()).await;
    // Nothing at all.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(closed, "an idle connection was kept");
    // Half a header.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "a partial header was waited for");
    // A huge or a plausible Content-Length with one byte of body: 408 at the request
    // deadline (the size limit applies to bytes read, and none come).
    for (len, want) in [("99999999999", "HTTP/1.1 408"), ("1000", "HTTP/1.1 408")] {
        let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!("PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\nv");
        stalled.write_all(head.as_bytes()).await.unwrap();
        let (got, closed) = read_until_closed(&mut stalled, Duration::from_secs(10)).await;
        assert!(
            closed,
            "a stalled body (Content-Length {len}) was waited for"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(want), "Content-Length {len}: {text}");
    }
    assert!(!server.backend.kv_get_for_test("x"));
}

/// #20: beyond `max_connections`, a client waits in the backlog; it is served once a
/// slot frees.
#[tokio::test]
async fn the_connection_cap_holds() {
    let limits = ServeLimits {
        idle_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(30),
        ..tight()
    };
    let server = TestServer::start_with(None, limits).await;
    let mut held = Vec::new();
    for _ in 0..limits.max_connections {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // A complete request, so each connection is surely accepted and kept alive.
        s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut extra = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    extra
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), extra.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap");
    held.pop();
    let n = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf))
        .await
        .expect("not served after a slot freed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

/// #20: beyond `max_in_flight` requests at once, the API answers 503 at once instead of
/// queueing; once they end, it serves again.
#[tokio::test]
async fn requests_beyond_the_in_flight_bound_are_refused_with_503() {
    let limits = ServeLimits {
        max_in_flight: 2,
        request_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        ..tight()
    };
    let server = TestServer::start_with(None, limits).await;
    // Two requests whose bodies never come hold both slots until their deadline.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nv")
            .await
            .unwrap();
        stalled.push(s);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut refused = false;
    while tokio::time::Instant::now() < deadline {
        let (status, _, body) = raw(&server, "GET", "/v1/status", &[], vec![]).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(error_text(&body).contains("in flight"));
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "a third request was served with two in flight");
    for mut s in stalled {
        let (got, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert!(got.starts_with(b"HTTP/1.1 408"));
    }
    let (status, _, _) = raw(&server, "GET", "/v1/status", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
}
