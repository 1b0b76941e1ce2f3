//! The sending side of calls to a function another node hosts: a mesh call decided here already,
//! or a gateway request admitted here, handed to one of the callee's nodes, which decides again.

use std::net::IpAddr;

use http::header::HOST;
use http::{Response, StatusCode, Uri};
use http_body_util::BodyExt;
use septa_flows::FlowGuard;
use septa_policy::{FunctionId, Principal};
use septa_runtime::{Caller, Chain, Forward, Forwarded, RecordedBody, WasiBody};

use crate::internal::Admitted;
use crate::remote::{CLIENT_HEADER, PRINCIPAL_FORWARD_HEADER, Unavailable, set_chain_headers};
use crate::{CALLER_HEADER, Inner, LocalNode, header_text, strip_identity_headers};

/// Sends an admitted call to a node that hosts the callee, with the headers only a node sets;
/// the flow records which node answered, or why none did.
pub(crate) async fn deliver(
    inner: &Inner,
    node: &LocalNode,
    caller: Caller,
    admitted: Admitted,
    request: http::Request<WasiBody>,
    mut flow: FlowGuard,
) -> Result<Response<WasiBody>, wasmtime_wasi_http::Error> {
    let identity = inner.policy.function(caller.function).identity.clone();
    let trace = caller.chain.trace;
    let hop = Hop {
        callee: admitted.callee,
        caller: &identity,
        chain: caller.chain,
        client: None,
        principal: None,
    };
    match send(inner, node, hop, admitted, request).await? {
        Ok(Forwarded { node, response }) => {
            flow.set_peer(node).set_status(response.status().as_u16());
            let (parts, body) = response.into_parts();
            let body = RecordedBody::new(body, flow).boxed_unsync();
            Ok(Response::from_parts(parts, body))
        }
        Err(unavailable) => {
            flow.set_error(unavailable.to_string()).set_status(503);
            Ok(septa_runtime::json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                Some(trace),
                Some("node unavailable"),
            ))
        }
    }
}

/// Hands a request the gateway admitted for a function this node does not run to a node that
/// does, as `gateway`, with the client address the gateway established.
pub(crate) async fn forward(
    inner: &Inner,
    node: &LocalNode,
    forward: Forward,
    request: http::Request<WasiBody>,
) -> Result<Forwarded, String> {
    let name = inner.policy.function(forward.function).spec.name.clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let admitted = Admitted {
        callee: forward.function,
        authority: format!("{name}.internal"),
        path_and_query,
    };
    let hop = Hop {
        callee: forward.function,
        caller: "gateway",
        // The receiving gateway starts the chain again at depth 0; the hop is one more.
        chain: forward.chain,
        client: Some(forward.client),
        principal: forward.principal.as_ref(),
    };
    match send(inner, node, hop, admitted, request).await {
        Ok(Ok(forwarded)) => Ok(forwarded),
        Ok(Err(unavailable)) => Err(unavailable.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// One request on its way to another node: for whom, from whom.
struct Hop<'a> {
    callee: FunctionId,
    caller: &'a str,
    chain: Chain,
    client: Option<IpAddr>,
    principal: Option<&'a Principal>,
}

/// Sends `request` to one of the nodes other than this one that host `hop.callee`, with the
/// headers only a node sets (whatever the request carried under those names is dropped).
async fn send(
    inner: &Inner,
    node: &LocalNode,
    hop: Hop<'_>,
    admitted: Admitted,
    request: http::Request<WasiBody>,
) -> Result<Result<Forwarded, Unavailable>, wasmtime_wasi_http::Error> {
    let nodes: Vec<String> = inner
        .policy
        .placement()
        .map(|p| {
            p.hosting(hop.callee)
                .filter(|n| n.as_str() != node.name)
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    let (mut parts, body) = request.into_parts();
    strip_identity_headers(&mut parts.headers);
    parts.headers.insert(CALLER_HEADER, header_text(hop.caller));
    set_chain_headers(&mut parts.headers, hop.chain.next());
    if let Some(client) = hop.client {
        parts
            .headers
            .insert(CLIENT_HEADER, header_text(&client.to_string()));
    }
    if let Some(principal) = hop.principal {
        parts.headers.insert(
            PRINCIPAL_FORWARD_HEADER,
            header_text(&principal.to_forwarded()),
        );
    }
    parts.headers.insert(HOST, header_text(&admitted.authority));
    parts.uri = Uri::builder()
        .scheme("https")
        .authority(admitted.authority)
        .path_and_query(admitted.path_and_query)
        .build()
        .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;
    Ok(node
        .remote
        .send(&nodes, http::Request::from_parts(parts, body))
        .await
        .map(|(peer, response)| {
            let (parts, body) = response.into_parts();
            let body = body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync();
            Forwarded {
                node: peer,
                response: Response::from_parts(parts, body),
            }
        }))
}
