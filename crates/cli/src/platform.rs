//! The running platform: one generation of policy, host, mesh and gateway in force, replaced
//! whole when the manifest is reloaded.
//!
//! A generation is everything that enforces one policy: the compiled [`Policy`], the [`Host`]
//! with its pre-instantiated functions, the mesh the host's guests call out through (deciding
//! with that same policy), the endpoints' stores and the [`Gateway`]. A reload builds the next
//! generation beside the one serving (reading, validating, compiling and checking the manifest,
//! compiling changed components, all off the request path) and only then puts its gateway in
//! force with one pointer swap. A request takes the gateway once, when it arrives, and with it
//! the host and mesh of the same generation, so it is decided by the old policy or the new one,
//! never a mix. Anything that fails leaves the old generation serving, and says why.
//!
//! What survives a reload: the rate-limit buckets of unchanged limits and the keys of unchanged
//! fetched issuers (carried by [`Gateway::reloaded`]), the endpoints' open stores (an endpoint
//! declared as before keeps its store), the flow log, the metrics, and the compiled-component
//! cache (an unchanged component is not compiled again).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use septa_flows::FlowLog;
use septa_gateway::auth::refresh::{FirstFetch, KeyRefresh};
use septa_gateway::{CurrentGateway, Gateway};
use septa_mesh::{DialTimeouts, LocalNode, Mesh};
use septa_monitor::{
    AlertRules, Alerts, Control, GuestCpu, Metrics, ProbeAttempt, ProbeGrant, ProbeRefusal,
    ProbeReport, ReloadAttempt, ReloadOutcome, ReloadTrigger,
};
use septa_policy::Policy;
use septa_runtime::{ComponentCache, Engine, Host, LoadReport, PoolSize};

use crate::endpoints::Endpoints;

/// How long a generation waits for its issuers' first key fetches before it serves anyway.
pub(crate) const FIRST_FETCH_WAIT: Duration = Duration::from_secs(5);

/// Characters of the manifest's SHA-256 that name a policy in flow records.
const REVISION_LEN: usize = 12;

/// What a generation is built with, and shares with the next.
pub(crate) struct Parts {
    /// The manifest file.
    pub(crate) manifest_file: PathBuf,
    pub(crate) engine: Engine,
    /// The engine's instance pool, which every component must fit.
    pub(crate) pool: PoolSize,
    pub(crate) cache: ComponentCache,
    pub(crate) flows: FlowLog,
    /// Where embedded endpoints keep their files.
    pub(crate) data_dir: PathBuf,
    /// The alerts, fed by the flow log: each generation puts its manifest's in force, and each
    /// refused reload is one.
    pub(crate) alerts: Arc<Alerts>,
    /// On `septa node`: which node this is and how it reaches the others. Each generation then
    /// runs only what the revision places on this node.
    pub(crate) node: Option<LocalNode>,
}

/// What a generation is built from: a manifest file, and on a node the cluster revision it
/// belongs to (which then names the policy in flow records instead of the manifest's hash).
pub(crate) struct Source<'a> {
    pub(crate) file: &'a Path,
    pub(crate) revision: Option<&'a str>,
}

/// One policy and everything that enforces it.
pub(crate) struct Generation {
    pub(crate) number: u64,
    /// SHA-256 of the manifest's bytes, lowercase hex.
    pub(crate) hash: String,
    pub(crate) policy: Arc<Policy>,
    pub(crate) host: Arc<Host>,
    pub(crate) gateway: Arc<Gateway>,
    /// The mesh its guests call out through; on a node, also what peers' calls are decided by.
    pub(crate) mesh: Mesh,
    endpoints: Arc<Endpoints>,
    /// Keeps fetched issuers' keys fresh; dropped (stopping its thread) with the generation.
    pub(crate) key_refresh: KeyRefresh,
    pub(crate) load_report: LoadReport,
    pub(crate) first_fetches: Vec<FirstFetch>,
    /// What a change on disk looks like: the manifest's bytes and each component's file.
    fingerprint: Fingerprint,
}

/// Why a manifest did not become a generation: what the user must fix, as `septa check` would
/// print it, or a failure to put it in force.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// The manifest is invalid, does not compile, or breaks an invariant.
    Invalid(String),
    /// It is valid but could not be loaded (a component, a key file, an endpoint).
    Load(anyhow::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(diagnostics) => f.write_str(diagnostics.trim_end()),
            Self::Load(error) => write!(f, "{error:#}"),
        }
    }
}

impl Generation {
    /// Reads, validates, compiles and checks the manifest, and builds everything that enforces
    /// it. `previous` is the generation serving now, on a reload.
    pub(crate) fn build(
        parts: &Parts,
        source: &Source<'_>,
        number: u64,
        previous: Option<&Generation>,
    ) -> Result<Self, BuildError> {
        let (mut policy, hash, bytes) = read_policy(source.file)?;
        if let Some(revision) = source.revision {
            policy = policy.with_revision(revision);
        }
        if let Some(node) = &parts.node {
            check_node(&policy, node)?;
        }
        // What this generation was built from: the bytes it read, and the components' files as
        // they are before they are read, so a change made while building is seen afterwards.
        let fingerprint = Fingerprint::of(bytes, &policy);
        let policy = Arc::new(policy);
        let placed = policy.clone();
        let hosted = move |id| {
            parts
                .node
                .as_ref()
                .is_none_or(|n| placed.placement().is_none_or(|p| p.hosts(&n.name, id)))
        };
        let (host, load_report) =
            Host::load_hosted(&parts.engine, &parts.pool, &policy, &parts.cache, &hosted)
                .map_err(|e| BuildError::Load(e.into()))?;
        let host = Arc::new(host);
        let endpoints = Endpoints::open(
            &policy,
            &parts.data_dir,
            host.bulkheads(),
            previous.map(|g| &*g.endpoints),
            &hosted,
        )
        .map_err(BuildError::Load)?;
        let endpoints = Arc::new(endpoints);
        let mesh = Mesh::new(
            policy.clone(),
            &host,
            parts.flows.clone(),
            DialTimeouts::default(),
        )
        .with_endpoints(endpoints.clone());
        let mesh = match &parts.node {
            Some(node) => mesh.on_node(node.clone()),
            None => mesh,
        };
        host.set_outbound(Arc::new(mesh.clone()));
        let jwks = crate::jwks::EgressJwksFetcher::new(policy.clone()).map_err(BuildError::Load)?;
        let jwks = Arc::new(jwks);
        let gateway = match previous {
            Some(previous) => previous
                .gateway
                .reloaded(policy.clone(), host.clone(), jwks),
            None => Gateway::new(policy.clone(), host.clone(), parts.flows.clone(), jwks),
        }
        .map_err(|e| BuildError::Load(e.into()))?;
        let gateway = Arc::new(gateway);
        let key_refresh = gateway
            .start_key_refresh()
            .context("cannot start the key refresh")
            .map_err(BuildError::Load)?;
        let first_fetches = key_refresh.wait_first(FIRST_FETCH_WAIT);
        Ok(Self {
            number,
            hash,
            policy,
            host,
            gateway,
            mesh,
            endpoints,
            key_refresh,
            load_report,
            first_fetches,
            fingerprint,
        })
    }

    /// The flow records' name for this policy.
    fn revision(&self) -> &str {
        self.hash.get(..REVISION_LEN).unwrap_or(&self.hash)
    }
}

/// A revision a node can run: one that declares this node, whose functions it may then host.
fn check_node(policy: &Policy, local: &LocalNode) -> Result<(), BuildError> {
    let node = &local.name;
    match policy.placement() {
        Some(placement) if placement.trust_domain().as_str() != local.trust_domain => {
            Err(BuildError::Invalid(format!(
                "the revision's trust domain is `{}`, but this node's certificate is of `{}`",
                placement.trust_domain(),
                local.trust_domain
            )))
        }
        Some(placement) if placement.has_node(node) => Ok(()),
        Some(_) => Err(BuildError::Invalid(format!(
            "the revision declares no `[node.{node}]`, so this node would host nothing"
        ))),
        None => Err(BuildError::Invalid(
            "the revision has no `[cluster]`: a node runs only revisions that place functions on nodes".to_owned(),
        )),
    }
}

/// Reads the manifest once, and compiles and checks exactly the bytes it hashed; returns them
/// too.
pub(crate) fn read_policy(file: &Path) -> Result<(Policy, String, Vec<u8>), BuildError> {
    let bytes = std::fs::read(file).map_err(|e| {
        BuildError::Invalid(format!("{}: cannot read the manifest: {e}", file.display()))
    })?;
    let hash = septa_monitor::manifest_hash(&bytes);
    let text = String::from_utf8(bytes.clone()).map_err(|e| {
        BuildError::Invalid(format!(
            "{}: the manifest is not UTF-8 (byte {})",
            file.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let manifest = septa_manifest::parse(file, &text)
        .map_err(|diagnostics| BuildError::Invalid(diagnostics.to_string()))?;
    let policy = crate::check::compile(manifest)
        .and_then(crate::check::checked)
        .map_err(|diagnostics| BuildError::Invalid(diagnostics.to_string()))?;
    let revision = hash.get(..REVISION_LEN).unwrap_or(&hash).to_owned();
    Ok((policy.with_revision(revision), hash, bytes))
}

/// What the watcher compares to notice a change: the manifest's bytes, and the size and
/// modification time of every component the policy loads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    manifest: Option<Vec<u8>>,
    components: Vec<(PathBuf, Option<(u64, SystemTime)>)>,
}

impl Fingerprint {
    fn of(manifest: Vec<u8>, policy: &Policy) -> Self {
        let components = policy
            .manifest()
            .components()
            .filter_map(|f| f.component())
            .map(|c| c.source.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|path| {
                let stamp = std::fs::metadata(&path)
                    .ok()
                    .and_then(|m| Some((m.len(), m.modified().ok()?)));
                (path, stamp)
            })
            .collect();
        Self {
            manifest: Some(manifest),
            components,
        }
    }

    /// The same files read again now.
    fn now(&self, manifest_file: &Path) -> Self {
        Self {
            manifest: std::fs::read(manifest_file).ok(),
            components: self
                .components
                .iter()
                .map(|(path, _)| {
                    let stamp = std::fs::metadata(path)
                        .ok()
                        .and_then(|m| Some((m.len(), m.modified().ok()?)));
                    (path.clone(), stamp)
                })
                .collect(),
        }
    }
}

/// The platform in force, and how to replace it.
pub(crate) struct Platform {
    parts: Parts,
    current: Arc<CurrentGateway>,
    /// The mesh in force, for calls from other nodes (read without waiting for a reload).
    mesh: RwLock<Mesh>,
    /// Held for the whole of a reload, so reloads run one at a time.
    generation: Mutex<Generation>,
    last: Mutex<Option<ReloadAttempt>>,
    metrics: Option<Arc<Metrics>>,
    /// Active probe grants and when each ends.
    grants: Mutex<HashMap<String, Instant>>,
}

impl Platform {
    /// Puts `first` in force.
    pub(crate) fn new(parts: Parts, first: Generation, metrics: Option<Arc<Metrics>>) -> Self {
        let current = Arc::new(CurrentGateway::new(first.gateway.clone()));
        if let Some(metrics) = &metrics {
            watch_generation(metrics, &first);
            watch_guest_cpu(metrics);
        }
        parts.alerts.update(AlertRules::from_policy(&first.policy));
        Self {
            parts,
            current,
            mesh: RwLock::new(first.mesh.clone()),
            generation: Mutex::new(first),
            last: Mutex::new(None),
            metrics,
            grants: Mutex::new(HashMap::new()),
        }
    }

    /// The gateway in force, for the listener.
    pub(crate) fn current(&self) -> Arc<CurrentGateway> {
        self.current.clone()
    }

    /// The mesh in force.
    pub(crate) fn mesh(&self) -> Mesh {
        self.mesh
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The generation in force.
    pub(crate) fn generation(&self) -> MutexGuard<'_, Generation> {
        lock(&self.generation)
    }

    /// Watches the manifest and the components it loads, and reloads when they change, every
    /// `interval`, until the process ends. A change is acted on once it has held still for one
    /// interval, so a file caught half-written is not read; a version that was refused is not
    /// tried again until it changes.
    pub(crate) fn watch(self: &Arc<Self>, interval: Duration) -> std::io::Result<()> {
        let platform = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("septa-watch".to_owned())
            .spawn(move || {
                let mut seen: Option<Fingerprint> = None;
                loop {
                    std::thread::sleep(interval);
                    let Some(platform) = platform.upgrade() else {
                        return;
                    };
                    let file = &platform.parts.manifest_file;
                    let serving = platform.generation().fingerprint.clone();
                    let now = serving.now(file);
                    let changed = now != serving && seen.as_ref() != Some(&now);
                    if !changed {
                        continue;
                    }
                    std::thread::sleep(interval);
                    if serving.now(file) != now {
                        // Still being written: look again next time.
                        continue;
                    }
                    seen = Some(now);
                    let attempt = platform.reload(ReloadTrigger::FileChange);
                    report(&attempt);
                }
            })
            .map(drop)
    }

    /// Builds a generation from `source` beside the one serving and puts it in force, or keeps
    /// the one serving and says why not: what a reload does, and what a node does with each
    /// published revision.
    pub(crate) fn apply(&self, source: &Source<'_>, trigger: ReloadTrigger) -> ReloadAttempt {
        let mut serving = self.generation();
        let number = serving.number + 1;
        let attempt = match Generation::build(&self.parts, source, number, Some(&serving)) {
            Ok(next) => {
                let message = summary(&serving, &next);
                self.current.swap(next.gateway.clone());
                *self
                    .mesh
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = next.mesh.clone();
                let alerts = AlertRules::from_policy(&next.policy);
                self.parts.alerts.update(alerts);
                if let Some(metrics) = &self.metrics {
                    metrics.load_policy(&next.policy, next.hash.clone());
                    watch_generation(metrics, &next);
                }
                let attempt = ReloadAttempt {
                    at_unix_s: ReloadAttempt::now_unix_s(),
                    trigger,
                    applied: true,
                    policy_hash: next.hash.clone(),
                    attempted_hash: Some(next.hash.clone()),
                    generation: next.number,
                    message,
                };
                // The old generation goes when its last request finishes.
                drop(std::mem::replace(&mut *serving, next));
                attempt
            }
            Err(error) => ReloadAttempt {
                at_unix_s: ReloadAttempt::now_unix_s(),
                trigger,
                applied: false,
                policy_hash: serving.hash.clone(),
                attempted_hash: std::fs::read(source.file)
                    .ok()
                    .map(|b| septa_monitor::manifest_hash(&b)),
                generation: serving.number,
                message: error.to_string(),
            },
        };
        drop(serving);
        self.record(&attempt);
        attempt
    }

    fn record(&self, attempt: &ReloadAttempt) {
        *lock(&self.last) = Some(attempt.clone());
        if let Some(metrics) = &self.metrics {
            let outcome = if attempt.applied {
                ReloadOutcome::Success
            } else {
                ReloadOutcome::Failure
            };
            metrics.count_reload(outcome);
        }
        // Fires the `reload_refused` alerts; an applied attempt fires nothing.
        self.parts.alerts.reload_refused(attempt);
    }
}

impl Control for Platform {
    fn model(&self) -> serde_json::Value {
        // Drawn outside the lock: a reload need not wait for it.
        let (policy, hash, number) = {
            let generation = self.generation();
            let g = &*generation;
            (g.policy.clone(), g.hash.clone(), g.number)
        };
        septa_audit::model::dashboard_model(&policy, &hash, number)
    }

    fn reload(&self, trigger: ReloadTrigger) -> ReloadAttempt {
        let source = Source {
            file: &self.parts.manifest_file,
            revision: None,
        };
        self.apply(&source, trigger)
    }

    fn last_reload(&self) -> Option<ReloadAttempt> {
        lock(&self.last).clone()
    }

    fn grant_probe(&self, ttl: Duration) -> ProbeGrant {
        let grant = crate::probe::new_grant_id();
        let mut grants = lock(&self.grants);
        let now = Instant::now();
        grants.retain(|_, until| *until > now);
        grants.insert(grant.clone(), now + ttl);
        ProbeGrant {
            grant,
            expires_in_s: ttl.as_secs(),
        }
    }

    fn revoke_probe(&self, id: &str) -> bool {
        let mut grants = lock(&self.grants);
        let now = Instant::now();
        grants.retain(|_, until| *until > now);
        grants.remove(id).is_some()
    }

    fn probe(&self, id: &str, attempts: &[ProbeAttempt]) -> Result<ProbeReport, ProbeRefusal> {
        let active = lock(&self.grants)
            .iter()
            .any(|(grant, until)| crate::probe::same_grant(grant, id) && *until > Instant::now());
        if !active {
            return Err(ProbeRefusal::NoGrant);
        }
        let (policy, gateway, host, hash, number) = {
            let g = self.generation();
            (
                g.policy.clone(),
                g.gateway.clone(),
                g.host.clone(),
                g.hash.clone(),
                g.number,
            )
        };
        let outcomes = crate::probe::attempt_all(&policy, &gateway, &host, attempts)?;
        Ok(ProbeReport {
            generation: number,
            policy_hash: hash,
            outcomes,
        })
    }
}

/// What a reload summary counts of one policy.
struct Counts {
    functions: usize,
    endpoints: usize,
    routes: usize,
    allow_rules: usize,
}

impl Counts {
    fn of(policy: &Policy) -> Self {
        let all = policy.functions().len();
        let endpoints = policy
            .functions()
            .iter()
            .filter(|f| f.spec.is_endpoint())
            .count();
        Self {
            functions: all - endpoints,
            endpoints,
            routes: policy.routes().count(),
            allow_rules: policy.allow_rules().len(),
        }
    }
}

/// One line on what a reload changed.
fn summary(old: &Generation, new: &Generation) -> String {
    let (o, n) = (Counts::of(&old.policy), Counts::of(&new.policy));
    let report = &new.load_report;
    format!(
        "generation {} (policy {}) replaced generation {} (policy {}): {} functions, {} endpoints, {} routes, {} allow rules (were {}, {}, {}, {}); {} components compiled, {} from cache",
        new.number,
        new.revision(),
        old.number,
        old.revision(),
        n.functions,
        n.endpoints,
        n.routes,
        n.allow_rules,
        o.functions,
        o.endpoints,
        o.routes,
        o.allow_rules,
        report.compiled,
        report.cache_hits,
    )
}

/// Prints how a reload attempt ended.
pub(crate) fn report(attempt: &ReloadAttempt) {
    let trigger = match attempt.trigger {
        ReloadTrigger::Admin => "POST /reload",
        ReloadTrigger::FileChange => "file change",
        ReloadTrigger::Signal => "SIGHUP",
        ReloadTrigger::Published => "a published revision",
    };
    if attempt.applied {
        println!("septa: reload ({trigger}): {}", attempt.message);
    } else {
        eprintln!(
            "septa: reload ({trigger}) refused; generation {} keeps serving:\n{}",
            attempt.generation, attempt.message
        );
    }
}

/// Points the instance gauges at `generation`'s host.
fn watch_generation(metrics: &Metrics, generation: &Generation) {
    let bulkheads = generation.host.bulkheads();
    metrics.watch_instances(Box::new(move || {
        bulkheads
            .in_use()
            .map(|(function, in_use)| (function.to_owned(), in_use as u64))
            .collect()
    }));
}

/// Points the CPU counters at the runtime's accounts, which outlive every generation.
fn watch_guest_cpu(metrics: &Metrics) {
    metrics.watch_guest_cpu(Box::new(|| {
        septa_runtime::cpu_usage()
            .into_iter()
            .map(|u| GuestCpu {
                segment: u.segment,
                function: u.function,
                cpu: u.cpu,
                waited: u.waited,
                preemptions: u.preemptions,
            })
            .collect()
    }));
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds whole values.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
