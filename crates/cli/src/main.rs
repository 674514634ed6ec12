//! `telechart`: the one binary. `serve`, `sandbox`, `demo`, `bench`, `config`, `queue`.
// The binary's job includes printing reports to stdout; libraries never do.
#![allow(clippy::print_stdout)]

mod bench;
mod config;
mod demo;
mod runtime;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "telechart",
    version,
    about = "Telehealth visits charted in the EHR as structured FHIR R4, exactly once"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./telechart.toml when present.
    #[arg(long, global = true, env = "TELECHART_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the delivery workers.
    Serve,
    /// Run the sandbox EHR (a FHIR R4 server seeded with Synthea patients and today's telehealth appointments).
    Sandbox(demo::SandboxArgs),
    /// Run complete telehealth visits against an in-process sandbox EHR and report what was charted.
    Demo(demo::DemoArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Print the effective configuration, secrets masked.
    Config,
    /// Inspect the delivery queue.
    Queue {
        #[command(subcommand)]
        which: QueueCommand,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Deliveries by status.
    Status,
    /// Dead letters with their reasons.
    Dead,
    /// Return a visit's dead letters to the queue.
    Replay { visit: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<ExitCode> {
        let config = Config::load(cli.config.as_deref())?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(async move {
            match cli.command {
                Command::Config => {
                    print!("{}", config.masked_toml()?);
                    Ok(ExitCode::SUCCESS)
                }
                Command::Serve => {
                    runtime::init_logging(&config.log);
                    runtime::serve(config).await.map(|()| ExitCode::SUCCESS)
                }
                Command::Sandbox(args) => {
                    runtime::init_logging(&config.log);
                    demo::sandbox(args).await.map(|()| ExitCode::SUCCESS)
                }
                Command::Demo(args) => {
                    runtime::init_logging("warn");
                    demo::run(config, args).await
                }
                Command::Bench { which } => {
                    runtime::init_logging("warn");
                    bench::run(which).await.map(|()| ExitCode::SUCCESS)
                }
                Command::Queue { which } => queue(config, which).await.map(|()| ExitCode::SUCCESS),
            }
        })
    })();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("telechart: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn queue(config: Config, which: QueueCommand) -> anyhow::Result<()> {
    let store = telechart_store::Store::open(&config.database_url, 2).await?;
    match which {
        QueueCommand::Status => {
            let c = store.queue_counts(&config.tenant).await?;
            println!("pending {}  in_flight {}  done {}  dead {}", c.pending, c.in_flight, c.done, c.dead);
        }
        QueueCommand::Dead => {
            for d in store.dead_letters(&config.tenant).await? {
                println!(
                    "{}  visit {}  {}  attempts {}  {}",
                    d.id,
                    d.visit_id,
                    d.resource_type,
                    d.attempts,
                    d.last_error.unwrap_or_default()
                );
            }
        }
        QueueCommand::Replay { visit } => {
            let clock = telechart_store::Clock::system();
            let n = store.replay_dead(&config.tenant, &visit, clock.now_ms()).await?;
            println!("{n} dead letter(s) of visit {visit} returned to the queue");
        }
    }
    Ok(())
}
