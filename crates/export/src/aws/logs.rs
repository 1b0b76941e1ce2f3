//! Flow visibility: VPC Flow Logs of every VPC and the Lattice service network's access logs,
//! to CloudWatch Logs. (Each Lambda function's own flow records go to its log stream, as
//! `septa lambda` writes them to standard output.)

use serde_json::json;

use super::lattice::SERVICE_NETWORK;
use super::names::{get_att, pascal, reference, vpc_id};
use super::network::Plan;
use super::{ExportError, Template};

/// How long the logs are kept, in days.
const RETENTION_DAYS: u32 = 30;

/// The log groups, the flow logs' role, the flow logs and the access log subscription.
pub(crate) fn resources(plan: &Plan, template: &mut Template) -> Result<(), ExportError> {
    template.resource(
        "FlowLogGroup",
        "AWS::Logs::LogGroup",
        json!({ "RetentionInDays": RETENTION_DAYS }),
        "flow logs",
    )?;
    template.resource(
        "FlowLogRole",
        "AWS::IAM::Role",
        json!({
            "AssumeRolePolicyDocument": {
                "Statement": [{ "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": { "Service": "vpc-flow-logs.amazonaws.com" } }],
                "Version": "2012-10-17",
            },
            "Policies": [{
                "PolicyDocument": {
                    "Statement": [{
                        "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                        "Effect": "Allow",
                        "Resource": get_att("FlowLogGroup", "Arn"),
                    }],
                    "Version": "2012-10-17",
                },
                "PolicyName": "write-flow-logs",
            }],
        }),
        "flow logs",
    )?;
    for segment in plan.segments.keys() {
        template.resource(
            &format!("FlowLog{}", pascal(segment.as_str())),
            "AWS::EC2::FlowLog",
            json!({
                "DeliverLogsPermissionArn": get_att("FlowLogRole", "Arn"),
                "LogDestinationType": "cloud-watch-logs",
                "LogGroupName": reference("FlowLogGroup"),
                "ResourceId": reference(&vpc_id(segment)),
                "ResourceType": "VPC",
                "TrafficType": "ALL",
            }),
            &format!("segment `{segment}`"),
        )?;
    }
    if template.has(SERVICE_NETWORK) {
        template.resource(
            "LatticeAccessLogGroup",
            "AWS::Logs::LogGroup",
            json!({ "RetentionInDays": RETENTION_DAYS }),
            "Lattice access logs",
        )?;
        template.resource(
            "LatticeAccessLogs",
            "AWS::VpcLattice::AccessLogSubscription",
            json!({
                "DestinationArn": get_att("LatticeAccessLogGroup", "Arn"),
                "ResourceIdentifier": reference(SERVICE_NETWORK),
            }),
            "Lattice access logs",
        )?;
    }
    Ok(())
}
