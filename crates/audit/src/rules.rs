//! Findings about the rules themselves: rules that can never match, and cross-segment allow
//! rules wider than the paths they need. Allow rules shadowed by earlier ones are `shadowed`'s.
//!
//! These work on the selectors rules are written with and the functions the policy says each
//! selects, never on every pair of functions, so they stay fast on manifests with tens of
//! thousands of rules.

use std::collections::BTreeSet;

use septa_manifest::{Location, Methods};
use septa_policy::{AllowRuleView, FunctionId, Policy};

use crate::declared;
use crate::findings::{Finding, Severity};

/// Rules that can never match: a side selects no function it could apply to, or a list leaves
/// the rule nothing to admit.
pub(crate) fn dead_rules(policy: &Policy, out: &mut Vec<Finding>) {
    let mut dead: Vec<(&str, String, Location, &str)> = Vec::new();
    for rule in policy.allow_rules() {
        let why = if rule.sources.is_empty() || rule.destinations.is_empty() {
            "its selectors select no function it could apply to"
        } else if matches!(rule.methods, Methods::Only(list) if list.is_empty()) {
            "it admits no method (`methods = []`)"
        } else if rule.admits_nothing() {
            "it admits no path (`paths = []`)"
        } else {
            continue;
        };
        dead.push(("allow", rule.id.to_string(), rule.location, why));
    }
    for rule in policy.egress_rules() {
        let why = if rule.sources.is_empty() {
            "its selectors select no function it could apply to"
        } else if rule.targets.is_empty() {
            "it names no destination (`to = []`)"
        } else {
            continue;
        };
        dead.push(("egress", rule.id.to_string(), rule.location, why));
    }
    for (kind, id, location, why) in dead {
        out.push(Finding {
            severity: Severity::Low,
            kind: "rule-never-matches",
            subject: format!("{kind}:{id}"),
            message: format!("{kind} rule `{id}` can never match: {why}"),
            rules: vec![id],
            path: Vec::new(),
            location: Some(declared::at(policy, location)),
            position: Some(location),
        });
    }
}

/// A rule's methods and paths in words, as findings about it spell them.
pub(crate) fn conditions(rule: &AllowRuleView<'_>) -> String {
    let methods = match rule.methods {
        Methods::Any => "any method".to_owned(),
        Methods::Only(list) => list.join("|"),
    };
    let paths = match rule.paths {
        None => "any path".to_owned(),
        Some(list) => list
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("{methods} {paths}")
}

/// Allow rules that cross a segment boundary and admit any method, any path, or a whole tree
/// of paths (`/...`): a boundary should be crossed for the calls the caller needs, no more.
pub(crate) fn wide_cross_segment_rules(policy: &Policy, out: &mut Vec<Finding>) {
    let segment = |f: &FunctionId| policy.function(*f).spec.placement.segment.as_str();
    for rule in policy.allow_rules() {
        let (from, to) = (rule.sources, rule.destinations);
        if rule.admits_nothing() {
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
        let Some(narrower) = narrower(&rule) else {
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
                conditions(&rule),
                narrower
            ),
            rules: vec![rule.id.to_string()],
            path: Vec::new(),
            location: Some(declared::at(policy, rule.location)),
            position: Some(rule.location),
        });
    }
}

/// What a narrower version of `rule` would say, or `None` when it is already narrow (named
/// methods, exact or parameterized paths).
fn narrower(rule: &AllowRuleView<'_>) -> Option<String> {
    let mut changes = Vec::new();
    if *rule.methods == Methods::Any {
        changes.push(
            "`methods = [\"GET\"]` (the methods it calls with) instead of any method".to_owned(),
        );
    }
    match rule.paths {
        None => changes.push(
            "`paths = [\"/orders/{id}\"]` (the paths it calls) instead of any path".to_owned(),
        ),
        Some(list) => {
            for p in list
                .iter()
                .map(|p| p.as_str())
                .filter(|p| p.ends_with("/..."))
            {
                let prefix = p.trim_end_matches("/...");
                let replacement = if prefix.is_empty() {
                    "`\"/orders/{id}\"` (the paths it calls)".to_owned()
                } else {
                    format!(
                        "`\"{prefix}\"` and `\"{prefix}/{{id}}\"` (one level, the paths it calls)"
                    )
                };
                changes.push(format!("{replacement} instead of `{p}`"));
            }
        }
    }
    (!changes.is_empty()).then(|| changes.join("; "))
}
