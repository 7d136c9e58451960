//! The runtime: tokio tasks that glue the sans-IO core to QUIC, timers and the API.

mod api;
pub use api::*;
