//! Watches over HTTP (`GET /v1/watch`) on a real three-node cluster on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gossamer::admin::client::{AdminClient, ClientError, WatchStream};
use gossamer::admin::watch::{ChangeLine, WatchLine};
use gossamer::core::Config;
use gossamer::local::{wait_for, wait_for_async, LocalCluster};
use gossamer::node::watch::{WatchItem, WatchNext};
use gossamer::node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(30);
const MAX_WATCHES: usize = 3;

/// Three nodes serving their admin API, each allowing [`MAX_WATCHES`] watches (and a
/// certificate for a fourth); returns once every node sees every other alive and can
/// verify every writer.
async fn cluster() -> LocalCluster {
    let gossip = Config {
        gossip_bandwidth: 0,
        ..Config::local()
    };
    let mut c = LocalCluster::start_durable(0, 4, gossip, None, true)
        .await
        .unwrap();
    for i in 1..=3 {
        let mut cfg = c.config(i, c.seed_addrs());
        cfg.watch.max_watches = MAX_WATCHES;
        c.start_with(cfg).await.unwrap();
    }
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined() && c.writers_known()).await;
    assert!(ok, "the cluster did not form within {DEADLINE:?}");
    c
}

fn client(c: &LocalCluster, n: &Node) -> AdminClient {
    AdminClient::new(c.admin_addr(n).expect("admin API").to_string(), None)
}

/// The next line of `w`, failing the test if none comes within the deadline.
async fn next_line(w: &mut WatchStream) -> WatchLine {
    tokio::time::timeout(DEADLINE, w.next())
        .await
        .expect("a watch line within the deadline")
        .expect("a readable watch stream")
        .expect("the watch did not end")
}

/// The next change of `w` (heartbeats skipped).
async fn next_change(w: &mut WatchStream) -> ChangeLine {
    loop {
        match next_line(w).await {
            WatchLine::Change(c) => return c,
            WatchLine::Heartbeat { .. } => continue,
            other => panic!("expected a change, got {other:?}"),
        }
    }
}

/// Key -> value of a node's live keys under `prefix`.
fn state(n: &Node, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    n.list(prefix)
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

fn apply(model: &mut BTreeMap<String, String>, c: &ChangeLine) {
    match &c.value {
        Some(v) if !c.deleted => model.insert(c.key.clone(), v.clone()),
        _ => model.remove(&c.key),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_other_nodes_writes_and_resumes_without_missing_or_repeating() {
    let c = cluster().await;
    let (a, b, third) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let on_b = client(&c, b);
    a.set("app/before", b"0".to_vec()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || b.get("app/before").is_some()).await;
    assert!(ok);
    // List, then watch from the listing's index.
    let listing = on_b.list_indexed("app/").await.unwrap();
    let mut model: BTreeMap<String, String> = listing
        .items
        .iter()
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();
    let mut watch = on_b.watch("app/", Some(listing.index)).await.unwrap();
    a.set("app/first", b"1".to_vec()).unwrap();
    let first = next_change(&mut watch).await;
    assert_eq!(
        (
            first.key.as_str(),
            first.value.as_deref(),
            first.writer.as_str()
        ),
        ("app/first", Some("1"), "n1"),
        "node B's watch sees node A's write"
    );
    assert!(first.index > listing.index);
    apply(&mut model, &first);
    let last_seen = watch.index().unwrap();
    drop(watch);

    // A burst while disconnected: overwrites and deletes, from two writers.
    for i in 0..300 {
        a.set(&format!("app/k{}", i % 50), format!("a{i}").into_bytes())
            .unwrap();
        if i % 3 == 0 {
            third
                .set(&format!("app/c{}", i % 20), format!("c{i}").into_bytes())
                .unwrap();
        }
        if i % 7 == 0 {
            a.delete(&format!("app/k{}", (i + 25) % 50)).unwrap();
        }
    }
    let (ok, _) = wait_for(DEADLINE, || {
        let want = state(a, "app/");
        want == state(b, "app/") && want == state(third, "app/")
    })
    .await;
    assert!(ok, "the burst did not converge");
    let end = on_b.list_indexed("app/").await.unwrap();
    // A write after the listing marks the end of what the resumed watch must bring.
    on_b.set("app/zz-end", b"end").await.unwrap();

    let mut resumed = on_b.watch("app/", Some(last_seen)).await.unwrap();
    let mut prev = last_seen;
    let mut changes = 0;
    loop {
        let ch = next_change(&mut resumed).await;
        assert!(
            ch.index > prev,
            "indexes rise strictly: {} after {prev}",
            ch.index
        );
        prev = ch.index;
        if ch.key == "app/zz-end" {
            assert!(ch.index > end.index);
            break;
        }
        assert!(ch.index <= end.index, "{ch:?} after the final listing");
        apply(&mut model, &ch);
        changes += 1;
    }
    assert!(changes > 0);
    let listed: BTreeMap<String, String> = end
        .items
        .iter()
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();
    assert_eq!(
        model, listed,
        "listing + first watch + resumed watch = the final listing"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_is_reset_and_the_node_keeps_replicating() {
    let c = cluster().await;
    let (a, b, third) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    // A client that asks for a watch and never reads, with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(c.admin_addr(b).unwrap()).await.unwrap();
    slow.write_all(b"GET /v1/watch?prefix=slow/ HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (ok, _) = wait_for(DEADLINE, || {
        b.watch_stats().open.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(ok, "the slow watch did not open");
    // Writes on B until the log gives up on the slow watcher.
    let value = vec![b'v'; 1024];
    let mut written = 0;
    while b.watch_stats().resets[0].load(Ordering::Relaxed) == 0 {
        assert!(written < 50_000, "no reset after {written} writes");
        for _ in 0..100 {
            b.set(&format!("slow/{written}"), value.clone()).unwrap();
            written += 1;
        }
        tokio::task::yield_now().await;
    }
    println!("the slow watcher was reset after {written} writes");
    // The node goes on: a write on A still reaches B and the third node, and a new
    // watch on B sees it.
    let on_b = client(&c, b);
    let mut fresh = on_b.watch("after/", None).await.unwrap();
    a.set("after/x", b"1".to_vec()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || {
        b.get("after/x").is_some() && third.get("after/x").is_some()
    })
    .await;
    assert!(ok, "replication stopped behind a slow watcher");
    assert_eq!(next_change(&mut fresh).await.key, "after/x");
    // The slow client, reading at last, finds the reset marker at the end.
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, slow.read_to_end(&mut got))
        .await
        .expect("the slow stream ends after its reset marker")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    let reset = text
        .lines()
        .rfind(|l| l.contains(r#""type":"reset""#))
        .expect("a reset line");
    let line: WatchLine = serde_json::from_str(reset).unwrap();
    assert!(matches!(line, WatchLine::Reset { .. }), "{line:?}");
    assert!(reset.contains(r#""reason":"behind""#), "{reset}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_beyond_the_limit_get_429_quiet_ones_heartbeats_and_long_prefixes_400() {
    let c = cluster().await;
    let n = &c.nodes[0];
    let admin = client(&c, n);
    let mut open = Vec::new();
    for _ in 0..MAX_WATCHES {
        open.push(admin.watch("", None).await.unwrap());
    }
    match admin.watch("", None).await.unwrap_err() {
        ClientError::Status { status, message } => {
            assert_eq!(status, 429);
            assert!(message.contains("watch.max_watches"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let metrics = admin.metrics().await.unwrap();
    for line in [
        "gossamer_watches_refused_total 1",
        "gossamer_watches_open 3\n",
        "gossamer_watch_resets_total{reason=\"behind\"} 0",
        "gossamer_changes_logged_total ",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // Closing one makes room (once the server sees the connection go).
    open.pop();
    let ok = wait_for_async(DEADLINE, || async { admin.watch("", None).await.is_ok() }).await;
    assert!(ok, "a closed watch did not free its slot");
    // A quiet watch hears a heartbeat (after 10 s) carrying an index to resume from.
    let start = open[0].index().expect("the watch's start index");
    match next_line(&mut open[0]).await {
        WatchLine::Heartbeat { index } => assert!(index >= start, "{index} < {start}"),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    assert_eq!(open[0].index(), Some(n.change_index()));
    let long = "p".repeat(4097);
    match admin.watch(&long, None).await.unwrap_err() {
        ClientError::Status { status, message } => {
            assert_eq!(status, 400);
            assert!(message.contains("4096"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_taken_during_writes_and_a_watch_from_its_index_neither_miss_nor_repeat() {
    let c = cluster().await;
    let (a, b) = (c.nodes[0].clone(), c.nodes[1].clone());
    let on_b = client(&c, &b);
    // Writes on A in batches, each waiting until B holds it, so that the burst spans the
    // listing below. Every write has a value of its own.
    let (writer, replica) = (a.clone(), b.clone());
    let burst = tokio::task::spawn_blocking(move || {
        for batch in 0..20 {
            let mut last = (String::new(), Vec::new());
            for j in 0..40 {
                let i = batch * 40 + j;
                let key = format!("live/k{}", i % 60);
                let value = format!("w{i}").into_bytes();
                writer.set(&key, value.clone()).unwrap();
                if i % 9 == 0 {
                    writer.delete(&format!("live/k{}", (i + 30) % 60)).unwrap();
                }
                last = (key, value);
            }
            let start = std::time::Instant::now();
            while replica.get(&last.0).map(|e| e.value) != Some(last.1.clone()) {
                assert!(
                    start.elapsed() < DEADLINE,
                    "batch {batch} did not replicate"
                );
                std::thread::yield_now();
            }
        }
    });
    let (ok, _) = wait_for(DEADLINE, || b.list("live/").len() >= 20).await;
    assert!(ok);
    let listing = on_b.list_indexed("live/").await.unwrap();
    let listed: BTreeMap<String, String> = listing
        .items
        .iter()
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();
    let mut watch = on_b.watch("live/", Some(listing.index)).await.unwrap();
    // Read as the changes come, until the end marker.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let ch = next_change(&mut watch).await;
            if ch.key == "live/zz-end" {
                return (got, ch.index);
            }
            got.push(ch);
        }
    });
    burst.await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || state(&a, "live/") == state(&b, "live/")).await;
    assert!(ok, "the burst did not converge");
    let end = on_b.list_indexed("live/").await.unwrap();
    on_b.set("live/zz-end", b"end").await.unwrap();
    let (got, end_index) = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    assert!(end_index > end.index);
    let mut prev = listing.index;
    let mut model = listed.clone();
    let mut first_seen = std::collections::BTreeSet::new();
    for ch in &got {
        assert!(
            ch.index > prev,
            "indexes rise strictly past the listing's: {ch:?}"
        );
        prev = ch.index;
        // Values are unique per write: a key's first change repeating the listed value
        // would be a write the listing already showed.
        if first_seen.insert(ch.key.clone()) && !ch.deleted {
            assert_ne!(
                listed.get(&ch.key),
                ch.value.as_ref(),
                "{ch:?} repeats what the listing showed"
            );
        }
        if ch.index <= end.index {
            apply(&mut model, ch);
        }
    }
    let want: BTreeMap<String, String> = end
        .items
        .iter()
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();
    assert_eq!(model, want, "listing + watch = the final listing");
    println!(
        "listed {} keys, then {} changes by the watch",
        listed.len(),
        got.len()
    );
    c.shutdown().await;
}

/// On one thread, the node's driver cannot run between a write and a listing: the
/// listing must itself log the write it shows, or a watch from its index repeats it.
#[tokio::test(flavor = "current_thread")]
async fn a_listing_logs_the_changes_it_shows_before_the_driver_does() {
    let c = LocalCluster::start(1, 0, Config::local()).await.unwrap();
    let n = &c.nodes[0];
    n.set("k/shown", b"1".to_vec()).unwrap();
    let (page, index) = n.list_page_indexed("k/", None, 10);
    assert_eq!(page.len(), 1, "the listing shows the write");
    assert_eq!(index, n.change_index());
    let mut watch = n.watch("k/", Some(index)).unwrap();
    n.set("k/after", b"2".to_vec()).unwrap();
    match watch.next(DEADLINE).await {
        WatchNext::Item(WatchItem::Change(ch)) => {
            assert_eq!(ch.key, "k/after", "the listed write was repeated");
            assert!(ch.index > index);
        }
        other => panic!("expected a change, got {other:?}"),
    }
    c.shutdown().await;
}

/// The next member-watch line that is not a heartbeat.
async fn next_member_line(
    w: &mut gossamer::admin::client::LineStream<gossamer::admin::watch_members::MemberLine>,
) -> gossamer::admin::watch_members::MemberLine {
    use gossamer::admin::watch_members::MemberLine;
    loop {
        let line = tokio::time::timeout(DEADLINE, w.next())
            .await
            .expect("a member line within the deadline")
            .expect("a readable member watch")
            .expect("the member watch did not end");
        if line != MemberLine::Heartbeat {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_watch_lists_the_members_then_shows_a_join_and_a_leave() {
    use gossamer::admin::watch_members::MemberLine;
    use gossamer::node::MemberChangeKind;

    let mut c = cluster().await;
    let mut w = client(&c, &c.nodes[0]).watch_members().await.unwrap();
    let MemberLine::Members { members } = next_member_line(&mut w).await else {
        panic!("a member watch starts with the member list");
    };
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.status == "alive"), "{members:?}");
    assert!(members[0].is_self && members[0].id == c.nodes[0].id());

    // A fourth node joins: n1's watch shows it joining and, at the latest by its first
    // own word, alive.
    let cfg = c.config(4, c.seed_addrs());
    let fourth = c.start_with(cfg).await.unwrap();
    let mut seen_alive = false;
    while !seen_alive {
        match next_member_line(&mut w).await {
            MemberLine::Change(ch) if ch.member.id == fourth.id() => {
                assert!(
                    matches!(
                        ch.kind,
                        MemberChangeKind::Joined | MemberChangeKind::Updated
                    ),
                    "{ch:?}"
                );
                seen_alive = ch.member.status == "alive";
            }
            MemberLine::Change(_) => {}
            MemberLine::Members { members } => {
                seen_alive = members
                    .iter()
                    .any(|m| m.id == fourth.id() && m.status == "alive")
            }
            MemberLine::Heartbeat => unreachable!(),
        }
    }

    // The third node leaves: the watch shows it as left.
    let third = c.nodes[2].clone();
    third.leave().await.unwrap();
    loop {
        match next_member_line(&mut w).await {
            MemberLine::Change(ch) if ch.member.id == third.id() && ch.member.status == "left" => {
                assert_eq!(ch.kind, MemberChangeKind::Updated);
                assert_eq!(ch.old_status.as_deref(), Some("alive"));
                break;
            }
            MemberLine::Members { members }
                if members
                    .iter()
                    .any(|m| m.id == third.id() && m.status == "left") =>
            {
                break
            }
            _ => {}
        }
    }
}
