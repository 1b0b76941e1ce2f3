//! Allow and egress rules: their ids, the places their selectors name, and the methods and
//! paths they admit (which routes share).

use serde_spanned::Spanned;

use super::Loader;
use super::references::References;
use crate::diagnostic::Location;
use crate::egress::EgressTarget;
use crate::model::*;
use crate::raw::*;
use crate::selector::Selector;

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

impl Loader {
    pub(super) fn methods(&mut self, raw: &Option<Vec<Spanned<String>>>) -> Methods {
        let Some(list) = raw else { return Methods::Any };
        if list.len() == 1 && list[0].get_ref() == "*" {
            return Methods::Any;
        }
        let mut out = Vec::new();
        for m in list {
            let text = m.get_ref();
            if METHODS.contains(&text.as_str()) {
                out.push(text.clone());
            } else if METHODS.contains(&text.to_ascii_uppercase().as_str()) {
                self.error(
                    &m.span(),
                    format!(
                        "method `{text}` must be upper-case: `{}`",
                        text.to_ascii_uppercase()
                    ),
                );
            } else {
                self.error_help(
                    &m.span(),
                    format!("unknown method `{text}`"),
                    format!(
                        "methods are {} or `[\"*\"]` for any",
                        METHODS.map(|m| format!("`{m}`")).join(", ")
                    ),
                );
            }
        }
        Methods::Only(out)
    }

    pub(super) fn path_text(&mut self, raw: &Spanned<String>) -> PathText {
        if !raw.get_ref().starts_with('/') {
            self.error(
                &raw.span(),
                format!("path `{}` must start with `/`", raw.get_ref()),
            );
        }
        PathText {
            text: raw.get_ref().clone(),
            location: self.loc(&raw.span()),
        }
    }

    pub(super) fn allows(
        &mut self,
        raw: &[(Location, RawAllow)],
        refs: &mut References,
    ) -> Vec<AllowRule> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id = self.rule_id(&r.id, refs);
            let from = self.selector(&r.from, refs, "from");
            let from = from.filter(|sel| self.not_an_endpoint_source(sel, &r.from));
            let to = self.selector(&r.to, refs, "to");
            let methods = self.methods(&r.methods);
            let paths = match &r.paths {
                None => Paths::Any,
                Some(list) => Paths::Only(list.iter().map(|p| self.path_text(p)).collect()),
            };
            let (Some(id), Some(from), Some(to)) = (id, from, to) else {
                continue;
            };
            out.push(AllowRule {
                id,
                from,
                to,
                methods,
                paths,
                location: *at,
            });
        }
        out
    }

    pub(super) fn egress(
        &mut self,
        raw: &[(Location, RawEgress)],
        refs: &mut References,
    ) -> Vec<EgressRule> {
        let mut out = Vec::new();
        for (at, r) in raw {
            let id = self.rule_id(&r.id, refs);
            let from = self.selector(&r.from, refs, "from");
            let from = from.filter(|sel| self.not_an_endpoint_source(sel, &r.from));
            if let Some(sel) = &from {
                let isolated: Vec<&str> = refs.isolated_functions_in(sel);
                if !isolated.is_empty() {
                    self.error_help(
                        &r.from.span(),
                        format!(
                            "egress rule `{}` selects {} in an isolated subnet; isolated subnets have no egress at all",
                            r.id.get_ref(),
                            isolated.iter().map(|f| format!("function `{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                        "move the function to a private subnet, or narrow `from`",
                    );
                }
            }
            let mut to = Vec::new();
            for t in &r.to {
                match EgressTarget::parse(t.get_ref()) {
                    Ok(target) => to.push(target),
                    Err(e) => self.error(&t.span(), e),
                }
            }
            let (Some(id), Some(from)) = (id, from) else {
                continue;
            };
            out.push(EgressRule {
                id,
                from,
                to,
                location: *at,
            });
        }
        out
    }

    /// Refuses `from = "endpoint:NAME"`: endpoints answer, they never call.
    fn not_an_endpoint_source(&mut self, sel: &Selector, raw: &Spanned<String>) -> bool {
        if let Selector::Endpoint(n) = sel {
            self.error_help(
                &raw.span(),
                format!("endpoint `{n}` cannot be a rule's `from`: endpoints answer calls, they never make them"),
                "rules open flows from functions; name the function that calls the endpoint",
            );
            return false;
        }
        true
    }
}
