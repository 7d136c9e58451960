//! Operator handlers for user events and queries (`[[handlers]]`), as Serf's event
//! handlers: a command run for each delivered event (`event = ...`) or query addressed to
//! this node (`query = ...`) whose name matches, with the payload on its standard input
//! and the metadata in its environment; a query handler's standard output (at most
//! `gossip.queries.max_response_payload` bytes) is this node's answer. Embedders in Rust
//! register query handlers too ([`Handlers::on_query`], `Node::on_query`); they are
//! asked before the commands. Off unless configured.
//!
//! Bounds: at most `handler_concurrency` handlers run at once on a node, events' and
//! queries' together (one that finds every slot taken is not run, and is counted); each
//! is killed at its `timeout_ms` (a query's at its timeout, if earlier). A handler never
//! blocks the node: it is started on its own task, and the node only tries to take a
//! slot.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use crate::core::events::{UserEvent, MAX_EVENT_NAME};
use crate::core::queries::Query;
use crate::core::NodeId;

/// Default `timeout_ms` of a handler.
pub const DEFAULT_HANDLER_TIMEOUT_MS: u64 = 10_000;

/// Default `handler_concurrency`.
pub const DEFAULT_HANDLER_CONCURRENCY: usize = 4;

/// One `[[handlers]]` entry: for events (`event`) or for queries (`query`), not both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// The events it runs for: a name, a prefix ending in `*` (`deploy-*`), or `*` for
    /// every event. Empty for a query handler.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    /// The queries it answers (those addressed to this node): a name, a prefix ending
    /// in `*`, or `*`. Empty for an event handler.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// The program and its arguments, run without a shell (`["sh", "-c", "..."]` for
    /// one). It gets the payload on standard input and, for an event,
    /// `GOSSAMER_EVENT_NAME`, `GOSSAMER_EVENT_SENDER`, `GOSSAMER_EVENT_SEQ`, for a query
    /// `GOSSAMER_QUERY_NAME`, `GOSSAMER_QUERY_ASKER`, `GOSSAMER_QUERY_SEQ`, and
    /// `GOSSAMER_NODE` in its environment. A query handler's standard output is the
    /// answer (none if it fails or writes more than `max_response_payload`).
    pub command: Vec<String>,
    /// Longest run (ms); the process is then killed.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_HANDLER_TIMEOUT_MS
}

/// Whether `name` matches `pattern`: a name, a prefix ending in `*`, or `*`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

impl HandlerConfig {
    /// Whether this handler runs for an event named `name`.
    pub fn matches(&self, name: &str) -> bool {
        !self.event.is_empty() && name_matches(&self.event, name)
    }

    /// Whether this handler answers a query named `name`.
    pub fn matches_query(&self, name: &str) -> bool {
        !self.query.is_empty() && name_matches(&self.query, name)
    }

    /// Checks the entry; the error names the field (`handlers[i].…`) and the fix.
    pub fn validate(&self, i: usize) -> Result<(), String> {
        let (field, pattern) = match (self.event.is_empty(), self.query.is_empty()) {
            (false, true) => ("event", &self.event),
            (true, false) => ("query", &self.query),
            _ => {
                return Err(format!(
                    "handlers[{i}] must set exactly one of event (run for user events) and \
                     query (answer queries)"
                ))
            }
        };
        if pattern.len() > MAX_EVENT_NAME {
            return Err(format!(
                "handlers[{i}].{field} must be 1 to {MAX_EVENT_NAME} bytes: a name, a \
                 prefix ending in '*', or '*' for every one"
            ));
        }
        if self.command.first().is_none_or(|p| p.is_empty()) {
            return Err(format!(
                "handlers[{i}].command must name a program (a list: [\"/path/to/program\", \
                 \"arg\"], or [\"sh\", \"-c\", \"...\"] for a shell)"
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 3_600_000 {
            return Err(format!(
                "handlers[{i}].timeout_ms must be 1 to 3600000 (got {})",
                self.timeout_ms
            ));
        }
        Ok(())
    }
}

/// What the handlers did.
#[derive(Debug, Default)]
pub struct HandlerStats {
    /// Handlers started (commands, and Rust query handlers).
    pub started: AtomicU64,
    /// Handlers that ended well: a command exited with status 0 (a query's with an
    /// answer within the bound), a Rust query handler returned.
    pub succeeded: AtomicU64,
    /// Commands that could not start or exited with another status, query commands
    /// whose output was over the bound, and Rust query handlers that panicked.
    pub failed: AtomicU64,
    /// Handlers stopped at their timeout (commands are killed).
    pub timed_out: AtomicU64,
    /// Runs skipped because `handler_concurrency` handlers were running.
    pub skipped: AtomicU64,
}

/// A query handler registered in Rust: given a query addressed to this node, this
/// node's answer, or none. It may block (it runs on tokio's blocking pool); its answer
/// is dropped if it comes after the query's timeout.
pub type QueryHandlerFn = Arc<dyn Fn(&Query) -> Option<Vec<u8>> + Send + Sync>;

/// Where a handler's answer to a query goes (the node sends it to the asker).
pub type Reply = Box<dyn FnOnce(Vec<u8>) + Send>;

/// The configured handlers of one node, and the query handlers registered in Rust.
pub struct Handlers {
    me: NodeId,
    list: Vec<HandlerConfig>,
    registered: Mutex<Vec<(String, QueryHandlerFn)>>,
    slots: Arc<Semaphore>,
    stats: Arc<HandlerStats>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("me", &self.me)
            .field("list", &self.list)
            .finish_non_exhaustive()
    }
}

/// One command to run: what for, with what, for how long.
struct Run {
    /// The pattern it was configured for (logs).
    label: String,
    /// The name of the event or query (logs).
    name: String,
    command: Vec<String>,
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    timeout: Duration,
    /// For a query: the most bytes of standard output taken as the answer.
    answer_max: Option<usize>,
}

impl Handlers {
    /// Handlers for node `me`, at most `concurrency` running at once.
    pub fn new(me: NodeId, list: Vec<HandlerConfig>, concurrency: usize) -> Self {
        Self {
            me,
            list,
            registered: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(concurrency)),
            stats: Arc::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &HandlerStats {
        &self.stats
    }

    /// Registers `handler` for the queries named `pattern` (a name, a prefix ending in
    /// `*`, or `*`); handlers registered earlier are asked first.
    pub fn on_query(&self, pattern: &str, handler: QueryHandlerFn) {
        if let Ok(mut r) = self.registered.lock() {
            r.push((pattern.to_string(), handler));
        }
    }

    /// A free slot, or the run counted as skipped.
    fn slot(&self, what: &str, name: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                self.stats.started.fetch_add(1, Ordering::Relaxed);
                Some(slot)
            }
            Err(_) => {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%name, handler = %what, "every handler slot is taken (handler_concurrency): not run");
                None
            }
        }
    }

    /// Starts every handler matching `e` that finds a free slot; never waits. Must be
    /// called within a tokio runtime.
    pub fn offer(&self, e: &UserEvent) {
        for h in self.list.iter().filter(|h| h.matches(&e.name)) {
            let Some(slot) = self.slot(&h.event, &e.name) else {
                continue;
            };
            let run = Run {
                label: h.event.clone(),
                name: e.name.clone(),
                command: h.command.clone(),
                env: vec![
                    ("GOSSAMER_EVENT_NAME", e.name.clone()),
                    ("GOSSAMER_EVENT_SENDER", e.sender.to_string()),
                    ("GOSSAMER_EVENT_SEQ", e.seq.to_string()),
                    ("GOSSAMER_NODE", self.me.to_string()),
                ],
                stdin: e.payload.clone(),
                timeout: Duration::from_millis(h.timeout_ms),
                answer_max: None,
            };
            let stats = self.stats.clone();
            tokio::spawn(async move {
                run.run(&stats).await;
                drop(slot);
            });
        }
    }

    /// Answers `q` (a query addressed to this node) with the first matching handler, a
    /// Rust one first, then a configured command, if it finds a free slot; `reply` gets
    /// the answer (at most `answer_max` bytes) unless the handler gives none in time.
    /// Never waits. Must be called within a tokio runtime.
    pub fn answer(&self, q: &Query, answer_max: usize, reply: Reply) {
        let timeout = Duration::from_millis(q.timeout_ms);
        let rust = self.registered.lock().ok().and_then(|r| {
            r.iter()
                .find(|(p, _)| name_matches(p, &q.name))
                .map(|(p, f)| (p.clone(), f.clone()))
        });
        if let Some((pattern, f)) = rust {
            let Some(slot) = self.slot(&pattern, &q.name) else {
                return;
            };
            let (q, stats) = (q.clone(), self.stats.clone());
            tokio::spawn(async move {
                let name = q.name.clone();
                let call = tokio::task::spawn_blocking(move || f(&q));
                let got = tokio::time::timeout(timeout, call).await;
                drop(slot);
                let count = |c: &AtomicU64| c.fetch_add(1, Ordering::Relaxed);
                match got {
                    Ok(Ok(answer)) => {
                        count(&stats.succeeded);
                        if let Some(a) = answer.filter(|a| a.len() <= answer_max) {
                            reply(a);
                        }
                    }
                    Ok(Err(_)) => {
                        count(&stats.failed);
                        tracing::warn!(query = %name, handler = %pattern, "query handler panicked");
                    }
                    Err(_) => {
                        count(&stats.timed_out);
                        tracing::warn!(query = %name, handler = %pattern, "query handler gave no answer within the query's timeout");
                    }
                }
            });
            return;
        }
        let Some(h) = self.list.iter().find(|h| h.matches_query(&q.name)) else {
            return;
        };
        let Some(slot) = self.slot(&h.query, &q.name) else {
            return;
        };
        let run = Run {
            label: h.query.clone(),
            name: q.name.clone(),
            command: h.command.clone(),
            env: vec![
                ("GOSSAMER_QUERY_NAME", q.name.clone()),
                ("GOSSAMER_QUERY_ASKER", q.asker.to_string()),
                ("GOSSAMER_QUERY_SEQ", q.seq.to_string()),
                ("GOSSAMER_NODE", self.me.to_string()),
            ],
            stdin: q.payload.clone(),
            timeout: timeout.min(Duration::from_millis(h.timeout_ms)),
            answer_max: Some(answer_max),
        };
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let answer = run.run(&stats).await;
            drop(slot);
            if let Some(a) = answer {
                reply(a);
            }
        });
    }
}

impl Run {
    /// Runs the command to its end or its timeout, counts how it ended, and returns its
    /// standard output if it is a query's (and it exited with 0 within the bound).
    async fn run(self, stats: &HandlerStats) -> Option<Vec<u8>> {
        let count = |c: &AtomicU64| c.fetch_add(1, Ordering::Relaxed);
        let (label, name) = (&self.label, &self.name);
        let mut child = match tokio::process::Command::new(&self.command[0])
            .args(&self.command[1..])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(match self.answer_max {
                Some(_) => Stdio::piped(),
                None => Stdio::null(),
            })
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(err) => {
                count(&stats.failed);
                tracing::warn!(handler = %label, program = %self.command[0], error = %err, "handler did not start");
                return None;
            }
        };
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let max = self.answer_max.unwrap_or(0);
        let payload = self.stdin;
        let ran = tokio::time::timeout(self.timeout, async {
            let write = async {
                if let Some(mut stdin) = stdin {
                    // A handler that does not read its input is not an error.
                    let _ = stdin.write_all(&payload).await;
                }
            };
            // One byte more than the bound shows an answer too large.
            let read = async {
                let mut out = Vec::new();
                if let Some(stdout) = stdout {
                    let _ = stdout.take(max as u64 + 1).read_to_end(&mut out).await;
                }
                out
            };
            let ((), out) = tokio::join!(write, read);
            (child.wait().await, out)
        })
        .await;
        match ran {
            Ok((Ok(status), out)) if status.success() => {
                if out.len() > max && self.answer_max.is_some() {
                    count(&stats.failed);
                    tracing::warn!(handler = %label, %name, max, "query handler wrote more than max_response_payload: no answer sent");
                    return None;
                }
                count(&stats.succeeded);
                self.answer_max.map(|_| out)
            }
            Ok((Ok(status), _)) => {
                count(&stats.failed);
                tracing::warn!(handler = %label, %name, %status, "handler failed");
                None
            }
            Ok((Err(err), _)) => {
                count(&stats.failed);
                tracing::warn!(handler = %label, %name, error = %err, "handler failed");
                None
            }
            Err(_) => {
                // Killed (and reaped) before it is counted: whoever reads the count finds
                // the process gone.
                let _ = child.kill().await;
                count(&stats.timed_out);
                tracing::warn!(handler = %label, %name, timeout_ms = self.timeout.as_millis() as u64, "handler killed at its timeout");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(event: &str) -> HandlerConfig {
        HandlerConfig {
            event: event.into(),
            query: String::new(),
            command: vec!["true".into()],
            timeout_ms: 1_000,
        }
    }

    #[test]
    fn names_prefixes_and_every_event_match() {
        assert!(handler("deploy").matches("deploy"));
        assert!(!handler("deploy").matches("deploy-web"));
        assert!(handler("deploy-*").matches("deploy-web"));
        assert!(!handler("deploy-*").matches("build"));
        assert!(handler("*").matches("anything"));
    }

    #[test]
    fn query_handlers_answer_queries_only_and_an_entry_is_for_one_kind() {
        let mut q = handler("");
        q.query = "uptime*".into();
        assert!(q.matches_query("uptime-5m"));
        assert!(!q.matches("uptime-5m"), "not run for events");
        assert!(!handler("uptime*").matches_query("uptime-5m"));
        assert!(q.validate(0).is_ok());
        q.event = "x".into();
        let e = q.validate(1).unwrap_err();
        assert!(e.starts_with("handlers[1] must set exactly one"), "{e}");
        let parsed: HandlerConfig =
            toml::from_str("query = \"*\"\ncommand = [\"uptime\"]\n").unwrap();
        assert!(parsed.matches_query("anything") && parsed.event.is_empty());
    }

    fn query(timeout_ms: u64) -> Query {
        Query {
            asker: NodeId::new("asker").unwrap(),
            seq: 42,
            name: "who".into(),
            payload: b"in".to_vec(),
            filter: Default::default(),
            timeout_ms,
            sig: Default::default(),
        }
    }

    /// Runs the first query handler of `script` and returns what it answered.
    async fn answer_of(script: &str, q: Query, max: usize) -> (Option<Vec<u8>>, Arc<HandlerStats>) {
        let h = HandlerConfig {
            event: String::new(),
            query: "who".into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            timeout_ms: 10_000,
        };
        let handlers = Handlers::new(NodeId::new("me").unwrap(), vec![h], 2);
        let (tx, rx) = tokio::sync::oneshot::channel();
        handlers.answer(&q, max, Box::new(move |a| drop(tx.send(a))));
        (rx.await.ok(), handlers.stats.clone())
    }

    #[tokio::test]
    async fn a_query_commands_output_is_its_answer_and_a_hanging_one_is_killed() {
        let script = "cat; echo \" $GOSSAMER_QUERY_NAME $GOSSAMER_QUERY_ASKER $GOSSAMER_QUERY_SEQ $GOSSAMER_NODE\"";
        let (got, stats) = answer_of(script, query(5_000), 100).await;
        assert_eq!(got.as_deref(), Some(&b"in who asker 42 me\n"[..]));
        assert_eq!(stats.succeeded.load(Ordering::Relaxed), 1);
        // More than the bound: no answer.
        let (got, stats) = answer_of("printf 123456", query(5_000), 5).await;
        assert_eq!(got, None);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
        // A command that hangs is killed at the query's timeout.
        let started = std::time::Instant::now();
        let (got, stats) = answer_of("exec sleep 30", query(200), 100).await;
        assert_eq!(got, None);
        assert_eq!(stats.timed_out.load(Ordering::Relaxed), 1);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_rust_query_handler_comes_first() {
        let handlers = Handlers::new(NodeId::new("me").unwrap(), Vec::new(), 2);
        handlers.on_query("wh*", Arc::new(|q: &Query| Some(q.payload.repeat(2))));
        let (tx, rx) = tokio::sync::oneshot::channel();
        handlers.answer(&query(1_000), 100, Box::new(move |a| drop(tx.send(a))));
        assert_eq!(rx.await.unwrap(), b"inin");
        // No handler for this name: nothing runs.
        let mut other = query(1_000);
        other.name = "other".into();
        handlers.answer(&other, 100, Box::new(|_| panic!("no handler")));
        assert_eq!(handlers.stats().started.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_bad_entry_is_refused_naming_its_field() {
        let mut h = handler("");
        assert!(h
            .validate(2)
            .unwrap_err()
            .starts_with("handlers[2] must set exactly one of event"));
        h.event = "x".into();
        h.command = Vec::new();
        assert!(h
            .validate(0)
            .unwrap_err()
            .starts_with("handlers[0].command"));
        h.command = vec!["true".into()];
        h.timeout_ms = 0;
        assert!(h
            .validate(0)
            .unwrap_err()
            .starts_with("handlers[0].timeout_ms"));
        h.timeout_ms = 5;
        assert!(h.validate(0).is_ok());
    }
}
