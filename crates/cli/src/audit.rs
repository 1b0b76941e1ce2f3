//! `septa audit` and `septa query`: answers about the compiled policy before anything runs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use septa_audit::{Answer, Cluster, Graph, HopsText, Observed, Severity};
use septa_manifest::Selector;

use crate::check::load_policy;

/// Output formats of `septa audit`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Format {
    /// A table for people.
    Table,
    /// JSON for tools.
    Json,
    /// A self-contained HTML report with a drawing of the segments and the allowed flows.
    Html,
    /// SARIF 2.1.0 for code-scanning tools, pointing into `septa.toml`.
    Sarif,
}

/// The compiled policy of `dir`, or `None` after printing why it does not load.
fn load_or_report(dir: &Path) -> Option<septa_policy::Policy> {
    match load_policy(dir) {
        Ok(policy) => Some(policy),
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            None
        }
    }
}

pub(crate) fn run_audit(
    dir: &Path,
    format: Format,
    fail_on: Option<&str>,
    pack: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let Some(pack) = pack {
        return run_pack(dir, format, pack);
    }
    let fail_on = match fail_on {
        None => None,
        Some(s) => match Severity::parse(s) {
            Some(sev) => Some(sev),
            None => bail!(
                "unknown severity `{s}`; expected `info`, `low`, `medium`, `high` or `critical`"
            ),
        },
    };
    let Some(policy) = load_or_report(dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let graph = Graph::build(&policy);
    let findings = septa_audit::audit(&policy, &graph);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&findings)?),
        Format::Html => print!("{}", septa_audit::render_html(&policy, &graph, &findings)),
        Format::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&septa_audit::render_sarif(&policy, &findings))?
        ),
        Format::Table => {
            if let Some(cluster) = Cluster::of(&policy) {
                print_placement(&policy, cluster);
            }
            // The placement section above says what these findings say.
            let placement = ["node-placement", "cross-node-flow"];
            for f in findings.iter().filter(|f| !placement.contains(&f.kind)) {
                let at = f
                    .location
                    .as_deref()
                    .map(|l| format!("  ({l})"))
                    .unwrap_or_default();
                println!(
                    "{:<8} {:<22} {}{at}",
                    f.severity.as_str().to_uppercase(),
                    f.kind,
                    f.message
                );
            }
            let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
            let above = findings
                .iter()
                .filter(|f| placement.contains(&f.kind))
                .count();
            let above = match above {
                0 => String::new(),
                n => format!(" ({n} of them the placement above)"),
            };
            println!(
                "{} findings: {} critical, {} high, {} medium, {} low, {} info{above}",
                findings.len(),
                count(Severity::Critical),
                count(Severity::High),
                count(Severity::Medium),
                count(Severity::Low),
                count(Severity::Info)
            );
        }
    }
    let failed = fail_on.is_some_and(|threshold| findings.iter().any(|f| f.severity >= threshold));
    // The process ends here: freeing a large policy and graph piece by piece would take longer
    // than auditing them did.
    std::mem::forget((graph, findings));
    std::mem::forget(policy);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn run_query(
    dir: &Path,
    from: &str,
    to: &str,
    method: Option<&str>,
    path: Option<&str>,
    direct: bool,
) -> anyhow::Result<ExitCode> {
    let from = Selector::parse(from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = Selector::parse(to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let Some(policy) = load_or_report(dir) else {
        return Ok(ExitCode::from(2));
    };
    let graph = Graph::build(&policy);
    if graph.select(&from).is_empty() {
        bail!("--from `{from}` selects nothing in this application");
    }
    if graph.select(&to).is_empty() {
        bail!("--to `{to}` selects nothing in this application");
    }
    let (answer, on_nodes) =
        septa_audit::query_on_nodes(&policy, &graph, &from, &to, method, path, direct);
    let code = match answer {
        Answer::Reachable(how) => {
            println!("reachable: {how}");
            ExitCode::SUCCESS
        }
        Answer::Unreachable(why) => {
            println!("not reachable: {why}");
            ExitCode::FAILURE
        }
    };
    for line in on_nodes {
        println!("  {line}");
    }
    Ok(code)
}

/// The placement section of the table: the trust domain, what each node runs, and each route
/// and allow rule whose flows go between nodes.
fn print_placement(policy: &septa_policy::Policy, cluster: Cluster<'_>) {
    println!("placement: trust domain `{}`", cluster.trust_domain());
    let width = cluster.nodes().map(str::len).max().unwrap_or(0);
    for node in cluster.nodes() {
        let hosted: Vec<&str> = cluster
            .hosted_by(node)
            .into_iter()
            .map(|f| policy.function(f).identity.as_str())
            .collect();
        let hosted = if hosted.is_empty() {
            "nothing".to_owned()
        } else {
            hosted.join(", ")
        };
        println!("  node {node:<width$}  runs {hosted}");
    }
    let crossings = cluster.crossings();
    if crossings.is_empty() {
        println!("flows between nodes: none; every flow stays on the node that starts it");
    } else {
        println!("flows between nodes (the receiving node decides each again):");
    }
    let rows: Vec<(String, String, String)> = crossings
        .iter()
        .map(|c| {
            let hops = HopsText(&c.hops).to_string();
            (c.opener.to_string(), format!("{} → {}", c.from, c.to), hops)
        })
        .collect();
    let opener_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let flow_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (opener, flow, hops) in &rows {
        println!("  {opener:<opener_width$}  {flow:<flow_width$}  over mTLS: {hops}");
    }
    println!();
}

pub(crate) fn run_diff(old: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let (Some(old), Some(new)) = (load_or_report(old), load_or_report(new)) else {
        return Ok(ExitCode::from(2));
    };
    let diff = septa_audit::diff(&old, &new);
    for flow in &diff.allowed {
        println!("+ allowed  {flow}");
    }
    for flow in &diff.denied {
        println!("- allowed  {flow}");
    }
    for finding in &diff.new_findings {
        println!("+ finding  {finding}");
    }
    for finding in &diff.gone_findings {
        println!("- finding  {finding}");
    }
    let state = |s: Option<bool>| match s {
        None => "absent",
        Some(true) => "holds",
        Some(false) => "violated",
    };
    for (id, before, after) in &diff.invariants {
        println!("~ invariant `{id}`: {} → {}", state(*before), state(*after));
    }
    if diff.is_empty() {
        println!("no difference in flows, findings or invariants");
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::FAILURE)
}

pub(crate) fn run_suggest(dir: &Path, flow_log: &Path) -> anyhow::Result<ExitCode> {
    let Some(policy) = load_or_report(dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let records = septa_flows::read_records(flow_log)?;
    let function = |identity: &str| identity.strip_prefix("function:").map(str::to_owned);
    let mut observed = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.verdict == septa_flows::Verdict::Audit)
    {
        let Some(from) = function(&r.src) else {
            continue;
        };
        match r.kind {
            septa_flows::FlowKind::Mesh => {
                let (Some(to), Some(method), Some(path)) = (function(&r.dst), &r.method, &r.path)
                else {
                    continue;
                };
                observed.push(Observed::Mesh {
                    from,
                    to,
                    method: method.clone(),
                    path: path.clone(),
                });
            }
            septa_flows::FlowKind::Egress => observed.push(Observed::Egress {
                from,
                target: r.dst.clone(),
            }),
            _ => {}
        }
    }
    if observed.is_empty() {
        println!(
            "# nothing to suggest: `{}` has no audit records",
            flow_log.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let suggestion = septa_audit::suggest(&policy, &observed);
    for skipped in &suggestion.skipped {
        eprintln!("septa suggest: skipped {skipped}");
    }
    // Check the suggestion the way it will be used: appended to the manifest, compiled, and
    // deciding every observed flow.
    let manifest = policy.manifest();
    let text = std::fs::read_to_string(&manifest.file)?;
    let patched = format!("{text}\n{}", suggestion.toml);
    let patched_policy = septa_manifest::parse(&manifest.file, &patched)
        .map_err(|d| anyhow::anyhow!("the suggested rules do not load:\n{d}"))
        .and_then(|m| {
            septa_policy::Policy::compile(m)
                .map_err(|e| anyhow::anyhow!("the suggested rules do not compile: {e:?}"))
        })?;
    let missing = septa_audit::not_allowed(&patched_policy, &observed);
    if !missing.is_empty() {
        bail!(
            "the suggested rules would still not allow: {}",
            missing.join("; ")
        );
    }
    println!(
        "# suggested by `septa suggest` from {} audit records in `{}`: {} rules, as narrow as what was observed",
        observed.len(),
        flow_log.display(),
        suggestion.rules
    );
    print!("{}", suggestion.toml);
    Ok(ExitCode::SUCCESS)
}

/// A compliance pack: each requirement passed or failed, with its evidence. Exits 1 on any
/// failed requirement.
fn run_pack(dir: &Path, format: Format, pack: &str) -> anyhow::Result<ExitCode> {
    if pack != "pci" {
        bail!("unknown compliance pack `{pack}`; the packs are `pci`");
    }
    let Some(policy) = load_or_report(dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let graph = Graph::build(&policy);
    let checks = septa_audit::pci(&policy, &graph);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&checks)?),
        Format::Sarif => {
            bail!("`--pack` reports pass or fail per requirement; use `--format table` or `json`")
        }
        Format::Table | Format::Html => {
            println!(
                "PCI DSS segmentation checks for application `{}` ({})",
                policy.manifest().application,
                policy.manifest().file.display()
            );
            for check in &checks {
                println!(
                    "{} {}: {}",
                    if check.passed { "PASS" } else { "FAIL" },
                    check.id,
                    check.title
                );
                for line in &check.evidence {
                    println!("       {line}");
                }
            }
        }
    }
    Ok(if checks.iter().all(|c| c.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
