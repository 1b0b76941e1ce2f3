//! Lambda functions running `septa lambda`: one per function, named `APPLICATION-FUNCTION` with
//! handler `FUNCTION` (what the runtime maps a Lattice caller's role session back to), runtime
//! `provided.al2023`, in its subnets and security groups, memory and timeout from its limits plus
//! septa's own share, reserved concurrency from `max_concurrency`, code from the code bucket,
//! an execution role of its own whose identity policy lets it invoke the Lattice services it may
//! call, and per callee a `SEPTA_LATTICE_CALLEE` variable naming that service's DNS name, where
//! `septa lambda` sends the calls.

use std::collections::{BTreeMap, BTreeSet};

use septa_manifest::FunctionKind;
use septa_policy::Policy;
use serde_json::{Value, json};

use super::names::{
    ZONES, function_name, get_att, lambda_id, lattice_endpoint_variable, lattice_service_id,
    reference, role_id, subnet_id,
};
use super::security_groups::groups_of;
use super::{ExportError, Options, Template, located};

/// Memory septa itself needs on top of the function's own, in MB.
pub(crate) const SEPTA_MEMORY_MB: u32 = 128;
/// The template parameter naming the code bucket when `--code-bucket` is not given.
pub(crate) const CODE_BUCKET_PARAMETER: &str = "CodeBucket";

/// The longest Lambda function name AWS accepts.
const MAX_FUNCTION_NAME: usize = 64;

/// Every execution role and Lambda function.
pub(crate) fn resources(
    policy: &Policy,
    options: &Options,
    template: &mut Template,
) -> Result<(), ExportError> {
    let application = &policy.manifest().application;
    let bucket = match &options.code_bucket {
        Some(name) => json!(name),
        None => {
            template.parameter(
                CODE_BUCKET_PARAMETER,
                json!({
                    "Description": "the S3 bucket holding each function's zip (scripts/package-lambda) as APPLICATION/FUNCTION.zip",
                    "Type": "String",
                }),
            );
            reference(CODE_BUCKET_PARAMETER)
        }
    };
    template.parameter(
        "Architecture",
        json!({
            "AllowedValues": ["arm64", "x86_64"],
            "Default": "x86_64",
            "Description": "the architecture the packaged septa binary was built for",
            "Type": "String",
        }),
    );
    // The functions each function may call over Lattice.
    let mut calls: BTreeMap<septa_policy::FunctionId, BTreeSet<&septa_manifest::Name>> =
        BTreeMap::new();
    for edge in policy.mesh_edges() {
        if matches!(
            policy.function(edge.to).spec.kind,
            FunctionKind::Component(_)
        ) && edge.from != edge.to
        {
            calls
                .entry(edge.from)
                .or_default()
                .insert(&policy.function(edge.to).spec.name);
        }
    }
    for f in policy.functions() {
        let spec = &f.spec;
        if spec.is_endpoint() {
            continue;
        }
        let name = function_name(application, &spec.name);
        if name.len() > MAX_FUNCTION_NAME {
            return Err(ExportError::Name {
                what: "function",
                name: spec.name.to_string(),
                location: located(policy, spec.location),
                why: format!(
                    "its Lambda function name `{name}` is longer than {MAX_FUNCTION_NAME} characters"
                ),
            });
        }
        let origin = spec.identity();
        let role = role_id(&spec.name);
        let mut role_properties = json!({
            "AssumeRolePolicyDocument": {
                "Statement": [{
                    "Action": "sts:AssumeRole",
                    "Effect": "Allow",
                    "Principal": { "Service": "lambda.amazonaws.com" },
                }],
                "Version": "2012-10-17",
            },
            "ManagedPolicyArns": [
                { "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole" },
            ],
        });
        // `septa lambda` sends each allowed call to its callee's service endpoint.
        let mut variables = serde_json::Map::new();
        variables.insert("SEPTA_FUNCTION".into(), json!(spec.name.as_str()));
        if let Some(callees) = calls.get(&f.id) {
            let resources: Vec<Value> = callees
                .iter()
                .map(|callee| {
                    let service = lattice_service_id(callee);
                    variables.insert(
                        lattice_endpoint_variable(callee.as_str()),
                        get_att(&service, "DnsEntry.DomainName"),
                    );
                    json!({ "Fn::Sub": format!("${{{service}.Arn}}/*") })
                })
                .collect();
            role_properties["Policies"] = json!([{
                "PolicyDocument": {
                    "Statement": [{
                        "Action": "vpc-lattice-svcs:Invoke",
                        "Effect": "Allow",
                        "Resource": resources,
                    }],
                    "Version": "2012-10-17",
                },
                "PolicyName": "invoke-callees",
            }]);
        }
        template.resource(&role, "AWS::IAM::Role", role_properties, &origin)?;
        let limits = &spec.limits;
        let subnets: Vec<Value> = ZONES
            .iter()
            .map(|z| {
                reference(&subnet_id(
                    &spec.placement.segment,
                    &spec.placement.subnet,
                    z,
                ))
            })
            .collect();
        let groups: Vec<Value> = groups_of(policy, f.id)
            .iter()
            .map(|g| get_att(g, "GroupId"))
            .collect();
        template.resource(
            &lambda_id(&spec.name),
            "AWS::Lambda::Function",
            json!({
                "Architectures": [reference("Architecture")],
                "Code": { "S3Bucket": bucket, "S3Key": format!("{application}/{}.zip", spec.name) },
                "Environment": { "Variables": variables },
                "FunctionName": name,
                "Handler": spec.name.as_str(),
                "MemorySize": (limits.memory_mb.saturating_add(SEPTA_MEMORY_MB)).clamp(128, 10240),
                "ReservedConcurrentExecutions": limits.max_concurrency,
                "Role": get_att(&role, "Arn"),
                "Runtime": "provided.al2023",
                "Timeout": (limits.timeout_ms.div_ceil(1000) + 1).clamp(1, 900),
                "VpcConfig": { "SecurityGroupIds": groups, "SubnetIds": subnets },
            }),
            &origin,
        )?;
    }
    Ok(())
}
