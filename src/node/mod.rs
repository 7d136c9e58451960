//! The runtime: tokio tasks that glue the sans-IO core to QUIC, timers and the API.

mod admin_backend;
mod api;
mod config;
pub mod local;
pub mod persist;
mod reload;
mod runtime;

pub use api::*;
pub use config::NodeConfig;
pub use persist::{Durability, PersistError, PersistStats};
pub use reload::{CertStatus, ReloadReport, SecurityConfig};
pub use runtime::{BandwidthView, Node, RuntimeStats};
