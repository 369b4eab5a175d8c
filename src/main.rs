//! The `datagate` command: serve, check, demo, certs.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "datagate",
    version,
    about = "Data-integration gateway for LGSP/NDXP secure servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from its configuration file.
    Serve {
        /// Node configuration (TOML).
        #[arg(long, env = "DATAGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration and every contract, registry entry and adapter; print every error.
    Check {
        /// Node configuration (TOML).
        #[arg(long, env = "DATAGATE_CONFIG")]
        config: PathBuf,
    },
    /// Run a complete local federation with synthetic data on 127.0.0.1.
    #[cfg(feature = "dev")]
    Demo {
        /// Where the demo writes its PKI, configuration, journal and demo.json.
        #[arg(long, default_value = "target/demo")]
        state_dir: PathBuf,
        /// The folder holding `contracts/` and `adapters/` (the repository root).
        #[arg(long, default_value = ".")]
        project_dir: PathBuf,
    },
    /// Generate the dev PKI (a dev CA standing in for Ban Cơ yếu, gateway and client certificates).
    #[cfg(feature = "dev")]
    Certs {
        /// Output folder.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
}

/// Exit code for an invalid configuration (EX_CONFIG would be 78; 64 is EX_USAGE as STYLE.md asks).
const EXIT_INVALID_CONFIG: u8 = 64;

fn main() -> ExitCode {
    datagate::observe::init_tracing();
    datagate::install_crypto_provider();
    let cli = Cli::parse();
    // One core available (e.g. pinned with taskset or a 1-CPU container): a single-threaded
    // scheduler avoids cross-thread wake-ups that buy nothing there.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check { config } => match datagate::config::load(&config) {
            Ok(loaded) => {
                println!(
                    "configuration valid: {} contracts, {} adapters, {} services, {} registrations",
                    loaded.contracts.len(),
                    loaded.adapters.len(),
                    loaded.services.len(),
                    loaded.registry.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("invalid configuration: {} error(s)", errors.len());
                for error in &errors {
                    eprintln!("  {error}");
                }
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        },
        Command::Serve { config } => {
            let loaded = match datagate::config::load(&config) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    eprintln!("invalid configuration: {} error(s)", errors.len());
                    for error in &errors {
                        eprintln!("  {error}");
                    }
                    return ExitCode::from(EXIT_INVALID_CONFIG);
                }
            };
            report(runtime.block_on(datagate::gateway::server::serve(loaded)))
        }
        #[cfg(feature = "dev")]
        Command::Demo {
            state_dir,
            project_dir,
        } => report(runtime.block_on(datagate::demo::run(&project_dir, &state_dir))),
        #[cfg(feature = "dev")]
        Command::Certs { dir } => match datagate::pki::write_dev_pki(&dir) {
            Ok(pki) => {
                println!("dev PKI written to {} (not for production)", dir.display());
                for client in &pki.clients {
                    println!(
                        "  {}: {} sha256={}",
                        client.name,
                        client.cert.display(),
                        client.fingerprint_sha256
                    );
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot write the dev PKI: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
