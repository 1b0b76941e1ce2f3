//! What a revision holds: the manifest and every file it names, by path relative to a common
//! root, and the pointer that lists them with their SHA-256.
//!
//! Paths are kept exactly as the manifest resolves them, so a node that writes the files under
//! one directory can load the manifest from there unchanged. A manifest that names a file by an
//! absolute path cannot be published: no other machine would find it there.

use std::collections::BTreeMap;
use std::path::{Component as PathPart, Path, PathBuf};

use bytes::Bytes;
use septa_manifest::{FunctionKind, JwksSource, Manifest};
use serde::{Deserialize, Serialize};

/// A file of a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Its path under the revision's root, `/`-separated, never absolute, never with `..`.
    pub path: String,
    /// SHA-256 of its bytes, lowercase hex; also its object's name.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The functions whose component it is (several may run the same file); empty for the
    /// manifest and the files every node reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
}

/// The pointer a publish moves: everything a node needs to fetch and verify a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Twelve hex digits of the SHA-256 of the manifest and every file's hash: what flow records
    /// and `septa cluster status` name it by.
    pub id: String,
    /// The application's name.
    pub application: String,
    /// The manifest.
    pub manifest: FileRef,
    /// Every other file, in path order.
    pub files: Vec<FileRef>,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
}

impl Revision {
    /// The files node `hosted` needs: the manifest, every file that is not a component, and the
    /// components of the functions `hosted` says it runs.
    pub fn needed_by<'a>(
        &'a self,
        hosted: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a FileRef> + 'a {
        std::iter::once(&self.manifest).chain(
            self.files
                .iter()
                .filter(move |f| f.functions.is_empty() || f.functions.iter().any(|n| hosted(n))),
        )
    }
}

/// The bytes of a revision, before publishing.
#[derive(Debug)]
pub struct Bundle {
    /// The revision that lists them.
    pub revision: Revision,
    /// Every file's bytes by SHA-256.
    pub contents: BTreeMap<String, Bytes>,
}

/// Why a manifest's files cannot be bundled.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file named by an absolute path.
    #[error(
        "`{0}` is an absolute path; a published manifest names its files relative to its directory, so every node finds them"
    )]
    Absolute(PathBuf),
}

impl Bundle {
    /// Reads the manifest's bytes and every file it names.
    pub fn of(manifest: &Manifest, manifest_bytes: Vec<u8>) -> Result<Self, BundleError> {
        let named = named_files(manifest)?;
        let depth = named
            .iter()
            .map(|(rel, _)| leading_parents(rel))
            .max()
            .unwrap_or(0);
        let base = base_names(&manifest.dir, depth)?;
        let mut contents = BTreeMap::new();
        let mut add = |bytes: Vec<u8>, path: String, function: Option<String>| {
            let functions = function.into_iter().collect();
            let bytes = Bytes::from(bytes);
            let sha256 = sha256_hex(&bytes);
            let file = FileRef {
                path,
                sha256: sha256.clone(),
                size: bytes.len() as u64,
                functions,
            };
            contents.insert(sha256, bytes);
            file
        };
        let manifest_ref = add(manifest_bytes, join(&base, "septa.toml"), None);
        let mut files: Vec<FileRef> = Vec::new();
        for (rel, function) in named {
            let on_disk = manifest.dir.join(&rel);
            let bytes = std::fs::read(&on_disk).map_err(|source| BundleError::Read {
                path: on_disk.clone(),
                source,
            })?;
            files.push(add(bytes, bundle_path(&base, &rel), function));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        // One file named by several functions is fetched by every node that runs one of them;
        // named by anything else too, by every node.
        files.dedup_by(|later, kept| {
            if later.path != kept.path {
                return false;
            }
            if kept.functions.is_empty() || later.functions.is_empty() {
                kept.functions.clear();
            } else {
                kept.functions.append(&mut later.functions);
                kept.functions.sort();
                kept.functions.dedup();
            }
            true
        });
        let id = revision_id(&manifest_ref, &files);
        Ok(Self {
            revision: Revision {
                id,
                application: manifest.application.to_string(),
                manifest: manifest_ref,
                files,
                published_at_ms: now_ms(),
            },
            contents,
        })
    }
}

/// Every file the manifest names, relative to its directory as written, with the function whose
/// component it is.
fn named_files(manifest: &Manifest) -> Result<Vec<(PathBuf, Option<String>)>, BundleError> {
    let mut out = Vec::new();
    let relative = |path: &Path| -> Result<PathBuf, BundleError> {
        path.strip_prefix(&manifest.dir)
            .map(Path::to_path_buf)
            .map_err(|_| BundleError::Absolute(path.to_owned()))
    };
    for f in manifest.functions.values() {
        if let FunctionKind::Component(c) = &f.kind {
            out.push((relative(&c.source)?, Some(f.name.to_string())));
        }
    }
    for issuer in manifest.jwt.values() {
        match &issuer.jwks {
            JwksSource::File(path) => out.push((relative(path)?, None)),
            JwksSource::Url { ca_file, .. } => {
                if let Some(path) = ca_file {
                    out.push((relative(path)?, None));
                }
            }
        }
    }
    for set in manifest.api_keys.values() {
        if let Some(path) = &set.keys_file {
            out.push((relative(path)?, None));
        }
    }
    Ok(out)
}

/// How many `..` a relative path climbs above its start, at most.
fn leading_parents(path: &Path) -> usize {
    let mut depth: isize = 0;
    let mut deepest: isize = 0;
    for part in path.components() {
        match part {
            PathPart::ParentDir => depth -= 1,
            PathPart::Normal(_) => depth += 1,
            _ => {}
        }
        deepest = deepest.min(depth);
    }
    deepest.unsigned_abs()
}

/// The last `depth` directory names of `dir`: where the manifest sits under the revision's root,
/// so that files `depth` levels above it still land inside the root.
fn base_names(dir: &Path, depth: usize) -> Result<Vec<String>, BundleError> {
    if depth == 0 {
        return Ok(Vec::new());
    }
    let absolute = std::path::absolute(dir).map_err(|source| BundleError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let names: Vec<String> = absolute
        .components()
        .filter_map(|p| match p {
            PathPart::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let skip = names.len().saturating_sub(depth);
    Ok(names.into_iter().skip(skip).collect())
}

/// `rel` (relative to the manifest's directory) as a path under the revision's root.
fn bundle_path(base: &[String], rel: &Path) -> String {
    let mut parts: Vec<String> = base.to_vec();
    for part in rel.components() {
        match part {
            PathPart::ParentDir => {
                parts.pop();
            }
            PathPart::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

fn join(base: &[String], name: &str) -> String {
    base.iter()
        .map(String::as_str)
        .chain([name])
        .collect::<Vec<_>>()
        .join("/")
}

fn revision_id(manifest: &FileRef, files: &[FileRef]) -> String {
    let mut listing = format!("{} {}\n", manifest.path, manifest.sha256);
    for f in files {
        listing.push_str(&format!("{} {}\n", f.path, f.sha256));
    }
    let mut id = sha256_hex(listing.as_bytes());
    id.truncate(12);
    id
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `path` is a safe relative path to write under a revision's root.
pub(crate) fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_counted_from_the_start() {
        assert_eq!(leading_parents(Path::new("a/b.wasm")), 0);
        assert_eq!(leading_parents(Path::new("../shop/x.wasm")), 1);
        assert_eq!(leading_parents(Path::new("a/../../../x")), 2);
        assert_eq!(
            bundle_path(&["cluster".into()], Path::new("../shop/f/x.wasm")),
            "shop/f/x.wasm"
        );
        assert_eq!(bundle_path(&[], Path::new("f/./x.wasm")), "f/x.wasm");
    }

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(is_safe_path("shop/f/x.wasm"));
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a/"] {
            assert!(!is_safe_path(bad), "{bad}");
        }
    }
}
