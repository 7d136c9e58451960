//! The writes the simulator tracks: each is followed until every live node holds it,
//! which gives the propagation times and the convergence properties of a run.

use super::*;

/// A write the simulator tracks until every live node holds it.
#[derive(Debug, Clone)]
pub struct TrackedWrite {
    /// Writer node index.
    pub node: usize,
    /// Key written.
    pub key: String,
    /// Dot of the write.
    pub dot: (NodeId, u64),
    /// Virtual time of the write (µs).
    pub at_us: u64,
    /// When every live node first held it (µs).
    pub done_us: Option<u64>,
    pub(super) have: Vec<u64>,
    /// Live nodes that do not hold it yet.
    pub(super) missing: usize,
}

impl TrackedWrite {
    /// True if `store` holds this write, what superseded it, or a collected delete over
    /// it ([`Store::holds_write`](crate::core::state::Store::holds_write)).
    pub fn held_by(&self, store: &crate::core::state::Store) -> bool {
        store.holds_write(&self.key, &self.dot.0, self.dot.1)
    }

    pub(super) fn has(&self, i: usize) -> bool {
        self.have[i / 64] & (1 << (i % 64)) != 0
    }
}

impl Sim {
    /// A write on node `node` now; it is tracked until every live node holds it.
    pub fn write(&mut self, node: usize, key: &str, value: Option<Vec<u8>>) {
        let now = self.now_of(node);
        let id = self.nodes[node].id.clone();
        self.ensure_lease(node);
        let fingerprint = durable::fingerprint(key, value.as_deref());
        let Some(e) = self.nodes[node].engine.as_mut() else {
            return;
        };
        // `issued`: the write took a new dot (a delete of an absent key does not).
        let (r, issued) = match value {
            Some(v) => (e.set(now, key, v).ok(), true),
            None => {
                let d = e.delete(now, key);
                let issued = matches!(d, Ok(true));
                (d.ok().and_then(|_| e.store().entry(key).cloned()), issued)
            }
        };
        if let Some(entry) = r {
            let dot = (id.clone(), entry.vv.get(&id));
            if issued {
                self.issued_dot(node, dot.clone(), fingerprint);
                if let (Some(o), Some(e)) = (self.oracle.as_mut(), self.nodes[node].engine.as_ref())
                {
                    o.record(entry, e.store().context());
                }
            }
            let mut have = vec![0u64; self.words];
            have[node / 64] |= 1 << (node % 64);
            let missing = self.live_nodes() - 1;
            self.writes.push(TrackedWrite {
                node,
                key: key.to_string(),
                dot,
                at_us: self.now_us,
                done_us: (missing == 0).then_some(self.now_us),
                have,
                missing,
            });
            self.track_write_dcs(self.now_us);
            if missing > 0 {
                self.pending_writes.push(self.writes.len() - 1);
                self.write_by_dot.insert(
                    self.writes[self.writes.len() - 1].dot.clone(),
                    self.writes.len() - 1,
                );
            }
        }
        self.drain(node);
    }

    /// Marks which live nodes hold each pending write; completes writes every live node
    /// holds. Catches what events do not show (e.g. a context join after a sync).
    pub(super) fn sweep_writes(&mut self) {
        for i in 0..self.nodes.len() {
            self.mark_node(i);
        }
    }

    /// Marks the writes with these dots as held by node `i`.
    pub(super) fn mark_dots(&mut self, i: usize, dots: &[(NodeId, u64)]) {
        let now = self.now_us;
        let mut done = false;
        for d in dots {
            let Some(&w) = self.write_by_dot.get(d) else {
                continue;
            };
            let tw = &mut self.writes[w];
            if tw.done_us.is_none() && !tw.has(i) {
                tw.have[i / 64] |= 1 << (i % 64);
                topology::note_arrival(&mut self.dc_arrive, self.topo.as_ref(), w, i, now);
                tw.missing -= 1;
                if tw.missing == 0 {
                    tw.done_us = Some(now);
                    done = true;
                }
            }
        }
        if done {
            let writes = &self.writes;
            self.pending_writes.retain(|&w| writes[w].missing > 0);
        }
    }

    /// Marks the pending writes live node `i` now holds (called after it changed).
    pub(super) fn mark_node(&mut self, i: usize) {
        let Some(e) = self.nodes[i].engine.as_ref() else {
            return;
        };
        let store = e.store();
        let now = self.now_us;
        let writes = &mut self.writes;
        let (arrive, topo) = (&mut self.dc_arrive, self.topo.as_ref());
        self.pending_writes.retain(|&w| {
            let tw = &mut writes[w];
            if !tw.has(i) && tw.held_by(store) {
                tw.have[i / 64] |= 1 << (i % 64);
                topology::note_arrival(arrive, topo, w, i, now);
                tw.missing -= 1;
                if tw.missing == 0 {
                    tw.done_us = Some(now);
                }
            }
            tw.missing > 0
        });
    }

    /// Writes (of all ever made) that some live node does not hold now. Exact, and
    /// O(writes · nodes): for end-of-run checks.
    pub fn writes_missing_now(&self) -> usize {
        self.writes
            .iter()
            .filter(|w| {
                self.nodes
                    .iter()
                    .any(|n| n.engine.as_ref().is_some_and(|e| !w.held_by(e.store())))
            })
            .count()
    }

    /// Keeps every acknowledged write from now on, for [`Sim::live_view_diffs`].
    pub fn track_reference(&mut self) {
        self.oracle.get_or_insert_with(oracle::Oracle::default);
    }

    /// How each live node's live keys differ from the reference of every acknowledged
    /// write (`None` for nodes that are down; empty without [`Sim::track_reference`]).
    /// Meaningful once the run has settled, and only where no acknowledged write can be
    /// lost (sync durability, no restart without state of a node holding writes no one
    /// else has).
    pub fn live_view_diffs(&self) -> Vec<Option<LiveDiff>> {
        let Some(o) = self.oracle.as_ref() else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .map(|n| n.engine.as_ref().map(|e| o.diff(e.store())))
            .collect()
    }

    /// Keys the reference expects live on every replica.
    pub fn reference_live_keys(&self) -> usize {
        self.oracle.as_ref().map_or(0, oracle::Oracle::live_len)
    }

    /// True when every live node holds the same live entries.
    ///
    /// Entries are compared by the write they hold: key, value, writer, stamp and the
    /// writer's dot. Tombstones are left out: each node collects them on its own
    /// schedule (its clock, its collection round), so replicas that agree on every live
    /// key may still differ in the deletes they keep. Version vectors are left out too:
    /// they may differ in dots of collected history (a key deleted, collected and written
    /// again starts a new vector on the nodes that collected, while a node that still
    /// held an old copy merges that copy's dead, stable dots into it); every such dot is
    /// seen everywhere, so no exchange carries it (ARCHITECTURE.md, "Tombstone collection
    /// at causal stability").
    pub fn stores_identical(&self) -> bool {
        use crate::core::state::Entry;
        let same = |a: &Entry, b: &Entry| {
            a.key == b.key
                && a.value == b.value
                && a.writer == b.writer
                && a.hlc == b.hlc
                && a.vv.get(&a.writer) == b.vv.get(&b.writer)
        };
        let live = |e: &Engine| -> Vec<Entry> {
            e.store()
                .iter()
                .filter(|x| !x.is_tombstone())
                .cloned()
                .collect()
        };
        let mut first: Option<Vec<Entry>> = None;
        for n in &self.nodes {
            let Some(e) = n.engine.as_ref() else { continue };
            let mine = live(e);
            match &first {
                None => first = Some(mine),
                Some(f) => {
                    if f.len() != mine.len() || !f.iter().zip(mine.iter()).all(|(a, b)| same(a, b))
                    {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Writes not yet held by every live node.
    pub fn pending_writes(&self) -> usize {
        self.pending_writes.len()
    }
}
