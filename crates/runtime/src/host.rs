//! The host: pre-instantiated functions, and one fresh store per request.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use hyper::body::Body;
use septa_policy::{FunctionId, Policy};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use http_body_util::BodyExt;
use septa_flows::FlowGuard;

use crate::body::{CountedBody, DeadlineBody, RecordedBody};
use crate::bulkhead::Bulkheads;
use crate::cache::{CacheOutcome, ComponentCache};
use crate::scheduler::Scheduler;
use crate::state::State;
use crate::{Caller, Chain, Outbound};

/// A function ready to serve: its component linked and pre-instantiated, and its limits.
struct LoadedFunction {
    name: String,
    pre: ProxyPre<State>,
    memory_limit: usize,
    timeout: Duration,
}

/// Why a function could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("function `{function}`: cannot read `{path}`: {source}")]
    Read {
        /// The function.
        function: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a component septa can run.
    #[error("function `{function}`: `{path}` is not a runnable wasi:http component: {message}")]
    Component {
        /// The function.
        function: String,
        /// The file.
        path: String,
        /// What wasmtime said.
        message: String,
    },
}

/// Why a request to a function failed. Each maps to a clear 5xx for that request only.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Every instance slot of the function is busy.
    #[error("function `{function}` is at its concurrency limit of {limit}")]
    Overloaded {
        /// The function.
        function: String,
        /// Its `max_concurrency`.
        limit: usize,
    },
    /// Every slot of the function's segment is busy.
    #[error("segment `{segment}` is at its concurrency limit of {limit}")]
    SegmentOverloaded {
        /// The segment.
        segment: String,
        /// Its `limits.max_concurrency`.
        limit: usize,
    },
    /// The guest ran past its timeout and was stopped.
    #[error("function `{function}` exceeded its timeout of {timeout_ms} ms")]
    Timeout {
        /// The function.
        function: String,
        /// Its `timeout_ms`.
        timeout_ms: u128,
    },
    /// The guest used more CPU time than its budget and was stopped.
    #[error("function `{function}` exceeded its CPU budget of {cpu_ms} ms")]
    CpuBudget {
        /// The function.
        function: String,
        /// Its `cpu_ms`.
        cpu_ms: u128,
    },
    /// The guest tried to grow its memory past its limit and failed.
    #[error("function `{function}` exceeded its memory limit of {limit_mb} MiB")]
    MemoryLimit {
        /// The function.
        function: String,
        /// Its `memory_mb`.
        limit_mb: usize,
    },
    /// The guest trapped (panicked, hit `unreachable`, ...).
    #[error("function `{function}` failed: {message}")]
    Trap {
        /// The function.
        function: String,
        /// What went wrong, from wasmtime.
        message: String,
    },
    /// The guest finished without sending a response.
    #[error("function `{function}` returned without a response")]
    NoResponse {
        /// The function.
        function: String,
    },
    /// The client did not send the whole request body in time.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    BodyTimeout {
        /// The limit.
        timeout_ms: u128,
    },
    /// The host could not set up the request.
    #[error("function `{function}`: {message}")]
    Host {
        /// The function.
        function: String,
        /// What failed.
        message: String,
    },
}

impl InvokeError {
    /// The HTTP status the caller gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Overloaded { .. } | Self::SegmentOverloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout { .. } | Self::CpuBudget { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Runs the functions of one compiled policy.
pub struct Host {
    engine: Engine,
    /// By function id; `None` for endpoints, which the mesh answers without an instance.
    functions: Vec<Option<LoadedFunction>>,
    bulkheads: Arc<Bulkheads>,
    scheduler: Scheduler,
    outbound: OnceLock<Arc<dyn Outbound>>,
}

/// What loading found, for the start-up log.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadReport {
    /// Components loaded from the compiled cache.
    pub cache_hits: usize,
    /// Components compiled.
    pub compiled: usize,
}

impl Host {
    /// Loads, links and pre-instantiates every function of `policy`.
    pub fn load(
        engine: &Engine,
        policy: &Policy,
        cache: &ComponentCache,
    ) -> Result<(Self, LoadReport), LoadError> {
        Self::load_hosted(engine, policy, cache, |_| true)
    }

    /// Loads, links and pre-instantiates the functions of `policy` that `hosted` says run here
    /// (on a node of a cluster, the ones its `[node.NAME]` hosts); the others are never read.
    pub fn load_hosted(
        engine: &Engine,
        policy: &Policy,
        cache: &ComponentCache,
        hosted: impl Fn(FunctionId) -> bool,
    ) -> Result<(Self, LoadReport), LoadError> {
        let mut linker = Linker::<State>::new(engine);
        let component_error =
            |function: &str, path: &str, e: wasmtime::Error| LoadError::Component {
                function: function.to_owned(),
                path: path.to_owned(),
                message: format!("{e:#}"),
            };
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| component_error("*", "*", e))?;
        let mut report = LoadReport::default();
        let mut functions = Vec::with_capacity(policy.functions().len());
        for info in policy.functions() {
            let spec = &info.spec;
            let Some(component) = spec.component().filter(|_| hosted(info.id)) else {
                functions.push(None);
                continue;
            };
            let name = spec.name.as_str();
            let path = component.source.display().to_string();
            let bytes = std::fs::read(&component.source).map_err(|source| LoadError::Read {
                function: name.to_owned(),
                path: path.clone(),
                source,
            })?;
            let (component, outcome) = cache
                .load(engine, &bytes)
                .map_err(|e| component_error(name, &path, e))?;
            match outcome {
                CacheOutcome::Hit => report.cache_hits += 1,
                CacheOutcome::Miss => report.compiled += 1,
            }
            let pre = linker
                .instantiate_pre(&component)
                .and_then(ProxyPre::new)
                .map_err(|e| component_error(name, &path, e))?;
            functions.push(Some(LoadedFunction {
                name: name.to_owned(),
                pre,
                memory_limit: (spec.limits.memory_mb as usize) << 20,
                timeout: Duration::from_millis(u64::from(spec.limits.timeout_ms)),
            }));
        }
        Ok((
            Self {
                engine: engine.clone(),
                functions,
                bulkheads: Arc::new(Bulkheads::new(policy)),
                scheduler: Scheduler::new(policy),
                outbound: OnceLock::new(),
            },
            report,
        ))
    }

    /// The concurrency caps of functions and segments, for what else serves requests (the
    /// endpoints) to take its slots from the same bulkheads.
    pub fn bulkheads(&self) -> Arc<Bulkheads> {
        self.bulkheads.clone()
    }

    /// Whether function `id` runs in this host (on a node of a cluster, whether the node hosts
    /// it; a request for one it does not is forwarded, see [`crate::Outbound::forward`]).
    pub fn runs(&self, id: FunctionId) -> bool {
        self.functions.get(id.index()).is_some_and(Option::is_some)
    }

    /// The outbound path, once wired.
    pub fn outbound(&self) -> Option<Arc<dyn Outbound>> {
        self.outbound.get().cloned()
    }

    /// Wires the outbound path (the mesh). Until it is set, every guest egress is denied.
    pub fn set_outbound(&self, outbound: Arc<dyn Outbound>) {
        let _ = self.outbound.set(outbound);
    }

    /// Runs function `id` on `request` in a fresh instance and returns its response. `chain`
    /// starts at the gateway ([`Chain::start`]) and goes one hop further for each mesh call.
    ///
    /// The response body may still be streaming from the guest when this returns; the guest
    /// keeps its instance slot until it finishes or its deadline stops it.
    pub async fn handle<B>(
        &self,
        id: FunctionId,
        chain: Chain,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let function = self
            .functions
            .get(id.index())
            .and_then(Option::as_ref)
            .ok_or_else(|| InvokeError::Host {
                function: format!("#{}", id.index()),
                message: "no component with this id in the loaded policy".to_owned(),
            })?;
        let permit = self.bulkheads.enter(id)?;
        let host_error = |e: wasmtime::Error| InvokeError::Host {
            function: function.name.clone(),
            message: format!("{e:#}"),
        };

        let mut store = Store::new(
            &self.engine,
            State::new(
                Caller {
                    function: id,
                    chain,
                },
                self.outbound.get().cloned(),
                function.memory_limit,
            ),
        );
        store.limiter(|state| &mut state.limiter);
        let memory_exceeded = store.data().limiter.exceeded.clone();
        let deadline = Instant::now() + function.timeout;
        store.set_epoch_deadline(1);
        // Yield at every tick so a busy guest cannot starve the other requests on this thread,
        // and stop it once its time is up. The scheduler decides what the yield is: back to the
        // worker's tokio runtime, which polls its sockets before the guest goes on, and a wait
        // in line while guests of segments that had less than their share run.
        let guest = self.scheduler.admit(id);
        let clock = guest.clock();
        let cpu = guest.clock();
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(clock.yield_point())
            }
        });

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(host_error)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(host_error)?;
        let pre = function.pre.clone();
        let task = tokio::spawn(guest.run(async move {
            let _slot = permit;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        }));

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(InvokeError::Trap {
                function: function.name.clone(),
                message: format!("the guest answered with error {code:?}"),
            }),
            Err(_) => {
                // The guest dropped its response outparam: it trapped, ran out of time or memory,
                // or returned without answering. The task's result says which.
                let outcome = task.await;
                if cpu.over_budget() {
                    return Err(InvokeError::CpuBudget {
                        function: function.name.clone(),
                        cpu_ms: cpu.budget().as_millis(),
                    });
                }
                Err(self.classify(function, outcome, memory_exceeded.load(Ordering::Relaxed)))
            }
        }
    }

    /// Runs function `id` as flow `flow`: the request's bytes are counted, and the flow is
    /// recorded when the response body ends; on failure it is recorded at once, with the error
    /// as its status and its `error`, and the error is returned for the caller to
    /// answer with. A body that has not arrived within `body_timeout` fails the request with
    /// [`InvokeError::BodyTimeout`], whatever the function made of it.
    pub async fn handle_flow<B>(
        &self,
        id: FunctionId,
        chain: Chain,
        request: hyper::Request<B>,
        body_timeout: Option<std::time::Duration>,
        mut flow: FlowGuard,
    ) -> Result<hyper::Response<HyperOutgoingBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let (parts, body) = request.into_parts();
        let (body, expired) = DeadlineBody::new(body, body_timeout);
        let (body, bytes_in) = CountedBody::new(body);
        let mut outcome = self
            .handle(id, chain, hyper::Request::from_parts(parts, body))
            .await;
        if expired.load(Ordering::Relaxed) {
            outcome = Err(InvokeError::BodyTimeout {
                timeout_ms: body_timeout.unwrap_or_default().as_millis(),
            });
        }
        match outcome {
            Ok(response) => {
                flow.set_status(response.status().as_u16());
                let (parts, body) = response.into_parts();
                let body = RecordedBody::new(body, flow).with_bytes_in(bytes_in);
                Ok(hyper::Response::from_parts(parts, body.boxed_unsync()))
            }
            Err(e) => {
                flow.add_bytes_in(bytes_in.load(Ordering::Relaxed))
                    .set_status(e.status().as_u16())
                    .set_error(e.to_string());
                flow.finish();
                Err(e)
            }
        }
    }

    fn classify(
        &self,
        function: &LoadedFunction,
        outcome: Result<wasmtime::Result<()>, tokio::task::JoinError>,
        memory_exceeded: bool,
    ) -> InvokeError {
        let name = function.name.clone();
        let error = match outcome {
            Ok(Ok(())) => return InvokeError::NoResponse { function: name },
            Ok(Err(e)) => e,
            Err(join) => {
                return InvokeError::Host {
                    function: name,
                    message: format!("the instance task failed: {join}"),
                };
            }
        };
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return InvokeError::Timeout {
                function: name,
                timeout_ms: function.timeout.as_millis(),
            };
        }
        if memory_exceeded {
            return InvokeError::MemoryLimit {
                function: name,
                limit_mb: function.memory_limit >> 20,
            };
        }
        InvokeError::Trap {
            function: name,
            message: format!("{error:#}"),
        }
    }
}
