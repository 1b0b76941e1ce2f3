//! The second stage of loading: the places (segments, subnets, groups, functions) and the
//! operator ceiling, checked against each other.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_spanned::Spanned;

use super::rules::{References, http_header_name};
use super::{Loader, Sections};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::model::*;
use crate::raw::*;

impl Loader {
    pub(super) fn resolve(&mut self, file: &Path, dir: &Path, s: Sections) -> Option<Manifest> {
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
        let application = match &s.application {
            Some(app) => self.name(&app.name),
            None => {
                self.errors.push(
                    Diagnostic::whole_file("missing `[application]`")
                        .with_help("add `[application]` with `name = \"...\"`"),
                );
                None
            }
        };
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
        })
    }

    pub(super) fn ceiling(&mut self, raw: &RawCeiling) -> CeilingSpec {
        CeilingSpec {
            relax: self.ip_nets(&raw.relax),
            block: self.ip_nets(&raw.block),
        }
    }

    /// Networks written as CIDRs or single addresses.
    pub(super) fn ip_nets(&mut self, list: &[Spanned<String>]) -> Vec<IpNet> {
        list.iter()
            .filter_map(|s| {
                let text = s.get_ref();
                let parsed = text
                    .parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(n) => Some(n.trunc()),
                    Err(_) => {
                        self.error(
                            &s.span(),
                            format!("`{text}` is not an IP network such as `127.0.0.1/32`"),
                        );
                        None
                    }
                }
            })
            .collect()
    }

    pub(super) fn gateway(&mut self, raw: &RawGateway) -> GatewaySpec {
        let mut spec = GatewaySpec {
            trusted_proxies: self.ip_nets(&raw.trusted_proxies),
            ..GatewaySpec::default()
        };
        if let Some(h) = &raw.client_ip_header {
            match http_header_name(h.get_ref()) {
                Some(name) => spec.client_ip_header = name,
                None => self.error(&h.span(), format!("`{}` is not a header name", h.get_ref())),
            }
        }
        if let Some(limit) = &raw.rate_limit {
            spec.rate_limit =
                self.rate(&limit.per_second, limit.burst.as_ref())
                    .map(|(per_second, burst)| RateLimit {
                        key: RateLimitKey::Route,
                        per_second,
                        burst,
                    });
        }
        spec
    }

    pub(super) fn segments(
        &mut self,
        raw: &[(Spanned<String>, RawSegment)],
    ) -> BTreeMap<Name, Segment> {
        let mut out = BTreeMap::new();
        for (name, seg) in raw {
            let Some(segment_name) = self.name(name) else {
                continue;
            };
            if seg.subnets.is_empty() {
                self.error(&name.span(), format!("segment `{segment_name}` has no subnets; add `subnets = {{ NAME = \"public\" | \"private\" | \"isolated\" }}`"));
            }
            let mut subnets = BTreeMap::new();
            for (subnet, kind) in &seg.subnets {
                match Name::new(subnet) {
                    Ok(n) => {
                        subnets.insert(n, *kind.get_ref());
                    }
                    Err(e) => self.error(
                        &kind.span(),
                        format!("subnet of segment `{segment_name}`: {e}"),
                    ),
                }
            }
            let labels = self.names(&seg.labels);
            let max_concurrency = match &seg.limits.max_concurrency {
                Some(n) if *n.get_ref() == 0 || *n.get_ref() > Limits::MAX_CONCURRENCY => {
                    self.error(
                        &n.span(),
                        format!(
                            "`limits.max_concurrency` must be between 1 and {}, not {}",
                            Limits::MAX_CONCURRENCY,
                            n.get_ref()
                        ),
                    );
                    None
                }
                Some(n) => Some(*n.get_ref()),
                None => None,
            };
            out.insert(
                segment_name.clone(),
                Segment {
                    name: segment_name,
                    subnets,
                    labels,
                    mode: seg.mode.unwrap_or_default(),
                    max_concurrency,
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    pub(super) fn groups(&mut self, raw: &[(Spanned<String>, RawGroup)]) -> BTreeMap<Name, Group> {
        let mut out = BTreeMap::new();
        for (name, group) in raw {
            let Some(n) = self.name(name) else { continue };
            out.insert(
                n.clone(),
                Group {
                    name: n,
                    description: group.description.clone(),
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    pub(super) fn functions(
        &mut self,
        dir: &Path,
        raw: &[(Spanned<String>, RawFunction)],
        segments: &BTreeMap<Name, Segment>,
        groups: &BTreeMap<Name, Group>,
    ) -> BTreeMap<Name, Function> {
        let mut out = BTreeMap::new();
        for (name, f) in raw {
            let Some(fname) = self.name(name) else {
                continue;
            };
            let placement = self.placement(&f.placement, segments);
            self.known_groups(&f.groups, groups);
            let fgroups = self.names(&f.groups);
            let labels = self.names(&f.labels);
            let limits = self.limits(&f.limits);
            if f.source.get_ref().is_empty() {
                self.error(
                    &f.source.span(),
                    "`source` must name a `.wasm` component file",
                );
            }
            let build = f.build.as_ref().map(|b| Build {
                command: b.command.get_ref().clone(),
                workdir: dir.join(b.workdir.as_deref().unwrap_or(".")),
            });
            let Some((placement, subnet_kind, segment_mode)) = placement else {
                continue;
            };
            out.insert(
                fname.clone(),
                Function {
                    name: fname,
                    kind: FunctionKind::Component,
                    source: dir.join(f.source.get_ref()),
                    placement,
                    subnet_kind,
                    groups: fgroups,
                    labels,
                    mode: f.mode.unwrap_or(segment_mode),
                    limits,
                    build,
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    fn known_groups(&mut self, names: &[Spanned<String>], groups: &BTreeMap<Name, Group>) {
        for g in names {
            if !groups.contains_key(g.get_ref().as_str()) {
                let hint = did_you_mean(g.get_ref(), groups.keys().map(Name::as_str));
                self.unknown(&g.span(), "group", g.get_ref(), hint, "[group.NAME]");
            }
        }
    }

    /// `[endpoint.NAME]` entries, added to `functions`: they share the `NAME.internal` names.
    fn endpoints(
        &mut self,
        dir: &Path,
        raw: &[(Spanned<String>, RawEndpoint)],
        segments: &BTreeMap<Name, Segment>,
        groups: &BTreeMap<Name, Group>,
        functions: &mut BTreeMap<Name, Function>,
    ) {
        for (name, e) in raw {
            let Some(ename) = self.name(name) else {
                continue;
            };
            if functions.contains_key(&ename) {
                self.error_help(
                    &name.span(),
                    format!("endpoint `{ename}` has the name of a function"),
                    "functions and endpoints share the mesh names `NAME.internal`; rename one",
                );
                continue;
            }
            let placement = self.placement(&e.placement, segments);
            self.known_groups(&e.groups, groups);
            let egroups = self.names(&e.groups);
            let labels = self.names(&e.labels);
            let backend = self.endpoint_backend(dir, name.get_ref(), e);
            let defaults = Limits::default();
            let limits = self.limits(&RawLimits {
                memory_mb: None,
                timeout_ms: e.limits.timeout_ms.clone(),
                max_concurrency: e.limits.max_concurrency.clone(),
            });
            let (Some((placement, subnet_kind, segment_mode)), Some(backend)) =
                (placement, backend)
            else {
                continue;
            };
            functions.insert(
                ename.clone(),
                Function {
                    name: ename,
                    kind: FunctionKind::Endpoint(backend),
                    source: PathBuf::new(),
                    placement,
                    subnet_kind,
                    groups: egroups,
                    labels,
                    mode: e.mode.unwrap_or(segment_mode),
                    limits: Limits {
                        memory_mb: defaults.memory_mb,
                        ..limits
                    },
                    build: None,
                    location: self.loc(&name.span()),
                },
            );
        }
    }

    fn endpoint_backend(
        &mut self,
        dir: &Path,
        name: &str,
        e: &RawEndpoint,
    ) -> Option<EndpointBackend> {
        let kind = e
            .backend
            .as_ref()
            .map_or("embedded", |b| b.get_ref().as_str());
        let sources = [&e.url, &e.url_env, &e.url_file];
        let given: Vec<&Spanned<String>> = sources.iter().filter_map(|s| s.as_ref()).collect();
        if kind == "embedded" {
            if let Some(extra) = given.first() {
                self.error(
                    &extra.span(),
                    format!(
                        "endpoint `{name}` is embedded: it takes no `url`, `url_env` or `url_file`"
                    ),
                );
                return None;
            }
            return Some(EndpointBackend::Embedded);
        }
        let scheme = match kind {
            "redis" => "redis",
            "postgres" => "postgres",
            other => {
                let span = e.backend.as_ref().map(Spanned::span).unwrap_or_default();
                self.error_help(
                    &span,
                    format!("unknown backend `{other}`"),
                    "backends are `embedded` (the default), `redis` and `postgres`",
                );
                return None;
            }
        };
        let connection = match (&e.url, &e.url_env, &e.url_file) {
            (Some(url), None, None) => {
                let text = url.get_ref();
                let Some(rest) = text
                    .strip_prefix(scheme)
                    .and_then(|r| r.strip_prefix("://"))
                    .or_else(|| {
                        (scheme == "postgres")
                            .then(|| text.strip_prefix("postgresql://"))
                            .flatten()
                    })
                else {
                    self.error(
                        &url.span(),
                        format!("a {kind} endpoint's `url` must start with `{scheme}://`"),
                    );
                    return None;
                };
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                if authority.contains('@') {
                    self.error_help(
                        &url.span(),
                        format!("endpoint `{name}`'s `url` carries credentials"),
                        "credentials never go in the manifest: put the whole URL in an environment variable (`url_env`) or a file (`url_file`)",
                    );
                    return None;
                }
                Connection::Url(text.clone())
            }
            (None, Some(var), None) => {
                let ok = !var.get_ref().is_empty()
                    && var
                        .get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    self.error(
                        &var.span(),
                        format!("`{}` is not an environment variable name", var.get_ref()),
                    );
                    return None;
                }
                Connection::Env(var.get_ref().clone())
            }
            (None, None, Some(file)) => Connection::File(dir.join(file.get_ref())),
            (None, None, None) => {
                let span = e.backend.as_ref().map(Spanned::span).unwrap_or_default();
                self.error_help(
                    &span,
                    format!("a {kind} endpoint needs a connection"),
                    "give `url` (without credentials), `url_env` or `url_file`",
                );
                return None;
            }
            _ => {
                self.error(
                    &given[1].span(),
                    "give one of `url`, `url_env` and `url_file`, not several",
                );
                return None;
            }
        };
        Some(match kind {
            "redis" => EndpointBackend::Redis(connection),
            _ => EndpointBackend::Postgres(connection),
        })
    }

    pub(super) fn placement(
        &mut self,
        raw: &Spanned<String>,
        segments: &BTreeMap<Name, Segment>,
    ) -> Option<(Placement, SubnetKind, Mode)> {
        let text = raw.get_ref();
        let Some((seg, sub)) = text.split_once('/') else {
            self.error(
                &raw.span(),
                format!("placement `{text}` must be `SEGMENT/SUBNET`"),
            );
            return None;
        };
        let Some(segment) = segments.get(seg) else {
            let hint = did_you_mean(seg, segments.keys().map(Name::as_str));
            self.unknown(&raw.span(), "segment", seg, hint, "[segment.NAME]");
            return None;
        };
        let Some((subnet, kind)) = segment.subnets.get_key_value(sub) else {
            let hint = did_you_mean(sub, segment.subnets.keys().map(Name::as_str));
            self.unknown(
                &raw.span(),
                &format!("subnet of segment `{seg}`"),
                sub,
                hint,
                "subnets = { NAME = \"private\" }",
            );
            return None;
        };
        Some((
            Placement {
                segment: segment.name.clone(),
                subnet: subnet.clone(),
            },
            *kind,
            segment.mode,
        ))
    }

    pub(super) fn unknown(
        &mut self,
        span: &Range<usize>,
        what: &str,
        name: &str,
        hint: Option<&str>,
        declare: &str,
    ) {
        let message = match hint {
            Some(h) => format!("unknown {what} `{name}` (did you mean `{h}`?)"),
            None => format!("unknown {what} `{name}`"),
        };
        self.error_help(span, message, format!("declare it with `{declare}`"));
    }

    pub(super) fn limits(&mut self, raw: &RawLimits) -> Limits {
        let defaults = Limits::default();
        let mut field = |v: &Option<Spanned<u32>>, name: &str, max: u32, default: u32| match v {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > max => {
                self.error(
                    &v.span(),
                    format!(
                        "`limits.{name}` must be between 1 and {max}, not {}",
                        v.get_ref()
                    ),
                );
                default
            }
            Some(v) => *v.get_ref(),
            None => default,
        };
        Limits {
            memory_mb: field(
                &raw.memory_mb,
                "memory_mb",
                Limits::MAX_MEMORY_MB,
                defaults.memory_mb,
            ),
            timeout_ms: field(
                &raw.timeout_ms,
                "timeout_ms",
                Limits::MAX_TIMEOUT_MS,
                defaults.timeout_ms,
            ),
            max_concurrency: field(
                &raw.max_concurrency,
                "max_concurrency",
                Limits::MAX_CONCURRENCY,
                defaults.max_concurrency,
            ),
        }
    }
}
