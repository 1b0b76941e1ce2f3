//! The JetStream buckets and what septa does with them: publish a revision, watch the revision
//! pointer, fetch and verify files, and keep the node registry.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncReadExt;

use crate::bundle::{Bundle, FileRef, Revision, is_safe_path, sha256_hex};
use crate::registry::NodeStatus;

/// The KV bucket whose key [`CURRENT`] names the revision in force.
pub const REVISIONS_BUCKET: &str = "septa-revisions";
/// The key of the revision pointer.
pub const CURRENT: &str = "current";
/// The KV bucket of registered nodes, one key per node, expiring unless renewed.
pub const NODES_BUCKET: &str = "septa-nodes";
/// The object store of every revision's files, named by SHA-256.
pub const FILES_BUCKET: &str = "septa-files";
/// How long a node stays registered after its last heartbeat.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(15);
/// How often a node renews its entry.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// The largest file a revision may hold.
const MAX_FILE_BYTES: u64 = 512 << 20;

/// A failure talking to NATS, or a revision that does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// NATS cannot be reached.
    #[error("cannot connect to NATS at `{url}`: {detail}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// A JetStream operation failed.
    #[error("{what}: {detail}")]
    JetStream {
        /// What septa was doing.
        what: &'static str,
        /// What NATS said.
        detail: String,
    },
    /// The revision pointer is not what `septa publish` writes.
    #[error("the revision pointer is not a septa revision: {0}")]
    BadPointer(String),
    /// A file of the revision is missing, unsafe, too large, or not what its hash says.
    #[error("file `{path}` of revision `{revision}`: {why}")]
    BadFile {
        /// The revision.
        revision: String,
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// Why a publish did not move the revision pointer.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Another publisher moved the pointer between this one reading and writing it.
    #[error(
        "another publish moved the revision while this one was uploading; nothing changed, run it again"
    )]
    Raced,
    /// Anything else.
    #[error(transparent)]
    Control(#[from] ControlError),
}

fn js(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> ControlError {
    move |e| ControlError::JetStream {
        what,
        detail: e.to_string(),
    }
}

/// A connection to the control plane's buckets.
#[derive(Clone)]
pub struct ControlPlane {
    revisions: kv::Store,
    nodes: kv::Store,
    files: object_store::ObjectStore,
}

impl ControlPlane {
    /// Connects to NATS at `url` and opens the buckets, creating them the first time.
    pub async fn connect(url: &str) -> Result<Self, ControlError> {
        let client = async_nats::ConnectOptions::new()
            .name("septa")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)))
            .connect(url)
            .await
            .map_err(|e| ControlError::Connect {
                url: url.to_owned(),
                detail: match e.kind() {
                    async_nats::ConnectErrorKind::Io => "no server answers there".to_owned(),
                    _ => e.to_string(),
                },
            })?;
        let context = jetstream::new(client);
        let revisions = open_kv(&context, REVISIONS_BUCKET, 64, Duration::ZERO).await?;
        let nodes = open_kv(&context, NODES_BUCKET, 1, HEARTBEAT_TTL).await?;
        let files = match context.get_object_store(FILES_BUCKET).await {
            Ok(store) => store,
            Err(_) => context
                .create_object_store(object_store::Config {
                    bucket: FILES_BUCKET.to_owned(),
                    description: Some("septa revisions' files by SHA-256".to_owned()),
                    ..Default::default()
                })
                .await
                .map_err(|e| js("cannot open the files bucket")(&e))?,
        };
        Ok(Self {
            revisions,
            nodes,
            files,
        })
    }

    /// Uploads every file the bundle holds that the store does not have yet, then moves the
    /// revision pointer from the one read before uploading to this one, or fails with
    /// [`PublishError::Raced`] if someone else moved it meanwhile.
    pub async fn publish(&self, bundle: &Bundle) -> Result<(), PublishError> {
        let last = self
            .revisions
            .entry(CURRENT)
            .await
            .map_err(|e| js("cannot read the revision pointer")(&e))?
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| e.revision);
        for (sha256, bytes) in &bundle.contents {
            let present = self
                .files
                .info(sha256)
                .await
                .is_ok_and(|info| info.size == bytes.len() && !info.deleted);
            if !present {
                self.files
                    .put(sha256.as_str(), &mut bytes.as_ref())
                    .await
                    .map_err(|e| js("cannot upload a file")(&e))?;
            }
        }
        let value = Bytes::from(serde_json::to_vec(&bundle.revision).unwrap_or_default());
        let moved = match last {
            Some(revision) => self
                .revisions
                .update(CURRENT, value, revision)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => PublishError::Raced,
                    _ => js("cannot move the revision pointer")(&e).into(),
                }),
            None => self
                .revisions
                .create(CURRENT, value)
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => PublishError::Raced,
                    _ => js("cannot set the revision pointer")(&e).into(),
                }),
        };
        moved.map(|_| ())
    }

    /// The revision in force, if one was ever published.
    pub async fn current(&self) -> Result<Option<Revision>, ControlError> {
        let entry = self
            .revisions
            .entry(CURRENT)
            .await
            .map_err(|e| js("cannot read the revision pointer")(&e))?;
        entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| parse_pointer(&e.value))
            .transpose()
    }

    /// The revision in force now (if any) and then every one published after it.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<Revision, ControlError>> + use<>, ControlError> {
        let watch = self
            .revisions
            .watch_with_history(CURRENT)
            .await
            .map_err(|e| js("cannot watch the revision pointer")(&e))?;
        Ok(watch.filter_map(|entry| async move {
            match entry {
                Ok(e) if e.operation == kv::Operation::Put => Some(parse_pointer(&e.value)),
                Ok(_) => None,
                Err(e) => Some(Err(js("the revision watch failed")(&e))),
            }
        }))
    }

    /// Downloads the files of `revision` that `hosted` needs (see [`Revision::needed_by`]) and
    /// checks each against its size and SHA-256; returns them by path.
    pub async fn fetch(
        &self,
        revision: &Revision,
        hosted: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, Bytes>, ControlError> {
        let mut out = BTreeMap::new();
        for file in revision.needed_by(hosted) {
            let bytes = self.fetch_file(revision, file).await?;
            out.insert(file.path.clone(), bytes);
        }
        Ok(out)
    }

    async fn fetch_file(&self, revision: &Revision, file: &FileRef) -> Result<Bytes, ControlError> {
        let bad = |why: String| ControlError::BadFile {
            revision: revision.id.clone(),
            path: file.path.clone(),
            why,
        };
        if !is_safe_path(&file.path) {
            return Err(bad("not a plain relative path".to_owned()));
        }
        if file.size > MAX_FILE_BYTES {
            return Err(bad(format!("{} bytes is over the limit", file.size)));
        }
        let object = self
            .files
            .get(&file.sha256)
            .await
            .map_err(|e| bad(format!("cannot fetch it: {e}")))?;
        let mut bytes = Vec::with_capacity(file.size as usize);
        object
            .take(file.size + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if bytes.len() as u64 != file.size || sha256_hex(&bytes) != file.sha256 {
            return Err(bad("its bytes do not match its SHA-256".to_owned()));
        }
        Ok(Bytes::from(bytes))
    }

    /// Writes (or renews) this node's registry entry.
    pub async fn heartbeat(&self, status: &NodeStatus) -> Result<(), ControlError> {
        let value = Bytes::from(serde_json::to_vec(status).unwrap_or_default());
        self.nodes
            .put(&status.name, value)
            .await
            .map_err(|e| js("cannot write the node registry")(&e))?;
        Ok(())
    }

    /// Every node whose registration has not expired, in name order.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, ControlError> {
        let mut keys = self
            .nodes
            .keys()
            .await
            .map_err(|e| js("cannot list the node registry")(&e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| js("cannot list the node registry")(&e))?);
        }
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let entry = self
                .nodes
                .entry(&name)
                .await
                .map_err(|e| js("cannot read the node registry")(&e))?;
            if let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put)
                && let Ok(status) = serde_json::from_slice::<NodeStatus>(&e.value)
            {
                out.push(status);
            }
        }
        Ok(out)
    }
}

async fn open_kv(
    context: &jetstream::Context,
    bucket: &str,
    history: i64,
    max_age: Duration,
) -> Result<kv::Store, ControlError> {
    if let Ok(store) = context.get_key_value(bucket).await {
        return Ok(store);
    }
    context
        .create_key_value(kv::Config {
            bucket: bucket.to_owned(),
            history,
            max_age,
            ..Default::default()
        })
        .await
        .map_err(|e| js("cannot open a key-value bucket")(&e))
}

fn parse_pointer(bytes: &[u8]) -> Result<Revision, ControlError> {
    serde_json::from_slice(bytes).map_err(|e| ControlError::BadPointer(e.to_string()))
}
