//! The graph as edges between places, expanded from the hubs: what the query, diff, HTML
//! report, packs and dashboard read. It grows with the pairs of functions the rules connect,
//! so it is only built when first asked for ([`Graph::edges`]).

use std::collections::HashSet;

use super::{Edge, Graph};

impl Graph<'_> {
    /// Every allowed flow between two places, in the order [`Graph::edges`] documents.
    pub(super) fn expand(&self) -> Vec<Edge> {
        let mut out: Vec<Edge> = self.links[0]
            .iter()
            .filter_map(|link| {
                link.label
                    .map(|label| self.edge(0, link.to as usize, label))
            })
            .collect();
        let pairs = self.allowed_pairs();
        let ruled: HashSet<(usize, usize)> = pairs.iter().map(|&(f, t, _)| (f, t)).collect();
        out.extend(
            pairs
                .into_iter()
                .map(|(f, t, label)| self.edge(f, t, label)),
        );
        if let Some(label) = self.audit_label {
            self.push_audit_edges(&ruled, label, &mut out);
        }
        out.extend(
            self.egress_edges
                .iter()
                .map(|&(from, to, label)| self.edge(from, to, label)),
        );
        out
    }

    /// (source, destination, label) of every function pair an allow rule connects, in
    /// source, destination and file order.
    fn allowed_pairs(&self) -> Vec<(usize, usize, u32)> {
        let mut pairs = Vec::new();
        for (rule, label) in self.policy.allow_rules().zip(&self.allow_labels) {
            let Some(label) = *label else {
                continue;
            };
            for &f in rule.sources {
                pairs.extend(
                    rule.destinations
                        .iter()
                        .map(|&t| (self.function_node(f), self.function_node(t), label)),
                );
            }
        }
        pairs.sort_unstable();
        pairs
    }

    /// One audit-mode edge per pair of functions with an audit-mode end that no rule connects.
    fn push_audit_edges(&self, ruled: &HashSet<(usize, usize)>, label: u32, out: &mut Vec<Edge>) {
        let functions = self.policy.functions();
        for a in functions {
            for b in functions {
                let (from, to) = (self.function_node(a.id), self.function_node(b.id));
                let opened = self.policy.makes_calls(a.id) && (a.audit || b.audit);
                if opened && !ruled.contains(&(from, to)) {
                    out.push(self.edge(from, to, label));
                }
            }
        }
    }
}
