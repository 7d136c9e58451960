//! Node and cluster identifiers.
//!
//! Both are restricted to DNS-label syntax (lowercase ASCII letters, digits and `-`,
//! 1 to 63 characters, not starting or ending with `-`) so that they can appear in
//! certificate SAN URIs (`gossamer://<cluster>/<node-id>`), file names and metric
//! labels without escaping.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than 63 characters.
    #[error("{what} must be 1 to 63 characters long (got {len})")]
    Length {
        /// "node id" or "cluster name".
        what: &'static str,
        /// The length seen.
        len: usize,
    },
    /// A character outside `[a-z0-9-]`, or a leading/trailing `-`.
    #[error("{what} {value:?} may contain only lowercase letters, digits and '-', and may not start or end with '-'")]
    Syntax {
        /// "node id" or "cluster name".
        what: &'static str,
        /// The rejected value.
        value: String,
    },
}

fn check_label(what: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() || s.len() > 63 {
        return Err(IdError::Length { what, len: s.len() });
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(IdError::Syntax {
            what,
            value: s.to_string(),
        })
    }
}

/// A node's identity: the name in its certificate. Cheap to clone, and one pointer
/// wide (a thin `Arc` to the boxed name): every node holds several lists of all
/// members, so the width counts N² times in a simulated cluster.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<Box<str>>);

impl NodeId {
    /// Validates and wraps a node id.
    pub fn new(s: &str) -> Result<Self, IdError> {
        check_label("node id", s)?;
        Ok(Self(Arc::new(Box::from(s))))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        NodeId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The name of a cluster (fleet): every certificate of the fleet carries it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ClusterName(Arc<str>);

impl ClusterName {
    /// Validates and wraps a cluster name.
    pub fn new(s: &str) -> Result<Self, IdError> {
        check_label("cluster name", s)?;
        Ok(Self(Arc::from(s)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ClusterName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClusterName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ClusterName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_and_rejects_others() {
        assert!(NodeId::new("node-1").is_ok());
        assert!(NodeId::new("a").is_ok());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("-a").is_err());
        assert!(NodeId::new("a-").is_err());
        assert!(NodeId::new("Node").is_err());
        assert!(NodeId::new("a/b").is_err());
        assert!(NodeId::new(&"a".repeat(64)).is_err());
        assert!(NodeId::new(&"a".repeat(63)).is_ok());
    }
}
