//! Certificates and mTLS (placeholder; being written).

/// Identity errors.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Placeholder.
    #[error("todo")]
    Todo,
}
