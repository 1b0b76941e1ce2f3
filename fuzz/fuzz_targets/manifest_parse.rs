//! `septa.toml` text → `septa_manifest::parse` → `Policy::compile`.
//!
//! Neither step may panic on any text. A refusal must be reportable: every position is 1-based
//! and the rendered diagnostics say something.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use septa_policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match septa_manifest::parse(Path::new("septa.toml"), text) {
        Ok(manifest) => {
            // Either outcome is fine; only a panic is a finding.
            let _ = Policy::compile(manifest);
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics.items {
                if let Some(location) = diagnostic.location {
                    assert!(
                        location.line >= 1 && location.col >= 1,
                        "position {location} is not 1-based in {diagnostic:?}"
                    );
                }
            }
            assert!(
                !diagnostics.to_string().is_empty(),
                "a refused manifest rendered no diagnostics: {diagnostics:?}"
            );
        }
    }
});
