//! The members of a cluster grouped by datacenter: counts per status and round-trip
//! times, as `gossamer status` prints them and `/metrics` exports them.

use std::collections::BTreeMap;

use super::api::MemberView;

/// Member statuses, in the order metrics list them.
pub const STATUSES: [&str; 4] = ["alive", "suspect", "dead", "left"];

/// One datacenter as seen by one node (in JSON: a count per status, then
/// `rtt_mean_ms` and `rtt_max_ms`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DcSummary {
    /// Members by status (every entry of [`STATUSES`] present), the local node included.
    #[serde(flatten)]
    pub by_status: BTreeMap<&'static str, usize>,
    /// Mean round-trip time (ms) to its alive members with a measurement.
    pub rtt_mean_ms: Option<f64>,
    /// Largest round-trip time (ms) to its alive members with a measurement.
    pub rtt_max_ms: Option<f64>,
}

/// Groups a member list by datacenter. Statuses outside [`STATUSES`] are ignored; RTTs
/// count only for alive members other than the local node.
pub fn datacenters(members: &[MemberView]) -> BTreeMap<String, DcSummary> {
    let mut out: BTreeMap<String, DcSummary> = BTreeMap::new();
    let mut rtts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for m in members {
        let dc = out.entry(m.dc.clone()).or_insert_with(|| DcSummary {
            by_status: STATUSES.iter().map(|s| (*s, 0)).collect(),
            ..DcSummary::default()
        });
        if let Some(n) = dc.by_status.get_mut(m.status.as_str()) {
            *n += 1;
        }
        if let (false, "alive", Some(rtt)) = (m.is_self, m.status.as_str(), m.rtt_ms) {
            if rtt.is_finite() {
                rtts.entry(&m.dc).or_default().push(rtt);
            }
        }
    }
    for (dc, v) in rtts {
        if let Some(s) = out.get_mut(dc) {
            s.rtt_mean_ms = Some(v.iter().sum::<f64>() / v.len() as f64);
            s.rtt_max_ms = v.iter().copied().reduce(f64::max);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, dc: &str, status: &str, rtt: Option<f64>, is_self: bool) -> MemberView {
        MemberView {
            id: crate::core::NodeId::new(id).unwrap(),
            addr: "127.0.0.1:1".into(),
            status: status.into(),
            incarnation: 1,
            dc: dc.into(),
            zone: String::new(),
            tags: BTreeMap::new(),
            last_heard_ms_ago: None,
            rtt_ms: rtt,
            is_self,
        }
    }

    #[test]
    fn datacenters_count_statuses_and_average_alive_rtts() {
        let dcs = datacenters(&[
            member("a1", "eu", "alive", Some(0.5), true),
            member("a2", "eu", "alive", Some(1.0), false),
            member("a3", "eu", "alive", Some(3.0), false),
            member("b1", "us", "alive", Some(80.0), false),
            member("b2", "us", "suspect", Some(900.0), false),
            member("b3", "us", "dead", None, false),
            member("c1", "ap", "left", Some(5.0), false),
            member("c2", "ap", "alive", Some(f64::NAN), false),
        ]);
        assert_eq!(dcs.len(), 3);
        let eu = &dcs["eu"];
        assert_eq!(eu.by_status["alive"], 3);
        assert_eq!(eu.by_status["dead"], 0);
        // The local node's own RTT never counts.
        assert_eq!((eu.rtt_mean_ms, eu.rtt_max_ms), (Some(2.0), Some(3.0)));
        let us = &dcs["us"];
        assert_eq!(
            us.by_status.values().copied().collect::<Vec<_>>(),
            vec![1, 1, 0, 1],
            "alive, dead, left, suspect in key order"
        );
        // A suspect's RTT does not count.
        assert_eq!((us.rtt_mean_ms, us.rtt_max_ms), (Some(80.0), Some(80.0)));
        let ap = &dcs["ap"];
        assert_eq!((ap.by_status["left"], ap.by_status["alive"]), (1, 1));
        assert_eq!((ap.rtt_mean_ms, ap.rtt_max_ms), (None, None));
    }
}
