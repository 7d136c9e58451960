//! Local writes: sets and deletes through the node's grant, and gossamer's own values.
//! A write enters the store at once and leaves the node when it is sealed: signed with
//! every other write made since the last seal ([`Engine::seal_writes`]), and sent with
//! them in shared datagrams.

use super::{tree, Engine, Event, Output, PushMode};
use crate::core::dissemination::Topic;
use crate::core::limiter::Traffic;
use crate::core::proto::Item;
use crate::core::state::{is_system_key, Entry, StateError, SYSTEM_PREFIX};
use crate::core::Now;

impl Engine {
    /// Sets `key` to `value`.
    pub fn set(&mut self, now: Now, key: &str, value: Vec<u8>) -> Result<Entry, StateError> {
        self.write(now, key, Some(value))
    }

    /// Deletes `key`; returns whether it held a live value.
    pub fn delete(&mut self, now: Now, key: &str) -> Result<bool, StateError> {
        if self.store.get(key).is_none() {
            return Ok(false);
        }
        self.write(now, key, None).map(|_| true)
    }

    fn write(&mut self, now: Now, key: &str, value: Option<Vec<u8>>) -> Result<Entry, StateError> {
        self.advance_clock(now);
        if is_system_key(key) {
            return Err(StateError::KeyControl {
                found: SYSTEM_PREFIX,
                at: 0,
            });
        }
        self.authorship
            .may_write(key)
            .map_err(StateError::Refused)?;
        self.write_any(now, key, value)
    }

    /// Publishes one of gossamer's own values (under [`SYSTEM_PREFIX`], outside any
    /// grant), such as this node's certificate chains.
    pub fn write_system(
        &mut self,
        now: Now,
        name: &str,
        value: Vec<u8>,
    ) -> Result<Entry, StateError> {
        self.advance_clock(now);
        self.write_any(now, &format!("{SYSTEM_PREFIX}{name}"), Some(value))
    }

    fn write_any(
        &mut self,
        now: Now,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, StateError> {
        let e = self.store.write(key, value, now.wall_ms)?;
        let full = self.authorship.note_unsealed(key, e.vv.get(self.id()));
        self.out.push_back(Output::Event(Event::Kv {
            entry: e.clone(),
            local: true,
            conflict: false,
        }));
        if full {
            // Writers faster than the driver seal their own full batch: the burst a
            // seal sends stays one batch, and writers feel the cost of what they send.
            self.seal_writes();
        }
        Ok(e)
    }

    /// Signs every local write not signed yet and disseminates them together. Runs
    /// before anything can leave the node (every input, every polled output, every
    /// drain of changes for persistence), so no unsigned write is sent or persisted.
    pub(crate) fn seal_writes(&mut self) {
        if !self.authorship.has_unsealed() {
            return;
        }
        let (sealed, signatures) = self.authorship.seal(&mut self.store);
        self.stats.write_signatures += signatures;
        if self.tree_mode() {
            let me = self.id().clone();
            let mut batches = tree::Batches::new();
            for e in &sealed {
                self.announce(e);
                self.tree_forward(&mut batches, e, &me);
            }
            self.send_tree_batches(batches);
        } else if self.cfg.push != PushMode::Off {
            let budget = self.delta_budget();
            let seqs: Vec<u64> = sealed
                .iter()
                .map(|e| {
                    self.queue.push(
                        Topic::Key(e.key.clone()),
                        Traffic::Fresh,
                        Item::Delta(e.clone()),
                        budget,
                    )
                })
                .collect();
            let peers = self.pick_local_peers(self.fanout(), None);
            self.push_to(&peers, None, &seqs);
        }
        if self.cfg.push != PushMode::Off {
            for e in &sealed {
                self.relay_to_other_dcs(e);
            }
        }
    }
}
