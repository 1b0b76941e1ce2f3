//! `septa export kubernetes`: the policy as Namespaces, cells running `septa node`,
//! NetworkPolicy, and Istio or Cilium policy with Gateway API routes; one file per namespace and
//! kind, byte-identical across runs, and a report of every difference from septa's truth table.
//!
//! [`export`] builds the objects and the report from the compiled policy; [`check`] (the
//! `--check` option) has network-config-analyzer compute what the objects allow and compares it
//! with the truth table. Each kind of object has its module; [`known`] lists the differences the
//! translation knows it makes.

mod breakage;
pub mod check;
mod cilium;
mod control_plane;
mod gateway_api;
mod istio;
mod known;
mod names;
mod nca;
mod network_policy;
mod node_manifest;
mod paths;
mod workloads;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use septa_policy::{CompiledRoute, Policy};
use serde_json::Value;

use crate::located;
use crate::report::Report;
use crate::truth::{CellId, Granularity, TruthTable};
use crate::yaml;

pub use check::{CheckError, Nca};

/// Which mesh the cluster runs, and so which policy objects carry the L7 rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// Istio: AuthorizationPolicy, RequestAuthentication, ServiceEntry, Sidecar.
    Istio,
    /// Cilium: CiliumNetworkPolicy.
    Cilium,
}

impl Profile {
    /// The name the command line and the report use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Istio => "istio",
            Self::Cilium => "cilium",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to export.
#[derive(Clone, Debug)]
pub struct Options {
    /// The mesh profile.
    pub profile: Profile,
    /// One cell per subnet or per function.
    pub granularity: Granularity,
    /// The container image running `septa node` and, in the publish Job, `septa publish` of the
    /// application it holds at `/app`.
    pub image: String,
}

/// A deliberately broken translation, for tests that show the check catches one.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakage {
    /// Drop the mesh AuthorizationPolicies (the ALLOWs from callers) of the first callee cell
    /// that has any: Istio then refuses calls septa allows. (Paths are not in the cluster's
    /// mesh rules to drop: the nodes' TLS leaves them to `septa node`, `l7-in-septa-mtls`.)
    DropAllow,
    /// Widen the first callee-ingress NetworkPolicy into a namespace of several cells to the
    /// whole namespace, and the callers' egress towards it likewise.
    WidenSelector,
}

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A segment whose name Kubernetes or this export reserves.
    #[error("{location}: segment `{segment}` cannot be a Kubernetes namespace: {why}")]
    Namespace {
        /// The segment.
        segment: String,
        /// Where it is declared.
        location: String,
        /// Why not.
        why: String,
    },
    /// A cell whose name cannot name a Service or a node.
    #[error("{location}: cell `{cell}` cannot be exported: {why}")]
    CellName {
        /// The cell, `SEGMENT/NAME`.
        cell: String,
        /// Where its first function is declared.
        location: String,
        /// Why not.
        why: String,
    },
    /// The manifest file could not be read again for the node manifest.
    #[error("cannot read the manifest `{path}`: {error}")]
    Source {
        /// The file.
        path: String,
        /// The error.
        error: String,
    },
    /// The node manifest does not load.
    #[error("{0}")]
    NodeManifest(String),
    /// An issuer's JWKS file could not be read.
    #[error("{location}: cannot read `{path}`, the JWKS file of issuer `{issuer}`: {error}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// Where it is declared.
        location: String,
        /// The file.
        path: String,
        /// The error.
        error: String,
    },
}

/// One emitted object and the file it goes in.
#[derive(Clone, Debug)]
pub struct Object {
    /// The file, relative to the output directory: `NAMESPACE/KIND.yaml`, or `namespaces.yaml`.
    pub file: String,
    /// The object.
    pub value: Value,
}

impl Object {
    fn new(value: Value) -> Self {
        let kind = value["kind"]
            .as_str()
            .unwrap_or("object")
            .to_ascii_lowercase();
        let file = match value["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{ns}/{kind}.yaml"),
            None => format!("{kind}s.yaml"),
        };
        Self { file, value }
    }

    /// `KIND NAMESPACE/NAME`, as the report names it.
    pub fn label(&self) -> String {
        let meta = &self.value["metadata"];
        let ns = meta["namespace"]
            .as_str()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        format!(
            "{} {ns}{}",
            self.value["kind"].as_str().unwrap_or_default(),
            meta["name"].as_str().unwrap_or_default()
        )
    }

    /// The kind.
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
}

/// An export: the objects, the files they make, and the report.
#[derive(Debug)]
pub struct Export {
    /// Every object, in file and name order.
    pub objects: Vec<Object>,
    /// The report; [`check`] adds what the analyzer found.
    pub report: Report,
}

impl Export {
    /// Every file of the output directory: the objects by namespace and kind, and the report.
    pub fn files(&self) -> BTreeMap<String, String> {
        let mut grouped: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for o in &self.objects {
            grouped.entry(&o.file).or_default().push(o.value.clone());
        }
        let mut files: BTreeMap<String, String> = grouped
            .into_iter()
            .map(|(file, values)| (file.to_owned(), yaml::documents(&values)))
            .collect();
        files.insert("export-report.md".to_owned(), self.report.to_markdown());
        files.insert("export-report.json".to_owned(), self.report.to_json());
        files
    }
}

/// The routes of each cell serving any, in route id order.
pub(crate) fn routes_by_cell<'p>(
    truth: &TruthTable<'p>,
) -> BTreeMap<CellId, Vec<&'p CompiledRoute>> {
    let mut out: BTreeMap<CellId, Vec<&CompiledRoute>> = BTreeMap::new();
    for route in truth.policy().routes() {
        out.entry(truth.cells().of(route.function))
            .or_default()
            .push(route);
    }
    for routes in out.values_mut() {
        routes.sort_by(|a, b| a.id.cmp(&b.id));
    }
    out
}

/// Exports `policy` as `options` say.
pub fn export(policy: &Policy, options: &Options) -> Result<Export, ExportError> {
    export_with(policy, options, None)
}

/// [`export`], broken as `breakage` says when given: what the check must catch.
#[doc(hidden)]
pub fn export_with(
    policy: &Policy,
    options: &Options,
    breakage: Option<Breakage>,
) -> Result<Export, ExportError> {
    let truth = TruthTable::build(policy, options.granularity);
    check_names(policy, &truth)?;
    let manifest = policy.manifest();
    let source = std::fs::read_to_string(&manifest.file).map_err(|e| ExportError::Source {
        path: manifest.file.display().to_string(),
        error: e.to_string(),
    })?;
    let node_manifest = node_manifest::node_manifest(policy, &source, truth.cells())
        .map_err(ExportError::NodeManifest)?;
    let mut values = objects(policy, &truth, options, &node_manifest)?;
    if let Some(breakage) = breakage {
        breakage::break_translation(&mut values, breakage);
    }
    let mut objects: Vec<Object> = values.into_iter().map(Object::new).collect();
    objects.sort_by(|a, b| {
        (&a.file, a.value["metadata"]["name"].as_str())
            .cmp(&(&b.file, b.value["metadata"]["name"].as_str()))
    });
    let mut files: BTreeSet<String> = objects.iter().map(|o| o.file.clone()).collect();
    files.insert("export-report.json".to_owned());
    files.insert("export-report.md".to_owned());
    let report = Report {
        target: "kubernetes".to_owned(),
        application: manifest.application.to_string(),
        profile: options.profile.to_string(),
        granularity: options.granularity.to_string(),
        files: files.into_iter().collect(),
        truth: truth.rows(names::MESH_PORT),
        analyzer: None,
        differences: known::differences(policy, &truth, options.profile),
        pairs: Vec::new(),
    };
    Ok(Export { objects, report })
}

/// Every object of the export, unordered.
fn objects(
    policy: &Policy,
    truth: &TruthTable<'_>,
    options: &Options,
    node_manifest: &str,
) -> Result<Vec<Value>, ExportError> {
    let istio = options.profile == Profile::Istio;
    let cells = truth.cells();
    let routed = routes_by_cell(truth);
    let mut out = vec![
        gateway_api::namespace(names::GATEWAY_NAMESPACE),
        gateway_api::namespace(names::CONTROL_NAMESPACE),
        gateway_api::gateway(options.profile.as_str()),
    ];
    out.extend(control_plane::objects(node_manifest, &options.image));
    let namespaces: BTreeSet<&str> = cells.iter().map(|(_, c)| c.segment.as_str()).collect();
    for ns in &namespaces {
        out.push(workloads::namespace(ns, istio));
        out.push(workloads::config_map(ns, node_manifest));
        out.extend(network_policy::namespace_baseline(ns));
        if istio {
            out.extend(istio::namespace_baseline(ns));
        }
    }
    for (id, cell) in cells.iter() {
        let embedded = workloads::has_embedded_store(policy, cell);
        out.push(workloads::service_account(cell));
        out.push(workloads::service(cell));
        out.push(workloads::deployment(cell, &options.image, embedded));
        if embedded {
            out.push(workloads::volume_claim(cell));
        }
        if routed.contains_key(&id) {
            out.push(network_policy::from_gateway(cell));
        }
        out.extend(network_policy::egress(policy, cell));
    }
    for (from, to, _) in truth.flows() {
        if from != to {
            out.extend(network_policy::flow(cells.get(from), cells.get(to)));
        }
    }
    out.extend(gateway_api::http_routes(truth));
    match options.profile {
        Profile::Istio => {
            out.extend(istio::mesh_allows(truth));
            out.extend(istio::route_allows(truth));
            out.extend(istio::request_authentications(truth)?);
            out.extend(istio::egress(policy, truth));
            out.extend(istio::rate_limits(truth));
        }
        Profile::Cilium => out.extend(cilium::policies(policy, truth)),
    }
    Ok(out)
}

/// Refuses names Kubernetes would: reserved namespaces, Services that start with a digit, node
/// names longer than a DNS label.
fn check_names(policy: &Policy, truth: &TruthTable<'_>) -> Result<(), ExportError> {
    for segment in policy.manifest().segments.values() {
        if let Some(why) = names::reserved_namespace(segment) {
            return Err(ExportError::Namespace {
                segment: segment.name.to_string(),
                location: located(policy, segment.location),
                why,
            });
        }
    }
    for (_, cell) in truth.cells().iter() {
        let location = cell
            .functions
            .first()
            .map(|&f| located(policy, policy.function(f).spec.location))
            .unwrap_or_default();
        let why = if !cell
            .name
            .as_str()
            .starts_with(|c: char| c.is_ascii_lowercase())
        {
            Some("a Service name must start with a letter".to_owned())
        } else if names::node_name(cell).len() > 63 {
            Some(format!(
                "its node name `{}` is longer than 63 characters",
                names::node_name(cell)
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ExportError::CellName {
                cell: cell.to_string(),
                location,
                why,
            });
        }
    }
    Ok(())
}
