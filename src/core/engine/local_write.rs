//! Local writes: sets and deletes through the node's grant and signature, and
//! gossamer's own values; each is disseminated at once.

use super::{tree, Engine, Event, Output};
use crate::core::dissemination::{Class, Topic};
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
        self.tick(now);
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
        self.tick(now);
        self.write_any(now, &format!("{SYSTEM_PREFIX}{name}"), Some(value))
    }

    fn write_any(
        &mut self,
        now: Now,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, StateError> {
        let authorship = &mut self.authorship;
        let e = self
            .store
            .write_signed(key, value, now.wall_ms, |b| authorship.sign(b))?;
        self.out.push_back(Output::Event(Event::Kv {
            entry: e.clone(),
            local: true,
            conflict: false,
        }));
        if self.tree_mode() {
            self.announce(&e);
            let mut batches = tree::Batches::new();
            let me = self.id().clone();
            self.tree_forward(&mut batches, &e, &me);
            self.send_tree_batches(batches);
            self.relay_to_other_dcs(&e);
        } else if self.cfg.push_deltas {
            let budget = self.delta_budget();
            let seq = self.queue.push(
                Topic::Key(e.key.clone()),
                Class::Delta,
                Item::Delta(e.clone()),
                budget,
            );
            let peers = self.pick_local_peers(self.fanout(), None);
            self.push_to(&peers, None, &[seq]);
            self.relay_to_other_dcs(&e);
        }
        Ok(e)
    }
}
