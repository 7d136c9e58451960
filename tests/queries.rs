//! Queries over real QUIC (#19): a query with a tag filter is answered by exactly the
//! matching members, through a Rust handler or a `[[handlers]]` command whose standard
//! output is the answer; a member whose handler hangs is reported silent and its
//! command killed; the admin API streams the lines and refuses bad requests; the CLI
//! works end to end.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gossamer::admin::client::{AdminClient, ClientError};
use gossamer::admin::queries::QueryLine;
use gossamer::core::queries::QueryFilter;
use gossamer::core::{Config, NodeId};
use gossamer::local::{wait_for, wait_for_async, LocalCluster};
use gossamer::node::handlers::HandlerConfig;
use gossamer::node::queries::QueryUpdate;
use gossamer::node::Node;

const DEADLINE: Duration = Duration::from_secs(20);

fn client(c: &LocalCluster, n: &Node) -> AdminClient {
    AdminClient::new(c.admin_addr(n).expect("admin API").to_string(), None)
}

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn db() -> QueryFilter {
    QueryFilter {
        tags: [("role".to_string(), "db".to_string())].into(),
        ..QueryFilter::default()
    }
}

/// A query handler entry running `script` with `sh -c`.
fn sh(query: &str, script: String) -> HandlerConfig {
    HandlerConfig {
        event: String::new(),
        query: query.into(),
        command: vec!["sh".into(), "-c".into(), script],
        timeout_ms: 30_000,
    }
}

/// n1 (role web, no handler) asks; n2 (db) answers from a Rust handler, n3 (db) from a
/// command, n4 (db) has a command that hangs, n5 (web) answers everything but is never
/// asked by a db filter. `dir` receives the hanging command's pid.
async fn cluster(dir: &std::path::Path) -> LocalCluster {
    let mut c = LocalCluster::start_durable(0, 5, Config::local(), None, true)
        .await
        .unwrap();
    let hang = format!("echo $$ > {}/hang.pid; exec sleep 30", dir.display());
    let echo = "cat; echo \" $GOSSAMER_QUERY_NAME $GOSSAMER_QUERY_ASKER $GOSSAMER_QUERY_SEQ $GOSSAMER_NODE\"";
    for i in 1..=5 {
        let mut cfg = c.config(i, c.seed_addrs());
        let role = if matches!(i, 2..=4) { "db" } else { "web" };
        cfg.tags.insert("role".into(), role.into());
        cfg.handlers = match i {
            3 => vec![sh("uptime", echo.to_string())],
            4 => vec![sh("upt*", hang.clone())],
            5 => vec![sh("*", "echo web".to_string())],
            _ => Vec::new(),
        };
        let node = c.start_with(cfg).await.unwrap();
        if i == 2 {
            let me = node.id();
            node.on_query("uptime", move |q| {
                Some(format!("{me} up, asked by {}", q.asker).into_bytes())
            });
        }
    }
    let (ok, t) = wait_for(DEADLINE, || c.fully_joined() && c.writers_known()).await;
    assert!(ok, "the cluster did not join and learn every writer's key");
    println!("joined in {t:?}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_filtered_query_is_answered_by_exactly_the_matching_members() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path()).await;
    let asker = &c.nodes[0];
    let started = std::time::Instant::now();
    let mut handle = asker
        .query(
            "uptime",
            b"ping".to_vec(),
            db(),
            Duration::from_millis(2_500),
        )
        .unwrap();
    let (mut acks, mut answers) = (BTreeSet::new(), Vec::new());
    let report = loop {
        match tokio::time::timeout(DEADLINE, handle.next()).await {
            Ok(Some(QueryUpdate::Ack { from })) => assert!(acks.insert(from), "a second ack"),
            Ok(Some(QueryUpdate::Response { from, payload })) => {
                println!("{from} answered after {:?}", started.elapsed());
                answers.push((from, String::from_utf8(payload).unwrap()));
            }
            Ok(Some(QueryUpdate::Done(report))) => break report,
            other => panic!("the query ended without its report: {other:?}"),
        }
    };
    assert!(
        started.elapsed() >= Duration::from_millis(2_500),
        "reported early"
    );
    assert_eq!(
        acks,
        [id("n2"), id("n3"), id("n4")].into(),
        "the matching members acked"
    );
    answers.sort();
    let seq = handle.seq();
    assert_eq!(
        answers,
        vec![
            (id("n2"), "n2 up, asked by n1".to_string()),
            (id("n3"), format!("ping uptime n1 {seq} n3\n")),
        ],
        "exactly the matching members with a handler answered, each once"
    );
    assert_eq!(
        report.silent,
        vec![id("n4")],
        "the hanging member is silent"
    );
    assert!(handle.next().await.is_none(), "nothing after the report");
    // The hanging command was killed at the query's timeout.
    let n4 = &c.nodes[3];
    let (ok, _) = wait_for(DEADLINE, || {
        n4.handler_stats().timed_out.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(
        ok,
        "the hanging handler was not killed at the query's timeout"
    );
    let pid = std::fs::read_to_string(dir.path().join("hang.pid")).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the hanging handler's process {pid} is still there"
    );
    // The web members were never handed it: n5's catch-all command did not run.
    assert_eq!(
        c.nodes[4].handler_stats().started.load(Ordering::Relaxed),
        0
    );
    assert_eq!(c.nodes[4].query_stats().matched, 0);
    let s = asker.query_stats();
    assert_eq!((s.acks, s.responses, s.done), (3, 2, 1));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_streams_a_query_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path()).await;
    let api = client(&c, &c.nodes[0]);
    // Only n2 and n3 asked by id: both answer, nobody is silent.
    let filter = QueryFilter {
        nodes: vec![id("n2"), id("n3")],
        ..db()
    };
    let mut lines = api
        .query("uptime", b"x", &filter, Duration::from_millis(1_500))
        .await
        .unwrap();
    let mut got = Vec::new();
    let done = loop {
        match lines.next().await.unwrap() {
            Some(QueryLine::Done {
                silent,
                responders,
                acks,
                ..
            }) => break (silent, responders, acks),
            Some(QueryLine::Heartbeat) => {}
            Some(line) => got.push(line),
            None => panic!("the stream ended without its report"),
        }
    };
    assert!(
        lines.next().await.unwrap().is_none(),
        "the stream ends after the report"
    );
    assert!(done.0.is_empty(), "{done:?}");
    assert_eq!(done.1.len(), 2);
    assert_eq!(done.2.len(), 2);
    assert!(got
        .iter()
        .any(|l| matches!(l, QueryLine::Response { from, payload, .. }
        if *from == id("n3") && payload.starts_with("x uptime n1"))));
    let metrics = api.metrics().await.unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("gossamer_query_replies_total{kind=\"response\"}")
                && l.ends_with(" 2")
        ),
        "the answers are counted"
    );
    // At most 16 queries stream at once per node: the 17th is 429 until one ends.
    let mut open = Vec::new();
    for _ in 0..16 {
        let s = api
            .query("slow", b"", &db(), Duration::from_secs(5))
            .await
            .unwrap();
        open.push(s);
    }
    match api.query("slow", b"", &db(), Duration::from_secs(1)).await {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, 429);
            assert!(message.contains("16 queries"), "{message}");
        }
        other => panic!("a 17th streaming query was not refused: {other:?}"),
    }
    drop(open);
    // Their slots come back once their streams end (the node finds the client gone
    // at its next line, or the queries reach their deadline).
    let again = wait_for_async(DEADLINE, || async {
        api.query("slow", b"", &db(), Duration::from_millis(100))
            .await
            .is_ok()
    })
    .await;
    assert!(again, "the slots of closed streams were not released");
    // An oversized payload: 413, naming the bound.
    match api
        .query(
            "uptime",
            &vec![b'x'; 8 * 1024 + 1],
            &db(),
            Duration::from_secs(1),
        )
        .await
    {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, 413);
            assert!(message.contains("gossip.events.max_payload"), "{message}");
        }
        other => panic!("an oversized payload was not refused: {other:?}"),
    }
    // A filter beyond its bounds, and a timeout beyond the limit: 400.
    let many = QueryFilter {
        tags: (0..17)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect(),
        ..QueryFilter::default()
    };
    match api
        .query("uptime", b"", &many, Duration::from_secs(1))
        .await
    {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("17 tags"), "{message}");
        }
        other => panic!("a filter of 17 tags was not refused: {other:?}"),
    }
    match api
        .query("uptime", b"", &db(), Duration::from_secs(3_601))
        .await
    {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("max_timeout_ms"), "{message}");
        }
        other => panic!("a timeout over the limit was not refused: {other:?}"),
    }
    c.shutdown().await;
}

/// Runs the `gossamer` binary with `args`; its exit code and standard output.
async fn cli(args: Vec<String>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gossamer"))
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run gossamer");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_answers_and_silent_members_and_exits_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path()).await;
    let admin = c.admin_addr(&c.nodes[0]).unwrap().to_string();
    let args = |rest: &[&str]| {
        let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        v.extend(["--admin".to_string(), admin.clone()]);
        v
    };
    // n4 hangs: exit 1, and it is named.
    let (code, out, err) = cli(args(&[
        "query",
        "uptime",
        "hi",
        "--tag",
        "role=db",
        "--timeout",
        "1500ms",
    ]))
    .await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("response n2 n2 up, asked by n1"), "{out}");
    assert!(out.contains("response n3 hi uptime n1 "), "{out}");
    assert!(out.contains("ack      n4"), "{out}");
    assert!(out.contains("done: 3 acks, 2 responses, 1 silent"), "{out}");
    assert!(out.lines().any(|l| l == "silent   n4"), "{out}");
    // Only members that answer: exit 0.
    let (code, out, err) = cli(args(&[
        "query",
        "uptime",
        "hi",
        "--tag",
        "role=db",
        "--node",
        "n2",
        "--node",
        "n3",
        "--timeout",
        "1s",
    ]))
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("done: 2 acks, 2 responses, 0 silent"), "{out}");
    // A bad flag is a usage error (exit 2).
    let (code, _, err) = cli(args(&["query", "uptime", "--tag", "novalue"])).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("KEY=VALUE"), "{err}");
    c.shutdown().await;
}
