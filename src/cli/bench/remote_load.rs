//! The write load through admin APIs (processes and cluster modes): writes issued with
//! `PUT /v1/kv`, their arrival on every node seen through each node's watch stream
//! (`GET /v1/watch`, no polling), and the run's keys deleted at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use gossamer::admin::client::{AdminClient, WatchStream};
use gossamer::admin::watch::WatchLine;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::progress::{wait_until, Progress};
use super::throughput::{pace, StepLoad, StepOutcome, GRACE};
use super::tracker::{lock, Tracker};

/// Writes in flight at once across the cluster: each is one HTTP request, and a node
/// serves at most 64 at a time (more are answered 503).
const IN_FLIGHT: usize = 128;

/// Longest time for deleting the run's keys.
const CLEANUP_LIMIT: Duration = Duration::from_secs(60);

/// Times a watch stream may be reopened after it failed, before its node's arrivals
/// are given up on.
const MAX_REOPEN: u32 = 3;

/// The value of every write: as large as the quic mode's, and readable, since an
/// operator may meet one that a failed run left behind.
const VALUE: &[u8; 32] = b"a key written by gossamer bench.";

/// Attempts to delete one key through its writer: a run of thousands of writes
/// (`--throughput`) opens one connection per request, and the machine's ephemeral ports
/// may run short for a moment.
const DELETE_ATTEMPTS: u32 = 3;

/// Other nodes a key is deleted through when its writer does not answer (it may have
/// stopped; the key may have reached them).
const DELETE_ELSEWHERE: usize = 2;

/// Issues writes through the nodes' admin APIs, bounded in flight; remembers every key
/// and its writer, so that the run's keys can be deleted.
pub(super) struct Writer {
    clients: Arc<Vec<AdminClient>>,
    /// Arrivals of the writes made while set (warm-up writes are not tracked).
    pub(super) tracker: Option<Arc<Mutex<Tracker>>>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    errors: Arc<AtomicUsize>,
    first_error: Arc<Mutex<Option<String>>>,
    keys: Vec<(String, usize)>,
}

impl Writer {
    /// A writer through `clients`.
    pub(super) fn new(clients: Arc<Vec<AdminClient>>) -> Self {
        Self {
            clients,
            tracker: None,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            tasks: JoinSet::new(),
            errors: Arc::new(AtomicUsize::new(0)),
            first_error: Arc::new(Mutex::new(None)),
            keys: Vec::new(),
        }
    }

    /// Writes `key` through node `node`, waiting for a free slot first.
    pub(super) async fn issue(&mut self, key: String, node: usize) {
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => self.spawn(key, node, permit),
            Err(_) => self.failed("no write slot".into()),
        }
    }

    /// Writes `key` through node `node` if a slot is free now; else counts an error (the
    /// load generator cannot keep up with the rate).
    pub(super) fn try_issue(&mut self, key: String, node: usize) {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => self.spawn(key, node, permit),
            Err(_) => self.failed(format!("more than {IN_FLIGHT} writes in flight")),
        }
    }

    fn failed(&self, why: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }

    fn spawn(&mut self, key: String, node: usize, permit: tokio::sync::OwnedSemaphorePermit) {
        // Registered before the request: the node's watch line may come before its answer.
        if let Some(t) = &self.tracker {
            lock(t).register(key.clone());
        }
        self.keys.push((key.clone(), node));
        let client = self.clients[node].clone();
        let (errors, first) = (self.errors.clone(), self.first_error.clone());
        self.tasks.spawn(async move {
            if let Err(e) = client.set(&key, VALUE).await {
                errors.fetch_add(1, Ordering::Relaxed);
                first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| format!("{}: {e}", client.addr()));
            }
            drop(permit);
        });
    }

    /// Waits for every write issued to be answered (each request has its timeout).
    pub(super) async fn settle(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Failed writes so far, and the first failure.
    pub(super) fn errors(&self) -> (usize, Option<String>) {
        let first = self
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (self.errors.load(Ordering::Relaxed), first)
    }

    /// Deletes every key written, each through the node that wrote it (which holds it
    /// even if it reached no other node), or if that node does not answer through the
    /// next ones, within [`CLEANUP_LIMIT`]; returns a note if some were not deleted.
    pub(super) async fn delete_all(&mut self, prefix: &str, progress: &Progress) -> Option<String> {
        self.settle().await;
        let total = self.keys.len();
        let deleted = Arc::new(AtomicUsize::new(0));
        let first_error = Arc::new(Mutex::new(None::<String>));
        // Keys whose writer did not answer and that the last other node asked lacks.
        let unreached = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let keys = std::mem::take(&mut self.keys);
        let run = async {
            for (i, (key, node)) in keys.into_iter().enumerate() {
                let Ok(permit) = self.slots.clone().acquire_owned().await else {
                    break;
                };
                let n = self.clients.len();
                // The writer, several times, then the next nodes once each.
                let mut through = vec![node; DELETE_ATTEMPTS as usize];
                through.extend((1..=DELETE_ELSEWHERE.min(n - 1)).map(|k| (node + k) % n));
                let clients = self.clients.clone();
                let (deleted, first_error) = (deleted.clone(), first_error.clone());
                let unreached = unreached.clone();
                tasks.spawn(async move {
                    for (attempt, &i) in through.iter().enumerate() {
                        let client = &clients[i];
                        match client.delete(&key).await {
                            // Absent on its writer: the write itself failed.
                            Ok(found) if found || i == node => {
                                deleted.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            // Absent elsewhere: it may not have got there.
                            Ok(_) => {
                                if attempt + 1 == through.len() {
                                    unreached.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) => {
                                first_error
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert_with(|| format!("{}: {e}", client.addr()));
                                let pause = Duration::from_millis(200) * (attempt as u32 + 1);
                                tokio::time::sleep(pause).await;
                            }
                        }
                    }
                    drop(permit);
                });
                if i % 50 == 0 {
                    progress.show(
                        self.clients.len(),
                        "deleting the run's keys",
                        i as f64 / total.max(1) as f64,
                        prefix,
                    );
                }
            }
            while tasks.join_next().await.is_some() {}
        };
        let _ = tokio::time::timeout(CLEANUP_LIMIT, run).await;
        let done = deleted.load(Ordering::Relaxed);
        let first = first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| "none answered".into());
        let unreached = unreached.load(Ordering::Relaxed);
        let only_there = match unreached {
            0 => String::new(),
            u => format!(
                "; {u} of them are on no other node asked, only (if at all) on a writer that did not answer"
            ),
        };
        (done < total).then(|| {
            format!(
                "cleanup: {} of {total} keys under {prefix} were not deleted within {} s{only_there} (first failure: {first})",
                total - done,
                CLEANUP_LIMIT.as_secs()
            )
        })
    }
}

/// Opens a watch of `prefix` on every node, all before the first write, so that no
/// arrival is missed; fails naming the node that refused.
pub(super) async fn open_watches(
    clients: &[AdminClient],
    prefix: &str,
) -> anyhow::Result<Vec<WatchStream>> {
    let mut set = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, prefix) = (c.clone(), prefix.to_string());
        set.spawn(async move {
            let r = c.watch(&prefix, None).await.with_context(|| {
                format!(
                    "admin API {}: cannot watch {prefix} (the bench sees writes arrive through \
                     GET /v1/watch, which nodes of this version serve)",
                    c.addr()
                )
            });
            (i, r)
        });
    }
    let mut out: Vec<Option<WatchStream>> = (0..clients.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.context("watch task")?;
        out[i] = Some(r?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Records the arrivals node `i`'s watch stream reports until aborted. A reset (the
/// node's ring or our queue overflowed) is followed by a re-listing, whose keys count as
/// arrived when it is read (later than they did: noted); a broken stream is reopened
/// from its last index, at most [`MAX_REOPEN`] times.
pub(super) async fn follow(
    client: AdminClient,
    i: usize,
    prefix: String,
    mut stream: WatchStream,
    tracker: Arc<Mutex<Tracker>>,
    notes: Arc<Mutex<Vec<String>>>,
) {
    let note = |m: String| notes.lock().unwrap_or_else(|p| p.into_inner()).push(m);
    let mut reopened = 0;
    loop {
        let from = match stream.next().await {
            Ok(Some(WatchLine::Change(c))) => {
                if !c.deleted {
                    lock(&tracker).arrived(&c.key, i, Instant::now());
                }
                continue;
            }
            Ok(Some(WatchLine::Heartbeat { .. })) => continue,
            Ok(Some(WatchLine::Reset { reason, .. })) => {
                note(format!(
                    "the watch on {} was reset ({}): arrivals after it are the re-listing's time",
                    client.addr(),
                    reason.as_str()
                ));
                match client.list_indexed(&prefix).await {
                    Ok(l) => {
                        let now = Instant::now();
                        let mut t = lock(&tracker);
                        for item in &l.items {
                            t.arrived(&item.key, i, now);
                        }
                        Some(l.index)
                    }
                    Err(e) => {
                        note(format!("re-listing {} failed: {e}", client.addr()));
                        return;
                    }
                }
            }
            Ok(None) | Err(_) => stream.index(),
        };
        reopened += 1;
        if reopened > MAX_REOPEN {
            note(format!(
                "the watch on {} failed {MAX_REOPEN} times: its later arrivals were not seen",
                client.addr()
            ));
            return;
        }
        stream = match client.watch(&prefix, from).await {
            Ok(s) => s,
            Err(e) => {
                note(format!(
                    "reopening the watch on {} failed: {e}",
                    client.addr()
                ));
                return;
            }
        };
    }
}

/// `--throughput` through admin APIs: each step's writes go to the nodes in turn, and
/// count once every node's watch has reported them.
pub(super) struct RemoteSteps<'a> {
    pub(super) writer: &'a mut Writer,
    pub(super) tracker: Arc<Mutex<Tracker>>,
    pub(super) prefix: &'a str,
}

impl StepLoad for RemoteSteps<'_> {
    async fn step(&mut self, rate: f64, count: usize, progress: &Progress) -> StepOutcome {
        let n = self.writer.clients.len();
        let errors_before = self.writer.errors().0;
        let prefix = self.prefix;
        let writer = &mut *self.writer;
        let issued_in = pace(
            rate,
            count,
            |k| writer.try_issue(format!("{prefix}tp/{rate}/{k:06}"), k % n),
            |made| {
                progress.show(
                    n,
                    "throughput",
                    made as f64 / count as f64,
                    &format!("{rate} w/s"),
                )
            },
        )
        .await;
        let tracker = &self.tracker;
        let everywhere = wait_until(
            GRACE,
            || {
                let t = lock(tracker);
                t.complete() == t.registered()
            },
            |_| {},
        )
        .await
        .is_some();
        // The step's answers, so that its failures are counted in it.
        self.writer.settle().await;
        let (errors, first_error) = self.writer.errors();
        StepOutcome {
            issued_in,
            errors: errors - errors_before,
            first_error,
            everywhere,
        }
    }
}
