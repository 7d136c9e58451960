//! The runtime's [`Authority`]: signs this node's writes with its certificate's key and
//! verifies every writer's against the certificates writers publish.
//!
//! Each node publishes its certificate chains (the current one first, then earlier ones
//! whose keys signed writes that may still be held) as a value under the reserved key
//! [`certs_key`]. That entry replicates like any other, so a node learns the keys of
//! writers it never connected to; it is signed by a key in its own value and accepted
//! only when the chain verifies against the fleet's trust bundle, names the writer and is
//! not revoked. Anti-entropy sends keys in order, and the reserved prefix sorts first, so
//! a writer's certificates reach a peer before the writer's entries in any exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_bytes::ByteBuf;

use crate::core::authority::{Authority, Refusal};
use crate::core::id::ClusterName;
use crate::core::state::{is_system_key, Signature, Write, SYSTEM_PREFIX};
use crate::core::NodeId;
use crate::identity::{Grant, Identity, PeerRecheck, TrustBundle};

/// At most this many chains (keys) per writer: renewals beyond it drop the oldest key,
/// and entries signed only by it stop verifying at nodes that never held them.
pub const MAX_WRITER_CHAINS: usize = 8;

/// The reserved key under which `node` publishes its certificate chains.
pub fn certs_key(node: &NodeId) -> String {
    format!("{SYSTEM_PREFIX}certs/{node}")
}

/// Errors building the authority.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The node key is neither ECDSA P-256 nor Ed25519 in PKCS#8.
    #[error("node key: writes are signed with an ECDSA P-256 or Ed25519 key (PKCS#8) and this key is neither; issue one of those, or set security.signed_writes = false on every node")]
    KeyType,
    /// The node certificate could not be read.
    #[error("node certificate: {0}")]
    Certificate(String),
    /// The trust bundle could not be turned into verifiers.
    #[error("trust bundle: {0}")]
    Trust(String),
}

enum Signer {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One verified key of a writer.
#[derive(Clone)]
struct WriterKey {
    id: u64,
    ed25519: bool,
    public: Vec<u8>,
    grant: Grant,
    chain: Vec<CertificateDer<'static>>,
    /// Revoked since we learned it: its writes are refused from now on.
    revoked: bool,
}

struct Inner {
    me: NodeId,
    signer: Signer,
    signer_id: u64,
    grant: Grant,
    chain: Vec<CertificateDer<'static>>,
    check: PeerRecheck,
    writers: HashMap<NodeId, Vec<WriterKey>>,
    rng: ring::rand::SystemRandom,
    wall_ms: fn() -> u64,
    verified_roots: RecentSet<(u64, Vec<u8>)>,
}

/// Batch roots whose signature verified, by signing key: the most recent
/// [`VERIFIED_ROOTS`]. A key revoked later is refused before this is consulted.
pub const VERIFIED_ROOTS: usize = 4096;

/// A set that forgets its oldest members beyond a capacity.
struct RecentSet<T> {
    members: std::collections::HashSet<T>,
    order: std::collections::VecDeque<T>,
    cap: usize,
}

impl<T: Clone + Eq + std::hash::Hash> RecentSet<T> {
    fn new(cap: usize) -> Self {
        Self {
            members: Default::default(),
            order: Default::default(),
            cap,
        }
    }

    fn contains(&self, t: &T) -> bool {
        self.members.contains(t)
    }

    fn insert(&mut self, t: T) {
        if self.members.insert(t.clone()) {
            self.order.push_back(t);
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.members.remove(&old);
                }
            }
        }
    }
}

/// Signs as this node, verifies every writer; cheap to clone (shared state), so the
/// node keeps a handle to renew its key and trust on a reload.
#[derive(Clone)]
pub struct NodeAuthority(Arc<Mutex<Inner>>);

impl NodeAuthority {
    /// The authority of `identity` under `trust`; `wall_ms` reads the wall clock.
    pub fn new(
        identity: &Identity,
        trust: &TrustBundle,
        wall_ms: fn() -> u64,
    ) -> Result<Self, AuthorityError> {
        let me = identity.node_id.clone();
        let (signer, own) = own_key(identity)?;
        let check = PeerRecheck::new(trust, &identity.cluster)
            .map_err(|e| AuthorityError::Trust(e.to_string()))?;
        let mut writers = HashMap::new();
        writers.insert(me.clone(), vec![own.clone()]);
        Ok(Self(Arc::new(Mutex::new(Inner {
            me,
            signer,
            signer_id: own.id,
            grant: own.grant,
            chain: identity.chain.clone(),
            check,
            writers,
            rng: ring::rand::SystemRandom::new(),
            wall_ms,
            verified_roots: RecentSet::new(VERIFIED_ROOTS),
        }))))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's grant.
    pub fn grant(&self) -> Grant {
        self.lock().grant.clone()
    }

    /// Switches to a renewed identity and a reloaded trust bundle: signs with the new key
    /// from now on, and judges every known writer key again: a revoked key's writes are
    /// refused from now on, a key no longer chaining to a trusted CA is forgotten.
    pub fn renew(
        &self,
        identity: &Identity,
        trust: &TrustBundle,
        cluster: &ClusterName,
    ) -> Result<(), AuthorityError> {
        let (signer, own) = own_key(identity)?;
        let check =
            PeerRecheck::new(trust, cluster).map_err(|e| AuthorityError::Trust(e.to_string()))?;
        let mut g = self.lock();
        g.signer = signer;
        g.signer_id = own.id;
        g.grant = own.grant.clone();
        g.chain = identity.chain.clone();
        g.check = check;
        let now = (g.wall_ms)();
        let me = g.me.clone();
        let Inner { writers, check, .. } = &mut *g;
        for (node, keys) in writers.iter_mut() {
            keys.retain_mut(|k| match judge_chain(check, &k.chain, node, now) {
                Ok(_) => true,
                Err(Refusal::Revoked) => {
                    k.revoked = true;
                    true
                }
                // No longer chains to a trusted CA (the CA was rotated out).
                Err(_) => false,
            });
        }
        let mine = writers.entry(me).or_default();
        if !mine.iter().any(|k| k.id == own.id) {
            mine.insert(0, own);
        }
        Ok(())
    }

    /// Whether a certificate of `writer`'s verified here (its writes can be judged).
    pub fn knows(&self, writer: &NodeId) -> bool {
        self.lock()
            .writers
            .get(writer)
            .is_some_and(|k| !k.is_empty())
    }

    /// The value this node should publish under [`certs_key`], given what it published
    /// before (`previous`): the current chain first, then earlier chains, deduplicated by
    /// key and bounded. `None` when `previous` already starts with the current chain.
    pub fn certs_value(&self, previous: Option<&[u8]>) -> Option<Vec<u8>> {
        let g = self.lock();
        let mut chains: Vec<Vec<ByteBuf>> = previous.and_then(decode_chains).unwrap_or_default();
        let current: Vec<ByteBuf> = g.chain.iter().map(|c| ByteBuf::from(c.to_vec())).collect();
        if chains.first() == Some(&current) {
            return None;
        }
        let current_id = key_id_of_chain(&current);
        chains.retain(|c| key_id_of_chain(c) != current_id);
        chains.insert(0, current);
        chains.truncate(MAX_WRITER_CHAINS);
        let mut out = Vec::new();
        ciborium::into_writer(&chains, &mut out).expect("writing to a Vec cannot fail");
        Some(out)
    }
}

impl Authority for NodeAuthority {
    fn sign(&mut self, bytes: &[u8]) -> Signature {
        let g = self.lock();
        let sig = match &g.signer {
            Signer::P256(k) => k
                .sign(&g.rng, bytes)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Signer::Ed25519(k) => k.sign(bytes).as_ref().to_vec(),
        };
        Signature {
            key: g.signer_id,
            bytes: sig,
            proof: None,
        }
    }

    fn may_write(&self, key: &str) -> Result<(), Refusal> {
        let g = self.lock();
        if g.grant.allows(key) {
            Ok(())
        } else {
            Err(Refusal::OutsideGrant {
                allowed: g.grant.allowed().unwrap_or_default().to_vec(),
            })
        }
    }

    fn verify(&mut self, key: &str, write: &Write) -> Result<(), Refusal> {
        if write.sig.is_empty() {
            return Err(Refusal::Unsigned);
        }
        let mut g = self.lock();
        if key == certs_key(&write.writer) {
            return g.learn(write, key);
        }
        if is_system_key(key) {
            // gossamer's own keys: a writer may write only its own certificates (else a
            // member could shadow another's and make later nodes refuse its writes).
            return Err(Refusal::OutsideGrant {
                allowed: vec![certs_key(&write.writer)],
            });
        }
        let k = g
            .writers
            .get(&write.writer)
            .and_then(|keys| keys.iter().find(|k| k.id == write.sig.key))
            .ok_or(Refusal::UnknownWriter)?;
        if k.revoked {
            return Err(Refusal::Revoked);
        }
        if !k.grant.allows(key) {
            return Err(Refusal::OutsideGrant {
                allowed: k.grant.allowed().unwrap_or_default().to_vec(),
            });
        }
        let message = write.signed_message(key).ok_or(Refusal::BadSignature)?;
        if write.sig.proof.is_none() {
            return check_signature(k, &message, &write.sig.bytes);
        }
        // A batch root: checked once, then every other write of the batch only walks
        // its path to it.
        let root = (k.id, message);
        if g.verified_roots.contains(&root) {
            return Ok(());
        }
        check_signature(k, &root.1, &write.sig.bytes)?;
        g.verified_roots.insert(root);
        Ok(())
    }

    fn verify_message(
        &mut self,
        signer: &NodeId,
        bytes: &[u8],
        sig: &Signature,
    ) -> Result<(), Refusal> {
        if sig.is_empty() {
            return Err(Refusal::Unsigned);
        }
        let g = self.lock();
        let k = g
            .writers
            .get(signer)
            .and_then(|keys| keys.iter().find(|k| k.id == sig.key))
            .ok_or(Refusal::UnknownWriter)?;
        if k.revoked {
            return Err(Refusal::Revoked);
        }
        check_signature(k, bytes, &sig.bytes)
    }
}

impl Inner {
    /// A writer's certificate entry: verified with a key of its own value, every chain
    /// judged against the trust bundle; the writer's keys become those chains' keys.
    fn learn(&mut self, write: &Write, key: &str) -> Result<(), Refusal> {
        let value = write.value.as_deref().ok_or(Refusal::UnknownWriter)?;
        let chains = decode_chains(value).ok_or(Refusal::UnknownWriter)?;
        let now = (self.wall_ms)();
        let mut keys = Vec::new();
        let mut revoked = false;
        for chain in chains.iter().take(MAX_WRITER_CHAINS) {
            let chain: Vec<CertificateDer<'static>> = chain
                .iter()
                .map(|c| CertificateDer::from(c.to_vec()))
                .collect();
            match judge_chain(&self.check, &chain, &write.writer, now) {
                Ok(k) => keys.push(k),
                Err(Refusal::Revoked) => revoked = true,
                Err(_) => {}
            }
        }
        let signer = keys
            .iter()
            .find(|k| k.id == write.sig.key)
            .ok_or(if revoked {
                Refusal::Revoked
            } else {
                Refusal::UnknownWriter
            })?;
        check_signature(
            signer,
            &write.signed_message(key).ok_or(Refusal::BadSignature)?,
            &write.sig.bytes,
        )?;
        let known = self.writers.entry(write.writer.clone()).or_default();
        for k in keys {
            if !known.iter().any(|o| o.id == k.id) {
                known.push(k);
            }
        }
        if known.len() > 2 * MAX_WRITER_CHAINS {
            let excess = known.len() - 2 * MAX_WRITER_CHAINS;
            known.drain(..excess);
        }
        Ok(())
    }
}

/// Verifies a chain of `writer`'s against the trust bundle (at `now`, or just before its
/// expiry for an expired certificate: signatures it made while valid stay valid) and
/// returns its key.
fn judge_chain(
    check: &PeerRecheck,
    chain: &[CertificateDer<'static>],
    writer: &NodeId,
    now_ms: u64,
) -> Result<WriterKey, Refusal> {
    let ee = chain.first().ok_or(Refusal::UnknownWriter)?;
    let (_, x509) = x509_parser::parse_x509_certificate(ee).map_err(|_| Refusal::UnknownWriter)?;
    let not_after_ms = u64::try_from(x509.validity().not_after.timestamp())
        .unwrap_or(0)
        .saturating_mul(1000);
    let at_ms = now_ms.min(not_after_ms.saturating_sub(1000));
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_millis(at_ms));
    match check.check(chain, false, at) {
        Ok(node) if &node == writer => {}
        Ok(_) => return Err(Refusal::UnknownWriter),
        Err(r) if r.label == "revoked" => return Err(Refusal::Revoked),
        Err(_) => return Err(Refusal::UnknownWriter),
    }
    let spki = x509.public_key();
    let ed25519 = spki.algorithm.algorithm.to_id_string() == "1.3.101.112";
    Ok(WriterKey {
        id: key_id(spki.raw),
        ed25519,
        public: spki.subject_public_key.data.to_vec(),
        grant: Grant::of(&x509).map_err(|_| Refusal::UnknownWriter)?,
        chain: chain.to_vec(),
        revoked: false,
    })
}

fn check_signature(k: &WriterKey, bytes: &[u8], sig: &[u8]) -> Result<(), Refusal> {
    let alg: &dyn signature::VerificationAlgorithm = if k.ed25519 {
        &signature::ED25519
    } else {
        &signature::ECDSA_P256_SHA256_FIXED
    };
    signature::UnparsedPublicKey::new(alg, &k.public)
        .verify(bytes, sig)
        .map_err(|_| Refusal::BadSignature)
}

/// Which key: the first 8 bytes of the SHA-256 of its SubjectPublicKeyInfo.
fn key_id(spki_der: &[u8]) -> u64 {
    let d = ring::digest::digest(&ring::digest::SHA256, spki_der);
    u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

fn key_id_of_chain(chain: &[ByteBuf]) -> Option<u64> {
    let (_, x) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    Some(key_id(x.public_key().raw))
}

fn decode_chains(value: &[u8]) -> Option<Vec<Vec<ByteBuf>>> {
    ciborium::from_reader(value).ok()
}

/// This node's signer and its own key, from its identity.
fn own_key(identity: &Identity) -> Result<(Signer, WriterKey), AuthorityError> {
    let pkcs8 = identity.key.secret_der();
    let signer = if let Ok(k) = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &ring::rand::SystemRandom::new(),
    ) {
        Signer::P256(k)
    } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8) {
        Signer::Ed25519(k)
    } else {
        return Err(AuthorityError::KeyType);
    };
    let ee = identity
        .chain
        .first()
        .ok_or_else(|| AuthorityError::Certificate("empty chain".into()))?;
    let (_, x509) = x509_parser::parse_x509_certificate(ee)
        .map_err(|e| AuthorityError::Certificate(e.to_string()))?;
    let spki = x509.public_key();
    let public = match &signer {
        Signer::P256(k) => k.public_key().as_ref().to_vec(),
        Signer::Ed25519(k) => k.public_key().as_ref().to_vec(),
    };
    let own = WriterKey {
        id: key_id(spki.raw),
        ed25519: matches!(signer, Signer::Ed25519(_)),
        public,
        grant: Grant::of(&x509).map_err(AuthorityError::Certificate)?,
        chain: identity.chain.clone(),
        revoked: false,
    };
    Ok((signer, own))
}

#[cfg(test)]
mod tests;
