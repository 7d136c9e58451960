//! The committer: one thread that makes the engine's changes durable. Writers ask it
//! for a commit and wait; it drains every change made so far (a brief engine lock),
//! writes them in one transaction, and wakes every writer the commit covers, so
//! concurrent writes share one fsync (group commit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{DurableStore, PersistError};
use crate::core::Engine;

/// Counters of the committer.
#[derive(Debug, Default)]
pub struct PersistStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Commits that forced the data to disk (every commit is durable: one fsync each).
    pub fsyncs: AtomicU64,
    /// Local writes acknowledged to their callers after their commit (sync) or at once
    /// (relaxed).
    pub writes_acked: AtomicU64,
    /// Entries written or removed by commits.
    pub entries_written: AtomicU64,
    /// Time spent committing (µs).
    pub commit_us: AtomicU64,
    /// Commits that failed (after the first, nothing more is committed).
    pub failures: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Highest change sequence number a writer waits for.
    wanted: u64,
    /// Every change up to this sequence number is durable.
    committed: u64,
    /// Set once a commit failed.
    failed: Option<String>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    stats: PersistStats,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle of the committer thread.
pub(crate) struct Committer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock_engine(e: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    e.lock().unwrap_or_else(|p| p.into_inner())
}

impl Committer {
    /// Starts the thread. It commits when a writer asks, and otherwise whenever
    /// something changed and `period` has passed since its last commit (entries from
    /// peers, or every write in relaxed mode). It stops when asked or once the engine
    /// is gone.
    pub(crate) fn start(
        store: DurableStore,
        engine: Weak<Mutex<Engine>>,
        period: Duration,
    ) -> Result<Self, PersistError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            stats: PersistStats::default(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("gossamer-commit".into())
            .spawn(move || run(s, store, engine, period))
            .map_err(|e| PersistError::Io {
                path: Default::default(),
                reason: format!("cannot start the committer thread: {e}"),
            })?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Blocks until every change up to `seq` is durable.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<(), PersistError> {
        let mut st = self.shared.lock();
        if st.committed >= seq {
            return Ok(());
        }
        st.wanted = st.wanted.max(seq);
        self.shared.work.notify_one();
        loop {
            if let Some(f) = &st.failed {
                return Err(PersistError::Failed(f.clone()));
            }
            if st.committed >= seq {
                return Ok(());
            }
            if st.stop {
                return Err(PersistError::Failed("the node is shutting down".into()));
            }
            st = self.shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The error of a failed commit, if one failed (nothing is persisted since).
    pub(crate) fn failure(&self) -> Option<PersistError> {
        self.shared.lock().failed.clone().map(PersistError::Failed)
    }

    /// Counts a write acknowledged to its caller.
    pub(crate) fn acked(&self) {
        self.shared
            .stats
            .writes_acked
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &PersistStats {
        &self.shared.stats
    }

    /// Commits what is left and stops the thread (blocks until it has).
    pub(crate) fn close(&self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn run(
    shared: Arc<Shared>,
    mut store: DurableStore,
    engine: Weak<Mutex<Engine>>,
    period: Duration,
) {
    let mut last = Instant::now();
    loop {
        let stop = {
            let mut st = shared.lock();
            while !st.stop && st.wanted <= st.committed {
                let waited = last.elapsed();
                if waited >= period {
                    break;
                }
                st = shared
                    .work
                    .wait_timeout(st, period - waited)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            st.stop
        };
        let Some(engine) = engine.upgrade() else {
            break;
        };
        let (seq, changes) = {
            let mut e = lock_engine(&engine);
            let seq = e.change_seq();
            (seq, e.has_changes().then(|| e.take_changes()))
        };
        last = Instant::now();
        if let Some(c) = changes {
            let t = Instant::now();
            match store.commit(&c) {
                Ok(w) => {
                    let s = &shared.stats;
                    s.commits.fetch_add(1, Ordering::Relaxed);
                    s.fsyncs.fetch_add(1, Ordering::Relaxed);
                    s.entries_written.fetch_add(w.entries, Ordering::Relaxed);
                    s.commit_us
                        .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if let Some(end) = c.store.lease_end {
                        // Only now may dots up to `end` be issued.
                        lock_engine(&engine).lease_durable(end);
                    }
                }
                Err(err) => {
                    shared.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %err, path = %store.path().display(),
                        "commit failed: writes are no longer persisted; restart the node");
                    shared.lock().failed = Some(err.to_string());
                    shared.done.notify_all();
                    return;
                }
            }
        }
        drop(engine);
        {
            let mut st = shared.lock();
            st.committed = st.committed.max(seq);
        }
        shared.done.notify_all();
        if stop {
            break;
        }
    }
    // Writers still waiting see `stop` (or their seq committed) and return.
    shared.lock().stop = true;
    shared.done.notify_all();
}
