//! User events over real QUIC (#19): an event posted on one node reaches every node
//! exactly once; bounds and rates are refused with clear messages; a flood from one
//! member is capped at every receiver and counted; the event watch streams them, and
//! `gossamer monitor` shows them beside membership changes.

use std::time::Duration;

use gossamer::admin::client::{AdminClient, ClientError};
use gossamer::admin::events::EventLine;
use gossamer::core::Config;
use gossamer::local::{wait_for, LocalCluster};
use gossamer::node::Node;

const DEADLINE: Duration = Duration::from_secs(20);

fn client(c: &LocalCluster, n: &Node) -> AdminClient {
    AdminClient::new(c.admin_addr(n).expect("admin API").to_string(), None)
}

/// How many times `node` delivered the event `(sender, seq)`.
fn times(node: &Node, sender: &str, seq: u64) -> usize {
    node.recent_events(None)
        .iter()
        .filter(|v| v.sender == sender && v.seq == seq)
        .count()
}

async fn joined_cluster(n: usize, spare: usize) -> LocalCluster {
    let c = LocalCluster::start_durable(n, spare, Config::local(), None, true)
        .await
        .unwrap();
    let (ok, t) = wait_for(DEADLINE, || c.fully_joined() && c.writers_known()).await;
    assert!(ok, "the cluster did not join and learn every writer's key");
    println!("joined in {t:?}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_on_one_node_reaches_every_node_exactly_once() {
    let c = joined_cluster(4, 0).await;
    let api = client(&c, &c.nodes[1]);
    // A watch on another node, opened before the event.
    let mut watch = client(&c, &c.nodes[3])
        .watch_events(None, None)
        .await
        .unwrap();
    let sent = api.send_event("deploy", b"v1.2.3").await.unwrap();
    assert_eq!(sent.sender, c.nodes[1].id().to_string());
    let (ok, t) = wait_for(DEADLINE, || {
        c.nodes
            .iter()
            .all(|n| times(n, &sent.sender, sent.seq) == 1)
    })
    .await;
    assert!(ok, "the event did not reach every node");
    println!("delivered everywhere in {t:?}");
    // A second event, delivered everywhere after the first: any duplicate of the first
    // in flight has been handled by then.
    let marker = c.nodes[2].event("marker", Vec::new()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || {
        c.nodes
            .iter()
            .all(|n| times(n, marker.0.as_str(), marker.1) == 1)
    })
    .await;
    assert!(ok, "the marker did not reach every node");
    for n in &c.nodes {
        assert_eq!(
            times(n, &sent.sender, sent.seq),
            1,
            "{} delivered it twice",
            n.id()
        );
    }
    let seen = api.events(None).await.unwrap();
    assert!(seen
        .iter()
        .any(|v| v.name == "deploy" && v.payload == "v1.2.3"));
    // The watch streamed it, with an index to resume from.
    let first = loop {
        match tokio::time::timeout(DEADLINE, watch.next()).await {
            Ok(Ok(Some(EventLine::Event(v)))) => break v,
            Ok(Ok(Some(_))) => continue,
            other => panic!("the event watch ended or failed: {other:?}"),
        }
    };
    assert_eq!((first.name.as_str(), first.seq), ("deploy", sent.seq));
    // Resumed from before the first event, a new watch replays what the node holds.
    let mut again = client(&c, &c.nodes[3])
        .watch_events(Some(first.index - 1), None)
        .await
        .unwrap();
    match again.next().await.unwrap() {
        Some(EventLine::Event(v)) => assert_eq!(v.index, first.index),
        other => panic!("a resumed watch starts with the held events: {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_with_the_bound_named() {
    let c = joined_cluster(2, 0).await;
    let api = client(&c, &c.nodes[0]);
    match api.send_event("big", &vec![b'x'; 8 * 1024 + 1]).await {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, 413);
            assert!(message.contains("gossip.events.max_payload"), "{message}");
        }
        other => panic!("an oversized payload was not refused: {other:?}"),
    }
    match api.send_event(&"n".repeat(129), b"").await {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("128"), "{message}");
        }
        other => panic!("an oversized name was not refused: {other:?}"),
    }
    match api.watch_events(None, Some(60_001)).await {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("coalesce_ms"), "{message}");
        }
        other => panic!("a coalescing window over a minute was not refused: {other:?}"),
    }
    // Our own rate: 100 at once pass (the burst), then 429.
    let mut refused = None;
    for k in 0..200 {
        if let Err(e) = api.send_event("tick", b"").await {
            refused = Some((k, e));
            break;
        }
    }
    match refused {
        Some((k, ClientError::Status { status, message })) => {
            assert_eq!(status, 429);
            assert!(message.contains("per_sender_per_sec"), "{message}");
            assert!(k >= 100, "refused after only {k} events");
        }
        other => panic!("the local sender was not held to its rate: {other:?}"),
    }
    let metrics = api.metrics().await.unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("gossamer_events_dropped_total{reason=\"send_refused\"}")
            && !l.ends_with(" 0")),
        "the refusal is counted"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_member_is_capped_at_every_receiver_and_counted() {
    let mut c = joined_cluster(3, 1).await;
    // A member whose own limit is far above everyone else's.
    let mut cfg = c.config(4, c.seed_addrs());
    cfg.gossip.events.per_sender_per_sec = 100_000;
    cfg.gossip.events.per_sender_burst = 100_000;
    let flooder = c.start_with(cfg).await.unwrap();
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined() && c.writers_known()).await;
    assert!(ok, "the flooder joined");
    let started = std::time::Instant::now();
    for _ in 0..500 {
        flooder.event("flood", Vec::new()).unwrap();
    }
    let me = flooder.id().to_string();
    let marker = flooder.event("last", Vec::new()).ok();
    // Every receiver drops what is beyond the sender's rate: the last events are
    // refused everywhere, so wait on the counter instead.
    let (ok, _) = wait_for(DEADLINE, || {
        c.nodes[..3]
            .iter()
            .all(|n| n.engine_event_stats().rate_limited > 0)
    })
    .await;
    assert!(ok, "no receiver capped the flood");
    let burst = Config::local().events.per_sender_burst as usize;
    let per_sec = Config::local().events.per_sender_per_sec as f64;
    // Let deliveries settle: a further event from another member reaches everyone.
    let later = c.nodes[0].event("after", Vec::new()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || {
        c.nodes
            .iter()
            .all(|n| times(n, later.0.as_str(), later.1) == 1)
    })
    .await;
    assert!(ok, "gossip went on after the flood");
    // The bucket starts full and refills for as long as the flood lasted at most.
    let bound = burst + (per_sec * started.elapsed().as_secs_f64()).ceil() as usize + 1;
    for n in &c.nodes[..3] {
        let got = n
            .recent_events(None)
            .iter()
            .filter(|v| v.sender == me)
            .count();
        assert!(
            got <= bound,
            "{} delivered {got} of the flooder's 501 events (bound {bound})",
            n.id()
        );
        assert!(got >= burst / 2, "{} delivered only {got}", n.id());
        let metrics = client(&c, n).metrics().await.unwrap();
        assert!(metrics.lines().any(|l| l
            .starts_with("gossamer_events_dropped_total{reason=\"rate_limited\"}")
            && !l.ends_with(" 0")));
    }
    assert!(marker.is_some());
    c.shutdown().await;
}

/// Runs the `gossamer` binary with `args`, `stdin` as its standard input.
async fn cli(args: Vec<String>, stdin: Vec<u8>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_gossamer"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gossamer");
        child.stdin.take().unwrap().write_all(&stdin).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_events_and_lists_them() {
    let c = joined_cluster(2, 0).await;
    let admin = c.admin_addr(&c.nodes[0]).unwrap().to_string();
    let args = |rest: &[&str]| {
        let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        v.extend(["--admin".to_string(), admin.clone()]);
        v
    };
    let out = cli(args(&["event", "deploy", "v2"]), Vec::new()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The payload from standard input.
    let out = cli(args(&["event", "config"]), b"from stdin".to_vec()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _) = wait_for(DEADLINE, || {
        c.nodes[1]
            .recent_events(None)
            .iter()
            .any(|v| v.name == "config" && v.payload == "from stdin")
    })
    .await;
    assert!(ok, "the event from standard input reached the other node");
    // Too large: exit code 1, the bound named.
    let out = cli(args(&["event", "big", "-"]), vec![b'x'; 9000]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("413") && err.contains("max_payload"), "{err}");
    let out = cli(args(&["events"]), Vec::new()).await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(" deploy v2"), "{listed}");
    assert!(listed.contains(" config from stdin"), "{listed}");
    c.shutdown().await;
}

/// `gossamer monitor` prints a node's membership changes and the events it delivers,
/// as they happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_shows_events_and_membership_changes_as_they_happen() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    // This process's log lines go to its nodes' log watches, as `gossamer run` does.
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        let logs = tracing_subscriber::registry().with(gossamer::admin::logs::LogLayer::install());
        // Another test of this binary may have set one first; any will do.
        let _ = tracing::subscriber::set_global_default(logs);
    }
    let c = joined_cluster(2, 0).await;
    let admin = c.admin_addr(&c.nodes[0]).unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gossamer"))
        .args(["monitor", "--admin", &admin, "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gossamer monitor");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Waits (off the runtime) for a line containing `what`.
    let expect = |rx: mpsc::Receiver<String>, what: &'static str| {
        tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            while let Some(left) = DEADLINE.checked_sub(start.elapsed()) {
                match rx.recv_timeout(left) {
                    Ok(line) if line.contains(what) => return rx,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            panic!("no monitor line with {what:?} within {DEADLINE:?}");
        })
    };
    let rx = expect(rx, "member  2 known, 2 alive").await.unwrap();
    // The monitor opened its log watch before it printed anything.
    tracing::info!(target: "gossamer::test", "below the monitor's level");
    tracing::warn!(target: "gossamer::test", peer = "n9", "a line for the monitor");
    let rx = expect(
        rx,
        "log     WARN  gossamer::test: a line for the monitor peer=n9",
    )
    .await
    .unwrap();
    client(&c, &c.nodes[1])
        .send_event("deploy", b"v3")
        .await
        .unwrap();
    let rx = expect(rx, " deploy v3").await.unwrap();
    c.nodes[1].leave().await.unwrap();
    let _rx = expect(rx, "updated: alive -> left").await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    c.shutdown().await;
}

/// `[[handlers]]`: a matching event runs its command with the payload on standard input
/// and the metadata in the environment; a command that hangs is killed at its timeout;
/// every run is counted by outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_run_with_the_payload_and_are_killed_at_their_timeout() {
    use gossamer::node::handlers::HandlerConfig;
    use std::sync::atomic::Ordering;

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let mut c = LocalCluster::start_durable(0, 2, Config::local(), None, true)
        .await
        .unwrap();
    for i in 1..=2 {
        let mut cfg = c.config(i, c.seed_addrs());
        if i == 2 {
            cfg.handlers = vec![
                HandlerConfig {
                    event: "deploy-*".into(),
                    query: String::new(),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        format!(
                            "cat > {dir}/tmp && echo \"$GOSSAMER_EVENT_NAME $GOSSAMER_EVENT_SENDER $GOSSAMER_NODE\" >> {dir}/tmp && mv {dir}/tmp {dir}/deploy.out"
                        ),
                    ],
                    timeout_ms: 10_000,
                },
                HandlerConfig {
                    event: "hang".into(),
                    query: String::new(),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        format!("echo $$ > {dir}/hang.pid; exec sleep 30"),
                    ],
                    timeout_ms: 300,
                },
            ];
        }
        c.start_with(cfg).await.unwrap();
    }
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined() && c.writers_known()).await;
    assert!(ok, "the cluster did not form");
    let (sender, handled) = (&c.nodes[0], &c.nodes[1]);

    client(&c, sender)
        .send_event("deploy-web", b"v7")
        .await
        .unwrap();
    client(&c, sender)
        .send_event("build", b"not handled")
        .await
        .unwrap();
    let file = out.path().join("deploy.out");
    let (ok, _) = wait_for(DEADLINE, || file.exists()).await;
    assert!(ok, "the deploy handler did not run");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        format!("v7deploy-web {} {}\n", sender.id(), handled.id())
    );

    client(&c, sender).send_event("hang", b"").await.unwrap();
    let stats = handled.handler_stats();
    let (ok, _) = wait_for(DEADLINE, || stats.timed_out.load(Ordering::Relaxed) == 1).await;
    assert!(ok, "the hanging handler was not killed at its timeout");
    let pid = std::fs::read_to_string(out.path().join("hang.pid")).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the hanging handler's process {pid} is still there"
    );
    assert_eq!(
        stats.started.load(Ordering::Relaxed),
        2,
        "build matched no handler"
    );
    assert_eq!(stats.succeeded.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failed.load(Ordering::Relaxed), 0);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 0);
    // The sender has no handlers: nothing ran there.
    assert_eq!(sender.handler_stats().started.load(Ordering::Relaxed), 0);
    c.shutdown().await;
}
