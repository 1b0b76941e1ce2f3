//! Findings about the rules themselves: rules that can never match, allow rules shadowed by
//! earlier ones, and cross-segment allow rules wider than the paths they need.
//!
//! These work on the selectors rules are written with and the functions each selects, never on
//! every pair of functions, so they stay fast on manifests with tens of thousands of rules.

use std::collections::BTreeSet;

use septa_manifest::{AllowRule, Manifest, Methods, Paths};
use septa_policy::path::PathPattern;
use septa_policy::{FunctionId, Policy};

use crate::findings::{Finding, Severity};
use crate::graph::{Graph, admits_nothing};

/// The functions on each side of every allow rule, in file order.
fn sides<'g>(manifest: &Manifest, graph: &'g Graph) -> Vec<(&'g [FunctionId], &'g [FunctionId])> {
    (0..manifest.allows.len())
        .map(|i| graph.allow_sides(i))
        .collect()
}

fn at(manifest: &Manifest, rule: &AllowRule) -> Option<String> {
    Some(format!("{}:{}", manifest.file.display(), rule.location))
}

/// Rules that can never match: a side selects no function it could apply to, or a list leaves
/// the rule nothing to admit.
pub(crate) fn dead_rules(policy: &Policy, graph: &Graph, out: &mut Vec<Finding>) {
    let manifest = policy.manifest();
    let selection = graph.selection();
    let mut dead = Vec::new();
    for (rule, (from, to)) in manifest.allows.iter().zip(sides(manifest, graph)) {
        let why = if from.is_empty() || to.is_empty() {
            "its selectors select no function it could apply to"
        } else if matches!(&rule.methods, Methods::Only(list) if list.is_empty()) {
            "it admits no method (`methods = []`)"
        } else if admits_nothing(&rule.methods, &rule.paths) {
            "it admits no path (`paths = []`)"
        } else {
            continue;
        };
        dead.push(("allow", &rule.id, rule.location, why));
    }
    for rule in &manifest.egress {
        let applies = selection
            .get(&rule.from)
            .iter()
            .any(|&f| policy.function(f).spec.subnet_kind != septa_manifest::SubnetKind::Isolated);
        let why = if !applies {
            "its selectors select no function it could apply to"
        } else if rule.to.is_empty() {
            "it names no destination (`to = []`)"
        } else {
            continue;
        };
        dead.push(("egress", &rule.id, rule.location, why));
    }
    for (kind, id, location, why) in dead {
        out.push(Finding {
            severity: Severity::Low,
            kind: "rule-never-matches",
            subject: format!("{kind}:{id}"),
            message: format!("{kind} rule `{id}` can never match: {why}"),
            rules: vec![id.to_string()],
            path: Vec::new(),
            location: Some(format!("{}:{location}", manifest.file.display())),
            position: Some(location),
        });
    }
}

/// An allow rule as the shadowing check reads it.
struct Admits {
    /// Its methods as numbers (see [`MethodNumbers`]); `None`: any method.
    methods: Option<Vec<u16>>,
    /// `/...` for any path.
    paths: Vec<PathPattern>,
}

/// Methods numbered as first seen, so comparing two is comparing two integers.
#[derive(Default)]
struct MethodNumbers<'m>(std::collections::HashMap<&'m str, u16>);

impl<'m> MethodNumbers<'m> {
    fn number(&mut self, method: &'m str) -> u16 {
        let next = self.0.len() as u16;
        *self.0.entry(method).or_insert(next)
    }
}

impl Admits {
    fn of<'m>(rule: &'m AllowRule, numbers: &mut MethodNumbers<'m>) -> Option<Self> {
        let methods = match &rule.methods {
            Methods::Any => None,
            Methods::Only(list) => Some(list.iter().map(|m| numbers.number(m)).collect()),
        };
        let paths = match &rule.paths {
            Paths::Any => vec![PathPattern::parse("/...").ok()?],
            Paths::Only(list) => list
                .iter()
                .map(|p| PathPattern::parse(&p.text).ok())
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Self { methods, paths })
    }

    /// Whether this rule admits `method` (`None`: every method) on every path of `path`.
    fn covers(&self, method: Option<u16>, path: &PathPattern) -> bool {
        let method_ok = match (&self.methods, method) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(list), Some(m)) => list.contains(&m),
        };
        method_ok && self.paths.iter().any(|own| own.covers(path))
    }

    /// The (method, path) pieces whose union is everything the rule admits.
    fn pieces(&self) -> Vec<(Option<u16>, &PathPattern)> {
        let methods: Vec<Option<u16>> = match &self.methods {
            None => vec![None],
            Some(list) => list.iter().map(|&m| Some(m)).collect(),
        };
        methods
            .iter()
            .flat_map(|&m| self.paths.iter().map(move |p| (m, p)))
            .collect()
    }
}

/// Allow rules that never decide a flow: for every (source, destination, method, path) they
/// admit, an earlier rule admits it too, and the first admitting rule in file order decides.
///
/// A piece of a rule (one method on one path pattern, for one source function) counts as
/// covered when, for every destination, one earlier rule connecting the two admits that method
/// and covers that pattern. Earlier rules may share the work between them, across sources,
/// destinations and pieces; a pattern covered only by the union of several earlier patterns is
/// not counted, so a rule reported here is shadowed for certain.
pub(crate) fn shadowed_rules(policy: &Policy, graph: &Graph, out: &mut Vec<Finding>) {
    let manifest = policy.manifest();
    let sides = sides(manifest, graph);
    let mut numbers = MethodNumbers::default();
    let admits: Vec<Option<Admits>> = manifest
        .allows
        .iter()
        .zip(&sides)
        .map(|(r, (from, to))| {
            let live = !from.is_empty() && !to.is_empty() && !admits_nothing(&r.methods, &r.paths);
            if live {
                Admits::of(r, &mut numbers)
            } else {
                None
            }
        })
        .collect();
    // The live rules by the selector they are written `from`, in file order, and the `from`
    // selectors that select each function.
    let mut by_source: Vec<Vec<usize>> = vec![Vec::new(); graph.selection().len()];
    for (i, own) in admits.iter().enumerate() {
        if let (Some(_), (Some(from), _)) = (own, graph.allow_selectors(i)) {
            by_source[from.index()].push(i);
        }
    }
    let mut sources_of: Vec<Vec<&[usize]>> = vec![Vec::new(); policy.functions().len()];
    for rules in &by_source {
        let Some(&first) = rules.first() else {
            continue;
        };
        for f in sides[first].0 {
            sources_of[f.index()].push(rules.as_slice());
        }
    }
    let rules = Rules {
        sides: &sides,
        admits: &admits,
        sources_of: &sources_of,
    };
    let mut covered = Coverage::new(policy.functions().len());
    let mut wanted = Coverage::new(policy.functions().len());
    for (i, rule) in manifest.allows.iter().enumerate() {
        let Some(by) = rules.shadowing(i, &mut covered, &mut wanted) else {
            continue;
        };
        let names: Vec<String> = by
            .iter()
            .map(|&e| manifest.allows[e].id.to_string())
            .collect();
        let listed = names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let (one, them) = if names.len() == 1 {
            ("rule", "it")
        } else {
            ("rules", "they")
        };
        out.push(Finding {
            severity: Severity::Low,
            kind: "rule-shadowed",
            subject: format!("allow:{}", rule.id),
            message: format!(
                "allow rule `{}` is shadowed by earlier {one} {listed}: every flow it admits ({} → {}, {}) is admitted first by {them}, so `{}` never decides a flow; remove it or narrow {listed}",
                rule.id,
                rule.from,
                rule.to,
                graph_conditions(rule),
                rule.id
            ),
            rules: std::iter::once(rule.id.to_string()).chain(names).collect(),
            path: Vec::new(),
            location: at(manifest, rule),
            position: Some(rule.location),
        });
    }
}

/// A set of functions that is emptied without clearing a table (a function is in it when its
/// stamp is the current one): the destinations of the rule being checked, or those of them
/// one piece already covers.
struct Coverage {
    stamp: Vec<u32>,
    current: u32,
}

impl Coverage {
    fn new(functions: usize) -> Self {
        Self {
            stamp: vec![0; functions],
            current: 0,
        }
    }

    fn next(&mut self) {
        self.current += 1;
    }

    /// Whether `f` is marked.
    fn has(&self, f: FunctionId) -> bool {
        self.stamp[f.index()] == self.current
    }

    /// Marks `f`; true when it was not marked yet.
    fn mark(&mut self, f: FunctionId) -> bool {
        let slot = &mut self.stamp[f.index()];
        let fresh = *slot != self.current;
        *slot = self.current;
        fresh
    }
}

/// What the shadowing check looks rules up in.
struct Rules<'a> {
    /// Per allow rule, the functions on each side.
    sides: &'a [(&'a [FunctionId], &'a [FunctionId])],
    /// Per allow rule, what it admits; `None` for rules that admit nothing.
    admits: &'a [Option<Admits>],
    /// Per function, the live rules of each `from` selector that selects it, in file order.
    sources_of: &'a [Vec<&'a [usize]>],
}

impl Rules<'_> {
    /// The earlier rules that together admit everything rule `i` admits, or `None` when some
    /// flow it admits is not admitted earlier (or it admits nothing).
    fn shadowing(
        &self,
        i: usize,
        covered: &mut Coverage,
        wanted: &mut Coverage,
    ) -> Option<BTreeSet<usize>> {
        let own = self.admits[i].as_ref()?;
        let (sources, destinations) = self.sides[i];
        wanted.next();
        for &d in destinations {
            wanted.mark(d);
        }
        let wanted = &*wanted;
        let pieces = own.pieces();
        let mut by = BTreeSet::new();
        let mut earlier = Vec::new();
        for &source in sources {
            // The earlier rules from this source that reach one of the destinations at all:
            // comparing functions is cheaper than comparing methods and paths.
            earlier.clear();
            earlier.extend(
                self.sources_of[source.index()]
                    .iter()
                    .flat_map(|rules| rules.iter().copied().take_while(|&e| e < i))
                    .filter(|&e| {
                        let theirs = self.sides[e].1;
                        if theirs.len() < destinations.len() {
                            theirs.iter().any(|&d| wanted.has(d))
                        } else {
                            destinations.iter().any(|d| theirs.binary_search(d).is_ok())
                        }
                    }),
            );
            if earlier.is_empty() {
                return None;
            }
            for &(method, path) in &pieces {
                covered.next();
                let mut left = destinations.len();
                for &e in &earlier {
                    let Some(theirs) = &self.admits[e] else {
                        continue;
                    };
                    if !theirs.covers(method, path) {
                        continue;
                    }
                    let theirs = self.sides[e].1;
                    let mut helped = false;
                    for &d in destinations {
                        if theirs.binary_search(&d).is_ok() && covered.mark(d) {
                            left -= 1;
                            helped = true;
                        }
                    }
                    if helped {
                        by.insert(e);
                    }
                    if left == 0 {
                        break;
                    }
                }
                if left > 0 {
                    return None;
                }
            }
        }
        Some(by)
    }
}

fn graph_conditions(rule: &AllowRule) -> String {
    let methods = match &rule.methods {
        Methods::Any => "any method".to_owned(),
        Methods::Only(list) => list.join("|"),
    };
    let paths = match &rule.paths {
        Paths::Any => "any path".to_owned(),
        Paths::Only(list) => list
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("{methods} {paths}")
}

/// Allow rules that cross a segment boundary and admit any method, any path, or a whole tree
/// of paths (`/...`): a boundary should be crossed for the calls the caller needs, no more.
pub(crate) fn wide_cross_segment_rules(policy: &Policy, graph: &Graph, out: &mut Vec<Finding>) {
    let manifest = policy.manifest();
    let segment = |f: &FunctionId| policy.function(*f).spec.placement.segment.as_str();
    for (rule, (from, to)) in manifest.allows.iter().zip(sides(manifest, graph)) {
        if admits_nothing(&rule.methods, &rule.paths) {
            continue;
        }
        let Some(first) = from.first().map(segment) else {
            continue;
        };
        // It crosses unless every function on both sides is in one segment.
        let crosses = from.iter().chain(to).any(|f| segment(f) != first);
        if to.is_empty() || !crosses {
            continue;
        }
        let Some(narrower) = narrower(rule) else {
            continue;
        };
        let list = |side: &[FunctionId]| {
            let names: BTreeSet<&str> = side.iter().map(segment).collect();
            let noun = if names.len() == 1 {
                "segment"
            } else {
                "segments"
            };
            let names: Vec<String> = names.iter().map(|s| format!("`{s}`")).collect();
            format!("{noun} {}", names.join(", "))
        };
        out.push(Finding {
            severity: Severity::Medium,
            kind: "cross-segment-wider-than-needed",
            subject: format!("allow:{}", rule.id),
            message: format!(
                "allow rule `{}` crosses from {} to {} with {}; a narrower rule names only what the caller needs: {}",
                rule.id,
                list(from),
                list(to),
                graph_conditions(rule),
                narrower
            ),
            rules: vec![rule.id.to_string()],
            path: Vec::new(),
            location: at(manifest, rule),
            position: Some(rule.location),
        });
    }
}

/// What a narrower version of `rule` would say, or `None` when it is already narrow (named
/// methods, exact or parameterized paths).
fn narrower(rule: &AllowRule) -> Option<String> {
    let mut changes = Vec::new();
    if rule.methods == Methods::Any {
        changes.push(
            "`methods = [\"GET\"]` (the methods it calls with) instead of any method".to_owned(),
        );
    }
    match &rule.paths {
        Paths::Any => changes.push(
            "`paths = [\"/orders/{id}\"]` (the paths it calls) instead of any path".to_owned(),
        ),
        Paths::Only(list) => {
            for p in list.iter().filter(|p| p.text.ends_with("/...")) {
                let prefix = p.text.trim_end_matches("/...");
                let replacement = if prefix.is_empty() {
                    "`\"/orders/{id}\"` (the paths it calls)".to_owned()
                } else {
                    format!(
                        "`\"{prefix}\"` and `\"{prefix}/{{id}}\"` (one level, the paths it calls)"
                    )
                };
                changes.push(format!("{replacement} instead of `{}`", p.text));
            }
        }
    }
    (!changes.is_empty()).then(|| changes.join("; "))
}
