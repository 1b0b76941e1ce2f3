//! Functions built by other toolchains than Rust's run as any function does: a Python one
//! (componentize-py) and a JavaScript one (componentize-js, StarlingMonkey), from
//! `tests/foreign/`, built by `scripts/build-foreign-components` into the directory
//! `SEPTA_FOREIGN_COMPONENTS` names. `septa check` passes them; the gateway routes to them; their
//! calls are decided in the mesh (an allowed one answered, a denied one 403) and their egress
//! refused; what they print reaches septa's log in their request's trace; a JavaScript exception
//! is the function's own 500, its message in the log, never in the answer.
//!
//! Without `SEPTA_FOREIGN_COMPONENTS` the test says so and passes, unless `SEPTA_REQUIRE_TOOLS=1`
//! (as `.ci/run` sets, having built them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{Septa, encode, log_lines, septa};
use serde_json::Value;

/// The directory holding `python.wasm` and `javascript.wasm`, or `None` to skip.
fn foreign_components() -> Option<PathBuf> {
    match std::env::var_os("SEPTA_FOREIGN_COMPONENTS") {
        Some(dir) => Some(PathBuf::from(dir)),
        None if std::env::var_os("SEPTA_REQUIRE_TOOLS").is_some_and(|v| v == "1") => {
            panic!(
                "SEPTA_FOREIGN_COMPONENTS is not set (scripts/build-foreign-components builds them)"
            )
        }
        None => {
            eprintln!(
                "skipped: SEPTA_FOREIGN_COMPONENTS is not set (scripts/build-foreign-components builds them)"
            );
            None
        }
    }
}

/// `python` and `javascript` behind routes in a public subnet, each allowed GET on `echo` and
/// nothing on `ledger` (both the test `echo` component) in a private one.
fn app(foreign: &Path) -> tempfile::TempDir {
    common::build_components();
    let dir = tempfile::tempdir().unwrap();
    let echo = common::test_component("echo");
    let mut manifest = format!(
        "septa_manifest_version = 1\n[application]\nname = \"foreign\"\n\
         [segment.edge]\nsubnets = {{ web = \"public\" }}\n\
         [segment.core]\nsubnets = {{ app = \"private\" }}\n\
         [function.echo]\nsource = {echo:?}\nplacement = \"core/app\"\n\
         [function.ledger]\nsource = {echo:?}\nplacement = \"core/app\"\n"
    );
    for (name, route) in [("python", "py"), ("javascript", "js")] {
        let source = foreign.join(format!("{name}.wasm"));
        manifest.push_str(&format!(
            "[function.{name}]\nsource = {source:?}\nplacement = \"edge/web\"\n\
             [[route]]\npath = \"/{route}/...\"\nfunction = \"{name}\"\n\
             [[allow]]\nid = \"{name}-to-echo\"\nfrom = \"function:{name}\"\nto = \"function:echo\"\nmethods = [\"GET\"]\n"
        ));
    }
    std::fs::write(dir.path().join("septa.toml"), manifest).unwrap();
    dir
}

fn json(septa: &Septa, path: &str) -> Value {
    let answer = septa.get(path);
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

#[test]
fn python_and_javascript_functions_run_segmented_and_their_output_is_logged() {
    let Some(foreign) = foreign_components() else {
        return;
    };
    let dir = app(&foreign);
    let (ok, stdout, stderr) = septa(&["check", dir.path().to_str().unwrap()]);
    assert!(ok && stderr.is_empty(), "{stdout}{stderr}");

    let log = dir.path().join("septa.log");
    let septa = Septa::start_logging_to(dir.path(), &[], &[], &log);
    for (lang, route) in [("python", "py"), ("javascript", "js")] {
        let hello = json(&septa, &format!("/{route}/hello"));
        assert_eq!(hello["lang"], lang, "{hello}");
        assert_eq!(hello["path"], format!("/{route}/hello"));
        assert_eq!(hello["caller"], "gateway");

        let call = |to: &str| json(&septa, &format!("/{route}/call?to={}", encode(to)));
        let allowed = call("http://echo.internal/hi");
        assert_eq!(allowed["status"], 200, "{lang}: {allowed}");
        let denied = call("http://ledger.internal/hi");
        assert_eq!(denied["status"], 403, "{lang}: {denied}");
        let egress = call("http://example.com/");
        assert!(
            egress["status"].is_null() && egress["error"].is_string(),
            "{lang}: {egress}"
        );
    }
    let thrown = septa.get("/js/throw");
    assert_eq!(thrown.status, 500);
    assert!(!thrown.body.contains("on purpose"), "{}", thrown.body);
    let flows = septa.stop();

    let decided = |src: &str, dst: &str| {
        flows
            .iter()
            .find(|f| f["src"] == src && f["dst"] == dst)
            .unwrap_or_else(|| panic!("no flow from {src} to {dst}: {flows:#?}"))
    };
    for lang in ["python", "javascript"] {
        let source = format!("function:{lang}");
        assert_eq!(decided(&source, "function:echo")["verdict"], "allow");
        assert_eq!(
            decided(&source, "function:echo")["rule"],
            format!("{lang}-to-echo")
        );
        assert_eq!(decided(&source, "function:ledger")["verdict"], "deny");
        assert_eq!(decided(&source, "http://example.com:80")["verdict"], "deny");
    }

    let lines = log_lines(&std::fs::read_to_string(&log).unwrap());
    let logged = |function: &str, text: &str, trace: &str| {
        lines.iter().any(|l| {
            l.contains("septa::guest")
                && l.contains(&format!("function={function} "))
                && l.contains(text)
                && l.contains(&format!("trace={trace}"))
        })
    };
    let trace_of = |path: &str| {
        let record = flows.iter().find(|f| f["path"] == path).unwrap();
        record["trace"].as_str().unwrap().to_owned()
    };
    assert!(
        logged("python", "python served /py/hello", &trace_of("/py/hello")),
        "{lines:#?}"
    );
    assert!(
        logged(
            "javascript",
            "javascript served /js/hello",
            &trace_of("/js/hello")
        ),
        "{lines:#?}"
    );
    assert!(
        logged(
            "javascript",
            "javascript threw on purpose",
            &trace_of("/js/throw")
        ),
        "{lines:#?}"
    );
}
