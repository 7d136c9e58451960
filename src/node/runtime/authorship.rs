//! The runtime's side of signed writes: installing the node's authority in the engine
//! (with the writers' certificates the store already holds), publishing this node's
//! certificates, and renewing both on a certificate reload.

use super::*;
use crate::core::authority::{Authority as _, RefusalCounts};
use crate::core::state::SYSTEM_PREFIX;
use crate::node::certs_key;

/// Hands `authority` to the engine, after teaching it the writers' certificates held
/// from an earlier life: its directory starts empty, and these entries will not arrive
/// again.
pub(super) fn install(engine: &mut Engine, authority: &NodeAuthority) {
    let prefix = certs_key(engine.id());
    let prefix = &prefix[..prefix.len() - engine.id().as_str().len()];
    let mut learn = authority.clone();
    for e in engine.store().scan_prefix(prefix) {
        for w in e.writes() {
            if let Err(r) = learn.verify(&e.key, &w) {
                tracing::warn!(key = ?e.key, writer = %w.writer, reason = %r, "a stored writer certificate no longer verifies");
            }
        }
    }
    engine.set_authority(Box::new(authority.clone()));
}

/// Publishes this node's certificate chains under its reserved key when they changed
/// (first start, renewal), so every node can verify its writes.
pub(super) fn publish(engine: &mut Engine, authority: &NodeAuthority, now: Now) {
    let key = certs_key(engine.id());
    let me = engine.id().clone();
    let previous = engine
        .store()
        .entry(&key)
        .filter(|e| e.writer == me)
        .and_then(|e| e.value.as_deref());
    let Some(value) = authority.certs_value(previous) else {
        return;
    };
    let name = &key[SYSTEM_PREFIX.len_utf8()..];
    if let Err(e) = engine.write_system(now, name, value) {
        // Only a dot lease not yet durable can refuse it; housekeeping retries.
        tracing::warn!(error = %e, "cannot publish this node's certificates yet; peers refuse its writes until it does");
    }
}

impl Node {
    /// Peers' writes this node refused, by reason (signatures, grants, revocations).
    pub fn writes_refused(&self) -> RefusalCounts {
        self.inner.engine().writes_refused().clone()
    }

    /// After a certificate reload: signs with the renewed key, judges known writers'
    /// keys against the reloaded trust, and publishes the renewed chain.
    pub(crate) fn renew_authority(
        &self,
        identity: &crate::identity::Identity,
        trust: &crate::identity::TrustBundle,
    ) -> Result<(), NodeError> {
        let Some(a) = &self.inner.authority else {
            return Ok(());
        };
        a.renew(identity, trust, &identity.cluster)?;
        let now = self.inner.now();
        publish(&mut self.inner.engine(), a, now);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Publishes this node's certificates if the stored ones are not the current chain
    /// (cheap otherwise: one decode of the stored value).
    pub(crate) fn republish_certificates(&self) {
        if let Some(a) = &self.inner.authority {
            let now = self.inner.now();
            publish(&mut self.inner.engine(), a, now);
            self.inner.wake.notify_one();
        }
    }

    /// This node's write grant (`None`: writes are not signed, every key).
    pub fn write_grant(&self) -> Option<crate::identity::Grant> {
        self.inner.authority.as_ref().map(NodeAuthority::grant)
    }

    /// Whether this node can verify `writer`'s writes: it holds a certificate of the
    /// writer's that verified (always true when writes are not signed). Until then the
    /// writer's writes are refused (`unknown_writer`) and fetched again later.
    pub fn can_verify(&self, writer: &NodeId) -> bool {
        self.inner
            .authority
            .as_ref()
            .is_none_or(|a| a.knows(writer))
    }
}
