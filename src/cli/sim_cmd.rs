//! `gossamer sim`: run a simulation scenario file and report its properties.

use std::path::PathBuf;

use clap::Args;
use gossamer::sim::Scenario;

/// Flags of `gossamer sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Scenario file (TOML; see scenarios/).
    pub scenario: PathBuf,
    /// Seed (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also run the scenario without its bandwidth cap and print both side by side.
    #[arg(long)]
    pub compare_unlimited: bool,
    /// Protocol settings as TOML (fields of the `[gossip]` section at top level) set
    /// over the scenario's own, e.g. scenarios/protocols/memberlist-lan.toml.
    #[arg(long, value_name = "FILE")]
    pub protocol: Option<PathBuf>,
}

/// Runs the scenario; exit code 1 when a property fails.
pub fn run(args: SimArgs) -> anyhow::Result<i32> {
    let mut sc = Scenario::load(&args.scenario).map_err(|e| super::UsageError(e.to_string()))?;
    if let Some(p) = &args.protocol {
        let text = std::fs::read_to_string(p)
            .map_err(|e| super::UsageError(format!("--protocol {}: {e}", p.display())))?;
        sc = sc
            .with_protocol(&text, &format!("--protocol {}", p.display()))
            .map_err(|e| super::UsageError(e.to_string()))?;
    }
    let seed = args.seed.unwrap_or(sc.seed);
    let report = sc.run(seed);
    let unlimited = args.compare_unlimited.then(|| sc.unlimited().run(seed));
    if args.json {
        match &unlimited {
            None => println!("{}", serde_json::to_string_pretty(&report)?),
            Some(u) => println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"limited": report, "unlimited": u})
                )?
            ),
        }
    } else {
        print!("{}", report.table());
        if let Some(u) = &unlimited {
            print!(
                "\n{}\n{}",
                u.table(),
                gossamer::sim::compare_table(&report, u)
            );
        }
    }
    if report.passed() {
        Ok(0)
    } else {
        eprintln!(
            "scenario failed; replay with: gossamer sim {} --seed {seed}{}",
            args.scenario.display(),
            args.protocol
                .as_ref()
                .map(|p| format!(" --protocol {}", p.display()))
                .unwrap_or_default()
        );
        Ok(1)
    }
}
