//! `septa lambda --stage OUT`: the application as a Lambda zip holds it, for
//! `scripts/package-lambda` to add the bootstrap and zip.
//!
//! The files are laid out as a published revision lays them out ([`Bundle`]): the manifest and
//! every file it names, by their paths relative to a common root, so the manifest loads from
//! there unchanged wherever Lambda unpacks it. With a function named, the other functions'
//! components are left out: a Lambda function runs only its own.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use septa_cluster::Bundle;

use crate::platform::BuildError;

/// Writes the application at `file` under `out` (checked first, as `septa check` does) and
/// prints the manifest's path under `out`.
pub(crate) fn stage(file: &Path, function: Option<&str>, out: &Path) -> anyhow::Result<ExitCode> {
    let (policy, _, bytes) = match crate::platform::read_policy(file) {
        Ok(read) => read,
        Err(BuildError::Invalid(diagnostics)) => {
            eprintln!("{}", diagnostics.trim_end());
            return Ok(ExitCode::FAILURE);
        }
        Err(BuildError::Load(e)) => return Err(e),
    };
    if let Some(name) = function
        && policy
            .function_id(name)
            .is_none_or(|id| policy.function(id).spec.is_endpoint())
    {
        anyhow::bail!("`{name}` is no function of `{}`", file.display());
    }
    let bundle = Bundle::of(policy.manifest(), bytes)?;
    let runs = |name: &str| function.is_none_or(|f| f == name);
    for file in bundle.revision.needed_by(runs) {
        let bytes = bundle
            .contents
            .get(&file.sha256)
            .with_context(|| format!("the bundle lacks the bytes of `{}`", file.path))?;
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&path, bytes)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    println!("{}", bundle.revision.manifest.path);
    Ok(ExitCode::SUCCESS)
}
