//! `septa publish` and `septa cluster status`: the operator's side of the control plane.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use septa_cluster::{Bundle, ControlPlane, NodeStatus};
use septa_manifest::{Diagnostic, Diagnostics, MANIFEST_FILE};

use crate::check::{checked, compile, print_diagnostics};

/// `septa cluster ...`.
#[derive(Subcommand)]
pub(crate) enum ClusterCommand {
    /// The registered nodes: addresses, applied revisions, last heartbeat, what each hosts.
    Status {
        /// The NATS server, e.g. `nats://127.0.0.1:4222`.
        #[arg(long)]
        nats: String,
        /// `table` or `json`.
        #[arg(long, value_enum, default_value = "table")]
        format: StatusFormat,
    },
}

/// How `septa cluster status` prints.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StatusFormat {
    /// One line per node.
    Table,
    /// The revision in force and every node's registry entry, as JSON.
    Json,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `septa publish DIR --nats URL`: check exactly as `septa check` does, then store every file by
/// content hash and move the revision pointer. Prints the revision's id on stdout.
pub(crate) fn publish(dir: &Path, nats: &str) -> anyhow::Result<ExitCode> {
    let file = if dir.is_dir() {
        dir.join(MANIFEST_FILE)
    } else {
        dir.to_owned()
    };
    // The bytes checked are the bytes published.
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read the manifest `{}`", file.display()))?;
    let policy = septa_manifest::parse(&file, &text)
        .and_then(compile)
        .and_then(checked);
    let policy = match policy {
        Ok(policy) => policy,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            eprintln!("nothing was published");
            return Ok(ExitCode::FAILURE);
        }
    };
    let manifest = policy.manifest();
    if manifest.cluster.is_none() {
        print_diagnostics(&Diagnostics {
            file: file.clone(),
            items: vec![
                Diagnostic::whole_file("a published manifest needs `[cluster]` and `[node.NAME]` tables saying which node hosts what")
                    .with_help("run it on one machine with `septa up`, or add `[cluster] trust_domain = \"...\"` and `[node.NAME] hosts = [...]`"),
            ],
        });
        eprintln!("nothing was published");
        return Ok(ExitCode::FAILURE);
    }
    let bundle = Bundle::of(manifest, text.into_bytes())
        .with_context(|| format!("cannot publish `{}`", file.display()))?;
    runtime()?.block_on(async {
        let control = ControlPlane::connect(nats).await?;
        control.publish(&bundle).await
    })?;
    let revision = &bundle.revision;
    let bytes: u64 = revision.files.iter().map(|f| f.size).sum::<u64>() + revision.manifest.size;
    eprintln!(
        "published revision {} of `{}`: the manifest and {} files, {bytes} bytes",
        revision.id,
        revision.application,
        revision.files.len()
    );
    println!("{}", revision.id);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Status { nats, format } => status(&nats, format),
    }
}

fn status(nats: &str, format: StatusFormat) -> anyhow::Result<ExitCode> {
    let (current, nodes) = runtime()?.block_on(async {
        let control = ControlPlane::connect(nats).await?;
        anyhow::Ok((control.current().await?, control.nodes().await?))
    })?;
    match format {
        StatusFormat::Json => {
            let json = serde_json::json!({ "revision": current, "nodes": nodes });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        StatusFormat::Table => print_table(current.as_ref(), &nodes),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(current: Option<&septa_cluster::Revision>, nodes: &[NodeStatus]) {
    match current {
        Some(r) => println!("revision {} of `{}` is published", r.id, r.application),
        None => println!("no revision is published"),
    }
    if nodes.is_empty() {
        println!("no node is registered");
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    println!(
        "{:<16} {:<22} {:<22} {:<13} {:>9}  HOSTS",
        "NODE", "ADDRESS", "MESH", "REVISION", "HEARTBEAT"
    );
    for n in nodes {
        let revision = n.revision.as_deref().unwrap_or("-");
        let stale = current.is_some_and(|c| n.revision.as_deref() != Some(c.id.as_str()));
        let ago = now.saturating_sub(n.heartbeat_at_ms) as f64 / 1000.0;
        println!(
            "{:<16} {:<22} {:<22} {:<13} {:>8.1}s  {}",
            n.name,
            n.address,
            n.mesh_address,
            format!("{revision}{}", if stale { "*" } else { "" }),
            ago,
            n.hosts.join(", ")
        );
        if let Some(failed) = &n.failed {
            println!(
                "  refused revision {}: {}",
                failed.revision,
                failed.reason.lines().next().unwrap_or_default()
            );
        }
    }
    if nodes
        .iter()
        .any(|n| current.is_some_and(|c| n.revision.as_deref() != Some(c.id.as_str())))
    {
        println!("* not the published revision");
    }
}
