//! Private key encodings: a P-256 key in SEC1 form (`BEGIN EC PRIVATE KEY`, what OpenSSL's
//! `ecparam -genkey` and cert-manager's `privateKey.encoding: PKCS1`, its default, write) is
//! rewrapped as PKCS#8 when loaded.
//!
//! Why: rustls takes either form for TLS, but ring, which signs this node's writes, reads
//! PKCS#8 only, so a SEC1 key would start a node that then refuses to run with signed writes.
//! Wrapping is lossless (PKCS#8 is the algorithm identifier plus the SEC1 structure as is);
//! keys that are not P-256 (P-384, P-521) stay SEC1: TLS accepts them, signing never did.

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// AlgorithmIdentifier { id-ecPublicKey (1.2.840.10045.2.1), prime256v1 (1.2.840.10045.3.1.7) }.
const EC_P256_ALGORITHM: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// DER tags used here.
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;

/// Appends a DER tag-length-value.
fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

/// PrivateKeyInfo (RFC 5208) holding `sec1` as a P-256 key.
fn p256_pkcs8_of_sec1(sec1: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(sec1.len() + 32);
    push_tlv(&mut body, INTEGER, &[0]);
    body.extend_from_slice(EC_P256_ALGORITHM);
    push_tlv(&mut body, OCTET_STRING, sec1);
    let mut out = Vec::with_capacity(body.len() + 4);
    push_tlv(&mut out, SEQUENCE, &body);
    out
}

/// `key` as PKCS#8 when it is a SEC1 P-256 key (checked by parsing it as one, which also
/// checks that its public key matches); any other key unchanged.
pub(crate) fn normalize_key(key: PrivateKeyDer<'static>) -> PrivateKeyDer<'static> {
    let PrivateKeyDer::Sec1(sec1) = &key else {
        return key;
    };
    let pkcs8 = p256_pkcs8_of_sec1(sec1.secret_sec1_der());
    let parsed = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8,
        &ring::rand::SystemRandom::new(),
    );
    match parsed {
        Ok(_) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)),
        Err(_) => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateSec1KeyDer;

    /// Splits one DER TLV off the front of `der`: (tag, value, rest).
    fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (der[0], der[1] as usize);
        let (len, start) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            let len = der[2..2 + n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | *b as usize);
            (len, 2 + n)
        };
        (tag, &der[start..start + len], &der[start + len..])
    }

    /// The SEC1 form of a PKCS#8 P-256 key, as `openssl ec` writes it (with the curve in
    /// the optional `[0] parameters`, as OpenSSL and Go include it) or without.
    fn sec1_of_pkcs8(pkcs8: &[u8], with_curve: bool) -> Vec<u8> {
        let (tag, info, _) = tlv(pkcs8);
        assert_eq!(tag, SEQUENCE);
        let (_, _version, rest) = tlv(info);
        let (_, _algorithm, rest) = tlv(rest);
        let (tag, sec1, _) = tlv(rest);
        assert_eq!(tag, OCTET_STRING);
        if !with_curve {
            return sec1.to_vec();
        }
        // ECPrivateKey { version, privateKey, [0] parameters, [1] publicKey }
        let (_, fields, _) = tlv(sec1);
        let (_, version, rest) = tlv(fields);
        let (_, private, rest) = tlv(rest);
        assert!(rest.first() == Some(&0xa1), "ring writes no parameters");
        let mut body = Vec::new();
        push_tlv(&mut body, INTEGER, version);
        push_tlv(&mut body, OCTET_STRING, private);
        push_tlv(&mut body, 0xa0, &EC_P256_ALGORITHM[11..]);
        body.extend_from_slice(rest);
        let mut out = Vec::new();
        push_tlv(&mut out, SEQUENCE, &body);
        out
    }

    #[test]
    fn a_sec1_p256_key_becomes_the_same_pkcs8_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = key.serialize_der();
        for with_curve in [false, true] {
            let sec1 = sec1_of_pkcs8(&pkcs8, with_curve);
            let k = normalize_key(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(sec1)));
            let PrivateKeyDer::Pkcs8(out) = &k else {
                panic!("still SEC1 (with curve: {with_curve})");
            };
            // Same key: ring derives the same public key from it.
            use ring::signature::KeyPair as _;
            let rng = ring::rand::SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let a = ring::signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng).unwrap();
            let b = ring::signature::EcdsaKeyPair::from_pkcs8(alg, out.secret_pkcs8_der(), &rng)
                .unwrap();
            assert_eq!(a.public_key().as_ref(), b.public_key().as_ref());
        }
    }

    #[test]
    fn other_keys_are_left_alone() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let der = p384.serialize_der();
        let sec1 = {
            let (_, info, _) = tlv(&der);
            let (_, _, rest) = tlv(info);
            let (_, _, rest) = tlv(rest);
            tlv(rest).1.to_vec()
        };
        let k = normalize_key(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(sec1.clone())));
        assert!(matches!(&k, PrivateKeyDer::Sec1(s) if s.secret_sec1_der() == sec1));
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let der = ed.serialize_der();
        let k = normalize_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())));
        assert!(matches!(&k, PrivateKeyDer::Pkcs8(p) if p.secret_pkcs8_der() == der));
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        let mut out = Vec::new();
        push_tlv(&mut out, OCTET_STRING, &[7; 300]);
        assert_eq!(&out[..4], &[OCTET_STRING, 0x82, 0x01, 0x2c]);
        assert_eq!(tlv(&out).1.len(), 300);
    }
}
