//! One write as its writer signed it, and the bytes the signature covers.
//!
//! An [`Entry`](super::Entry) is one write, or, after concurrent writes met, every
//! write no other write supersedes (a multi-value register whose shown value is the
//! highest-ranked write). Each write carries its writer's signature, so a relay can pass
//! an entry on but can neither alter it nor make one up in another node's name, and the
//! entry's version vector is exactly the join of signed vectors.

use serde::{Deserialize, Serialize};

use super::batch_proof::{batch_bytes, leaf, Proof};
use super::{Hlc, VersionVector};
use crate::core::NodeId;

/// Longest signature accepted (ECDSA P-256 and Ed25519 are 64 bytes; room for others).
pub const MAX_SIGNATURE_LEN: usize = 132;

/// A writer's signature over one write, or over the batch of writes it belongs to,
/// naming which of its keys made it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature {
    /// Which key of the writer signed: the first 8 bytes of the SHA-256 of the key's
    /// SubjectPublicKeyInfo, so a writer that renewed its key is still verifiable.
    pub key: u64,
    /// The signature bytes; empty for an unsigned write.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// The write's path to the batch root the signature covers; `None` when the
    /// signature covers this write alone (writes of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl Signature {
    /// True when the write carries no signature at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// True for the default value, which the encoding leaves out.
    pub fn is_default(&self) -> bool {
        self.key == 0 && self.bytes.is_empty() && self.proof.is_none()
    }
}

/// One write: a value or a delete, the version vector its writer held when writing it
/// (its own new dot included), its stamp, its writer and the writer's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// The value; `None` is a delete.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// The writer's version vector for this write.
    pub vv: VersionVector,
    /// The write's HLC stamp.
    pub hlc: Hlc,
    /// Who wrote it.
    pub writer: NodeId,
    /// The writer's signature over [`signed_bytes`].
    pub sig: Signature,
}

/// The bytes a writer signs for a write of `key`: a domain tag, the key, a digest of the
/// value (or a delete marker), the version vector in writer order, the stamp and the
/// writer. Lengths are prefixed, so no two different writes share their bytes.
pub fn signed_bytes(
    key: &str,
    value: Option<&[u8]>,
    vv: &VersionVector,
    hlc: Hlc,
    writer: &NodeId,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + key.len() + vv.len() * 24);
    out.extend_from_slice(b"gossamer/write/v1\0");
    put_str(&mut out, key);
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, v).as_ref());
        }
    }
    out.extend_from_slice(&(vv.len() as u64).to_be_bytes());
    for (w, c) in vv.dots() {
        put_str(&mut out, w.as_str());
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&hlc.ms.to_be_bytes());
    out.extend_from_slice(&hlc.lc.to_be_bytes());
    put_str(&mut out, writer.as_str());
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Write {
    /// The bytes this write's signature covers, for a write of `key`.
    pub fn signed_bytes(&self, key: &str) -> Vec<u8> {
        signed_bytes(key, self.value.as_deref(), &self.vv, self.hlc, &self.writer)
    }

    /// The bytes this write's signature must verify over, for a write of `key`: the
    /// root of its batch when it carries a [`Proof`], else its own signed bytes.
    /// `None` when the proof is malformed.
    pub fn signed_message(&self, key: &str) -> Option<Vec<u8>> {
        let bytes = self.signed_bytes(key);
        match &self.sig.proof {
            None => Some(bytes),
            Some(p) => p.root(leaf(&bytes)).map(|r| batch_bytes(&r, p.height())),
        }
    }

    /// This write's own dot: its writer's counter in its vector.
    pub fn dot(&self) -> (&NodeId, u64) {
        (&self.writer, self.vv.get(&self.writer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn different_writes_never_share_signed_bytes() {
        let mut vv = VersionVector::new();
        vv.set(n("a"), 1);
        let hlc = Hlc { ms: 5, lc: 0 };
        let base = signed_bytes("k", Some(b"v"), &vv, hlc, &n("a"));
        assert_ne!(base, signed_bytes("k", None, &vv, hlc, &n("a")));
        assert_ne!(base, signed_bytes("k", Some(b"w"), &vv, hlc, &n("a")));
        assert_ne!(base, signed_bytes("k", Some(b""), &vv, hlc, &n("a")));
        assert_ne!(base, signed_bytes("kk", Some(b"v"), &vv, hlc, &n("a")));
        assert_ne!(
            base,
            signed_bytes("k", Some(b"v"), &vv, Hlc { ms: 5, lc: 1 }, &n("a"))
        );
        assert_ne!(base, signed_bytes("k", Some(b"v"), &vv, hlc, &n("b")));
        let mut more = vv.clone();
        more.set(n("b"), 1);
        assert_ne!(base, signed_bytes("k", Some(b"v"), &more, hlc, &n("a")));
    }
}
