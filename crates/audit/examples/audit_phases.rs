//! Times each phase of `septa audit` on one application, to tell where the time goes:
//! loading the manifest, compiling the policy, building the graph, the findings.
//!
//! ```sh
//! cargo run --release -p septa-audit --example audit_phases -- DIR
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: audit_phases DIR");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let manifest = match septa_manifest::load(&dir) {
        Ok(m) => m,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = start.elapsed();
    let policy = match septa_policy::Policy::compile(manifest) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let compiled = start.elapsed();
    let graph = septa_audit::Graph::build(&policy);
    let built = start.elapsed();
    let findings = septa_audit::audit(&policy, &graph);
    let audited = start.elapsed();
    println!(
        "load {:.3} s, compile {:.3} s, graph {:.3} s, findings {:.3} s ({} findings), total {:.3} s",
        loaded.as_secs_f64(),
        (compiled - loaded).as_secs_f64(),
        (built - compiled).as_secs_f64(),
        (audited - built).as_secs_f64(),
        findings.len(),
        audited.as_secs_f64()
    );
    // Like `septa audit`, leave the freeing to the end of the process.
    std::mem::forget((graph, findings));
    std::mem::forget(policy);
    ExitCode::SUCCESS
}
