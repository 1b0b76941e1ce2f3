//! Which functions each selector selects, looked up instead of evaluated against every function.
//!
//! A manifest with 50,000 rules and 10,000 functions cannot afford to test every selector
//! against every function. Each function (or endpoint) is instead filed under the selectors its
//! own declaration makes true — its name, segment, subnet, groups and labels — which are exactly
//! the selectors [`Selector::selects`] says select it (a test checks the two agree).

use std::collections::HashMap;

use septa_manifest::Selector;
use septa_policy::{FunctionId, Policy};

/// The functions each selector selects, in id order.
#[derive(Debug, Default)]
pub struct Selection {
    ids: HashMap<Selector, u32>,
    lists: Vec<Vec<FunctionId>>,
    /// For a list holding an endpoint: the same list without endpoints, which are never the
    /// source of a flow. `None` for the (usual) lists without one.
    sources: Vec<Option<Vec<FunctionId>>>,
}

/// A selector that selects at least one function, numbered so that what it selects is found
/// without hashing its names again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SelectorId(u32);

impl SelectorId {
    /// The number, for tables sized by [`Selection::len`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl Selection {
    /// Files every function of `policy` under the selectors that select it.
    pub fn new(policy: &Policy) -> Self {
        let manifest = policy.manifest();
        let mut selection = Self::default();
        for f in policy.functions() {
            let spec = &f.spec;
            let placement = &spec.placement;
            let own = if spec.is_endpoint() {
                Selector::Endpoint(spec.name.clone())
            } else {
                Selector::Function(spec.name.clone())
            };
            let keys = [
                own,
                Selector::Segment(placement.segment.clone()),
                Selector::Subnet(placement.segment.clone(), placement.subnet.clone()),
            ]
            .into_iter()
            .chain(spec.groups.iter().cloned().map(Selector::Group))
            .chain(manifest.function_labels(spec).cloned().map(Selector::Label));
            for key in keys {
                let next = selection.lists.len() as u32;
                let id = *selection.ids.entry(key).or_insert(next);
                if id == next {
                    selection.lists.push(Vec::new());
                }
                let list = &mut selection.lists[id as usize];
                // A label can come from the function and its segment both.
                if list.last() != Some(&f.id) {
                    list.push(f.id);
                }
            }
        }
        let endpoint = |f: &FunctionId| policy.function(*f).spec.is_endpoint();
        selection.sources = selection
            .lists
            .iter()
            .map(|list| {
                list.iter()
                    .any(endpoint)
                    .then(|| list.iter().filter(|f| !endpoint(f)).copied().collect())
            })
            .collect();
        selection
    }

    /// The number of `selector`, or `None` when it selects nothing (and for `gateway`).
    pub fn id(&self, selector: &Selector) -> Option<SelectorId> {
        self.ids.get(selector).map(|&id| SelectorId(id))
    }

    /// How many selectors select something: every [`SelectorId`] is below it.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// The functions selector `id` selects, in id order.
    pub fn functions(&self, id: Option<SelectorId>) -> &[FunctionId] {
        id.and_then(|SelectorId(i)| self.lists.get(i as usize))
            .map_or(&[], Vec::as_slice)
    }

    /// The functions selector `id` selects as the source of a flow, in id order: those it
    /// selects, less endpoints, which never make a call (as the engine's source index has it).
    pub fn sources(&self, id: Option<SelectorId>) -> &[FunctionId] {
        match id.and_then(|SelectorId(i)| self.sources.get(i as usize)) {
            Some(Some(without_endpoints)) => without_endpoints,
            _ => self.functions(id),
        }
    }

    /// The functions `selector` selects, in id order (none for `gateway`).
    pub fn get(&self, selector: &Selector) -> &[FunctionId] {
        self.functions(self.id(selector))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn agrees_with_the_one_definition_of_a_selector() {
        let text = r#"septa_manifest_version = 1
[application]
name = "t"
[segment.a]
subnets = { web = "public", app = "private" }
labels = ["pci"]
[segment.b]
subnets = { app = "private" }
[group.g]
[group.h]
[function.f1]
source = "f.wasm"
placement = "a/web"
groups = ["g"]
labels = ["pci", "ops"]
[function.f2]
source = "f.wasm"
placement = "a/app"
groups = ["g", "h"]
[function.f3]
source = "f.wasm"
placement = "b/app"
labels = ["ops"]
[endpoint.store]
placement = "b/app"
"#;
        let manifest = septa_manifest::parse(std::path::Path::new("septa.toml"), text).unwrap();
        let policy = Policy::compile(manifest).unwrap();
        let selection = Selection::new(&policy);
        let manifest = policy.manifest();
        for s in [
            "gateway",
            "segment:a",
            "segment:b",
            "subnet:a/web",
            "subnet:a/app",
            "subnet:b/app",
            "group:g",
            "group:h",
            "function:f1",
            "function:f3",
            "function:store",
            "endpoint:store",
            "endpoint:f1",
            "label:pci",
            "label:ops",
        ] {
            let selector = Selector::parse(s).unwrap();
            let scanned: Vec<FunctionId> = policy
                .functions()
                .iter()
                .filter(|f| selector.selects(&manifest.segments, &f.spec))
                .map(|f| f.id)
                .collect();
            assert_eq!(selection.get(&selector), scanned, "{s}");
        }
    }
}
