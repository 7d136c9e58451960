//! The runtime: tokio tasks that glue the sans-IO core to QUIC, timers and the API.

mod api;
mod authority;
mod certs;
mod config;
mod datacenters;
mod duration_histogram;
pub mod events;
pub mod handlers;
mod member_events;
pub mod persist;
pub mod queries;
mod reload;
mod runtime;
mod security;
mod subscription;
pub mod watch;

pub use api::*;
pub use authority::{certs_key, AuthorityError, NodeAuthority, MAX_WRITER_CHAINS};
pub use certs::{CertStatus, ReloadReport};
pub use config::NodeConfig;
pub use datacenters::{datacenters, DcSummary, STATUSES};
pub use duration_histogram::{DurationHistogram, DURATION_BUCKETS};
pub use member_events::{MemberChange, MemberChangeKind, MemberEvent, MemberEvents};
pub use persist::{Durability, PersistError, PersistStats};
pub use runtime::{BandwidthView, Node, QuicFrameStats, RuntimeStats};
pub use security::SecurityConfig;
pub use subscription::{Subscription, SubscriptionError};
pub use watch::WatchConfig;
