//! What a node keeps on disk: every revision it applied, written whole before it is used, a
//! pointer to the last one, and the peers' mesh addresses as the registry last listed them, so a
//! node started while NATS is down serves what it served before and still reaches its peers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use septa_cluster::Revision;
use septa_mesh::PeerAddress;

/// The node's state directory.
pub(crate) struct StateDir {
    dir: PathBuf,
}

/// The file naming the last revision applied.
const CURRENT: &str = "current.json";
/// The file holding the peers' mesh addresses, by node name.
const PEERS: &str = "peers.json";

impl StateDir {
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("revisions"))
            .with_context(|| format!("cannot create the state directory `{}`", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a fetched revision's files under `revisions/ID` (through a temporary directory
    /// renamed into place, so a half-written revision is never loaded) and returns the path of
    /// its manifest.
    pub(crate) fn store(
        &self,
        revision: &Revision,
        files: &BTreeMap<String, Bytes>,
    ) -> anyhow::Result<PathBuf> {
        let final_dir = self.revision_dir(&revision.id);
        if !final_dir.exists() {
            let tmp = self.dir.join("revisions").join(format!(
                ".{}.tmp-{}",
                revision.id,
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&tmp);
            for (path, bytes) in files {
                // Paths were checked to be plain relative paths when fetched.
                let target = tmp.join(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&target, bytes)
                    .with_context(|| format!("cannot write `{}`", target.display()))?;
            }
            std::fs::rename(&tmp, &final_dir)
                .with_context(|| format!("cannot move revision into `{}`", final_dir.display()))?;
        }
        Ok(final_dir.join(&revision.manifest.path))
    }

    /// Records `revision` as the one in force.
    pub(crate) fn set_current(&self, revision: &Revision) -> anyhow::Result<()> {
        let tmp = self.dir.join(format!(".{CURRENT}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(revision)?)?;
        std::fs::rename(&tmp, self.dir.join(CURRENT)).context("cannot record the revision in force")
    }

    /// The last revision applied and its manifest's path, if one was saved whole.
    pub(crate) fn current(&self) -> Option<(Revision, PathBuf)> {
        let bytes = std::fs::read(self.dir.join(CURRENT)).ok()?;
        let revision: Revision = serde_json::from_slice(&bytes).ok()?;
        let manifest = self
            .revision_dir(&revision.id)
            .join(&revision.manifest.path);
        manifest.is_file().then_some((revision, manifest))
    }

    /// Records the peers' mesh addresses, replacing what was saved.
    pub(crate) fn save_peers(&self, peers: &BTreeMap<String, PeerAddress>) -> anyhow::Result<()> {
        let tmp = self.dir.join(format!(".{PEERS}.tmp"));
        let text: BTreeMap<&String, String> =
            peers.iter().map(|(n, a)| (n, a.to_string())).collect();
        std::fs::write(&tmp, serde_json::to_vec_pretty(&text)?)?;
        std::fs::rename(&tmp, self.dir.join(PEERS)).context("cannot record the peers' addresses")
    }

    /// The peers' mesh addresses as last saved; none when nothing (readable) was saved, and the
    /// registry fills them in once NATS answers.
    pub(crate) fn peers(&self) -> BTreeMap<String, PeerAddress> {
        let saved: BTreeMap<String, String> = std::fs::read(self.dir.join(PEERS))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        saved
            .into_iter()
            .filter_map(|(name, addr)| Some((name, addr.parse().ok()?)))
            .collect()
    }

    fn revision_dir(&self, id: &str) -> PathBuf {
        // Ids are hex digits; anything else cannot name a directory here.
        let id: String = id.chars().filter(char::is_ascii_hexdigit).collect();
        self.dir.join("revisions").join(id)
    }
}
