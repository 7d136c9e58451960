//! The endpoint's keys that a restarted process must share with its previous life: the
//! key of QUIC stateless resets and the key its connection ids are validated with, both
//! derived from the node's private key.
//!
//! A QUIC endpoint that receives a packet for a connection it does not know answers with a
//! stateless reset, which closes the connection at the sender at once. The reset proves
//! itself with a token derived from the connection id under the endpoint's reset key, given
//! to the peer during the connection; and the endpoint answers only packets whose
//! connection id it could have issued (quinn's hashed ids, checked under another key, so
//! that stray packets draw nothing). quinn draws both keys at random for each endpoint, so
//! a restarted process could neither recognise nor reset its previous life's connections:
//! its peers' old connections stayed open, swallowing datagrams, until their idle timeout.
//! With both keys derived from the node's private key, the first packet a peer sends on a
//! stale connection draws a reset, and the peer dials afresh.
//!
//! The keys stay secret because the private key does (HKDF is one-way), so an off-path
//! attacker cannot forge a reset. A node whose private key changes between two lives (a
//! renewal that made a new key) falls back to the other ways a stale connection ends: a
//! suspicion, or a new connection from the member, finds it quiet (`node::runtime::peers`);
//! or the idle timeout.

use std::sync::Arc;

use ring::hkdf;
use rustls_pki_types::PrivateKeyDer;

/// Salt of both derivations: they yield these secrets and nothing else does.
const SALT: &[u8] = b"gossamer quic endpoint keys v1";
const RESET_INFO: &[u8] = b"stateless reset";
const CID_INFO: &[u8] = b"connection id";

/// HKDF output of a given length (what `ring::hkdf` expands into).
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The endpoint configuration of the node whose private key is `key`: quinn's defaults
/// but for the two keys above.
pub(super) fn endpoint_config(key: &PrivateKeyDer<'_>) -> quinn::EndpointConfig {
    let (reset, cid_key) = derive(key);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// The reset key and the connection-id key of `key`.
fn derive(key: &PrivateKeyDer<'_>) -> (ring::hmac::Key, u64) {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(key.secret_der());
    let reset = prk
        .expand(&[RESET_INFO], ring::hmac::HMAC_SHA256)
        .expect("an HMAC-SHA256 key is within HKDF's output limit")
        .into();
    let mut cid = [0u8; 8];
    prk.expand(&[CID_INFO], Len(cid.len()))
        .and_then(|okm| okm.fill(&mut cid))
        .expect("8 bytes are within HKDF's output limit");
    (reset, u64::from_le_bytes(cid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(key: &ring::hmac::Key, cid: &[u8]) -> Vec<u8> {
        ring::hmac::sign(key, cid).as_ref().to_vec()
    }

    #[test]
    fn the_same_private_key_gives_the_same_keys_and_another_key_others() {
        let a = PrivateKeyDer::Pkcs8(vec![1u8; 64].into());
        let b = PrivateKeyDer::Pkcs8(vec![2u8; 64].into());
        let cid = [7u8; 8];
        let ((ra, ca), (ra2, ca2), (rb, cb)) = (derive(&a), derive(&a.clone_key()), derive(&b));
        assert_eq!(token(&ra, &cid), token(&ra2, &cid));
        assert_eq!(ca, ca2);
        assert_ne!(token(&ra, &cid), token(&rb, &cid));
        assert_ne!(ca, cb);
        // The two keys of one node are not one secret used twice.
        assert_ne!(token(&ra, &cid)[..8], ca.to_le_bytes());
    }
}
