//! Deliberately broken translations ([`Breakage`]): what tests feed the check to show it fails
//! when the exported objects stop matching the policy.

use serde_json::{Value, json};

use super::Breakage;

/// Breaks `objects` as `breakage` says.
pub(crate) fn break_translation(objects: &mut [Value], breakage: Breakage) {
    match breakage {
        Breakage::DropPath => {
            let target = objects.iter_mut().find(|o| {
                o["kind"] == "AuthorizationPolicy"
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("allow-"))
                    && o["spec"]["rules"][0]["to"][0]["operation"]["paths"]
                        .as_array()
                        .is_some_and(|p| p.len() >= 2)
            });
            if let Some(paths) = target
                .and_then(|o| o["spec"]["rules"][0]["to"][0]["operation"]["paths"].as_array_mut())
            {
                paths.pop();
            }
        }
        Breakage::WidenSelector => {
            let target = objects.iter_mut().find(|o| {
                o["kind"] == "NetworkPolicy"
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("in-from-"))
            });
            if let Some(o) = target {
                o["spec"]["podSelector"] = json!({});
                if let Some(peer) = o["spec"]["ingress"][0]["from"][0].as_object_mut() {
                    peer.remove("podSelector");
                }
            }
        }
    }
}
