//! `GET /v1/watch` and the listing's index header, against the in-memory backend.

use super::*;
use crate::admin::client::{AdminClient, ClientError};
use crate::admin::testing::TestServer;

fn client(server: &TestServer) -> AdminClient {
    AdminClient::new(server.addr.to_string(), None)
}

fn change(line: Option<WatchLine>) -> ChangeLine {
    match line {
        Some(WatchLine::Change(c)) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[tokio::test]
async fn admin_watch_from_a_listing_index_misses_and_repeats_nothing() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    c.set("app/a", b"1").await.unwrap();
    c.set("other/x", b"2").await.unwrap();
    let listing = c.list_indexed("app/").await.unwrap();
    assert_eq!(listing.items.len(), 1);
    c.set("app/b", b"3").await.unwrap();
    c.set("other/y", b"4").await.unwrap();
    assert!(c.delete("app/a").await.unwrap());
    let mut watch = c.watch("app/", Some(listing.index)).await.unwrap();
    assert_eq!(watch.index(), Some(listing.index));
    let b = change(watch.next().await.unwrap());
    assert_eq!((b.key.as_str(), b.value.as_deref()), ("app/b", Some("3")));
    assert!(!b.deleted && b.value_len == 1 && b.writer == "n1");
    assert!(b.index > listing.index);
    let a = change(watch.next().await.unwrap());
    assert_eq!((a.key.as_str(), a.value, a.deleted), ("app/a", None, true));
    assert!(a.index > b.index);
    assert_eq!(watch.index(), Some(a.index));
    // Live from here on.
    c.set("app/c", b"5").await.unwrap();
    assert_eq!(change(watch.next().await.unwrap()).key, "app/c");
}

#[tokio::test]
async fn admin_watch_without_an_index_starts_now_and_names_its_start() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    c.set("k/old", b"1").await.unwrap();
    let mut watch = c.watch("k/", None).await.unwrap();
    let start = watch.index().expect("x-gossamer-index on the watch");
    c.set("k/new", b"2").await.unwrap();
    let line = change(watch.next().await.unwrap());
    assert_eq!(line.key, "k/new");
    assert!(line.index > start);
}

#[tokio::test]
async fn admin_watch_refuses_a_long_prefix_and_a_bad_index() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    let long = "p".repeat(crate::node::watch::MAX_PREFIX + 1);
    match c.watch(&long, None).await.unwrap_err() {
        ClientError::Status { status, message } => {
            assert_eq!(status, 400);
            assert!(message.contains("4096"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let raw = raw_get(server.addr, "/v1/watch?index=soon").await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("index must be a whole number"), "{raw}");
}

#[tokio::test]
async fn admin_watch_from_an_index_ahead_of_the_node_is_reset_and_ends() {
    let server = TestServer::start(None).await;
    let c = client(&server);
    c.set("k", b"1").await.unwrap();
    let now = c.list_indexed("").await.unwrap().index;
    let mut watch = c.watch("", Some(now + 1_000)).await.unwrap();
    assert_eq!(watch.index(), None, "a reset watch names no start");
    assert_eq!(
        watch.next().await.unwrap(),
        Some(WatchLine::Reset {
            index: now,
            reason: ResetReason::Ahead
        })
    );
    assert_eq!(watch.next().await.unwrap(), None, "the stream ends");
}

#[tokio::test]
async fn admin_watch_needs_the_token_like_every_endpoint() {
    let server = TestServer::start(Some("s3cret")).await;
    let err = client(&server).watch("", None).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
    let c = AdminClient::new(server.addr.to_string(), Some("s3cret".into()));
    let mut watch = c.watch("", None).await.unwrap();
    c.set("k", b"v").await.unwrap();
    assert_eq!(change(watch.next().await.unwrap()).key, "k");
}

#[test]
fn watch_lines_have_the_documented_shape() {
    let line = WatchLine::Change(ChangeLine {
        index: 7,
        key: "a".into(),
        value: None,
        value_len: 0,
        deleted: true,
        writer: "n1".into(),
    });
    assert_eq!(
        serde_json::to_string(&line).unwrap(),
        r#"{"type":"change","index":7,"key":"a","value_len":0,"deleted":true,"writer":"n1"}"#
    );
    let reset = WatchLine::Reset {
        index: 9,
        reason: ResetReason::BeforeThisLife,
    };
    assert_eq!(
        serde_json::to_string(&reset).unwrap(),
        r#"{"type":"reset","index":9,"reason":"before_this_life"}"#
    );
    let beat: WatchLine = serde_json::from_str(r#"{"type":"heartbeat","index":3}"#).unwrap();
    assert_eq!(beat, WatchLine::Heartbeat { index: 3 });
}

/// A raw GET (the typed client checks its own arguments), answered in full.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
