//! The flags of `gossamer test`.

use clap::Args;

/// Flags of `gossamer test`.
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Number of nodes (2 to 50).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub nodes: usize,
    /// Probability (0 to 1) that a datagram is lost, on every node's sends.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    pub loss: f64,
    /// Delay added to every datagram (milliseconds).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency: u64,
    /// Uniform random delay added on top of --latency (milliseconds).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub jitter: u64,
    /// Probability (0 to 1) that a datagram is sent twice.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    pub duplicate: f64,
    /// Partition schedule: node groups (1-based, separated by `/`) that cannot reach
    /// each other from START to END after the workload starts, e.g. `1,2/3,4,5@5s..20s`.
    #[arg(long, value_name = "GROUPS@START..END")]
    pub partition: Option<String>,
    /// Writes per second, spread over the nodes in turn.
    #[arg(
        long,
        default_value_t = 20.0,
        value_name = "R",
        allow_negative_numbers = true
    )]
    pub writes_per_sec: f64,
    /// Length of the run in seconds (default: partition end + 10 s, or 10 s).
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Seconds the cluster has to converge once the faults end (and to join at start).
    #[arg(
        long,
        default_value_t = 30.0,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub deadline: f64,
    /// Seed of the fault decisions (default: from the clock; printed either way).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
