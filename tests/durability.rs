//! Durable state with real processes: acknowledged writes survive SIGKILL of every
//! node, a node killed right after its writes never reissues their dots, a node that
//! crash-loops loses nothing and leaves no ghost, and a damaged, foreign or unwritable
//! data directory stops `gossamer run` with exit code 2 and a message naming it.

mod common;

use common::{certs, free_tcp, free_udp, until, Proc, BIN};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gossamer::admin::client::AdminClient;

const DEADLINE: Duration = Duration::from_secs(40);

/// One node of a test cluster: fixed ports and data directory across its lives.
struct N {
    id: String,
    quic: u16,
    admin: u16,
    data: PathBuf,
}

/// A runtime, a folder with certificates for n1, n2 and n3, and those nodes (not started).
fn three_nodes() -> (Rt, tempfile::TempDir, Vec<N>) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), "durable", &["n1", "n2", "n3"]);
    let n = ["n1", "n2", "n3"]
        .iter()
        .map(|id| N::new(dir.path(), id))
        .collect();
    (rt, dir, n)
}

/// Starts the first three nodes of `n`, the first as the others' seed.
fn start_three(rt: &Rt, certs: &Path, n: &[N]) -> [Proc; 3] {
    [
        n[0].start(rt, certs, None),
        n[1].start(rt, certs, Some(&n[0])),
        n[2].start(rt, certs, Some(&n[0])),
    ]
}

impl N {
    fn new(root: &Path, id: &str) -> Self {
        Self {
            id: id.into(),
            quic: free_udp(),
            admin: free_tcp(),
            data: root.join(format!("data-{id}")),
        }
    }

    fn command(&self, certs: &Path, seed: Option<&N>) -> Command {
        let mut c = Command::new(BIN);
        c.args(["run", "--node-id", &self.id, "--listen"])
            .arg(format!("127.0.0.1:{}", self.quic))
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", self.admin))
            .arg("--certs")
            .arg(certs)
            .arg("--data-dir")
            .arg(&self.data);
        if let Some(s) = seed {
            c.arg("--seed").arg(format!("127.0.0.1:{}", s.quic));
        }
        c
    }

    /// Starts a life of the node and waits until its admin API answers.
    fn start(&self, rt: &Rt, certs: &Path, seed: Option<&N>) -> Proc {
        let p = Proc(
            self.command(certs, seed)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn node"),
        );
        until(&format!("{}'s admin API", self.id), DEADLINE, || {
            rt.block_on(self.client().status()).is_ok()
        });
        p
    }

    fn client(&self) -> AdminClient {
        AdminClient::new(format!("127.0.0.1:{}", self.admin), None)
            .with_timeout(Duration::from_secs(5))
    }

    /// Every live key with its value.
    fn kv(&self, rt: &Rt) -> Option<BTreeMap<String, String>> {
        let items = rt.block_on(self.client().list("")).ok()?;
        Some(items.into_iter().map(|i| (i.key, i.value)).collect())
    }

    /// (id, status) of every member this node lists.
    fn members(&self, rt: &Rt) -> Vec<(String, String)> {
        rt.block_on(self.client().members())
            .unwrap_or_default()
            .iter()
            .map(|m| (m.id.to_string(), m.status.clone()))
            .collect()
    }
}

type Rt = tokio::runtime::Runtime;

fn runtime() -> Rt {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until every node in `nodes` sees all of them alive.
fn wait_alive(rt: &Rt, nodes: &[&N]) {
    for n in nodes {
        until(
            &format!("{} sees every member alive", n.id),
            DEADLINE,
            || {
                let m = n.members(rt);
                nodes
                    .iter()
                    .all(|x| m.iter().any(|(id, st)| *id == x.id && st == "alive"))
            },
        );
    }
}

/// Waits until every node holds exactly `want`.
fn wait_holds(rt: &Rt, nodes: &[&N], want: &BTreeMap<String, String>) {
    for n in nodes {
        let start = Instant::now();
        loop {
            let got = n.kv(rt);
            if got.as_ref() == Some(want) {
                break;
            }
            if start.elapsed() > DEADLINE {
                let got = got.unwrap_or_default();
                let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
                panic!(
                    "{} holds {} keys, want {}; missing {:?}",
                    n.id,
                    got.len(),
                    want.len(),
                    missing
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Writes `keys` through `n`'s admin API, `parallel` at a time; returns what was
/// acknowledged.
fn write_all(
    rt: &Rt,
    n: &N,
    keys: &[(String, String)],
    parallel: usize,
) -> BTreeMap<String, String> {
    let client = n.client();
    rt.block_on(async {
        let mut acked = BTreeMap::new();
        for chunk in keys.chunks(parallel.max(1)) {
            let mut tasks = Vec::new();
            for (k, v) in chunk {
                let c = client.clone();
                let (k, v) = (k.clone(), v.clone());
                tasks.push(tokio::spawn(async move {
                    c.set(&k, v.as_bytes()).await.map(|_| (k, v))
                }));
            }
            for t in tasks {
                if let Ok(Ok((k, v))) = t.await {
                    acked.insert(k, v);
                }
            }
        }
        acked
    })
}

fn keys(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}/{i:04}"), format!("{prefix}-value-{i}")))
        .collect()
}

#[test]
fn every_acknowledged_write_survives_sigkill_of_the_whole_cluster() {
    let (rt, dir, n) = three_nodes();
    let c = dir.path();
    let [p1, p2, p3] = start_three(&rt, c, &n);
    wait_alive(&rt, &[&n[0], &n[1], &n[2]]);
    // 200 writes, spread over the three nodes, 8 in flight per node at once.
    let mut acked = BTreeMap::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let (rt, node) = (&rt, &n[i]);
                s.spawn(move || write_all(rt, node, &keys(&format!("w{i}"), 67), 8))
            })
            .collect();
        for h in hs {
            acked.extend(h.join().unwrap());
        }
    });
    assert!(
        acked.len() >= 200,
        "only {} writes acknowledged",
        acked.len()
    );
    // The moment the last write is acknowledged: SIGKILL everyone.
    p1.kill();
    p2.kill();
    p3.kill();
    let _running = start_three(&rt, c, &n);
    wait_holds(&rt, &[&n[0], &n[1], &n[2]], &acked);
}

#[test]
fn a_node_killed_right_after_its_writes_never_reissues_their_dots() {
    let (rt, dir, n) = three_nodes();
    let c = dir.path();
    let [p1, p2, p3] = start_three(&rt, c, &n);
    wait_alive(&rt, &[&n[0], &n[1], &n[2]]);
    let mut want = write_all(&rt, &n[0], &keys("first", 20), 1);
    assert_eq!(want.len(), 20);
    // The peers hold the first 20 dots of n1 before it dies.
    wait_holds(&rt, &[&n[1], &n[2]], &want);
    p1.kill();
    p2.kill();
    p3.kill();
    // n1 alone takes 20 more writes: with a stale counter they would reuse the dots
    // n2 and n3 hold, and those two would drop them as duplicates forever.
    let _p1 = n[0].start(&rt, c, None);
    let more = write_all(&rt, &n[0], &keys("second", 20), 1);
    assert_eq!(more.len(), 20);
    want.extend(more);
    let _p2 = n[1].start(&rt, c, Some(&n[0]));
    let _p3 = n[2].start(&rt, c, Some(&n[0]));
    wait_holds(&rt, &[&n[0], &n[1], &n[2]], &want);
}

#[test]
fn a_crash_looping_node_loses_no_acknowledged_write_and_leaves_no_ghost() {
    let (rt, dir, n) = three_nodes();
    let c = dir.path();
    let _p1 = n[0].start(&rt, c, None);
    let _p2 = n[1].start(&rt, c, Some(&n[0]));
    let mut want = BTreeMap::new();
    for life in 0..20 {
        let p3 = n[2].start(&rt, c, Some(&n[0]));
        let acked = write_all(&rt, &n[2], &keys(&format!("life{life:02}"), 3), 3);
        assert_eq!(acked.len(), 3, "life {life}: writes refused");
        want.extend(acked);
        p3.kill();
    }
    let _p3 = n[2].start(&rt, c, Some(&n[0]));
    wait_holds(&rt, &[&n[0], &n[1], &n[2]], &want);
    for x in &n {
        until(
            &format!("{} lists each node once, alive", x.id),
            DEADLINE,
            || {
                let m = x.members(&rt);
                m.len() == 3
                    && ["n1", "n2", "n3"]
                        .iter()
                        .all(|id| m.iter().filter(|(i, s)| i == id && s == "alive").count() == 1)
            },
        );
    }
}

/// Runs `gossamer run` with a data directory and returns (exit code, stderr).
fn run_once(certs: &Path, id: &str, data: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let n = N {
        id: id.into(),
        quic: free_udp(),
        admin: free_tcp(),
        data: data.to_path_buf(),
    };
    let mut cmd = n.command(certs, None);
    cmd.args(extra);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code(), err);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("gossamer run {id} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_damaged_foreign_or_unwritable_data_directory_stops_the_node_with_exit_2() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    certs(c, "durable", &["n1", "n2"]);
    let n1 = N::new(c, "n1");
    let p = n1.start(&rt, c, None);
    assert_eq!(write_all(&rt, &n1, &keys("k", 50), 4).len(), 50);
    // A second process on the same data directory while the first runs.
    let (code, err) = run_once(c, "n1", &n1.data, &[]);
    assert_eq!(code, Some(2), "store in use: {err}");
    assert!(
        err.contains("in use by another process"),
        "store in use: {err}"
    );
    p.kill();
    let store = n1.data.join("gossamer.redb");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store), 0o600, "store file mode");
        assert_eq!(mode(&n1.data), 0o700, "data directory mode");
    }

    // Another node's store.
    let (code, err) = run_once(c, "n2", &n1.data, &[]);
    assert_eq!(code, Some(2), "foreign store: {err}");
    assert!(
        err.contains("n1") && err.contains("n2"),
        "foreign store: {err}"
    );

    // A bad durability mode names the flag.
    let (code, err) = run_once(c, "n1", &n1.data, &["--durability", "fast"]);
    assert_eq!(code, Some(2), "bad durability: {err}");
    assert!(err.contains("--durability"), "bad durability: {err}");

    // Unwritable: a folder under a regular file (chmod does not stop root).
    let file = c.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let (code, err) = run_once(c, "n1", &file.join("sub"), &[]);
    assert_eq!(code, Some(2), "unwritable: {err}");
    assert!(
        err.contains("not writable") && err.contains("a-file"),
        "unwritable: {err}"
    );

    // A truncated store.
    let len = std::fs::metadata(&store).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    let (code, err) = run_once(c, "n1", &n1.data, &[]);
    assert_eq!(code, Some(2), "truncated store: {err}");
    assert!(
        err.contains("gossamer.redb") && err.contains("move it aside"),
        "truncated store: {err}"
    );
}
