//! A rebase against a peer's fence, run as a question inside one exchange.
//!
//! A node whose context and fence do not cover what a peer vouches for (the peer
//! collected deletes without it) may hold values those deletes removed. Its candidates
//! are the entries stamped before `now − grace` whose dots the peer vouches for and has
//! seen. It hides their dots from the context it opens the exchange with, so the peer
//! sends back every candidate it still holds (or what superseded it); at the end of the
//! exchange, a candidate the peer did not send back and that nothing changed meanwhile
//! is dead at the peer (under a delete it collected) and is dropped. Nothing leaves the
//! store before the peer has answered, and the dots stay in the context (those writes
//! were seen), so a late copy changes nothing and no other exchange can be misled by a
//! half-done rebase; two nodes rebasing against each other each drop only what the other
//! demonstrably does not hold.

use std::collections::{BTreeMap, BTreeSet};

use super::{CausalContext, VersionVector};

/// One rebase in progress: what may be dropped, and what the peer sent back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebaseProbe {
    /// What the peer vouches for; adopted into our fence once the rebase completes.
    pub(super) vouched: CausalContext,
    /// Candidate keys with the version vector they had when the probe began.
    pub(super) candidates: BTreeMap<String, VersionVector>,
    /// The candidates' dots, hidden from our `Open`.
    pub(super) hidden: CausalContext,
    /// Candidate keys the peer sent an entry for.
    pub(super) returned: BTreeSet<String>,
}

impl RebaseProbe {
    /// `ctx` without the candidates' dots: the context to open the exchange with.
    pub fn hide(&self, ctx: &CausalContext) -> CausalContext {
        let mut out = ctx.clone();
        for (w, r) in &self.hidden.0 {
            for &(a, b) in r.ranges() {
                out.remove_range(w, a, b);
            }
        }
        out
    }

    /// Notes that the peer sent an entry for `key`.
    pub fn returned(&mut self, key: &str) {
        if self.candidates.contains_key(key) {
            self.returned.insert(key.to_string());
        }
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    /// True without candidates (the rebase then only adopts the peer's fence).
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}
