//! `septa export aws`: the policy as one CloudFormation template (YAML) — a VPC per segment with
//! its subnets in two zones, route tables, network ACLs, security groups, Lambda functions
//! running `septa lambda`, VPC Lattice for calls between functions, API Gateway for routes,
//! ElastiCache and RDS for stores, a Network Firewall rule group for egress by name, flow and
//! access logs — byte-identical across runs, and a report of every difference from septa's
//! truth table.
//!
//! [`export`] builds the template and the report from the compiled policy; [`check`] (the
//! `--check` option) reads the written template back as plain YAML and computes, from its
//! security groups, network ACLs, route tables and Lattice auth policies alone, who may call
//! whom, then compares that with the truth table. Each kind of resource has its module; [`known`]
//! lists the differences the translation knows it makes.

mod api_gateway;
mod breakage;
pub mod check;
mod egress_check;
mod firewall;
mod known;
mod lambda;
mod lattice;
mod logs;
mod names;
mod network;
mod reader;
mod security_groups;
mod stores;

use std::collections::BTreeMap;

use septa_manifest::HostPattern;
use septa_policy::Policy;
use serde_json::{Map, Value, json};

use crate::report::Report;
use crate::truth::{Granularity, TruthTable};
use crate::yaml;

pub use check::CheckError;
pub use names::lattice_endpoint_variable;

/// The template's file name in the output directory.
pub const TEMPLATE_FILE: &str = "template.yaml";

/// What to export.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The S3 bucket holding the Lambda zips (`scripts/package-lambda`); when `None` the
    /// template takes it as the `CodeBucket` parameter.
    pub code_bucket: Option<String>,
}

/// A deliberately broken translation, for tests that show the check catches one.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakage {
    /// Widen the first security-group ingress rule that admits a caller's group to
    /// `10.0.0.0/8`, which every segment's VPC is carved from.
    WidenIngress,
    /// Drop the path condition of the first Lattice auth policy statement that has one.
    DropPathCondition,
}

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Two septa names that make the same CloudFormation logical id.
    #[error(
        "`{first}` and `{second}` both become the CloudFormation logical id `{id}`; rename one"
    )]
    LogicalId {
        /// The id.
        id: String,
        /// What made it first.
        first: String,
        /// What made it again.
        second: String,
    },
    /// A name AWS refuses.
    #[error("{location}: {what} `{name}` cannot be exported to AWS: {why}")]
    Name {
        /// What is named.
        what: &'static str,
        /// The name.
        name: String,
        /// Where it is declared.
        location: String,
        /// Why not.
        why: String,
    },
    /// More segments or subnets than the address plan holds.
    #[error("{0}")]
    AddressPlan(String),
    /// More network ACL entries or security group rules than AWS allows by default.
    #[error("{0}")]
    Quota(String),
}

/// The template under construction: parameters, resources and outputs by logical id, each
/// remembering the septa name that made it so that a collision is reported, not overwritten.
#[derive(Debug, Default)]
pub(crate) struct Template {
    parameters: BTreeMap<String, Value>,
    resources: BTreeMap<String, (String, Value)>,
    outputs: BTreeMap<String, Value>,
}

impl Template {
    /// Adds resource `id` of `kind` with `properties`, made for `origin`.
    pub(crate) fn resource(
        &mut self,
        id: &str,
        kind: &str,
        properties: Value,
        origin: &str,
    ) -> Result<(), ExportError> {
        self.resource_value(
            id,
            json!({ "Type": kind, "Properties": properties }),
            origin,
        )
    }

    /// Adds resource `id` as written, made for `origin`.
    pub(crate) fn resource_value(
        &mut self,
        id: &str,
        value: Value,
        origin: &str,
    ) -> Result<(), ExportError> {
        if let Some((first, _)) = self.resources.get(id) {
            return Err(ExportError::LogicalId {
                id: id.to_owned(),
                first: first.clone(),
                second: origin.to_owned(),
            });
        }
        self.resources
            .insert(id.to_owned(), (origin.to_owned(), value));
        Ok(())
    }

    /// Adds parameter `id`.
    pub(crate) fn parameter(&mut self, id: &str, value: Value) {
        self.parameters.insert(id.to_owned(), value);
    }

    /// Adds output `id`.
    pub(crate) fn output(&mut self, id: &str, value: Value) {
        self.outputs.insert(id.to_owned(), value);
    }

    /// Whether resource `id` exists.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.resources.contains_key(id)
    }

    fn into_value(self, description: String) -> Value {
        let mut top = Map::new();
        top.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
        top.insert("Description".into(), json!(description));
        if !self.parameters.is_empty() {
            top.insert(
                "Parameters".into(),
                Value::Object(self.parameters.into_iter().collect()),
            );
        }
        top.insert(
            "Resources".into(),
            Value::Object(
                self.resources
                    .into_iter()
                    .map(|(id, (_, v))| (id, v))
                    .collect(),
            ),
        );
        if !self.outputs.is_empty() {
            top.insert(
                "Outputs".into(),
                Value::Object(self.outputs.into_iter().collect()),
            );
        }
        Value::Object(top)
    }
}

/// An export: the template and the report.
#[derive(Debug)]
pub struct Export {
    /// The CloudFormation template.
    pub template: Value,
    /// The report; [`check`] adds what the independent reading found.
    pub report: Report,
}

impl Export {
    /// The template as written: deterministic YAML.
    pub fn template_yaml(&self) -> String {
        yaml::documents(std::slice::from_ref(&self.template))
    }

    /// Every file of the output directory: the template and the report.
    pub fn files(&self) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        files.insert(TEMPLATE_FILE.to_owned(), self.template_yaml());
        files.insert("export-report.md".to_owned(), self.report.to_markdown());
        files.insert("export-report.json".to_owned(), self.report.to_json());
        files
    }
}

/// Exports `policy` as `options` say.
pub fn export(policy: &Policy, options: &Options) -> Result<Export, ExportError> {
    export_with(policy, options, None)
}

/// [`export`], broken as `breakage` says when given: what the check must catch.
#[doc(hidden)]
pub fn export_with(
    policy: &Policy,
    options: &Options,
    breakage: Option<Breakage>,
) -> Result<Export, ExportError> {
    let truth = TruthTable::build(policy, Granularity::Function);
    let plan = network::Plan::new(policy)?;
    let mut template = Template::default();
    network::resources(policy, &plan, &mut template)?;
    security_groups::resources(policy, &mut template)?;
    lambda::resources(policy, options, &mut template)?;
    lattice::resources(policy, &plan, &mut template)?;
    api_gateway::resources(policy, &mut template)?;
    stores::resources(policy, &mut template)?;
    firewall::resources(policy, &mut template)?;
    logs::resources(&plan, &mut template)?;
    let manifest = policy.manifest();
    let mut value = template.into_value(format!(
        "septa application `{}`: segments as VPCs, functions as Lambda functions running `septa lambda`, calls between them over VPC Lattice (generated by `septa export aws`)",
        manifest.application
    ));
    if let Some(breakage) = breakage {
        breakage::break_translation(&mut value, breakage);
    }
    let report = Report {
        target: "aws".to_owned(),
        application: manifest.application.to_string(),
        profile: "cloudformation".to_owned(),
        granularity: Granularity::Function.to_string(),
        files: vec![
            "export-report.json".to_owned(),
            "export-report.md".to_owned(),
            TEMPLATE_FILE.to_owned(),
        ],
        truth: truth.rows(names::LATTICE_PORT),
        analyzer: None,
        differences: known::differences(policy, &truth, &plan),
        pairs: Vec::new(),
    };
    Ok(Export {
        template: value,
        report,
    })
}

/// Whether an egress rule's target is named by DNS (and so needs the Network Firewall).
pub(crate) fn by_name(host: &HostPattern) -> bool {
    matches!(host, HostPattern::Name(_) | HostPattern::Subdomain(_))
}
