//! `[function.NAME]` components and `[endpoint.NAME]` private endpoints with their backends,
//! placed and given resource limits; they share the `NAME.internal` names.

use std::collections::BTreeMap;
use std::path::Path;

use serde_spanned::Spanned;

use super::Loader;
use crate::model::*;
use crate::raw::*;

impl Loader {
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
                    kind: FunctionKind::Component(Component {
                        source: dir.join(f.source.get_ref()),
                        build,
                    }),
                    placement,
                    subnet_kind,
                    groups: fgroups,
                    labels,
                    mode: f.mode.unwrap_or(segment_mode),
                    limits,
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    /// `[endpoint.NAME]` entries, added to `functions`: they share the `NAME.internal` names.
    pub(super) fn endpoints(
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
                cpu_ms: None,
                max_concurrency: e.limits.max_concurrency.clone(),
            });
            let max_keys = self.quota(
                e.limits.max_keys.as_ref(),
                "limits.max_keys",
                Limits::MAX_KEYS,
            );
            let max_bytes = self.quota(
                e.limits.max_bytes.as_ref(),
                "limits.max_bytes",
                Limits::MAX_BYTES,
            );
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
                    placement,
                    subnet_kind,
                    groups: egroups,
                    labels,
                    mode: e.mode.unwrap_or(segment_mode),
                    limits: Limits {
                        memory_mb: defaults.memory_mb,
                        max_keys,
                        max_bytes,
                        ..limits
                    },
                    location: self.loc(&name.span()),
                },
            );
        }
    }

    /// `backend` (`embedded` unless given) and, for a server, where its URL comes from.
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
        if kind == "embedded" {
            if let Some(extra) = connection_fields(e).next() {
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
        let connection = self.connection(dir, name, kind, scheme, e)?;
        Some(match kind {
            "redis" => EndpointBackend::Redis(connection),
            _ => EndpointBackend::Postgres(connection),
        })
    }

    /// Where a server backend's URL comes from: exactly one of `url`, `url_env` and `url_file`.
    fn connection(
        &mut self,
        dir: &Path,
        name: &str,
        kind: &str,
        scheme: &str,
        e: &RawEndpoint,
    ) -> Option<Connection> {
        match (&e.url, &e.url_env, &e.url_file) {
            (Some(url), None, None) => self.connection_url(name, kind, scheme, url),
            (None, Some(var), None) => self.connection_env(var),
            (None, None, Some(file)) => Some(Connection::File(dir.join(file.get_ref()))),
            (None, None, None) => {
                let span = e.backend.as_ref().map(Spanned::span).unwrap_or_default();
                self.error_help(
                    &span,
                    format!("a {kind} endpoint needs a connection"),
                    "give `url` (without credentials), `url_env` or `url_file`",
                );
                None
            }
            _ => {
                let second = connection_fields(e).nth(1);
                self.error(
                    &second.map(Spanned::span).unwrap_or_default(),
                    "give one of `url`, `url_env` and `url_file`, not several",
                );
                None
            }
        }
    }

    /// A `url` written in the manifest: `scheme://` (or `postgresql://`), and no credentials.
    fn connection_url(
        &mut self,
        name: &str,
        kind: &str,
        scheme: &str,
        url: &Spanned<String>,
    ) -> Option<Connection> {
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
        Some(Connection::Url(text.clone()))
    }

    /// `url_env`: the name of the environment variable that holds the URL.
    fn connection_env(&mut self, var: &Spanned<String>) -> Option<Connection> {
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
        Some(Connection::Env(var.get_ref().clone()))
    }

    /// Each limit within its bounds, or its default; one out of bounds is reported and replaced
    /// by its default, so the function's other mistakes are still found.
    pub(super) fn limits(&mut self, raw: &RawLimits) -> Limits {
        let defaults = Limits::default();
        let mut field = |v: &Option<Spanned<u32>>, name: &str, max: u32, default: u32| {
            self.bounded(v.as_ref(), name, 1..=max, default)
                .unwrap_or(default)
        };
        let timeout_ms = field(
            &raw.timeout_ms,
            "limits.timeout_ms",
            Limits::MAX_TIMEOUT_MS,
            defaults.timeout_ms,
        );
        let limits = Limits {
            memory_mb: field(
                &raw.memory_mb,
                "limits.memory_mb",
                Limits::MAX_MEMORY_MB,
                defaults.memory_mb,
            ),
            timeout_ms,
            cpu_ms: field(
                &raw.cpu_ms,
                "limits.cpu_ms",
                Limits::MAX_TIMEOUT_MS,
                timeout_ms,
            ),
            max_concurrency: field(
                &raw.max_concurrency,
                "limits.max_concurrency",
                Limits::MAX_CONCURRENCY,
                defaults.max_concurrency,
            ),
            max_keys: None,
            max_bytes: None,
        };
        self.cpu_within_timeout(raw, limits)
    }

    /// `limits` with a CPU budget no larger than the timeout: CPU time never runs faster than
    /// the clock, so a larger budget would be one that can never be spent. Reported, and
    /// replaced by the timeout.
    fn cpu_within_timeout(&mut self, raw: &RawLimits, limits: Limits) -> Limits {
        let Some(cpu) = raw
            .cpu_ms
            .as_ref()
            .filter(|_| limits.cpu_ms > limits.timeout_ms)
        else {
            return limits;
        };
        self.error_help(
            &cpu.span(),
            format!(
                "`limits.cpu_ms` is {} but `limits.timeout_ms` is {}: the request is stopped at its timeout before it can use that much CPU",
                limits.cpu_ms, limits.timeout_ms
            ),
            "lower `cpu_ms` to at most `timeout_ms`, or leave it out to budget the whole timeout",
        );
        Limits {
            cpu_ms: limits.timeout_ms,
            ..limits
        }
    }

    /// An endpoint's storage quota: 1 to `max` if given; one out of bounds is reported (and no
    /// quota is kept, so the endpoint's other mistakes are still found).
    fn quota(&mut self, value: Option<&Spanned<u64>>, field: &str, max: u64) -> Option<u64> {
        let value = value?;
        let n = *value.get_ref();
        if (1..=max).contains(&n) {
            return Some(n);
        }
        self.error_help(
            &value.span(),
            format!("`{field}` must be between 1 and {max}, not {n}"),
            "leave it out for no quota",
        );
        None
    }
}

/// The connection fields an endpoint gives, in the order they are documented.
fn connection_fields(e: &RawEndpoint) -> impl Iterator<Item = &Spanned<String>> {
    [&e.url, &e.url_env, &e.url_file].into_iter().flatten()
}
