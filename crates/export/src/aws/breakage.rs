//! Deliberately broken translations, for the tests that show the check catches them.

use serde_json::{Value, json};

use super::Breakage;

/// Breaks `template` as `breakage` says.
pub(crate) fn break_translation(template: &mut Value, breakage: Breakage) {
    let Some(resources) = template["Resources"].as_object_mut() else {
        return;
    };
    match breakage {
        Breakage::WidenIngress => {
            if let Some(rule) = resources.values_mut().find(|r| {
                r["Type"] == "AWS::EC2::SecurityGroupIngress"
                    && r["Properties"]["SourceSecurityGroupId"].is_object()
            }) && let Some(properties) = rule["Properties"].as_object_mut()
            {
                properties.remove("SourceSecurityGroupId");
                properties.insert("CidrIp".into(), json!("10.0.0.0/8"));
            }
        }
        Breakage::DropPathCondition => {
            for policy in resources
                .values_mut()
                .filter(|r| r["Type"] == "AWS::VpcLattice::AuthPolicy")
            {
                let Some(statements) = policy["Properties"]["Policy"]["Statement"].as_array_mut()
                else {
                    continue;
                };
                if let Some(statement) = statements
                    .iter_mut()
                    .find(|s| s["Condition"]["StringLike"].is_object())
                    && let Some(condition) = statement["Condition"].as_object_mut()
                {
                    condition.remove("StringLike");
                    return;
                }
            }
        }
    }
}
