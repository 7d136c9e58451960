//! Micro-benchmarks of the sans-IO core: merge, HLC and version-vector operations, the
//! causal-context diff, CBOR encoding of datagrams and sync frames, datagram packing, and
//! an anti-entropy round over a 100,000-key state that differs by 1 %, and what signing
//! and verifying one write costs.
//!
//! Run: `cargo bench --bench core` (add `-- --quick`, or
//! `-- --warm-up-time 1 --measurement-time 3`, for a short run; a name filter such as
//! `-- sync_100k` runs one group). Numbers of a run on the project machine are in
//! BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gossamer::core::dissemination::{BroadcastQueue, Topic};
use gossamer::core::limiter::Traffic;
use gossamer::core::proto::{Datagram, Item, SyncFrame, SyncKind};
use gossamer::core::state::{merge, Entry, Hlc, HlcClock, Limits, Store, VersionVector};
use gossamer::core::NodeId;
use gossamer::wire;

/// Wall clock of every write (ms since the epoch): any fixed value will do.
const WALL_MS: u64 = 1_700_000_000_000;

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("valid node id")
}

/// A version vector naming `writers` writers `w0..`, each at counter `base + i`.
fn vv(writers: usize, base: u64) -> VersionVector {
    let mut v = VersionVector::new();
    for i in 0..writers {
        v.set(id(&format!("w{i}")), base + i as u64);
    }
    v
}

/// An entry for `key` with a 32-byte value and a 4-writer version vector.
fn entry(key: &str, counter: u64) -> Entry {
    Entry {
        key: key.to_string(),
        value: Some(vec![0xab; 32]),
        vv: vv(4, counter),
        hlc: Hlc {
            ms: WALL_MS + counter,
            lc: 0,
        },
        writer: id("w0"),
        sig: Default::default(),
        siblings: Vec::new(),
    }
}

fn bench_merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    let local = entry("k", 10);
    let newer = entry("k", 11);
    let mut concurrent = entry("k", 10);
    concurrent.vv.set(id("w0"), 5);
    concurrent.vv.set(id("w9"), 1);
    concurrent.hlc.ms += 7;
    concurrent.writer = id("w9");
    g.bench_function("dominating", |b| {
        b.iter(|| merge(black_box(&local), black_box(&newer)))
    });
    g.bench_function("concurrent", |b| {
        b.iter(|| merge(black_box(&local), black_box(&concurrent)))
    });
    g.bench_function("equal", |b| {
        b.iter(|| merge(black_box(&local), black_box(&local)))
    });
    g.finish();
}

fn bench_hlc(c: &mut Criterion) {
    let mut g = c.benchmark_group("hlc");
    g.bench_function("tick", |b| {
        let mut clock = HlcClock::new();
        let mut wall = WALL_MS;
        b.iter(|| {
            wall += 1;
            black_box(clock.tick(black_box(wall)))
        })
    });
    g.bench_function("tick_same_ms", |b| {
        let mut clock = HlcClock::new();
        b.iter(|| black_box(clock.tick(black_box(WALL_MS))))
    });
    g.bench_function("observe", |b| {
        let mut clock = HlcClock::new();
        let mut remote = Hlc { ms: WALL_MS, lc: 0 };
        b.iter(|| {
            remote.lc = remote.lc.wrapping_add(1);
            let _ = clock.observe(black_box(remote), black_box(WALL_MS), 60_000);
        })
    });
    g.finish();
}

fn bench_vv(c: &mut Criterion) {
    let mut g = c.benchmark_group("version_vector");
    for writers in [4usize, 16, 64] {
        let a = vv(writers, 100);
        let mut bigger = a.clone();
        bigger.set(id("w0"), 1_000);
        let mut concurrent = a.clone();
        concurrent.set(id("w0"), 1_000);
        concurrent.set(id(&format!("w{}", writers - 1)), 1);
        g.bench_function(format!("compare_dominated/{writers}"), |b| {
            b.iter(|| black_box(&a).compare(black_box(&bigger)))
        });
        g.bench_function(format!("compare_concurrent/{writers}"), |b| {
            b.iter(|| black_box(&a).compare(black_box(&concurrent)))
        });
        g.bench_function(format!("join/{writers}"), |b| {
            b.iter_batched_ref(
                || a.clone(),
                |x| x.join(black_box(&concurrent)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Two stores holding `keys` keys written by 10 writers; `b` lacks `missing` of them,
/// chosen evenly through the key space (so its causal context has that many gaps).
fn stores(keys: usize, missing: usize) -> (Store, Store) {
    let writers: Vec<NodeId> = (0..10).map(|i| id(&format!("w{i}"))).collect();
    let mut ws: Vec<Store> = writers
        .iter()
        .map(|w| Store::new(w.clone(), Limits::default(), 0))
        .collect();
    let mut a = Store::new(id("a"), Limits::default(), 0);
    let mut b = Store::new(id("b"), Limits::default(), 0);
    let every = keys.checked_div(missing).unwrap_or(usize::MAX);
    for k in 0..keys {
        let w = &mut ws[k % writers.len()];
        let e = w
            .write(&format!("key/{k:06}"), Some(vec![k as u8; 32]), WALL_MS)
            .expect("valid write");
        a.apply(e.clone(), WALL_MS).expect("valid entry");
        if every == usize::MAX || k % every != every / 2 {
            b.apply(e, WALL_MS).expect("valid entry");
        }
    }
    (a, b)
}

fn bench_context_diff(c: &mut Criterion) {
    let mut g = c.benchmark_group("causal_context");
    let (a, b) = stores(10_000, 100);
    g.bench_function("missing_for/10k_keys_100_missing", |bn| {
        bn.iter(|| black_box(a.missing_for(black_box(b.context()))).len())
    });
    g.bench_function("missing_for/10k_keys_equal", |bn| {
        bn.iter(|| black_box(a.missing_for(black_box(a.context()))).len())
    });
    g.bench_function("join/10_writers_100_gaps", |bn| {
        bn.iter_batched_ref(
            || b.context().clone(),
            |ctx| ctx.join(black_box(a.context())),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A datagram packed as the engine packs it: as many 32-byte deltas as fit in 1,200 bytes.
fn full_datagram() -> Datagram {
    let mut q = BroadcastQueue::new(4_096, 1_200);
    for k in 0..64 {
        q.push(
            Topic::Key(format!("key/{k}")),
            Traffic::Fresh,
            Item::Delta(entry(&format!("key/{k}"), k)),
            4,
        );
    }
    Datagram {
        items: q.pack(1_200, &[], |_| false),
    }
}

fn bench_cbor(c: &mut Criterion) {
    let mut g = c.benchmark_group("cbor");
    let dg = full_datagram();
    let bytes = wire::encode_datagram(&dg);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function(format!("encode_datagram/{}_items", dg.items.len()), |b| {
        b.iter(|| wire::encode_datagram(black_box(&dg)))
    });
    g.bench_function(format!("decode_datagram/{}_items", dg.items.len()), |b| {
        b.iter(|| wire::decode_datagram(black_box(&bytes)).expect("decodes"))
    });
    let entries: Vec<Entry> = (0..1_024)
        .map(|k| entry(&format!("key/{k:06}"), k))
        .collect();
    let frame = SyncFrame::Entries(entries);
    let fbytes = wire::encode_frame(&frame);
    g.throughput(Throughput::Bytes(fbytes.len() as u64));
    g.bench_function("encode_frame/entries_1024", |b| {
        b.iter(|| wire::encode_frame(black_box(&frame)))
    });
    g.bench_function("decode_frame/entries_1024", |b| {
        b.iter(|| wire::decode_frame(black_box(&fbytes[4..])).expect("decodes"))
    });
    let (_, store) = stores(10_000, 100);
    let open = SyncFrame::Open {
        kind: SyncKind::Periodic,
        ctx: store.context().clone(),
        gc_horizon_ms: 0,
        stable: Default::default(),
        members_digest: 42,
        compact: true,
        same: 0,
        digest: None,
        again: false,
        reads_held: false,
    };
    let obytes = wire::encode_frame(&open);
    g.throughput(Throughput::Bytes(obytes.len() as u64));
    g.bench_function("encode_frame/open_10_writers_100_gaps", |b| {
        b.iter(|| wire::encode_frame(black_box(&open)))
    });
    g.bench_function("decode_frame/open_10_writers_100_gaps", |b| {
        b.iter(|| wire::decode_frame(black_box(&obytes[4..])).expect("decodes"))
    });
    g.finish();
}

fn bench_pack(c: &mut Criterion) {
    let mut g = c.benchmark_group("pack");
    for queued in [10usize, 1_000] {
        let mut q = BroadcastQueue::new(4_096, 1_200);
        for k in 0..queued {
            // A budget that never runs out keeps the queue the same size across iterations.
            q.push(
                Topic::Key(format!("key/{k}")),
                Traffic::Fresh,
                Item::Delta(entry(&format!("key/{k}"), k as u64)),
                u32::MAX,
            );
        }
        g.bench_function(format!("1200_bytes/{queued}_queued"), |b| {
            b.iter(|| black_box(q.pack(black_box(1_200), &[], |_| false)).len())
        });
    }
    g.finish();
}

fn bench_sync_100k(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_100k_keys_1pct_diff");
    g.sample_size(10);
    let (a, b) = stores(100_000, 1_000);
    let diff = a.missing_for(b.context());
    assert_eq!(diff.len(), 1_000, "1 % of the keys differ");
    assert!(b.missing_for(a.context()).is_empty());
    g.throughput(Throughput::Elements(diff.len() as u64));
    g.bench_function("missing_for", |bn| {
        bn.iter(|| black_box(a.missing_for(black_box(b.context()))).len())
    });
    g.bench_function("apply_difference", |bn| {
        bn.iter_batched_ref(
            || (b.clone(), diff.clone()),
            |(store, d)| {
                for e in d.drain(..) {
                    store.apply(e, WALL_MS).expect("valid entry");
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("missing_for_then_apply_then_join", |bn| {
        bn.iter_batched_ref(
            || b.clone(),
            |store| {
                for e in a.missing_for(store.context()) {
                    store.apply(e, WALL_MS).expect("valid entry");
                }
                store.join_context(a.node(), a.context());
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    let mut check = b.clone();
    for e in a.missing_for(check.context()) {
        check.apply(e, WALL_MS).expect("valid entry");
    }
    assert!(a.missing_for(check.context()).is_empty(), "synced");
    assert!(a.iter().eq(check.iter()), "stores identical after the sync");
}

/// Signing and verifying one write of 100 bytes with a node's certificate key (ECDSA
/// P-256, as `gossamer certs issue` makes), and building the bytes signed.
fn bench_authorship(c: &mut Criterion) {
    use gossamer::core::authority::Authority;
    use gossamer::core::state::{signed_bytes, Write};
    use gossamer::identity::{generate_ca, issue_node_granted, Identity, TrustBundle};
    use gossamer::node::{certs_key, NodeAuthority};
    let ca = generate_ca(
        &gossamer::core::id::ClusterName::new("bench").expect("cluster"),
        30,
    )
    .expect("CA");
    let trust = TrustBundle::from_pem(&ca.cert_pem).expect("trust");
    let now_s = (wall_now_ms() / 1000) as i64;
    let identity = |n: &str| {
        let p = issue_node_granted(
            &ca.cert_pem,
            &ca.key_pem,
            &id(n),
            &[],
            &[],
            &[],
            now_s - 60,
            now_s + 86_400,
        )
        .expect("node certificate");
        Identity::from_pem(&p.cert_pem, &p.key_pem).expect("identity")
    };
    let mut a = NodeAuthority::new(&identity("a"), &trust, wall_now_ms).expect("authority");
    let mut b = NodeAuthority::new(&identity("b"), &trust, wall_now_ms).expect("authority");
    let write = |a: &mut NodeAuthority, key: &str, value: Vec<u8>, counter: u64| {
        let mut vv = vv(4, 7);
        vv.set(id("a"), counter);
        let hlc = Hlc { ms: WALL_MS, lc: 0 };
        let sig = a.sign(&signed_bytes(key, Some(&value), &vv, hlc, &id("a")));
        Write {
            value: Some(value),
            vv,
            hlc,
            writer: id("a"),
            sig,
        }
    };
    let certs = a.certs_value(None).expect("certificates");
    let certs = write(&mut a, &certs_key(&id("a")), certs, 1);
    b.verify(&certs_key(&id("a")), &certs)
        .expect("a's certificates verify");
    let w = write(&mut a, "bench/key", vec![0x5a; 100], 2);
    let mut g = c.benchmark_group("authorship");
    g.bench_function("signed_bytes/100B", |bch| {
        bch.iter(|| signed_bytes("bench/key", w.value.as_deref(), &w.vv, w.hlc, &w.writer))
    });
    g.bench_function("sign/p256_100B", |bch| {
        bch.iter(|| {
            a.sign(&signed_bytes(
                "bench/key",
                w.value.as_deref(),
                &w.vv,
                w.hlc,
                &w.writer,
            ))
        })
    });
    g.bench_function("verify/p256_100B", |bch| {
        bch.iter(|| b.verify("bench/key", black_box(&w)).expect("verifies"))
    });
    // The engine's way: one signature over the hash tree of a batch of writes.
    let unsigned = |n: u64, round: u64| -> Vec<(String, Write)> {
        (0..n)
            .map(|i| {
                let mut vv = vv(4, 7);
                vv.set(id("a"), round * 1000 + i + 3);
                let w = Write {
                    value: Some(vec![0x5a; 100]),
                    vv,
                    hlc: Hlc { ms: WALL_MS, lc: 0 },
                    writer: id("a"),
                    sig: Default::default(),
                };
                (format!("bench/{i}"), w)
            })
            .collect()
    };
    let seal = |a: &mut NodeAuthority, writes: &mut [(String, Write)]| {
        gossamer::core::state::batch_proof::sign_batch(writes, |b| a.sign(b));
    };
    g.bench_function("seal/p256_batch_of_64_100B", |bch| {
        bch.iter_batched(
            || unsigned(64, 0),
            |mut ws| seal(&mut a, &mut ws),
            BatchSize::SmallInput,
        )
    });
    let mut round = 0;
    g.bench_function("verify/p256_batch_of_64_100B", |bch| {
        bch.iter_batched(
            || {
                round += 1;
                let mut ws = unsigned(64, round);
                seal(&mut a, &mut ws);
                ws
            },
            |ws| {
                for (k, w) in &ws {
                    b.verify(k, w).expect("verifies");
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn wall_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

criterion_group!(
    benches,
    bench_authorship,
    bench_merge,
    bench_hlc,
    bench_vv,
    bench_context_diff,
    bench_cbor,
    bench_pack,
    bench_sync_100k
);
criterion_main!(benches);
