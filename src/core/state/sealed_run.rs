//! Writes of one signed batch sent together: their signature travels once, and of their
//! paths only the hashes the receiver cannot compute from the writes themselves.
//!
//! A write of a batch carries the batch signature (64 bytes) and its path (16 bytes per
//! tree level, 96 for a batch of 64): more than a 100-byte value. A burst of writes goes
//! down the broadcast tree together, so the writes of one batch that share a datagram
//! share those bytes: the receiver hashes the writes it got into their leaves, computes
//! every inner node they determine, takes the others from [`SealedRun::nodes`], and gives
//! each write back its own signature and full path. Nothing is trusted on the way: a
//! write whose path was made up, or that was altered, leads to another root and its
//! signature check fails as it would for a write sent alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::batch_proof::{inner, leaf, Node, Proof, MAX_BATCH_HEIGHT, NODE_LEN};
use super::{signed_bytes, Entry, Signature, StateError};

/// What the writes of one run share: the signing key, the signature and the tree height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunKey<'a> {
    key: u64,
    sig: &'a [u8],
    height: usize,
}

impl<'a> RunKey<'a> {
    /// The run `e` can travel in, if any: a single write (no concurrent siblings) signed
    /// as part of a batch.
    pub fn of(e: &'a Entry) -> Option<Self> {
        let proof = e.sig.proof.as_ref()?;
        if !e.siblings.is_empty() || e.sig.is_empty() || !proof.is_well_formed() {
            return None;
        }
        Some(Self {
            key: e.sig.key,
            sig: &e.sig.bytes,
            height: proof.height(),
        })
    }
}

/// Writes of one signed batch, sent as one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRun {
    /// Which key of the writer signed ([`Signature::key`]).
    pub key: u64,
    /// The signature over the batch root.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
    /// Height of the batch's hash tree.
    pub height: u8,
    /// Each write's position among the batch's leaves, strictly ascending.
    #[serde(with = "serde_bytes")]
    pub indices: Vec<u8>,
    /// The writes, in the order of `indices`, without their signatures.
    pub entries: Vec<Entry>,
    /// The sibling hashes the writes do not determine, level by level from the leaves
    /// up and left to right within a level, [`NODE_LEN`] bytes each.
    #[serde(with = "serde_bytes")]
    pub nodes: Vec<u8>,
}

impl SealedRun {
    /// The run of `entries`, which must all have the same [`RunKey`] and distinct
    /// positions (the packer and [`group_runs`] only group such writes; a repeated
    /// position would make a run every receiver refuses).
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by_key(position);
        debug_assert!(
            entries
                .windows(2)
                .all(|w| position(&w[0]) < position(&w[1])),
            "a run holds each position once"
        );
        let first = &entries[0].sig;
        let (key, sig) = (first.key, first.bytes.clone());
        let height = first.proof.as_ref().map_or(0, Proof::height);
        let indices: Vec<u32> = entries.iter().map(position).collect();
        let mut nodes = Vec::new();
        walk(&indices, height, |level, pos| {
            // The sibling of `pos` sits on the path of every write below `pos`.
            let below = entries
                .iter()
                .find(|e| position(e) >> level == pos)
                .and_then(|e| e.sig.proof.as_ref())
                .expect("a known position has a write below it");
            let at = level * NODE_LEN;
            nodes.extend_from_slice(&below.path[at..at + NODE_LEN]);
        });
        for e in &mut entries {
            e.sig = Signature::default();
        }
        Self {
            key,
            sig,
            height: height as u8,
            indices: indices.iter().map(|&i| i as u8).collect(),
            entries,
            nodes,
        }
    }

    /// Bytes of hashes a run of writes at `indices` (ascending) of a tree of `height`
    /// carries: its size without building it.
    pub fn nodes_len(indices: &[u32], height: usize) -> usize {
        let mut n = 0;
        walk(indices, height, |_, _| n += NODE_LEN);
        n
    }

    /// Each write with its signature and full path again. The paths are computed, not
    /// checked: a made-up hash or an altered write fails at the signature check.
    pub fn unpack(self) -> Result<Vec<Entry>, StateError> {
        let height = usize::from(self.height);
        if height > MAX_BATCH_HEIGHT || self.entries.is_empty() {
            return Err(StateError::Malformed("run height or size"));
        }
        if self.indices.len() != self.entries.len()
            || self.indices.windows(2).any(|w| w[0] >= w[1])
            || self.indices.iter().any(|&i| u64::from(i) >> height != 0)
        {
            return Err(StateError::Malformed("run positions"));
        }
        if self.nodes.len() % NODE_LEN != 0 {
            return Err(StateError::Malformed("run hashes"));
        }
        if self
            .entries
            .iter()
            .any(|e| !e.siblings.is_empty() || !e.sig.is_default())
        {
            return Err(StateError::Malformed(
                "run write carries siblings or a signature",
            ));
        }
        let indices: Vec<u32> = self.indices.iter().map(|&i| u32::from(i)).collect();
        // levels[l] holds every node of level l the run knows: computed or given.
        let mut levels: Vec<BTreeMap<u32, Node>> = vec![BTreeMap::new(); height + 1];
        for (&i, e) in indices.iter().zip(&self.entries) {
            let bytes = signed_bytes(&e.key, e.value.as_deref(), &e.vv, e.hlc, &e.writer);
            levels[0].insert(i, leaf(&bytes));
        }
        let mut given = self.nodes.chunks_exact(NODE_LEN);
        let mut short = false;
        walk(&indices, height, |level, pos| match given.next() {
            Some(n) => {
                levels[level].insert(pos ^ 1, n.try_into().expect("chunks_exact"));
            }
            None => short = true,
        });
        if short || given.next().is_some() {
            return Err(StateError::Malformed("run hashes"));
        }
        for level in 0..height {
            let parents: Vec<(u32, Node)> = levels[level]
                .iter()
                .filter(|(pos, _)| *pos & 1 == 0)
                .map(|(&pos, left)| (pos >> 1, inner(left, &levels[level][&(pos ^ 1)])))
                .collect();
            levels[level + 1].extend(parents);
        }
        let mut out = self.entries;
        for (&i, e) in indices.iter().zip(&mut out) {
            let mut path = Vec::with_capacity(height * NODE_LEN);
            for (level, nodes) in levels.iter().take(height).enumerate() {
                path.extend_from_slice(&nodes[&((i >> level) ^ 1)]);
            }
            e.sig = Signature {
                key: self.key,
                bytes: self.sig.clone(),
                proof: Some(Proof { index: i, path }),
            };
        }
        Ok(out)
    }
}

/// Splits `entries` into runs (the writes of one batch, two or more) and the writes
/// that travel alone, keeping the order of each. Deterministic, so that simulated
/// exchanges replay.
pub fn group_runs(entries: Vec<Entry>) -> (Vec<SealedRun>, Vec<Entry>) {
    type Batch = (u64, Vec<u8>, usize);
    let mut batches: BTreeMap<Batch, Vec<Entry>> = BTreeMap::new();
    let mut alone = Vec::new();
    for e in entries {
        let Some(k) = RunKey::of(&e) else {
            alone.push(e);
            continue;
        };
        let batch = batches
            .entry((k.key, k.sig.to_vec(), k.height))
            .or_default();
        // Two writes at one position of one signed tree cannot both be honest (it
        // takes a hash collision), but each still travels: the second one alone.
        if batch.iter().any(|b| position(b) == position(&e)) {
            alone.push(e);
        } else {
            batch.push(e);
        }
    }
    let mut runs = Vec::new();
    for (_, batch) in batches {
        if batch.len() == 1 {
            alone.extend(batch);
        } else {
            runs.push(SealedRun::new(batch));
        }
    }
    (runs, alone)
}

fn position(e: &Entry) -> u32 {
    e.sig.proof.as_ref().map_or(0, |p| p.index)
}

/// Visits, level by level from the leaves up and left to right, each position whose
/// sibling the writes at `indices` (ascending) do not determine: the hashes a run
/// carries, in the order it carries them.
fn walk(indices: &[u32], height: usize, mut missing: impl FnMut(usize, u32)) {
    let mut known: Vec<u32> = indices.to_vec();
    for level in 0..height {
        let mut parents = Vec::with_capacity(known.len());
        for (n, &pos) in known.iter().enumerate() {
            let paired = if pos & 1 == 0 {
                known.get(n + 1) == Some(&(pos | 1))
            } else {
                n > 0 && known[n - 1] == pos & !1
            };
            if !paired {
                missing(level, pos);
            }
            if parents.last() != Some(&(pos >> 1)) {
                parents.push(pos >> 1);
            }
        }
        known = parents;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::batch_proof::sign_batch;
    use crate::core::state::{Hlc, VersionVector, Write};
    use crate::core::NodeId;

    fn batch(n: usize) -> Vec<Entry> {
        let w = NodeId::new("w").unwrap();
        let mut writes: Vec<(String, Write)> = (0..n)
            .map(|i| {
                let mut vv = VersionVector::new();
                vv.set(w.clone(), i as u64 + 1);
                let write = Write {
                    value: Some(vec![i as u8; 10]),
                    vv,
                    hlc: Hlc {
                        ms: 7,
                        lc: i as u32,
                    },
                    writer: w.clone(),
                    sig: Signature::default(),
                };
                (format!("k{i}"), write)
            })
            .collect();
        sign_batch(&mut writes, |_| Signature {
            key: 9,
            bytes: vec![1; 64],
            proof: None,
        });
        writes
            .into_iter()
            .map(|(key, w)| Entry::from_writes(&key, vec![w]))
            .collect()
    }

    #[test]
    fn every_subset_of_a_batch_comes_back_with_its_own_signature_and_path() {
        for n in [1, 2, 3, 5, 8, 13, 64] {
            let all = batch(n);
            for start in 0..n {
                for len in 1..=(n - start).min(9) {
                    let part: Vec<Entry> = all[start..start + len].to_vec();
                    let run = SealedRun::new(part.clone());
                    let idx: Vec<u32> = (start..start + len).map(|i| i as u32).collect();
                    let height = n.next_power_of_two().trailing_zeros() as usize;
                    assert_eq!(run.nodes.len(), SealedRun::nodes_len(&idx, height));
                    assert_eq!(run.unpack().unwrap(), part, "batch {n}, {start}+{len}");
                }
            }
        }
    }

    #[test]
    fn scattered_writes_round_trip_and_share_what_they_can() {
        let all = batch(64);
        let part: Vec<Entry> = [0, 1, 17, 40, 63].iter().map(|&i| all[i].clone()).collect();
        let run = SealedRun::new(part.clone());
        assert!(run.nodes.len() < 5 * 6 * NODE_LEN);
        assert_eq!(run.unpack().unwrap(), part);
        // Two neighbours need four hashes (levels 1..5), one write alone six.
        let pair = SealedRun::new(all[..2].to_vec());
        assert_eq!(pair.nodes.len(), 5 * NODE_LEN);
    }

    #[test]
    fn a_changed_hash_or_write_leads_to_another_root() {
        let all = batch(8);
        let part = all[2..5].to_vec();
        let root = |e: &Entry| {
            let w = &e.writes()[0];
            w.signed_message(&e.key).unwrap()
        };
        let good = root(&part[0]);
        let mut bent = SealedRun::new(part.clone());
        bent.nodes[3] ^= 1;
        assert!(bent.unpack().unwrap().iter().any(|e| root(e) != good));
        let mut altered = SealedRun::new(part);
        altered.entries[1].value = Some(b"forged".to_vec());
        let out = altered.unpack().unwrap();
        assert_ne!(root(&out[1]), good);
    }

    #[test]
    fn grouping_keeps_every_write_and_runs_only_what_shares_a_batch() {
        let (a, b) = (batch(5), batch(3));
        let mut single = batch(1);
        let mut unsigned = a[0].clone();
        unsigned.sig = Signature::default();
        unsigned.key = "plain".into();
        let mut all = vec![a[0].clone(), unsigned.clone(), b[1].clone(), a[3].clone()];
        all.append(&mut single);
        // `batch` signs every batch with the same bytes: make b's differ.
        all[2].sig.bytes[0] ^= 1;
        // A second write claiming a position already taken travels alone.
        let mut twin = a[3].clone();
        twin.key = "twin".into();
        all.push(twin.clone());
        let (runs, alone) = group_runs(all.clone());
        assert!(alone.contains(&twin));
        assert_eq!(runs.len(), 1);
        let ran = runs[0].clone().unpack().unwrap();
        assert_eq!(ran, vec![a[0].clone(), a[3].clone()]);
        assert_eq!(alone.len(), 4);
        assert!(alone.contains(&unsigned) && alone.contains(&all[2]));
    }

    #[test]
    fn malformed_runs_are_refused() {
        let run = SealedRun::new(batch(8)[1..4].to_vec());
        let mut cases = Vec::new();
        let mut r = run.clone();
        r.indices.swap(0, 1);
        cases.push(r);
        let mut r = run.clone();
        r.indices[2] = 8;
        cases.push(r);
        let mut r = run.clone();
        r.nodes.pop();
        cases.push(r);
        let mut r = run.clone();
        r.nodes.extend_from_slice(&[0; NODE_LEN]);
        cases.push(r);
        let mut r = run.clone();
        r.nodes.truncate(NODE_LEN);
        cases.push(r);
        let mut r = run.clone();
        r.entries.pop();
        cases.push(r);
        let mut r = run.clone();
        r.height = MAX_BATCH_HEIGHT as u8 + 1;
        cases.push(r);
        let mut r = run.clone();
        r.entries[0].sig.key = 3;
        cases.push(r);
        for (n, bad) in cases.into_iter().enumerate() {
            assert!(bad.unpack().is_err(), "case {n}");
        }
    }
}
