//! `weft-bench`: weft's benchmarks. Every figure is printed as one JSON
//! line on stdout (`{"bench": …, "figure"/"workload": …, …}`), so runs can
//! be compared with `jq`; BENCHMARKS.md records the figures of a reference
//! machine.
//!
//! ```text
//! cargo run --release -p weft-bench -- store --backend all
//! cargo run --release -p weft-bench -- kernel --turns 2000
//! cargo run --release -p weft-bench -- server
//! cargo run --release -p weft-bench -- server --daemons 2 --workload all
//! ```

mod cluster;
mod engine;
mod http;
mod kernel;
mod open_floor;
mod server;
mod store;

use clap::{Parser, Subcommand};

/// weft's benchmarks (one JSON line per figure).
#[derive(Parser)]
#[command(name = "weft-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The kernel's overhead per turn (provider-scripted, no delay).
    Kernel(kernel::KernelBenchArgs),
    /// Store workloads: durable appends, loads, listing, fork, bytes on disk.
    Store(store::StoreBenchArgs),
    /// Daemon workloads against a real `weft serve` process.
    Server(server::ServerBenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Kernel(args) => kernel::run(args).await,
        Command::Store(args) => store::run(args).await,
        // On a shared store, or with several daemons: the cluster workloads.
        Command::Server(args) if cluster::wanted(&args) => cluster::run(args).await,
        Command::Server(args) => server::run(args).await,
    }
}
