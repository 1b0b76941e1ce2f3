//! Names in the template: CloudFormation logical ids (alphanumeric, from septa's names in
//! PascalCase), the Lambda function names `septa lambda` relies on (`APPLICATION-FUNCTION`), the
//! addresses the export gives each segment's VPC and subnets, and the ports it opens.

use std::collections::BTreeMap;

use septa_manifest::Name;
use serde_json::{Value, json};

/// The port Lattice services listen on (HTTPS).
pub(crate) const LATTICE_PORT: u16 = 443;
/// The link-local range VPC Lattice's data plane answers on in every VPC.
pub(crate) const LATTICE_CIDR: &str = "169.254.171.0/24";
/// Where the ephemeral ports of return traffic start, for stateless network ACLs.
pub(crate) const EPHEMERAL_MIN: u16 = 1024;
/// The two availability zones each subnet spans.
pub(crate) const ZONES: [&str; 2] = ["A", "B"];
/// The most segments the address plan holds (a `/16` each under `10.0.0.0/8`).
pub(crate) const MAX_SEGMENTS: usize = 250;
/// The most subnets a segment's `/16` holds (two `/24`s each, the last ones kept for NAT).
pub(crate) const MAX_SUBNETS: usize = 120;

/// `name` in PascalCase: `pci-app` is `PciApp`.
pub(crate) fn pascal(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `{"Ref": id}`.
pub(crate) fn reference(id: &str) -> Value {
    json!({ "Ref": id })
}

/// `{"Fn::GetAtt": [id, attribute]}`.
pub(crate) fn get_att(id: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [id, attribute] })
}

/// The Lambda function's name: `APPLICATION-FUNCTION`, the role session `septa lambda` maps
/// back to the function.
pub(crate) fn function_name(application: &Name, function: &Name) -> String {
    format!("{application}-{function}")
}

/// The logical id of a function's Lambda function.
pub(crate) fn lambda_id(function: &Name) -> String {
    format!("Function{}", pascal(function.as_str()))
}

/// The logical id of a function's or endpoint's security group.
pub(crate) fn function_sg_id(function: &Name) -> String {
    format!("Sg{}", pascal(function.as_str()))
}

/// The logical id of a septa group's security group in one segment's VPC.
pub(crate) fn group_sg_id(group: &Name, segment: &Name) -> String {
    format!(
        "GroupSg{}In{}",
        pascal(group.as_str()),
        pascal(segment.as_str())
    )
}

/// The logical id of a segment's VPC.
pub(crate) fn vpc_id(segment: &Name) -> String {
    format!("Vpc{}", pascal(segment.as_str()))
}

/// The logical id of one zone's half of a septa subnet.
pub(crate) fn subnet_id(segment: &Name, subnet: &Name, zone: &str) -> String {
    format!(
        "Subnet{}{}{zone}",
        pascal(segment.as_str()),
        pascal(subnet.as_str())
    )
}

/// The logical id of a function's execution role.
pub(crate) fn role_id(function: &Name) -> String {
    format!("Role{}", pascal(function.as_str()))
}

/// The logical id of a callee's Lattice service.
pub(crate) fn lattice_service_id(function: &Name) -> String {
    format!("LatticeService{}", pascal(function.as_str()))
}

/// The environment variable of a caller's Lambda function naming callee `function`'s Lattice
/// service endpoint (its DNS name): `SEPTA_LATTICE_` and the name in upper snake case. Names are
/// lowercase letters, digits and `-`, so two functions never share a variable.
pub fn lattice_endpoint_variable(function: &str) -> String {
    format!(
        "SEPTA_LATTICE_{}",
        function.to_ascii_uppercase().replace('-', "_")
    )
}

/// `10.I.0.0/16`, segment `index`'s VPC.
pub(crate) fn vpc_cidr(index: usize) -> String {
    format!("10.{index}.0.0/16")
}

/// The `/24` of subnet `subnet` (its index in the segment) in zone `zone` (0 or 1).
pub(crate) fn subnet_cidr(segment: usize, subnet: usize, zone: usize) -> String {
    format!("10.{segment}.{}.0/24", subnet * 2 + zone)
}

/// The `/24` the NAT gateway of segment `index` sits in.
pub(crate) fn nat_subnet_cidr(index: usize) -> String {
    format!("10.{index}.250.0/24")
}

/// Tags, sorted by key.
pub(crate) fn tags(pairs: &[(&str, String)]) -> Value {
    let sorted: BTreeMap<&str, &String> = pairs.iter().map(|(k, v)| (*k, v)).collect();
    Value::Array(
        sorted
            .into_iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect(),
    )
}
