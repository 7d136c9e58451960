//! The data directory's store: one redb file with an entries table (key → CBOR entry)
//! and a meta table (node, cluster, schema, dot lease end, incarnation, HLC, tombstone
//! bookkeeping, causal context). Every commit is one write transaction with redb's
//! immediate durability: when `commit` returns, the change is on disk.

use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::PersistError;
use crate::core::engine::{Changes, Persisted};
use crate::core::state::{CausalContext, Entry, Fence, Hlc, Snapshot};
use crate::core::NodeId;

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "gossamer.redb";
/// Layout version written to the meta table; a newer one is refused.
const SCHEMA: u64 = 1;
/// A progress line is logged every this many entries loaded.
const PROGRESS_EVERY: u64 = 100_000;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The open store of a node.
pub(crate) struct DurableStore {
    db: Database,
    path: PathBuf,
    buf: Vec<u8>,
}

/// What one commit wrote.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Written {
    /// Entries inserted or replaced, plus keys removed.
    pub entries: u64,
}

fn cbor<T: serde::Serialize>(v: &T, buf: &mut Vec<u8>) {
    buf.clear();
    // Writing CBOR into a Vec cannot fail for these plain data types.
    let _ = ciborium::into_writer(v, &mut *buf);
}

/// Runs `f`, turning a panic into `Err(message)` without printing it. Only used while
/// the node starts, before it runs anything else that could panic meanwhile.
fn quietly_catching_panics<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal assertion".into())
    })
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

impl DurableStore {
    /// Opens (or creates) the store of node `node` in cluster `cluster` in `dir`, which
    /// [`super::prepare_dir`] has checked. Returns what it holds, `None` for a new
    /// store (after migrating a `state.cbor` of an earlier version, if there is one).
    pub(crate) fn open(
        dir: &Path,
        node: &NodeId,
        cluster: &str,
        wall_ms: u64,
    ) -> Result<(Self, Option<Persisted>), PersistError> {
        let path = dir.join(STORE_FILE);
        let corrupt = |reason: String| PersistError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file = super::dir::private_file(&path).map_err(|e| PersistError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut builder = Database::builder();
        builder.set_repair_callback(|s| {
            if s.progress() == 0.0 {
                tracing::info!("store: repairing after an unclean shutdown");
            }
        });
        // redb 2.x asserts on some damaged files (a truncated one) instead of returning
        // an error: such a panic is a damaged store too, not a crash of the node.
        let opened = quietly_catching_panics(|| builder.create_file(file))
            .map_err(|msg| corrupt(format!("redb refused the file: {msg}")))?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => PersistError::Locked { path: path.clone() },
            other => corrupt(other.to_string()),
        })?;
        let mut store = Self {
            db,
            path: path.clone(),
            buf: Vec::new(),
        };
        let loaded = quietly_catching_panics(|| store.load(node, cluster))
            .map_err(|msg| corrupt(format!("redb failed reading it: {msg}")))?;
        match loaded? {
            Some(p) => Ok((store, Some(p))),
            None => {
                let migrated = super::migrate::from_state_cbor(dir, node, wall_ms)?;
                store.init(node, cluster, migrated.as_ref())?;
                if migrated.is_some() {
                    super::migrate::retire_state_cbor(dir)?;
                }
                Ok((store, migrated))
            }
        }
    }

    fn io(&self, e: impl std::fmt::Display) -> PersistError {
        PersistError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> PersistError {
        PersistError::Corrupt {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Reads the whole store: O(state), one progress line per 100,000 entries.
    fn load(&self, node: &NodeId, cluster: &str) -> Result<Option<Persisted>, PersistError> {
        let txn = self.db.begin_read().map_err(|e| self.corrupt(e))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.corrupt(e)),
        };
        let get = |k: &str| -> Result<Option<Vec<u8>>, PersistError> {
            Ok(meta
                .get(k)
                .map_err(|e| self.corrupt(e))?
                .map(|v| v.value().to_vec()))
        };
        let Some(found_node) = get("node")? else {
            return Ok(None);
        };
        let found_node = String::from_utf8_lossy(&found_node).to_string();
        let found_cluster =
            String::from_utf8_lossy(&get("cluster")?.unwrap_or_default()).to_string();
        if found_node != node.as_str() || found_cluster != cluster {
            return Err(PersistError::Foreign {
                path: self.path.clone(),
                found_node,
                found_cluster,
                node: node.to_string(),
                cluster: cluster.to_string(),
            });
        }
        let num = |k: &str| -> Result<u64, PersistError> {
            match get(k)? {
                None => Ok(0),
                Some(b) => u64_of(&b).ok_or_else(|| self.corrupt(format!("meta {k} is not a u64"))),
            }
        };
        let schema = num("schema")?;
        if schema > SCHEMA {
            return Err(self.corrupt(format!(
                "layout version {schema} is newer than this binary's {SCHEMA}; run a newer gossamer"
            )));
        }
        let decode_err = |k: &str, e: ciborium::de::Error<std::io::Error>| {
            self.corrupt(format!("meta {k}: {e}"))
        };
        let ctx: CausalContext = match get("ctx")? {
            None => CausalContext::new(),
            Some(b) => ciborium::from_reader(&b[..]).map_err(|e| decode_err("ctx", e))?,
        };
        let hlc: Hlc = match get("hlc")? {
            None => Hlc::default(),
            Some(b) => ciborium::from_reader(&b[..]).map_err(|e| decode_err("hlc", e))?,
        };
        let lease_end = num("lease_end")?;
        let incarnation = num("incarnation")?;
        // Stores written before collection at causal stability have no fence (and hold
        // `gc_horizon_ms`/`last_sync_ms`, no longer read): an empty one is right for them.
        let fence: Fence = match get("fence")? {
            None => Fence::default(),
            Some(b) => ciborium::from_reader(&b[..]).map_err(|e| decode_err("fence", e))?,
        };
        let table = txn.open_table(ENTRIES).map_err(|e| self.corrupt(e))?;
        let total = table.len().map_err(|e| self.corrupt(e))?;
        let started = Instant::now();
        let mut entries = Vec::with_capacity(total as usize);
        for item in table.iter().map_err(|e| self.corrupt(e))? {
            let (k, v) = item.map_err(|e| self.corrupt(e))?;
            let e: Entry = ciborium::from_reader(v.value())
                .map_err(|e| self.corrupt(format!("entry {:?}: {e}", k.value())))?;
            entries.push(e);
            if entries.len() as u64 % PROGRESS_EVERY == 0 {
                tracing::info!(
                    loaded = entries.len(),
                    total,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loading the store"
                );
            }
        }
        tracing::info!(
            entries = entries.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            path = %self.path.display(),
            "store loaded"
        );
        Ok(Some(Persisted {
            store: Snapshot {
                node: node.clone(),
                // Every dot below the persisted lease end may have been issued.
                counter: lease_end,
                clock: hlc,
                ctx,
                fence,
                entries,
            },
            incarnation,
        }))
    }

    /// Writes the identity of a new store, and what a migrated `state.cbor` held.
    fn init(
        &mut self,
        node: &NodeId,
        cluster: &str,
        migrated: Option<&Persisted>,
    ) -> Result<(), PersistError> {
        let mut txn = self.db.begin_write().map_err(|e| self.io(e))?;
        txn.set_durability(redb::Durability::Immediate);
        {
            let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.io(e))?;
            let put = |meta: &mut redb::Table<&str, &[u8]>, k: &str, v: &[u8]| {
                meta.insert(k, v).map(|_| ())
            };
            put(&mut meta, "schema", &SCHEMA.to_le_bytes()).map_err(|e| self.io(e))?;
            put(&mut meta, "node", node.as_str().as_bytes()).map_err(|e| self.io(e))?;
            put(&mut meta, "cluster", cluster.as_bytes()).map_err(|e| self.io(e))?;
            if let Some(p) = migrated {
                let s = &p.store;
                let mut buf = Vec::new();
                for e in &s.entries {
                    cbor(e, &mut buf);
                    entries
                        .insert(e.key.as_str(), buf.as_slice())
                        .map_err(|e| self.io(e))?;
                }
                cbor(&s.ctx, &mut buf);
                put(&mut meta, "ctx", &buf).map_err(|e| self.io(e))?;
                cbor(&s.clock, &mut buf);
                put(&mut meta, "hlc", &buf).map_err(|e| self.io(e))?;
                cbor(&s.fence, &mut buf);
                put(&mut meta, "fence", &buf).map_err(|e| self.io(e))?;
                for (k, v) in [("lease_end", s.counter), ("incarnation", p.incarnation)] {
                    put(&mut meta, k, &v.to_le_bytes()).map_err(|e| self.io(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Applies `c` in one write transaction and returns once it is durable. Costs
    /// O(changed entries + context), independent of the state's size.
    pub(crate) fn commit(&mut self, c: &Changes) -> Result<Written, PersistError> {
        let mut txn = self.db.begin_write().map_err(|e| self.io(e))?;
        txn.set_durability(redb::Durability::Immediate);
        let mut written = Written::default();
        {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.io(e))?;
            let s = &c.store;
            for k in &s.removed {
                entries.remove(k.as_str()).map_err(|e| self.io(e))?;
                written.entries += 1;
            }
            for e in &s.upserts {
                cbor(e, &mut self.buf);
                entries
                    .insert(e.key.as_str(), self.buf.as_slice())
                    .map_err(|e| self.io(e))?;
                written.entries += 1;
            }
            let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
            if let Some(ctx) = &s.ctx {
                cbor(ctx, &mut self.buf);
                meta.insert("ctx", self.buf.as_slice())
                    .map_err(|e| self.io(e))?;
            }
            if let Some(end) = s.lease_end {
                // The lease end only grows: it bounds every dot ever issued.
                let old = meta
                    .get("lease_end")
                    .map_err(|e| self.io(e))?
                    .and_then(|v| u64_of(v.value()))
                    .unwrap_or(0);
                meta.insert("lease_end", &end.max(old).to_le_bytes()[..])
                    .map_err(|e| self.io(e))?;
            }
            if let Some(inc) = c.incarnation {
                meta.insert("incarnation", &inc.to_le_bytes()[..])
                    .map_err(|e| self.io(e))?;
            }
            cbor(&s.hlc, &mut self.buf);
            meta.insert("hlc", self.buf.as_slice())
                .map_err(|e| self.io(e))?;
            if let Some(fence) = &s.fence {
                cbor(fence, &mut self.buf);
                meta.insert("fence", self.buf.as_slice())
                    .map_err(|e| self.io(e))?;
            }
        }
        txn.commit().map_err(|e| self.io(e))?;
        Ok(written)
    }

    /// The store's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
