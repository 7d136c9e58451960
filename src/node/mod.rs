//! The runtime: tokio tasks that glue the sans-IO core to QUIC, timers and the API.

mod admin_backend;
mod api;
mod config;
pub mod local;
mod reload;
mod runtime;

pub use api::*;
pub use config::NodeConfig;
pub use reload::{CertStatus, ReloadReport, SecurityConfig};
pub use runtime::{BandwidthView, Node, RuntimeStats};
