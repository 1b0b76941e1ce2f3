//! The manifest each cell's `septa node` applies: the application's `septa.toml` with its
//! `[cluster]` and `[node.*]` tables replaced by one node per cell, so the nodes of the export
//! host exactly their cell's functions and endpoints. It is checked by parsing it again.

use std::fmt::Write as _;

use septa_manifest::Selector;
use septa_policy::Policy;

use super::names::node_name;
use crate::truth::Cells;

/// The node manifest, or why it could not be made.
pub(crate) fn node_manifest(
    policy: &Policy,
    source: &str,
    cells: &Cells,
) -> Result<String, String> {
    let mut text = without_placement(source);
    let manifest = policy.manifest();
    let trust_domain = manifest.cluster.as_ref().map_or_else(
        || format!("{}.septa", manifest.application),
        |c| c.trust_domain.as_str().to_owned(),
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = writeln!(
        text,
        "\n# Written by `septa export kubernetes`: one node per cell.\n[cluster]\ntrust_domain = \"{trust_domain}\""
    );
    for (_, cell) in cells.iter() {
        let hosts: Vec<String> = cell
            .functions
            .iter()
            .map(|&f| {
                let spec = &policy.function(f).spec;
                let selector = if spec.is_endpoint() {
                    Selector::Endpoint(spec.name.clone())
                } else {
                    Selector::Function(spec.name.clone())
                };
                format!("\"{selector}\"")
            })
            .collect();
        let _ = writeln!(
            text,
            "\n[node.{}]\nhosts = [{}]",
            node_name(cell),
            hosts.join(", ")
        );
    }
    septa_manifest::parse(&manifest.file, &text)
        .map_err(|e| format!("the node manifest does not load: {e}"))?;
    Ok(text)
}

/// `source` without its `[cluster]` and `[node.*]` tables (a table runs to the next header).
fn without_placement(source: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or_default().trim();
            skipping = name == "cluster" || name.starts_with("node.");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
