//! The caller's side of a mesh call to a function another node hosts: decided here already, then
//! handed to one of the callee's nodes, which decides again.

use http::header::HOST;
use http::{Response, StatusCode, Uri};
use http_body_util::BodyExt;
use septa_flows::FlowGuard;
use septa_runtime::{Caller, RecordedBody, WasiBody};

use crate::internal::{Admitted, json_response};
use crate::remote::{DEPTH_HEADER, TRACE_HEADER};
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
    let policy = &inner.policy;
    let nodes: Vec<String> = policy
        .placement()
        .map(|p| {
            p.hosting(admitted.callee)
                .filter(|n| n.as_str() != node.name)
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    let source = policy.function(caller.function);
    let (mut parts, body) = request.into_parts();
    strip_identity_headers(&mut parts.headers);
    parts
        .headers
        .insert(CALLER_HEADER, header_text(&source.identity));
    parts.headers.insert(
        TRACE_HEADER,
        header_text(&format!("{:016x}", caller.chain.trace)),
    );
    parts.headers.insert(
        DEPTH_HEADER,
        header_text(&caller.chain.next().depth.to_string()),
    );
    parts.headers.insert(HOST, header_text(&admitted.authority));
    parts.uri = Uri::builder()
        .scheme("https")
        .authority(admitted.authority)
        .path_and_query(admitted.path_and_query)
        .build()
        .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;
    match node
        .remote
        .send(&nodes, http::Request::from_parts(parts, body))
        .await
    {
        Ok((peer, response)) => {
            flow.set_peer(peer).set_status(response.status().as_u16());
            let (parts, body) = response.into_parts();
            let body = body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync();
            let body = RecordedBody::new(body, flow).boxed_unsync();
            Ok(Response::from_parts(parts, body))
        }
        Err(unavailable) => {
            flow.set_error(unavailable.to_string()).set_status(503);
            Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "node unavailable",
            ))
        }
    }
}
