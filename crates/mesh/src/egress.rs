//! Egress: a guest's requests and sockets to anything outside the platform.
//!
//! The order matters. The rule is checked on the name before any DNS lookup (so a function cannot
//! make septa resolve names it may not reach), then the resolved addresses are checked against
//! the operator ceiling, and the connection is made to exactly the address that passed, so a
//! rebinding DNS answer cannot swap it afterwards.

use std::net::SocketAddr;

use http_body_util::BodyExt;
use septa_flows::FlowKind;
use septa_manifest::EgressScheme;
use septa_policy::hostname::{HostLiteral, parse_host};
use septa_policy::{Decision, EgressHost, Reason, SocketUse};
use septa_runtime::{Caller, RecordedBody, RequestOptions, SocketAddrUse, WasiBody};
use wasmtime_wasi_http::Error;

use crate::Inner;
use crate::dial::{self, DialError, DialTimeouts, Scheme};

pub(crate) async fn send(
    inner: &Inner,
    caller: Caller,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, Error> {
    let policy = &inner.policy;
    let source = policy.function(caller.function);
    let uri = request.uri().clone();
    let scheme = uri
        .scheme()
        .and_then(Scheme::from_uri_scheme)
        .ok_or(Error::HttpProtocolError)?;
    let host_text = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_owned();
    let port = uri.port_u16().unwrap_or_else(|| scheme.default_port());
    let scheme_name = match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let mut flow = inner.flows.guard(
        FlowKind::Egress,
        source.identity.clone(),
        format!("{scheme_name}://{host_text}:{port}"),
    );
    flow.set_method(request.method().as_str())
        .set_path(uri.path())
        .set_target(format!("{host_text}:{port}"))
        .set_segment(source.spec.placement.segment.as_str())
        .set_trace(caller.chain.trace)
        .set_policy(inner.policy.revision());
    if caller.chain.probe {
        // A probe acts as any function under an operator's grant: it must not be a way to send
        // anything out as one, so it stops here, before DNS and before any connection.
        flow.set_probe();
        let target = format!("{scheme_name}://{host_text}:{port}");
        flow.set_decision(&Decision::refuse(Reason::ProbeEgress { target }, false));
        return Err(Error::HttpRequestDenied);
    }

    let bare = host_text.trim_start_matches('[').trim_end_matches(']');
    let host = match parse_host(bare) {
        Ok(h) => h,
        Err(e) => {
            flow.set_decision(&Decision::refuse(Reason::InvalidHost(e.to_string()), false));
            return Err(Error::HttpRequestUriInvalid);
        }
    };
    let egress_host = match &host {
        HostLiteral::Ip(ip) => EgressHost::Ip(*ip),
        HostLiteral::Name(name) => EgressHost::Name(name),
    };
    let rule_scheme = match scheme {
        Scheme::Http => EgressScheme::Http,
        Scheme::Https => EgressScheme::Https,
    };

    // The decision on the name; the decision on the address dialled can only narrow it.
    let decision = policy.decide_egress(caller.function, rule_scheme, egress_host, port);
    flow.set_decision(&decision);
    if !decision.verdict.permits() {
        return Err(Error::HttpRequestDenied);
    }

    let resolve_name = match &host {
        HostLiteral::Ip(ip) => ip.to_string(),
        HostLiteral::Name(name) => name.clone(),
    };
    let addrs = match dial::resolve(&resolve_name, port).await {
        Ok(addrs) => addrs,
        Err(e) => {
            flow.set_error(e.to_string());
            return Err(wasi_error(&e));
        }
    };
    let addr = match dial::first_permitted(addrs.iter().copied(), policy) {
        Ok(addr) => addr,
        Err(DialError::Blocked(refused)) => {
            flow.set_decision(&refused);
            return Err(Error::HttpRequestDenied);
        }
        Err(e) => {
            flow.set_error(e.to_string());
            return Err(wasi_error(&e));
        }
    };

    let timeouts = DialTimeouts {
        connect: options
            .and_then(|o| o.connect_timeout)
            .map_or(inner.timeouts.connect, |t| t.min(inner.timeouts.connect)),
        first_byte: options
            .and_then(|o| o.first_byte_timeout)
            .map_or(inner.timeouts.first_byte, |t| {
                t.min(inner.timeouts.first_byte)
            }),
    };
    match dial::send_pinned(addr, scheme, &resolve_name, request, timeouts).await {
        Ok((response, connection)) => {
            tokio::spawn(connection);
            flow.set_status(response.status().as_u16());
            let (parts, body) = response.into_parts();
            let body = RecordedBody::new(body.map_err(Error::from).boxed_unsync(), flow);
            Ok(http::Response::from_parts(parts, body.boxed_unsync()))
        }
        Err(e) => {
            flow.set_error(e.to_string());
            Err(wasi_error(&e))
        }
    }
}

/// wasi:sockets: TCP connections are egress under `tcp://` rules; nothing else is allowed.
pub(crate) fn check_socket(
    inner: &Inner,
    caller: Caller,
    addr: SocketAddr,
    use_: SocketAddrUse,
) -> bool {
    // Before a connect, wasmtime asks whether the socket may be bound implicitly to an ephemeral
    // port; that is not a flow. Listening is checked separately (`TcpListen`) and refused below.
    if matches!(use_, SocketAddrUse::TcpBind) && addr.ip().is_unspecified() && addr.port() == 0 {
        return true;
    }
    let policy = &inner.policy;
    let source = policy.function(caller.function);
    let mut flow = inner.flows.guard(
        FlowKind::Egress,
        source.identity.clone(),
        format!("tcp://{addr}"),
    );
    flow.set_target(addr.to_string())
        .set_segment(source.spec.placement.segment.as_str())
        .set_trace(caller.chain.trace)
        .set_policy(policy.revision());
    let socket = match use_ {
        SocketAddrUse::TcpConnect => SocketUse::TcpConnect,
        other => SocketUse::Other(format!("{other:?}")),
    };
    let decision = if caller.chain.probe {
        // Probes run no guest, so none opens a socket; should one ever try, it stops here too.
        flow.set_probe();
        let target = format!("tcp://{addr}");
        Decision::refuse(Reason::ProbeEgress { target }, false)
    } else {
        policy.decide_socket(caller.function, socket, addr)
    };
    flow.set_decision(&decision);
    flow.finish();
    decision.verdict.permits()
}

/// The wasi:http error a guest sees for a dial failure.
fn wasi_error(e: &DialError) -> Error {
    match e {
        DialError::InvalidHost(_) => Error::HttpRequestUriInvalid,
        DialError::DnsTimeout { .. } => Error::DnsTimeout,
        DialError::DnsError { .. } => Error::DnsError {
            rcode: None,
            info_code: None,
        },
        DialError::Blocked(_) => Error::HttpRequestDenied,
        other => Error::InternalError(Some(other.to_string())),
    }
}
