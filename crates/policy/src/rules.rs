//! What each rule connects, as the policy compiled it: every allow rule and every egress rule in
//! file order with the functions on its sides, and where each route and rule is declared.
//!
//! The auditor, the dashboard and `septa query` read the rules here, never from the manifest:
//! the sides are [`crate::Selection`]'s lists and the path patterns are the ones
//! [`Policy::decide_mesh`] checks, so what they prove about a rule is what the engine enforces.

use std::collections::HashMap;

use septa_manifest::{EgressTarget, Location, Manifest, Methods, Name, Selector};

use crate::decision::RuleId;
use crate::engine::Policy;
use crate::functions::FunctionId;
use crate::path::PathPattern;
use crate::selection::{Selection, SelectorId};

/// An allow rule as the policy compiled it.
#[derive(Clone, Copy, Debug)]
pub struct AllowRuleView<'p> {
    /// Its id.
    pub id: &'p Name,
    /// Who may call, as written.
    pub from: &'p Selector,
    /// Whom they may call, as written.
    pub to: &'p Selector,
    /// The number of `from`, `None` when it selects nothing.
    pub from_id: Option<SelectorId>,
    /// The number of `to`, `None` when it selects nothing.
    pub to_id: Option<SelectorId>,
    /// The functions it lets call, in id order: those `from` selects, less endpoints.
    pub sources: &'p [FunctionId],
    /// The functions and endpoints it lets them call, in id order.
    pub destinations: &'p [FunctionId],
    /// The methods it admits.
    pub methods: &'p Methods,
    /// The paths it admits; `None` admits any.
    pub paths: Option<&'p [PathPattern]>,
    /// Where it is declared.
    pub location: Location,
}

impl AllowRuleView<'_> {
    /// Whether its lists leave it nothing to admit (`methods = []` or `paths = []`).
    pub fn admits_nothing(&self) -> bool {
        matches!(self.methods, Methods::Only(list) if list.is_empty())
            || self.paths.is_some_and(<[PathPattern]>::is_empty)
    }
}

/// An egress rule as the policy compiled it.
#[derive(Clone, Copy, Debug)]
pub struct EgressRuleView<'p> {
    /// Its id.
    pub id: &'p Name,
    /// Which functions, as written.
    pub from: &'p Selector,
    /// The number of `from`, `None` when it selects nothing.
    pub from_id: Option<SelectorId>,
    /// The functions it applies to, in id order: those `from` selects that may reach outside
    /// (no endpoint, none in an isolated subnet).
    pub sources: &'p [FunctionId],
    /// The destinations it opens, in file order.
    pub targets: &'p [EgressTarget],
    /// Where it is declared.
    pub location: Location,
}

/// The two selectors of an allow rule and where it is declared; the rest of it is the mesh's
/// compiled rule at the same position.
#[derive(Debug)]
struct AllowEnds {
    from: Selector,
    to: Selector,
    from_id: Option<SelectorId>,
    to_id: Option<SelectorId>,
    location: Location,
}

/// An egress rule, with the number of its selector.
#[derive(Debug)]
struct EgressDeclaration {
    id: Name,
    from: Selector,
    from_id: Option<SelectorId>,
    targets: Vec<EgressTarget>,
    location: Location,
}

/// The rules as the auditor reads them, in file order, and where every route and rule is
/// declared.
#[derive(Debug, Default)]
pub(crate) struct RuleTable {
    allows: Vec<AllowEnds>,
    egress: Vec<EgressDeclaration>,
    declared: HashMap<RuleId, Location>,
}

impl RuleTable {
    /// The rules of `manifest`, their selectors numbered by `selection`.
    pub(crate) fn new(manifest: &Manifest, selection: &Selection) -> Self {
        let allows = manifest
            .allows
            .iter()
            .map(|r| AllowEnds {
                from: r.from.clone(),
                to: r.to.clone(),
                from_id: selection.id(&r.from),
                to_id: selection.id(&r.to),
                location: r.location,
            })
            .collect();
        let egress = manifest
            .egress
            .iter()
            .map(|r| EgressDeclaration {
                id: r.id.clone(),
                from: r.from.clone(),
                from_id: selection.id(&r.from),
                targets: r.to.clone(),
                location: r.location,
            })
            .collect();
        let routes = manifest
            .routes
            .iter()
            .map(|r| (RuleId::Route(r.id.clone()), r.location));
        let allow_ids = manifest
            .allows
            .iter()
            .map(|r| (RuleId::Allow(r.id.clone()), r.location));
        let egress_ids = manifest
            .egress
            .iter()
            .map(|r| (RuleId::Egress(r.id.clone()), r.location));
        let issuers = manifest
            .jwt
            .values()
            .map(|i| (RuleId::IssuerKeys(i.name.clone()), i.location));
        Self {
            allows,
            egress,
            declared: routes
                .chain(allow_ids)
                .chain(egress_ids)
                .chain(issuers)
                .collect(),
        }
    }
}

impl Policy {
    /// Every allow rule in file order, with the functions on its two sides: what the auditor's
    /// graph, the dashboard and `septa query` connect, read as [`Policy::decide_mesh`] reads it.
    pub fn allow_rules(&self) -> impl ExactSizeIterator<Item = AllowRuleView<'_>> + '_ {
        self.rules
            .allows
            .iter()
            .zip(&self.mesh.allows)
            .map(|(ends, rule)| AllowRuleView {
                id: &rule.id,
                from: &ends.from,
                to: &ends.to,
                from_id: ends.from_id,
                to_id: ends.to_id,
                sources: self.selection.sources(ends.from_id),
                destinations: self.selection.functions(ends.to_id),
                methods: &rule.methods,
                paths: rule.paths.as_deref(),
                location: ends.location,
            })
    }

    /// Every egress rule in file order, with the functions it applies to: read as
    /// [`Policy::decide_egress`]'s index was built.
    pub fn egress_rules(&self) -> impl ExactSizeIterator<Item = EgressRuleView<'_>> + '_ {
        self.rules.egress.iter().map(|r| EgressRuleView {
            id: &r.id,
            from: &r.from,
            from_id: r.from_id,
            sources: self.selection.outbound(r.from_id),
            targets: &r.targets,
            location: r.location,
        })
    }

    /// Where `rule` is declared in the manifest: the route, the allow or egress rule, or the
    /// `[jwt.NAME]` issuer whose keys it fetches.
    pub fn declared_at(&self, rule: &RuleId) -> Option<Location> {
        self.rules.declared.get(rule).copied()
    }
}
