//! `[cluster]` and `[node.NAME]`: the trust domain, and a placement every function and endpoint
//! has exactly where it must (at least one node; an embedded endpoint on exactly one, since its
//! data lives in one file on one machine).

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::Loader;
use super::references::References;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::raw::*;
use crate::selector::Selector;

impl Loader {
    /// The cluster, or `None` when the manifest declares neither `[cluster]` nor `[node.*]`.
    pub(super) fn cluster(
        &mut self,
        raw: Option<&(Spanned<()>, RawCluster)>,
        raw_nodes: &[(Spanned<String>, RawNode)],
        functions: &BTreeMap<Name, Function>,
        refs: &References,
    ) -> Option<Cluster> {
        let Some((key, raw)) = raw else {
            if let Some((first, _)) = raw_nodes.first() {
                self.error_help(
                    &first.span(),
                    "`[node.*]` tables need a `[cluster]` with its `trust_domain`",
                    "add `[cluster]` with `trust_domain = \"...\"`, the domain node certificates are issued in",
                );
            }
            return None;
        };
        let trust_domain = match TrustDomain::new(raw.trust_domain.get_ref()) {
            Ok(td) => Some(td),
            Err(e) => {
                self.error(&raw.trust_domain.span(), e);
                None
            }
        };
        if raw_nodes.is_empty() {
            self.error_help(
                &key.span(),
                "`[cluster]` declares no node",
                "add `[node.NAME]` tables with `hosts = [SELECTOR, ...]`",
            );
        }
        let nodes: BTreeMap<Name, Node> = raw_nodes
            .iter()
            .filter_map(|(name, node)| self.node(name, node, refs))
            .map(|n| (n.name.clone(), n))
            .collect();
        if !raw_nodes.is_empty() {
            self.check_placement(&nodes, functions, refs);
        }
        Some(Cluster {
            trust_domain: trust_domain?,
            nodes,
        })
    }

    fn node(&mut self, name: &Spanned<String>, raw: &RawNode, refs: &References) -> Option<Node> {
        let node_name = self.name(name)?;
        let mut hosts = Vec::new();
        for selector in &raw.hosts {
            if Selector::parse(selector.get_ref()) == Ok(Selector::Gateway) {
                self.error_help(
                    &selector.span(),
                    "`gateway` is not something a node hosts: every node runs the gateway",
                    "name what the node runs: `segment:NAME`, `subnet:SEGMENT/SUBNET`, `group:NAME`, `function:NAME`, `endpoint:NAME` or `label:NAME`",
                );
                continue;
            }
            hosts.extend(self.selector(selector, refs, "hosts"));
        }
        Some(Node {
            name: node_name,
            hosts,
            location: self.loc(&name.span()),
        })
    }

    /// Every function and endpoint is hosted somewhere, and an embedded endpoint in one place.
    fn check_placement(
        &mut self,
        nodes: &BTreeMap<Name, Node>,
        functions: &BTreeMap<Name, Function>,
        refs: &References,
    ) {
        for f in functions.values() {
            let hosting: Vec<&Node> = nodes
                .values()
                .filter(|n| n.hosts.iter().any(|s| refs.selects(s, f)))
                .collect();
            let kind = if f.is_endpoint() {
                "endpoint"
            } else {
                "function"
            };
            match hosting.as_slice() {
                [] => self.errors.push(
                    Diagnostic::at(
                        f.location,
                        format!("{kind} `{}` is hosted by no node", f.name),
                    )
                    .with_help(format!(
                        "add `{kind}:{}` (or a segment, subnet, group or label that selects it) to one node's `hosts`",
                        f.name
                    )),
                ),
                [_] => {}
                [first, second, ..] if is_embedded(f) => self.errors.push(
                    Diagnostic::at(
                        f.location,
                        format!(
                            "embedded endpoint `{}` is hosted by nodes `{}` and `{}`, but its data lives on one machine",
                            f.name, first.name, second.name
                        ),
                    )
                    .with_help(
                        "host it on one node, or give it `backend = \"redis\"` or `backend = \"postgres\"` so every node reaches the same server",
                    ),
                ),
                _ => {}
            }
        }
    }
}

fn is_embedded(f: &Function) -> bool {
    matches!(f.kind, FunctionKind::Endpoint(EndpointBackend::Embedded))
}
