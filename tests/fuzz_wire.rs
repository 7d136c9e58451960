//! Proptest-driven fuzzing of every decoder a peer's bytes reach: datagrams
//! (`wire::decode_datagram`), reliable uni streams (`transport::decode_reliable_stream`,
//! `wire::decode_reliable`), sync frames (`wire::frame_len`, `wire::decode_frame`) and the
//! sync stream reader (`transport::read_frame_from`).
//!
//! Inputs are valid encodings of every message type (generated), the same after 1 to 4
//! random mutations (bit flips, interesting bytes, insertions, deletions, truncation,
//! duplication, huge CBOR lengths, splices of two messages), and plain random bytes: about
//! 700,000 in all (at least 100,000 are required), a few seconds in a release build. Each
//! input goes through every decoder. The test fails on a panic, on a decoder taking more
//! than [`SLOW`] (a hang ends the batch after [`HANG`]), and on any decode allocating more
//! than its budget (a counting allocator measures the peak bytes live during each decode).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gossamer::core::events::UserEvent;
use gossamer::core::proto::{
    Datagram, Item, MemberInfo, MemberState, MemberStatus, SyncFrame, SyncKind,
};
use gossamer::core::queries::{Query, QueryFilter};
use gossamer::core::state::{
    CausalContext, Entry, Hlc, Proof, RangeSet, SealedRun, Signature, VersionVector, Write,
};
use gossamer::core::NodeId;
use gossamer::{transport, wire};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ----- allocation accounting (per thread, only while measuring) -----

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            let live = LIVE.with(|l| {
                let v = l.get() + size;
                l.set(v);
                v
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

fn on_free(size: usize) {
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            LIVE.with(|l| l.set(l.get().saturating_sub(size)));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping only
// touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the peak bytes it had allocated at once.
fn measured<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, PEAK.with(|p| p.get()))
}

// ----- limits -----

/// A single decode slower than this fails the test.
const SLOW: Duration = Duration::from_millis(500);
/// A batch that does not finish in this time is reported as a hang.
const HANG: Duration = Duration::from_secs(60);

/// Bytes a decode may have live at once for an input of `len` bytes. Decoded structures are
/// larger than their encoding (a 3-byte CBOR entry becomes a 100-byte struct), so the budget
/// grows with the input, but never with a length the input merely declares. The constant
/// part covers serde's speculative preallocation for a sequence whose declared length the
/// input cannot back: capped at 1 MiB per sequence, and only the innermost unfinished one of
/// each nesting level is outstanding (our messages nest at most two sequences).
fn budget(len: usize) -> usize {
    2 * 1024 * 1024 + 256 * 1024 + 256 * len
}

/// The largest peak allocation seen in any decode, in bytes.
static WORST_PEAK: AtomicU64 = AtomicU64::new(0);

// ----- the decoders -----

fn runtime() -> &'static tokio::runtime::Runtime {
    thread_local! {
        static RT: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread().build().unwrap(),
        ));
    }
    RT.with(|r| *r)
}

/// Feeds `bytes` to every decoder, checking time and memory of each.
fn decode_everything(bytes: &[u8]) {
    let check = |what: &str, (_, peak): ((), usize), start: Instant| {
        let took = start.elapsed();
        assert!(
            took < SLOW,
            "{what} took {took:?} on {} bytes: {}",
            bytes.len(),
            hex(bytes)
        );
        assert!(
            peak <= budget(bytes.len()),
            "{what} allocated {peak} bytes at once for {} input bytes: {}",
            bytes.len(),
            hex(bytes)
        );
        WORST_PEAK.fetch_max(peak as u64, Ordering::Relaxed);
    };
    let t = Instant::now();
    check(
        "decode_datagram + unpack runs",
        measured(|| {
            // A run's paths are computed from the peer's bytes: that must not panic either.
            for item in wire::decode_datagram(bytes).map_or(Vec::new(), |d| d.items) {
                if let Item::TreeRun { run, .. } | Item::DeltaRun(run) = item {
                    drop(run.unpack());
                }
            }
        }),
        t,
    );
    let t = Instant::now();
    check(
        "decode_reliable",
        measured(|| drop(wire::decode_reliable(bytes))),
        t,
    );
    let t = Instant::now();
    check(
        "decode_reliable_stream",
        measured(|| drop(transport::decode_reliable_stream(bytes))),
        t,
    );
    let t = Instant::now();
    check(
        "frame_len + decode_frame",
        measured(|| {
            if bytes.len() >= 4 {
                let _ = wire::frame_len([bytes[0], bytes[1], bytes[2], bytes[3]]);
                unpack_runs(wire::decode_frame(&bytes[4..]));
            }
            unpack_runs(wire::decode_frame(bytes));
        }),
        t,
    );
    let t = Instant::now();
    let rt = runtime();
    check(
        "read_frame_from",
        measured(|| {
            rt.block_on(async {
                let mut stream = bytes;
                for _ in 0..=bytes.len() {
                    if transport::read_frame_from(&mut stream).await.is_err() {
                        break;
                    }
                }
            })
        }),
        t,
    );
}

/// Recomputes the paths of a decoded frame's runs, as the receiver does.
fn unpack_runs(frame: Result<SyncFrame, wire::WireError>) {
    if let Ok(SyncFrame::Sealed(runs)) = frame {
        for run in runs {
            drop(run.unpack());
        }
    }
}

/// Runs `batch` on its own thread, failing if it panics or does not finish within [`HANG`].
fn guarded(label: String, batch: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(label.clone())
        .spawn(move || {
            batch();
            let _ = tx.send(());
        })
        .unwrap();
    match rx.recv_timeout(HANG) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The batch panicked; re-raise its panic here.
            if let Err(p) = worker.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{label}: a decoder hung for {HANG:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().take(512).map(|x| format!("{x:02x}")).collect()
}

// ----- valid messages -----

fn node_id() -> impl Strategy<Value = NodeId> {
    "[a-z][a-z0-9-]{0,12}[a-z0-9]".prop_map(|s| NodeId::new(&s).unwrap())
}

fn signature() -> impl Strategy<Value = Signature> {
    (
        prop_oneof![Just(0), any::<u64>()],
        proptest::collection::vec(any::<u8>(), 0..70),
        proptest::option::of((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..130))),
    )
        .prop_map(|(key, bytes, proof)| Signature {
            key,
            bytes,
            proof: proof.map(|(index, path)| Proof { index, path }),
        })
}

/// A write as concurrent entries carry it (the decoder checks no structure: the store does).
fn write() -> impl Strategy<Value = Write> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        proptest::collection::btree_map(node_id(), extreme(), 0..3),
        extreme(),
        node_id(),
        signature(),
    )
        .prop_map(|(value, vv, ms, writer, sig)| Write {
            value,
            vv: vv.into_iter().collect::<VersionVector>(),
            hlc: Hlc { ms, lc: 0 },
            writer,
            sig,
        })
}

fn entry() -> impl Strategy<Value = Entry> {
    (single_entry(), proptest::collection::vec(write(), 0..3)).prop_map(|(mut e, siblings)| {
        e.siblings = siblings;
        e
    })
}

fn single_entry() -> impl Strategy<Value = Entry> {
    (
        ".{0,24}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..48)),
        proptest::collection::btree_map(node_id(), extreme(), 0..4),
        extreme(),
        prop_oneof![Just(u32::MAX), any::<u32>()],
        node_id(),
        signature(),
    )
        .prop_map(|(key, value, vv, ms, lc, writer, sig)| Entry {
            key,
            value,
            vv: vv.into_iter().collect::<VersionVector>(),
            hlc: Hlc { ms, lc },
            writer,
            sig,
            siblings: Vec::new(),
        })
}

/// A run of writes: a valid one now and then, most with made-up positions and hashes.
fn run() -> impl Strategy<Value = SealedRun> {
    (
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..70),
        0u8..10,
        proptest::collection::vec(any::<u8>(), 0..6),
        proptest::collection::vec(single_entry(), 0..6),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(key, sig, height, mut indices, entries, nodes)| {
            indices.sort_unstable();
            indices.dedup();
            let entries = entries
                .into_iter()
                .map(|e| Entry {
                    sig: Signature::default(),
                    ..e
                })
                .collect();
            SealedRun {
                key,
                sig,
                height,
                indices,
                entries,
                nodes,
            }
        })
}

fn member() -> impl Strategy<Value = MemberState> {
    (
        node_id(),
        "[0-9.:a-z]{0,21}",
        "[a-z0-9]{0,8}",
        "[a-z0-9]{0,8}",
        proptest::collection::btree_map("[a-z]{1,6}", ".{0,8}", 0..3),
        any::<u64>(),
        prop_oneof![
            Just(MemberStatus::Alive),
            Just(MemberStatus::Suspect),
            Just(MemberStatus::Dead),
            Just(MemberStatus::Left),
        ],
    )
        .prop_map(
            |(id, addr, dc, zone, tags, incarnation, status)| MemberState {
                info: MemberInfo {
                    id,
                    addr,
                    dc,
                    zone,
                    tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
                }
                .into(),
                incarnation,
                status,
            },
        )
}

fn user_event() -> impl Strategy<Value = UserEvent> {
    (
        node_id(),
        extreme(),
        "[a-z./-]{0,140}",
        proptest::collection::vec(any::<u8>(), 0..300),
        signature(),
    )
        .prop_map(|(sender, seq, name, payload, sig)| UserEvent {
            sender,
            seq,
            name,
            payload,
            sig: Signature { proof: None, ..sig },
        })
}

fn query() -> impl Strategy<Value = Query> {
    (
        user_event(),
        proptest::collection::btree_map("[a-z]{0,20}", "[a-z]{0,20}", 0..20),
        proptest::option::of("[a-z-]{0,20}"),
        proptest::collection::vec(node_id(), 0..70),
        extreme(),
    )
        .prop_map(|(e, tags, dc, nodes, timeout_ms)| Query {
            asker: e.sender,
            seq: e.seq,
            name: e.name,
            payload: e.payload,
            filter: QueryFilter { tags, dc, nodes },
            timeout_ms,
            sig: e.sig,
        })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        entry().prop_map(Item::Delta),
        member().prop_map(Item::Member),
        any::<u64>().prop_map(|seq| Item::Ping { seq }),
        any::<u64>().prop_map(|seq| Item::Ack { seq }),
        (any::<u64>(), node_id()).prop_map(|(seq, target)| Item::PingReq { seq, target }),
        any::<u64>().prop_map(|seq| Item::Nack { seq }),
        (entry(), node_id()).prop_map(|(entry, until)| Item::Tree { entry, until }),
        (run(), node_id()).prop_map(|(run, until)| Item::TreeRun { run, until }),
        run().prop_map(Item::DeltaRun),
        (user_event(), proptest::option::of(node_id()))
            .prop_map(|(event, until)| Item::Event { event, until }),
        (node_id(), extreme()).prop_map(|(sender, seq)| Item::EventHave { sender, seq }),
        (node_id(), extreme()).prop_map(|(sender, seq)| Item::EventPull { sender, seq }),
        (query(), proptest::option::of(node_id()))
            .prop_map(|(query, until)| Item::Query { query, until }),
        (node_id(), extreme()).prop_map(|(asker, seq)| Item::QueryAck { asker, seq }),
        (
            node_id(),
            extreme(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(asker, seq, payload)| Item::QueryResponse {
                asker,
                seq,
                payload
            }),
        (node_id(), any::<u64>(), node_id()).prop_map(|(id, incarnation, accuser)| {
            Item::Suspect {
                id,
                incarnation,
                accuser,
            }
        }),
    ]
}

fn datagram() -> impl Strategy<Value = Datagram> {
    proptest::collection::vec(item(), 0..8).prop_map(|items| Datagram { items })
}

/// A counter or stamp: small, near the top of the range, or anywhere (hostile peers
/// send the extremes: #16, finding 5).
fn extreme() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..1_000_000,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1u64 << 63),
        any::<u64>(),
    ]
}

fn context() -> impl Strategy<Value = CausalContext> {
    proptest::collection::btree_map(
        node_id(),
        proptest::collection::vec((extreme(), extreme()), 0..6),
        0..4,
    )
    .prop_map(|m| {
        // A context never names a writer without dots (the decoder drops such entries), so
        // the generator does not make them either.
        CausalContext(
            m.into_iter()
                .map(|(k, v)| (k, RangeSet::from_ranges(v)))
                .filter(|(_, r)| !r.is_empty())
                .collect(),
        )
    })
}

fn frame() -> impl Strategy<Value = SyncFrame> {
    prop_oneof![
        (
            prop_oneof![Just(SyncKind::Join), Just(SyncKind::Periodic)],
            context(),
            any::<u64>(),
            context(),
            any::<u64>(),
            any::<bool>(),
            any::<u8>(),
            (
                proptest::option::of(any::<[u8; 16]>()),
                any::<bool>(),
                any::<bool>()
            )
        )
            .prop_map(
                |(
                    kind,
                    ctx,
                    gc_horizon_ms,
                    stable,
                    members_digest,
                    compact,
                    same,
                    (digest, again, reads_held),
                )| {
                    SyncFrame::Open {
                        kind,
                        ctx,
                        gc_horizon_ms,
                        stable,
                        members_digest,
                        compact,
                        same,
                        digest: digest.map(serde_bytes::ByteArray::new),
                        again,
                        reads_held,
                    }
                }
            ),
        proptest::collection::vec(member(), 0..4).prop_map(SyncFrame::Members),
        proptest::collection::vec(entry(), 0..4).prop_map(SyncFrame::Entries),
        proptest::collection::vec(run(), 0..3).prop_map(SyncFrame::Sealed),
        Just(SyncFrame::Held),
        Just(SyncFrame::End),
    ]
}

// ----- mutations -----

const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x3f, 0x40, 0x5b, 0x5f, 0x7b, 0x7f, 0x80, 0x9b,
    0x9f, 0xa0, 0xbb, 0xbf, 0xc0, 0xd8, 0xf4, 0xf5, 0xf6, 0xf7, 0xfb, 0xff,
];

/// Applies 1 to 4 random mutations to `b`; `other` is another valid encoding to splice in.
fn mutate(rng: &mut ChaCha8Rng, b: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=8);
                let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(i..i, ins);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let j = rng.random_range(i..=len.min(i + 16));
                b.drain(i..j);
            }
            4 => b.truncate(rng.random_range(0..=len)),
            5 if len > 0 => {
                let i = rng.random_range(0..len);
                let j = rng.random_range(i..=len);
                let dup = b[i..j].to_vec();
                let at = rng.random_range(0..=b.len());
                b.splice(at..at, dup);
            }
            6 => {
                // A CBOR head declaring a huge byte string, text, array or map.
                let major = [0x5b, 0x7b, 0x9b, 0xbb][rng.random_range(0..4)];
                let mut head = vec![major];
                let n: u64 = [u64::MAX, 1 << 32, 1 << 20, 65_536][rng.random_range(0..4)];
                head.extend_from_slice(&n.to_be_bytes());
                let i = rng.random_range(0..=len);
                b.splice(i..i, head);
            }
            7 if !other.is_empty() => {
                let i = rng.random_range(0..=len);
                let j = rng.random_range(0..other.len());
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            8 if len >= 4 => {
                // A length prefix (frames) or the version byte.
                let v: u32 =
                    [0, 1, 4 * 1024 * 1024, u32::MAX, rng.random()][rng.random_range(0..5)];
                if rng.random_bool(0.5) {
                    b[..4].copy_from_slice(&v.to_be_bytes());
                } else {
                    b[0] = rng.random();
                }
            }
            _ => {
                let i = rng.random_range(0..=len);
                b.insert(i, rng.random());
            }
        }
    }
}

/// Mutated variants per generated message set.
const MUTANTS: usize = 64;

/// Checks the valid encodings of `d` and `f`, then decodes them and [`MUTANTS`] mutations
/// with every decoder. Returns the number of inputs decoded.
fn fuzz_case(d: Datagram, f: SyncFrame, seed: u64) -> u64 {
    // The valid encodings decode back to what was encoded.
    let dg = wire::encode_datagram(&d);
    assert_eq!(wire::decode_datagram(&dg).unwrap(), d);
    let rel = wire::encode_reliable(&d);
    assert_eq!(transport::decode_reliable_stream(&rel).unwrap(), d);
    let fr = wire::encode_frame(&f);
    assert_eq!(wire::decode_frame(&fr[4..]).unwrap(), f);
    let mut stream = fr.clone();
    stream.extend_from_slice(&wire::encode_frame(&SyncFrame::End));
    for bytes in [&dg, &rel, &fr, &stream] {
        decode_everything(bytes);
    }
    let sources = [dg, rel, fr, stream];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for k in 0..MUTANTS {
        let mut b = sources[k % sources.len()].clone();
        let other = &sources[rng.random_range(0..sources.len())];
        mutate(&mut rng, &mut b, other);
        decode_everything(&b);
    }
    (sources.len() + MUTANTS) as u64
}

/// Message sets generated by [`mutated_messages_never_panic_hang_or_overallocate`].
const CASES: u32 = 10_000;

/// 10,000 generated message sets × (4 valid + 64 mutated encodings) = 680,000 inputs, each
/// through every decoder (a few seconds in release builds).
#[test]
fn mutated_messages_never_panic_hang_or_overallocate() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let inputs = std::sync::Arc::new(AtomicU64::new(0));
    let counter = inputs.clone();
    let start = Instant::now();
    runner
        .run(&(datagram(), frame(), any::<u64>()), move |(d, f, seed)| {
            let c = counter.clone();
            guarded(format!("mutations of seed {seed}"), move || {
                c.fetch_add(fuzz_case(d, f, seed), Ordering::Relaxed);
            });
            Ok(())
        })
        .unwrap();
    let total = inputs.load(Ordering::Relaxed);
    println!(
        "{total} inputs through every decoder in {:?}; largest peak allocation of one decode: {} bytes",
        start.elapsed(),
        WORST_PEAK.load(Ordering::Relaxed)
    );
    assert!(total >= 100_000, "only {total} inputs ran");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Random bytes, some behind a valid version byte or frame header: 400 × 48 inputs.
    #[test]
    fn random_bytes_never_panic_hang_or_overallocate(seed in any::<u64>()) {
        guarded(format!("random bytes of seed {seed}"), move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for _ in 0..16 {
                let len = rng.random_range(0..256);
                let mut b = vec![0u8; len];
                rng.fill_bytes(&mut b);
                decode_everything(&b);
                if !b.is_empty() {
                    b[0] = wire::PROTOCOL_VERSION;
                }
                decode_everything(&b);
                let mut framed = (b.len() as u32).to_be_bytes().to_vec();
                framed.extend_from_slice(&b);
                decode_everything(&framed);
            }
        });
    }
}

/// Hand-made hostile inputs: declared lengths far beyond the input, deep nesting,
/// oversized frames and datagrams.
#[test]
fn crafted_hostile_inputs_are_refused_cheaply() {
    let v = wire::PROTOCOL_VERSION;
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![v],
        vec![v, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // bytes(2^64-1)
        vec![v, 0x9b, 0, 0, 0, 1, 0, 0, 0, 0],                         // array(2^32)
        vec![v, 0xbb, 0, 0, 0, 0, 0x10, 0, 0, 0],                      // map(2^28)
        vec![v, 0x7a, 0xff, 0xff, 0xff, 0xff],                         // text(2^32-1)
        std::iter::once(v).chain([0x9f; 4096]).collect(),              // deep indefinite arrays
        std::iter::once(v).chain([0x81; 4096]).collect(),              // deep definite arrays
        std::iter::once(v)
            .chain([0xa1, 0x00].repeat(2048))
            .collect(), // deep maps
        vec![0; wire::MAX_DATAGRAM + 1],
        std::iter::once(v)
            .chain(std::iter::repeat_n(0xc6, 10_000)) // 10,000 nested tags
            .chain([0x00])
            .collect(),
    ];
    // Frame headers declaring up to the limit, and past it, over a tiny body.
    for declared in [1u32, 5, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, u32::MAX] {
        let mut f = declared.to_be_bytes().to_vec();
        f.extend_from_slice(&[v, 0xf6]);
        cases.push(f);
    }
    for c in &cases {
        decode_everything(c);
    }
    assert!(wire::decode_datagram(&vec![v; wire::MAX_DATAGRAM + 1]).is_err());
    assert!(wire::frame_len((wire::MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
    assert!(wire::frame_len(0u32.to_be_bytes()).is_err());
    // A frame declared at the maximum but cut short costs a fraction of the maximum.
    let mut short = (wire::MAX_FRAME as u32).to_be_bytes().to_vec();
    short.extend_from_slice(&[v; 100]);
    let (r, peak) = measured(|| {
        runtime().block_on(async {
            let mut s = &short[..];
            transport::read_frame_from(&mut s).await.map(|_| ())
        })
    });
    assert!(r.is_err());
    assert!(
        peak <= 128 * 1024,
        "a truncated 4 MiB frame allocated {peak} bytes"
    );
}

/// Writes seed corpora for the cargo-fuzz targets (valid encodings of every message type)
/// into `fuzz/corpus/<target>/`. Not part of the normal run:
/// `cargo test --release --test fuzz_wire write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let dirs = [
        "decode_datagram",
        "decode_frame",
        "read_sync_stream",
        "decode_reliable",
    ];
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for i in 0..64 {
        let d = datagram().new_tree(&mut runner).unwrap().current();
        let f = frame().new_tree(&mut runner).unwrap().current();
        let mut stream = wire::encode_frame(&f);
        stream.extend_from_slice(&wire::encode_frame(&SyncFrame::End));
        let seeds = [
            wire::encode_datagram(&d),
            wire::encode_frame(&f),
            stream,
            wire::encode_reliable(&d),
        ];
        for (dir, bytes) in dirs.iter().zip(seeds) {
            std::fs::write(root.join(dir).join(format!("seed-{i:03}")), bytes).unwrap();
        }
    }
    println!("seeds written under {}", root.display());
}
