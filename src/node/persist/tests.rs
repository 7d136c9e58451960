//! The store on disk: commits reload as they were, a `state.cbor` of an earlier
//! version is migrated once, and a foreign store is refused.

use super::*;
use crate::core::engine::{Changes, Persisted};
use crate::core::state::{Snapshot, Store};
use crate::core::NodeId;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

#[test]
fn commits_reload_exactly_and_the_lease_end_only_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut db, first) = DurableStore::open(dir.path(), &id("a"), "c", 5).unwrap();
    assert!(first.is_none());
    let mut s = Store::new(id("a"), Default::default(), 1);
    s.track_changes(16);
    let lease = s.take_changes().lease_end.unwrap();
    s.lease_durable(lease);
    s.write("x", Some(b"1".to_vec()), 10).unwrap();
    s.write("y", Some(b"2".to_vec()), 11).unwrap();
    s.write("x", None, 12).unwrap();
    let mut c = Changes {
        seq: s.change_seq(),
        store: s.take_changes(),
        incarnation: Some(7),
    };
    c.store.lease_end = Some(lease);
    db.commit(&c).unwrap();
    // A smaller lease end never lowers the persisted one.
    c.store.lease_end = Some(3);
    db.commit(&c).unwrap();
    drop(db);
    let (_, p) = DurableStore::open(dir.path(), &id("a"), "c", 5).unwrap();
    let p = p.unwrap();
    assert_eq!(p.incarnation, 7);
    assert_eq!(p.store.counter, lease);
    assert_eq!(&p.store.ctx, s.context());
    let got: Vec<_> = p.store.entries.iter().map(|e| (&e.key, &e.value)).collect();
    let want: Vec<_> = s.iter().map(|e| (&e.key, &e.value)).collect();
    assert_eq!(got, want);
}

#[test]
fn a_foreign_store_is_refused_naming_both_nodes() {
    let dir = tempfile::tempdir().unwrap();
    drop(DurableStore::open(dir.path(), &id("a"), "c", 5).unwrap());
    let err = DurableStore::open(dir.path(), &id("b"), "c", 5)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, PersistError::Foreign { .. }), "{msg}");
    assert!(msg.contains("node a") && msg.contains("node b"), "{msg}");
}

#[test]
fn a_state_cbor_of_an_earlier_version_is_migrated_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::new(id("a"), Default::default(), 1);
    s.write("old", Some(b"v".to_vec()), 10).unwrap();
    let p = Persisted {
        store: s.snapshot(),
        incarnation: 9,
    };
    let mut buf = Vec::new();
    ciborium::into_writer(&p, &mut buf).unwrap();
    std::fs::write(dir.path().join("state.cbor"), buf).unwrap();
    let wall = 1_000;
    let (db, got) = DurableStore::open(dir.path(), &id("a"), "c", wall).unwrap();
    let got: Persisted = got.unwrap();
    let snap: &Snapshot = &got.store;
    assert_eq!(snap.entries.len(), 1);
    assert!(snap.counter >= wall << 10, "the stale counter is raised");
    assert!(!dir.path().join("state.cbor").exists());
    assert!(dir.path().join("state.cbor.migrated").exists());
    drop(db);
    // The second open reads the store, not the snapshot.
    let (_, again) = DurableStore::open(dir.path(), &id("a"), "c", wall).unwrap();
    assert_eq!(again.unwrap().store.entries.len(), 1);
}
