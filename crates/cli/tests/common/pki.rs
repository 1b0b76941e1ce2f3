//! A certificate authority and a leaf for `127.0.0.1` made by the `openssl` CLI, for tests
//! that stand up HTTPS servers on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority (`NAME-ca.pem`) and a leaf it signed for `127.0.0.1`
/// (`NAME-leaf.pem`, `NAME-leaf.key`), made by the `openssl` CLI in `dir`.
pub fn make_pki(dir: &Path, name: &str) -> Pki {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    let (leaf, leaf_key, csr) = (
        format!("{name}-leaf.pem"),
        format!("{name}-leaf.key"),
        format!("{name}-leaf.csr"),
    );
    let subject = format!("/CN=septa test {name} ca");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &leaf_key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &args);
    let ext = dir.join(format!("{name}-leaf.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &leaf,
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
        ],
    );
    Pki {
        ca: dir.join(ca),
        leaf: dir.join(leaf),
        leaf_key: dir.join(leaf_key),
    }
}

pub struct Pki {
    pub ca: PathBuf,
    pub leaf: PathBuf,
    pub leaf_key: PathBuf,
}
