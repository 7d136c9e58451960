//! Repair rounds: while the transport reports loss, the ids of new updates go out within
//! a quarter of the graft timeout instead of at the next gossip round, and every child
//! we pushed an update to down the tree is told its id as well.
//!
//! Loss makes the tree miss members: at 10 % loss per datagram a member four hops down
//! gets its tree copy two times in three, so nearly every write leaves some members to
//! lazy repair, and a write is everywhere only when the last of them has heard its id,
//! waited the graft timeout and grafted. Heard at the next gossip round, that is up to a
//! whole `gossip_interval_ms` (200 ms) late, and a member no random round happens to
//! tell waits for anti-entropy. So under loss:
//!
//! - a new id pulls the next gossip round to a quarter of the graft timeout away, or to a
//!   graft timeout after the last round if that is later (so at most one pulled round
//!   per graft timeout; none if the graft timeout is as long as the gossip interval);
//! - each child we forwarded a tree copy to is owed that copy's id, sent to it in that
//!   round: the root of every subtree a lost tree datagram cut off is told by its parent,
//!   grafts, and heals the subtree below it (`heal_subtree`), whatever the random rounds
//!   reach;
//! - an id told by our own parent in the writer's tree is grafted after a retry's wait,
//!   not the whole graft timeout (`Engine::on_ihave`).
//!
//! Without loss the tree reaches every member and these rounds would only add datagrams
//! (three times as many at 20 writes/s, measured in the simulator), so they wait for the
//! transport's word: packets it declared lost. The transport declares a packet lost when
//! later ones were acknowledged and it was not, so a copy merely late does not look like
//! loss, unlike a late tree copy that makes us graft.
//!
//! Nor do they run in a burst ([`BUSY_UPDATES`] or more new updates in a
//! [`BUSY_WINDOW_US`]). A burst that overruns the processes makes loss of its own (socket
//! buffers overflow), and there the rounds told ids of copies still queued, their grafts
//! fetched the copies a second time, and the burst took longer (BENCHMARKS.md, 13.5). The
//! exchange that follows a burst (`Engine::sync_deadline`) repairs its losses in bulk.

use std::collections::{BTreeMap, VecDeque};

use super::Engine;
use crate::core::limiter::Traffic;
use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::state::Entry;
use crate::core::NodeId;

/// How long reports of loss are remembered (µs).
const WINDOW_US: u64 = 10_000_000;
/// Fewest packets sent in the window before the share lost means anything.
const MIN_SENT: u64 = 50;
/// Lost packets per thousand sent, over the window, from which repair rounds run. At
/// 0.5 % per hop about one member in fifty misses its tree copy: most writes to 50
/// members already wait for repair.
pub const LOSSY_PERMILLE: u64 = 5;
/// Most ids owed to one child between two rounds; the random rounds tell the rest.
const OWED_MAX: usize = 64;
/// Room for the `until` id beside an entry in a tree item (an id is at most 255 bytes).
const ID_ROOM: usize = 260;
/// The window over which new updates are counted to tell a burst (µs).
const BUSY_WINDOW_US: u64 = 100_000;
/// New updates in one window (this one or the last) from which no repair round runs:
/// 640 a second, thirty times the loss benchmark's rate. A steady load above it under
/// real loss goes without repair rounds too (ARCHITECTURE.md, "Repair rounds under
/// loss").
const BUSY_UPDATES: u32 = 64;

/// Loss the transport reported, and what the repair rounds owe.
#[derive(Debug, Clone, Default)]
pub(super) struct RepairRounds {
    /// Reports over the window: (when, packets sent, packets lost).
    reports: VecDeque<(u64, u64, u64)>,
    sent: u64,
    lost: u64,
    /// The next gossip round was pulled forward and has not run yet.
    pulled: bool,
    /// When the last gossip round ran (mono µs).
    last_round_us: u64,
    /// Ids owed to the children we pushed their updates to.
    owed: BTreeMap<NodeId, Vec<(NodeId, u64)>>,
    /// New updates counted per [`BUSY_WINDOW_US`]: (window number, in it, in the one
    /// before).
    updates: (u64, u32, u32),
}

impl RepairRounds {
    fn record(&mut self, t: u64, sent: u64, lost: u64) {
        self.reports.push_back((t, sent, lost));
        self.sent = self.sent.saturating_add(sent);
        self.lost = self.lost.saturating_add(lost);
        while let Some(&(at, s, l)) = self.reports.front() {
            if at.saturating_add(WINDOW_US) > t {
                break;
            }
            self.reports.pop_front();
            self.sent = self.sent.saturating_sub(s);
            self.lost = self.lost.saturating_sub(l);
        }
    }

    /// Lost packets per thousand sent over the window; 0 below [`MIN_SENT`] packets.
    fn permille(&self) -> u64 {
        if self.sent < MIN_SENT {
            return 0;
        }
        (u128::from(self.lost.min(self.sent)) * 1000 / u128::from(self.sent)) as u64
    }

    /// True if the last report is inside the window at `now_us`: a driver that stopped
    /// reporting leaves no loss standing.
    fn recent(&self, now_us: u64) -> bool {
        self.reports
            .back()
            .is_some_and(|&(at, _, _)| at.saturating_add(WINDOW_US) > now_us)
    }

    /// Counts a new update at `now_us`.
    fn note_update(&mut self, now_us: u64) {
        let (current, previous) = self.updates_at(now_us);
        // Never back to an earlier window (the engine's clock does not go back anyway).
        let window = (now_us / BUSY_WINDOW_US).max(self.updates.0);
        self.updates = (window, current.saturating_add(1), previous);
    }

    /// The updates counted in the window of `now_us` and in the one before it.
    fn updates_at(&self, now_us: u64) -> (u32, u32) {
        let (window, current, previous) = self.updates;
        match (now_us / BUSY_WINDOW_US).saturating_sub(window) {
            0 => (current, previous),
            1 => (0, current),
            _ => (0, 0),
        }
    }

    /// True in a burst: [`BUSY_UPDATES`] or more new updates in this window or the last.
    fn busy(&self, now_us: u64) -> bool {
        let (current, previous) = self.updates_at(now_us);
        current.max(previous) >= BUSY_UPDATES
    }
}

impl Engine {
    /// Reports the packets the transport sent and declared lost (to every peer) since
    /// the last report. The driver reports about once a second; repair rounds run
    /// while the share lost over the last ten seconds is at least [`LOSSY_PERMILLE`].
    pub fn observe_path_loss(&mut self, mono_us: u64, sent: u64, lost: u64) {
        self.repair.record(mono_us, sent, lost.min(sent));
    }

    /// Packets lost per thousand sent over the last ten seconds, as the driver reported
    /// them (0 until enough were sent to tell).
    pub fn path_loss_permille(&self) -> u64 {
        self.repair.permille()
    }

    /// True while repair rounds run: loss is reported, updates travel by tree, and we
    /// are neither backed off (a backed-off node sends less, never more) nor in a burst.
    pub(super) fn repairing(&self) -> bool {
        self.tree_mode()
            && self.backoff.level == 0
            && self.repair.recent(self.clock_us)
            && self.repair.permille() >= LOSSY_PERMILLE
            && !self.repair.busy(self.clock_us)
    }

    /// A new id was queued: under loss, the next gossip round comes a quarter of the
    /// graft timeout later (or a graft timeout after the last round, if that is later),
    /// so that the members the tree missed hear of it early.
    pub(super) fn pull_repair_round(&mut self) {
        self.repair.note_update(self.clock_us);
        if !self.repairing() {
            return;
        }
        // At most one pulled round per graft timeout, however fast ids come.
        let graft_us = self.cfg.graft_timeout_ms * 1000;
        let at = (self.clock_us + graft_us / 4).max(self.repair.last_round_us + graft_us);
        if at < self.next_gossip_us {
            self.next_gossip_us = at;
            self.repair.pulled = true;
        }
    }

    /// True if the children we push `entry` to down the tree are owed its id: under
    /// loss, and if its copy goes in a datagram (a copy too large for one goes on a
    /// stream, which loses nothing, and may come after any id).
    pub(super) fn owes_ids_for(&self, entry: &Entry) -> bool {
        self.repairing()
            && encoded_len(entry) + ID_ROOM + DATAGRAM_OVERHEAD <= self.cfg.max_datagram
    }

    /// We are pushing the update `dot` to `child` down the tree (and
    /// [`Engine::owes_ids_for`] it): the next round tells `child` its id too, so that a
    /// lost tree copy is grafted at once. Past [`OWED_MAX`] ids the random rounds tell
    /// the rest (counted).
    pub(super) fn owe_id(&mut self, child: &NodeId, dot: (NodeId, u64)) {
        let ids = self.repair.owed.entry(child.clone()).or_default();
        if ids.len() < OWED_MAX {
            ids.push(dot);
        } else {
            self.stats.ids_owed_dropped += 1;
        }
    }

    /// Runs at every gossip round, before it: counts a pulled round, and sends each
    /// child the ids owed to it, in as few datagrams as they fit in.
    pub(super) fn repair_round(&mut self) {
        self.repair.last_round_us = self.clock_us;
        if std::mem::take(&mut self.repair.pulled) {
            self.stats.repair_rounds += 1;
        }
        let owed = std::mem::take(&mut self.repair.owed);
        if !self.repairing() {
            // Backed off, or the loss is over since: the random rounds tell them.
            self.stats.ids_owed_dropped += owed.values().map(|ids| ids.len() as u64).sum::<u64>();
            return;
        }
        let room = self.cfg.max_datagram.saturating_sub(DATAGRAM_OVERHEAD);
        for (child, dots) in owed {
            let Some(addr) = self.addr_of(&child) else {
                self.stats.ids_owed_dropped += dots.len() as u64;
                continue;
            };
            let mut items = Vec::new();
            let mut used = 0;
            for (writer, counter) in dots {
                let item = Item::IHave { writer, counter };
                let len = encoded_len(&item);
                if used + len > room && !items.is_empty() {
                    self.tell_child(&child, &addr, std::mem::take(&mut items));
                    used = 0;
                }
                used += len;
                items.push((item, Traffic::Announce));
            }
            self.tell_child(&child, &addr, items);
        }
    }

    /// Sends `child` one datagram of owed ids, counting them told or, when the bucket
    /// refuses it, dropped.
    fn tell_child(&mut self, child: &NodeId, addr: &str, items: Vec<(Item, Traffic)>) {
        let n = items.len() as u64;
        if self.emit(child, addr.to_string(), items, false) {
            self.stats.ids_told_children += n;
        } else {
            self.stats.ids_owed_dropped += n;
        }
    }
}

#[cfg(test)]
#[path = "repair_rounds_tests.rs"]
mod tests;
