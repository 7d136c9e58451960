//! The engine's part that signs our writes and verifies everyone else's before they
//! reach the store, counting what it refuses.

use crate::core::authority::{Authority, Refusal, RefusalCounts, Unsigned};
use crate::core::state::{Entry, Signature};

/// Signs and verifies writes through the node's [`Authority`].
pub(super) struct Authorship {
    authority: Box<dyn Authority>,
    refused: RefusalCounts,
}

impl Default for Authorship {
    fn default() -> Self {
        Self {
            authority: Box::new(Unsigned),
            refused: RefusalCounts::default(),
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

    /// Signs one of our writes.
    pub(super) fn sign(&mut self, bytes: &[u8]) -> Signature {
        self.authority.sign(bytes)
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

    /// Refused writes by reason.
    pub(super) fn refused(&self) -> &RefusalCounts {
        &self.refused
    }
}
