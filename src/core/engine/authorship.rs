//! The engine's part that signs our writes and verifies everyone else's before they
//! reach the store, counting what it refuses.
//!
//! Our writes are signed in batches: a local write enters the store unsigned and is
//! noted here; before anything leaves the node (an output is polled, an input is
//! handled, changes are drained for persistence) the engine seals every noted write
//! with one signature per [`MAX_BATCH`] writes over the root of their hash tree (see
//! [`batch_proof`](crate::core::state::batch_proof)). So no unsigned write is ever sent
//! or persisted, and a burst of writes costs one signature, at the writer and at every
//! receiver.

use crate::core::authority::{Authority, Refusal, RefusalCounts, Unsigned};
use crate::core::events::UserEvent;
use crate::core::queries::Query;
use crate::core::state::batch_proof::sign_batch;
use crate::core::state::{Entry, Store, Write, MAX_BATCH};

/// Signs and verifies writes through the node's [`Authority`].
pub(super) struct Authorship {
    authority: Box<dyn Authority>,
    refused: RefusalCounts,
    /// Our writes not signed yet: (key, our counter), in write order.
    unsealed: Vec<(String, u64)>,
}

impl Default for Authorship {
    fn default() -> Self {
        Self {
            authority: Box::new(Unsigned),
            refused: RefusalCounts::default(),
            unsealed: Vec::new(),
        }
    }
}

impl Authorship {
    /// Replaces the authority (the runtime's certificates, the simulator's keys).
    pub(super) fn set(&mut self, authority: Box<dyn Authority>) {
        self.authority = authority;
    }

    /// Whether our grant lets us write `key`.
    pub(super) fn may_write(&self, key: &str) -> Result<(), Refusal> {
        self.authority.may_write(key)
    }

    /// Notes a local write to seal before anything leaves the node; true when a full
    /// batch waits.
    pub(super) fn note_unsealed(&mut self, key: &str, counter: u64) -> bool {
        self.unsealed.push((key.to_string(), counter));
        self.unsealed.len() >= MAX_BATCH
    }

    /// True when local writes wait for their signature.
    pub(super) fn has_unsealed(&self) -> bool {
        !self.unsealed.is_empty()
    }

    /// Signs every noted write still in the store (a later write of ours to the same
    /// key supersedes an earlier one, which then never leaves the node) and returns
    /// their entries, signed, in write order, for dissemination, with the number of
    /// signatures made.
    pub(super) fn seal(&mut self, store: &mut Store) -> (Vec<Entry>, u64) {
        let noted = std::mem::take(&mut self.unsealed);
        let mut writes: Vec<(String, Write)> = noted
            .into_iter()
            .filter_map(|(key, counter)| store.own_write(&key, counter).map(|w| (key, w)))
            .collect();
        let mut signatures = 0;
        if self.authority.signs() {
            for batch in writes.chunks_mut(MAX_BATCH) {
                sign_batch(batch, |bytes| self.authority.sign(bytes));
                signatures += 1;
                for (key, w) in batch.iter() {
                    store.seal(key, w.vv.get(&w.writer), w.sig.clone());
                }
            }
        }
        let entries = writes
            .iter()
            .filter_map(|(key, _)| store.entry(key).cloned())
            .collect();
        (entries, signatures)
    }

    /// Verifies every write an entry holds; the first refusal is counted and returned.
    pub(super) fn verify(&mut self, e: &Entry) -> Result<(), Refusal> {
        for w in e.writes() {
            if let Err(r) = self.authority.verify(&e.key, &w) {
                self.refused.count(&r);
                return Err(r);
            }
        }
        Ok(())
    }

    /// Signs a user event in our name (unsigned when the authority does not sign).
    pub(super) fn sign_event(&mut self, e: &mut UserEvent) {
        if self.authority.signs() {
            e.sig = self.authority.sign(&e.signed_bytes());
        }
    }

    /// Whether a user event is really its sender's (not counted with writes).
    pub(super) fn verify_event(&mut self, e: &UserEvent) -> Result<(), Refusal> {
        self.authority
            .verify_message(&e.sender, &e.signed_bytes(), &e.sig)
    }

    /// Signs a query in our name (unsigned when the authority does not sign).
    pub(super) fn sign_query(&mut self, q: &mut Query) {
        if self.authority.signs() {
            q.sig = self.authority.sign(&q.signed_bytes());
        }
    }

    /// Whether a query is really its asker's (not counted with writes).
    pub(super) fn verify_query(&mut self, q: &Query) -> Result<(), Refusal> {
        self.authority
            .verify_message(&q.asker, &q.signed_bytes(), &q.sig)
    }

    /// Refused writes by reason.
    pub(super) fn refused(&self) -> &RefusalCounts {
        &self.refused
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use crate::core::authority::{Authority, Refusal};
    use crate::core::engine::{Config, Engine, DOT_LEASE_BLOCK};
    use crate::core::proto::MemberInfo;
    use crate::core::state::{Signature, Write};
    use crate::core::{NodeId, Now};

    /// Signs with a plain hash and counts its signatures.
    struct Counting(Arc<AtomicU64>);

    fn tag(bytes: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .to_vec()
    }

    impl Authority for Counting {
        fn sign(&mut self, bytes: &[u8]) -> Signature {
            self.0.fetch_add(1, Ordering::Relaxed);
            Signature {
                key: 1,
                bytes: tag(bytes),
                proof: None,
            }
        }

        fn may_write(&self, _key: &str) -> Result<(), Refusal> {
            Ok(())
        }

        fn verify(&mut self, key: &str, w: &Write) -> Result<(), Refusal> {
            let m = w.signed_message(key).ok_or(Refusal::BadSignature)?;
            (w.sig.bytes == tag(&m))
                .then_some(())
                .ok_or(Refusal::BadSignature)
        }

        fn verify_message(&mut self, _: &NodeId, b: &[u8], s: &Signature) -> Result<(), Refusal> {
            (s.bytes == tag(b))
                .then_some(())
                .ok_or(Refusal::BadSignature)
        }
    }

    fn at(ms: u64) -> Now {
        Now {
            mono_us: ms * 1000,
            wall_ms: 1_000_000 + ms,
        }
    }

    fn engine(signatures: Arc<AtomicU64>) -> Engine {
        let info = MemberInfo {
            id: NodeId::new("a").unwrap(),
            addr: "a:7000".into(),
            dc: "dc1".into(),
            zone: "z1".into(),
            tags: Default::default(),
        };
        let mut e = Engine::new(Config::local(), info, Vec::new(), 1, at(0), None);
        e.set_authority(Box::new(Counting(signatures)));
        e.enable_persistence(DOT_LEASE_BLOCK);
        let lease = e.take_changes().store.lease_end.expect("first lease");
        e.lease_durable(lease);
        while e.poll_output().is_some() {}
        e
    }

    /// #17: a burst of writes costs one signature per 64 (a writer that fills a batch
    /// seals it), every write verifies on its own, and none is persisted or sent
    /// unsigned.
    #[test]
    fn a_burst_of_writes_is_signed_once_per_batch_before_it_is_persisted() {
        let count = Arc::new(AtomicU64::new(0));
        let mut e = engine(count.clone());
        for i in 0..63 {
            e.set(at(1), &format!("k{i}"), vec![i as u8]).unwrap();
        }
        let signed = || count.load(Ordering::Relaxed);
        assert_eq!(signed(), 0, "nothing signed while writing");
        e.set(at(1), "k63", vec![63]).unwrap();
        assert_eq!(signed(), 1, "a full batch is sealed by its last write");
        for i in 64..100 {
            e.set(at(1), &format!("k{i}"), vec![i as u8]).unwrap();
        }
        // A key written twice in one batch: only its last write is signed and sent.
        e.set(at(1), "k70", b"again".to_vec()).unwrap();
        let changes = e.take_changes();
        assert_eq!(signed(), 2, "100 writes, two batches");
        assert_eq!(e.stats().write_signatures, 2);
        let mut verifier = Counting(Arc::new(AtomicU64::new(0)));
        let upserts = &changes.store.upserts;
        assert_eq!(upserts.len(), 100);
        for entry in upserts {
            let w = &entry.writes()[0];
            assert!(w.sig.proof.is_some(), "{} persisted unsigned", entry.key);
            verifier.verify(&entry.key, w).unwrap();
        }
        let k70 = upserts.iter().find(|u| u.key == "k70").unwrap();
        assert_eq!(k70.value.as_deref(), Some(&b"again"[..]));

        // One write alone is signed as soon as the driver polls for output.
        e.set(at(2), "solo", b"v".to_vec()).unwrap();
        assert!(e.poll_output().is_some());
        assert_eq!(signed(), 3);
        let solo = &e.store().entry("solo").unwrap().writes()[0];
        assert_eq!(solo.sig.proof.as_ref().map(|p| p.height()), Some(0));
        verifier.verify("solo", solo).unwrap();
    }
}
