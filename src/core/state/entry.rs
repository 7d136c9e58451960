//! One key's replicated value, the limits every entry must keep, and the merge of two
//! versions of a key.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::{Causality, Hlc, Signature, VersionVector, Write, MAX_SIGNATURE_LEN};
use crate::core::NodeId;

/// Limits on what the store accepts: sizes of keys, values and version vectors, and how
/// far ahead of our wall clock a stamp may be. Enforced on local writes and on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Maximum key length in bytes.
    pub max_key_len: usize,
    /// Maximum value length in bytes.
    pub max_value_len: usize,
    /// Maximum number of writers named in one entry's version vector.
    pub max_vv_len: usize,
    /// Stamps further than this (ms) ahead of our wall clock move our clock only up to
    /// the bound (the entry is kept), so one node with a wrong clock cannot drag every
    /// node's stamps forward.
    pub max_clock_drift_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_len: 512,
            max_value_len: 256 * 1024,
            max_vv_len: 1024,
            max_clock_drift_ms: 60_000,
        }
    }
}

/// Most concurrent writes one entry keeps. More writers than this writing one key at
/// once make an entry every peer refuses (an open limit, ARCHITECTURE.md "Data model").
pub const MAX_SIBLINGS: usize = 256;

/// Most version-vector items across an entry's concurrent writes (bounds the cost of
/// checking them, siblings² × vector length, on hostile input).
pub const MAX_SIBLING_DOTS: usize = 65_536;

/// Errors from the store; none of them changes the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key is empty or longer than the limit.
    #[error("key must be 1 to {max} bytes long (got {len})")]
    KeyLength {
        /// Length seen.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The key holds a control character (NUL, CR, LF, ...): it would break every
    /// line-based listing and log of it.
    #[error("key must not contain control characters (found {found:?} at byte {at})")]
    KeyControl {
        /// The character.
        found: char,
        /// Its byte offset in the key.
        at: usize,
    },
    /// The value is longer than the limit.
    #[error("value must be at most {max} bytes long (got {len})")]
    ValueLength {
        /// Length seen.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The version vector names too many writers (hostile or corrupt input).
    #[error("version vector names {len} writers, more than the limit {max}")]
    VersionVectorTooLong {
        /// Writers named.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// An entry with an empty version vector cannot come from any write.
    #[error("entry has an empty version vector")]
    EmptyVersionVector,
    /// The entry names a dot of ours that no life of ours can have issued.
    #[error("entry names our dot {counter}, which we cannot have issued")]
    ForgedOwnDot {
        /// The dot counter named.
        counter: u64,
    },
    /// This node may not write the key, or a peer's write was refused.
    #[error("{0}")]
    Refused(crate::core::authority::Refusal),
    /// The entry's structure is inconsistent (hostile or corrupt input).
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
    /// This node has issued the largest dot counter there is.
    #[error("this node's dot counters are exhausted")]
    CountersExhausted,
    /// The next dot is above the durable dot lease: the write must wait until the
    /// lease extension it asked for is committed (see `Store::lease_durable`).
    #[error("dot counter {counter} would pass the durable lease end {lease_end}; retry after the next commit")]
    LeaseExhausted {
        /// The counter now.
        counter: u64,
        /// The durable lease end.
        lease_end: u64,
    },
}

/// One key's replicated value: a value or a tombstone, with its causal metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value; `None` is a tombstone (a delete).
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// Every write folded into this entry.
    pub vv: VersionVector,
    /// HLC stamp of the winning write (the maximum stamp folded in).
    pub hlc: Hlc,
    /// Node that made the winning write.
    pub writer: NodeId,
    /// The winning write's signature.
    #[serde(default, skip_serializing_if = "Signature::is_default")]
    pub sig: Signature,
    /// Empty for one write (then `vv` is that write's own vector). After concurrent
    /// writes met: every write no other supersedes, the winner included, so that every
    /// replica resolves them alike and `vv` is exactly the join of signed vectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<Write>,
}

impl Entry {
    /// True for a delete marker.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Checks the entry against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<(), StateError> {
        if self.key.is_empty() || self.key.len() > limits.max_key_len {
            return Err(StateError::KeyLength {
                len: self.key.len(),
                max: limits.max_key_len,
            });
        }
        if let Some(v) = &self.value {
            if v.len() > limits.max_value_len {
                return Err(StateError::ValueLength {
                    len: v.len(),
                    max: limits.max_value_len,
                });
            }
        }
        if self.vv.len() > limits.max_vv_len {
            return Err(StateError::VersionVectorTooLong {
                len: self.vv.len(),
                max: limits.max_vv_len,
            });
        }
        if self.vv.dots().next().is_none() {
            return Err(StateError::EmptyVersionVector);
        }
        if !signature_fits(&self.sig) {
            return Err(StateError::Malformed(
                "signature too long or batch proof malformed",
            ));
        }
        if !self.siblings.is_empty() {
            self.validate_siblings(limits)?;
        }
        Ok(())
    }

    /// Concurrent writes must be what [`Entry::from_writes`] makes of them: at least
    /// two, none superseding another, the shown write the highest-ranked, the vector
    /// their join. Anything else would resolve differently on different replicas.
    fn validate_siblings(&self, limits: &Limits) -> Result<(), StateError> {
        if self.siblings.len() < 2 || self.siblings.len() > MAX_SIBLINGS {
            return Err(StateError::Malformed("sibling count"));
        }
        // Rebuilding costs siblings² × vector length: bound the vectors' total too.
        let dots: usize = self.siblings.iter().map(|w| w.vv.len()).sum();
        if dots > MAX_SIBLING_DOTS {
            return Err(StateError::Malformed("siblings name too many dots"));
        }
        for w in &self.siblings {
            if !signature_fits(&w.sig) || w.vv.len() > limits.max_vv_len {
                return Err(StateError::Malformed("sibling too large"));
            }
            if let Some(v) = &w.value {
                if v.len() > limits.max_value_len {
                    return Err(StateError::Malformed("sibling value too long"));
                }
            }
        }
        let rebuilt = Entry::from_writes(&self.key, self.siblings.clone());
        if rebuilt != *self {
            return Err(StateError::Malformed("siblings do not make this entry"));
        }
        Ok(())
    }

    /// The dots of the writes this entry holds (each write's own dot). Holding the entry
    /// is evidence of these only: every other dot its vector names is a superseded
    /// write, known from one writer's word about another's, which a compromised writer
    /// can make up.
    pub fn own_dots(&self) -> impl Iterator<Item = (&NodeId, u64)> + '_ {
        let single = self
            .siblings
            .is_empty()
            .then(|| (&self.writer, self.vv.get(&self.writer)));
        single
            .into_iter()
            .chain(self.siblings.iter().map(Write::dot))
    }

    /// Every write this entry holds: one, or the concurrent siblings.
    pub fn writes(&self) -> Vec<Write> {
        if !self.siblings.is_empty() {
            return self.siblings.clone();
        }
        vec![Write {
            value: self.value.clone(),
            vv: self.vv.clone(),
            hlc: self.hlc,
            writer: self.writer.clone(),
            sig: self.sig.clone(),
        }]
    }

    /// The entry for a set of writes of `key` (not empty): drops every write another
    /// one supersedes, shows the highest-ranked of the rest and joins their vectors.
    /// Order-insensitive, so any replica merging the same writes gets the same entry.
    pub fn from_writes(key: &str, mut writes: Vec<Write>) -> Entry {
        writes.sort_by(|a, b| rank(b).cmp(&rank(a)).then_with(|| b.vv.cmp(&a.vv)));
        writes.dedup();
        let maximal: Vec<Write> = writes
            .iter()
            .filter(|w| {
                !writes
                    .iter()
                    .any(|o| o.vv.compare(&w.vv) == Causality::Dominates)
            })
            .cloned()
            .collect();
        let mut vv = VersionVector::new();
        for w in &maximal {
            vv.join(&w.vv);
        }
        let mut it = maximal.into_iter();
        let top = it.next().expect("from_writes needs at least one write");
        let rest: Vec<Write> = it.collect();
        let siblings = if rest.is_empty() {
            Vec::new()
        } else {
            std::iter::once(top.clone()).chain(rest).collect()
        };
        Entry {
            key: key.to_string(),
            value: top.value,
            vv,
            hlc: top.hlc,
            writer: top.writer,
            sig: top.sig,
            siblings,
        }
    }

    /// Total order used to break ties deterministically: (hlc, writer, value).
    fn rank_cmp(&self, other: &Entry) -> Ordering {
        (self.hlc, &self.writer, &self.value).cmp(&(other.hlc, &other.writer, &other.value))
    }
}

/// Whether a peer's signature has a size and, if batched, a proof shape we accept.
fn signature_fits(sig: &Signature) -> bool {
    sig.bytes.len() <= MAX_SIGNATURE_LEN && sig.proof.as_ref().is_none_or(|p| p.is_well_formed())
}

/// The tie-break order of writes: (hlc, writer, value, signature); the signature only
/// orders forgeries that verification refuses anyway, so the order stays total.
fn rank(w: &Write) -> (Hlc, &NodeId, &Option<Vec<u8>>, &[u8]) {
    (w.hlc, &w.writer, &w.value, &w.sig.bytes)
}

/// Result of [`merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The local entry stands.
    KeepLocal,
    /// The remote entry replaces the local one.
    TakeRemote,
    /// Concurrent writes: this entry (every write neither side supersedes, the highest
    /// ranked shown, the joined version vector) replaces local.
    Conflict(Entry),
}

/// Merges a remote entry into a local one (DESIGN.md section 2).
///
/// A dominating version vector wins; concurrent writes keep every write neither side
/// supersedes, show the one with the larger `(hlc, writer)` and join the vectors. Equal
/// vectors keep the larger rank, so even inconsistent inputs resolve identically
/// everywhere.
pub fn merge(local: &Entry, remote: &Entry) -> Merged {
    match remote.vv.compare(&local.vv) {
        // Joined vectors can dominate without any one write superseding each of the
        // other side's (hostile vectors): then the writes are merged one by one.
        Causality::Dominates if supersedes(remote, local) => Merged::TakeRemote,
        Causality::DominatedBy if supersedes(local, remote) => Merged::KeepLocal,
        Causality::Equal => {
            if remote.rank_cmp(local) == Ordering::Greater {
                Merged::TakeRemote
            } else {
                Merged::KeepLocal
            }
        }
        Causality::Dominates | Causality::DominatedBy | Causality::Concurrent => {
            let mut writes = local.writes();
            writes.extend(remote.writes());
            Merged::Conflict(Entry::from_writes(&local.key, writes))
        }
    }
}

/// Whether every write of `b` is superseded by (or is) some write of `a`.
fn supersedes(a: &Entry, b: &Entry) -> bool {
    let (ours, theirs) = (write_vvs(a), write_vvs(b));
    theirs.iter().all(|t| {
        ours.iter()
            .any(|o| matches!(o.compare(t), Causality::Dominates | Causality::Equal))
    })
}

/// The version vectors of an entry's writes.
fn write_vvs(e: &Entry) -> Vec<&VersionVector> {
    if e.siblings.is_empty() {
        vec![&e.vv]
    } else {
        e.siblings.iter().map(|w| &w.vv).collect()
    }
}
