//! TODO

pub mod admin_cmds;
pub mod certs;
pub mod client;
