//! `septa up`: load, build if asked, compile, and serve until interrupted.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use septa_flows::{FlowLog, FlowLogOptions};
use septa_gateway::Gateway;
use septa_gateway::auth::refresh::FirstFetch;
use septa_mesh::{DialTimeouts, Mesh};
use septa_runtime::{ComponentCache, EpochTicker, Host, build_engine};

/// Options of `septa up`.
#[derive(Args)]
pub(crate) struct UpArgs {
    /// The application directory (holding `septa.toml`).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the admin listener (health, metrics, recent and live flows; every path behind the
    /// admin token) listens. Keep it on loopback. Off unless given.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// A file holding the admin token. Default: `SEPTA_ADMIN_TOKEN`, else DIR/.septa/admin-token,
    /// generated (and printed once) at the first start.
    #[arg(long, value_name = "PATH", requires = "admin")]
    admin_token_file: Option<PathBuf>,
    /// The flow log file (JSON lines), or `-` for standard output. Default: DIR/.septa/flows.jsonl.
    #[arg(long)]
    flow_log: Option<PathBuf>,
    /// Write no flow log (metrics and the admin's flows still see every flow).
    #[arg(long, conflicts_with = "flow_log")]
    no_flow_log: bool,
    /// Run each function's declared build command before starting.
    #[arg(long)]
    build: bool,
    /// Worker threads, each with its own runtime and listening socket. Default: one per core.
    #[arg(long)]
    workers: Option<usize>,
    /// Where compiled components are cached. Default: DIR/.septa/cache.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Where embedded endpoints keep their files (`NAME.redb`). Default: DIR/.septa/data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Instance slots in the pooling allocator, across all functions.
    #[arg(long, default_value_t = 1000)]
    instances: u32,
    /// Time a client has to send a request's headers, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Largest request header section, in bytes (at least 8192).
    #[arg(long, default_value_t = 16 * 1024)]
    max_header_bytes: usize,
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let manifest = match septa_manifest::load(&args.dir) {
        Ok(m) => m,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.build {
        build(&manifest)?;
    }
    let policy = match crate::check::compile(manifest).and_then(crate::check::checked) {
        Ok(p) => Arc::new(p),
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let state_dir = policy.manifest().dir.join(".septa");
    // Before anything slow: a bad token file should fail the start at once.
    let monitoring = args
        .admin
        .map(|_| {
            let token_file = args.admin_token_file.as_deref();
            crate::admin::Monitoring::new(&policy, token_file, &state_dir)
        })
        .transpose()?;
    let engine = build_engine(args.instances)
        .map_err(|e| anyhow::anyhow!("cannot configure the wasmtime engine: {e:#}"))?;
    let _ticker = EpochTicker::start(engine.clone()).context("cannot start the epoch ticker")?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("cache"));
    let cache = ComponentCache::new(&cache_dir)
        .with_context(|| format!("cannot use cache directory `{}`", cache_dir.display()))?;
    let (host, report) = Host::load(&engine, &policy, &cache)?;
    let host = Arc::new(host);

    let options = FlowLogOptions {
        observers: monitoring
            .as_ref()
            .map(crate::admin::Monitoring::observers)
            .unwrap_or_default(),
        ..FlowLogOptions::default()
    };
    let flows = match args.flow_log.as_deref() {
        _ if args.no_flow_log => FlowLog::observers_only(options)?,
        Some(p) if p == Path::new("-") => FlowLog::stdout_with(options)?,
        Some(p) => FlowLog::open_with(p, options)
            .with_context(|| format!("cannot open flow log `{}`", p.display()))?,
        None => {
            let p = state_dir.join("flows.jsonl");
            FlowLog::open_with(&p, options)
                .with_context(|| format!("cannot open flow log `{}`", p.display()))?
        }
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("data"));
    let endpoints = crate::endpoints::Endpoints::open(&policy, &data_dir, host.bulkheads())?;
    let mesh = Mesh::new(
        policy.clone(),
        &host,
        flows.clone(),
        DialTimeouts::default(),
    )
    .with_endpoints(Arc::new(endpoints));
    host.set_outbound(Arc::new(mesh));
    let jwks = crate::jwks::EgressJwksFetcher::new(policy.clone())?;
    let gateway = Gateway::new(policy.clone(), host.clone(), flows.clone(), Arc::new(jwks))?;
    let gateway = Arc::new(gateway);
    let key_refresh = gateway
        .start_key_refresh()
        .context("cannot start the key refresh")?;
    let first_fetches = key_refresh.wait_first(FIRST_FETCH_WAIT);
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let limits = septa_gateway::ConnectionLimits {
        header_read_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
        max_header_bytes: args.max_header_bytes,
        ..Default::default()
    };
    let listening = septa_gateway::serve(args.listen, workers, gateway, limits)
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    let admin = match (args.admin, &monitoring) {
        (Some(addr), Some(monitoring)) => {
            Some(monitoring.serve(addr, listening.addr, &host, &flows)?)
        }
        _ => None,
    };

    let m = policy.manifest();
    println!(
        "septa: application `{}`: {} functions and {} endpoints in {} segments ({} compiled, {} from cache)",
        m.application,
        m.components().count(),
        m.functions.len() - m.components().count(),
        m.segments.len(),
        report.compiled,
        report.cache_hits
    );
    for route in policy.routes() {
        println!(
            "septa: route `{}` {} -> function `{}`",
            route.id,
            route.pattern,
            policy.function(route.function).spec.name
        );
    }
    report_first_fetches(key_refresh.issuers(), &first_fetches);
    if let Some(addr) = &admin {
        println!("septa: admin on http://{addr}");
    }
    println!("septa: listening on http://{}", listening.addr);
    wait_for_signal()?;
    println!("septa: shutting down");
    listening.shutdown();
    drop(key_refresh);
    drop(host);
    flows.shutdown().context("cannot flush the flow log")?;
    Ok(ExitCode::SUCCESS)
}

/// How long `up` waits for issuers' first key fetches before it listens anyway.
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(5);

/// Says, for every issuer whose keys are fetched, whether it has keys to verify with yet.
fn report_first_fetches(issuers: &[String], done: &[FirstFetch]) {
    for name in issuers {
        match done.iter().find(|f| &f.issuer == name).map(|f| &f.outcome) {
            Some(Ok(count)) => println!("septa: jwt issuer `{name}`: {count} keys fetched"),
            Some(Err(reason)) => {
                println!("septa: {reason}; its routes answer 401 until a fetch succeeds (retrying)")
            }
            None => println!(
                "septa: jwt issuer `{name}`: keys still being fetched; its routes answer 401 until they arrive"
            ),
        }
    }
}

fn wait_for_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}

/// Runs each distinct build command once, in its working directory.
fn build(manifest: &septa_manifest::Manifest) -> anyhow::Result<()> {
    let commands: BTreeSet<(String, PathBuf)> = manifest
        .functions
        .values()
        .filter_map(|f| {
            f.build
                .as_ref()
                .map(|b| (b.command.clone(), b.workdir.clone()))
        })
        .collect();
    for (command, workdir) in commands {
        println!("septa: building: {command} (in {})", workdir.display());
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&workdir)
            .status()
            .with_context(|| format!("cannot run build command `{command}`"))?;
        if !status.success() {
            bail!(
                "build command `{command}` in `{}` failed: {status}",
                workdir.display()
            );
        }
    }
    Ok(())
}
