//! Private endpoints: a Redis endpoint as an ElastiCache cluster and a PostgreSQL endpoint as an
//! RDS instance, in the endpoint's subnets (both zones) with its security group, so only the
//! callers its security group admits reach the server's port. An embedded store has no AWS
//! resource: on Lambda it would live and die with one execution environment (a
//! `embedded-store-on-lambda` difference).

use septa_manifest::{EndpointBackend, FunctionKind};
use septa_policy::Policy;
use serde_json::{Value, json};

use super::names::{ZONES, function_sg_id, get_att, pascal, reference, subnet_id, tags};
use super::{ExportError, Template};

/// The logical id of an endpoint's server.
pub(crate) fn store_id(endpoint: &septa_manifest::Name) -> String {
    format!("Store{}", pascal(endpoint.as_str()))
}

/// Every store.
pub(crate) fn resources(policy: &Policy, template: &mut Template) -> Result<(), ExportError> {
    let application = &policy.manifest().application;
    for f in policy.functions() {
        let spec = &f.spec;
        let FunctionKind::Endpoint(backend) = &spec.kind else {
            continue;
        };
        let origin = spec.identity();
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
        let group = format!("StoreSubnetGroup{}", pascal(spec.name.as_str()));
        let security = [get_att(&function_sg_id(&spec.name), "GroupId")];
        let tagged = tags(&[("septa:endpoint", spec.name.to_string())]);
        let description = format!("{application} endpoint {}", spec.name);
        match backend {
            EndpointBackend::Embedded => {}
            EndpointBackend::Redis(_) => {
                template.resource(
                    &group,
                    "AWS::ElastiCache::SubnetGroup",
                    json!({ "Description": description, "SubnetIds": subnets }),
                    &origin,
                )?;
                template.resource(
                    &store_id(&spec.name),
                    "AWS::ElastiCache::CacheCluster",
                    json!({
                        "CacheNodeType": "cache.t4g.micro",
                        "CacheSubnetGroupName": reference(&group),
                        "Engine": "redis",
                        "NumCacheNodes": 1,
                        "Port": 6379,
                        "Tags": tagged,
                        "VpcSecurityGroupIds": security,
                    }),
                    &origin,
                )?;
            }
            EndpointBackend::Postgres(_) => {
                template.resource(
                    &group,
                    "AWS::RDS::DBSubnetGroup",
                    json!({ "DBSubnetGroupDescription": description, "SubnetIds": subnets }),
                    &origin,
                )?;
                template.resource_value(
                    &store_id(&spec.name),
                    json!({
                        "Type": "AWS::RDS::DBInstance",
                        "DeletionPolicy": "Snapshot",
                        "UpdateReplacePolicy": "Snapshot",
                        "Properties": {
                            "AllocatedStorage": "20",
                            "DBInstanceClass": "db.t4g.micro",
                            "DBSubnetGroupName": reference(&group),
                            "Engine": "postgres",
                            "ManageMasterUserPassword": true,
                            "MasterUsername": "septa",
                            "Port": "5432",
                            "PubliclyAccessible": false,
                            "StorageEncrypted": true,
                            "Tags": tagged,
                            "VPCSecurityGroups": security,
                        },
                    }),
                    &origin,
                )?;
            }
        }
    }
    Ok(())
}
