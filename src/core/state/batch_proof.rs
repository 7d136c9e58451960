//! One signature for a batch of writes: the writer signs the root of a hash tree over
//! the writes it made since it last signed, and each write carries its path to that
//! root ([`Proof`]).
//!
//! A receiver recomputes the root from the write and its path and verifies the
//! signature over the root once: the next write of the same batch reaches the same
//! root, which the runtime's authority remembers as verified, so a batch of `n` writes
//! costs one signature check and `n` short hash walks instead of `n` signature checks.
//! Each write still verifies on its own (anti-entropy sends writes one by one, long
//! after their batch), and a relay can neither alter a write nor move it to another
//! batch without breaking its path.
//!
//! Hashes are SHA-256 cut to 16 bytes: finding another write with the same path to a
//! signed root is a second preimage, 2^128 work; only the writer could look for
//! collisions, and it can sign whatever it likes anyway. Leaves and inner nodes are
//! hashed under different tags, so no inner node passes for a write. A batch is padded
//! to a power of two with a fixed empty leaf, so a path is just the siblings bottom-up
//! and the index's bits say on which side each one sits.

use ring::digest::SHA256;
use serde::{Deserialize, Serialize};

use super::{Signature, Write};

/// Most writes under one signature: a path is at most [`MAX_BATCH_HEIGHT`] hashes
/// (96 bytes), while one check serves the whole batch.
pub const MAX_BATCH: usize = 64;

/// Longest path accepted from a peer, in hashes (room above [`MAX_BATCH`]).
pub const MAX_BATCH_HEIGHT: usize = 8;

/// Bytes per hash in a path.
pub const NODE_LEN: usize = 16;

/// One hash of the tree.
pub type Node = [u8; NODE_LEN];

/// Where one write sits in the hash tree its writer signed the root of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proof {
    /// The write's position among the batch's leaves.
    pub index: u32,
    /// The siblings from the leaf up, [`NODE_LEN`] bytes each.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
}

impl Proof {
    /// Tree height (hashes on the path).
    pub fn height(&self) -> usize {
        self.path.len() / NODE_LEN
    }

    /// Whether a peer's proof has a shape we can walk: whole hashes, not too many, an
    /// index inside the tree.
    pub fn is_well_formed(&self) -> bool {
        self.path.len() % NODE_LEN == 0
            && self.height() <= MAX_BATCH_HEIGHT
            && u64::from(self.index) < (1u64 << self.height())
    }

    /// The root this proof leads `leaf` to, or `None` for a malformed proof.
    pub fn root(&self, leaf: Node) -> Option<Node> {
        if !self.is_well_formed() {
            return None;
        }
        let mut at = leaf;
        for (level, sibling) in self.path.chunks_exact(NODE_LEN).enumerate() {
            let sibling: Node = sibling.try_into().expect("chunks_exact");
            at = if self.index >> level & 1 == 0 {
                inner(&at, &sibling)
            } else {
                inner(&sibling, &at)
            };
        }
        Some(at)
    }
}

/// The leaf of a write: its [`signed_bytes`](super::signed_bytes) hashed.
pub fn leaf(signed_bytes: &[u8]) -> Node {
    hash(&[b"gossamer/leaf/v1\0", signed_bytes])
}

/// The bytes a writer signs for a batch: a domain tag, the tree height and the root.
pub fn batch_bytes(root: &Node, height: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(b"gossamer/batch/v1\0");
    out.push(height as u8);
    out.extend_from_slice(root);
    out
}

/// The tree over `leaves` (1 to [`MAX_BATCH`]): its root, its height and each leaf's
/// proof, in order.
pub fn build(leaves: &[Node]) -> (Node, usize, Vec<Proof>) {
    assert!(
        !leaves.is_empty() && leaves.len() <= MAX_BATCH,
        "a batch holds 1 to {MAX_BATCH} writes"
    );
    let width = leaves.len().next_power_of_two();
    let height = width.trailing_zeros() as usize;
    let mut level: Vec<Node> = leaves.to_vec();
    level.resize(width, empty_leaf());
    let mut proofs: Vec<Proof> = (0..leaves.len())
        .map(|i| Proof {
            index: i as u32,
            path: Vec::with_capacity(height * NODE_LEN),
        })
        .collect();
    for h in 0..height {
        for (i, p) in proofs.iter_mut().enumerate() {
            let pos = i >> h;
            p.path.extend_from_slice(&level[pos ^ 1]);
        }
        level = level
            .chunks_exact(2)
            .map(|pair| inner(&pair[0], &pair[1]))
            .collect();
    }
    (level[0], height, proofs)
}

/// Signs `batch` (1 to [`MAX_BATCH`] writes of one writer, each with its key) with one
/// call of `sign` over the root of their tree, and gives each write the signature with
/// its path. An empty signature (no identities) leaves the writes unsigned.
pub fn sign_batch(batch: &mut [(String, Write)], sign: impl FnOnce(&[u8]) -> Signature) {
    let leaves: Vec<Node> = batch
        .iter()
        .map(|(k, w)| leaf(&w.signed_bytes(k)))
        .collect();
    let (root, height, proofs) = build(&leaves);
    let sig = sign(&batch_bytes(&root, height));
    if sig.is_empty() {
        return;
    }
    for ((_, w), proof) in batch.iter_mut().zip(proofs) {
        w.sig = Signature {
            proof: Some(proof),
            ..sig.clone()
        };
    }
}

fn empty_leaf() -> Node {
    hash(&[b"gossamer/empty/v1\0"])
}

pub(super) fn inner(left: &Node, right: &Node) -> Node {
    hash(&[b"gossamer/node/v1\0", left, right])
}

fn hash(parts: &[&[u8]]) -> Node {
    let mut ctx = ring::digest::Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    d.as_ref()[..NODE_LEN]
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Node> {
        (0..n).map(|i| leaf(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_leaf_of_every_batch_size_reaches_the_root() {
        for n in 1..=MAX_BATCH {
            let ls = leaves(n);
            let (root, height, proofs) = build(&ls);
            assert_eq!(1usize << height, n.next_power_of_two());
            for (l, p) in ls.iter().zip(&proofs) {
                assert_eq!(p.root(*l), Some(root), "batch of {n}, leaf {}", p.index);
            }
        }
    }

    #[test]
    fn another_leaf_a_moved_index_or_a_changed_path_misses_the_root() {
        let ls = leaves(5);
        let (root, _, proofs) = build(&ls);
        assert_ne!(proofs[1].root(ls[2]), Some(root));
        let mut moved = proofs[1].clone();
        moved.index = 3;
        assert_ne!(moved.root(ls[1]), Some(root));
        let mut bent = proofs[1].clone();
        bent.path[0] ^= 1;
        assert_ne!(bent.root(ls[1]), Some(root));
        // An inner node is no write: its children's hash is not a leaf hash.
        let (_, _, two) = build(&ls[..2]);
        assert_ne!(leaf(&[ls[0], ls[1]].concat()), two[0].root(ls[0]).unwrap());
    }

    #[test]
    fn malformed_proofs_are_refused_not_walked() {
        let half = Proof {
            index: 0,
            path: vec![0; NODE_LEN + 3],
        };
        assert_eq!(half.root(leaf(b"x")), None);
        let outside = Proof {
            index: 4,
            path: vec![0; 2 * NODE_LEN],
        };
        assert_eq!(outside.root(leaf(b"x")), None);
        let tall = Proof {
            index: 0,
            path: vec![0; (MAX_BATCH_HEIGHT + 1) * NODE_LEN],
        };
        assert_eq!(tall.root(leaf(b"x")), None);
    }
}
