//! Function-to-function and function-to-endpoint flows: the allow rules compiled into the mesh
//! index, and [`Policy::decide_mesh`], the one decision of every mesh and endpoint call.

use septa_manifest::{Manifest, Methods, Name, Paths, Selector};

use crate::decision::{Decision, Identity, RuleId};
use crate::engine::{CompileError, Policy, pattern};
use crate::functions::{FunctionId, FunctionInfo};
use crate::mesh_index::{IndexedRule, MeshIndex};
use crate::path::PathPattern;
use crate::reason::Reason;
use crate::selection::makes_calls;

/// One allow rule connecting two functions, as the mesh index holds it.
#[derive(Clone, Copy, Debug)]
pub struct MeshEdge<'p> {
    /// The calling function.
    pub from: FunctionId,
    /// The called function.
    pub to: FunctionId,
    /// The rule.
    pub rule: &'p Name,
    /// The methods it admits.
    pub methods: &'p Methods,
    /// The paths it admits; `None` admits any.
    pub paths: Option<&'p [PathPattern]>,
}

/// An allow rule as decisions read it.
#[derive(Clone, Debug)]
pub(crate) struct CompiledAllow {
    pub(crate) id: Name,
    pub(crate) methods: Methods,
    /// `None` admits any path.
    pub(crate) paths: Option<Vec<PathPattern>>,
}

/// A function as a mesh refusal names it.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// [`FunctionInfo::identity`], as refusals name it.
    identity: Identity,
    /// [`FunctionInfo::audit`].
    audit: bool,
    /// Whether it may be the source of a flow at all (an endpoint never is).
    calls: bool,
}

/// The allow rules, the mesh index over them, and what a refusal reads of each function.
#[derive(Debug)]
pub(crate) struct CompiledMesh {
    pub(crate) allows: Vec<CompiledAllow>,
    /// Allow rules by (source, destination selector), in file order: a decision is a few
    /// independent lookups, however many rules there are.
    pub(crate) index: MeshIndex,
    /// Per function, what a mesh refusal reads of it, apart from the larger [`FunctionInfo`].
    pub(crate) callers: Vec<Caller>,
}

/// Compiles the allow rules of `manifest` for `functions`, described by `describing`.
pub(crate) fn compile_mesh(
    manifest: &Manifest,
    functions: &[FunctionInfo],
    describing: &[Vec<Selector>],
    errors: &mut Vec<CompileError>,
) -> CompiledMesh {
    let allows: Vec<CompiledAllow> = manifest
        .allows
        .iter()
        .map(|rule| CompiledAllow {
            id: rule.id.clone(),
            methods: rule.methods.clone(),
            paths: match &rule.paths {
                Paths::Any => None,
                Paths::Only(list) => Some(list.iter().filter_map(|p| pattern(p, errors)).collect()),
            },
        })
        .collect();
    let indexed: Vec<IndexedRule<'_>> = manifest
        .allows
        .iter()
        .zip(&allows)
        .map(|(rule, compiled)| IndexedRule {
            id: &rule.id,
            from: &rule.from,
            to: &rule.to,
            methods: &rule.methods,
            paths: compiled.paths.as_deref(),
        })
        .collect();
    let index = MeshIndex::new(functions, describing, &indexed);
    drop(indexed);
    let callers = functions
        .iter()
        .map(|f| Caller {
            identity: Identity::new(f.spec.name.clone(), f.spec.is_endpoint()),
            audit: f.audit,
            calls: makes_calls(&f.spec),
        })
        .collect();
    CompiledMesh {
        allows,
        index,
        callers,
    }
}

impl Policy {
    /// The function a mesh call to `NAME.internal` reaches, or the refusal for a name that is no
    /// function of this application (refused in every mode).
    pub fn mesh_destination(&self, name: &str) -> Result<FunctionId, Decision> {
        self.function_id(name).ok_or_else(|| {
            Decision::refuse(
                Reason::UnknownDestination(format!("{name}.internal")),
                false,
            )
        })
    }

    /// Decides a call from function `from` to function `to` with `method` on normalized `path`.
    ///
    /// Deny by default: a rule must select the source in `from`, the destination in `to`, and
    /// admit the method and the path. Audit mode on either side turns a refusal into `audit`.
    pub fn decide_mesh(
        &self,
        from: FunctionId,
        to: FunctionId,
        method: &str,
        path: &str,
    ) -> Decision {
        let mesh = &self.mesh;
        let (first, connected) = mesh
            .index
            .first_admitting(from.index(), to.index(), method, path);
        if let Some(rule) = first {
            return Decision::allow(RuleId::Allow(rule.clone()));
        }
        let (source, dest) = (&mesh.callers[from.index()], &mesh.callers[to.index()]);
        // Audit mode never lets an endpoint be the source of a flow: it makes no calls.
        let audit = source.calls && (source.audit || dest.audit);
        if !connected {
            return Decision::refuse(
                Reason::NoRule {
                    from: source.identity.clone(),
                    to: dest.identity.clone(),
                },
                audit,
            );
        }
        // Refused: say which rules came nearest.
        let (method_ok, nearest) = mesh.index.nearest(from.index(), to.index(), method);
        let reason = if method_ok {
            Reason::PathNotAllowed {
                path: path.to_owned(),
                nearest,
            }
        } else {
            Reason::MethodNotAllowed {
                method: method.to_owned(),
                nearest,
            }
        };
        Decision::refuse(reason, audit)
    }

    /// Every (source, destination, allow rule) the mesh index holds, in source, destination and
    /// file order: what auditors build their graph from, so they read the rules exactly as
    /// [`Policy::decide_mesh`] does.
    pub fn mesh_edges(&self) -> Vec<MeshEdge<'_>> {
        let mut edges = Vec::new();
        let count = self.functions.len() as u32;
        for from in (0..count).map(FunctionId) {
            for to in (0..count).map(FunctionId) {
                for i in self.mesh.index.connecting(from.index(), to.index()) {
                    let rule = &self.mesh.allows[i as usize];
                    edges.push(MeshEdge {
                        from,
                        to,
                        rule: &rule.id,
                        methods: &rule.methods,
                        paths: rule.paths.as_deref(),
                    });
                }
            }
        }
        edges
    }

    /// What the mesh index holds on the heap, in bytes: it grows with the rules and with the
    /// distinct combinations of wide `from` selectors, not with the functions a selector covers.
    pub fn mesh_index_bytes(&self) -> usize {
        self.mesh.index.heap_bytes()
    }
}
