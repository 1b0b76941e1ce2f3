//! What each selector selects: the one reading of selectors that the engine's indexes, the
//! auditor, the dashboard and `septa query` all share.
//!
//! Each function (or endpoint) is filed under the selectors that describe it — its name,
//! segment, subnet, groups and labels, as [`crate::functions::describing_selectors`] lists
//! them — which are exactly the selectors [`Selector::selects`] says select it (a test checks
//! the two agree). A selector's functions are then a lookup, not a test of every function: a
//! manifest with 50,000 rules and 10,000 functions cannot afford the scan.
//!
//! Which of the selected may start a flow is decided here too, once: an endpoint never makes a
//! call ([`makes_calls`]), and neither an endpoint nor a function in an isolated subnet ever
//! reaches outside the platform ([`calls_outside`]).

use std::collections::HashMap;

use septa_manifest::{Function, Selector, SubnetKind};

use crate::engine::Policy;
use crate::functions::{FunctionId, FunctionInfo};

/// Whether `f` may be the source of a mesh flow: endpoints answer calls, they never make them,
/// however wide a rule's `from`.
pub(crate) fn makes_calls(f: &Function) -> bool {
    !f.is_endpoint()
}

/// Whether `f` may reach outside the platform: isolated subnets have no egress whatever the
/// rules say, and endpoints never call out.
pub(crate) fn calls_outside(f: &Function) -> bool {
    makes_calls(f) && f.subnet_kind != SubnetKind::Isolated
}

/// A selector that selects at least one function, numbered so that what it selects is found
/// without hashing its names again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SelectorId(u32);

impl SelectorId {
    /// The number, for tables sized by [`Selection::len`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The functions one selector selects, and the parts of them that may start a flow. The parts
/// are kept only where they differ, which is rare: most selectors hold no endpoint and no
/// isolated function.
#[derive(Debug, Default)]
struct Selected {
    /// Every function and endpoint, in id order.
    all: Vec<FunctionId>,
    /// Those that make calls, when not all of them do.
    callers: Option<Vec<FunctionId>>,
    /// Those that reach outside, when not all callers do.
    outbound: Option<Vec<FunctionId>>,
}

/// The functions each selector selects, in id order.
#[derive(Debug, Default)]
pub struct Selection {
    ids: HashMap<Selector, SelectorId>,
    selected: Vec<Selected>,
}

impl Selection {
    /// Files every one of `functions` under the selectors in `describing` (one list per
    /// function, in the same order).
    pub(crate) fn new(functions: &[FunctionInfo], describing: &[Vec<Selector>]) -> Self {
        let mut selection = Self::default();
        for (f, selectors) in functions.iter().zip(describing) {
            for selector in selectors {
                let next = SelectorId(selection.selected.len() as u32);
                let id = *selection.ids.entry(selector.clone()).or_insert(next);
                if id == next {
                    selection.selected.push(Selected::default());
                }
                let all = &mut selection.selected[id.index()].all;
                if all.last() != Some(&f.id) {
                    all.push(f.id);
                }
            }
        }
        let spec = |f: &FunctionId| &functions[f.index()].spec;
        for selected in &mut selection.selected {
            let callers = subset(&selected.all, |f| makes_calls(spec(f)));
            let outbound = subset(callers.as_deref().unwrap_or(&selected.all), |f| {
                calls_outside(spec(f))
            });
            selected.callers = callers;
            selected.outbound = outbound;
        }
        selection
    }

    /// The number of `selector`, or `None` when it selects nothing (and for `gateway`).
    pub fn id(&self, selector: &Selector) -> Option<SelectorId> {
        self.ids.get(selector).copied()
    }

    /// How many selectors select something: every [`SelectorId`] is below it.
    pub fn len(&self) -> usize {
        self.selected.len()
    }

    /// Whether no selector selects anything (a manifest without functions).
    pub fn is_empty(&self) -> bool {
        self.selected.is_empty()
    }

    fn entry(&self, id: Option<SelectorId>) -> Option<&Selected> {
        id.and_then(|id| self.selected.get(id.index()))
    }

    /// The functions and endpoints selector `id` selects, in id order.
    pub fn functions(&self, id: Option<SelectorId>) -> &[FunctionId] {
        self.entry(id).map_or(&[], |s| &s.all)
    }

    /// The functions selector `id` selects as the source of a mesh flow, in id order: those it
    /// selects, less endpoints, which never make a call.
    pub fn sources(&self, id: Option<SelectorId>) -> &[FunctionId] {
        self.entry(id)
            .map_or(&[], |s| s.callers.as_deref().unwrap_or(&s.all))
    }

    /// The functions selector `id` selects as the source of an egress flow, in id order: its
    /// [`Selection::sources`], less those in isolated subnets.
    pub fn outbound(&self, id: Option<SelectorId>) -> &[FunctionId] {
        match self.entry(id) {
            Some(Selected {
                outbound: Some(outbound),
                ..
            }) => outbound,
            _ => self.sources(id),
        }
    }

    /// The functions and endpoints `selector` selects, in id order (none for `gateway`).
    pub fn get(&self, selector: &Selector) -> &[FunctionId] {
        self.functions(self.id(selector))
    }
}

/// The members of `list` that `keep` keeps, or `None` when it keeps them all.
fn subset(list: &[FunctionId], keep: impl Fn(&FunctionId) -> bool) -> Option<Vec<FunctionId>> {
    (!list.iter().all(&keep)).then(|| list.iter().copied().filter(keep).collect())
}

impl Policy {
    /// Which functions each selector selects, by number: what tables indexed by
    /// [`SelectorId`] read.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The functions and endpoints `selector` selects, in id order (none for `gateway`).
    pub fn selected(&self, selector: &Selector) -> &[FunctionId] {
        self.selection.get(selector)
    }

    /// The functions `selector` selects as the source of a mesh flow, in id order: those it
    /// selects, less endpoints, which never make a call. [`Policy::decide_mesh`] reads the same.
    pub fn sources(&self, selector: &Selector) -> &[FunctionId] {
        self.selection.sources(self.selection.id(selector))
    }

    /// Whether function `f` may reach outside the platform at all: it is no endpoint and not
    /// in an isolated subnet, whatever the rules say. [`Policy::decide_egress`]'s index reads
    /// the same.
    pub fn reaches_outside(&self, f: FunctionId) -> bool {
        calls_outside(&self.function(f).spec)
    }

    /// Whether function `f` may be the source of a mesh flow at all: it is no endpoint,
    /// whatever the rules or audit mode say. [`Policy::decide_mesh`] reads the same.
    pub fn makes_calls(&self, f: FunctionId) -> bool {
        makes_calls(&self.function(f).spec)
    }
}
