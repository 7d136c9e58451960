//! `gossamer kv watch [PREFIX] [--index N] [--json]`: one line per change under a prefix,
//! re-listing and resuming by itself when the node resets the watch.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;

use anyhow::Context as _;

use gossamer::admin::client::{AdminClient, IndexedListing};
use gossamer::admin::watch::{ChangeLine, WatchLine};

/// Times in a row a watch may end without a line before the command gives up.
const MAX_EMPTY_RECONNECTS: u32 = 3;

/// What the command has printed per key (a hash of the value; `None` once deleted), so
/// that after a reset only what changed is printed.
#[derive(Default)]
struct Printed(HashMap<String, Option<u64>>);

fn hash(value: &str) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl Printed {
    /// True when `c` tells something not printed yet; records it.
    fn news(&mut self, c: &ChangeLine) -> bool {
        let now = (!c.deleted).then(|| hash(c.value.as_deref().unwrap_or("")));
        self.0.insert(c.key.clone(), now) != Some(now)
    }
}

/// One change as the command prints it: `set KEY=VALUE` or `del KEY`, or the JSON line.
fn render(line: &WatchLine, json: bool) -> anyhow::Result<Option<String>> {
    if json {
        return Ok(Some(serde_json::to_string(line)?));
    }
    Ok(match line {
        WatchLine::Change(c) if c.deleted => Some(format!("del {}", c.key)),
        WatchLine::Change(c) => Some(format!(
            "set {}={}",
            c.key,
            c.value.as_deref().unwrap_or("")
        )),
        WatchLine::Heartbeat { .. } | WatchLine::Reset { .. } => None,
    })
}

/// The changes that turn what was printed into `listing`: every listed key whose value
/// was not printed, and a delete for every printed key that is gone.
fn catch_up(printed: &Printed, listing: &IndexedListing, prefix: &str) -> Vec<ChangeLine> {
    let mut out = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for item in &listing.items {
        listed.insert(item.key.as_str());
        if printed.0.get(&item.key) != Some(&Some(hash(&item.value))) {
            out.push(ChangeLine {
                index: listing.index,
                key: item.key.clone(),
                value: Some(item.value.clone()),
                value_len: item.value_len,
                deleted: false,
                writer: item.writer.clone(),
            });
        }
    }
    let mut gone: Vec<&String> = printed
        .0
        .iter()
        .filter(|(k, v)| v.is_some() && k.starts_with(prefix) && !listed.contains(k.as_str()))
        .map(|(k, _)| k)
        .collect();
    gone.sort();
    out.extend(gone.into_iter().map(|k| ChangeLine {
        index: listing.index,
        key: k.clone(),
        value: None,
        value_len: 0,
        deleted: true,
        writer: String::new(),
    }));
    out
}

/// Runs the watch until the node goes away or an error; writes to `out`, notices to
/// stderr.
pub async fn watch(
    client: &AdminClient,
    prefix: &str,
    index: Option<u64>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let mut printed = Printed::default();
    let mut from = index;
    // After a re-list: what the listing already showed, not to be printed again.
    let mut listing: Option<IndexedListing> = None;
    let mut empty = 0;
    loop {
        let mut stream = client
            .watch(prefix, from)
            .await
            .context("cannot watch keys")?;
        from = from.or(stream.index());
        let mut lines = 0;
        let mut failure = None;
        loop {
            let line = match stream.next().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            lines += 1;
            if let WatchLine::Reset { index, reason } = &line {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&line)?)?;
                }
                eprintln!(
                    "watch reset by the node ({}, index {index}): re-listing and resuming",
                    reason.as_str()
                );
                let l = client
                    .list_indexed(prefix)
                    .await
                    .context("cannot re-list keys after a reset")?;
                for c in catch_up(&printed, &l, prefix) {
                    printed.news(&c);
                    if let Some(text) = render(&WatchLine::Change(c), json)? {
                        writeln!(out, "{text}")?;
                    }
                }
                out.flush()?;
                from = Some(l.index);
                listing = Some(l);
                break;
            }
            from = Some(line.index());
            if let WatchLine::Change(c) = &line {
                printed.news(c);
                // Shown by the re-listing (printed then, if it was news).
                if listing.as_ref().is_some_and(|l| l.shows(&c.key, c.index)) {
                    continue;
                }
            }
            if let Some(text) = render(&line, json)? {
                writeln!(out, "{text}")?;
                out.flush()?;
            }
        }
        // After a reset, watch again from the new listing's index; after any other end
        // (the node shutting down, a dead connection), resume from the last index, but
        // not forever.
        empty = if lines == 0 { empty + 1 } else { 0 };
        if let Some(e) = failure {
            if empty >= MAX_EMPTY_RECONNECTS {
                return Err(e).context("the watch failed");
            }
            eprintln!("watch interrupted ({e}); resuming");
        }
        if empty >= MAX_EMPTY_RECONNECTS {
            anyhow::bail!("the node keeps ending the watch without a line; giving up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossamer::admin::testing::TestServer;

    fn change(key: &str, value: Option<&str>) -> ChangeLine {
        ChangeLine {
            index: 1,
            key: key.into(),
            value: value.map(str::to_string),
            value_len: value.map_or(0, str::len),
            deleted: value.is_none(),
            writer: "n1".into(),
        }
    }

    #[test]
    fn kv_watch_prints_sets_and_deletes() {
        let set = WatchLine::Change(change("app/x", Some("1")));
        assert_eq!(render(&set, false).unwrap().unwrap(), "set app/x=1");
        let del = WatchLine::Change(change("app/x", None));
        assert_eq!(render(&del, false).unwrap().unwrap(), "del app/x");
        assert_eq!(
            render(&WatchLine::Heartbeat { index: 3 }, false).unwrap(),
            None
        );
        let json = render(&WatchLine::Heartbeat { index: 3 }, true).unwrap();
        assert_eq!(json.unwrap(), r#"{"type":"heartbeat","index":3}"#);
    }

    #[tokio::test]
    async fn kv_watch_after_a_reset_prints_only_what_changed() {
        let server = TestServer::start(None).await;
        let c = AdminClient::new(server.addr.to_string(), None);
        c.set("app/same", b"1").await.unwrap();
        c.set("app/changed", b"2").await.unwrap();
        c.set("app/new", b"3").await.unwrap();
        let mut printed = Printed::default();
        assert!(printed.news(&change("app/same", Some("1"))));
        assert!(!printed.news(&change("app/same", Some("1"))));
        printed.news(&change("app/changed", Some("old")));
        printed.news(&change("app/gone", Some("x")));
        let listing = c.list_indexed("app/").await.unwrap();
        let lines: Vec<String> = catch_up(&printed, &listing, "app/")
            .into_iter()
            .map(|c| render(&WatchLine::Change(c), false).unwrap().unwrap())
            .collect();
        assert_eq!(
            lines,
            ["set app/changed=2", "set app/new=3", "del app/gone"]
        );
    }
}
