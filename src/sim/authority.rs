//! The simulator's signatures: a keyed hash per writer, derived from the run's seed.
//!
//! Every node can verify every writer (as the fleet's CA lets every node check every
//! certificate), and a node can sign only in its own name: a lying member that builds
//! an entry in another node's name, or alters one it relays, is refused as it would be
//! by the runtime's certificate signatures. Deterministic, so runs replay exactly.

use ring::hmac;

use crate::core::authority::{Authority, Refusal};
use crate::core::state::{Signature, Write};
use crate::core::NodeId;

/// Signs as one simulated node; verifies any.
#[derive(Clone)]
pub struct SimAuthority {
    master: hmac::Key,
    me: NodeId,
}

impl SimAuthority {
    /// The authority of node `me` in the run whose keys derive from `seed`.
    pub fn new(seed: u64, me: NodeId) -> Self {
        Self {
            master: hmac::Key::new(hmac::HMAC_SHA256, &seed.to_be_bytes()),
            me,
        }
    }

    fn key_of(&self, writer: &NodeId) -> hmac::Key {
        let k = hmac::sign(&self.master, writer.as_str().as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())
    }
}

impl Authority for SimAuthority {
    fn sign(&mut self, bytes: &[u8]) -> Signature {
        Signature {
            key: 1,
            bytes: hmac::sign(&self.key_of(&self.me), bytes).as_ref().to_vec(),
            proof: None,
        }
    }

    fn may_write(&self, _key: &str) -> Result<(), Refusal> {
        Ok(())
    }

    fn verify(&mut self, key: &str, write: &Write) -> Result<(), Refusal> {
        if write.sig.is_empty() {
            return Err(Refusal::Unsigned);
        }
        if write.sig.key != 1 {
            return Err(Refusal::UnknownWriter);
        }
        hmac::verify(
            &self.key_of(&write.writer),
            &write.signed_message(key).ok_or(Refusal::BadSignature)?,
            &write.sig.bytes,
        )
        .map_err(|_| Refusal::BadSignature)
    }

    fn verify_message(
        &mut self,
        signer: &NodeId,
        bytes: &[u8],
        sig: &Signature,
    ) -> Result<(), Refusal> {
        if sig.is_empty() {
            return Err(Refusal::Unsigned);
        }
        if sig.key != 1 {
            return Err(Refusal::UnknownWriter);
        }
        hmac::verify(&self.key_of(signer), bytes, &sig.bytes).map_err(|_| Refusal::BadSignature)
    }
}
