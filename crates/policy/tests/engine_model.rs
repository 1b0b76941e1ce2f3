//! Differential test: the compiled, indexed engine decides exactly as a naive rule-by-rule scan
//! of the manifest does, on random manifests and random requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use proptest::prelude::*;
use septa_manifest::*;
use septa_policy::path::PathPattern;
use septa_policy::{EgressHost, FunctionId, Policy, Reason, Verdict};

/// `PURGE` is no standard method: rules and requests with one take another path in the engine.
const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "PUT", "PURGE"];
const PATTERNS: [&str; 5] = ["/a", "/a/{id}", "/b/...", "/", "/c/{x}/d"];
const PATHS: [&str; 8] = ["/a", "/a/1", "/b", "/b/x/y", "/", "/c/1/d", "/c", "/bx"];
const TARGETS: [&str; 7] = [
    "http://api.example.com",
    "https://*.example.com",
    "https://a.example.com",
    "tcp://8.8.8.0/24:5432",
    "*://1.1.1.1:*",
    "http://api.example.com:8000-9000",
    "*://0.0.0.0/0:443",
];
const HOSTS: [&str; 7] = [
    "api.example.com",
    "a.example.com",
    "x.a.example.com",
    "example.com",
    "8.8.8.8",
    "1.1.1.1",
    "127.0.0.1",
];
const PORTS: [u16; 5] = [80, 443, 5432, 8080, 8500];

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// (segment, subnet, groups, labels, audit mode, endpoint) of a random function.
type FunctionSpec = (usize, usize, Vec<bool>, Vec<bool>, bool, bool);
/// (from selector, to selector, methods, paths) of a random allow rule.
type AllowSpec = (usize, usize, Option<Vec<bool>>, Option<Vec<bool>>);

#[derive(Debug, Clone)]
struct Spec {
    segment_labels: Vec<Vec<bool>>,
    functions: Vec<FunctionSpec>,
    allows: Vec<AllowSpec>,
    egress: Vec<(usize, Vec<usize>)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(prop::collection::vec(any::<bool>(), 2), 1..4),
        prop::collection::vec(
            (
                0..3usize,
                0..3usize,
                prop::collection::vec(any::<bool>(), 3),
                prop::collection::vec(any::<bool>(), 2),
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.2),
            ),
            1..7,
        ),
        prop::collection::vec(
            (
                0..40usize,
                0..40usize,
                prop::option::of(prop::collection::vec(any::<bool>(), METHODS.len())),
                prop::option::of(prop::collection::vec(any::<bool>(), 5)),
            ),
            0..24,
        ),
        prop::collection::vec(
            (0..40usize, prop::collection::vec(0..TARGETS.len(), 0..4)),
            0..6,
        ),
    )
        .prop_map(|(segment_labels, functions, allows, egress)| Spec {
            segment_labels,
            functions,
            allows,
            egress,
        })
}

const SUBNETS: [(&str, SubnetKind); 3] = [
    ("web", SubnetKind::Public),
    ("app", SubnetKind::Private),
    ("vault", SubnetKind::Isolated),
];

/// Every selector that names something in the manifest, so a random index picks one.
fn selectors(m: &Manifest) -> Vec<Selector> {
    let mut out = Vec::new();
    for s in m.segments.values() {
        out.push(Selector::Segment(s.name.clone()));
        for sub in s.subnets.keys() {
            out.push(Selector::Subnet(s.name.clone(), sub.clone()));
        }
    }
    for g in ["g0", "g1", "g2"] {
        out.push(Selector::Group(name(g)));
    }
    for f in m.functions.values() {
        // `function:NAME` never selects an endpoint; it is here to show that.
        out.push(Selector::Function(f.name.clone()));
        if f.is_endpoint() {
            out.push(Selector::Endpoint(f.name.clone()));
        }
    }
    for l in ["l0", "l1"] {
        out.push(Selector::Label(name(l)));
    }
    out
}

fn manifest(spec: &Spec) -> Manifest {
    let at = Location::default();
    let mut segments = BTreeMap::new();
    for (i, labels) in spec.segment_labels.iter().enumerate() {
        let n = name(&format!("s{i}"));
        segments.insert(
            n.clone(),
            Segment {
                name: n,
                subnets: SUBNETS.iter().map(|(s, k)| (name(s), *k)).collect(),
                labels: labels
                    .iter()
                    .enumerate()
                    .filter(|(_, on)| **on)
                    .map(|(j, _)| name(&format!("l{j}")))
                    .collect(),
                mode: Mode::Enforce,
                max_concurrency: None,
                cpu_share: Segment::DEFAULT_CPU_SHARE,
                location: at,
            },
        );
    }
    let mut functions = BTreeMap::new();
    for (i, (seg, sub, groups, labels, audit, endpoint)) in spec.functions.iter().enumerate() {
        let n = name(&format!("f{i}"));
        let seg = seg % spec.segment_labels.len();
        functions.insert(
            n.clone(),
            Function {
                kind: if *endpoint {
                    FunctionKind::Endpoint(EndpointBackend::Embedded)
                } else {
                    FunctionKind::Component(Component {
                        source: PathBuf::from("x.wasm"),
                        build: None,
                    })
                },
                name: n,
                placement: Placement {
                    segment: name(&format!("s{seg}")),
                    subnet: name(SUBNETS[*sub].0),
                },
                subnet_kind: SUBNETS[*sub].1,
                groups: groups
                    .iter()
                    .enumerate()
                    .filter(|(_, on)| **on)
                    .map(|(j, _)| name(&format!("g{j}")))
                    .collect(),
                labels: labels
                    .iter()
                    .enumerate()
                    .filter(|(_, on)| **on)
                    .map(|(j, _)| name(&format!("l{j}")))
                    .collect(),
                mode: if *audit { Mode::Audit } else { Mode::Enforce },
                limits: Limits::default(),
                location: at,
            },
        );
    }
    let mut m = Manifest {
        file: PathBuf::from("septa.toml"),
        dir: PathBuf::from("."),
        application: name("model"),
        ceiling: CeilingSpec::default(),
        gateway: Default::default(),
        segments,
        groups: BTreeMap::new(),
        functions,
        routes: Vec::new(),
        allows: Vec::new(),
        egress: Vec::new(),
        invariants: Vec::new(),
        jwt: BTreeMap::new(),
        api_keys: BTreeMap::new(),
        alerts: Vec::new(),
        cluster: None,
    };
    let sels = selectors(&m);
    let pick = |bits: &[bool], from: &[&str]| {
        bits.iter()
            .zip(from)
            .filter(|(on, _)| **on)
            .map(|(_, x)| (*x).to_owned())
            .collect::<Vec<_>>()
    };
    for (i, (from, to, methods, paths)) in spec.allows.iter().enumerate() {
        m.allows.push(AllowRule {
            id: name(&format!("allow-{i}")),
            from: sels[from % sels.len()].clone(),
            to: sels[to % sels.len()].clone(),
            methods: methods
                .as_ref()
                .map_or(Methods::Any, |b| Methods::Only(pick(b, &METHODS))),
            paths: paths.as_ref().map_or(Paths::Any, |b| {
                Paths::Only(
                    pick(b, &PATTERNS)
                        .into_iter()
                        .map(|text| PathText { text, location: at })
                        .collect(),
                )
            }),
            location: at,
        });
    }
    for (i, (from, targets)) in spec.egress.iter().enumerate() {
        m.egress.push(EgressRule {
            id: name(&format!("egress-{i}")),
            from: sels[from % sels.len()].clone(),
            to: targets
                .iter()
                .map(|t| EgressTarget::parse(TARGETS[*t]).unwrap())
                .collect(),
            location: at,
        });
    }
    m
}

/// The simple model: what the documentation says a selector means.
fn selects(m: &Manifest, sel: &Selector, f: &Function) -> bool {
    let segment = &m.segments[&f.placement.segment];
    match sel {
        Selector::Gateway => false,
        Selector::Segment(s) => &f.placement.segment == s,
        Selector::Subnet(s, n) => &f.placement.segment == s && &f.placement.subnet == n,
        Selector::Group(g) => f.groups.contains(g),
        Selector::Function(n) => &f.name == n && !f.is_endpoint(),
        Selector::Endpoint(n) => &f.name == n && f.is_endpoint(),
        Selector::Label(l) => f.labels.contains(l) || segment.labels.contains(l),
    }
}

fn ids(rules: &[&AllowRule]) -> String {
    rules
        .iter()
        .map(|r| format!("`{}`", r.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scans every allow rule in file order: the verdict, the rule that allowed, and the reason as
/// flow records spell it, naming the nearest rules.
fn naive_mesh(
    m: &Manifest,
    from: &Function,
    to: &Function,
    method: &str,
    path: &str,
) -> (Verdict, Option<String>, String) {
    // Audit mode opens a flow with an audit-mode end, but never one from an endpoint.
    let audit = !from.is_endpoint() && (from.mode == Mode::Audit || to.mode == Mode::Audit);
    let refused = if audit { Verdict::Audit } else { Verdict::Deny };
    // An endpoint never makes a call, whatever a rule's `from` says.
    let connecting: Vec<&AllowRule> = m
        .allows
        .iter()
        .filter(|r| !from.is_endpoint() && selects(m, &r.from, from) && selects(m, &r.to, to))
        .collect();
    for r in &connecting {
        let path_ok = match &r.paths {
            Paths::Any => true,
            Paths::Only(list) => list
                .iter()
                .any(|p| PathPattern::parse(&p.text).unwrap().matches(path)),
        };
        if r.methods.admits(method) && path_ok {
            return (Verdict::Allow, Some(r.id.to_string()), "allowed".to_owned());
        }
    }
    let admitting: Vec<&AllowRule> = connecting
        .iter()
        .copied()
        .filter(|r| r.methods.admits(method))
        .collect();
    let reason = if connecting.is_empty() {
        format!(
            "no allow rule from `{}` to `{}`",
            from.identity(),
            to.identity()
        )
    } else if admitting.is_empty() {
        format!(
            "method `{method}` is not admitted by rule {}",
            ids(&connecting)
        )
    } else {
        format!("path `{path}` is not admitted by rule {}", ids(&admitting))
    };
    (refused, None, reason)
}

fn naive_egress(
    m: &Manifest,
    from: &Function,
    scheme: EgressScheme,
    host: &str,
    port: u16,
) -> (Verdict, Option<String>) {
    if from.subnet_kind == SubnetKind::Isolated {
        return (Verdict::Deny, None);
    }
    let rules = if from.is_endpoint() {
        // Endpoints never call out.
        &[][..]
    } else {
        &m.egress[..]
    };
    let ip: Option<IpAddr> = host.parse().ok();
    if ip.is_some_and(|ip| ip.is_loopback()) {
        return (Verdict::Deny, None);
    }
    for r in rules {
        if !selects(m, &r.from, from) {
            continue;
        }
        for t in &r.to {
            let host_ok = match (&t.host, ip) {
                (HostPattern::Name(n), None) => n == host,
                (HostPattern::Subdomain(d), None) => host.ends_with(&format!(".{d}")),
                (HostPattern::Cidr(net), Some(ip)) => net.contains(&ip),
                _ => false,
            };
            if host_ok && t.scheme.admits(scheme) && t.admits_port(port) {
                return (Verdict::Allow, Some(r.id.to_string()));
            }
        }
    }
    (
        if from.mode == Mode::Audit {
            Verdict::Audit
        } else {
            Verdict::Deny
        },
        None,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn indexed_engine_agrees_with_a_naive_scan(
        spec in spec(),
        mesh_requests in prop::collection::vec((0..40usize, 0..40usize, 0..METHODS.len(), 0..PATHS.len()), 20),
        egress_requests in prop::collection::vec((0..40usize, 0..3usize, 0..HOSTS.len(), 0..PORTS.len()), 20),
    ) {
        let m = manifest(&spec);
        let policy = Policy::compile(m.clone()).unwrap();
        let functions: Vec<&Function> = m.functions.values().collect();
        let id = |f: &Function| -> FunctionId { policy.function_id(f.name.as_str()).unwrap() };
        for (a, b, method, path) in mesh_requests {
            let (from, to) = (functions[a % functions.len()], functions[b % functions.len()]);
            let (method, path) = (METHODS[method], PATHS[path]);
            let got = policy.decide_mesh(id(from), id(to), method, path);
            let want = naive_mesh(&m, from, to, method, path);
            prop_assert_eq!(
                (got.verdict, got.rule.as_ref().map(ToString::to_string), got.reason.to_string()),
                want,
                "{} -> {} {} {}", from.name, to.name, method, path
            );
        }
        for (a, scheme, host, port) in egress_requests {
            let from = functions[a % functions.len()];
            let scheme = [EgressScheme::Http, EgressScheme::Https, EgressScheme::Tcp][scheme];
            let (host, port) = (HOSTS[host], PORTS[port]);
            let egress_host = match host.parse::<IpAddr>() {
                Ok(ip) => EgressHost::Ip(ip),
                Err(_) => EgressHost::Name(host),
            };
            let got = policy.decide_egress(id(from), scheme, egress_host, port);
            let want = naive_egress(&m, from, scheme, host, port);
            prop_assert_eq!((got.verdict, got.rule.as_ref().map(ToString::to_string)), want, "{} -> {}://{}:{}", from.name, scheme, host, port);
        }
    }
}

#[test]
fn an_empty_list_allows_nothing() {
    let mut spec = Spec {
        segment_labels: vec![vec![false, false]],
        functions: vec![
            (0, 1, vec![false; 3], vec![false; 2], false, false),
            (0, 1, vec![false; 3], vec![false; 2], false, false),
        ],
        allows: vec![(0, 0, Some(vec![false; METHODS.len()]), None)],
        egress: vec![],
    };
    let m = manifest(&spec);
    let policy = Policy::compile(m.clone()).unwrap();
    let f0 = policy.function_id("f0").unwrap();
    let d = policy.decide_mesh(f0, f0, "GET", "/a");
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        matches!(d.reason, Reason::MethodNotAllowed { .. }),
        "{:?}",
        d.reason
    );
    spec.allows = vec![(0, 0, None, Some(vec![false; 5]))];
    let policy = Policy::compile(manifest(&spec)).unwrap();
    let d = policy.decide_mesh(f0, f0, "GET", "/a");
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        matches!(d.reason, Reason::PathNotAllowed { .. }),
        "{:?}",
        d.reason
    );
}
