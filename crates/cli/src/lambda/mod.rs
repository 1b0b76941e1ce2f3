//! `septa lambda`: septa as an AWS Lambda custom runtime (`provided.al2023`) for one function.
//!
//! At start-up it loads the manifest exactly as `septa check` does and compiles the one
//! function's component; a manifest that does not check, or a function it does not declare, is
//! reported to the Runtime API's `/init/error` and the process exits non-zero. Then it polls
//! for invocations and serves each as a node serves a request: the event (API Gateway or VPC
//! Lattice, see [`events`]) decided again by the policy (see [`decide`]), the function run in a
//! fresh instance with its limits by the earlier of its timeout and Lambda's deadline, its
//! egress through the same mesh, rules and operator ceiling as on a node, its allowed calls to
//! other functions signed for their VPC Lattice services (see [`lattice`]), and one flow record
//! per flow, traced by the request id.

mod decide;
mod events;
mod facts;
mod invoke;
mod lattice;
mod reply;
mod runtime_api;
mod sigv4;
mod stage;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use septa_flows::{FlowLog, FlowObservers};
use septa_gateway::auth::Credentials;
use septa_gateway::auth::refresh::KeyRefresh;
use septa_manifest::{EndpointBackend, FunctionKind};
use septa_mesh::{DialTimeouts, Mesh};
use septa_runtime::{ComponentCache, EpochTicker, Host, build_engine};

use crate::endpoints::Endpoints;
use crate::platform::BuildError;
use invoke::{Function, Outcome};
use runtime_api::{ReportedError, RuntimeApi};

/// Options of `septa lambda`.
#[derive(Args)]
pub(crate) struct LambdaArgs {
    /// The application directory (holding `septa.toml`). Default: `LAMBDA_TASK_ROOT` (where
    /// Lambda unpacks the function's zip), else the current directory.
    dir: Option<PathBuf>,
    /// The function of the manifest this Lambda function runs. Default: `SEPTA_FUNCTION`, else
    /// the Lambda function's handler (`_HANDLER`).
    #[arg(long)]
    function: Option<String>,
    /// The Lambda Runtime API's `host:port`. Default: `AWS_LAMBDA_RUNTIME_API`, which Lambda
    /// sets.
    #[arg(long, value_name = "HOST:PORT")]
    runtime_api: Option<String>,
    /// The flow log file (JSON lines), or `-` for standard output, which Lambda sends to
    /// CloudWatch Logs. Default: `-`.
    #[arg(long)]
    flow_log: Option<PathBuf>,
    /// Write no flow log.
    #[arg(long, conflicts_with = "flow_log")]
    no_flow_log: bool,
    #[command(flatten)]
    flow_log_bounds: crate::flow_log::FlowLogBounds,
    /// Write the application as the Lambda zip holds it under this directory (the manifest and
    /// the files it names; with `--function`, only that function's component), print the
    /// manifest's path there, and exit: what `scripts/package-lambda` zips.
    #[arg(long, value_name = "OUT")]
    stage: Option<PathBuf>,
    /// Where compiled components are cached. Default: `septa/cache` in the temporary directory
    /// (`/tmp` on Lambda, the only place a function may write).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Instances at once: Lambda gives an execution environment one invocation at a time, and its
/// function calls no other function in process.
const INSTANCES: u32 = 2;

pub(crate) fn run(args: LambdaArgs) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.stage {
        let file = manifest_file(&application_dir(&args));
        return stage::stage(&file, args.function.as_deref(), out);
    }
    let runtime_api = args
        .runtime_api
        .clone()
        .or_else(|| std::env::var("AWS_LAMBDA_RUNTIME_API").ok())
        .filter(|a| !a.is_empty())
        .context(
            "no Lambda Runtime API to poll: give `--runtime-api HOST:PORT` or set `AWS_LAMBDA_RUNTIME_API` (Lambda sets it)",
        )?;
    let api = RuntimeApi::new(&runtime_api);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // Loaded outside the async runtime: opening the endpoints runs one of its own.
    let loaded = match init(&args) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!(
                "septa: lambda: cannot start ({}):\n{}",
                error.error_type, error.message
            );
            if let Err(e) = runtime.block_on(api.init_error(&error)) {
                eprintln!("septa: lambda: {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    eprintln!(
        "septa: lambda: function `{}` of application `{}` ready; polling {runtime_api}",
        loaded
            .function
            .policy
            .function(loaded.function.id)
            .spec
            .name,
        loaded.function.policy.manifest().application,
    );
    let served = runtime.block_on(serve(&api, &loaded));
    let flushed = loaded.function.flows.sync();
    served?;
    flushed.context("cannot flush the flow log")?;
    Ok(ExitCode::SUCCESS)
}

/// Everything an invocation is served with, kept alive for as long as the runtime polls.
struct Loaded {
    function: Function,
    _mesh: Mesh,
    _endpoints: Arc<Endpoints>,
    /// Keeps the keys of issuers with a `jwks_url` fresh.
    _key_refresh: KeyRefresh,
    _ticker: EpochTicker,
}

/// Polls for invocations until the Runtime API cannot be reached.
async fn serve(api: &RuntimeApi, loaded: &Loaded) -> anyhow::Result<()> {
    loop {
        let invocation = api.next().await?;
        let id = invocation.request_id.as_str();
        let posted = match loaded.function.invoke(&invocation).await {
            Outcome::Respond(document) => api.respond(id, document).await,
            Outcome::Fail(error) => {
                eprintln!(
                    "septa: lambda: invocation {id} failed ({}): {}",
                    error.error_type, error.message
                );
                api.fail(id, &error).await
            }
        };
        if let Err(e) = posted {
            // This invocation is lost; the next may go through.
            eprintln!("septa: lambda: invocation {id}: {e}");
        }
        // Lambda may freeze the process once `next` is called again: the records go out first.
        if let Err(e) = loaded.function.flows.sync() {
            eprintln!("septa: lambda: the flow log: {e}");
        }
    }
}

/// Loads the manifest as `septa check` does and the one function's component.
fn init(args: &LambdaArgs) -> Result<Loaded, ReportedError> {
    let reported = |error_type, message: String| ReportedError {
        error_type,
        message,
    };
    let name = args
        .function
        .clone()
        .or_else(|| std::env::var("SEPTA_FUNCTION").ok())
        .or_else(|| std::env::var("_HANDLER").ok())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            reported(
                "Runtime.NoFunction",
                "no function to run: give `--function NAME`, set `SEPTA_FUNCTION`, or name it as the Lambda function's handler".to_owned(),
            )
        })?;
    let file = manifest_file(&application_dir(args));
    let policy = match crate::platform::read_policy(&file) {
        Ok((policy, _, _)) => Arc::new(policy),
        Err(BuildError::Invalid(diagnostics)) => {
            return Err(reported("Runtime.InvalidManifest", diagnostics));
        }
        Err(BuildError::Load(e)) => {
            return Err(reported("Runtime.InvalidManifest", format!("{e:#}")));
        }
    };
    let id = policy
        .function_id(&name)
        .filter(|&id| !policy.function(id).spec.is_endpoint())
        .ok_or_else(|| {
            let names: Vec<String> = policy
                .manifest()
                .components()
                .map(|f| format!("`{}`", f.name))
                .collect();
            reported(
                "Runtime.UnknownFunction",
                format!(
                    "`{name}` is no function of `{}` (its functions: {})",
                    file.display(),
                    names.join(", ")
                ),
            )
        })?;
    load(args, policy, id).map_err(|e| reported("Runtime.LoadFailed", format!("{e:#}")))
}

/// DIR, else `LAMBDA_TASK_ROOT`, else the current directory.
fn application_dir(args: &LambdaArgs) -> PathBuf {
    args.dir
        .clone()
        .or_else(|| std::env::var_os("LAMBDA_TASK_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The manifest of the application directory (or manifest file) `dir`.
fn manifest_file(dir: &Path) -> PathBuf {
    if dir.is_dir() {
        dir.join(septa_manifest::MANIFEST_FILE)
    } else {
        dir.to_owned()
    }
}

/// Compiles the function's component and wires its egress, as a node does.
fn load(
    args: &LambdaArgs,
    policy: Arc<septa_policy::Policy>,
    id: septa_policy::FunctionId,
) -> anyhow::Result<Loaded> {
    let pool = crate::pool::sized_for(policy.manifest(), INSTANCES);
    let engine = build_engine(pool)
        .map_err(|e| anyhow::anyhow!("cannot configure the wasmtime engine: {e:#}"))?;
    let ticker = EpochTicker::start(engine.clone()).context("cannot start the epoch ticker")?;
    // On Lambda, `/tmp` is the only place a function may write.
    let writable = std::env::temp_dir().join("septa");
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| writable.join("cache"));
    let cache = ComponentCache::new(&cache_dir)
        .with_context(|| format!("cannot use cache directory `{}`", cache_dir.display()))?;
    let flows = open_flow_log(args)?;
    let (host, _) = Host::load_hosted(&engine, &pool, &policy, &cache, |f| f == id)?;
    let host = Arc::new(host);
    // Redis and PostgreSQL endpoints are reached as on a node; an embedded store would live
    // and die with one execution environment, so its calls answer 503.
    let remote_store = |f: septa_policy::FunctionId| {
        matches!(
            policy.function(f).spec.kind,
            FunctionKind::Endpoint(EndpointBackend::Redis(_) | EndpointBackend::Postgres(_))
        )
    };
    let endpoints = Endpoints::open(
        &policy,
        &writable.join("data"),
        host.bulkheads(),
        None,
        remote_store,
    )?;
    let endpoints = Arc::new(endpoints);
    let mesh = Mesh::new(
        policy.clone(),
        &host,
        flows.clone(),
        DialTimeouts::default(),
    )
    .with_endpoints(endpoints.clone())
    .with_external_functions(Arc::new(lattice::Lattice::new(
        policy.clone(),
        DialTimeouts::default(),
    )?));
    host.set_outbound(Arc::new(mesh.clone()));
    // The routes' credentials are verified here as the gateway verifies them; keys fetched from
    // a `jwks_url` go through the same egress path, and the first fetch is waited for as at a
    // node's start.
    let credentials = Credentials::load(&policy, &[])?;
    let fetcher = Arc::new(crate::jwks::EgressJwksFetcher::new(policy.clone())?);
    let key_refresh = KeyRefresh::start(
        credentials.fetched_issuers(&policy),
        fetcher,
        flows.clone(),
        &policy,
    )
    .context("cannot start the key refresh")?;
    for fetch in key_refresh.wait_first(crate::platform::FIRST_FETCH_WAIT) {
        if let Err(reason) = fetch.outcome {
            eprintln!("septa: lambda: {reason}; its routes answer 401 until a fetch succeeds");
        }
    }
    Ok(Loaded {
        function: Function {
            policy,
            host,
            id,
            flows,
            credentials,
        },
        _mesh: mesh,
        _endpoints: endpoints,
        _key_refresh: key_refresh,
        _ticker: ticker,
    })
}

/// The flow log as asked: standard output unless told otherwise.
fn open_flow_log(args: &LambdaArgs) -> anyhow::Result<FlowLog> {
    let bounds = &args.flow_log_bounds;
    if args.no_flow_log {
        return Ok(FlowLog::disabled());
    }
    bounds.open(
        args.flow_log.as_deref(),
        Path::new("-"),
        FlowObservers::default(),
    )
}
