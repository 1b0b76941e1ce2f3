//! The check's reading of a written template, independent of septa's model: the YAML text is
//! parsed back into a plain value, and every security group, network ACL, route table, subnet,
//! Lambda function, store and Lattice resource is read from it by logical id and `Ref` /
//! `Fn::GetAtt`, with AWS's own semantics (a security group without egress rules allows all
//! egress, ACL entries apply in rule-number order with an implicit deny, IAM `StringLike`
//! globbing). Nothing here looks at the policy.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

use super::check::CheckError;

/// `text`, a one-document YAML stream, as a plain value.
pub(crate) fn parse(text: &str) -> Result<Value, CheckError> {
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| CheckError::Template(format!("the template is not YAML: {e}")))?;
    match docs.as_slice() {
        [doc] => to_value(doc),
        _ => Err(CheckError::Template(format!(
            "the template holds {} YAML documents, not one",
            docs.len()
        ))),
    }
}

fn to_value(yaml: &Yaml) -> Result<Value, CheckError> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_value).collect::<Result<_, _>>()?),
        Yaml::Hash(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => {
                        return Err(CheckError::Template(format!(
                            "a mapping key that is not a string: {other:?}"
                        )));
                    }
                };
                out.insert(key, to_value(v)?);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(CheckError::Template(
                "the template holds an alias or a value YAML could not read".to_owned(),
            ));
        }
    })
}

/// The logical id a `Ref` or `Fn::GetAtt` names.
pub(crate) fn target(value: &Value) -> Option<&str> {
    value["Ref"]
        .as_str()
        .or_else(|| value["Fn::GetAtt"][0].as_str())
}

/// A number that may be written as a string (CloudFormation accepts both).
pub(crate) fn number(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The logical ids a list of `Ref`s and `Fn::GetAtt`s names.
pub(crate) fn targets(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| target(v).map(str::to_owned))
        .collect()
}

/// Where a security group rule's traffic comes from or goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// An address range.
    Cidr(Ipv4Net),
    /// The members of a security group.
    Group(String),
}

/// One security group rule.
#[derive(Clone, Debug)]
pub(crate) struct SgRule {
    /// `-1` (all), `tcp`, ...
    pub protocol: String,
    /// The ports, when the protocol has them.
    pub ports: Option<(i64, i64)>,
    /// The other side.
    pub peer: Peer,
}

impl SgRule {
    fn read(rule: &Value, peer_key: &str, cidr_key: &str) -> Option<Self> {
        let protocol = match &rule["IpProtocol"] {
            Value::String(s) => s.to_ascii_lowercase(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let peer = match (target(&rule[peer_key]), rule[cidr_key].as_str()) {
            (Some(id), _) => Peer::Group(id.to_owned()),
            (None, Some(cidr)) => Peer::Cidr(cidr.parse().ok()?),
            _ => return None,
        };
        let ports = match (number(&rule["FromPort"]), number(&rule["ToPort"])) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        Some(Self {
            protocol,
            ports,
            peer,
        })
    }

    /// Whether the rule admits TCP to `port`.
    pub(crate) fn admits_tcp(&self, port: u16) -> bool {
        match self.protocol.as_str() {
            "-1" | "all" => true,
            "tcp" | "6" => self
                .ports
                .is_none_or(|(a, b)| (a == -1 && b == -1) || (a..=b).contains(&i64::from(port))),
            _ => false,
        }
    }
}

/// One network ACL entry.
#[derive(Clone, Debug)]
pub(crate) struct AclEntry {
    /// Outbound.
    pub egress: bool,
    /// Its rule number: lower applies first.
    pub number: i64,
    /// Allow or deny.
    pub allow: bool,
    /// `-1` or an IP protocol number.
    pub protocol: i64,
    /// The other side.
    pub cidr: Ipv4Net,
    /// The ports.
    pub ports: Option<(i64, i64)>,
}

/// The template, read.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Every resource's type and properties, by logical id.
    pub resources: BTreeMap<String, (String, Value)>,
    /// Security groups' ingress and egress rules; `None` egress: AWS's default, all allowed.
    pub ingress: BTreeMap<String, Vec<SgRule>>,
    pub egress: BTreeMap<String, Option<Vec<SgRule>>>,
    /// Network ACL entries by ACL, sorted by rule number.
    pub acl_entries: BTreeMap<String, Vec<AclEntry>>,
    /// The ACL and the route table of each subnet.
    pub subnet_acl: BTreeMap<String, String>,
    pub subnet_table: BTreeMap<String, String>,
    /// Each route table's routes: (destination, target resource).
    pub routes: BTreeMap<String, Vec<(Ipv4Net, String)>>,
}

impl Model {
    /// Reads `template`.
    pub(crate) fn read(template: &Value) -> Result<Self, CheckError> {
        let mut model = Model::default();
        let resources = template["Resources"]
            .as_object()
            .ok_or_else(|| CheckError::Template("the template has no `Resources`".to_owned()))?;
        for (id, resource) in resources {
            let kind = resource["Type"].as_str().unwrap_or_default().to_owned();
            model
                .resources
                .insert(id.clone(), (kind, resource["Properties"].clone()));
        }
        for (id, (kind, p)) in &model.resources {
            if kind != "AWS::EC2::SecurityGroup" {
                continue;
            }
            let ingress = p["SecurityGroupIngress"].as_array().into_iter().flatten();
            model
                .ingress
                .entry(id.clone())
                .or_default()
                .extend(ingress.filter_map(|r| SgRule::read(r, "SourceSecurityGroupId", "CidrIp")));
            let egress: Vec<SgRule> = p["SecurityGroupEgress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| SgRule::read(r, "DestinationSecurityGroupId", "CidrIp"))
                .collect();
            let slot = model.egress.entry(id.clone()).or_insert(None);
            if !egress.is_empty() {
                slot.get_or_insert_with(Vec::new).extend(egress);
            }
        }
        for (kind, p) in model.resources.values() {
            match kind.as_str() {
                "AWS::EC2::SecurityGroupIngress" => {
                    if let (Some(group), Some(rule)) = (
                        target(&p["GroupId"]),
                        SgRule::read(p, "SourceSecurityGroupId", "CidrIp"),
                    ) {
                        model
                            .ingress
                            .entry(group.to_owned())
                            .or_default()
                            .push(rule);
                    }
                }
                "AWS::EC2::SecurityGroupEgress" => {
                    if let (Some(group), Some(rule)) = (
                        target(&p["GroupId"]),
                        SgRule::read(p, "DestinationSecurityGroupId", "CidrIp"),
                    ) {
                        // A separate egress rule adds to the default allow-all, which stays.
                        if let Some(Some(list)) = model.egress.get_mut(group) {
                            list.push(rule);
                        }
                    }
                }
                "AWS::EC2::NetworkAclEntry" => {
                    let entry = AclEntry {
                        egress: p["Egress"].as_bool().unwrap_or(false),
                        number: number(&p["RuleNumber"]).unwrap_or(i64::MAX),
                        allow: p["RuleAction"].as_str() == Some("allow"),
                        protocol: number(&p["Protocol"]).unwrap_or(-1),
                        cidr: p["CidrBlock"]
                            .as_str()
                            .and_then(|c| c.parse().ok())
                            .unwrap_or_default(),
                        ports: match (
                            number(&p["PortRange"]["From"]),
                            number(&p["PortRange"]["To"]),
                        ) {
                            (Some(a), Some(b)) => Some((a, b)),
                            _ => None,
                        },
                    };
                    if let Some(acl) = target(&p["NetworkAclId"]) {
                        model
                            .acl_entries
                            .entry(acl.to_owned())
                            .or_default()
                            .push(entry);
                    }
                }
                "AWS::EC2::SubnetNetworkAclAssociation" => {
                    if let (Some(s), Some(a)) = (target(&p["SubnetId"]), target(&p["NetworkAclId"]))
                    {
                        model.subnet_acl.insert(s.to_owned(), a.to_owned());
                    }
                }
                "AWS::EC2::SubnetRouteTableAssociation" => {
                    if let (Some(s), Some(t)) = (target(&p["SubnetId"]), target(&p["RouteTableId"]))
                    {
                        model.subnet_table.insert(s.to_owned(), t.to_owned());
                    }
                }
                "AWS::EC2::Route" => {
                    let via = [
                        "GatewayId",
                        "NatGatewayId",
                        "VpcPeeringConnectionId",
                        "TransitGatewayId",
                    ]
                    .iter()
                    .find_map(|k| target(&p[*k]));
                    if let (Some(table), Some(dest), Some(via)) = (
                        target(&p["RouteTableId"]),
                        p["DestinationCidrBlock"]
                            .as_str()
                            .and_then(|c| c.parse().ok()),
                        via,
                    ) {
                        model
                            .routes
                            .entry(table.to_owned())
                            .or_default()
                            .push((dest, via.to_owned()));
                    }
                }
                _ => {}
            }
        }
        for entries in model.acl_entries.values_mut() {
            entries.sort_by_key(|e| (e.number, e.egress));
        }
        Ok(model)
    }

    /// The properties of resource `id` when it is of `kind`.
    pub(crate) fn props(&self, id: &str, kind: &str) -> Option<&Value> {
        self.resources
            .get(id)
            .filter(|(k, _)| k == kind)
            .map(|(_, p)| p)
    }

    /// Every resource of `kind`, with its id.
    pub(crate) fn of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.resources
            .iter()
            .filter(move |(_, (k, _))| k == kind)
            .map(|(id, (_, p))| (id.as_str(), p))
    }

    /// A subnet's address range.
    pub(crate) fn subnet_cidr(&self, subnet: &str) -> Option<Ipv4Net> {
        self.props(subnet, "AWS::EC2::Subnet")?["CidrBlock"]
            .as_str()?
            .parse()
            .ok()
    }

    /// The VPC a subnet is in, and its range.
    pub(crate) fn subnet_vpc(&self, subnet: &str) -> Option<(String, Ipv4Net)> {
        let vpc = target(&self.props(subnet, "AWS::EC2::Subnet")?["VpcId"])?;
        let cidr = self.props(vpc, "AWS::EC2::VPC")?["CidrBlock"]
            .as_str()?
            .parse()
            .ok()?;
        Some((vpc.to_owned(), cidr))
    }

    /// Whether subnet `subnet`'s ACL lets TCP to (outbound) or from (inbound) `remote` on `port`
    /// through: the lowest-numbered matching entry decides, none matching denies.
    pub(crate) fn acl_admits(
        &self,
        subnet: &str,
        egress: bool,
        remote: Ipv4Addr,
        port: u16,
    ) -> bool {
        // A subnet without an association uses the VPC's default ACL, which allows everything.
        let Some(acl) = self.subnet_acl.get(subnet) else {
            return true;
        };
        self.acl_entries
            .get(acl)
            .into_iter()
            .flatten()
            .filter(|e| e.egress == egress && e.cidr.contains(&remote))
            .find(|e| match e.protocol {
                -1 => true,
                6 => e
                    .ports
                    .is_none_or(|(a, b)| (a..=b).contains(&i64::from(port))),
                _ => false,
            })
            .is_some_and(|e| e.allow)
    }

    /// Whether subnet `subnet` has a route to `remote`: inside its VPC, or a route covering it.
    pub(crate) fn routes_to(&self, subnet: &str, remote: Ipv4Addr) -> bool {
        if self
            .subnet_vpc(subnet)
            .is_some_and(|(_, cidr)| cidr.contains(&remote))
        {
            return true;
        }
        self.subnet_table
            .get(subnet)
            .and_then(|t| self.routes.get(t))
            .into_iter()
            .flatten()
            .any(|(dest, _)| dest.contains(&remote))
    }

    /// Whether security groups `groups` let TCP out to `port` at `remote` or at members of
    /// `remote_groups`.
    pub(crate) fn sg_egress_admits(
        &self,
        groups: &[String],
        port: u16,
        remote: Ipv4Addr,
        remote_groups: &[String],
    ) -> bool {
        groups.iter().any(|g| match self.egress.get(g) {
            None | Some(None) => true,
            Some(Some(rules)) => rules.iter().any(|r| {
                r.admits_tcp(port)
                    && match &r.peer {
                        Peer::Cidr(net) => net.contains(&remote),
                        Peer::Group(id) => remote_groups.contains(id),
                    }
            }),
        })
    }

    /// Whether security groups `groups` admit TCP on `port` from a member of `from_groups`
    /// whose addresses are `from_ranges`.
    pub(crate) fn sg_ingress_admits(
        &self,
        groups: &[String],
        port: u16,
        from_groups: &[String],
        from_ranges: &[Ipv4Net],
    ) -> bool {
        groups.iter().any(|g| {
            self.ingress.get(g).into_iter().flatten().any(|r| {
                r.admits_tcp(port)
                    && match &r.peer {
                        Peer::Cidr(net) => from_ranges
                            .iter()
                            .any(|f| net.contains(f) || f.contains(net)),
                        Peer::Group(id) => from_groups.contains(id),
                    }
            })
        })
    }
}

/// IAM's `StringLike`: `*` any characters (`/` included), `?` one character.
pub(crate) fn string_like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::string_like;

    #[test]
    fn string_like_globs_across_slashes() {
        assert!(string_like("/a/*", "/a/b/c"));
        assert!(string_like("/a/*/b", "/a/x/y/b"));
        assert!(!string_like("/a", "/a/b"));
        assert!(string_like("/a?", "/ab"));
        assert!(string_like("*", ""));
        assert!(!string_like("/a/*", "/b/a"));
    }
}
