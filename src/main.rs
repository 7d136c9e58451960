//! The `gossamer` command: run a node, manage certificates, talk to a node's admin API,
//! and run the demo.

mod cli;

/// mimalloc instead of the system allocator: the hot paths allocate per entry and per
/// datagram (ARCHITECTURE.md, "Layers", the CLI row).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// gossamer: a secure gossip overlay over mutually authenticated QUIC.
#[derive(Debug, Parser)]
#[command(name = "gossamer", version, about, propagate_version = true)]
struct Cli {
    /// Log as JSON lines instead of text (logs go to stderr; RUST_LOG filters them).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    Run(Box<cli::run::RunArgs>),
    /// Run a deterministic simulation scenario (TOML) and check its properties.
    Sim(cli::sim_cmd::SimArgs),
    /// Start a local cluster with generated certificates and show it converging.
    Demo(cli::demo::DemoArgs),
    /// Create a fleet CA and issue node certificates.
    Certs(cli::certs::CertsArgs),
    /// Read and write keys through a node's admin API.
    Kv(cli::admin_cmds::KvArgs),
    /// Send a user event to every live member through a node.
    Event(cli::event_cmds::EventArgs),
    /// Show the recent user events a node delivered (--watch: follow them).
    Events(cli::event_cmds::EventsArgs),
    /// Ask the members matching a filter through a node and print their answers (exit
    /// 1 if a matching member did not answer).
    Query(cli::query_cmd::QueryArgs),
    /// List the members a node knows (--watch: follow changes).
    Members(cli::admin_cmds::MembersArgs),
    /// Follow a node's membership changes and user events as they happen.
    Monitor(cli::monitor::MonitorArgs),
    /// Show a node's status.
    Status(cli::status_cmd::StatusArgs),
    /// Start a local cluster under injected faults and report whether and how fast it converges.
    Test(cli::test_cmd::TestArgs),
    /// Benchmark a local cluster (real QUIC or simulated): propagation, traffic, redundancy.
    Bench(cli::bench::BenchArgs),
    /// Benchmark durability: write throughput with sync, relaxed or no data directory,
    /// commits per write, and startup time and disk bytes of a large store.
    BenchDurable(cli::bench_durable::BenchDurableArgs),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,gossamer=info"));
    // Beside stderr, every line the filter lets through goes to the node's log watches
    // (`GET /v1/watch/logs`, `gossamer monitor`).
    let watches = gossamer::admin::logs::LogLayer::install();
    let registry = tracing_subscriber::registry().with(filter).with(watches);
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_default = matches!(
        cli.command,
        Command::Demo(_)
            | Command::Test(_)
            | Command::Sim(_)
            | Command::Kv(_)
            | Command::Members(_)
            | Command::Monitor(_)
            | Command::Event(_)
            | Command::Events(_)
            | Command::Query(_)
            | Command::Status(_)
            | Command::Certs(_)
            | Command::Bench(_)
            | Command::BenchDurable(_)
    );
    if !quiet_default || std::env::var_os("RUST_LOG").is_some() {
        init_logging(cli.log_json);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: anyhow::Result<i32> = rt.block_on(async move {
        match cli.command {
            Command::Run(a) => cli::run::run(*a).await.map(|_| 0),
            Command::Demo(a) => cli::demo::run(a).await.map(|_| 0),
            Command::Sim(a) => cli::sim_cmd::run(a),
            Command::Certs(a) => cli::certs::run(a).map(|_| 0),
            Command::Kv(a) => cli::admin_cmds::run_kv(a).await,
            Command::Members(a) => cli::admin_cmds::run_members(a).await,
            Command::Monitor(a) => cli::monitor::run(a).await,
            Command::Event(a) => cli::event_cmds::run_event(a).await,
            Command::Events(a) => cli::event_cmds::run_events(a).await,
            Command::Query(a) => cli::query_cmd::run(a).await,
            Command::Status(a) => cli::status_cmd::run_status(a).await,
            Command::Test(a) => cli::test_cmd::run(a).await,
            Command::Bench(a) => cli::bench::run(a).await,
            Command::BenchDurable(a) => cli::bench_durable::run(a).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<cli::UsageError>().is_some()
                || e.chain().any(|c| c.is::<cli::UsageError>())
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
