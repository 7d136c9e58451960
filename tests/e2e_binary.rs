//! End-to-end: the built `gossamer` binary as three processes with certificates made by
//! `gossamer certs`, talking through the admin API and the CLI.

mod common;

use common::{certs, free_tcp, free_udp, gossamer, until, Proc, BIN};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn start(dir: &Path, id: &str, quic: u16, admin: u16, seed: Option<u16>) -> Proc {
    let mut c = Command::new(BIN);
    c.args(["run", "--node-id", id, "--listen"])
        .arg(format!("127.0.0.1:{quic}"))
        .arg("--admin")
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--certs")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(s) = seed {
        c.arg("--seed").arg(format!("127.0.0.1:{s}"));
    }
    Proc(c.spawn().expect("spawn node"))
}

fn members_json(admin: u16) -> Option<serde_json::Value> {
    let out = gossamer(&[
        "members",
        "--json",
        "--admin",
        &format!("127.0.0.1:{admin}"),
    ]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn status_of(admin: u16, id: &str) -> Option<String> {
    let m = members_json(admin)?;
    m.as_array()?
        .iter()
        .find(|x| x["id"] == id)
        .and_then(|x| x["status"].as_str().map(str::to_string))
}

#[test]
fn three_processes_replicate_a_key_set_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), "e2e", &["n1", "n2", "n3"]);
    for n in ["n1", "n2", "n3"] {
        assert!(dir.path().join(format!("{n}.pem")).exists());
        assert!(dir.path().join(format!("{n}.key")).exists());
    }
    let (q, a): (Vec<u16>, Vec<u16>) = (0..3).map(|_| (free_udp(), free_tcp())).unzip();
    let _n1 = start(dir.path(), "n1", q[0], a[0], None);
    let _n2 = start(dir.path(), "n2", q[1], a[1], Some(q[0]));
    let _n3 = start(dir.path(), "n3", q[2], a[2], Some(q[0]));
    until("three members alive on n3", DEADLINE, || {
        members_json(a[2]).is_some_and(|m| {
            m.as_array()
                .is_some_and(|v| v.len() == 3 && v.iter().all(|x| x["status"] == "alive"))
        })
    });
    let admin = |i: usize| format!("127.0.0.1:{}", a[i]);
    let out = gossamer(&["kv", "set", "greeting", "hello fleet", "--admin", &admin(0)]);
    assert!(
        out.status.success(),
        "kv set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every node has it before n2 deletes it (a delete of a key n2 has not seen yet
    // would rightly report it absent).
    for i in [1, 2] {
        until(&format!("the key on n{}", i + 1), DEADLINE, || {
            let out = gossamer(&["kv", "get", "greeting", "--admin", &admin(i)]);
            out.status.success() && out.stdout == b"hello fleet\n"
        });
    }
    // An absent key: exit code 1.
    let out = gossamer(&["kv", "get", "nope", "--admin", &admin(1)]);
    assert_eq!(out.status.code(), Some(1));
    // Delete on n2, gone on n1.
    let out = gossamer(&["kv", "del", "greeting", "--admin", &admin(1)]);
    assert!(out.status.success());
    until("the delete on n1", DEADLINE, || {
        gossamer(&["kv", "get", "greeting", "--admin", &admin(0)])
            .status
            .code()
            == Some(1)
    });
    // Status and metrics answer.
    let out = gossamer(&["status", "--json", "--admin", &admin(0)]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["node_id"], "n1");
    assert_eq!(st["cluster"], "e2e");
    // SIGTERM makes a node leave gracefully: the others see it as "left".
    let pid = _n3.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    until("n3 reported as left on n1", DEADLINE, || {
        status_of(a[0], "n3").as_deref() == Some("left")
    });
}

#[test]
fn bad_configuration_exits_with_code_2_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Missing certificate files.
    let out = gossamer(&[
        "run",
        "--node-id",
        "n1",
        "--listen",
        "127.0.0.1:0",
        "--certs",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ca.pem") || err.contains("n1.pem"),
        "stderr: {err}"
    );
    // A bad address.
    let out = gossamer(&[
        "run",
        "--node-id",
        "n1",
        "--listen",
        "nowhere",
        "--certs",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    // An unreadable config file.
    let out = gossamer(&["run", "--config", &format!("{d}/missing.toml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
    // A config file with an unknown field.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "node_id = \"n1\"\nlisten = \"127.0.0.1:0\"\ncerts = \"x\"\nfanout = 3\n",
    )
    .unwrap();
    let out = gossamer(&["run", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fanout"));
    // An empty admin token (#20): it would let `Authorization: Bearer ` in.
    let empty = dir.path().join("empty-token.toml");
    std::fs::write(
        &empty,
        format!(
            "node_id = \"n1\"\nlisten = \"127.0.0.1:0\"\ncerts = \"{d}\"\nadmin_token = \"\"\n"
        ),
    )
    .unwrap();
    let out = gossamer(&["run", "--config", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin_token"), "stderr: {err}");
    // A missing node id.
    let out = gossamer(&["run", "--listen", "127.0.0.1:0", "--certs", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-id"));
}

/// #20: a seed that does not answer is logged at WARN while the node is alone and shown
/// in `status` with its failures and last error, until it answers.
#[test]
fn a_seed_that_does_not_answer_is_logged_and_shown_until_it_does() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), "e2e", &["n1", "n2"]);
    let (q1, a1, q2, a2) = (free_udp(), free_tcp(), free_udp(), free_tcp());
    let log = std::fs::File::create(dir.path().join("n1.log")).unwrap();
    let _n1 = Proc(
        Command::new(BIN)
            .args(["run", "--node-id", "n1", "--listen"])
            .arg(format!("127.0.0.1:{q1}"))
            .arg("--admin")
            .arg(format!("127.0.0.1:{a1}"))
            .arg("--certs")
            .arg(dir.path())
            .arg("--seed")
            .arg(format!("127.0.0.1:{q2}"))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node"),
    );
    let admin = format!("127.0.0.1:{a1}");
    let seed = || -> Option<serde_json::Value> {
        let out = gossamer(&["status", "--json", "--admin", &admin]);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(st["seeds"][0].clone())
    };
    until("the silent seed shown as failing", DEADLINE, || {
        seed().is_some_and(|s| {
            s["joined"] == false && s["failures"].as_u64() >= Some(1) && s["last_error"].is_string()
        })
    });
    let text = gossamer(&["status", "--admin", &admin]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("NOT ANSWERING"), "{text}");
    let logged = std::fs::read_to_string(dir.path().join("n1.log")).unwrap();
    assert!(
        logged.contains("WARN") && logged.contains("this node is alone"),
        "no warning logged: {logged}"
    );
    // The seed comes up: the next attempt joins through it.
    let _n2 = start(dir.path(), "n2", q2, a2, None);
    until("the seed joined", DEADLINE, || {
        seed().is_some_and(|s| s["joined"] == true && s["member"] == "n2")
    });
}

/// `demo --keep` leaves a cluster a newcomer can use with the CLI, and Ctrl-C/SIGTERM
/// ends it cleanly, deleting its folders.
#[test]
fn the_kept_demo_cluster_answers_the_cli_and_ends_on_sigterm() {
    use std::io::BufRead;
    use std::sync::mpsc;
    let mut child = Proc(
        Command::new(BIN)
            .args(["demo", "--keep", "--nodes", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo"),
    );
    let (tx, rx) = mpsc::channel();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut admins = Vec::new();
    let mut certs_dir = None;
    let start = std::time::Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let line = rx
            .recv_timeout(left)
            .expect("the demo printed its admin addresses");
        if let Some(rest) = line
            .split(" in ")
            .nth(1)
            .filter(|_| line.contains("generated a CA"))
        {
            certs_dir = rest.split(',').next().map(std::path::PathBuf::from);
        }
        if let [_, "admin", addr] = line.split_whitespace().collect::<Vec<_>>()[..] {
            admins.push(addr.to_string());
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    assert_eq!(admins.len(), 3, "one admin address per node: {admins:?}");
    let certs_dir = certs_dir.expect("the demo named its certificate folder");
    assert!(certs_dir.is_dir());
    let set = gossamer(&["kv", "set", "--admin", &admins[0], "demo/hello", "world"]);
    assert!(set.status.success(), "{set:?}");
    until("the write on the last node", DEADLINE, || {
        let got = gossamer(&["kv", "get", "--admin", &admins[2], "demo/hello"]);
        got.status.success() && got.stdout == b"world\n"
    });
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    until("the demo to exit", DEADLINE, || {
        while let Ok(l) = rx.try_recv() {
            rest.push_str(&l);
            rest.push('\n');
        }
        child.0.try_wait().unwrap().is_some()
    });
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit {status:?}; output: {rest}");
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert!(rest.contains("leaving the cluster gracefully"), "{rest}");
    assert!(
        !certs_dir.exists(),
        "{} was not deleted",
        certs_dir.display()
    );
}

/// `gossamer kv watch` as a process: its stdout's lines, read by a thread.
fn watch_lines(args: &[&str]) -> (Proc, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["kv", "watch"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kv watch");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

#[test]
fn kv_watch_prints_changes_and_resumes_after_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), "e2e", &["n1"]);
    let (q, a) = (free_udp(), free_tcp());
    let _n1 = start(dir.path(), "n1", q, a, None);
    let admin = format!("127.0.0.1:{a}");
    until("the node's admin API", DEADLINE, || {
        members_json(a).is_some()
    });
    let (_watch, lines) = watch_lines(&["app/", "--admin", &admin]);
    let mut seen = Vec::new();
    // The watch starts from now: write until it shows a write.
    let mut n = 0;
    until("kv watch printing a write", DEADLINE, || {
        n += 1;
        let out = gossamer(&["kv", "set", "app/x", &format!("v{n}"), "--admin", &admin]);
        assert!(out.status.success());
        gossamer(&["kv", "set", "other/y", "no", "--admin", &admin]);
        seen.extend(lines.try_iter());
        seen.iter().any(|l| l.starts_with("set app/x=v"))
    });
    let out = gossamer(&["kv", "del", "app/x", "--admin", &admin]);
    assert!(out.status.success());
    until("kv watch printing the delete", DEADLINE, || {
        seen.extend(lines.try_iter());
        seen.iter().any(|l| l == "del app/x")
    });
    assert!(
        seen.iter().all(|l| !l.contains("other/")),
        "only keys under the prefix: {seen:?}"
    );
    // An index from before this process life: the node resets the watch, and the
    // command re-lists (printing the state) and goes on.
    gossamer(&["kv", "set", "app/z", "here", "--admin", &admin]);
    let (_json, lines) = watch_lines(&["app/", "--index", "1", "--json", "--admin", &admin]);
    let mut seen = Vec::new();
    until("kv watch --json re-listing after a reset", DEADLINE, || {
        seen.extend(lines.try_iter());
        seen.len() >= 2
    });
    assert!(
        seen[0].contains(r#""type":"reset""#) && seen[0].contains("before_this_life"),
        "{seen:?}"
    );
    let line: serde_json::Value = serde_json::from_str(&seen[1]).unwrap();
    assert_eq!(line["type"], "change");
    assert_eq!(
        (line["key"].as_str(), line["value"].as_str()),
        (Some("app/z"), Some("here"))
    );
    println!("kv watch --json printed {seen:?}");
    // And resumes: a later write comes through.
    until("kv watch --json after its reset", DEADLINE, || {
        gossamer(&["kv", "set", "app/after", "1", "--admin", &admin]);
        seen.extend(lines.try_iter());
        seen.iter().any(|l| l.contains(r#""key":"app/after""#))
    });
}
