//! `septa export kubernetes` and `septa export aws`: the application's policy as Kubernetes
//! objects or as one CloudFormation template in OUT, written whole or not at all, with
//! `export-report.md` and `.json`; with `--check`, what the export allows (as
//! network-config-analyzer computes it, or as septa's own reading of the written template)
//! compared with septa's truth table. Exits 1 when a difference has no reason code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use septa_export::kubernetes::{self, Nca, Options, Profile};
use septa_export::{Granularity, Report, aws};

use crate::check::load_policy;

/// `septa export TARGET`.
#[derive(Subcommand)]
pub(crate) enum ExportCommand {
    /// Namespaces, cells running `septa node`, NetworkPolicy, Istio or Cilium policy and Gateway
    /// API routes, one file per namespace and kind, and a report of every difference from
    /// septa's own truth table.
    Kubernetes(KubernetesArgs),
    /// One CloudFormation template: a VPC per segment, security groups, Lambda functions
    /// running `septa lambda`, VPC Lattice, API Gateway, stores, and a report of every
    /// difference from septa's own truth table.
    Aws(AwsArgs),
}

/// Options of `septa export aws`.
#[derive(Args)]
pub(crate) struct AwsArgs {
    /// The application directory (holding `septa.toml`) or the manifest file.
    dir: PathBuf,
    /// The output directory; replaced whole.
    #[arg(long)]
    out: PathBuf,
    /// The S3 bucket holding the Lambda zips; without it the template takes a `CodeBucket`
    /// parameter.
    #[arg(long, value_name = "NAME")]
    code_bucket: Option<String>,
    /// Read the written template back and compare what its security groups, network ACLs, route
    /// tables and Lattice auth policies allow with septa's truth table; exit 1 on a difference
    /// without a reason code.
    #[arg(long)]
    check: bool,
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
        ExportCommand::Aws(args) => run_aws(&args),
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
    println!(
        "exported {} objects in {} files to {}",
        export.objects.len(),
        export.report.files.len(),
        display(&args.out)
    );
    Ok(summarize(&export.report))
}

fn run_aws(args: &AwsArgs) -> anyhow::Result<ExitCode> {
    let policy = match load_policy(&args.dir) {
        Ok(policy) => policy,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(2));
        }
    };
    let options = aws::Options {
        code_bucket: args.code_bucket.clone(),
    };
    let mut export = aws::export(&policy, &options)?;
    if args.check {
        aws::check::check(&policy, &mut export)?;
    }
    septa_export::write_atomically(&args.out, &export.files())
        .with_context(|| format!("cannot write the export to `{}`", args.out.display()))?;
    let resources = export.template["Resources"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    println!(
        "exported {resources} resources to {}",
        display(&args.out.join(aws::TEMPLATE_FILE))
    );
    Ok(summarize(&export.report))
}

/// Prints the differences and every one without a code; exit 1 when there is one.
fn summarize(report: &Report) -> ExitCode {
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
    if uncoded.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn display(path: &Path) -> String {
    format!("`{}`", path.display())
}
