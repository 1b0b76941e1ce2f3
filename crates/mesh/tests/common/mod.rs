//! What the mesh's integration tests share.

#![allow(clippy::unwrap_used)]

use septa_policy::Policy;

/// A policy with nothing in it but the operator ceiling, relaxed for `relax`.
pub fn ceiling_policy(relax: &[&str]) -> Policy {
    let relax: Vec<String> = relax.iter().map(|r| format!("\"{r}\"")).collect();
    let text = format!(
        "septa_manifest_version = 1\n[application]\nname = \"t\"\n[ceiling]\nrelax = [{}]\n",
        relax.join(", ")
    );
    let manifest = septa_manifest::parse(std::path::Path::new("septa.toml"), &text).unwrap();
    Policy::compile(manifest).unwrap()
}
