//! `septa check`: load and compile, report every problem, start nothing.

use std::path::Path;
use std::process::ExitCode;

use septa_manifest::{Diagnostic, Diagnostics, Manifest};
use septa_policy::Policy;

/// Loads and compiles the application at `dir` and checks its invariants: the policy, or every
/// problem found.
pub(crate) fn load_checked_policy(dir: &Path) -> Result<Policy, Diagnostics> {
    checked(load_policy(dir)?)
}

/// `policy` if its invariants hold, or each violation with its path.
pub(crate) fn checked(policy: Policy) -> Result<Policy, Diagnostics> {
    let graph = septa_audit::Graph::build(&policy);
    let violations = septa_audit::check_invariants(&policy, &graph);
    if violations.is_empty() {
        return Ok(policy);
    }
    let items = violations
        .into_iter()
        .map(|v| {
            // An invariant's finding points at its declaration.
            Diagnostic {
                location: v.position,
                message: v.message,
                help: Some(format!(
                    "change one of the rules on the path: {}",
                    v.rules.join(", ")
                )),
            }
        })
        .collect();
    Err(Diagnostics {
        file: policy.manifest().file.clone(),
        items,
    })
}

/// Loads and compiles the application at `dir`: the policy, or every problem found.
pub(crate) fn load_policy(dir: &Path) -> Result<Policy, Diagnostics> {
    compile(septa_manifest::load(dir)?)
}

/// Compiles a loaded manifest, with compile errors as positioned diagnostics.
pub(crate) fn compile(manifest: Manifest) -> Result<Policy, Diagnostics> {
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

pub(crate) fn run(dir: &Path, instances: u32) -> anyhow::Result<ExitCode> {
    match load_checked_policy(dir).and_then(components_checked) {
        Ok(policy) => {
            if let Some(warning) = crate::pool::overcommit_warning(&policy, instances) {
                eprintln!("{}: warning: {warning}", policy.manifest().file.display());
            }
            let m = policy.manifest();
            println!(
                "{}: ok: application `{}`: {} segments, {} functions, {} endpoints, {} routes, {} allow rules, {} egress rules, {} invariants hold",
                m.file.display(),
                m.application,
                m.segments.len(),
                m.components().count(),
                m.functions.len() - m.components().count(),
                policy.routes().count(),
                policy.allow_rules().len(),
                policy.egress_rules().len(),
                m.invariants.len(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `policy` if every function's component that exists can run, as far as its bytes say
/// ([`septa_runtime::check_component`]), or each one that cannot. A component not built yet is
/// only warned about: `septa up --build` builds it.
fn components_checked(policy: Policy) -> Result<Policy, Diagnostics> {
    let manifest = policy.manifest();
    let mut items = Vec::new();
    for function in manifest.components() {
        let Some(component) = function.component() else {
            continue;
        };
        let path = component.source.display();
        let problem = match std::fs::read(&component.source) {
            Ok(bytes) => match septa_runtime::check_component(&bytes) {
                Ok(()) => continue,
                Err(problem) => problem.to_string(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let how = if component.build.is_some() {
                    "`septa up --build` builds it"
                } else {
                    "`septa up` needs it"
                };
                eprintln!(
                    "{}: warning: function `{}`: `{path}` does not exist yet; {how}",
                    manifest.file.display(),
                    function.name
                );
                continue;
            }
            Err(e) => format!("it cannot be read: {e}"),
        };
        items.push(Diagnostic {
            location: Some(function.location),
            message: format!("function `{}`: `{path}`: {problem}", function.name),
            help: None,
        });
    }
    if items.is_empty() {
        return Ok(policy);
    }
    Err(Diagnostics {
        file: manifest.file.clone(),
        items,
    })
}

/// Prints every problem and their count to stderr, as `septa check` does.
pub(crate) fn print_diagnostics(diagnostics: &Diagnostics) {
    eprintln!("{diagnostics}");
    let n = diagnostics.items.len();
    eprintln!(
        "{}: {n} error{}",
        diagnostics.file.display(),
        if n == 1 { "" } else { "s" }
    );
}
