//! The runtime: tokio tasks that glue the sans-IO core to QUIC, timers and the API.

mod admin_backend;
mod api;
mod config;
pub mod local;
mod runtime;

pub use api::*;
pub use config::NodeConfig;
pub use runtime::{Node, RuntimeStats};
