//! The items for one peer cut into datagrams. Consecutive writes of one signed batch
//! (tree pushes with the same span, or deltas such as graft answers) travel as one
//! [`SealedRun`], so a burst pays its signature and its shared path hashes once per
//! datagram instead of once per write.

use crate::core::proto::{encoded_len, Item, DATAGRAM_OVERHEAD};
use crate::core::state::{Entry, RunKey, SealedRun, Signature};
use crate::core::NodeId;

/// Most bytes a run's framing adds to its writes, signature, positions and hashes (item
/// and field names, integers, array and byte-string headers): an upper bound, so that a
/// datagram sized with it never exceeds its limit (`the_size_bound_holds` checks it).
const RUN_FRAMING: usize = 96;

/// Datagrams for one child.
#[derive(Debug, Default)]
pub(super) struct Packed {
    /// Datagrams sent as they are.
    pub full: Vec<Vec<Item>>,
    /// The last datagram, whose spare room the caller fills with queued gossip.
    pub last: Vec<Item>,
    /// Bytes `last` takes, datagram overhead included.
    pub last_len: usize,
    /// Items too large for any datagram: each goes alone on a reliable stream.
    pub oversized: Vec<Item>,
}

/// Writes gathered into the run being built.
struct OpenRun {
    /// The span of tree pushes; `None` for deltas.
    until: Option<NodeId>,
    entries: Vec<Entry>,
    indices: Vec<u32>,
    height: usize,
    /// Bytes of the writes without their signatures.
    body: usize,
    /// Bytes of the whole item when it holds one write (sent as a plain `Tree` item).
    single: usize,
}

impl OpenRun {
    fn start(entry: Entry, until: Option<NodeId>) -> Self {
        let proof = entry.sig.proof.as_ref().expect("a run key has a proof");
        let (index, height) = (proof.index, proof.height());
        let single = encoded_len(&alone(entry.clone(), until.clone()));
        let body = stripped_len(&entry);
        Self {
            until,
            entries: vec![entry],
            indices: vec![index],
            height,
            body,
            single,
        }
    }

    /// Whether `entry` for `until` belongs to this run.
    fn takes(&self, entry: &Entry, until: &Option<NodeId>) -> bool {
        let index = entry.sig.proof.as_ref().map(|p| p.index);
        *until == self.until
            && RunKey::of(entry) == RunKey::of(&self.entries[0])
            && !index.is_some_and(|i| self.indices.contains(&i))
    }

    /// Upper bound on the run's encoded size with one more write of `len` bytes
    /// (unsigned) at `index`.
    fn len_with(&self, len: usize, index: u32) -> usize {
        let mut indices = self.indices.clone();
        let at = indices.partition_point(|&i| i < index);
        indices.insert(at, index);
        RUN_FRAMING
            + self.until.as_ref().map_or(0, |u| u.as_str().len())
            + self.entries[0].sig.bytes.len()
            + self.body
            + len
            + indices.len()
            + SealedRun::nodes_len(&indices, self.height)
    }

    fn add(&mut self, entry: Entry, len: usize) {
        let index = entry.sig.proof.as_ref().map_or(0, |p| p.index);
        let at = self.indices.partition_point(|&i| i < index);
        self.indices.insert(at, index);
        self.body += len;
        self.entries.push(entry);
    }

    fn close(self) -> Item {
        if self.entries.len() == 1 {
            let entry = self.entries.into_iter().next().expect("one write");
            return alone(entry, self.until);
        }
        let run = SealedRun::new(self.entries);
        match self.until {
            Some(until) => Item::TreeRun { run, until },
            None => Item::DeltaRun(run),
        }
    }
}

/// The item carrying one write: a tree push for `until`, or a delta.
fn alone(entry: Entry, until: Option<NodeId>) -> Item {
    match until {
        Some(until) => Item::Tree { entry, until },
        None => Item::Delta(entry),
    }
}

/// Bytes `e` takes without its signature.
fn stripped_len(e: &Entry) -> usize {
    let bare = Entry {
        sig: Signature::default(),
        ..e.clone()
    };
    encoded_len(&bare)
}

/// Cuts `items` into datagrams of at most `max` bytes, in order.
pub(super) fn pack(items: Vec<Item>, max: usize) -> Packed {
    let mut out = Packed {
        last_len: DATAGRAM_OVERHEAD,
        ..Packed::default()
    };
    let mut open: Option<OpenRun> = None;
    for item in items {
        let (entry, until) = match item {
            Item::Tree { entry, until } if RunKey::of(&entry).is_some() => (entry, Some(until)),
            Item::Delta(entry) if RunKey::of(&entry).is_some() => (entry, None),
            other => {
                close(&mut out, &mut open, max);
                let len = encoded_len(&other);
                if len + DATAGRAM_OVERHEAD > max {
                    out.oversized.push(other);
                } else {
                    make_room(&mut out, len, max);
                    out.last_len += len;
                    out.last.push(other);
                }
                continue;
            }
        };
        if let Some(run) = open.as_mut().filter(|r| r.takes(&entry, &until)) {
            let len = stripped_len(&entry);
            let index = entry.sig.proof.as_ref().map_or(0, |p| p.index);
            if out.last_len + run.len_with(len, index) <= max {
                run.add(entry, len);
                continue;
            }
        }
        close(&mut out, &mut open, max);
        let run = OpenRun::start(entry, until);
        if run.single + DATAGRAM_OVERHEAD > max {
            out.oversized.push(run.close());
            continue;
        }
        make_room(&mut out, run.single, max);
        open = Some(run);
    }
    close(&mut out, &mut open, max);
    out
}

/// Starts a new datagram if `len` more bytes do not fit the one being filled.
fn make_room(out: &mut Packed, len: usize, max: usize) {
    if out.last_len + len > max {
        out.full.push(std::mem::take(&mut out.last));
        out.last_len = DATAGRAM_OVERHEAD;
    }
}

/// Puts the open run, if any, into the datagram being filled (it was sized to fit).
fn close(out: &mut Packed, open: &mut Option<OpenRun>, max: usize) {
    let Some(run) = open.take() else {
        return;
    };
    let item = run.close();
    out.last_len += encoded_len(&item);
    debug_assert!(out.last_len <= max, "a run outgrew its bound");
    out.last.push(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proto::Datagram;
    use crate::core::state::batch_proof::sign_batch;
    use crate::core::state::{Hlc, VersionVector, Write};

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    /// A signed batch of `count` writes by `writer` with `size`-byte values.
    fn burst(writer: &str, count: usize, size: usize) -> Vec<Entry> {
        let w = n(writer);
        let mut writes: Vec<(String, Write)> = (0..count)
            .map(|i| {
                let mut vv = VersionVector::new();
                vv.set(w.clone(), i as u64 + 1);
                let write = Write {
                    value: Some(vec![b'v'; size]),
                    vv,
                    hlc: Hlc {
                        ms: 1_000 + i as u64,
                        lc: 0,
                    },
                    writer: w.clone(),
                    sig: Signature::default(),
                };
                (format!("app/key/{i:04}"), write)
            })
            .collect();
        sign_batch(&mut writes, |_| Signature {
            key: u64::MAX,
            bytes: vec![7; 64],
            proof: None,
        });
        writes
            .into_iter()
            .map(|(key, w)| Entry::from_writes(&key, vec![w]))
            .collect()
    }

    fn tree(entries: &[Entry], until: &str) -> Vec<Item> {
        entries
            .iter()
            .map(|e| Item::Tree {
                entry: e.clone(),
                until: n(until),
            })
            .collect()
    }

    fn datagrams(p: &Packed) -> Vec<Vec<Item>> {
        let mut all = p.full.clone();
        all.push(p.last.clone());
        all
    }

    /// Every write that went in, back out, in order (runs unpacked).
    fn writes(p: &Packed) -> Vec<Entry> {
        let mut out = Vec::new();
        for item in datagrams(p)
            .into_iter()
            .flatten()
            .chain(p.oversized.clone())
        {
            match item {
                Item::Tree { entry, .. } => out.push(entry),
                Item::TreeRun { run, .. } => out.extend(run.unpack().unwrap()),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn a_burst_travels_in_fewer_and_fuller_datagrams_and_nothing_is_lost() {
        let max = 1_200;
        let entries = burst("writer-1", 64, 100);
        let alone = |strip: bool| -> usize {
            entries
                .iter()
                .map(|e| {
                    let mut entry = e.clone();
                    if strip {
                        entry.sig = Signature::default();
                    }
                    encoded_len(&Item::Tree {
                        entry,
                        until: n("z"),
                    })
                })
                .sum()
        };
        let (signed, unsigned) = (alone(false), alone(true));
        let p = pack(tree(&entries, "z"), max);
        assert!(p.oversized.is_empty());
        assert_eq!(writes(&p), entries);
        let sent: usize = datagrams(&p)
            .iter()
            .map(|d| {
                let len = encoded_len(&Datagram { items: d.clone() });
                assert!(len <= max, "datagram of {len} bytes");
                len
            })
            .sum();
        // The signature data of a burst shrinks from about 190 bytes a write to a few.
        assert!(
            sent * 4 <= unsigned * 5,
            "runs take {sent} bytes, signed writes alone {signed}, unsigned {unsigned}"
        );
    }

    #[test]
    fn the_size_bound_holds() {
        for (count, size, max) in [
            (64, 0, 1_200),
            (64, 300, 1_200),
            (7, 1, 400),
            (64, 50, 9_000),
        ] {
            let entries = burst("w", count, size);
            let p = pack(tree(&entries, "some-child-id"), max);
            for d in datagrams(&p) {
                let len = encoded_len(&Datagram { items: d });
                assert!(len <= max, "{count}×{size}: {len} > {max}");
            }
            assert_eq!(writes(&p), entries);
        }
    }

    #[test]
    fn deltas_of_one_batch_travel_as_a_delta_run() {
        let entries = burst("w", 6, 20);
        let mut items: Vec<Item> = entries.iter().cloned().map(Item::Delta).collect();
        let mut unsigned = entries[0].clone();
        unsigned.sig = Signature::default();
        items.push(Item::Delta(unsigned.clone()));
        let p = pack(items, 1_200);
        assert!(p.full.is_empty());
        assert!(matches!(&p.last[0], Item::DeltaRun(r) if r.entries.len() == 6));
        assert_eq!(p.last[1], Item::Delta(unsigned));
        let Item::DeltaRun(run) = p.last[0].clone() else {
            unreachable!()
        };
        assert_eq!(run.unpack().unwrap(), entries);
    }

    #[test]
    fn different_spans_batches_and_plain_items_break_runs_but_keep_order() {
        let a = burst("a", 4, 10);
        let b = burst("b", 4, 10);
        let mut items = tree(&a[..2], "x");
        items.extend(tree(&a[2..], "y"));
        items.push(Item::Ping { seq: 1 });
        items.extend(tree(&b, "y"));
        let p = pack(items, 1_200);
        let kinds: Vec<&str> = datagrams(&p)
            .iter()
            .flatten()
            .map(|i| match i {
                Item::TreeRun { .. } => "run",
                Item::Tree { .. } => "tree",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["run", "run", "other", "run"]);
        let mut expected = a.clone();
        expected.extend(b);
        assert_eq!(writes(&p), expected);
    }
}
