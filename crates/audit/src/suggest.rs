//! `septa suggest`: the smallest rules that would have allowed what audit mode observed.
//!
//! Rules are as narrow as the observations: one allow rule per (caller, callee) with exactly the
//! methods and paths seen, one egress rule per function with exactly the destinations seen. The
//! suggestion is checked before it is printed: the manifest with the rules added must compile,
//! and every observed flow must then be allowed by a rule, decided by the policy itself.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use septa_manifest::{EgressScheme, EgressTarget};
use septa_policy::path::PathPattern;
use septa_policy::{EgressHost, Policy, Verdict};

/// One flow audit mode let through, as the flow log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A mesh call.
    Mesh {
        /// The calling function's name.
        from: String,
        /// The called function's name.
        to: String,
        /// The method.
        method: String,
        /// The (normalized) path.
        path: String,
    },
    /// An egress flow.
    Egress {
        /// The function's name.
        from: String,
        /// `scheme://host:port`.
        target: String,
    },
}

/// A suggested patch: TOML to append to `septa.toml`, and what could not be turned into a rule.
#[derive(Debug, Default)]
pub struct Suggestion {
    /// The rules, as TOML.
    pub toml: String,
    /// How many rules.
    pub rules: usize,
    /// Observations that no rule can express, with the reason.
    pub skipped: Vec<String>,
}

/// What audit mode observed, grouped the way rules are written: per (caller, callee) the
/// methods and paths seen, per function the destinations.
#[derive(Default)]
struct Grouped {
    mesh: BTreeMap<(String, String), (BTreeSet<String>, BTreeSet<String>)>,
    egress: BTreeMap<String, BTreeSet<String>>,
}

/// Suggests rules for `observed` flows on top of `policy`.
pub fn suggest(policy: &Policy, observed: &[Observed]) -> Suggestion {
    let mut suggestion = Suggestion::default();
    let mut grouped = Grouped::default();
    for o in observed {
        if let Err(skipped) = grouped.add(policy, o) {
            suggestion.skipped.push(skipped);
        }
    }
    let mut taken: HashSet<String> = policy
        .routes()
        .map(|r| r.id.to_string())
        .chain(policy.allow_rules().map(|r| r.id.to_string()))
        .chain(policy.egress_rules().map(|r| r.id.to_string()))
        .collect();
    let mut fresh_id = |base: String| {
        let mut id = base.clone();
        let mut n = 2;
        while !taken.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    };
    for ((from, to), (methods, paths)) in &grouped.mesh {
        let id = fresh_id(format!("{from}-to-{to}"));
        suggestion.toml.push_str(&format!(
            "\n[[allow]]\nid = \"{id}\"\nfrom = \"function:{from}\"\nto = \"function:{to}\"\nmethods = [{}]\npaths = [{}]\n",
            list(methods),
            list(paths)
        ));
        suggestion.rules += 1;
    }
    for (from, targets) in &grouped.egress {
        let id = fresh_id(format!("{from}-egress"));
        suggestion.toml.push_str(&format!(
            "\n[[egress]]\nid = \"{id}\"\nfrom = \"function:{from}\"\nto = [{}]\n",
            list(targets)
        ));
        suggestion.rules += 1;
    }
    suggestion
}

/// A TOML list of `items`, quoted.
fn list(items: &BTreeSet<String>) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Grouped {
    /// Files `o` under its rule, or says why no rule can express it.
    fn add(&mut self, policy: &Policy, o: &Observed) -> Result<(), String> {
        match o {
            Observed::Mesh {
                from,
                to,
                method,
                path,
            } => {
                if policy.function_id(from).is_none() || policy.function_id(to).is_none() {
                    return Err(format!(
                        "`{from}` → `{to}`: not a function of this application"
                    ));
                }
                if PathPattern::parse(path).map_or(true, |p| !p.is_exact()) {
                    return Err(format!(
                        "`{from}` → `{to}` {method} `{path}`: not expressible as an exact path"
                    ));
                }
                let entry = self.mesh.entry((from.clone(), to.clone())).or_default();
                entry.0.insert(method.clone());
                entry.1.insert(path.clone());
            }
            Observed::Egress { from, target } => {
                if policy.function_id(from).is_none() {
                    return Err(format!("`{from}`: not a function of this application"));
                }
                let t = EgressTarget::parse(target)
                    .map_err(|e| format!("`{from}` → `{target}`: {e}"))?;
                self.egress
                    .entry(from.clone())
                    .or_default()
                    .insert(t.to_string());
            }
        }
        Ok(())
    }
}

/// Whether `policy` allows every observed flow by a rule (not by audit mode); the ones it does
/// not, in words.
pub fn not_allowed(policy: &Policy, observed: &[Observed]) -> Vec<String> {
    let mut out = Vec::new();
    for o in observed {
        let verdict = match o {
            Observed::Mesh {
                from,
                to,
                method,
                path,
            } => match (policy.function_id(from), policy.function_id(to)) {
                (Some(a), Some(b)) => policy.decide_mesh(a, b, method, path).verdict,
                _ => continue,
            },
            Observed::Egress { from, target } => {
                let (Some(a), Ok(t)) = (policy.function_id(from), EgressTarget::parse(target))
                else {
                    continue;
                };
                let host = match &t.host {
                    septa_manifest::HostPattern::Name(n) => EgressHost::Name(n),
                    septa_manifest::HostPattern::Cidr(net) => EgressHost::Ip(net.addr()),
                    septa_manifest::HostPattern::Subdomain(_) => continue,
                };
                let scheme = if t.scheme == EgressScheme::Any {
                    EgressScheme::Tcp
                } else {
                    t.scheme
                };
                policy.decide_egress(a, scheme, host, t.port_min).verdict
            }
        };
        if verdict != Verdict::Allow {
            out.push(format!("{o:?}"));
        }
    }
    out
}
