//! `memhog`: `GET /grow?mb=N` allocates N MiB and writes every byte, to test the host's
//! per-instance memory limit. Within the limit it answers `{"grown_mb": N}`; past it
//! the allocation fails and the guest aborts, which is the outcome the test expects.
//! Any other path answers `{"ok": true}`.
//!
//! Endpoints match on the last path segment, so `/lab/grow` works too: tests can mount
//! the component under any route prefix.

use common::{Reply, Request};
use serde_json::json;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

const MIB: usize = 1024 * 1024;

struct Memhog;

wasi::http::proxy::export!(Memhog);

impl Guest for Memhog {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        common::serve(request, out, route);
    }
}

fn route(request: &Request) -> Reply {
    if request.method == "GET" && request.endpoint() == "grow" {
        grow(request)
    } else {
        Reply::json(200, &json!({ "ok": true }))
    }
}

fn grow(request: &Request) -> Reply {
    let Some(mb) = request
        .query_value("mb")
        .and_then(|mb| mb.parse::<usize>().ok())
    else {
        return Reply::error(400, "`mb` must be a whole number of MiB");
    };
    let Some(bytes) = mb.checked_mul(MIB) else {
        return Reply::error(
            400,
            format!("`{mb}` MiB does not fit in a 32-bit address space"),
        );
    };
    // `with_capacity` rather than `try_reserve` on purpose: hitting the host's limit
    // must abort the guest, not be answered politely.
    let mut hog: Vec<u8> = Vec::with_capacity(bytes);
    // Written byte by byte with a non-zero value so every page is really touched; a
    // zeroed allocation (`vec![0; n]`) may be served from fresh memory the allocator
    // knows is zero and never be written at all.
    hog.resize(bytes, 0xA5);
    std::hint::black_box(&hog);
    Reply::json(200, &json!({ "grown_mb": mb }))
}
