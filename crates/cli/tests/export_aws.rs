//! `septa export aws` as a user runs it: the shop checked with exit 0, OUT written whole and
//! byte-identical across runs, and an error that names what was wrong and where, leaving OUT as
//! it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::export::{app, existing_out};
use common::{repo, septa_output};

#[test]
fn exports_and_checks_the_shop_byte_identically() {
    let dir = tempfile::tempdir().unwrap();
    let out = existing_out(dir.path(), "aws", "stale.yaml");
    let shop = repo().join("examples/shop");
    let run = || {
        let o = septa_output(&[
            "export",
            "aws",
            shop.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--code-bucket",
            "septa-code",
            "--check",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(stdout.contains("0 without a reason code"), "{stdout}");
        assert!(!stdout.contains("not checked"), "{stdout}");
        std::fs::read_to_string(out.join("template.yaml")).unwrap()
    };
    let first = run();
    assert!(!out.join("stale.yaml").exists(), "OUT is replaced whole");
    assert!(first.contains("S3Bucket: septa-code"), "{first}");
    assert!(out.join("export-report.md").is_file() && out.join("export-report.json").is_file());
    let report = std::fs::read_to_string(out.join("export-report.md")).unwrap();
    assert!(report.contains("| edge/storefront | payments/ledger | denied | denied |"));
    assert_eq!(first, run(), "two runs write the same bytes");
    // Nothing is left beside OUT.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_lambda_name_aws_refuses_is_reported_where_it_is_declared_and_out_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let long = "f".repeat(61);
    let app = app(
        dir.path(),
        &format!(
            "septa_manifest_version = 1\n[application]\nname = \"app\"\n[segment.edge]\nsubnets = {{ web = \"public\" }}\n[function.{long}]\nsource = \"f.wasm\"\nplacement = \"edge/web\"\n"
        ),
    );
    let out = existing_out(dir.path(), "aws", "kept.yaml");
    let o = septa_output(&[
        "export",
        "aws",
        app.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("septa.toml:6:"), "{stderr}");
    assert!(stderr.contains(&format!("`app-{long}`")), "{stderr}");
    assert!(stderr.contains("longer than 64 characters"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("kept.yaml")).unwrap(),
        "old"
    );
}
