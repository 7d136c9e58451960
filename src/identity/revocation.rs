//! The plain-text revocation list (`DIR/revoked.txt`): certificate serial numbers and node
//! ids that the fleet no longer trusts, for fleets whose CA key is not at hand to sign a CRL
//! (an external PKI, or an offline CA during an incident).
//!
//! Format, one entry per line; `#` starts a comment, blank lines are ignored:
//!
//! ```text
//! serial:4b:1f:0c:...       # a certificate serial number in hex (':' separators optional)
//! node:web-3                # every certificate of node web-3, whatever its serial
//! 0x4b1f0c...               # bare hex with 0x, or with ':' separators: a serial
//! web-7                     # a bare word: a node id, and also a serial if it is valid hex
//! ```
//!
//! Serials compare as numbers (leading zero bytes are ignored), so the output of
//! `gossamer certs inspect` or `openssl x509 -serial` can be pasted as is.

use std::collections::BTreeSet;
use std::fmt;

use super::error::IdentityError;
use crate::core::id::NodeId;

/// Serial numbers and node ids whose certificates are refused.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    /// Serials, big-endian without leading zero bytes.
    serials: BTreeSet<Vec<u8>>,
    nodes: BTreeSet<NodeId>,
}

/// Longest serial accepted (RFC 5280 allows 20 octets; be lenient with broken CAs).
const MAX_SERIAL_BYTES: usize = 64;

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text of a revocation list (see the module documentation for the format).
    /// `source_name` names the file in errors, which also give the line number.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, IdentityError> {
        let mut list = Self::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |detail: String| IdentityError::BadRevocationList {
                source_name: source_name.to_string(),
                line: i + 1,
                detail,
            };
            if line.split_whitespace().nth(1).is_some() {
                return Err(bad(format!("{line:?}: one entry per line")));
            }
            let (kind, value) = match line.split_once([':', '=']) {
                Some((k, v)) if k.eq_ignore_ascii_case("serial") => (Some("serial"), v),
                Some((k, v)) if k.eq_ignore_ascii_case("node") => (Some("node"), v),
                _ => (None, line),
            };
            match kind {
                Some("serial") => {
                    let s = parse_serial(value).map_err(|e| bad(format!("{value:?}: {e}")))?;
                    list.serials.insert(s);
                }
                Some(_) => {
                    let n = NodeId::new(value).map_err(|e| bad(format!("{value:?}: {e}")))?;
                    list.nodes.insert(n);
                }
                None => {
                    let explicit_serial =
                        value.starts_with("0x") || value.starts_with("0X") || value.contains(':');
                    let serial = parse_serial(value);
                    let node = if explicit_serial {
                        None
                    } else {
                        NodeId::new(value).ok()
                    };
                    if serial.is_err() && node.is_none() {
                        return Err(bad(format!(
                            "{value:?} is neither a hex serial number nor a node id \
                             (write serial:HEX or node:ID)"
                        )));
                    }
                    if let Ok(s) = serial {
                        list.serials.insert(s);
                    }
                    if let Some(n) = node {
                        list.nodes.insert(n);
                    }
                }
            }
        }
        Ok(list)
    }

    /// Adds a serial number (big-endian bytes, as in the certificate).
    pub fn revoke_serial(&mut self, serial: &[u8]) {
        self.serials.insert(strip_zeros(serial).to_vec());
    }

    /// Adds a node id: every certificate naming it is refused.
    pub fn revoke_node(&mut self, node: NodeId) {
        self.nodes.insert(node);
    }

    /// Whether a certificate with this serial (big-endian bytes), naming `node`, is revoked.
    pub fn is_revoked(&self, serial: &[u8], node: Option<&NodeId>) -> bool {
        self.serials.contains(strip_zeros(serial)) || node.is_some_and(|n| self.nodes.contains(n))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.serials.len() + self.nodes.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList")
            .field(
                "serials",
                &self.serials.iter().map(|s| hex(s)).collect::<Vec<_>>(),
            )
            .field("nodes", &self.nodes)
            .finish()
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

/// Lowercase hex of `bytes`, without separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hex serial: optional `0x`, optional `:` separators between octets. Returns the big-endian bytes without leading zeros.
fn parse_serial(s: &str) -> Result<Vec<u8>, String> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() {
        return Err("empty serial number".into());
    }
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("a serial number is hex digits, optionally separated by ':'".into());
    }
    if digits.len() > 2 * MAX_SERIAL_BYTES {
        return Err(format!(
            "serial number longer than {MAX_SERIAL_BYTES} bytes"
        ));
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes: Vec<u8> = padded
        .as_bytes()
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).unwrap_or("00");
            u8::from_str_radix(s, 16).unwrap_or(0)
        })
        .collect();
    Ok(strip_zeros(&bytes).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn parses_every_form() {
        let text = "\
# revoked after the incident of 2024-05-01
serial:4B:1F:0C       # colon separated
serial=00ff
node:web-3
0x0a0b
01:02
web-7
abc1
";
        let l = RevocationList::parse(text, "revoked.txt").unwrap();
        assert!(l.is_revoked(&[0x4b, 0x1f, 0x0c], None));
        assert!(
            l.is_revoked(&[0x00, 0x4b, 0x1f, 0x0c], None),
            "leading zeros"
        );
        assert!(l.is_revoked(&[0xff], None));
        assert!(l.is_revoked(&[0x0a, 0x0b], None));
        assert!(l.is_revoked(&[0x01, 0x02], None));
        assert!(l.is_revoked(&[9], Some(&n("web-3"))));
        assert!(l.is_revoked(&[9], Some(&n("web-7"))));
        // A bare word that is both valid hex and a node id counts as both.
        assert!(l.is_revoked(&[0xab, 0xc1], None));
        assert!(l.is_revoked(&[9], Some(&n("abc1"))));
        assert!(!l.is_revoked(&[9], Some(&n("web-4"))));
        assert!(!l.is_revoked(&[0x4b, 0x1f], None));
        assert_eq!(l.len(), 8);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("ok-node\nserial:xyz\n", 2),
            ("\n\nNot_A_Node!\n", 3),
            ("node:UPPER\n", 1),
            ("a b\n", 1),
            ("serial:\n", 1),
        ] {
            let err = RevocationList::parse(text, "r.txt")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("r.txt line {line}")),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn empty_and_comments_only() {
        let l = RevocationList::parse("# nothing\n\n   \n", "r").unwrap();
        assert!(l.is_empty());
    }
}
