//! Routes nested under a wildcard route that guards less: `/api/orders` with its own
//! authentication under an open `/api/...`.
//!
//! The gateway refuses respellings of the nested route's path that the wildcard would match
//! (`/api/ORDERS`, `/api/orders/`, see `septa_policy::path::fold_path`), but every path below it
//! (`/api/orders/7`) goes to the wildcard's function under the wildcard's checks; if that function
//! serves such paths as the nested route's, the nested route's checks are skipped. The auditor
//! names both routes so the operator can guard the subtree (`/api/orders/...`) or split them.

use septa_policy::path::{PathPattern, fold_pattern};
use septa_policy::{CompiledRoute, Policy, RuleId};

use crate::declared;
use crate::findings::{Finding, Severity};

/// One finding per (route, wildcard route that covers it and guards less).
pub(crate) fn nested_routes(policy: &Policy, out: &mut Vec<Finding>) {
    let routes: Vec<(&CompiledRoute, Option<PathPattern>)> = policy
        .routes()
        .map(|route| (route, fold_pattern(&route.pattern)))
        .collect();
    for (nested, nested_folded) in &routes {
        if nested.pattern.has_wildcard() {
            continue;
        }
        for (wildcard, wildcard_folded) in &routes {
            // Compared as a lenient router reads them, so `/API/...` covers `/api/orders` too.
            let covers = match (wildcard_folded, nested_folded) {
                (Some(w), Some(n)) => w.covers(n),
                _ => wildcard.pattern.covers(&nested.pattern),
            };
            if !wildcard.pattern.has_wildcard() || !covers || wildcard.guards_at_least(nested) {
                continue;
            }
            out.push(finding(policy, nested, wildcard));
        }
    }
}

fn finding(policy: &Policy, nested: &CompiledRoute, wildcard: &CompiledRoute) -> Finding {
    let function = |route: &CompiledRoute| policy.function(route.function).identity.clone();
    let declared_at = policy.declared_at(&RuleId::Route(nested.id.clone()));
    let below = format!("{}/...", nested.pattern.as_str().trim_end_matches('/'));
    Finding {
        severity: Severity::Medium,
        kind: "route-nested-under-weaker-wildcard",
        subject: format!("route:{}", nested.id),
        message: format!(
            "route `{}` (`{}` → `{}`) is nested under route `{}` (`{}` → `{}`), which guards less: \
             respellings of `{}` are refused, but paths below it reach `{}` under `{}`'s checks \
             only; if `{}` serves them as `{}`'s, guard `{below}` as `{}` is guarded",
            nested.id,
            nested.pattern,
            function(nested),
            wildcard.id,
            wildcard.pattern,
            function(wildcard),
            nested.pattern,
            function(wildcard),
            wildcard.id,
            function(wildcard),
            nested.id,
            nested.id,
        ),
        rules: vec![nested.id.to_string(), wildcard.id.to_string()],
        path: Vec::new(),
        location: declared_at.map(|at| declared::at(policy, at)),
        position: declared_at,
    }
}
