//! The node's key-value API: local writes (durable as the durability mode requires),
//! reads of the live state, indexed listings and watches, and the one place that feeds
//! the change log from the engine's outputs.

use super::*;
use crate::core::state::is_system_key;

impl Node {
    /// Sets a key; the write is pushed to peers at once.
    ///
    /// With a data directory and `sync` durability this returns only once the write is
    /// committed to disk, and blocks the calling thread until then (about one fsync;
    /// concurrent writes share one): from async code call it in `spawn_blocking`.
    pub fn set(&self, key: &str, value: Vec<u8>) -> Result<(), NodeError> {
        let mut value = Some(value);
        self.write(|e, now| e.set(now, key, value.take().unwrap_or_default()))?;
        Ok(())
    }

    /// Deletes a key; returns whether it held a live value. Durable like [`Node::set`].
    pub fn delete(&self, key: &str) -> Result<bool, NodeError> {
        self.write(|e, now| e.delete(now, key))
    }

    /// Runs a local write and, with a data directory, makes it durable as the
    /// durability mode requires. A write that would pass the durable dot lease waits
    /// for the lease extension's commit first (rare: once per 2^19 writes at most).
    fn write<R>(
        &self,
        mut f: impl FnMut(&mut Engine, Now) -> Result<R, crate::core::state::StateError>,
    ) -> Result<R, NodeError> {
        self.check_running()?;
        let Some(c) = &self.inner.persist else {
            return Ok(self.with_engine(|e, now| f(e, now))?);
        };
        for _ in 0..8 {
            let done = self.with_engine(|e, now| {
                if !e.lease_ready() {
                    return Err(e.change_seq());
                }
                Ok((f(e, now), e.change_seq()))
            });
            match done {
                Ok((r, seq)) => {
                    let r = r?;
                    if self.inner.cfg.durability == Durability::Sync {
                        c.wait_durable(seq)?;
                    } else if let Some(e) = c.failure() {
                        // Relaxed: the write is not waited for, but a store that no
                        // longer commits must not go unnoticed.
                        return Err(e.into());
                    }
                    c.acked();
                    return Ok(r);
                }
                Err(seq) => c.wait_durable(seq)?,
            }
        }
        Err(NodeError::Store(
            crate::node::persist::PersistError::Failed(
                "the dot lease could not be extended".into(),
            ),
        ))
    }

    /// The live value of a key with its metadata.
    pub fn get(&self, key: &str) -> Option<KvEntry> {
        let e = self.inner.engine();
        e.store()
            .entry(key)
            .filter(|x| !x.is_tombstone() && !is_system_key(&x.key))
            .map(to_kv)
    }

    /// The replicated entry of `key` as stored (tombstone, version vector, signatures).
    pub fn entry(&self, key: &str) -> Option<crate::core::state::Entry> {
        self.inner.engine().store().entry(key).cloned()
    }

    /// Every write this node has seen, as (writer, dot ranges).
    pub fn context(&self) -> crate::core::state::CausalContext {
        self.inner.engine().store().context().clone()
    }

    /// Live keys starting with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<KvEntry> {
        self.list_page(prefix, None, usize::MAX)
    }

    /// At most `limit` live keys starting with `prefix` that sort after `after`, in key
    /// order: one page of a listing.
    pub fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KvEntry> {
        let e = self.inner.engine();
        e.store()
            .scan_prefix_after(prefix, after)
            .filter(|x| !is_system_key(&x.key))
            .take(limit)
            .map(to_kv)
            .collect()
    }
}

impl Node {
    /// One page of a listing, like [`Node::list_page`], and the change index it is
    /// consistent with: it reflects every change up to that index and none after.
    pub fn list_page_indexed(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<KvEntry>, u64) {
        let (page, index) = {
            let mut e = self.inner.engine();
            // Changes applied but not yet taken from the engine are logged first, so
            // the log's index covers everything the page shows; the driver carries
            // their outputs out.
            self.inner.log_pending(&mut e);
            let page = e
                .store()
                .scan_prefix_after(prefix, after)
                .filter(|x| !is_system_key(&x.key))
                .take(limit)
                .map(to_kv)
                .collect();
            (page, self.inner.changes.index())
        };
        self.inner.wake.notify_one();
        (page, index)
    }

    /// The latest change index: every key-value change this node applied up to now has
    /// an index at or below it (see [`crate::node::watch`]).
    pub fn change_index(&self) -> u64 {
        self.inner.changes.index()
    }

    /// Opens a watch of the keys starting with `prefix`, from `index` (none: from now).
    pub fn watch(
        &self,
        prefix: &str,
        index: Option<u64>,
    ) -> Result<crate::node::watch::Watch, crate::node::watch::WatchError> {
        self.inner.changes.watch(prefix, index)
    }

    /// The change log's counters.
    pub fn watch_stats(&self) -> &crate::node::watch::WatchStats {
        self.inner.changes.stats()
    }
}

/// Taking the engine's outputs and logging the key-value changes among them: the one
/// place that feeds the change log (`crate::node::watch`).
impl Inner {
    /// Every output the engine has ready (after those a listing took before), each
    /// key-value change logged for watches on the way: under the engine's lock, so the
    /// log's order is the store's.
    pub(super) fn take_outputs(&self, e: &mut Engine) -> Vec<Output> {
        let mut outs = {
            // A listing's outputs come first, in their own buffer (which leaves with them,
            // however large it grew); else the spare one.
            let mut taken = self.taken_outputs();
            if taken.is_empty() {
                std::mem::take(&mut *lock(&self.spare))
            } else {
                std::mem::take(&mut *taken)
            }
        };
        self.log_outputs(e, &mut outs);
        outs
    }

    /// Keeps the driver's emptied output buffer for the next pump, unless a burst made
    /// it larger than [`MAX_SPARE_OUTPUTS`].
    pub(super) fn give_back(&self, mut outs: Vec<Output>) {
        outs.clear();
        if outs.capacity() <= MAX_SPARE_OUTPUTS {
            *lock(&self.spare) = outs;
        }
    }

    /// Logs the changes of every output the engine has ready and keeps the outputs for
    /// the driver: what a listing does before it reads the store.
    fn log_pending(&self, e: &mut Engine) {
        let mut taken = self.taken_outputs();
        self.log_outputs(e, &mut taken);
    }

    fn log_outputs(&self, e: &mut Engine, into: &mut Vec<Output>) {
        let wall = wall_ms();
        let from = into.len();
        e.drain_outputs(into);
        for o in &into[from..] {
            self.changes.record(o, wall);
        }
    }

    fn taken_outputs(&self) -> MutexGuard<'_, Vec<Output>> {
        lock(&self.taken)
    }
}

/// The largest output buffer kept between pumps (outputs, a few MB at most).
const MAX_SPARE_OUTPUTS: usize = 16 * 1024;

fn lock(m: &Mutex<Vec<Output>>) -> MutexGuard<'_, Vec<Output>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_kv(e: &crate::core::state::Entry) -> KvEntry {
    KvEntry {
        key: e.key.clone(),
        value: e.value.clone().unwrap_or_default(),
        writer: e.writer.clone(),
        hlc_ms: e.hlc.ms,
        hlc_lc: e.hlc.lc,
        version: e.vv.iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}
