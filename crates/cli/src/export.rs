//! `septa export kubernetes`: the application's policy as Kubernetes objects in OUT, written
//! whole or not at all, with `export-report.md` and `.json`; with `--check`, what the objects
//! allow as network-config-analyzer computes it, compared with septa's truth table. Exits 1
//! when a difference has no reason code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use septa_export::Granularity;
use septa_export::kubernetes::{self, Nca, Options, Profile};

use crate::check::load_policy;

/// `septa export TARGET`.
#[derive(Subcommand)]
pub(crate) enum ExportCommand {
    /// Namespaces, cells running `septa node`, NetworkPolicy, Istio or Cilium policy and Gateway
    /// API routes, one file per namespace and kind, and a report of every difference from
    /// septa's own truth table.
    Kubernetes(KubernetesArgs),
}

/// Options of `septa export kubernetes`.
#[derive(Args)]
pub(crate) struct KubernetesArgs {
    /// The application directory (holding `septa.toml`) or the manifest file.
    dir: PathBuf,
    /// The output directory; replaced whole.
    #[arg(long)]
    out: PathBuf,
    /// Which mesh carries the L7 rules.
    #[arg(long, value_enum, default_value = "istio")]
    profile: ProfileArg,
    /// One cell (a Deployment running `septa node`) per subnet or per function.
    #[arg(long, value_enum, default_value = "cell")]
    granularity: GranularityArg,
    /// The container image with the `septa` binary and the application directory at `/app` (its
    /// components and every file `septa.toml` names), which the publish Job publishes.
    #[arg(long, default_value = concat!("septa:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// Compare what the objects allow, as network-config-analyzer (`nca`, or SEPTA_NCA)
    /// computes it, with septa's truth table; exit 1 on a difference without a reason code.
    #[arg(long)]
    check: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    Istio,
    Cilium,
}

#[derive(Clone, Copy, ValueEnum)]
enum GranularityArg {
    Cell,
    Function,
}

pub(crate) fn run(command: ExportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExportCommand::Kubernetes(args) => run_kubernetes(&args),
    }
}

fn run_kubernetes(args: &KubernetesArgs) -> anyhow::Result<ExitCode> {
    let policy = match load_policy(&args.dir) {
        Ok(policy) => policy,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(2));
        }
    };
    let options = Options {
        profile: match args.profile {
            ProfileArg::Istio => Profile::Istio,
            ProfileArg::Cilium => Profile::Cilium,
        },
        granularity: match args.granularity {
            GranularityArg::Cell => Granularity::Cell,
            GranularityArg::Function => Granularity::Function,
        },
        image: args.image.clone(),
    };
    let mut export = kubernetes::export(&policy, &options)?;
    if args.check {
        let nca = Nca::find()?;
        kubernetes::check::check(&policy, &options, &mut export, &nca)?;
    }
    septa_export::write_atomically(&args.out, &export.files())
        .with_context(|| format!("cannot write the export to `{}`", args.out.display()))?;
    let report = &export.report;
    println!(
        "exported {} objects in {} files to {}",
        export.objects.len(),
        report.files.len(),
        display(&args.out)
    );
    let uncoded: Vec<_> = report.uncoded().collect();
    println!(
        "{} differences from septa's truth table ({} wider), {} without a reason code{}",
        report.differences.len(),
        report.wider().count(),
        uncoded.len(),
        if report.analyzer.is_some() {
            ""
        } else {
            " (not checked: run with --check)"
        }
    );
    for d in &uncoded {
        println!(
            "  uncoded: {} -> {}: export is {:?}: {} (e.g. {})",
            d.from,
            d.to,
            d.direction,
            d.detail,
            d.examples.join(", ")
        );
    }
    Ok(if uncoded.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn display(path: &Path) -> String {
    format!("`{}`", path.display())
}
