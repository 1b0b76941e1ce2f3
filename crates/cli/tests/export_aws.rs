//! `septa export aws` as a user runs it: the shop checked with exit 0, OUT written whole and
//! byte-identical across runs, and an error that names what was wrong and where, leaving OUT as
//! it was.

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
fn exports_and_checks_the_shop_byte_identically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("aws");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("stale.yaml"), "old").unwrap();
    let run = || {
        let o = septa(&[
            "export",
            "aws",
            &shop(),
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
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("f.wasm"), b"").unwrap();
    let long = "f".repeat(61);
    std::fs::write(
        app.join("septa.toml"),
        format!("septa_manifest_version = 1\n[application]\nname = \"app\"\n[segment.edge]\nsubnets = {{ web = \"public\" }}\n[function.{long}]\nsource = \"f.wasm\"\nplacement = \"edge/web\"\n"),
    )
    .unwrap();
    let out = dir.path().join("aws");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("kept.yaml"), "old").unwrap();
    let o = septa(&[
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
