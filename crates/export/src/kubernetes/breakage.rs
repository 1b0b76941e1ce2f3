//! Deliberately broken translations ([`Breakage`]): what tests feed the check to show it fails
//! when the exported objects stop matching the policy.

use serde_json::{Value, json};

use super::Breakage;

/// Breaks `objects` as `breakage` says.
pub(crate) fn break_translation(objects: &mut [Value], breakage: Breakage) {
    match breakage {
        Breakage::DropAllow => {
            let mesh_allow = |o: &Value| {
                o["kind"] == "AuthorizationPolicy"
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("allow-") && n != "allow-nothing")
            };
            let Some(callee) = objects
                .iter()
                .filter(|o| mesh_allow(o))
                .map(|o| {
                    (
                        o["metadata"]["namespace"].clone(),
                        o["spec"]["selector"].clone(),
                    )
                })
                .min_by_key(|(ns, selector)| (ns.to_string(), selector.to_string()))
            else {
                return;
            };
            for o in objects.iter_mut() {
                if mesh_allow(o)
                    && o["metadata"]["namespace"] == callee.0
                    && o["spec"]["selector"] == callee.1
                {
                    // Kept as an object (the slice cannot shrink), but admitting nobody.
                    o["spec"]["rules"] = json!([]);
                }
            }
        }
        Breakage::WidenSelector => {
            // A flow into a namespace with more than one cell, so widening shows.
            let crowded = |ns: &str| {
                objects
                    .iter()
                    .filter(|o| o["kind"] == "Deployment" && o["metadata"]["namespace"] == ns)
                    .count()
                    > 1
            };
            let Some((ns, name)) = objects
                .iter()
                .filter(|o| o["kind"] == "NetworkPolicy")
                .filter_map(|o| {
                    let name = o["metadata"]["name"].as_str()?;
                    let ns = o["metadata"]["namespace"].as_str()?;
                    (name.starts_with("in-from-") && crowded(ns))
                        .then(|| (ns.to_owned(), name.to_owned()))
                })
                .min()
            else {
                return;
            };
            for o in objects.iter_mut() {
                if o["kind"] != "NetworkPolicy" {
                    continue;
                }
                if o["metadata"]["name"] == name.as_str()
                    && o["metadata"]["namespace"] == ns.as_str()
                {
                    // The callee's side admits the caller into every pod of its namespace.
                    o["spec"]["podSelector"] = json!({});
                }
                let Some(peer) = o.pointer_mut("/spec/egress/0/to/0") else {
                    continue;
                };
                if peer.pointer("/namespaceSelector/matchLabels/septa.dev~1segment")
                    == Some(&json!(ns))
                {
                    // The caller's side may reach every pod of that namespace.
                    if let Some(peer) = peer.as_object_mut() {
                        peer.remove("podSelector");
                    }
                }
            }
        }
    }
}
