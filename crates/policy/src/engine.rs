//! The compiled policy: what [`Policy::compile`] builds from a validated manifest, and what
//! every enforcer, the auditor and the exporters read.
//!
//! Compiling turns the manifest into indexes — routes into a path trie (`routes`), allow rules
//! into a table keyed by (source, destination selector) (`mesh`), egress rules into per-function
//! host maps (`egress`) — so a decision looks up a handful of candidate rules instead of
//! scanning them all. Each flow kind has one decision: [`Policy::decide_ingress`],
//! [`Policy::decide_mesh`], [`Policy::decide_egress`] and [`Policy::decide_dialled_address`];
//! nothing else decides.

use std::collections::HashMap;
use std::fmt;

use septa_manifest::{ApiKeySet, GatewaySpec, JwtIssuer, Location, Manifest, PathText, Selector};

use crate::ceiling::Ceiling;
use crate::egress::{EgressIndex, compile_egress};
use crate::functions::{FunctionId, FunctionInfo, compile_functions, describing_selectors};
use crate::mesh::{CompiledMesh, compile_mesh};
use crate::path::PathPattern;
use crate::placement::Placement;
use crate::routes::{CompiledRoute, RouteTable, compile_routes};
use crate::rules::RuleTable;
use crate::selection::Selection;

/// A problem found while compiling a manifest that loading could not see (path patterns,
/// overlapping routes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Where in the manifest.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The compiled segmentation policy. Immutable; a reload compiles a new one and swaps it whole.
#[derive(Debug)]
pub struct Policy {
    manifest: Manifest,
    pub(crate) functions: Vec<FunctionInfo>,
    by_name: HashMap<String, FunctionId>,
    pub(crate) routes: RouteTable,
    /// `[gateway]`: trusted proxies, the client-address header, the gateway-wide rate limit.
    pub(crate) gateway: GatewaySpec,
    issuers: Vec<JwtIssuer>,
    api_key_sets: Vec<ApiKeySet>,
    pub(crate) mesh: CompiledMesh,
    pub(crate) egress: Vec<EgressIndex>,
    /// What each selector selects, for the indexes and for everyone who reads the rules.
    pub(crate) selection: Selection,
    /// The allow and egress rules as the auditor reads them, and where each rule is declared.
    pub(crate) rules: RuleTable,
    pub(crate) ceiling: Ceiling,
    /// Which node hosts what, when the application spans several.
    pub(crate) placement: Option<Placement>,
    /// What names this policy in flow records; empty unless the loader set it.
    revision: String,
}

impl Policy {
    /// Compiles a validated manifest, or lists every problem loading could not see.
    pub fn compile(manifest: Manifest) -> Result<Self, Vec<CompileError>> {
        let mut errors = Vec::new();
        let functions = compile_functions(&manifest);
        let by_name: HashMap<String, FunctionId> = functions
            .iter()
            .map(|f| (f.spec.name.as_str().to_owned(), f.id))
            .collect();
        let routes = compile_routes(&manifest, |name| by_name.get(name).copied(), &mut errors);
        // The selectors that describe each function, so rules find their functions by lookup
        // instead of testing every function.
        let describing: Vec<Vec<Selector>> = functions
            .iter()
            .map(|f| describing_selectors(&manifest, &f.spec))
            .collect();
        let mesh = compile_mesh(&manifest, &functions, &describing, &mut errors);
        let selection = Selection::new(&functions, &describing);
        let egress = compile_egress(&manifest, &selection, functions.len());
        let rules = RuleTable::new(&manifest, &selection);
        let placement = Placement::compile(&manifest, &functions);
        let ceiling = Ceiling::new(
            manifest.ceiling.block.clone(),
            manifest.ceiling.relax.clone(),
        );
        let Some(routes) = routes.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        Ok(Self {
            gateway: manifest.gateway.clone(),
            issuers: manifest.jwt.values().cloned().collect(),
            api_key_sets: manifest.api_keys.values().cloned().collect(),
            manifest,
            functions,
            by_name,
            routes,
            mesh,
            egress,
            selection,
            rules,
            ceiling,
            placement,
            revision: String::new(),
        })
    }

    /// Names this policy as `revision` (`septa up` uses the first 12 hex digits of the
    /// manifest's SHA-256), so every flow it decides says which policy that was.
    #[must_use]
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }

    /// What names this policy in flow records; empty unless set with
    /// [`Policy::with_revision`].
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The manifest this policy was compiled from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Every function, indexed by [`FunctionId::index`].
    pub fn functions(&self) -> &[FunctionInfo] {
        &self.functions
    }

    /// The function called `name`, as `NAME.internal` names it.
    pub fn function_id(&self, name: &str) -> Option<FunctionId> {
        self.by_name.get(name).copied()
    }

    /// The function with id `id`.
    pub fn function(&self, id: FunctionId) -> &FunctionInfo {
        &self.functions[id.index()]
    }

    /// The routes, in path order.
    pub fn routes(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes.routes().flat_map(|(_, r)| r.iter())
    }

    /// The routes that share `route`'s path pattern, `route` among them: what a `405` lists in
    /// its `Allow` header.
    pub fn routes_of_pattern<'p>(
        &'p self,
        route: &'p CompiledRoute,
    ) -> impl Iterator<Item = &'p CompiledRoute> {
        self.routes().filter(move |r| r.pattern == route.pattern)
    }

    /// `[gateway]`: trusted proxies, the client-address header and the gateway-wide rate
    /// limit.
    pub fn gateway(&self) -> &GatewaySpec {
        &self.gateway
    }

    /// Every `[jwt.NAME]` issuer, in name order.
    pub fn jwt_issuers(&self) -> &[JwtIssuer] {
        &self.issuers
    }

    /// Every `[api_keys.NAME]` set, in name order.
    pub fn api_key_sets(&self) -> &[ApiKeySet] {
        &self.api_key_sets
    }

    /// The operator ceiling.
    pub fn ceiling(&self) -> &Ceiling {
        &self.ceiling
    }
}

/// The pattern `p` declares, or an error naming where it is declared.
pub(crate) fn pattern(p: &PathText, errors: &mut Vec<CompileError>) -> Option<PathPattern> {
    match PathPattern::parse(&p.text) {
        Ok(pattern) => Some(pattern),
        Err(e) => {
            errors.push(CompileError {
                location: Some(p.location),
                message: format!("path pattern `{}`: {e}", p.text),
            });
            None
        }
    }
}
