//! What septa can tell of a function's file from its bytes alone, before compiling it: whether it
//! is a WebAssembly component at all, whether it serves `wasi:http` requests, and whether it
//! imports anything septa does not provide. `septa check` reports these without starting
//! anything, and loading reports them in one line each rather than as what the compiler or the
//! linker would say; the linker still has the last word on every import's types.

use wasmparser::{Encoding, Parser, Payload};

/// The export a function must have: `wasi:http/incoming-handler`, at a version of 0.2.
const HANDLER: &str = "wasi:http/incoming-handler@0.2.";

/// The interfaces a function may import, each at a version of 0.2: `wasi:http/proxy` and
/// `wasi:cli/imports`, as wasmtime's WASI 0.2 host gives them (what `Host::load` links).
const PROVIDED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// Why a file cannot be a septa function, as far as its bytes say.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ComponentProblem {
    /// Not WebAssembly at all.
    #[error("it is not a WebAssembly file: it starts with {start}, not `\\0asm`")]
    NotWasm {
        /// Its first bytes, escaped.
        start: String,
    },
    /// A core module, which septa cannot run as it is.
    #[error(
        "it is a core WebAssembly module, not a component: build it for `wasm32-wasip2` (or make a component of a `wasm32-wasip1` module with `wasm-tools component new --adapt`)"
    )]
    CoreModule,
    /// Its bytes do not read as a component.
    #[error("it is not a well-formed component: {0}")]
    Malformed(String),
    /// It serves no `wasi:http` requests.
    #[error(
        "it exports no `wasi:http/incoming-handler@0.2.x`, so it cannot serve requests (it exports {exports}); septa runs `wasi:http/proxy` components, not commands with a `main`"
    )]
    NoHandler {
        /// What it exports instead, listed.
        exports: String,
    },
    /// It imports what septa does not give a function.
    #[error(
        "it imports {imports}, which septa does not provide: a function gets WASI 0.2 (`wasi:cli`, `wasi:clocks`, `wasi:filesystem`, `wasi:io`, `wasi:random`, `wasi:sockets`) and `wasi:http` 0.2"
    )]
    Unprovided {
        /// The imports septa does not provide, listed.
        imports: String,
    },
}

impl From<wasmparser::BinaryReaderError> for ComponentProblem {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        Self::Malformed(e.message().to_owned())
    }
}

/// Checks that `bytes` are a component septa can run, as far as its top-level imports and
/// exports say.
///
/// # Errors
///
/// The first problem found: not WebAssembly, a core module, malformed, no `wasi:http` handler,
/// or imports septa does not provide (all of them, listed).
pub fn check_component(bytes: &[u8]) -> Result<(), ComponentProblem> {
    if !bytes.starts_with(b"\0asm") {
        let start: String = bytes
            .iter()
            .take(4)
            .flat_map(|b| b.escape_ascii())
            .map(char::from)
            .collect();
        return Err(ComponentProblem::NotWasm {
            start: format!("`{start}`"),
        });
    }
    let mut depth = 0usize;
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(ComponentProblem::CoreModule);
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    let unprovided: Vec<&String> = imports.iter().filter(|name| !provided(name)).collect();
    if !unprovided.is_empty() {
        return Err(ComponentProblem::Unprovided {
            imports: listed(&unprovided),
        });
    }
    if !exports.iter().any(|name| name.starts_with(HANDLER)) {
        let exports: Vec<&String> = exports.iter().collect();
        return Err(ComponentProblem::NoHandler {
            exports: if exports.is_empty() {
                "nothing".to_owned()
            } else {
                listed(&exports)
            },
        });
    }
    Ok(())
}

/// Whether septa gives a function the import named `name` (`wasi:io/streams@0.2.3`).
fn provided(name: &str) -> bool {
    name.split_once('@').is_some_and(|(interface, version)| {
        version.starts_with("0.2.") && PROVIDED.contains(&interface)
    })
}

/// `` `a`, `b` and `c` ``.
fn listed(names: &[&String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_component_without_a_handler_cannot_serve() {
        assert_eq!(
            check_component(b"\0asm\x0d\0\x01\0"),
            Err(ComponentProblem::NoHandler {
                exports: "nothing".to_owned()
            })
        );
    }

    #[test]
    fn imports_are_provided_only_at_a_version_of_0_2() {
        assert!(provided("wasi:io/streams@0.2.0"));
        assert!(provided("wasi:http/types@0.2.12"));
        assert!(!provided("wasi:http/types@0.3.0-rc-2025-09-16"));
        assert!(!provided("wasi:io/streams"));
        assert!(!provided("wasi:keyvalue/store@0.2.0-draft"));
        assert!(!provided("fermyon:spin/key-value@2.0.0"));
    }

    #[test]
    fn what_is_not_a_component_is_named_for_what_it_is() {
        assert_eq!(
            check_component(b"garbage"),
            Err(ComponentProblem::NotWasm {
                start: "`garb`".to_owned()
            })
        );
        // The header of an empty core module.
        assert_eq!(
            check_component(b"\0asm\x01\0\0\0"),
            Err(ComponentProblem::CoreModule)
        );
        // A component's header cut short.
        assert!(matches!(
            check_component(b"\0asm\x0d\0\x01\0\x07"),
            Err(ComponentProblem::Malformed(_))
        ));
    }
}
