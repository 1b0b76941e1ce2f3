//! Egress by DNS name: security groups and network ACLs open addresses, not names, so a rule to
//! a name opens its ports to every address (less the ceiling). The names go into an AWS Network
//! Firewall stateful rule group with a domain allow-list (TLS SNI and HTTP Host) and a firewall
//! policy holding it, ready to be put in the subnets' path; a manifest without name-based egress
//! gets neither.

use std::collections::BTreeSet;

use septa_manifest::HostPattern;
use septa_policy::Policy;
use serde_json::json;

use super::names::reference;
use super::{ExportError, Template};

/// The rule group's logical id.
pub(crate) const RULE_GROUP: &str = "EgressDomainRuleGroup";

/// The rule group and its policy, when some egress rule names a host.
pub(crate) fn resources(policy: &Policy, template: &mut Template) -> Result<(), ExportError> {
    let domains: BTreeSet<String> = policy
        .egress_edges()
        .iter()
        .filter_map(|e| match &e.target.host {
            HostPattern::Name(name) => Some(name.clone()),
            HostPattern::Subdomain(domain) => Some(format!(".{domain}")),
            HostPattern::Cidr(_) => None,
        })
        .collect();
    if domains.is_empty() {
        return Ok(());
    }
    let application = &policy.manifest().application;
    template.resource(
        RULE_GROUP,
        "AWS::NetworkFirewall::RuleGroup",
        json!({
            "Capacity": (domains.len() * 2).max(100),
            "Description": "the egress rules' DNS names: everything else is dropped",
            "RuleGroup": {
                "RulesSource": {
                    "RulesSourceList": {
                        "GeneratedRulesType": "ALLOWLIST",
                        "TargetTypes": ["HTTP_HOST", "TLS_SNI"],
                        "Targets": domains,
                    },
                },
            },
            "RuleGroupName": format!("{application}-egress-domains"),
            "Type": "STATEFUL",
        }),
        "egress by name",
    )?;
    template.resource(
        "EgressFirewallPolicy",
        "AWS::NetworkFirewall::FirewallPolicy",
        json!({
            "FirewallPolicy": {
                "StatefulRuleGroupReferences": [{ "ResourceArn": reference(RULE_GROUP) }],
                "StatelessDefaultActions": ["aws:forward_to_sfe"],
                "StatelessFragmentDefaultActions": ["aws:forward_to_sfe"],
            },
            "FirewallPolicyName": format!("{application}-egress"),
        }),
        "egress by name",
    )
}
