//! `--check`: network-config-analyzer computes what the exported objects allow, and every
//! request where that differs from septa's truth table becomes a [`Difference`].
//!
//! The comparison probes each pair of cells with the standard methods and with request paths
//! drawn from both sides (instances of septa's patterns, the nearest paths they refuse, and
//! instances of what the analyzer reports). A difference carries a reason code only when the
//! target's known semantics explain it exactly: a request septa refuses between two cells the
//! cluster admits at L4 on the mesh port, whose TLS is the nodes' own (`l7-in-septa-mtls`),
//! audit mode (`audit-mode`), egress by name (`egress-dns`). Anything else — a dropped ALLOW, a
//! widened selector — has no code and fails the check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use septa_manifest::{HostPattern, Methods};
use septa_policy::Policy;

use super::names::MESH_PORT;
use super::nca::{self, Connection, Group, Peer};
use super::paths::{istio_matches, probes};
use super::{Export, Options, Profile};
use crate::reason::ReasonCode;
use crate::report::{Difference, Direction, PairRow};
use crate::truth::{CellId, Truth, TruthTable};
use crate::yaml;

/// The network-config-analyzer release this check is written against.
pub const NCA_VERSION: &str = "2.1.0";

/// The methods every pair is probed with, besides those its rules name.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The analyzer is not installed.
    #[error(
        "network-config-analyzer (`nca`) not found: install it with `pip install network-config-analyzer=={NCA_VERSION}` or set SEPTA_NCA to its path"
    )]
    NotFound,
    /// It could not be run.
    #[error("cannot run `{program}`: {error}")]
    Run {
        /// The program.
        program: String,
        /// The error.
        error: String,
    },
    /// It ran and failed.
    #[error("`{program}` failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// Its output could not be read.
    #[error("cannot read network-config-analyzer's connectivity map: {0}")]
    Output(String),
    /// The analyzer's input could not be written.
    #[error("cannot write the analyzer's input: {0}")]
    Io(String),
}

/// network-config-analyzer, as a program to run.
#[derive(Clone, Debug)]
pub struct Nca {
    program: PathBuf,
}

impl Nca {
    /// The analyzer at `SEPTA_NCA`, or `nca` on `PATH`.
    pub fn find() -> Result<Self, CheckError> {
        if let Some(path) = std::env::var_os("SEPTA_NCA") {
            let program = PathBuf::from(path);
            return if program.is_file() {
                Ok(Self { program })
            } else {
                Err(CheckError::NotFound)
            };
        }
        let path = std::env::var_os("PATH").ok_or(CheckError::NotFound)?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("nca"))
            .find(|p| p.is_file())
            .map(|program| Self { program })
            .ok_or(CheckError::NotFound)
    }

    /// `nca --version`, e.g. `NCA version 2.1.0`.
    pub fn version(&self) -> Result<String, CheckError> {
        Ok(self.run(&["--version"])?.trim().to_owned())
    }

    fn run(&self, args: &[&str]) -> Result<String, CheckError> {
        let program = self.program.display().to_string();
        let output = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|e| CheckError::Run {
                program: program.clone(),
                error: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(CheckError::Failed {
                program,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The connectivity map of the YAML files in `dir`.
    fn connectivity(&self, dir: &Path) -> Result<Vec<Connection>, CheckError> {
        let dir = dir.display().to_string();
        let out = self.run(&[
            "--connectivity",
            "-r",
            &dir,
            "-o",
            "txt_no_fw_rules",
            "--output_endpoints",
            "deployments",
        ])?;
        nca::parse(&out).map_err(CheckError::Output)
    }
}

/// The objects the analyzer reads, per profile; it is given nothing else. Route policies are
/// left out: they admit the gateway's pods, which the export does not run, and the analyzer
/// does not read `requestPrincipals`. So is the control plane's namespace but for the Namespace
/// itself: septa's truth table is between cells, and NATS and the publish Job are none.
fn analyzed(object: &super::Object, profile: Profile) -> bool {
    if object.value["metadata"]["namespace"] == super::names::CONTROL_NAMESPACE {
        return false;
    }
    let route = object.value["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("route-"));
    matches!(
        object.kind(),
        "Namespace" | "Deployment" | "Service" | "NetworkPolicy"
    ) || profile == Profile::Istio
        && !route
        && matches!(
            object.kind(),
            "AuthorizationPolicy" | "Sidecar" | "ServiceEntry"
        )
}

/// Runs the analyzer on `export`'s objects and adds every difference it shows to the report.
pub fn check(
    policy: &Policy,
    options: &Options,
    export: &mut Export,
    analyzer: &Nca,
) -> Result<(), CheckError> {
    let version = analyzer.version()?;
    let input = tempfile::tempdir().map_err(|e| CheckError::Io(e.to_string()))?;
    // The analyzer reads in order and must see the namespaces in the same file as the workloads
    // in them, and every workload before a policy that names its namespace.
    let mut files: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    let mut objects: Vec<&super::Object> = export
        .objects
        .iter()
        .filter(|o| analyzed(o, options.profile))
        .collect();
    objects.sort_by_key(|o| o.kind() != "Namespace");
    for o in objects {
        let file = match o.kind() {
            "Namespace" | "Deployment" | "Service" => "1-workloads.yaml",
            _ => "2-policies.yaml",
        };
        files.entry(file).or_default().push(o.value.clone());
    }
    for (file, values) in files {
        std::fs::write(input.path().join(file), yaml::documents(&values))
            .map_err(|e| CheckError::Io(e.to_string()))?;
    }
    let connections = analyzer.connectivity(input.path())?;
    let truth = TruthTable::build(policy, options.granularity);
    let (found, pairs) = compare(&truth, &connections, export);
    export.report.pairs = pairs;
    export.report.analyzer = Some(format!("network-config-analyzer ({version})"));
    let mut all = std::mem::take(&mut export.report.differences);
    all.extend(found);
    export.report.differences = merge(all);
    Ok(())
}

/// Differences of one kind between one pair merged into one, with their examples together.
fn merge(differences: Vec<Difference>) -> Vec<Difference> {
    let mut merged: BTreeMap<(Option<ReasonCode>, Direction, String, String), Difference> =
        BTreeMap::new();
    for d in differences {
        let key = (d.code, d.direction, d.from.clone(), d.to.clone());
        match merged.get_mut(&key) {
            Some(m) => {
                for r in d.rules {
                    if !m.rules.contains(&r) {
                        m.rules.push(r);
                    }
                }
                for o in d.objects {
                    if !m.objects.contains(&o) {
                        m.objects.push(o);
                    }
                }
                for e in d.examples {
                    if m.examples.len() < 6 && !m.examples.contains(&e) {
                        m.examples.push(e);
                    }
                }
            }
            None => {
                merged.insert(key, d);
            }
        }
    }
    merged.into_values().collect()
}

/// The differences between septa's truth and the analyzer's `connections`.
fn compare(
    truth: &TruthTable<'_>,
    connections: &[Connection],
    export: &Export,
) -> (Vec<Difference>, Vec<PairRow>) {
    let cells = truth.cells();
    let cell_of = |peer: &Peer| -> Option<CellId> {
        match peer {
            Peer::Workload(ns, name) => cells
                .iter()
                .find(|(_, c)| c.segment.as_str() == ns && c.name.as_str() == name)
                .map(|(id, _)| id),
            Peer::Other(_) => None,
        }
    };
    let mut by_pair: BTreeMap<(CellId, CellId), Vec<&Group>> = BTreeMap::new();
    let mut out = Vec::new();
    for c in connections {
        match (cell_of(&c.from), cell_of(&c.to)) {
            (Some(a), Some(b)) if !c.non_tcp => {
                by_pair.entry((a, b)).or_default().extend(&c.groups);
            }
            (Some(a), None) => out.extend(outside(truth, a, c)),
            // Between things the export does not run (the analyzer's own resolver, addresses).
            (None, None) => {}
            _ => out.push(Difference {
                code: None,
                direction: Direction::Wider,
                from: c.from.to_string(),
                to: c.to.to_string(),
                rules: Vec::new(),
                objects: Vec::new(),
                detail: format!("a connection septa does not have: {}", c.text),
                examples: Vec::new(),
            }),
        }
    }
    let mut rows = Vec::new();
    for (a, _) in cells.iter() {
        for (b, _) in cells.iter() {
            if a == b {
                continue;
            }
            let groups = by_pair.get(&(a, b)).map_or(&[][..], Vec::as_slice);
            let (found, row) = compare_pair(truth, a, b, groups, export);
            out.extend(found);
            rows.push(row);
        }
    }
    (out, rows)
}

/// Probes one pair of cells.
fn compare_pair(
    truth: &TruthTable<'_>,
    a: CellId,
    b: CellId,
    groups: &[&Group],
    export: &Export,
) -> (Vec<Difference>, PairRow) {
    let cells = truth.cells();
    let (from, to) = (cells.get(a), cells.get(b));
    let mut row = PairRow {
        from: from.to_string(),
        to: to.to_string(),
        septa: Vec::new(),
        export: Vec::new(),
    };
    let access = truth.flow(a, b);
    let mut out = Vec::new();
    // Any port but the mesh port is wider than septa, whatever the rules.
    for g in groups {
        for port in g.ports.listed() {
            if port.split('-').any(|p| p.trim() != MESH_PORT.to_string()) {
                out.push(Difference {
                    code: None,
                    direction: Direction::Wider,
                    from: from.to_string(),
                    to: to.to_string(),
                    rules: Vec::new(),
                    objects: objects_between(export, from, to),
                    detail: format!("port {port} is open, septa uses only {MESH_PORT}"),
                    examples: vec![format!("port {port}")],
                });
            }
        }
    }
    let mut methods: BTreeSet<String> = METHODS.iter().map(|m| (*m).to_owned()).collect();
    let mut paths: BTreeSet<String> = BTreeSet::from(["/septa-unlisted".to_owned()]);
    for x in access {
        if let Methods::Only(list) = &x.methods {
            methods.extend(list.iter().cloned());
        }
        for p in x.paths.iter().flatten() {
            paths.extend(probes(p));
        }
    }
    for g in groups {
        for p in g.paths.listed() {
            paths.insert(match p.strip_suffix('*') {
                Some(prefix) if prefix.starts_with('/') => format!("{prefix}z9"),
                Some(_) => "/z9".to_owned(),
                None => p.clone(),
            });
        }
    }
    for method in &methods {
        for path in &paths {
            let septa = truth.decide(a, b, method, path);
            let exported = groups.iter().any(|g| {
                g.admits_port(MESH_PORT)
                    && g.methods.admits(method, |x, y| x == y)
                    && g.paths.admits(path, istio_matches)
            });
            if septa.permits() {
                row.septa.push(format!("{method} {path}"));
            }
            if exported {
                row.export.push(format!("{method} {path}"));
            }
            if septa.permits() == exported {
                continue;
            }
            // Both profiles admit the callers at L4 on the mesh port, since it carries the
            // nodes' own TLS: methods and paths are the callee's node's to decide.
            let expected = !access.is_empty();
            let code = match (&septa, exported) {
                (Truth::Audit, false) if !expected => Some(ReasonCode::AuditMode),
                (Truth::Deny, true) if expected => Some(ReasonCode::L7InSeptaMtls),
                _ => None,
            };
            let direction = if exported {
                Direction::Wider
            } else {
                Direction::Narrower
            };
            let rules = match &septa {
                Truth::Allow(rule) => vec![rule.to_string()],
                _ => access
                    .iter()
                    .map(|x| x.rule.to_string())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            };
            out.push(Difference {
                code,
                direction,
                from: from.to_string(),
                to: to.to_string(),
                rules,
                objects: objects_between(export, from, to),
                detail: match (code, direction) {
                    (None, Direction::Wider) => "the export allows what septa refuses, and the target's known semantics do not explain it".to_owned(),
                    (None, Direction::Narrower) => "the export refuses what septa allows".to_owned(),
                    (Some(ReasonCode::L7InSeptaMtls), _) => "the cluster admits the callers on the mesh port; the callee's septa node refuses this request".to_owned(),
                    _ => "refused by the export, recorded in audit mode by septa".to_owned(),
                },
                examples: vec![format!("{method} {path}")],
            });
        }
    }
    (out, row)
}

/// A connection from cell `a` to something outside the export: coded when an egress rule of the
/// cell opens that port (by name: `egress-dns`; by network: no difference).
fn outside(truth: &TruthTable<'_>, a: CellId, c: &Connection) -> Vec<Difference> {
    let cells = truth.cells();
    let cell = cells.get(a);
    let edges = truth.policy().egress_edges();
    let mine: Vec<_> = edges.iter().filter(|e| cells.of(e.from) == a).collect();
    let mut out = Vec::new();
    for g in &c.groups {
        let ports: Vec<u16> = g
            .ports
            .listed()
            .iter()
            .flat_map(|p| {
                let (low, high) = p.split_once('-').unwrap_or((p, p));
                let low = low.trim().parse::<u16>().unwrap_or(0);
                let high = high.trim().parse::<u16>().unwrap_or(u16::MAX);
                [low, high]
            })
            .collect();
        let open_by = |port: u16| {
            mine.iter()
                .filter(|e| e.target.port_min <= port && port <= e.target.port_max)
                .collect::<Vec<_>>()
        };
        let ports = if ports.is_empty() {
            vec![0, u16::MAX]
        } else {
            ports
        };
        for port in ports {
            let rules = open_by(port);
            let by_name = rules
                .iter()
                .any(|e| !matches!(e.target.host, HostPattern::Cidr(_)));
            let code = if port == 53 && c.to.is_resolver() {
                Some(ReasonCode::DnsResolution)
            } else if rules.is_empty() {
                None
            } else if by_name {
                Some(ReasonCode::EgressDns)
            } else {
                continue;
            };
            out.push(Difference {
                code,
                direction: Direction::Wider,
                from: cell.to_string(),
                to: c.to.to_string(),
                rules: rules.iter().map(|e| e.rule.to_string()).collect(),
                objects: vec![format!(
                    "NetworkPolicy {}/egress-{}",
                    cell.segment, cell.name
                )],
                detail: "the analyzer shows the port open to addresses outside the cluster"
                    .to_owned(),
                examples: vec![format!("port {port}")],
            });
        }
    }
    out
}

/// The objects that open flows from `from` to `to`, for the report.
fn objects_between(
    export: &Export,
    from: &crate::truth::Cell,
    to: &crate::truth::Cell,
) -> Vec<String> {
    let [ingress, egress] = super::network_policy::flow_names(from, to);
    let prefix = "allow-";
    let suffix = format!("-to-{}", to.name);
    export
        .objects
        .iter()
        .filter(|o| {
            let name = o.value["metadata"]["name"].as_str().unwrap_or_default();
            let ns = o.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default();
            (o.kind() == "NetworkPolicy"
                && (name == ingress && ns == to.segment.as_str()
                    || name == egress && ns == from.segment.as_str()))
                || (o.kind() == "AuthorizationPolicy"
                    && ns == to.segment.as_str()
                    && name.starts_with(prefix)
                    && name.ends_with(&suffix))
                || (o.kind() == "CiliumNetworkPolicy"
                    && ns == to.segment.as_str()
                    && name == to.name.as_str())
        })
        .map(super::Object::label)
        .collect()
}
