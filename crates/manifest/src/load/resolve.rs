//! The stages after the schema: each section resolved in the order its references need (places
//! before the rules that name them), into one [`Manifest`].

use std::path::Path;

use super::references::References;
use super::{Loader, Sections};
use crate::diagnostic::Diagnostic;
use crate::model::*;

impl Loader {
    /// Every section, in the order their references need, into one manifest.
    pub(super) fn resolve(&mut self, file: &Path, dir: &Path, s: Sections) -> Option<Manifest> {
        let application = self.application(&s);
        let ceiling = self.ceiling(&s.ceiling);
        let gateway = self.gateway(&s.gateway);
        let segments = self.segments(&s.segments);
        let groups = self.groups(&s.groups);
        let mut functions = self.functions(dir, &s.functions, &segments, &groups);
        self.endpoints(dir, &s.endpoints, &segments, &groups, &mut functions);
        let mut refs = References::new(&segments, &groups, &functions);
        let jwt = self.jwt_issuers(dir, &s.jwt);
        let api_keys = self.api_key_sets(dir, &s.api_keys);
        let routes = self.routes(&s.routes, &functions, &jwt, &api_keys, &mut refs);
        let allows = self.allows(&s.allows, &mut refs);
        let egress = self.egress(&s.egress, &mut refs);
        let invariants = self.invariants(&s.invariants, &refs);
        let alerts = self.alerts(dir, &s.alerts, &refs);
        let cluster = self.cluster(s.cluster.as_ref(), &s.nodes, &functions, &refs);
        Some(Manifest {
            file: file.to_owned(),
            dir: dir.to_owned(),
            application: application?,
            ceiling,
            gateway,
            segments,
            groups,
            functions,
            routes,
            allows,
            egress,
            invariants,
            jwt,
            api_keys,
            alerts,
            cluster,
        })
    }

    /// `septa_manifest_version`, which must be `1`, and the application's name.
    fn application(&mut self, s: &Sections) -> Option<Name> {
        match &s.version {
            Some(v) if *v.get_ref() == 1 => {}
            Some(v) => self.error(
                &v.span(),
                format!(
                    "unsupported `septa_manifest_version` `{}`; this septa reads version `1`",
                    v.get_ref()
                ),
            ),
            None => self.errors.push(
                Diagnostic::whole_file("missing `septa_manifest_version`")
                    .with_help("add `septa_manifest_version = 1` as the first line"),
            ),
        }
        match &s.application {
            Some(app) => self.name(&app.name),
            None => {
                self.errors.push(
                    Diagnostic::whole_file("missing `[application]`")
                        .with_help("add `[application]` with `name = \"...\"`"),
                );
                None
            }
        }
    }
}
