//! The status page `/ui` in a real browser: headless Chromium loads it from a node of a
//! local cluster in two datacenters whose admin API wants a token, and the DOM it dumps
//! must show every member under its datacenter, the keys under the prefix of the URL
//! fragment, and a hostile key and value as text, never as elements.
//!
//! Needs Chromium (`/usr/bin/chromium`, Debian's `chromium` package, or the path in
//! `GOSSAMER_CHROMIUM`); without it the test says so and passes. CI installs it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gossamer::core::Config;
use gossamer::local::{wait_for, LocalCluster};

const DEADLINE: Duration = Duration::from_secs(20);
/// Longest a browser run may take before it is killed and the test fails.
const BROWSER_DEADLINE: Duration = Duration::from_secs(40);
const TOKEN: &str = "ui-test-token";
const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";
const HOSTILE_ESCAPED: &str =
    "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;";
const HOSTILE_KEY: &str = "app/<b>bold</b>";

/// The Chromium binary, or the path where none was found.
fn chromium() -> Result<PathBuf, PathBuf> {
    let path = std::env::var_os("GOSSAMER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        Ok(path)
    } else {
        Err(path)
    }
}

/// A browser process, killed if the test ends before it does.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loads `url` in headless Chromium with a fresh profile under `dir` and returns the DOM
/// once 10 s of the page's virtual time have passed (its polls every 2 s included).
async fn dump_dom(chromium: &Path, dir: &Path, url: &str) -> String {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let out_path = profile.path().join("dom.html");
    let err_path = profile.path().join("stderr.txt");
    // Output to files, not pipes: a DOM larger than a pipe's buffer would block the
    // browser while this waits for it to exit.
    let mut browser = Browser(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=10000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .expect("start chromium"),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = browser.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < BROWSER_DEADLINE,
            "chromium did not finish within {BROWSER_DEADLINE:?}; its stderr:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        // The cluster runs on this runtime's workers meanwhile.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dom = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.success() && dom.contains("</html>"),
        "chromium failed ({status}); its stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    println!("chromium took {:?}", start.elapsed());
    dom
}

/// The members drawn under each datacenter: `data-member` ids per `data-dc` section.
fn members_by_dc(dom: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for section in dom.split("<section class=\"dc\"").skip(1) {
        let section = section.split("</section>").next().unwrap();
        let dc = attr_values(section, "data-dc").remove(0);
        out.insert(dc, attr_values(section, "data-member"));
    }
    out
}

fn attr_values(html: &str, name: &str) -> Vec<String> {
    let pat = format!("{name}=\"");
    html.match_indices(&pat)
        .filter_map(|(i, _)| {
            let rest = &html[i + pat.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// The text of the element opened by `open` (up to the next `close`).
fn element<'a>(dom: &'a str, open: &str, close: &str) -> &'a str {
    let start = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find(close).unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_shows_members_by_dc_keys_and_escaped_values() {
    let chromium = match chromium() {
        Ok(path) => path,
        Err(missing) => {
            println!(
                "SKIPPED ui_chromium: no Chromium at {} (install Debian's `chromium` \
                 package, or set GOSSAMER_CHROMIUM to a Chromium binary)",
                missing.display()
            );
            return;
        }
    };
    let mut c = LocalCluster::start_durable(0, 4, Config::local(), None, true)
        .await
        .expect("certificates");
    for i in 1..=4 {
        let mut cfg = c.config(i, c.seed_addrs());
        cfg.dc = if i <= 2 { "east" } else { "west" }.to_string();
        cfg.admin_token = Some(TOKEN.to_string());
        c.start_with(cfg).await.expect("node start");
    }
    let (ok, _) = wait_for(DEADLINE, || c.fully_joined()).await;
    assert!(
        ok,
        "four nodes did not see each other alive within {DEADLINE:?}"
    );
    let n1 = &c.nodes[0];
    for (k, v) in [
        ("app/plain", "hello"),
        ("app/evil", HOSTILE),
        (HOSTILE_KEY, "bold key"),
        ("other/hidden", "not under the prefix"),
    ] {
        n1.set(k, v.as_bytes().to_vec()).expect("write");
    }
    let admin = c.admin_addr(n1).expect("admin API");
    let dir = tempfile::tempdir().unwrap();

    // The token comes in the fragment, as a link to the page may carry it.
    let url = format!("http://{admin}/ui#token={TOKEN}&prefix=app%2F&key=app%2Fevil");
    let dom = dump_dom(&chromium, dir.path(), &url).await;

    assert!(
        element(&dom, "<p id=\"error\"", "</p>").contains("hidden"),
        "the page shows an error: {}",
        element(&dom, "<p id=\"error\"", "</p>")
    );
    assert!(element(&dom, "<form id=\"token-form\"", ">").contains("hidden"));
    assert!(
        element(&dom, "<span id=\"node-id\"", "</span>").ends_with(">n1"),
        "{dom}"
    );
    let by_dc = members_by_dc(&dom);
    let want = BTreeMap::from([
        ("east".to_string(), vec!["n1".to_string(), "n2".to_string()]),
        ("west".to_string(), vec!["n3".to_string(), "n4".to_string()]),
    ]);
    assert_eq!(by_dc, want, "members by datacenter in the page");
    assert!(dom.contains("2 members: 2 alive"), "counts per datacenter");

    // The listing holds the prefix's keys only; the hostile key is text.
    let keys = element(&dom, "<table id=\"keys\"", "</table>");
    assert!(
        keys.contains(">app/plain<") && keys.contains(">app/evil<"),
        "{keys}"
    );
    assert!(keys.contains(">app/&lt;b&gt;bold&lt;/b&gt;<"), "{keys}");
    assert!(!keys.contains("other/hidden"), "{keys}");
    assert!(keys.contains(HOSTILE_ESCAPED), "value preview: {keys}");
    // The selected key's value, as text.
    let value = element(&dom, "<pre id=\"value\"", "</pre>");
    assert!(value.ends_with(HOSTILE_ESCAPED), "{value}");
    assert!(element(&dom, "<p id=\"value-meta\"", "</p>").contains("writer n1"));
    // No element came out of the data.
    assert!(!dom.contains("<img") && !dom.contains("<b>"), "{dom}");
    assert!(!dom.contains("<script>alert"), "{dom}");
    assert_eq!(dom.matches("<script").count(), 1, "only app.js: {dom}");
    // Bandwidth and sync figures from /metrics.
    let sent = element(
        &dom,
        "data-metric=\"gossamer_datagram_bytes_sent_total\"",
        "</tr>",
    );
    assert!(sent.contains(" B<") || sent.contains("iB<"), "{sent}");
    assert!(dom.contains("data-metric=\"gossamer_syncs_completed_total\""));
    assert!(!dom.contains(TOKEN), "the token is not in the page");

    // Without a token the page holds no data and asks for one.
    let dom = dump_dom(&chromium, dir.path(), &format!("http://{admin}/ui")).await;
    assert!(!element(&dom, "<form id=\"token-form\"", ">").contains("hidden"));
    assert!(element(&dom, "<p id=\"error\"", "</p>").contains("token"));
    assert!(!dom.contains("data-member") && !dom.contains("app/plain"));

    c.shutdown().await;
}
