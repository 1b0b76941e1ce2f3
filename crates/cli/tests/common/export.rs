//! What the `septa export` tests share: the directories an export is pointed at, made the way
//! each test needs to see that OUT is replaced whole on success and left as it was on an error.

use std::path::{Path, PathBuf};

/// `OUT` at `parent/name`, already holding `file` (its text `old`): what a run must replace whole,
/// or leave as it was when it fails.
pub fn existing_out(parent: &Path, name: &str, file: &str) -> PathBuf {
    let out = parent.join(name);
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(file), "old").unwrap();
    out
}

/// An application at `parent/app` whose `septa.toml` is `manifest`, with an empty `f.wasm` for
/// its functions' `source` to name: an export reads the manifest, not the component.
pub fn app(parent: &Path, manifest: &str) -> PathBuf {
    let app = parent.join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("f.wasm"), b"").unwrap();
    std::fs::write(app.join("septa.toml"), manifest).unwrap();
    app
}
