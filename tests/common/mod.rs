//! Helpers shared by the tests that run the `gossamer` binary as processes.

#![allow(dead_code)] // each test crate uses its own subset

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gossamer");

/// A running `gossamer` process; killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILL now: no leave, no final commit.
    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `gossamer ARGS` to completion.
pub fn gossamer(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run gossamer")
}

/// A UDP port free on 127.0.0.1 now.
pub fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port free on 127.0.0.1 now.
pub fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it holds; fails the test naming `what` after `deadline`.
pub fn until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA for `cluster` and certificates for `nodes` (127.0.0.1) in `dir`, made by
/// `gossamer certs`.
pub fn certs(dir: &Path, cluster: &str, nodes: &[&str]) {
    let d = dir.to_str().unwrap();
    let out = gossamer(&["certs", "init", "--dir", d, "--cluster", cluster]);
    assert!(
        out.status.success(),
        "certs init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in nodes {
        let out = gossamer(&[
            "certs",
            "issue",
            "--dir",
            d,
            "--node",
            n,
            "--ip",
            "127.0.0.1",
        ]);
        assert!(
            out.status.success(),
            "certs issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
