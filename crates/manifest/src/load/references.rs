//! What rules may refer to ([`References`]): the declared places and labels, the rule ids claimed
//! so far, and the parsing of a selector into one that names something that exists.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;

use serde_spanned::Spanned;

use super::Loader;
use crate::diagnostic::did_you_mean;
use crate::model::*;
use crate::selector::Selector;

impl Loader {
    /// Parses a rule's `from` or `to` and checks that what it names exists.
    pub(super) fn selector(
        &mut self,
        raw: &Spanned<String>,
        refs: &References,
        field: &str,
    ) -> Option<Selector> {
        self.selector_or_gateway(raw, refs, field, false)
    }

    /// Parses `from`, `to` or `except_through` of an invariant, where `gateway` is a place.
    pub(super) fn invariant_selector(
        &mut self,
        raw: &Spanned<String>,
        refs: &References,
    ) -> Option<Selector> {
        self.selector_or_gateway(raw, refs, "", true)
    }

    fn selector_or_gateway(
        &mut self,
        raw: &Spanned<String>,
        refs: &References,
        field: &str,
        gateway_is_a_place: bool,
    ) -> Option<Selector> {
        let sel = match Selector::parse(raw.get_ref()) {
            Ok(s) => s,
            Err(e) => {
                self.error(&raw.span(), e);
                return None;
            }
        };
        let span = raw.span();
        let known = match &sel {
            Selector::Gateway if gateway_is_a_place => true,
            Selector::Gateway => {
                self.error_help(
                    &span,
                    format!("`{field} = \"gateway\"` is not a rule: the gateway is opened only by `[[route]]` entries"),
                    "declare a `[[route]]` to a function in a public subnet",
                );
                false
            }
            Selector::Function(n) => self.known_function(&span, n, false, refs),
            Selector::Endpoint(n) => self.known_function(&span, n, true, refs),
            place_or_label => self.known_place_or_label(&span, place_or_label, refs),
        };
        known.then_some(sel)
    }

    /// Whether the segment, subnet, group or label `sel` names is declared; reports it if not.
    fn known_place_or_label(
        &mut self,
        span: &Range<usize>,
        sel: &Selector,
        refs: &References,
    ) -> bool {
        match sel {
            Selector::Segment(n) if !refs.segments.contains_key(n) => {
                let hint = did_you_mean(n.as_str(), refs.segments.keys().map(Name::as_str));
                self.unknown(span, "segment", n.as_str(), hint, "[segment.NAME]");
                false
            }
            Selector::Subnet(seg, sub)
                if !refs
                    .segments
                    .get(seg)
                    .is_some_and(|s| s.subnets.contains_key(sub)) =>
            {
                self.unknown(
                    span,
                    "subnet",
                    &format!("{seg}/{sub}"),
                    None,
                    "subnets = { NAME = ... } in its segment",
                );
                false
            }
            Selector::Group(n) if !refs.groups.contains(n.as_str()) => {
                let hint = did_you_mean(n.as_str(), refs.groups.iter().copied());
                self.unknown(span, "group", n.as_str(), hint, "[group.NAME]");
                false
            }
            Selector::Label(n) if !refs.labels.contains(n.as_str()) => {
                let hint = did_you_mean(n.as_str(), refs.labels.iter().map(String::as_str));
                self.error_help(
                    span,
                    match hint {
                        Some(h) => {
                            format!("no segment or function has label `{n}` (did you mean `{h}`?)")
                        }
                        None => format!("no segment or function has label `{n}`"),
                    },
                    "add it to `labels = [...]` of a segment or function",
                );
                false
            }
            _ => true,
        }
    }

    /// Whether `n` is a declared function, or with `is_endpoint` a declared endpoint; reports it
    /// if not, and names the right prefix when it is the other kind.
    fn known_function(
        &mut self,
        span: &Range<usize>,
        n: &Name,
        is_endpoint: bool,
        refs: &References,
    ) -> bool {
        let (kind, section, other, mismatch) = if is_endpoint {
            (
                "endpoint",
                "[endpoint.NAME]",
                "function",
                "is a function, not an endpoint",
            )
        } else {
            (
                "function",
                "[function.NAME]",
                "endpoint",
                "is an endpoint, not a function",
            )
        };
        match refs.functions.get(n) {
            Some(f) if f.is_endpoint() == is_endpoint => true,
            Some(_) => {
                self.error_help(
                    span,
                    format!("`{n}` {mismatch}"),
                    format!("write `{other}:{n}`"),
                );
                false
            }
            None => {
                let names = refs
                    .functions
                    .values()
                    .filter(|f| f.is_endpoint() == is_endpoint)
                    .map(|f| f.name.as_str());
                let hint = did_you_mean(n.as_str(), names);
                self.unknown(span, kind, n.as_str(), hint, section);
                false
            }
        }
    }
}

/// What rules may refer to, and the rule ids claimed so far.
pub(super) struct References<'a> {
    segments: &'a BTreeMap<Name, Segment>,
    groups: BTreeSet<&'a str>,
    functions: &'a BTreeMap<Name, Function>,
    /// The components in isolated subnets, which egress rules may not select (endpoints are
    /// left out: they never call anything, so a rule naming their segment opens nothing for
    /// them).
    isolated: Vec<&'a Function>,
    labels: BTreeSet<String>,
    ids: HashSet<Name>,
}

impl<'a> References<'a> {
    pub(super) fn new(
        segments: &'a BTreeMap<Name, Segment>,
        groups: &'a BTreeMap<Name, Group>,
        functions: &'a BTreeMap<Name, Function>,
    ) -> Self {
        let labels = segments
            .values()
            .flat_map(|s| s.labels.iter())
            .chain(functions.values().flat_map(|f| f.labels.iter()))
            .map(|l| l.as_str().to_owned())
            .collect();
        Self {
            segments,
            groups: groups.keys().map(Name::as_str).collect(),
            functions,
            isolated: functions
                .values()
                .filter(|f| f.subnet_kind == SubnetKind::Isolated && !f.is_endpoint())
                .collect(),
            labels,
            ids: HashSet::new(),
        }
    }

    pub(super) fn claim_id(&mut self, loader: &mut Loader, id: &Name, span: &Range<usize>) {
        if !self.ids.insert(id.clone()) {
            loader.error_help(
                span,
                format!("duplicate rule id `{id}`"),
                "route, allow and egress ids share one namespace; give each rule its own id",
            );
        }
    }

    pub(super) fn isolated_functions_in(&self, sel: &Selector) -> Vec<&'a str> {
        self.isolated
            .iter()
            .filter(|f| self.selects(sel, f))
            .map(|f| f.name.as_str())
            .collect()
    }

    pub(super) fn selects(&self, sel: &Selector, f: &Function) -> bool {
        sel.selects(self.segments, f)
    }
}
