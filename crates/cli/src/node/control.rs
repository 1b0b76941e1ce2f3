//! A node's side of the control plane: watch the revision pointer, fetch and apply what this node
//! hosts, heartbeat into the registry, and keep the directory of peer nodes fresh. NATS is never
//! on the request path: when it is down, the node keeps serving its last revision and the last
//! peer addresses it saw, and tries again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use septa_cluster::{ControlError, ControlPlane, NodeStatus, Revision, RevisionFailure};
use septa_mesh::{PeerAddress, PeerDirectory};
use septa_monitor::ReloadTrigger;

use super::state::StateDir;
use crate::platform::{Platform, Source};

/// How often the registry is renewed and read.
const REFRESH: Duration = Duration::from_secs(2);

/// The other nodes' mesh addresses, as last read from the registry (or, until NATS answers, as
/// saved in the state directory when it last did). An address may be a name the peer advertised
/// (`septa node --mesh-advertise`); it is resolved when dialled, not here.
pub(crate) struct Directory {
    addrs: RwLock<BTreeMap<String, PeerAddress>>,
}

impl PeerDirectory for Directory {
    fn mesh_address(&self, node: &str) -> Option<PeerAddress> {
        self.addrs.read().ok()?.get(node).cloned()
    }
}

impl Directory {
    /// A directory starting from `addrs` (those saved by the last run).
    pub(crate) fn with(addrs: BTreeMap<String, PeerAddress>) -> Self {
        Self {
            addrs: RwLock::new(addrs),
        }
    }

    /// Replaces the addresses with the registry's; returns them when they changed.
    fn update(&self, nodes: &[NodeStatus]) -> Option<BTreeMap<String, PeerAddress>> {
        let addrs: BTreeMap<String, PeerAddress> = nodes
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.mesh_address.parse().ok()?)))
            .collect();
        let mut current = self.addrs.write().ok()?;
        if *current == addrs {
            return None;
        }
        *current = addrs.clone();
        Some(addrs)
    }
}

/// The control loop of one node.
pub(crate) struct NodeControl {
    pub(crate) nats: String,
    pub(crate) name: String,
    pub(crate) platform: Arc<Platform>,
    pub(crate) state: StateDir,
    pub(crate) directory: Arc<Directory>,
    pub(crate) status: Mutex<NodeStatus>,
    /// The node's certificates, re-read when their files change: the registry shows the
    /// fingerprint of the one in use.
    pub(crate) tls: Arc<septa_identity::tls::NodeTls>,
}

impl NodeControl {
    /// Runs until the process ends, reconnecting to NATS whenever the connection is lost.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut warned = false;
        loop {
            match ControlPlane::connect(&self.nats).await {
                Ok(control) => {
                    warned = false;
                    if let Err(error) = self.session(&control).await {
                        eprintln!(
                            "septa: node `{}`: control plane: {error}; serving on, retrying",
                            self.name
                        );
                    }
                }
                Err(error) if !warned => {
                    eprintln!(
                        "septa: node `{}`: {error}; serving the last revision, retrying",
                        self.name
                    );
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn session(&self, control: &ControlPlane) -> Result<(), ControlError> {
        let mut revisions = Box::pin(control.watch().await?);
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                next = revisions.next() => match next {
                    Some(Ok(revision)) => {
                        self.apply(control, revision).await;
                        self.heartbeat(control).await?;
                    }
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
                _ = tick.tick() => self.heartbeat(control).await?,
            }
        }
    }

    async fn heartbeat(&self, control: &ControlPlane) -> Result<(), ControlError> {
        let status = {
            let mut status = lock(&self.status);
            status.heartbeat_at_ms = now_ms();
            status.fingerprint = self.tls.current().fingerprint.clone();
            status.clone()
        };
        control.heartbeat(&status).await?;
        if let Some(peers) = self.directory.update(&control.nodes().await?) {
            // Saved so that a restart while NATS is down still reaches the peers.
            if let Err(error) = self.state.save_peers(&peers) {
                eprintln!("septa: node `{}`: {error:#}", self.name);
            }
        }
        Ok(())
    }

    /// Fetches what this node hosts of `revision` and puts it in force, or keeps the revision
    /// serving and reports why in the registry.
    async fn apply(&self, control: &ControlPlane, revision: Revision) {
        {
            let mut status = lock(&self.status);
            if status.revision.as_deref() == Some(revision.id.as_str()) {
                // Published again (say, after a refused one): in force already, nothing refused.
                status.failed = None;
                return;
            }
        }
        let outcome = match fetch(control, &self.state, &self.name, &revision).await {
            Ok(manifest) => {
                let platform = self.platform.clone();
                let id = revision.id.clone();
                tokio::task::spawn_blocking(move || {
                    let source = Source {
                        file: &manifest,
                        revision: Some(&id),
                    };
                    let attempt = platform.apply(&source, ReloadTrigger::Published);
                    crate::platform::report(&attempt);
                    attempt.applied.then_some(()).ok_or(attempt.message)
                })
                .await
                .unwrap_or_else(|e| Err(format!("applying the revision failed: {e}")))
            }
            Err(error) => Err(error),
        };
        let mut status = lock(&self.status);
        match outcome {
            Ok(()) => {
                if let Err(error) = self.state.set_current(&revision) {
                    eprintln!("septa: node `{}`: {error:#}", self.name);
                }
                status.hosts = hosted_identities(&self.platform, &self.name);
                status.revision = Some(revision.id);
                status.failed = None;
            }
            Err(reason) => {
                eprintln!(
                    "septa: node `{}`: revision {} refused; keeping {}: {reason}",
                    self.name,
                    revision.id,
                    status.revision.as_deref().unwrap_or("nothing")
                );
                status.failed = Some(RevisionFailure {
                    revision: revision.id,
                    reason,
                });
            }
        }
    }
}

/// Fetches the manifest, learns from it what `node` hosts, fetches that, checks every file, and
/// stores the revision; returns its manifest's path.
pub(crate) async fn fetch(
    control: &ControlPlane,
    state: &StateDir,
    node: &str,
    revision: &Revision,
) -> Result<PathBuf, String> {
    let shared = control
        .fetch(revision, |_| false)
        .await
        .map_err(|e| e.to_string())?;
    let text = shared
        .get(&revision.manifest.path)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let file = state.path().join(&revision.manifest.path);
    let hosted = hosted_by(&file, &text, node)?;
    let files: BTreeMap<String, Bytes> = control
        .fetch(revision, |function| hosted.contains(function))
        .await
        .map_err(|e| e.to_string())?;
    state.store(revision, &files).map_err(|e| format!("{e:#}"))
}

/// The functions and endpoints the manifest places on `node`.
fn hosted_by(file: &Path, text: &str, node: &str) -> Result<BTreeSet<String>, String> {
    let manifest = septa_manifest::parse(file, text).map_err(|d| d.to_string())?;
    let Some(node_spec) = manifest
        .cluster
        .as_ref()
        .and_then(|c| c.nodes.values().find(|n| n.name.as_str() == node))
    else {
        return Err(format!("the revision declares no `[node.{node}]`"));
    };
    Ok(manifest
        .functions
        .values()
        .filter(|f| node_spec.hosts(&manifest.segments, f))
        .map(|f| f.name.to_string())
        .collect())
}

/// `function:NAME` and `endpoint:NAME` of everything the serving policy places on `node`.
pub(crate) fn hosted_identities(platform: &Platform, node: &str) -> Vec<String> {
    let policy = platform.generation().policy.clone();
    policy
        .placement()
        .map(|p| {
            p.hosted_by(node)
                .map(|id| policy.function(id).identity.clone())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
