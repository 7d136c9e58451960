//! How the admin commands reach a node: its address, bearer token and, for HTTPS, the
//! fleet's CA and an operator certificate; each from a flag or an environment variable.

use std::path::PathBuf;

use clap::Args;

use gossamer::admin::client::AdminClient;

use super::UsageError;

/// Admin address used when neither `--admin` nor `GOSSAMER_ADMIN` is given.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:7947";

/// Environment variable read when `--admin` is not given.
pub const ADMIN_ENV: &str = "GOSSAMER_ADMIN";

/// Environment variable read when `--token` is not given.
pub const TOKEN_ENV: &str = "GOSSAMER_ADMIN_TOKEN";

/// Environment variables read when `--ca`, `--cert` or `--key` is not given.
pub const CA_ENV: &str = "GOSSAMER_ADMIN_CA";
/// See [`CA_ENV`].
pub const CERT_ENV: &str = "GOSSAMER_ADMIN_CERT";
/// See [`CA_ENV`].
pub const KEY_ENV: &str = "GOSSAMER_ADMIN_KEY";

/// How to reach a node's admin API.
#[derive(Debug, Clone, Default, Args)]
pub struct AdminConn {
    /// Admin API address of the node (host:port) [env: GOSSAMER_ADMIN] [default: 127.0.0.1:7947]
    #[arg(long, value_name = "ADDR", global = true)]
    pub admin: Option<String>,
    /// Bearer token for the admin API, if the node requires one [env: GOSSAMER_ADMIN_TOKEN]
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Speak HTTPS, trusting nodes of the fleet CA in FILE (ca.pem) [env: GOSSAMER_ADMIN_CA]
    // Own ids: `kv set KEY` has a positional argument named `key`.
    #[arg(id = "tls_ca", long = "ca", value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate for HTTPS (from `gossamer certs issue --client NAME`)
    /// [env: GOSSAMER_ADMIN_CERT]
    // Own ids: `kv set KEY` has a positional argument named `key`.
    #[arg(id = "tls_cert", long = "cert", value_name = "FILE", global = true)]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key [env: GOSSAMER_ADMIN_KEY]
    // Own ids: `kv set KEY` has a positional argument named `key`.
    #[arg(id = "tls_key", long = "key", value_name = "FILE", global = true)]
    pub key: Option<PathBuf>,
}

impl AdminConn {
    /// The admin address: `--admin`, else `$GOSSAMER_ADMIN`, else [`DEFAULT_ADMIN_ADDR`].
    pub fn addr(&self) -> String {
        self.admin
            .clone()
            .or_else(|| env_nonempty(ADMIN_ENV))
            .unwrap_or_else(|| DEFAULT_ADMIN_ADDR.to_string())
    }

    /// The token: `--token`, else `$GOSSAMER_ADMIN_TOKEN`, else none.
    pub fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| env_nonempty(TOKEN_ENV))
    }

    /// A client for the selected node: HTTPS when a CA is given (`--ca` or
    /// `$GOSSAMER_ADMIN_CA`), presenting `--cert`/`--key` when given.
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        let path = |flag: &Option<PathBuf>, env: &str| {
            flag.clone()
                .or_else(|| env_nonempty(env).map(PathBuf::from))
        };
        let addr = self.addr();
        let client = AdminClient::new(addr.clone(), self.token());
        let (ca, cert, key) = (
            path(&self.ca, CA_ENV),
            path(&self.cert, CERT_ENV),
            path(&self.key, KEY_ENV),
        );
        let Some(ca) = ca else {
            if cert.is_some() || key.is_some() || addr.starts_with("https://") {
                return Err(UsageError(
                    "--ca: HTTPS needs the fleet's CA certificate to check the node; pass \
                     --ca FILE (ca.pem) or set GOSSAMER_ADMIN_CA"
                        .into(),
                )
                .into());
            }
            return Ok(client);
        };
        let pair = match (&cert, &key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => {
                return Err(UsageError(
                    "--cert/--key: give both the client certificate and its key (from \
                     `gossamer certs issue --client NAME`), or neither"
                        .into(),
                )
                .into())
            }
        };
        let config = gossamer::identity::admin_client_config(&ca, pair)
            .map_err(|e| UsageError(format!("--ca/--cert/--key: {e}")))?;
        Ok(client.with_tls(std::sync::Arc::new(config)))
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_cmds_default_addr() {
        let conn = AdminConn {
            admin: Some("10.0.0.1:1".into()),
            ..AdminConn::default()
        };
        assert_eq!(conn.addr(), "10.0.0.1:1");
        // Without --admin, the env var or the default (the env may be set by the caller).
        let conn = AdminConn::default();
        let expected = env_nonempty(ADMIN_ENV).unwrap_or_else(|| DEFAULT_ADMIN_ADDR.into());
        assert_eq!(conn.addr(), expected);
    }
}
