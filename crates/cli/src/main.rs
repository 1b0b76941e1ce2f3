//! The `septa` binary: `septa up` runs an application, `septa check` validates one.

mod admin;
mod check;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// septa: serverless functions where network segmentation is the default.
#[derive(Parser)]
#[command(name = "septa", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the application in DIR: the gateway, its functions, the mesh and the flow log.
    Up(up::UpArgs),
    /// Validate DIR/septa.toml and its policy, reporting every problem with its position.
    Check {
        /// The application directory (holding `septa.toml`) or the manifest file.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEPTA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Check { dir } => check::run(&dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
