//! Who may write what, and whether a write is really its writer's: the engine signs its
//! own writes and has every peer's write verified through an [`Authority`].
//!
//! The core knows no certificates and no key algorithms. The runtime's authority signs
//! with the node's certificate key and verifies against the fleet's certificates;
//! the simulator's signs with a keyed hash per node; [`Unsigned`] trusts every relay
//! (tests and embedders without identities).

use serde::Serialize;

use super::state::{Signature, Write};
use super::NodeId;

/// Why a write was refused; counted per reason ([`RefusalCounts`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The write carries no signature.
    #[error("the write is not signed")]
    Unsigned,
    /// No certificate of the writer holds the key that signed.
    #[error("no certificate of the writer holds the signing key")]
    UnknownWriter,
    /// The signature does not match the write (forged or altered).
    #[error("the signature does not match the write")]
    BadSignature,
    /// The key lies outside the writer's grant.
    #[error("key outside the writer's grant (allowed prefixes: {})", allowed.join(", "))]
    OutsideGrant {
        /// The prefixes the writer may write.
        allowed: Vec<String>,
    },
    /// The signing certificate has been revoked.
    #[error("the writer's certificate is revoked")]
    Revoked,
}

/// Signs this node's writes and judges other writers'.
pub trait Authority: Send {
    /// Signs `bytes` (the [`batch_bytes`](super::state::batch_proof::batch_bytes) of a
    /// batch of writes) with this node's key.
    fn sign(&mut self, bytes: &[u8]) -> Signature;

    /// Whether [`Authority::sign`] signs at all; `false` leaves writes unsigned and
    /// spares the engine hashing them.
    fn signs(&self) -> bool {
        true
    }

    /// Whether this node's grant lets it write `key`.
    fn may_write(&self, key: &str) -> Result<(), Refusal>;

    /// Whether `write` to `key` is really its writer's and within its writer's grant.
    fn verify(&mut self, key: &str, write: &Write) -> Result<(), Refusal>;

    /// Whether `sig` over `bytes` (a message that is not a write, such as a user event)
    /// was made by a key of `signer`'s that is known and not revoked.
    fn verify_message(
        &mut self,
        signer: &NodeId,
        bytes: &[u8],
        sig: &Signature,
    ) -> Result<(), Refusal>;
}

/// Signs nothing and accepts every write as its relay presents it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsigned;

impl Authority for Unsigned {
    fn sign(&mut self, _bytes: &[u8]) -> Signature {
        Signature::default()
    }

    fn signs(&self) -> bool {
        false
    }

    fn may_write(&self, _key: &str) -> Result<(), Refusal> {
        Ok(())
    }

    fn verify(&mut self, _key: &str, _write: &Write) -> Result<(), Refusal> {
        Ok(())
    }

    fn verify_message(&mut self, _: &NodeId, _: &[u8], _: &Signature) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Refused writes by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefusalCounts {
    /// Writes without a signature.
    pub unsigned: u64,
    /// Writes signed by a key no known certificate of the writer holds.
    pub unknown_writer: u64,
    /// Writes whose signature does not match (forged or altered).
    pub bad_signature: u64,
    /// Writes outside their writer's grant.
    pub outside_grant: u64,
    /// Writes signed by a revoked certificate.
    pub revoked: u64,
}

impl RefusalCounts {
    /// Counts one refusal.
    pub fn count(&mut self, r: &Refusal) {
        let c = match r {
            Refusal::Unsigned => &mut self.unsigned,
            Refusal::UnknownWriter => &mut self.unknown_writer,
            Refusal::BadSignature => &mut self.bad_signature,
            Refusal::OutsideGrant { .. } => &mut self.outside_grant,
            Refusal::Revoked => &mut self.revoked,
        };
        *c += 1;
    }

    /// Every reason with its count, for metrics.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("unsigned", self.unsigned),
            ("unknown_writer", self.unknown_writer),
            ("bad_signature", self.bad_signature),
            ("outside_grant", self.outside_grant),
            ("revoked", self.revoked),
        ]
    }
}
