//! `septa export kubernetes` as a user runs it: OUT written whole, replaced whole, never left
//! half-written by an error, and an error that names what was wrong and where.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn septa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(args)
        .output()
        .unwrap()
}

fn shop() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/shop")
        .display()
        .to_string()
}

#[test]
fn exports_the_shop_and_replaces_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k8s");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("stale.yaml"), "old").unwrap();
    let o = septa(&[
        "export",
        "kubernetes",
        &shop(),
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
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("f.wasm"), b"").unwrap();
    std::fs::write(
        app.join("septa.toml"),
        "septa_manifest_version = 1\n[application]\nname = \"a\"\n[segment.default]\nsubnets = { web = \"public\" }\n[function.f]\nsource = \"f.wasm\"\nplacement = \"default/web\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("kept.yaml"), "old").unwrap();
    let o = septa(&[
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
