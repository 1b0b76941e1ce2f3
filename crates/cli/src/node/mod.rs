//! `septa node`: one node of a cluster. It runs what the published revision places on it, calls
//! the other nodes over mutual TLS for the rest, answers their calls after deciding them again,
//! and serves a gateway that routes to every function.
//!
//! The first revision comes from NATS, or, when NATS cannot be reached, from the state directory
//! (the last revision this node applied); with neither the node refuses to start rather than
//! serve nothing or everything. After that the control loop ([`control`]) applies each
//! published revision exactly as a reload applies a changed file.

mod control;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use septa_cluster::{ControlPlane, NodeStatus, Revision};
use septa_flows::FlowLog;
use septa_identity::tls::NodeTls;
use septa_mesh::{LocalNode, PeerAddress, RemoteNodes};
use septa_runtime::{ComponentCache, EpochTicker, PoolSize, build_engine};

use crate::platform::{BuildError, Generation, Parts, Platform, Source};
use control::{Directory, NodeControl, hosted_identities, now_ms};
use state::StateDir;

/// Options of `septa node`.
#[derive(Args)]
pub(crate) struct NodeArgs {
    /// The NATS server holding the cluster's revisions and registry.
    #[arg(long)]
    nats: String,
    /// This node's name: a `[node.NAME]` of the manifest, and the name in its certificate.
    #[arg(long)]
    name: String,
    /// Where the gateway listens.
    #[arg(long)]
    listen: SocketAddr,
    /// Where this node accepts calls from other nodes (mutual TLS).
    #[arg(long)]
    mesh_listen: SocketAddr,
    /// The address the other nodes dial to reach this one, as `HOST:PORT`: an address, or a DNS
    /// name resolved at each dial (on Kubernetes, the Service in front of the node's pods).
    /// Default: the address `--mesh-listen` bound.
    #[arg(long, value_name = "HOST:PORT")]
    mesh_advertise: Option<PeerAddress>,
    /// The directory `septa ca issue --out` wrote: `node.crt`, `node.key`, `ca.crt`.
    #[arg(long)]
    tls_dir: PathBuf,
    /// Where the admin listener (health, metrics, flows) listens. Off unless given.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// The flow log file (JSON lines), or `-` for standard output. Default: STATE/flows.jsonl.
    #[arg(long)]
    flow_log: Option<PathBuf>,
    #[command(flatten)]
    flow_log_bounds: crate::flow_log::FlowLogBounds,
    /// Where embedded endpoints keep their files. Default: STATE/data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the node keeps the revisions it applied and its caches. Default: `.septa-node/NAME`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Worker threads of the gateway. Default: one per core.
    #[arg(long)]
    workers: Option<usize>,
    /// Instance slots in the pooling allocator, across all functions.
    #[arg(long, default_value_t = 1000)]
    instances: u32,
}

pub(crate) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let fd_limit = septa_gateway::raise_fd_limit();
    let tls = Arc::new(NodeTls::load(&args.tls_dir).with_context(|| {
        format!(
            "cannot load the node certificates in `{}`",
            args.tls_dir.display()
        )
    })?);
    let id = tls.current().id.clone();
    if id.node != args.name {
        bail!(
            "the certificate in `{}` is for node `{}`, not `{}`",
            args.tls_dir.display(),
            id.node,
            args.name
        );
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| Path::new(".septa-node").join(&args.name));
    let state = StateDir::open(&state_dir)?;
    let (revision, manifest) = first_revision(&args, &state)?;

    let alerts = crate::admin::start_alerts()?;
    let monitoring = args
        .admin
        .map(|_| crate::admin::Monitoring::new(None, &state_dir, &alerts))
        .transpose()?;
    let pool = PoolSize::new(args.instances);
    let engine = build_engine(pool)
        .map_err(|e| anyhow::anyhow!("cannot configure the wasmtime engine: {e:#}"))?;
    let _ticker = EpochTicker::start(engine.clone()).context("cannot start the epoch ticker")?;
    let cache =
        ComponentCache::new(&state_dir.join("cache")).context("cannot use the component cache")?;
    let flows = open_flow_log(&args, &state_dir, monitoring.as_ref(), &alerts)?;
    let directory = Arc::new(Directory::with(state.peers()));
    let remote = Arc::new(RemoteNodes::new(tls.clone(), directory.clone()));
    let parts = Parts {
        manifest_file: manifest.clone(),
        engine,
        pool,
        cache,
        flows: flows.clone(),
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("data")),
        alerts,
        node: Some(LocalNode {
            name: args.name.clone(),
            trust_domain: id.trust_domain.clone(),
            remote: remote.clone(),
        }),
    };
    let source = Source {
        file: &manifest,
        revision: Some(&revision.id),
    };
    let first = match Generation::build(&parts, &source, 1, None) {
        Ok(first) => first,
        Err(BuildError::Invalid(diagnostics)) => {
            eprintln!("{}", diagnostics.trim_end());
            eprintln!(
                "septa: node `{}`: revision {} cannot run here",
                args.name, revision.id
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(BuildError::Load(error)) => return Err(error),
    };
    let metrics = monitoring.as_ref().map(|m| m.metrics.clone());
    if let Some(metrics) = &metrics {
        metrics.load_policy(&first.policy, first.hash.clone());
        metrics.watch_peers(Box::new(move || remote.unreachable()));
    }
    let platform = Arc::new(Platform::new(parts, first, metrics));
    let hosts = hosted_identities(&platform, &args.name);
    println!(
        "septa: node `{}` ({id}) serves revision {}: {}",
        args.name,
        revision.id,
        hosts.join(", ")
    );

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let limits = septa_gateway::ConnectionLimits {
        max_connections: septa_gateway::connection_cap(fd_limit).max(1),
        ..Default::default()
    };
    let listening = septa_gateway::serve(args.listen, workers, platform.current(), limits)
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    let mesh_listener = std::net::TcpListener::bind(args.mesh_listen)
        .with_context(|| format!("cannot listen on `{}`", args.mesh_listen))?;
    mesh_listener.set_nonblocking(true)?;
    let mesh_addr = mesh_listener.local_addr()?;
    let advertised = args
        .mesh_advertise
        .clone()
        .unwrap_or(PeerAddress::Socket(mesh_addr));
    if advertised != PeerAddress::Socket(mesh_addr) {
        println!(
            "septa: node `{}` advertises its mesh as {advertised}",
            args.name
        );
    }
    if let (Some(addr), Some(monitoring)) = (args.admin, &monitoring) {
        let control: Arc<dyn septa_monitor::Control> = platform.clone();
        let bound = monitoring.serve(addr, listening.addr, &flows, control)?;
        println!("septa: admin on http://{bound}");
    }
    let status = NodeStatus {
        name: args.name.clone(),
        address: listening.addr.to_string(),
        mesh_address: advertised.to_string(),
        fingerprint: tls.current().fingerprint.clone(),
        revision: Some(revision.id.clone()),
        hosts,
        failed: None,
        started_at_ms: now_ms(),
        heartbeat_at_ms: 0,
    };
    let node = Arc::new(NodeControl {
        nats: args.nats.clone(),
        name: args.name.clone(),
        platform: platform.clone(),
        state,
        directory,
        status: Mutex::new(status),
        tls: tls.clone(),
    });
    let current_platform = platform.clone();
    let current: septa_mesh::inbound::CurrentMesh = Arc::new(move || {
        let ingress: Arc<dyn septa_runtime::ForwardedIngress> = current_platform.current().load();
        Some(septa_mesh::inbound::InboundTargets {
            mesh: current_platform.mesh(),
            ingress: Some(ingress),
        })
    });
    std::thread::Builder::new()
        .name("septa-node".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else { return };
            // Calls from peers run guests here, scheduled as on a gateway worker. Dropped before
            // the runtime (declared after it).
            let _scheduled = septa_runtime::schedule_this_thread();
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(mesh_listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        // A node that cannot take calls from its peers must not look healthy.
                        eprintln!("septa: mesh listener: {error}");
                        std::process::exit(1);
                    }
                };
                tokio::spawn(septa_mesh::inbound::serve(
                    listener,
                    tls,
                    current,
                    septa_mesh::MeshLimits::for_fd_limit(fd_limit),
                ));
                node.run().await;
            });
        })
        .context("cannot start the node's control thread")?;
    println!(
        "septa: node `{}` listening on http://{} (mesh {mesh_addr})",
        args.name, listening.addr
    );
    wait_for_termination()?;
    println!("septa: shutting down");
    listening.shutdown();
    flows.shutdown().context("cannot flush the flow log")?;
    Ok(ExitCode::SUCCESS)
}

/// The revision to start with: the one published in NATS, or the last one applied here when
/// NATS cannot be reached. Never none: a node without a revision refuses to start.
fn first_revision(args: &NodeArgs, state: &StateDir) -> anyhow::Result<(Revision, PathBuf)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fetched = runtime.block_on(async {
        let control =
            tokio::time::timeout(Duration::from_secs(5), ControlPlane::connect(&args.nats))
                .await
                .map_err(|_| "NATS did not answer within 5s".to_owned())?
                .map_err(|e| e.to_string())?;
        let revision = control
            .current()
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no revision is published yet (run `septa publish`)".to_owned())?;
        let manifest = control::fetch(&control, state, &args.name, &revision).await?;
        Ok::<_, String>((revision, manifest))
    });
    match fetched {
        Ok((revision, manifest)) => {
            state.set_current(&revision)?;
            Ok((revision, manifest))
        }
        Err(why) => match state.current() {
            Some((revision, manifest)) => {
                eprintln!(
                    "septa: node `{}`: {why}; serving revision {} saved in `{}`",
                    args.name,
                    revision.id,
                    state.path().display()
                );
                Ok((revision, manifest))
            }
            None => bail!(
                "{why}, and no revision was saved in `{}`: refusing to start without a policy",
                state.path().display()
            ),
        },
    }
}

fn open_flow_log(
    args: &NodeArgs,
    state_dir: &Path,
    monitoring: Option<&crate::admin::Monitoring>,
    alerts: &Arc<septa_monitor::Alerts>,
) -> anyhow::Result<FlowLog> {
    let observers = monitoring
        .map(crate::admin::Monitoring::observers)
        .unwrap_or_default()
        .with(alerts.clone());
    let default = state_dir.join("flows.jsonl");
    let flows = args
        .flow_log_bounds
        .open(args.flow_log.as_deref(), &default, observers)?;
    Ok(flows.for_node(&args.name))
}

/// Serves until SIGINT or SIGTERM.
fn wait_for_termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}
