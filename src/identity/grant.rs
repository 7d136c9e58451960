//! Write permissions carried in a node certificate: the key prefixes the node may write,
//! as SAN URIs `gossamer-allow:<prefix, percent-encoded>`. A certificate without any
//! such URI may write every key (certificates issued before grants existed keep working).

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The URI scheme of a grant in a certificate's subjectAltName.
pub const GRANT_URI_SCHEME: &str = "gossamer-allow:";

/// The key prefixes a node may write; `None` means every key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant(Option<Vec<String>>);

impl Grant {
    /// A grant of every key.
    pub fn all() -> Self {
        Self(None)
    }

    /// A grant of the keys under `prefixes`.
    pub fn prefixes(prefixes: Vec<String>) -> Self {
        Self(Some(prefixes))
    }

    /// The allowed prefixes; `None` for every key.
    pub fn allowed(&self) -> Option<&[String]> {
        self.0.as_deref()
    }

    /// Whether `key` lies within the grant.
    pub fn allows(&self, key: &str) -> bool {
        match &self.0 {
            None => true,
            Some(p) => p.iter().any(|p| key.starts_with(p.as_str())),
        }
    }

    /// The grant a parsed certificate carries.
    pub fn of(x509: &X509Certificate<'_>) -> Result<Self, String> {
        let Ok(Some(san)) = x509.subject_alternative_name() else {
            return Ok(Self::all());
        };
        let mut prefixes = Vec::new();
        for name in &san.value.general_names {
            if let GeneralName::URI(u) = name {
                if let Some(rest) = u.strip_prefix(GRANT_URI_SCHEME) {
                    prefixes.push(decode(rest).ok_or_else(|| {
                        format!("SAN URI {u:?}: bad percent-encoding in the allowed prefix")
                    })?);
                }
            }
        }
        Ok(if prefixes.is_empty() {
            Self::all()
        } else {
            Self::prefixes(prefixes)
        })
    }

    /// One line for people: "all keys" or the prefixes.
    pub fn describe(&self) -> String {
        match &self.0 {
            None => "all keys".into(),
            Some(p) => p
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The SAN URI granting `prefix`: unreserved URI characters and `/` stay, the rest is
/// percent-encoded (UTF-8).
pub fn grant_uri(prefix: &str) -> String {
    let mut out = String::from(GRANT_URI_SCHEME);
    for b in prefix.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_survives_its_uri() {
        for p in ["cfg/", "app/x/", "a b%c/ü", ""] {
            let uri = grant_uri(p);
            assert!(uri.is_ascii(), "{uri}");
            assert_eq!(decode(&uri[GRANT_URI_SCHEME.len()..]).as_deref(), Some(p));
        }
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
    }

    #[test]
    fn a_grant_allows_only_its_prefixes() {
        let g = Grant::prefixes(vec!["cfg/".into(), "app/x/".into()]);
        assert!(g.allows("cfg/a"));
        assert!(g.allows("app/x/y"));
        assert!(!g.allows("app/y"));
        assert!(!g.allows("cf"));
        assert!(Grant::all().allows("anything"));
    }
}
