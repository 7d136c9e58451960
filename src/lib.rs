//! gossamer: a secure gossip overlay.
//!
//! Nodes hold certificates from their fleet's CA, keep mutually authenticated QUIC
//! connections, agree on membership, and replicate a key-value state with version
//! vectors. Small changes travel as QUIC datagrams, full reconciliation on QUIC streams.
//!
//! Layers, top to bottom (each uses only those below it): the `gossamer` binary's CLI, [`node`], [`admin`],
//! [`transport`], [`identity`], [`wire`], [`core`]. See ARCHITECTURE.md.
#![warn(missing_docs)]

pub mod admin;
#[cfg(feature = "testing")]
pub mod chaos;
pub mod core;
pub mod identity;
pub mod node;
#[cfg(feature = "testing")]
pub mod sim;
pub mod transport;
pub mod wire;
