//! The reason codes a difference between septa's truth table and an export may carry: each
//! names one thing the target cannot express, or expresses differently. A difference without a
//! code fails the check; the table is the same for every target, and the README and
//! `docs/export.md` print it from [`ReasonCode::ALL`].

use std::fmt;

use serde::Serialize;

/// Why an export differs from septa's truth table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCode {
    /// Functions of one cell call each other inside one pod: the cluster sees no flow.
    FunctionsShareAPod,
    /// A flow between two cells is open to every function of one towards every function of the
    /// other.
    SubnetGranularity,
    /// Method and path conditions need an L7 proxy the exported objects do not configure.
    L7NeedsProxy,
    /// A path pattern the target spells more widely (a `{param}` segment becomes a prefix).
    PathSemantics,
    /// septa refuses ambiguous request paths that the target normalizes and then matches.
    PathNormalization,
    /// Egress by DNS name: addresses are opened at L3, names only by the proxy or the agent.
    EgressDns,
    /// septa checks the ceiling on the address it dials after its own DNS lookup.
    CeilingAfterDns,
    /// DNS lookups to the cluster's resolver are open to every cell.
    DnsResolution,
    /// API keys are checked by the septa node behind the gateway, not by the gateway.
    ApiKeys,
    /// Rate limits become per-pod local limits, or none.
    ApproximateRateLimit,
    /// septa lets denied flows through in audit mode; the export denies them.
    AuditMode,
    /// An embedded store runs inside its cell's septa node, on the cell's volume.
    InProcessStore,
    /// Raw TCP egress, which no L7 rule sees.
    NonTcp,
    /// A Redis or PostgreSQL server stays outside the export.
    ExternalStore,
    /// Calls between cells are TLS from node to node, which the cluster's proxies cannot read:
    /// their methods and paths are left to the callee's `septa node`.
    L7InSeptaMtls,
    /// A path pattern Lattice spells with `*`, which spans segments.
    LatticePathWildcard,
    /// A Redis or PostgreSQL server is open at its port to the callers its security group admits.
    StoreWithoutL7,
    /// An embedded store has no AWS resource.
    EmbeddedStoreOnLambda,
    /// A store in another segment's VPC is not routed to.
    StoreAcrossVpcs,
    /// Egress by DNS name: security groups open addresses; the names are a Network Firewall rule group.
    FirewallDomains,
    /// The ceiling's relaxations are not exported.
    AclCeiling,
    /// The VPCs are IPv4 only.
    Ipv4Only,
    /// Rate limits become API Gateway throttling.
    ApiGatewayThrottling,
    /// Claims and source ranges are checked behind API Gateway.
    RouteChecksInLambda,
    /// A Lambda function in a public subnet has no public address.
    PublicSubnetEgress,
}

impl ReasonCode {
    /// Every code, in the order the documentation lists them.
    pub const ALL: [ReasonCode; 25] = [
        Self::FunctionsShareAPod,
        Self::SubnetGranularity,
        Self::L7NeedsProxy,
        Self::PathSemantics,
        Self::PathNormalization,
        Self::EgressDns,
        Self::CeilingAfterDns,
        Self::DnsResolution,
        Self::ApiKeys,
        Self::ApproximateRateLimit,
        Self::AuditMode,
        Self::InProcessStore,
        Self::NonTcp,
        Self::ExternalStore,
        Self::L7InSeptaMtls,
        Self::LatticePathWildcard,
        Self::StoreWithoutL7,
        Self::EmbeddedStoreOnLambda,
        Self::StoreAcrossVpcs,
        Self::FirewallDomains,
        Self::AclCeiling,
        Self::Ipv4Only,
        Self::ApiGatewayThrottling,
        Self::RouteChecksInLambda,
        Self::PublicSubnetEgress,
    ];

    /// The code as reports print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FunctionsShareAPod => "functions-share-a-pod",
            Self::SubnetGranularity => "subnet-granularity",
            Self::L7NeedsProxy => "l7-needs-proxy",
            Self::PathSemantics => "path-semantics",
            Self::PathNormalization => "path-normalization",
            Self::EgressDns => "egress-dns",
            Self::CeilingAfterDns => "ceiling-after-dns",
            Self::DnsResolution => "dns-resolution",
            Self::ApiKeys => "api-keys",
            Self::ApproximateRateLimit => "approximate-rate-limit",
            Self::AuditMode => "audit-mode",
            Self::InProcessStore => "in-process-store",
            Self::NonTcp => "non-tcp",
            Self::ExternalStore => "external-store",
            Self::L7InSeptaMtls => "l7-in-septa-mtls",
            Self::LatticePathWildcard => "lattice-path-wildcard",
            Self::StoreWithoutL7 => "store-without-l7",
            Self::EmbeddedStoreOnLambda => "embedded-store-on-lambda",
            Self::StoreAcrossVpcs => "store-across-vpcs",
            Self::FirewallDomains => "firewall-domains",
            Self::AclCeiling => "acl-ceiling",
            Self::Ipv4Only => "ipv4-only",
            Self::ApiGatewayThrottling => "api-gateway-throttling",
            Self::RouteChecksInLambda => "route-checks-in-lambda",
            Self::PublicSubnetEgress => "public-subnet-egress",
        }
    }

    /// What the code means, for the report and the documentation.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::FunctionsShareAPod => {
                "functions of one cell call each other inside one pod; the cluster sees no flow \
                 between them and enforces nothing there (the cell's `septa node` still decides \
                 every call)"
            }
            Self::SubnetGranularity => {
                "at `--granularity cell` a flow between two cells is open to every function of \
                 the source cell towards every function of the destination cell, at the union of \
                 their methods and paths; `--granularity function` removes it"
            }
            Self::L7NeedsProxy => {
                "method and path conditions need an L7 proxy that the exported objects do not \
                 configure: the flow is open at L4 on its port, and septa decides the methods \
                 and paths"
            }
            Self::PathSemantics => {
                "Istio paths are exact, prefix (`/a/*`) or suffix matches: a septa `{param}` \
                 segment of a route, which matches exactly one segment, is exported as a prefix \
                 that also matches deeper paths"
            }
            Self::PathNormalization => {
                "septa refuses ambiguous request paths (encoded `/`, `\\` or `.`, dot segments, \
                 NUL) with 400; Istio normalizes some of them and then matches the rule"
            }
            Self::EgressDns => {
                "NetworkPolicy opens addresses, not names: egress to a DNS name opens its ports to \
                 every address outside the ceiling at L3, and the name is enforced by a \
                 ServiceEntry with a REGISTRY_ONLY Sidecar (istio) or `toFQDNs` (cilium)"
            }
            Self::CeilingAfterDns => {
                "septa checks the ceiling on the address it dials, after its own DNS lookup, and \
                 pins that address; in the cluster the ceiling is an `except` list (or \
                 `egressDeny`) on whatever the pod's resolver returned, and the ceiling's \
                 relaxations are not exported"
            }
            Self::DnsResolution => {
                "every cell may send DNS queries (UDP and TCP 53) to the cluster's resolver in \
                 `kube-system`; septa itself resolves only names its egress rules allow"
            }
            Self::ApiKeys => {
                "API keys are not checked by the Gateway API objects: the request reaches the \
                 public cell, whose `septa node` checks the key"
            }
            Self::ApproximateRateLimit => {
                "rate limits become an Envoy local rate limit per pod (istio), or are left to \
                 the `septa node` (cilium); the limit is per replica, not per consumer key"
            }
            Self::AuditMode => {
                "septa lets a flow its rules refuse through in audit mode, recording it; the \
                 export enforces the rules and denies it"
            }
            Self::InProcessStore => {
                "an embedded store runs inside its cell's `septa node` on the cell's volume: the \
                 cell runs one replica, and calls to it from its own cell never leave the pod"
            }
            Self::NonTcp => {
                "raw `tcp://` egress and any non-HTTP traffic: no L7 rule sees it, so it is open \
                 at L4 only on the declared ports"
            }
            Self::ExternalStore => {
                "a Redis or PostgreSQL endpoint's server stays outside the export: the cell that \
                 hosts the endpoint may open the server's port (6379, 5432) to any address, and \
                 septa's endpoint rules still decide every call to it"
            }
            Self::L7InSeptaMtls => {
                "`septa node`s call each other over their own mutual TLS on the mesh port, which \
                 neither Istio's sidecar nor Cilium's proxy can read (the Service declares the \
                 port `tls`): both profiles admit the callers there at L4 (their ServiceAccounts, \
                 or their pods), and the callee's `septa node` decides the methods and paths"
            }
            Self::LatticePathWildcard => {
                "VPC Lattice auth policies match paths with IAM's `StringLike`, where `*` spans any characters, `/` included: a septa `{param}` segment, which matches exactly one segment, is exported as `*`, which also matches deeper paths (a literal `*` or `?` in a septa path is a wildcard there too)"
            }
            Self::StoreWithoutL7 => {
                "a Redis or PostgreSQL endpoint is an ElastiCache or RDS server: its security group admits the callers septa lets call it on the server's port, for any request; the endpoint's methods and paths are checked by the caller's `septa lambda`"
            }
            Self::EmbeddedStoreOnLambda => {
                "an embedded store would live and die with one Lambda execution environment, so the export creates nothing for it and a call to it answers 503 on Lambda; move it to `backend = \"redis\"` or `\"postgres\"`"
            }
            Self::StoreAcrossVpcs => {
                "a Redis or PostgreSQL endpoint in another segment's VPC: the VPCs are peered so that security groups may name each other, but no route crosses them (isolated subnets keep no route out), so the server is not reached"
            }
            Self::FirewallDomains => {
                "security groups and network ACLs open addresses, not names: egress to a DNS name opens its ports to every address outside the ceiling, and the names are an AWS Network Firewall domain allow-list (rule group and policy) that the template does not place in the subnets' routes"
            }
            Self::AclCeiling => {
                "the operator ceiling is network ACL deny entries on its IPv4 ranges ahead of the subnet's egress allows; septa checks it on the address it dials after its own DNS lookup and honours the ceiling's relaxations, which the ACLs do not"
            }
            Self::Ipv4Only => {
                "the VPCs have no IPv6 addresses or routes, so egress to an IPv6 target has no way out"
            }
            Self::ApiGatewayThrottling => {
                "rate limits become HTTP API route throttling (all clients together) or a usage plan's throttle (per API key, the strictest of the set's routes): septa's per-IP, per-principal, per-header and per-claim keys are not carried over, so the limit is approximate"
            }
            Self::RouteChecksInLambda => {
                "a route's claim matches and source ranges are not API Gateway features: API Gateway passes the request, and `septa lambda` checks them (and the credential again) before the function runs"
            }
            Self::PublicSubnetEgress => {
                "a Lambda function in a public subnet gets no public address, so its egress through the internet gateway goes nowhere; place functions with egress in a private subnet, which gets a NAT gateway"
            }
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table of every code and its meaning, as Markdown: what the documentation shows.
pub fn markdown_table() -> String {
    let mut out = String::from("| code | meaning |\n|---|---|\n");
    for code in ReasonCode::ALL {
        out.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.meaning()));
    }
    out
}
