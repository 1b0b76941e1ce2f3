//! Allow rules shadowed by earlier ones: rules that never decide a flow, because for every
//! flow they admit an earlier rule admits it too, and the first admitting rule decides.
//!
//! The check works on the selectors rules are written with and the functions the policy says
//! each selects, comparing a rule only with the earlier rules from the same sources.

use std::collections::{BTreeSet, HashMap};

use septa_manifest::Methods;
use septa_policy::path::PathPattern;
use septa_policy::{AllowRuleView, FunctionId, Policy};

use crate::declared;
use crate::findings::{Finding, Severity};
use crate::rules::conditions;

/// Allow rules that never decide a flow: for every (source, destination, method, path) they
/// admit, an earlier rule admits it too, and the first admitting rule in file order decides.
///
/// A piece of a rule (one method on one path pattern, for one source function) counts as
/// covered when, for every destination, one earlier rule connecting the two admits that method
/// and covers that pattern. Earlier rules may share the work between them, across sources,
/// destinations and pieces; a pattern covered only by the union of several earlier patterns is
/// not counted, so a rule reported here is shadowed for certain.
pub(crate) fn shadowed_rules(policy: &Policy, out: &mut Vec<Finding>) {
    let allows: Vec<AllowRuleView<'_>> = policy.allow_rules().collect();
    let mut numbers = MethodNumbers::default();
    let admits: Vec<Option<Admits>> = allows
        .iter()
        .map(|r| {
            let live = !r.sources.is_empty() && !r.destinations.is_empty() && !r.admits_nothing();
            if live {
                Admits::of(r, &mut numbers)
            } else {
                None
            }
        })
        .collect();
    let by_selector = rules_by_selector(policy, &allows, &admits);
    let sources_of = rules_by_source(policy, &allows, &by_selector);
    let rules = Rules {
        views: &allows,
        admits: &admits,
        sources_of: &sources_of,
    };
    let mut covered = Coverage::new(policy.functions().len());
    let mut wanted = Coverage::new(policy.functions().len());
    for (i, rule) in allows.iter().enumerate() {
        if let Some(by) = rules.shadowing(i, &mut covered, &mut wanted) {
            out.push(finding(
                policy,
                rule,
                by.iter().map(|&e| allows[e].id.to_string()),
            ));
        }
    }
}

/// The live rules by the selector they are written `from`, in file order.
fn rules_by_selector(
    policy: &Policy,
    allows: &[AllowRuleView<'_>],
    admits: &[Option<Admits>],
) -> Vec<Vec<usize>> {
    let mut by_selector: Vec<Vec<usize>> = vec![Vec::new(); policy.selection().len()];
    for (i, (rule, own)) in allows.iter().zip(admits).enumerate() {
        if let (Some(_), Some(from)) = (own, rule.from_id) {
            by_selector[from.index()].push(i);
        }
    }
    by_selector
}

/// Per function, the live rules of each `from` selector that selects it, in file order.
fn rules_by_source<'r>(
    policy: &Policy,
    allows: &[AllowRuleView<'_>],
    by_selector: &'r [Vec<usize>],
) -> Vec<Vec<&'r [usize]>> {
    let mut sources_of: Vec<Vec<&[usize]>> = vec![Vec::new(); policy.functions().len()];
    for rules in by_selector {
        let Some(&first) = rules.first() else {
            continue;
        };
        for f in allows[first].sources {
            sources_of[f.index()].push(rules);
        }
    }
    sources_of
}

/// The finding for `rule`, shadowed by the rules named `by`.
fn finding(policy: &Policy, rule: &AllowRuleView<'_>, by: impl Iterator<Item = String>) -> Finding {
    let names: Vec<String> = by.collect();
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
    Finding {
        severity: Severity::Low,
        kind: "rule-shadowed",
        subject: format!("allow:{}", rule.id),
        message: format!(
            "allow rule `{}` is shadowed by earlier {one} {listed}: every flow it admits ({} → {}, {}) is admitted first by {them}, so `{}` never decides a flow; remove it or narrow {listed}",
            rule.id,
            rule.from,
            rule.to,
            conditions(rule),
            rule.id
        ),
        rules: std::iter::once(rule.id.to_string()).chain(names).collect(),
        path: Vec::new(),
        location: Some(declared::at(policy, rule.location)),
        position: Some(rule.location),
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
struct MethodNumbers<'m>(HashMap<&'m str, u16>);

impl<'m> MethodNumbers<'m> {
    fn number(&mut self, method: &'m str) -> u16 {
        let next = self.0.len() as u16;
        *self.0.entry(method).or_insert(next)
    }
}

impl Admits {
    fn of<'m>(rule: &AllowRuleView<'m>, numbers: &mut MethodNumbers<'m>) -> Option<Self> {
        let methods = match rule.methods {
            Methods::Any => None,
            Methods::Only(list) => Some(list.iter().map(|m| numbers.number(m)).collect()),
        };
        let paths = match rule.paths {
            None => vec![PathPattern::parse("/...").ok()?],
            Some(list) => list.to_vec(),
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
    /// Every allow rule, in file order.
    views: &'a [AllowRuleView<'a>],
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
        let (sources, destinations) = (self.views[i].sources, self.views[i].destinations);
        wanted.next();
        for &d in destinations {
            wanted.mark(d);
        }
        let pieces = own.pieces();
        let mut by = BTreeSet::new();
        let mut earlier = Vec::new();
        for &source in sources {
            self.earlier_reaching(source, i, wanted, &mut earlier);
            if earlier.is_empty() {
                return None;
            }
            for &(method, path) in &pieces {
                if !self.cover_piece(&earlier, destinations, (method, path), covered, &mut by) {
                    return None;
                }
            }
        }
        Some(by)
    }

    /// The rules before `i` from `source` that reach one of the `wanted` destinations at all:
    /// comparing functions is cheaper than comparing methods and paths.
    fn earlier_reaching(
        &self,
        source: FunctionId,
        i: usize,
        wanted: &Coverage,
        earlier: &mut Vec<usize>,
    ) {
        let destinations = self.views[i].destinations;
        earlier.clear();
        earlier.extend(
            self.sources_of[source.index()]
                .iter()
                .flat_map(|rules| rules.iter().copied().take_while(|&e| e < i))
                .filter(|&e| {
                    let theirs = self.views[e].destinations;
                    if theirs.len() < destinations.len() {
                        theirs.iter().any(|&d| wanted.has(d))
                    } else {
                        destinations.iter().any(|d| theirs.binary_search(d).is_ok())
                    }
                }),
        );
    }

    /// Whether the `earlier` rules together admit `piece` for every one of `destinations`;
    /// the rules that helped are added to `by`.
    fn cover_piece(
        &self,
        earlier: &[usize],
        destinations: &[FunctionId],
        (method, path): (Option<u16>, &PathPattern),
        covered: &mut Coverage,
        by: &mut BTreeSet<usize>,
    ) -> bool {
        covered.next();
        let mut left = destinations.len();
        for &e in earlier {
            let Some(theirs) = &self.admits[e] else {
                continue;
            };
            if !theirs.covers(method, path) {
                continue;
            }
            let mut helped = false;
            for &d in destinations {
                if self.views[e].destinations.binary_search(&d).is_ok() && covered.mark(d) {
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
        left == 0
    }
}
