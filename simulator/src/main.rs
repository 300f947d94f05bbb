//! Runs the Nexrender Cloud API v2 simulator as a standalone HTTP server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use nexrender_simulator::clock::SystemClock;
use nexrender_simulator::{self as simulator, SimulatorConfig};

#[derive(Parser)]
#[command(
    version,
    about = "Nexrender Cloud API v2 simulator: serves GET /jobs, GET /jobs/{id} and POST /jobs at / and /api/v2"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// YAML or TOML file with lifecycle, faults, tokens (see simulator/config/simulator.example.yaml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start from the busy demo farm instead of the default one.
    #[arg(long)]
    demo: bool,
    /// Seed for every random draw (overrides the file).
    #[arg(long)]
    seed: Option<u64>,
    /// Ended jobs to create over the last day at start (overrides the file).
    #[arg(long)]
    prefill: Option<usize>,
    /// Accepted bearer token (overrides the file's list).
    #[arg(long)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match (&args.config, args.demo) {
        (Some(path), _) => match simulator::load_config(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (None, true) => SimulatorConfig::demo(),
        (None, false) => SimulatorConfig::default(),
    };
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(n) = args.prefill {
        cfg.prefill.jobs = n;
    }
    if let Some(t) = args.token {
        cfg.tokens = vec![t];
    }
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let started = std::time::Instant::now();
    let running = match simulator::server::start(&cfg, Arc::new(SystemClock), listener) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "nexrender-simulator listening on {} (API at / and /api/v2; {} jobs prefilled in {:.1?}; {} token(s) accepted)",
        running.base_url(),
        cfg.prefill.jobs,
        started.elapsed(),
        cfg.tokens.len()
    );
    let _ = tokio::signal::ctrl_c().await;
    running.stop();
    ExitCode::SUCCESS
}
