//! The compiled policy and the one place every flow is decided.
//!
//! [`Policy::compile`] turns a validated manifest into indexes: routes into a path trie, allow
//! rules into a table keyed by (source, destination selector) (see `mesh_index`), egress rules into
//! per-function host maps. A decision then looks up a handful of candidate rules instead of
//! scanning them all. The gateway calls [`Policy::route`], the mesh [`Policy::decide_mesh`],
//! egress [`Policy::decide_egress`] and [`Policy::check_address`]; nothing else decides.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use septa_manifest::{
    EgressScheme, EgressTarget, Function, HostPattern, Location, Manifest, Methods, Mode, Name,
    Paths, RouteAuth, Selector, SubnetKind,
};

use crate::ceiling::Ceiling;
use crate::decision::{Decision, Identity, Reason};
use crate::host::canonical_ip;
use crate::mesh_index::{IndexedRule, MeshIndex};
use crate::path::{Captures, PathPattern, PathRouter, RouterError};

/// A function's index in the compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId(u32);

impl FunctionId {
    /// The index, for tables sized by [`Policy::functions`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the enforcers need to know about a function.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    /// Its id in this policy.
    pub id: FunctionId,
    /// The manifest's declaration.
    pub spec: Function,
    /// `function:NAME`: the identity the host sets on its requests.
    pub identity: String,
    /// Whether denials involving it are only recorded.
    pub audit: bool,
}

/// A route as the gateway uses it.
#[derive(Clone, Debug)]
pub struct CompiledRoute {
    /// The rule id ingress flows name.
    pub id: Name,
    /// The pattern.
    pub pattern: PathPattern,
    /// Admitted methods.
    pub methods: Methods,
    /// The function it dispatches to.
    pub function: FunctionId,
    /// Who may call it; `None` admits anyone.
    pub auth: Option<RouteAuth>,
    /// The largest request body it accepts, in bytes.
    pub max_body_bytes: u64,
    /// Its rate limit, if any.
    pub rate_limit: Option<septa_manifest::RateLimit>,
    /// Client networks it admits; empty admits every address.
    pub sources: Vec<ipnet::IpNet>,
    /// `audit` lets requests its checks would refuse through, recorded as `audit`.
    pub mode: septa_manifest::Mode,
    /// How long a client has to send the whole request body.
    pub body_timeout: std::time::Duration,
}

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

/// One egress destination of one function, and the rule that opens it.
#[derive(Clone, Copy, Debug)]
pub struct EgressEdge<'p> {
    /// The function.
    pub from: FunctionId,
    /// The rule.
    pub rule: &'p Name,
    /// The destination.
    pub target: &'p EgressTarget,
}

/// The outcome of routing a request at the gateway.
#[derive(Debug)]
pub enum RouteOutcome<'p, 'a> {
    /// A route matched path and method.
    Matched {
        /// The route.
        route: &'p CompiledRoute,
        /// Parameters captured from the path.
        captures: Captures<'p, 'a>,
        /// The decision, naming the route as its rule.
        decision: Decision,
    },
    /// A route matched the path, but not the method.
    MethodNotAllowed {
        /// The route.
        route: &'p CompiledRoute,
    },
    /// No route matched the path.
    NotFound,
}

#[derive(Clone, Debug)]
struct CompiledAllow {
    id: Name,
    methods: Methods,
    /// `None` admits any path.
    paths: Option<Vec<PathPattern>>,
}

/// A function as a mesh refusal names it.
#[derive(Clone, Debug)]
struct Caller {
    /// [`FunctionInfo::identity`], as refusals name it.
    identity: Identity,
    /// [`FunctionInfo::audit`].
    audit: bool,
}

/// One egress destination of one rule, as the index stores it.
#[derive(Clone, Debug)]
struct EgressEntry {
    /// The rule's position in the manifest: when several rules admit a flow, the first wins.
    order: u32,
    rule: Name,
    target: EgressTarget,
}

/// Egress destinations of one function, indexed by host.
#[derive(Clone, Debug, Default)]
struct EgressIndex {
    names: HashMap<String, Vec<EgressEntry>>,
    subdomains: HashMap<String, Vec<EgressEntry>>,
    networks: Vec<(IpNet, EgressEntry)>,
}

/// The host of an egress flow, as the guest asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressHost<'a> {
    /// A DNS name, canonical (lowercase, no trailing dot).
    Name(&'a str),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for EgressHost<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

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
    functions: Vec<FunctionInfo>,
    by_name: HashMap<String, FunctionId>,
    routes: PathRouter<Vec<CompiledRoute>>,
    allows: Vec<CompiledAllow>,
    /// Allow rules by (source, destination selector), in file order: a decision is a few
    /// independent lookups, however many rules there are.
    mesh: MeshIndex,
    /// Per function, what a mesh refusal reads of it, apart from the larger [`FunctionInfo`].
    callers: Vec<Caller>,
    egress: Vec<EgressIndex>,
    ceiling: Ceiling,
    /// What names this policy in flow records; empty unless the loader set it.
    revision: String,
}

impl Policy {
    /// Compiles a validated manifest, or lists every problem loading could not see.
    pub fn compile(manifest: Manifest) -> Result<Self, Vec<CompileError>> {
        let mut errors = Vec::new();
        let functions: Vec<FunctionInfo> = manifest
            .functions
            .values()
            .enumerate()
            .map(|(i, f)| FunctionInfo {
                id: FunctionId(i as u32),
                identity: f.identity(),
                audit: f.mode == Mode::Audit,
                spec: f.clone(),
            })
            .collect();
        let by_name = functions
            .iter()
            .map(|f| (f.spec.name.as_str().to_owned(), f.id))
            .collect::<HashMap<_, _>>();

        // Routes sharing a pattern are told apart by method, like API Gateway integrations.
        let mut by_pattern: Vec<(PathPattern, Vec<CompiledRoute>)> = Vec::new();
        for r in &manifest.routes {
            let Some(pattern) = pattern(&r.path, &mut errors) else {
                continue;
            };
            let Some(&function) = by_name.get(r.function.as_str()) else {
                continue;
            };
            let route = CompiledRoute {
                id: r.id.clone(),
                pattern: pattern.clone(),
                methods: r.methods.clone(),
                function,
                auth: r.auth.clone(),
                max_body_bytes: r.max_body_bytes,
                rate_limit: r.rate_limit.clone(),
                sources: r.sources.clone(),
                mode: r.mode,
                body_timeout: std::time::Duration::from_millis(u64::from(r.body_timeout_ms)),
            };
            match by_pattern.iter_mut().find(|(p, _)| *p == pattern) {
                Some((_, same)) => {
                    if let Some(clash) = same
                        .iter()
                        .find(|o| methods_overlap(&o.methods, &route.methods))
                    {
                        errors.push(CompileError {
                            location: Some(r.location),
                            message: format!(
                                "route `{}` and route `{}` both admit the same method on path `{}`",
                                route.id, clash.id, r.path.text
                            ),
                        });
                    }
                    same.push(route);
                }
                None => by_pattern.push((pattern, vec![route])),
            }
        }
        let routes = match PathRouter::new(by_pattern) {
            Ok(router) => Some(router),
            Err(e) => {
                // Point at the later of the two routes, the one whose addition made it ambiguous.
                let culprit = match &e {
                    RouterError::DuplicatePattern(p) => p.as_str().to_owned(),
                    RouterError::AmbiguousRoutes { second, .. } => second.as_str().to_owned(),
                };
                let location = manifest
                    .routes
                    .iter()
                    .rev()
                    .find(|r| r.path.text == culprit)
                    .map(|r| r.path.location);
                errors.push(CompileError {
                    location,
                    message: format!("routes: {e}"),
                });
                None
            }
        };

        let allows: Vec<CompiledAllow> = manifest
            .allows
            .iter()
            .map(|rule| CompiledAllow {
                id: rule.id.clone(),
                methods: rule.methods.clone(),
                paths: match &rule.paths {
                    Paths::Any => None,
                    Paths::Only(list) => Some(
                        list.iter()
                            .filter_map(|p| pattern(p, &mut errors))
                            .collect(),
                    ),
                },
            })
            .collect();
        // The selectors that describe each function, so rules find their functions by lookup
        // instead of testing every function.
        let describing: Vec<Vec<Selector>> = functions
            .iter()
            .map(|f| describing_selectors(&manifest, &f.spec))
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
        let mesh = MeshIndex::new(&functions, &describing, &indexed);
        drop(indexed);
        let callers = functions
            .iter()
            .map(|f| Caller {
                identity: Identity::new(f.spec.name.clone(), f.spec.is_endpoint()),
                audit: f.audit,
            })
            .collect();

        // Each selector's members, from what each function says describes it, so an egress rule
        // finds its functions by lookup instead of testing every function.
        let mut members: HashMap<&Selector, Vec<FunctionId>> = HashMap::new();
        for (f, selectors) in functions.iter().zip(&describing) {
            for selector in selectors {
                members.entry(selector).or_default().push(f.id);
            }
        }
        let mut egress = vec![EgressIndex::default(); functions.len()];
        for (order, rule) in manifest.egress.iter().enumerate() {
            let from = members
                .get(&rule.from)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for &id in from {
                // Isolated subnets have no egress whatever the rules say; loading refuses rules
                // that select them, and this keeps a future selector from opening one anyway.
                // Endpoints never call out either.
                let spec = &functions[id.index()].spec;
                if spec.subnet_kind == SubnetKind::Isolated || spec.is_endpoint() {
                    continue;
                }
                let index = &mut egress[id.index()];
                for target in &rule.to {
                    let entry = EgressEntry {
                        order: order as u32,
                        rule: rule.id.clone(),
                        target: target.clone(),
                    };
                    match &target.host {
                        HostPattern::Name(n) => {
                            index.names.entry(n.clone()).or_default().push(entry)
                        }
                        HostPattern::Subdomain(d) => {
                            index.subdomains.entry(d.clone()).or_default().push(entry);
                        }
                        HostPattern::Cidr(net) => index.networks.push((*net, entry)),
                    }
                }
            }
        }

        let ceiling = Ceiling::new(
            manifest.ceiling.block.clone(),
            manifest.ceiling.relax.clone(),
        );
        let Some(routes) = routes.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        Ok(Self {
            manifest,
            functions,
            by_name,
            routes,
            allows,
            mesh,
            callers,
            egress,
            ceiling,
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

    /// The routes, for listing.
    pub fn routes(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes.routes().flat_map(|(_, r)| r.iter())
    }

    /// Every (source, destination, allow rule) the mesh index holds, in source, destination and
    /// file order: what auditors build their graph from, so they read the rules exactly as
    /// [`Policy::decide_mesh`] does.
    pub fn mesh_edges(&self) -> Vec<MeshEdge<'_>> {
        let mut edges = Vec::new();
        for from in 0..self.functions.len() {
            for to in 0..self.functions.len() {
                let (from, to) = (FunctionId(from as u32), FunctionId(to as u32));
                for i in self.candidates(from, to) {
                    let rule = &self.allows[i as usize];
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

    /// The allow rules that connect `from` to `to`, in file order.
    fn candidates(&self, from: FunctionId, to: FunctionId) -> Vec<u32> {
        self.mesh.connecting(from.index(), to.index())
    }

    /// What the mesh index holds on the heap, in bytes: it grows with the rules and with the
    /// distinct combinations of wide `from` selectors, not with the functions a selector covers.
    pub fn mesh_index_bytes(&self) -> usize {
        self.mesh.heap_bytes()
    }

    /// Every egress destination each function may reach, and the rule that opens it, in
    /// function and file order (isolated functions have none).
    pub fn egress_edges(&self) -> Vec<EgressEdge<'_>> {
        let mut out = Vec::new();
        for (i, index) in self.egress.iter().enumerate() {
            let from = FunctionId(i as u32);
            let mut entries: Vec<&EgressEntry> = index
                .names
                .values()
                .chain(index.subdomains.values())
                .flatten()
                .chain(index.networks.iter().map(|(_, e)| e))
                .collect();
            entries.sort_by_key(|e| e.order);
            out.extend(entries.into_iter().map(|e| EgressEdge {
                from,
                rule: &e.rule,
                target: &e.target,
            }));
        }
        out
    }

    /// The operator ceiling.
    pub fn ceiling(&self) -> &Ceiling {
        &self.ceiling
    }

    /// Routes an ingress request whose path is already normalized.
    pub fn route<'p, 'a>(&'p self, method: &str, path: &'a str) -> RouteOutcome<'p, 'a> {
        let Some(found) = self.routes.lookup(path) else {
            return RouteOutcome::NotFound;
        };
        let Some(route) = found.value.iter().find(|r| r.methods.admits(method)) else {
            return match found.value.first() {
                Some(route) => RouteOutcome::MethodNotAllowed { route },
                None => RouteOutcome::NotFound,
            };
        };
        RouteOutcome::Matched {
            route,
            captures: found.captures,
            decision: Decision::allow(route.id.clone()),
        }
    }

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
        let (first, connected) = self
            .mesh
            .first_admitting(from.index(), to.index(), method, path);
        if let Some(rule) = first {
            return Decision::allow(rule.clone());
        }
        let (source, dest) = (&self.callers[from.index()], &self.callers[to.index()]);
        let audit = source.audit || dest.audit;
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
        let (method_ok, nearest) = self.mesh.nearest(from.index(), to.index(), method);
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

    /// Decides an egress flow from `from` to `scheme://host:port`, before any DNS lookup.
    ///
    /// Names are admitted only by name rules (exact or `*.domain`), so a function can make
    /// septa resolve only names its rules allow; CIDR rules admit IP literals. An admitted flow
    /// still has to pass [`Policy::check_address`] for the address actually dialled.
    pub fn decide_egress(
        &self,
        from: FunctionId,
        scheme: EgressScheme,
        host: EgressHost<'_>,
        port: u16,
    ) -> Decision {
        let info = self.function(from);
        if info.spec.subnet_kind == SubnetKind::Isolated {
            return Decision::refuse(
                Reason::IsolatedSubnet {
                    placement: info.spec.placement.to_string(),
                },
                info.audit,
            );
        }
        if let EgressHost::Ip(ip) = host
            && let Err(block) = self.ceiling.check(ip)
        {
            return Decision::refuse(Reason::Ceiling(block), info.audit);
        }
        let index = &self.egress[from.index()];
        let admits =
            |e: &&EgressEntry| e.target.scheme.admits(scheme) && e.target.admits_port(port);
        let found = match host {
            EgressHost::Name(name) => {
                let exact = index.names.get(name).into_iter().flatten();
                let below = parent_domains(name)
                    .flat_map(|d| index.subdomains.get(d).into_iter().flatten());
                exact.chain(below).filter(admits).min_by_key(|e| e.order)
            }
            EgressHost::Ip(ip) => {
                let ip = canonical_ip(ip);
                index
                    .networks
                    .iter()
                    .filter(|(net, _)| net.contains(&ip))
                    .map(|(_, e)| e)
                    .filter(admits)
                    .min_by_key(|e| e.order)
            }
        };
        match found {
            Some(entry) => Decision::allow(entry.rule.clone()),
            None => Decision::refuse(
                Reason::NoEgressRule {
                    target: format!("{scheme}://{host}:{port}"),
                },
                info.audit,
            ),
        }
    }

    /// Checks an address about to be dialled against the operator ceiling. Audit mode never
    /// opens the ceiling.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Decision> {
        self.ceiling
            .check(ip)
            .map_err(|block| Decision::refuse(Reason::Ceiling(block), false))
    }
}

/// `a.b.example.com` → `b.example.com`, `example.com`, `com`: the domains a `*.` rule may name.
fn parent_domains(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[i + 1..])
}

fn pattern(p: &septa_manifest::PathText, errors: &mut Vec<CompileError>) -> Option<PathPattern> {
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

fn methods_overlap(a: &Methods, b: &Methods) -> bool {
    match (a, b) {
        (Methods::Any, _) | (_, Methods::Any) => true,
        (Methods::Only(a), Methods::Only(b)) => a.iter().any(|m| b.contains(m)),
    }
}

/// Every selector that selects `f`: its function, segment, subnet, groups and labels.
fn describing_selectors(manifest: &Manifest, f: &Function) -> Vec<Selector> {
    let own = if f.is_endpoint() {
        Selector::Endpoint(f.name.clone())
    } else {
        Selector::Function(f.name.clone())
    };
    let mut out = vec![
        own,
        Selector::Segment(f.placement.segment.clone()),
        Selector::Subnet(f.placement.segment.clone(), f.placement.subnet.clone()),
    ];
    out.extend(f.groups.iter().cloned().map(Selector::Group));
    out.extend(manifest.function_labels(f).cloned().map(Selector::Label));
    out.sort();
    out.dedup();
    out
}

/// Whether `selector` selects function `f` in `manifest`.
pub fn selects(manifest: &Manifest, selector: &Selector, f: &Function) -> bool {
    selector.selects(&manifest.segments, f)
}
