//! The `septa` binary: `septa up` runs an application, `septa check` validates one, `septa flows
//! tail` watches one run.

mod admin;
mod audit;
mod ca;
mod check;
mod cluster;
mod endpoint_values;
mod endpoints;
mod export;
mod flow_log;
mod flows;
mod jwks;
mod lambda;
mod node;
mod platform;
mod pool;
mod probe;
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
    /// Run one function of DIR as an AWS Lambda custom runtime (`provided.al2023`): poll the
    /// Lambda Runtime API and serve each API Gateway or VPC Lattice event as a node serves a
    /// request, with the same policy, egress rules, ceiling and flow records.
    Lambda(lambda::LambdaArgs),
    /// Watch the flows of a running septa (through its admin listener).
    #[command(subcommand)]
    Flows(flows::FlowsCommand),
    /// Test the running septa's segmentation: attempt every pair's flows through its real
    /// enforcement path and compare each verdict with what DIR's manifest predicts; exits 1 on
    /// any disagreement.
    Probe(probe::ProbeArgs),
    /// The platform CA that issues node certificates for `septa node`.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Check DIR exactly as `septa check` does, then store its files in NATS JetStream by content
    /// hash and make it the revision every `septa node` applies. Prints the revision.
    Publish {
        /// The application directory (holding `septa.toml`) or the manifest file.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The NATS server, e.g. `nats://127.0.0.1:4222`.
        #[arg(long)]
        nats: String,
    },
    /// Run one node of a cluster: what the published revision places on node NAME, calling the
    /// other nodes over mutual TLS for the rest.
    Node(node::NodeArgs),
    /// The nodes of a cluster, as its NATS registry has them.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Validate DIR/septa.toml and its policy, reporting every problem with its position, and
    /// warn when its concurrency limits promise more instances than the pool holds.
    Check {
        /// The application directory (holding `septa.toml`) or the manifest file.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The instance slots `septa up --instances` will run it with.
        #[arg(long, default_value_t = pool::DEFAULT_INSTANCES)]
        instances: u32,
    },
    /// Audit the policy: invariants, paths to labelled functions, open routes, wide egress,
    /// audit mode, dead and shadowed rules, cross-segment rules wider than needed and blast
    /// radius, each naming the rule to change; with `[node.*]` tables, what each node runs, the
    /// flows between nodes and what only one node runs.
    Audit {
        /// The application directory (holding `septa.toml`) or the manifest file.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output format: `table`, `json`, `html` (a self-contained report) or `sarif` (SARIF
        /// 2.1.0 for code scanning).
        #[arg(long, value_enum, default_value = "table")]
        format: audit::Format,
        /// Exit non-zero when a finding is at least this severe (info, low, medium, high,
        /// critical).
        #[arg(long)]
        fail_on: Option<String>,
        /// Run a compliance pack instead (`pci`): each requirement passed or failed, with
        /// evidence; exits non-zero on any failure.
        #[arg(long)]
        pack: Option<String>,
    },
    /// What changes from OLD to NEW: flows newly allowed or denied, findings that appear or
    /// disappear, invariants that change state. Exits 0 when nothing does, 1 when something does.
    Diff {
        /// The old application directory or manifest file.
        old: PathBuf,
        /// The new one.
        new: PathBuf,
    },
    /// From a flow log of functions run in audit mode, the smallest allow and egress rules that
    /// would have allowed what was observed, as TOML to append to `septa.toml`.
    Suggest {
        /// The application directory (holding `septa.toml`) or the manifest file.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The flow log to learn from.
        #[arg(long)]
        flows: PathBuf,
    },
    /// Export the policy to a platform's own machinery, with a report of where it differs.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Can FROM reach TO? Prints the path with every hop's rule, or why not; with `[node.*]`
    /// tables, also where each side runs and which hops go between nodes over mutual TLS.
    /// Exits 0 when reachable, 1 when not.
    Query {
        /// The application directory (holding `septa.toml`) or the manifest file.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where flows start: `gateway`, `segment:S`, `subnet:S/N`, `group:G`, `function:F`, `label:L`.
        #[arg(long)]
        from: String,
        /// Where they must not (or must) arrive, as a selector.
        #[arg(long)]
        to: String,
        /// Only count a last hop that admits this method.
        #[arg(long)]
        method: Option<String>,
        /// Only count a last hop that admits this (normalized) path.
        #[arg(long)]
        path: Option<String>,
        /// Only a direct flow counts, not a chain through other functions.
        #[arg(long)]
        direct: bool,
    },
}

/// mimalloc rather than the C library's allocator. A request allocates and frees a few hundred
/// small objects (the request head, the flow record, wasmtime's per-store tables) on its worker,
/// while the flow writer frees records on its own thread; with glibc's allocator that was about
/// 11-12% of a worker's time on the plainest route and with a mesh hop (`perf`,
/// `docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEPTA_LOG")
                // Warnings, and what guests write to stdout and stderr (`septa::guest`).
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,septa::guest=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Lambda(args) => lambda::run(args),
        Command::Flows(command) => flows::run(command),
        Command::Probe(args) => probe::run(args),
        Command::Ca(command) => ca::run(command),
        Command::Check { dir, instances } => check::run(&dir, instances),
        Command::Publish { dir, nats } => cluster::publish(&dir, &nats),
        Command::Cluster(command) => cluster::run(command),
        Command::Node(args) => node::run(args),
        Command::Audit {
            dir,
            format,
            fail_on,
            pack,
        } => audit::run_audit(&dir, format, fail_on.as_deref(), pack.as_deref()),
        Command::Export(command) => export::run(command),
        Command::Diff { old, new } => audit::run_diff(&old, &new),
        Command::Suggest { dir, flows } => audit::run_suggest(&dir, &flows),
        Command::Query {
            dir,
            from,
            to,
            method,
            path,
            direct,
        } => audit::run_query(&dir, &from, &to, method.as_deref(), path.as_deref(), direct),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: many errors already end with the text of
/// their cause, which `{:#}` would print again.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}
