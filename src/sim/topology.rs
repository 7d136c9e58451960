//! Datacenters in the simulator: which node is where, latency, jitter and loss inside
//! and between datacenters, the bytes that cross between them, and when each write was
//! complete in each datacenter.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::Sim;

/// One datacenter of a simulated [`Topology`].
#[derive(Debug, Clone, PartialEq)]
pub struct Datacenter {
    /// Name (the nodes' `dc`).
    pub name: String,
    /// Nodes in it; node indices are assigned datacenter by datacenter, in order.
    pub nodes: usize,
    /// One-way latency between two of its nodes (µs).
    pub latency_us: u64,
    /// Uniform jitter on that (µs).
    pub jitter_us: u64,
    /// Datagram loss between two of its nodes.
    pub loss: f64,
}

/// Datacenters and the WAN between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// The datacenters, in node order.
    pub datacenters: Vec<Datacenter>,
    /// One-way latency between nodes of different datacenters (µs).
    pub wan_latency_us: u64,
    /// Uniform jitter on that (µs).
    pub wan_jitter_us: u64,
    /// Datagram loss between datacenters.
    pub wan_loss: f64,
}

impl Topology {
    /// Total nodes.
    pub fn nodes(&self) -> usize {
        self.datacenters.iter().map(|d| d.nodes).sum()
    }
}

/// Traffic between datacenters (sent by one datacenter, addressed to another).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WanTraffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Datagram bytes (with the modelled header).
    pub datagram_bytes: u64,
    /// Anti-entropy stream bytes.
    pub sync_bytes: u64,
}

impl WanTraffic {
    /// Every byte that crossed.
    pub fn bytes(&self) -> u64 {
        self.datagram_bytes + self.sync_bytes
    }
}

/// A topology with each node's datacenter.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    pub(super) spec: Topology,
    pub(super) dc_of: Vec<usize>,
}

/// Notes that node `node` now holds write `w` (for per-datacenter completion times).
pub(super) fn note_arrival(
    arrive: &mut [Vec<u64>],
    topo: Option<&Placed>,
    w: usize,
    node: usize,
    now_us: u64,
) {
    if let (Some(t), Some(a)) = (topo, arrive.get_mut(w)) {
        let d = t.dc_of[node];
        a[d] = a[d].max(now_us);
    }
}

impl Sim {
    /// Places the nodes in datacenters (before the run starts): node `i` gets the `dc` of
    /// the datacenter it falls in, links inside a datacenter and between datacenters get
    /// their latency, jitter and loss, and traffic between datacenters is counted
    /// ([`Sim::wan_traffic`]). The [`super::NetModel`]'s latency, jitter and loss are set to
    /// zero (a later `Net` action's values add to the topology's); its duplication and
    /// bandwidth stay.
    pub fn set_topology(&mut self, topo: Topology) -> Result<(), String> {
        if topo.nodes() != self.nodes.len() {
            return Err(format!(
                "the datacenters hold {} nodes, the simulation has {}",
                topo.nodes(),
                self.nodes.len()
            ));
        }
        let mut dc_of = Vec::with_capacity(self.nodes.len());
        for (d, dc) in topo.datacenters.iter().enumerate() {
            dc_of.extend(std::iter::repeat_n(d, dc.nodes));
        }
        self.cfg.net.latency_us = 0;
        self.cfg.net.jitter_us = 0;
        self.cfg.net.loss = 0.0;
        self.topo = Some(Placed { spec: topo, dc_of });
        Ok(())
    }

    /// The topology, if one was set.
    pub fn topology(&self) -> Option<&Topology> {
        self.topo.as_ref().map(|t| &t.spec)
    }

    /// Datacenter index of node `i` (0 without a topology).
    pub fn dc_index(&self, i: usize) -> usize {
        self.topo.as_ref().map_or(0, |t| t.dc_of[i])
    }

    /// The `dc` node `i` announces.
    pub(super) fn dc_name(&self, i: usize) -> String {
        match &self.topo {
            Some(t) => t.spec.datacenters[t.dc_of[i]].name.clone(),
            None => "sim".into(),
        }
    }

    /// Traffic between datacenters so far.
    pub fn wan_traffic(&self) -> &WanTraffic {
        &self.wan
    }

    /// Per datacenter, when (µs) the last of its nodes first held write `w` (the write's
    /// own time for a datacenter none of whose nodes got it). Empty without a topology.
    pub fn write_dc_done_us(&self, w: usize) -> &[u64] {
        self.dc_arrive.get(w).map_or(&[], Vec::as_slice)
    }

    /// Starts per-datacenter tracking of the write just added.
    pub(super) fn track_write_dcs(&mut self, at_us: u64) {
        if let Some(t) = &self.topo {
            self.dc_arrive.push(vec![at_us; t.spec.datacenters.len()]);
        }
    }

    /// Latency and jitter of the link from `from` to `to` under the topology (µs; 0
    /// without one).
    pub(super) fn link_delay_us(&mut self, from: usize, to: usize) -> u64 {
        let Some(t) = &self.topo else {
            return 0;
        };
        let (a, b) = (t.dc_of[from], t.dc_of[to]);
        let (lat, jit) = if a == b {
            let d = &t.spec.datacenters[a];
            (d.latency_us, d.jitter_us)
        } else {
            (t.spec.wan_latency_us, t.spec.wan_jitter_us)
        };
        if jit > 0 {
            lat + self.rng.random_range(0..=jit)
        } else {
            lat
        }
    }

    /// True if the topology's loss drops this datagram.
    pub(super) fn link_lost(&mut self, from: usize, to: usize) -> bool {
        let Some(t) = &self.topo else {
            return false;
        };
        let (a, b) = (t.dc_of[from], t.dc_of[to]);
        let p = if a == b {
            t.spec.datacenters[a].loss
        } else {
            t.spec.wan_loss
        };
        p > 0.0 && self.rng.random_bool(p.min(1.0))
    }

    /// Counts `bytes` sent from `from` to `to` if they cross between datacenters.
    pub(super) fn count_wan(&mut self, from: usize, to: usize, bytes: u64, sync: bool) {
        let Some(t) = &self.topo else {
            return;
        };
        if t.dc_of[from] == t.dc_of[to] {
            return;
        }
        if sync {
            self.wan.sync_bytes += bytes;
        } else {
            self.wan.datagrams += 1;
            self.wan.datagram_bytes += bytes;
        }
    }
}

/// A datacenter in a scenario file (`[[datacenters]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatacenterSpec {
    /// Name (the nodes' `dc`).
    pub name: String,
    /// Nodes in it.
    pub nodes: usize,
    /// One-way latency inside it (ms).
    #[serde(default = "default_dc_latency")]
    pub latency_ms: f64,
    /// Uniform jitter inside it (ms).
    #[serde(default)]
    pub jitter_ms: f64,
    /// Datagram loss inside it.
    #[serde(default)]
    pub loss: f64,
}

fn default_dc_latency() -> f64 {
    1.0
}

/// The links between datacenters in a scenario file (`[wan]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WanSpec {
    /// One-way latency between datacenters (ms).
    pub latency_ms: f64,
    /// Uniform jitter (ms).
    pub jitter_ms: f64,
    /// Datagram loss between datacenters.
    pub loss: f64,
}

impl Default for WanSpec {
    fn default() -> Self {
        Self {
            latency_ms: 50.0,
            jitter_ms: 0.0,
            loss: 0.0,
        }
    }
}

fn us(ms: f64) -> u64 {
    (ms * 1000.0) as u64
}

/// Checks a scenario's datacenters against its node count; the error is (field, reason).
pub(super) fn validate_datacenters(
    dcs: &[DatacenterSpec],
    wan: &WanSpec,
    nodes: usize,
) -> Result<(), (String, String)> {
    if dcs.is_empty() {
        return Ok(());
    }
    let sum: usize = dcs.iter().map(|d| d.nodes).sum();
    if sum != nodes {
        return Err((
            "datacenters".into(),
            format!("their nodes add up to {sum}, but the scenario has nodes = {nodes}"),
        ));
    }
    for (i, d) in dcs.iter().enumerate() {
        let field = format!("datacenters[{i}]");
        if d.name.is_empty() || d.name.len() > 64 {
            return Err((field, "name must be 1 to 64 characters".into()));
        }
        if dcs[..i].iter().any(|o| o.name == d.name) {
            return Err((field, format!("name {:?} appears twice", d.name)));
        }
        if d.nodes == 0 {
            return Err((field, "nodes must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&d.loss) {
            return Err((
                field,
                format!("loss must be between 0 and 1 (got {})", d.loss),
            ));
        }
        if !(d.latency_ms >= 0.0 && d.jitter_ms >= 0.0) {
            return Err((
                field,
                "latency_ms and jitter_ms must not be negative".into(),
            ));
        }
    }
    if !(0.0..=1.0).contains(&wan.loss) {
        return Err((
            "wan.loss".into(),
            format!("must be between 0 and 1 (got {})", wan.loss),
        ));
    }
    if !(wan.latency_ms >= 0.0 && wan.jitter_ms >= 0.0) {
        return Err((
            "wan".into(),
            "latency_ms and jitter_ms must not be negative".into(),
        ));
    }
    Ok(())
}

/// The simulator topology a scenario describes (`None` without datacenters).
pub(super) fn topology_of(dcs: &[DatacenterSpec], wan: &WanSpec) -> Option<Topology> {
    if dcs.is_empty() {
        return None;
    }
    Some(Topology {
        datacenters: dcs
            .iter()
            .map(|d| Datacenter {
                name: d.name.clone(),
                nodes: d.nodes,
                latency_us: us(d.latency_ms),
                jitter_us: us(d.jitter_ms),
                loss: d.loss,
            })
            .collect(),
        wan_latency_us: us(wan.latency_ms),
        wan_jitter_us: us(wan.jitter_ms),
        wan_loss: wan.loss,
    })
}

/// Propagation inside one datacenter: from a write until the last of its nodes held it.
#[derive(Debug, Clone, Serialize)]
pub struct DcPropagation {
    /// Datacenter.
    pub name: String,
    /// Its nodes.
    pub nodes: usize,
    /// p50, p99 and max over the writes that reached every live node (ms).
    pub propagation_ms: [f64; 3],
}

/// Traffic between datacenters over a run, and propagation per datacenter.
#[derive(Debug, Clone, Serialize)]
pub struct WanReport {
    /// Bytes sent from one datacenter to another (datagrams and anti-entropy).
    pub bytes: u64,
    /// Of which datagram bytes.
    pub datagram_bytes: u64,
    /// Of which anti-entropy stream bytes.
    pub sync_bytes: u64,
    /// Datagrams between datacenters.
    pub datagrams: u64,
    /// Writes made.
    pub writes: usize,
    /// `bytes / writes`: everything that crossed (probes and anti-entropy included),
    /// per write.
    pub bytes_per_write: f64,
    /// Propagation per datacenter.
    pub per_dc: Vec<DcPropagation>,
}

impl WanReport {
    /// Rows for the report table.
    pub(super) fn rows(&self) -> String {
        let mut s = format!(
            "  {:<28} {:.0} B ({} B datagrams in {} datagrams, {} B anti-entropy) over {} writes\n",
            "WAN bytes per write",
            self.bytes_per_write,
            self.datagram_bytes,
            self.datagrams,
            self.sync_bytes,
            self.writes
        );
        for d in &self.per_dc {
            s.push_str(&format!(
                "  {:<28} {:.1} / {:.1} / {:.1} ms ({} nodes)\n",
                format!("propagation in {}", d.name),
                d.propagation_ms[0],
                d.propagation_ms[1],
                d.propagation_ms[2],
                d.nodes
            ));
        }
        s
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// The WAN figures of a finished run (`None` without a topology).
pub(super) fn wan_report(sim: &Sim) -> Option<WanReport> {
    let t = sim.topology()?;
    let w = sim.wan_traffic();
    let writes = sim.writes().len();
    let per_dc = t
        .datacenters
        .iter()
        .enumerate()
        .map(|(d, dc)| {
            let mut v: Vec<f64> = sim
                .writes()
                .iter()
                .enumerate()
                .filter(|(_, tw)| tw.done_us.is_some())
                .filter_map(|(i, tw)| {
                    sim.write_dc_done_us(i)
                        .get(d)
                        .map(|&at| at.saturating_sub(tw.at_us) as f64 / 1000.0)
                })
                .collect();
            v.sort_by(|a, b| a.total_cmp(b));
            DcPropagation {
                name: dc.name.clone(),
                nodes: dc.nodes,
                propagation_ms: [
                    pct(&v, 0.5),
                    pct(&v, 0.99),
                    v.last().copied().unwrap_or(0.0),
                ],
            }
        })
        .collect();
    Some(WanReport {
        bytes: w.bytes(),
        datagram_bytes: w.datagram_bytes,
        sync_bytes: w.sync_bytes,
        datagrams: w.datagrams,
        writes,
        bytes_per_write: w.bytes() as f64 / writes.max(1) as f64,
        per_dc,
    })
}
