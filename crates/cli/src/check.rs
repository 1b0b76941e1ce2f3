//! `septa check`: load and compile, report every problem, start nothing.

use std::path::Path;
use std::process::ExitCode;

use septa_manifest::{Diagnostic, Diagnostics};
use septa_policy::Policy;

/// Loads and compiles the application at `dir`: the policy, or every problem found.
pub(crate) fn load_policy(dir: &Path) -> Result<Policy, Diagnostics> {
    let manifest = septa_manifest::load(dir)?;
    let file = manifest.file.clone();
    Policy::compile(manifest).map_err(|errors| Diagnostics {
        file,
        items: errors
            .into_iter()
            .map(|e| Diagnostic {
                location: e.location,
                message: e.message,
                help: None,
            })
            .collect(),
    })
}

pub(crate) fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    match load_policy(dir) {
        Ok(policy) => {
            let m = policy.manifest();
            println!(
                "{}: ok: application `{}`: {} segments, {} functions, {} routes, {} allow rules, {} egress rules",
                m.file.display(),
                m.application,
                m.segments.len(),
                m.functions.len(),
                m.routes.len(),
                m.allows.len(),
                m.egress.len(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            let n = diagnostics.items.len();
            eprintln!(
                "{}: {n} error{}",
                diagnostics.file.display(),
                if n == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
