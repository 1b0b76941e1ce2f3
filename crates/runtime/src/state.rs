//! What one request's store holds: a fresh WASI context with nothing inherited (what the guest
//! writes to stdout and stderr goes to septa's log, bounded), the wasi:http context, the hooks
//! that send every guest egress through [`crate::Outbound`], and the memory limiter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::guest_output::{self, GuestOutput};
use crate::{Caller, Outbound};

/// The data of one request's `Store`.
pub(crate) struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    pub(crate) limiter: MemoryLimiter,
}

impl State {
    /// The store of one request of `caller.function`, named `name`.
    pub(crate) fn new(
        caller: Caller,
        name: &Arc<str>,
        outbound: Option<Arc<dyn Outbound>>,
        memory_limit: usize,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        // No stdin, no environment, no arguments, no preopened directories, no DNS: a guest
        // reaches nothing the host does not hand it. Sockets go through the outbound check.
        // What it writes to stdout and stderr goes to septa's log, bounded (`guest_output`).
        wasi.allow_ip_name_lookup(false)
            .allow_tcp(true)
            .allow_udp(false);
        if guest_output::wanted() {
            let (function, trace) = (caller.function, caller.chain.trace);
            wasi.stdout(GuestOutput::new(function, name.clone(), trace, "stdout"))
                .stderr(GuestOutput::new(function, name.clone(), trace, "stderr"));
        }
        let check = outbound.clone();
        wasi.socket_addr_check(move |addr: SocketAddr, use_: SocketAddrUse| match &check {
            Some(outbound) => outbound.check_socket(caller, addr, use_),
            None => Box::pin(async { false }),
        });
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks { caller, outbound },
            limiter: MemoryLimiter {
                limit: memory_limit,
                exceeded: Arc::new(AtomicBool::new(false)),
            },
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Sends every outgoing wasi:http request of the guest through [`Outbound`], tagged with the
/// guest's identity, which the host knows and the guest cannot change.
struct Hooks {
    caller: Caller,
    outbound: Option<Arc<dyn Outbound>>,
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>>
            + Send,
    > {
        let caller = self.caller;
        let outbound = self.outbound.clone();
        Box::new(async move {
            let Some(outbound) = outbound else {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            };
            let response = outbound.send_request(caller, request, options).await?;
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// Enforces a function's memory limit and remembers whether the guest hit it, so a trap that
/// follows can be reported as what it is.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) exceeded: Arc<AtomicBool>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real component.
        Ok(desired <= 1_000_000)
    }
}
