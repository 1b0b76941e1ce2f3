//! Writing an export's output directory whole or not at all: the files go into a temporary
//! directory beside it, which then replaces it by rename, so a reader never sees a half-written
//! export and a failed export leaves the old one in place.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why the output directory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output path has no parent directory to write beside it in, or no file name.
    #[error("output `{0}` must name a directory inside an existing one")]
    NoParent(PathBuf),
    /// The output exists and is not a directory.
    #[error("output `{0}` exists and is not a directory")]
    NotADirectory(PathBuf),
    /// A file name that would leave the output directory.
    #[error("file `{0}` would be written outside the output directory")]
    Escapes(String),
    /// The file system refused.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// What was being written.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Writes `files` (relative path to contents) as the directory `out`, replacing what was there.
pub fn write_atomically(out: &Path, files: &BTreeMap<String, String>) -> Result<(), WriteError> {
    let name = out
        .file_name()
        .ok_or_else(|| WriteError::NoParent(out.to_owned()))?;
    let parent = match out.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(WriteError::NoParent(out.to_owned())),
    };
    if out.exists() && !out.is_dir() {
        return Err(WriteError::NotADirectory(out.to_owned()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError::Io { path, source }
    };
    let mut staging_name = name.to_owned();
    staging_name.push(format!(".septa-export-{}", std::process::id()));
    let staging = parent.join(staging_name);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let result = fill(&staging, files);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    // A directory cannot be renamed over a non-empty one: move the old one aside first, and put
    // it back if the rename fails.
    let mut old_name = name.to_owned();
    old_name.push(format!(".septa-old-{}", std::process::id()));
    let old = parent.join(old_name);
    let had_old = out.exists();
    if had_old {
        fs::rename(out, &old).map_err(io(out))?;
    }
    if let Err(source) = fs::rename(&staging, out) {
        if had_old {
            let _ = fs::rename(&old, out);
        }
        let _ = fs::remove_dir_all(&staging);
        return Err(WriteError::Io {
            path: out.to_owned(),
            source,
        });
    }
    if had_old {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

fn fill(staging: &Path, files: &BTreeMap<String, String>) -> Result<(), WriteError> {
    fs::create_dir_all(staging).map_err(|source| WriteError::Io {
        path: staging.to_owned(),
        source,
    })?;
    for (relative, text) in files {
        let rel = Path::new(relative);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(WriteError::Escapes(relative.clone()));
        }
        let path = staging.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| WriteError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        fs::write(&path, text).map_err(|source| WriteError::Io { path, source })?;
    }
    Ok(())
}
