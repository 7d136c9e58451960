use super::*;
use crate::core::state::{signed_bytes, Hlc, VersionVector};
use crate::identity::{generate_ca, issue_node_granted, RevocationList};

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Fleet {
    ca: crate::identity::PemPair,
    trust: TrustBundle,
}

impl Fleet {
    fn new() -> Self {
        let ca = generate_ca(&ClusterName::new("t").unwrap(), 30).unwrap();
        let trust = TrustBundle::from_pem(&ca.cert_pem).unwrap();
        Self { ca, trust }
    }

    fn identity(&self, id: &str, allow: &[&str]) -> Identity {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        let now = (wall_ms() / 1000) as i64;
        let pair = issue_node_granted(
            &self.ca.cert_pem,
            &self.ca.key_pem,
            &node(id),
            &[],
            &[],
            &allow,
            now - 3600,
            now + 86_400,
        )
        .unwrap();
        Identity::from_pem(&pair.cert_pem, &pair.key_pem).unwrap()
    }
}

/// A write of `key` by `writer`, signed by `signer`.
fn write(signer: &mut NodeAuthority, writer: &str, key: &str, value: &[u8], c: u64) -> Write {
    let mut vv = VersionVector::new();
    vv.set(node(writer), c);
    let hlc = Hlc {
        ms: wall_ms(),
        lc: 0,
    };
    let sig = signer.sign(&signed_bytes(key, Some(value), &vv, hlc, &node(writer)));
    Write {
        value: Some(value.to_vec()),
        vv,
        hlc,
        writer: node(writer),
        sig,
    }
}

/// `a`'s certificate entry, as `b` would receive it.
fn certs_write(a: &mut NodeAuthority, writer: &str, previous: Option<&[u8]>, c: u64) -> Write {
    let v = a.certs_value(previous).expect("the chain changed");
    write(a, writer, &certs_key(&node(writer)), &v, c)
}

#[test]
fn a_writer_is_verified_through_the_certificates_it_published() {
    let f = Fleet::new();
    let mut a = NodeAuthority::new(&f.identity("a", &[]), &f.trust, wall_ms).unwrap();
    let mut b = NodeAuthority::new(&f.identity("b", &[]), &f.trust, wall_ms).unwrap();
    let w = write(&mut a, "a", "k", b"v", 2);
    assert_eq!(
        b.verify("k", &w),
        Err(Refusal::UnknownWriter),
        "before a's certificates"
    );
    let certs = certs_write(&mut a, "a", None, 1);
    b.verify(&certs_key(&node("a")), &certs).unwrap();
    b.verify("k", &w).unwrap();
    // Altered value, another writer's name, an empty signature.
    let mut altered = w.clone();
    altered.value = Some(b"x".to_vec());
    assert_eq!(b.verify("k", &altered), Err(Refusal::BadSignature));
    assert_eq!(
        b.verify("k2", &w),
        Err(Refusal::BadSignature),
        "moved to another key"
    );
    let mut unsigned = w.clone();
    unsigned.sig = Signature::default();
    assert_eq!(b.verify("k", &unsigned), Err(Refusal::Unsigned));
    // b cannot publish certificates in a's name: its own chain does not name a.
    let forged = certs_write(&mut b, "a", None, 9);
    assert_eq!(
        b.clone().verify(&certs_key(&node("a")), &forged),
        Err(Refusal::UnknownWriter)
    );
}

#[test]
fn a_grant_binds_the_writer_and_every_receiver() {
    let f = Fleet::new();
    let mut a =
        NodeAuthority::new(&f.identity("a", &["cfg/", "app/x/"]), &f.trust, wall_ms).unwrap();
    let mut b = NodeAuthority::new(&f.identity("b", &[]), &f.trust, wall_ms).unwrap();
    assert!(a.may_write("cfg/1").is_ok());
    assert_eq!(
        a.may_write("app/y"),
        Err(Refusal::OutsideGrant {
            allowed: vec!["cfg/".into(), "app/x/".into()]
        })
    );
    let certs = certs_write(&mut a, "a", None, 1);
    b.verify(&certs_key(&node("a")), &certs).unwrap();
    b.verify("app/x/1", &write(&mut a, "a", "app/x/1", b"v", 2))
        .unwrap();
    assert!(matches!(
        b.verify("app/y", &write(&mut a, "a", "app/y", b"v", 3)),
        Err(Refusal::OutsideGrant { .. })
    ));
}

#[test]
fn a_renewed_key_keeps_old_writes_verifying_and_a_revoked_one_is_refused() {
    let f = Fleet::new();
    let old_id = f.identity("a", &[]);
    let mut a = NodeAuthority::new(&old_id, &f.trust, wall_ms).unwrap();
    let mut b = NodeAuthority::new(&f.identity("b", &[]), &f.trust, wall_ms).unwrap();
    let first = a.certs_value(None).unwrap();
    let old_write = write(&mut a, "a", "k", b"old", 2);

    // Renewal with a new key: the published value lists both chains, newest first.
    let new_id = f.identity("a", &[]);
    a.renew(&new_id, &f.trust, &new_id.cluster).unwrap();
    let certs = certs_write(&mut a, "a", Some(&first), 3);
    let chains = decode_chains(certs.value.as_deref().unwrap()).unwrap();
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[0][0].as_slice(), new_id.chain[0].as_ref());
    let new_write = write(&mut a, "a", "k", b"new", 4);
    assert_ne!(old_write.sig.key, new_write.sig.key);
    b.verify(&certs_key(&node("a")), &certs).unwrap();
    b.verify("k", &old_write).unwrap();
    b.verify("k", &new_write).unwrap();

    // Revoking node a: its writes are refused from then on, by reason.
    let mut revoked = RevocationList::new();
    revoked.revoke_node(node("a"));
    let trust = f.trust.clone().with_revocation_list(revoked);
    let b_id = f.identity("b", &[]);
    b.renew(&b_id, &trust, &b_id.cluster).unwrap();
    assert_eq!(b.verify("k", &new_write), Err(Refusal::Revoked));
    // A node that learns a's certificates only now refuses them too.
    let mut c = NodeAuthority::new(&f.identity("c", &[]), &trust, wall_ms).unwrap();
    assert_eq!(
        c.verify(&certs_key(&node("a")), &certs),
        Err(Refusal::Revoked)
    );
}

/// Review of #17: a member granted every key must not write another node's certificate
/// key (nodes joining later would learn no key of that node and refuse its writes).
#[test]
fn only_a_writer_may_write_its_own_certificate_key() {
    let f = Fleet::new();
    let a = NodeAuthority::new(&f.identity("a", &[]), &f.trust, wall_ms).unwrap();
    let mut m = NodeAuthority::new(&f.identity("m", &[]), &f.trust, wall_ms).unwrap();
    let mut b = NodeAuthority::new(&f.identity("b", &[]), &f.trust, wall_ms).unwrap();
    let m_certs = certs_write(&mut m, "m", None, 1);
    b.verify(&certs_key(&node("m")), &m_certs).unwrap();
    // m copies a's published value under a's key, in its own name.
    let a_value = a.certs_value(None).unwrap();
    let shadow = write(&mut m, "m", &certs_key(&node("a")), &a_value, 2);
    assert!(matches!(
        b.verify(&certs_key(&node("a")), &shadow),
        Err(Refusal::OutsideGrant { .. })
    ));
}

/// `n` writes of `writer`'s (keys `k0`, `k1`, ...) signed as one batch, the way the
/// engine seals them.
fn batch(signer: &mut NodeAuthority, writer: &str, n: usize) -> Vec<(String, Write)> {
    let mut writes: Vec<(String, Write)> = (0..n)
        .map(|i| {
            let mut vv = VersionVector::new();
            vv.set(node(writer), 10 + i as u64);
            let w = Write {
                value: Some(format!("v{i}").into_bytes()),
                vv,
                hlc: Hlc {
                    ms: wall_ms(),
                    lc: i as u32,
                },
                writer: node(writer),
                sig: Signature::default(),
            };
            (format!("k{i}"), w)
        })
        .collect();
    crate::core::state::batch_proof::sign_batch(&mut writes, |b| signer.sign(b));
    writes
}

/// #17: one signature over a batch; each write still verifies on its own, and nothing
/// a relay does to one write (value, key, path, place in the batch) passes, even once
/// the batch's root is known good.
#[test]
fn a_batch_signature_verifies_each_write_and_no_altered_one() {
    let f = Fleet::new();
    let mut a = NodeAuthority::new(&f.identity("a", &[]), &f.trust, wall_ms).unwrap();
    let mut b = NodeAuthority::new(&f.identity("b", &[]), &f.trust, wall_ms).unwrap();
    let certs = certs_write(&mut a, "a", None, 1);
    b.verify(&certs_key(&node("a")), &certs).unwrap();
    let writes = batch(&mut a, "a", 5);
    // Out of order and one by one, as anti-entropy may deliver them.
    for (k, w) in writes.iter().rev() {
        b.verify(k, w).unwrap();
    }
    let (k1, w1) = &writes[1];
    let mut altered = w1.clone();
    altered.value = Some(b"x".to_vec());
    assert_eq!(b.verify(k1, &altered), Err(Refusal::BadSignature));
    assert_eq!(b.verify("k3", w1), Err(Refusal::BadSignature), "moved key");
    let mut moved = w1.clone();
    moved.sig.proof = writes[3].1.sig.proof.clone();
    assert_eq!(
        b.verify(k1, &moved),
        Err(Refusal::BadSignature),
        "other place"
    );
    let mut bent = w1.clone();
    bent.sig.proof.as_mut().unwrap().path[0] ^= 1;
    assert_eq!(b.verify(k1, &bent), Err(Refusal::BadSignature), "bent path");
    // A root b checked before does not vouch for a different write with a bad signature.
    let mut forged = w1.clone();
    forged.sig.bytes[0] ^= 1;
    forged.value = Some(b"y".to_vec());
    assert_eq!(b.verify(k1, &forged), Err(Refusal::BadSignature));
    // Another writer's batch claimed in a's name.
    let mut m = NodeAuthority::new(&f.identity("m", &[]), &f.trust, wall_ms).unwrap();
    let (mk, mw) = batch(&mut m, "a", 2).remove(0);
    assert!(b.verify(&mk, &mw).is_err(), "m signs in a's name");

    // Revoking a after its root was verified: the next write of that batch is refused.
    let mut revoked = RevocationList::new();
    revoked.revoke_node(node("a"));
    let trust = f.trust.clone().with_revocation_list(revoked);
    let b_id = f.identity("b", &[]);
    b.renew(&b_id, &trust, &b_id.cluster).unwrap();
    assert_eq!(b.verify(k1, w1), Err(Refusal::Revoked));
}
