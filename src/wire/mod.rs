//! Wire format: a protocol version byte followed by CBOR (serde + ciborium), with hard
//! bounds on every size. Decoding never panics and never trusts a declared length: a
//! malformed input is an error the caller counts and drops.
//!
//! - Datagram: `[version][CBOR Datagram]`, at most [`MAX_DATAGRAM`] bytes.
//! - Reliable message (uni stream): `[STREAM_RELIABLE][version][CBOR Datagram]`, at most
//!   [`MAX_RELIABLE`] bytes, for items too large for a datagram.
//! - Sync stream (bi stream): `[STREAM_SYNC]` then frames `[u32 BE length][version][CBOR
//!   SyncFrame]`, each at most [`MAX_FRAME`] bytes.

use crate::core::proto::{Datagram, Item, SyncFrame};

/// Protocol version carried by every datagram and frame.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest datagram accepted.
pub const MAX_DATAGRAM: usize = 65_527;
/// Largest reliable (uni-stream) message accepted.
pub const MAX_RELIABLE: usize = 1024 * 1024;
/// Largest sync frame accepted.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Most items in one datagram or reliable message.
pub const MAX_ITEMS: usize = 512;
/// Most entries in one sync frame.
pub const MAX_ENTRIES_PER_FRAME: usize = 4_096;
/// Most members in one sync frame.
pub const MAX_MEMBERS_PER_FRAME: usize = 1_024;
/// Most writers in a causal context.
pub const MAX_CONTEXT_WRITERS: usize = 200_000;
/// Most ranges in a causal context.
pub const MAX_CONTEXT_RANGES: usize = 1_000_000;
/// First byte of a bi stream that carries an anti-entropy exchange.
pub const STREAM_SYNC: u8 = 1;
/// First byte of a uni stream that carries an oversized datagram.
pub const STREAM_RELIABLE: u8 = 2;

/// Why an input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Nothing to decode.
    #[error("empty message")]
    Empty,
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u8),
    /// Larger than the bound for its kind.
    #[error("{kind} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// "datagram", "frame", ...
        kind: &'static str,
        /// Length seen or declared.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not valid CBOR for the expected message.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// What was being decoded.
        kind: &'static str,
        /// Decoder's reason.
        reason: String,
    },
    /// Well-formed, but breaks a count limit.
    #[error("{0}")]
    Limit(String),
    /// An unknown stream type byte.
    #[error("unknown stream type {0}")]
    StreamType(u8),
}

fn encode_versioned<T: serde::Serialize>(prefix: &[u8], value: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(prefix);
    buf.push(PROTOCOL_VERSION);
    // Writing into a Vec cannot fail for our types.
    let _ = ciborium::into_writer(value, &mut buf);
    buf
}

fn decode_versioned<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, WireError> {
    if bytes.is_empty() {
        return Err(WireError::Empty);
    }
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            kind,
            len: bytes.len(),
            max,
        });
    }
    if bytes[0] != PROTOCOL_VERSION {
        return Err(WireError::Version(bytes[0]));
    }
    let mut rest = &bytes[1..];
    let v: T = ciborium::de::from_reader_with_recursion_limit(&mut rest, 32).map_err(|e| {
        WireError::Malformed {
            kind,
            reason: e.to_string(),
        }
    })?;
    if !rest.is_empty() {
        return Err(WireError::Malformed {
            kind,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(v)
}

/// Encodes a datagram.
pub fn encode_datagram(d: &Datagram) -> Vec<u8> {
    encode_versioned(&[], d)
}

/// Decodes a datagram, enforcing [`MAX_DATAGRAM`] and [`MAX_ITEMS`].
pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram, WireError> {
    let d: Datagram = decode_versioned("datagram", bytes, MAX_DATAGRAM)?;
    check_items(&d.items)?;
    Ok(d)
}

/// Encodes an oversized datagram for a uni stream (stream type byte included).
pub fn encode_reliable(d: &Datagram) -> Vec<u8> {
    encode_versioned(&[STREAM_RELIABLE], d)
}

/// Turns an encoded datagram into the same message for a uni stream (what
/// [`encode_reliable`] makes of its value), without encoding it again.
pub fn reliable_from_datagram(mut datagram: Vec<u8>) -> Vec<u8> {
    datagram.insert(0, STREAM_RELIABLE);
    datagram
}

/// Decodes the body of a reliable message (after the stream type byte).
pub fn decode_reliable(bytes: &[u8]) -> Result<Datagram, WireError> {
    let d: Datagram = decode_versioned("reliable message", bytes, MAX_RELIABLE)?;
    check_items(&d.items)?;
    Ok(d)
}

fn check_items(items: &[Item]) -> Result<(), WireError> {
    if items.len() > MAX_ITEMS {
        return Err(WireError::Limit(format!(
            "{} items in one message, limit {MAX_ITEMS}",
            items.len()
        )));
    }
    Ok(())
}

/// Encodes a sync frame with its 4-byte length prefix.
pub fn encode_frame(f: &SyncFrame) -> Vec<u8> {
    let body = encode_versioned(&[], f);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Validates a frame's declared length before anything is read or allocated.
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > MAX_FRAME {
        return Err(WireError::TooLarge {
            kind: "frame",
            len,
            max: MAX_FRAME,
        });
    }
    Ok(len)
}

/// Decodes a frame body (without the length prefix) and checks its count limits.
pub fn decode_frame(body: &[u8]) -> Result<SyncFrame, WireError> {
    let f: SyncFrame = decode_versioned("frame", body, MAX_FRAME)?;
    match f {
        SyncFrame::Entries(e) if e.len() > MAX_ENTRIES_PER_FRAME => Err(WireError::Limit(format!(
            "{} entries in one frame, limit {MAX_ENTRIES_PER_FRAME}",
            e.len()
        ))),
        SyncFrame::Sealed(runs)
            if runs.iter().map(|r| r.entries.len()).sum::<usize>() > MAX_ENTRIES_PER_FRAME =>
        {
            Err(WireError::Limit(format!(
                "more than {MAX_ENTRIES_PER_FRAME} entries in one frame"
            )))
        }
        SyncFrame::Members(m) if m.len() > MAX_MEMBERS_PER_FRAME => Err(WireError::Limit(format!(
            "{} members in one frame, limit {MAX_MEMBERS_PER_FRAME}",
            m.len()
        ))),
        SyncFrame::Open {
            kind,
            mut ctx,
            gc_horizon_ms,
            mut stable,
            members_digest,
            compact,
            same,
            digest,
            again,
            reads_held,
        } => {
            for (what, c) in [("causal context", &mut ctx), ("fence", &mut stable)] {
                if c.0.len() > MAX_CONTEXT_WRITERS || c.range_count() > MAX_CONTEXT_RANGES {
                    return Err(WireError::Limit(format!("{what} too large")));
                }
                // Decoded ranges come from an untrusted peer: normalise them in place.
                for r in c.0.values_mut() {
                    *r = crate::core::state::RangeSet::from_ranges(std::mem::take(r).into_ranges());
                }
                c.0.retain(|_, r| !r.is_empty());
            }
            Ok(SyncFrame::Open {
                kind,
                ctx,
                gc_horizon_ms,
                stable,
                members_digest,
                compact,
                same,
                digest,
                again,
                reads_held,
            })
        }
        f => Ok(f),
    }
}

#[cfg(test)]
mod tests;
