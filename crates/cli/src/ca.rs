//! `septa ca init` and `septa ca issue`: the platform CA and node certificates, for `septa node`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use septa_identity::ca;

/// `septa ca ...`.
#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Create a CA in DIR: a root key (`ca.key`, mode 0600) and certificate (`ca.crt`) for a
    /// SPIFFE trust domain. Refuses a directory that already holds one.
    Init {
        /// Where to write the CA.
        dir: PathBuf,
        /// The trust domain, as the manifest's `[cluster] trust_domain`.
        #[arg(long)]
        trust_domain: String,
    },
    /// Issue node NAME's certificate from the CA in DIR: writes `OUT/node.crt`, `OUT/node.key`
    /// (mode 0600) and `OUT/ca.crt`, with the URI SAN `spiffe://TRUST_DOMAIN/node/NAME`.
    Issue {
        /// The CA directory `septa ca init` wrote.
        dir: PathBuf,
        /// The node's name, as in the manifest's `[node.NAME]`.
        #[arg(long)]
        node: String,
        /// Where to write the node's files (`septa node --tls-dir`).
        #[arg(long)]
        out: PathBuf,
        /// How many days the certificate is valid.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

pub(crate) fn run(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init { dir, trust_domain } => {
            ca::init(&dir, &trust_domain)
                .with_context(|| format!("cannot create a CA in `{}`", dir.display()))?;
            println!(
                "created the CA for trust domain `{trust_domain}` in {} (keep ca.key secret)",
                dir.display()
            );
        }
        CaCommand::Issue {
            dir,
            node,
            out,
            days,
        } => {
            let issued = ca::issue(&dir, &node, &out, days)
                .with_context(|| format!("cannot issue a certificate for node `{node}`"))?;
            println!(
                "issued {} until {} into {}",
                issued.spiffe_id,
                issued.not_after.date(),
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
