//! gossamer: a secure gossip overlay.
//!
//! Nodes hold certificates from their fleet's CA, keep mutually authenticated QUIC
//! connections, agree on membership, and replicate a key-value state with version
//! vectors. Small changes travel as QUIC datagrams, full reconciliation on QUIC streams.
//!
//! Layers, top to bottom (each uses only those below it): the `gossamer` binary's CLI, [`node`], [`admin`],
//! [`transport`], [`identity`], [`wire`], [`core`]. See ARCHITECTURE.md.
//!
//! # Embedding a node
//!
//! The crate root re-exports what a program that runs a node needs: [`Node`] and its
//! [`NodeConfig`], the views it returns ([`KvEntry`], [`MemberView`], [`StatusView`]), the
//! [`Event`]s it publishes, and the calls that create a fleet's certificates
//! ([`write_ca`], [`write_node`], or in memory [`generate_ca`], [`issue_node`]).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::path::Path;
//!
//! use gossamer::identity::{DEFAULT_CA_DAYS, DEFAULT_NODE_DAYS};
//! use gossamer::{ClusterName, Event, Node, NodeConfig, NodeId};
//!
//! # async fn embed() -> Result<(), Box<dyn std::error::Error>> {
//! // Once per fleet: a CA, then a certificate per node, in the folder the node loads.
//! let certs = Path::new("certs");
//! let id = NodeId::new("n1")?;
//! gossamer::write_ca(certs, &ClusterName::new("prod")?, DEFAULT_CA_DAYS, false)?;
//! gossamer::write_node(certs, &id, &["10.0.0.1".parse()?], &[], None, DEFAULT_NODE_DAYS)?;
//!
//! let listen: SocketAddr = "10.0.0.1:7946".parse()?;
//! let mut cfg = NodeConfig::new(id, listen, certs.to_path_buf());
//! cfg.seeds = vec!["10.0.0.2:7946".into()];
//! let node = Node::start(cfg).await?;
//!
//! // Every change of the replicated state, local or from a peer, is an event.
//! let mut events = node.subscribe();
//! node.set("greeting", b"hello".to_vec())?;
//! if let Event::Kv { entry, .. } = events.recv().await? {
//!     println!("{} changed", entry.key);
//! }
//! println!("{} members, {} keys", node.members().len(), node.status().keys);
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! `testing` (on by default) builds what the binary's `demo`, `sim`, `bench` and `test`
//! commands and the integration tests run on: the simulator (`sim`), the fault-injecting
//! socket (`chaos`), in-process clusters (`local`) and the admin API's test
//! harness. A program that only runs nodes can depend on the crate with
//! `default-features = false` and leave them out.
#![warn(missing_docs)]

pub mod admin;
#[cfg(feature = "testing")]
pub mod chaos;
pub mod core;
pub mod identity;
#[cfg(feature = "testing")]
pub mod local;
pub mod node;
#[cfg(feature = "testing")]
pub mod sim;
pub mod transport;
pub mod wire;

pub use crate::core::{ClusterName, Event, NodeId};
pub use crate::identity::{
    generate_ca, issue_node, write_ca, write_node, IdentityError, PemPair, WrittenFiles,
};
pub use crate::node::{KvEntry, MemberView, Node, NodeConfig, NodeError, StatusView};
