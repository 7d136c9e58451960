//! Seeds as the operator sees them: a seed that does not answer is logged at WARN while
//! this node is alone (a misconfigured node must not look healthy), at back-off steps
//! 1, 2, 4, 8, ... failures so the log does not flood, and shown in `status`.

use super::*;
use crate::node::api::SeedStatus;

impl Node {
    /// Feeds a seed attempt's outcome to the engine and tells the operator.
    pub(super) fn seed_answered(&self, seed: usize, addr: &str, answered: Result<NodeId, String>) {
        let now = self.inner.now();
        let (failures, alone, retry) = {
            let mut e = self.inner.engine();
            e.seed_result(now, seed, answered.as_ref().ok().cloned());
            let retry = e
                .seeds(now)
                .get(seed)
                .and_then(|s| s.retry_in_ms)
                .unwrap_or(0);
            (e.seed_failures(seed), e.members().live_count() <= 1, retry)
        };
        self.inner.wake.notify_one();
        let mut errors = self
            .inner
            .seed_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match answered {
            Ok(_) => {
                errors.remove(addr);
            }
            Err(why) => {
                if alone && failures.is_power_of_two() {
                    tracing::warn!(seed = %addr, failures, retry_in_ms = retry, error = %why, "seed did not let us join; this node is alone until one does (check `seeds` and the seed's address, certificate and firewall)");
                } else {
                    tracing::debug!(seed = %addr, failures, error = %why, "seed attempt failed");
                }
                errors.insert(addr.to_string(), why);
            }
        }
    }

    /// Every configured seed: who answered there, failures in a row, the next attempt and
    /// the last error.
    pub fn seed_status(&self) -> Vec<SeedStatus> {
        let now = self.inner.now();
        let views = self.inner.engine().seeds(now);
        let errors = self
            .inner
            .seed_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        views
            .into_iter()
            .map(|v| SeedStatus {
                last_error: errors.get(&v.addr).cloned(),
                seed: v,
            })
            .collect()
    }
}
