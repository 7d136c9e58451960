//! The simulator's data directory: a per-node durable image that changes only at
//! simulated commits, so a crash loses exactly what the durability mode allows.

use std::collections::BTreeMap;

use crate::core::engine::{Changes, Persisted};
use crate::core::state::{CausalContext, Entry, Fence, Hlc, Snapshot};
use crate::core::NodeId;

/// How simulated nodes persist their state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SimDurability {
    /// No data directory: a restart "keeping its state" starts empty.
    None,
    /// Every local write is committed at once (before it is acknowledged); entries
    /// from peers are committed every `PEER_COMMIT_US`.
    #[default]
    Sync,
    /// Everything is committed every `interval_us`; a crash loses what came after the
    /// last commit.
    Relaxed {
        /// Time between commits (µs).
        interval_us: u64,
    },
}

/// With `Sync`, how often entries from peers are committed (as the runtime does).
pub const PEER_COMMIT_US: u64 = 100_000;

impl SimDurability {
    /// Time between periodic commits (none without a data directory).
    pub fn period_us(&self) -> Option<u64> {
        match self {
            Self::None => None,
            Self::Sync => Some(PEER_COMMIT_US),
            Self::Relaxed { interval_us } => Some(*interval_us),
        }
    }
}

/// What a node's data directory holds: the sum of its committed changes.
#[derive(Debug, Clone)]
pub(crate) struct DurableImage {
    node: NodeId,
    entries: BTreeMap<String, Entry>,
    ctx: CausalContext,
    lease_end: u64,
    incarnation: u64,
    hlc: Hlc,
    fence: Fence,
}

impl DurableImage {
    /// An empty data directory of `node`.
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            entries: BTreeMap::new(),
            ctx: CausalContext::new(),
            lease_end: 0,
            incarnation: 0,
            hlc: Hlc::default(),
            fence: Fence::default(),
        }
    }

    /// One commit: the same effect `DurableStore::commit` has on disk.
    pub(crate) fn apply(&mut self, c: &Changes) {
        let s = &c.store;
        for k in &s.removed {
            self.entries.remove(k);
        }
        for e in &s.upserts {
            self.entries.insert(e.key.clone(), e.clone());
        }
        if let Some(ctx) = &s.ctx {
            self.ctx = ctx.clone();
        }
        if let Some(end) = s.lease_end {
            self.lease_end = self.lease_end.max(end);
        }
        if let Some(inc) = c.incarnation {
            self.incarnation = inc;
        }
        self.hlc = s.hlc;
        if let Some(fence) = &s.fence {
            self.fence = fence.clone();
        }
    }

    /// What a restart loads (`None` for a directory nothing was committed to).
    pub(crate) fn to_persisted(&self) -> Option<Persisted> {
        if self.lease_end == 0 {
            return None;
        }
        Some(Persisted {
            store: Snapshot {
                node: self.node.clone(),
                counter: self.lease_end,
                clock: self.hlc,
                ctx: self.ctx.clone(),
                fence: self.fence.clone(),
                entries: self.entries.values().cloned().collect(),
            },
            incarnation: self.incarnation,
        })
    }
}

/// A hash of a write's content, to tell a reissued dot from a replayed one.
pub(crate) fn fingerprint(key: &str, value: Option<&[u8]>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    key.bytes().for_each(&mut eat);
    match value {
        None => eat(0),
        Some(v) => {
            eat(1);
            v.iter().copied().for_each(&mut eat);
        }
    }
    h
}

impl super::Sim {
    /// Sets how nodes persist; call before the run starts (default: sync).
    pub fn set_durability(&mut self, d: SimDurability) {
        self.durability = d;
    }

    /// How nodes persist.
    pub fn durability(&self) -> SimDurability {
        self.durability
    }

    /// A node just started: with a data directory, its incarnation and first dot lease
    /// are committed before it sends anything (as `Node::start` does).
    pub(super) fn start_persistence(&mut self, i: usize) {
        if self.durability == SimDurability::None {
            return;
        }
        let n = &mut self.nodes[i];
        if n.image.is_none() {
            n.image = Some(DurableImage::new(n.id.clone()));
        }
        if let Some(e) = n.engine.as_mut() {
            e.enable_persistence(crate::core::engine::DOT_LEASE_BLOCK);
        }
        self.commit(i);
        self.nodes[i].next_commit_us = self.now_us + self.durability.period_us().unwrap_or(0);
    }

    /// One simulated commit of node `i`: its changes reach its durable image.
    pub(super) fn commit(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let (Some(e), Some(img)) = (n.engine.as_mut(), n.image.as_mut()) else {
            return;
        };
        if !e.has_changes() {
            return;
        }
        let c = e.take_changes();
        img.apply(&c);
        if let Some(end) = c.store.lease_end {
            e.lease_durable(end);
        }
        self.stats.commits += 1;
    }

    /// Commits node `i`'s changes when its period has passed (entries from peers; every
    /// write in relaxed mode).
    pub(super) fn periodic_commit(&mut self, i: usize) {
        let Some(period) = self.durability.period_us() else {
            return;
        };
        if self.now_us >= self.nodes[i].next_commit_us {
            self.commit(i);
            self.nodes[i].next_commit_us = self.now_us + period;
        }
    }

    /// Before a local write: a write past the durable dot lease waits for the
    /// extension's commit (instant here).
    pub(super) fn ensure_lease(&mut self, i: usize) {
        let ready = self.nodes[i]
            .engine
            .as_mut()
            .is_none_or(|e| e.lease_ready());
        if !ready {
            self.commit(i);
        }
    }

    /// After a local write of `dot`: checks that the dot was never issued with other
    /// content, commits it with sync durability and counts it acknowledged.
    pub(super) fn issued_dot(&mut self, i: usize, dot: (NodeId, u64), fingerprint: u64) {
        match self.issued.get(&dot) {
            Some(&f) if f != fingerprint => self.stats.dots_reused += 1,
            _ => {
                self.issued.insert(dot, fingerprint);
            }
        }
        if self.durability == SimDurability::Sync {
            self.commit(i);
        }
        self.stats.writes_acked += 1;
    }
}
