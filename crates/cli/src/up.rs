//! `septa up`: load, build if asked, compile, and serve until interrupted, reloading the
//! manifest when it changes (see [`crate::platform`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use septa_gateway::auth::refresh::FirstFetch;
use septa_monitor::{Control, ReloadTrigger};
use septa_runtime::{ComponentCache, EpochTicker, build_engine};

use crate::platform::{BuildError, Generation, Parts, Platform, Source};

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
    #[command(flatten)]
    flow_log_bounds: crate::flow_log::FlowLogBounds,
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
    /// Instances that may exist at once, across all functions: the pooling allocator's slots,
    /// each sized for the largest component.
    #[arg(long, default_value_t = crate::pool::DEFAULT_INSTANCES)]
    instances: u32,
    /// Time a client has to send a request's headers, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Largest request header section, in bytes (at least 8192).
    #[arg(long, default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// How long a client connection with no request in progress stays open, in milliseconds
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    #[arg(long, default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Most client connections open at once on the gateway; at the cap the longest idle ones
    /// are closed for new clients. Default: three quarters of the open-file limit, which septa
    /// raises to the hard limit at start.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Do not reload when the manifest or a component file changes (`POST /reload` on the
    /// admin listener and `SIGHUP` still reload).
    #[arg(long)]
    no_watch: bool,
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    // First, so that everything opened from here on counts against the raised limit.
    let fd_limit = septa_gateway::raise_fd_limit();
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
    let state_dir = manifest.dir.join(".septa");
    let manifest_file = manifest.file.clone();
    // With or without the admin listener; the platform puts each generation's alerts in force.
    let alerts = crate::admin::start_alerts()?;
    // Before anything slow: a bad token file should fail the start at once.
    let monitoring = args
        .admin
        .map(|_| {
            let token_file = args.admin_token_file.as_deref();
            crate::admin::Monitoring::new(token_file, &state_dir, &alerts)
        })
        .transpose()?;
    let pool = crate::pool::sized_for(&manifest, args.instances);
    let engine = build_engine(pool)
        .map_err(|e| anyhow::anyhow!("cannot configure the wasmtime engine: {e:#}"))?;
    let _ticker = EpochTicker::start(engine.clone()).context("cannot start the epoch ticker")?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("cache"));
    let cache = ComponentCache::new(&cache_dir)
        .with_context(|| format!("cannot use cache directory `{}`", cache_dir.display()))?;

    let observers = monitoring
        .as_ref()
        .map(crate::admin::Monitoring::observers)
        .unwrap_or_default()
        .with(alerts.clone());
    let bounds = &args.flow_log_bounds;
    let flows = if args.no_flow_log {
        bounds.observers_only(observers)?
    } else {
        let default = state_dir.join("flows.jsonl");
        bounds.open(args.flow_log.as_deref(), &default, observers)?
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("data"));
    let parts = Parts {
        manifest_file,
        engine,
        pool,
        cache,
        flows: flows.clone(),
        data_dir,
        alerts,
        node: None,
    };
    let source = Source {
        file: &parts.manifest_file,
        revision: None,
    };
    let first = match Generation::build(&parts, &source, 1, None) {
        Ok(first) => first,
        Err(BuildError::Invalid(diagnostics)) => {
            eprintln!("{}", diagnostics.trim_end());
            return Ok(ExitCode::FAILURE);
        }
        Err(BuildError::Load(error)) => return Err(error),
    };
    let metrics = monitoring.as_ref().map(|m| m.metrics.clone());
    if let Some(metrics) = &metrics {
        metrics.load_policy(&first.policy, first.hash.clone());
    }
    print_start(&first);
    println!(
        "septa: up to {} function instances at once, each with room for {}",
        pool.instances, pool.per_instance
    );
    if let Some(warning) = crate::pool::overcommit_warning(&first.policy, args.instances) {
        eprintln!("septa: warning: {warning}");
    }
    let platform = Arc::new(Platform::new(parts, first, metrics));

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let max_connections = args
        .max_connections
        .unwrap_or_else(|| septa_gateway::connection_cap(fd_limit));
    println!("septa: up to {max_connections} client connections (open-file limit {fd_limit})");
    let limits = septa_gateway::ConnectionLimits {
        header_read_timeout: Duration::from_millis(args.header_timeout_ms),
        max_header_bytes: args.max_header_bytes,
        idle_timeout: Duration::from_millis(args.idle_timeout_ms.max(1)),
        max_connections: max_connections.max(1),
        ..Default::default()
    };
    let listening = septa_gateway::serve(args.listen, workers, platform.current(), limits)
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    if let (Some(addr), Some(monitoring)) = (args.admin, &monitoring) {
        let control: Arc<dyn septa_monitor::Control> = platform.clone();
        let bound = monitoring.serve(addr, listening.addr, &flows, control)?;
        println!("septa: admin on http://{bound}");
        println!("{}", crate::admin::dashboard_hint(bound));
    }
    if !args.no_watch {
        platform
            .watch(WATCH_INTERVAL)
            .context("cannot start watching the manifest")?;
    }
    println!("septa: listening on http://{}", listening.addr);
    wait_for_signal(&platform)?;
    println!("septa: shutting down");
    listening.shutdown();
    drop(platform);
    flows.shutdown().context("cannot flush the flow log")?;
    Ok(ExitCode::SUCCESS)
}

/// How often the manifest and the components it loads are looked at for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// What `up` says once the first generation is loaded.
fn print_start(first: &Generation) {
    let policy = &first.policy;
    let m = policy.manifest();
    println!(
        "septa: application `{}`: {} functions and {} endpoints in {} segments ({} compiled, {} from cache)",
        m.application,
        m.components().count(),
        m.functions.len() - m.components().count(),
        m.segments.len(),
        first.load_report.compiled,
        first.load_report.cache_hits
    );
    for route in policy.routes() {
        println!(
            "septa: route `{}` {} -> function `{}`",
            route.id,
            route.pattern,
            policy.function(route.function).spec.name
        );
    }
    report_first_fetches(first.key_refresh.issuers(), &first.first_fetches);
    crate::admin::print_alerts(m);
}

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

/// Serves until SIGINT or SIGTERM; each SIGHUP reloads the manifest.
fn wait_for_signal(platform: &Arc<Platform>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => return r,
                _ = term.recv() => return Ok(()),
                _ = hangup.recv() => {
                    let platform = platform.clone();
                    let attempt = tokio::task::spawn_blocking(move || {
                        platform.reload(ReloadTrigger::Signal)
                    });
                    if let Ok(attempt) = attempt.await {
                        crate::platform::report(&attempt);
                    }
                }
            }
        }
    })?;
    Ok(())
}

/// Runs each distinct build command once, in its working directory.
fn build(manifest: &septa_manifest::Manifest) -> anyhow::Result<()> {
    let commands: BTreeSet<(String, PathBuf)> = manifest
        .functions
        .values()
        .filter_map(|f| f.component()?.build.as_ref())
        .map(|b| (b.command.clone(), b.workdir.clone()))
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
