//! The on-disk cache of compiled components, so a second start does not recompile.
//!
//! An entry is keyed by the SHA-256 of the component's bytes and by the engine's compatibility
//! hash (wasmtime version and settings), so a changed component or a changed engine never loads
//! stale code. Entries are written to a temporary file and renamed into place, so a crash never
//! leaves a half-written entry that a later start would load.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a component came from the cache or was compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a compiled entry.
    Hit,
    /// Compiled it (and stored it, if the cache is writable).
    Miss,
}

/// A directory of compiled components.
#[derive(Clone, Debug)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache in `dir` (created, owner-only, if absent).
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir: Some(dir.to_owned()),
        })
    }

    /// No cache: every load compiles.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// Loads the component in `bytes`, from the cache when it holds a matching entry.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::from_binary(engine, bytes)?, CacheOutcome::Miss));
        };
        let entry = dir.join(entry_name(engine, bytes));
        if entry.is_file() {
            match deserialize(engine, &entry) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), error = %e, "ignoring unreadable cache entry");
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) = write_atomically(dir, &entry, &compiled) {
            tracing::warn!(entry = %entry.display(), error = %e, "cannot store compiled component");
        }
        Ok((deserialize_bytes(engine, &compiled)?, CacheOutcome::Miss))
    }
}

fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut name = String::with_capacity(90);
    for b in digest.as_ref() {
        name.push_str(&format!("{b:02x}"));
    }
    name.push_str(&format!("-{:016x}.cwasm", hasher.finish()));
    name
}

#[expect(
    unsafe_code,
    reason = "cache entries are native code septa compiled itself, written by rename into an owner-only directory; the engine checks their compatibility hash"
)]
fn deserialize(engine: &Engine, entry: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see the reason above; the file is one `precompile_component` produced.
    unsafe { Component::deserialize_file(engine, entry) }
}

#[expect(
    unsafe_code,
    reason = "the bytes come straight from `Engine::precompile_component` in this process"
)]
fn deserialize_bytes(engine: &Engine, compiled: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: produced by this engine a moment ago.
    unsafe { Component::deserialize(engine, compiled) }
}

fn write_atomically(dir: &Path, entry: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, entry).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}
