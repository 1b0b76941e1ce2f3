//! `septa export kubernetes` as a user runs it: OUT written whole, replaced whole, never left
//! half-written by an error, and an error that names what was wrong and where.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::export::{app, existing_out};
use common::{repo, septa_output};

#[test]
fn exports_the_shop_and_replaces_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = existing_out(dir.path(), "k8s", "stale.yaml");
    let shop = repo().join("examples/shop");
    let o = septa_output(&[
        "export",
        "kubernetes",
        shop.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--profile",
        "cilium",
        "--granularity",
        "function",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("0 without a reason code"), "{stdout}");
    assert!(!out.join("stale.yaml").exists(), "OUT is replaced whole");
    assert!(out.join("payments/ciliumnetworkpolicy.yaml").is_file());
    assert!(out.join("export-report.md").is_file() && out.join("export-report.json").is_file());
    // Nothing is left beside OUT.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_segment_kubernetes_reserves_is_refused_where_it_is_declared_and_out_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(
        dir.path(),
        "septa_manifest_version = 1\n[application]\nname = \"a\"\n[segment.default]\nsubnets = { web = \"public\" }\n[function.f]\nsource = \"f.wasm\"\nplacement = \"default/web\"\n",
    );
    let out = existing_out(dir.path(), "out", "kept.yaml");
    let o = septa_output(&[
        "export",
        "kubernetes",
        app.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("septa.toml:4:")
            && stderr.contains("segment `default` cannot be a Kubernetes namespace"),
        "{stderr}"
    );
    assert!(
        out.join("kept.yaml").is_file(),
        "a failed export leaves OUT as it was"
    );
}
