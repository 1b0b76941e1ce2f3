//! The host: pre-instantiated functions, and one fresh store per request, run to its deadline.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Body;
use septa_policy::{FunctionId, Policy};
use wasmtime::component::Linker;
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use http_body_util::BodyExt;
use septa_flows::FlowGuard;

use crate::body::{CountedBody, DeadlineBody, GuestBody, RecordedBody};
use crate::bulkhead::Bulkheads;
use crate::cache::{CacheOutcome, ComponentCache};
use crate::component_check::check_component;
use crate::invoke_error::InvokeError;
use crate::pool::{InstanceNeeds, PoolSize};
use crate::run::{self, GuestEnd, WaitingFlow};
use crate::scheduler::{Scheduler, TaskLost};
use crate::state::State;
use crate::{Caller, Chain, Outbound};

/// A function ready to serve: its component linked and pre-instantiated, and its limits.
struct LoadedFunction {
    name: Arc<str>,
    /// Its segment, named when the pool refuses it.
    segment: String,
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
    /// One instance of the component needs more of the pool than an instance slot holds.
    #[error(
        "function `{function}`: one instance of `{path}` needs {needs}, but each instance slot of the pool holds {slot} (sized when septa started; restart septa to size it for this component)"
    )]
    PoolTooSmall {
        /// The function.
        function: String,
        /// The file.
        path: String,
        /// What one instance needs.
        needs: InstanceNeeds,
        /// What one slot holds.
        slot: InstanceNeeds,
    },
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
    /// Loads, links and pre-instantiates every function of `policy` on `engine`, whose pool is
    /// `pool`.
    pub fn load(
        engine: &Engine,
        pool: &PoolSize,
        policy: &Policy,
        cache: &ComponentCache,
    ) -> Result<(Self, LoadReport), LoadError> {
        Self::load_hosted(engine, pool, policy, cache, |_| true)
    }

    /// Loads, links and pre-instantiates the functions of `policy` that `hosted` says run here
    /// (on a node of a cluster, the ones its `[node.NAME]` hosts); the others are never read.
    /// A component one instance of which would not fit in a slot of `pool` is refused.
    pub fn load_hosted(
        engine: &Engine,
        pool: &PoolSize,
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
            check_component(&bytes).map_err(|e| LoadError::Component {
                function: name.to_owned(),
                path: path.clone(),
                message: e.to_string(),
            })?;
            let needs = InstanceNeeds::of_component(&bytes).map_err(|e| LoadError::Component {
                function: name.to_owned(),
                path: path.clone(),
                message: e.to_string(),
            })?;
            if !needs.fits(pool.per_instance) {
                return Err(LoadError::PoolTooSmall {
                    function: name.to_owned(),
                    path,
                    needs,
                    slot: pool.per_instance,
                });
            }
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
                name: Arc::from(name),
                segment: spec.placement.segment.to_string(),
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
    /// The request is over by its deadline: the function's timeout from now, or the chain's
    /// deadline if that comes first. The response body may still be streaming from the guest
    /// when this returns; the guest keeps its slots until it finishes or the deadline stops it,
    /// and a body cut short by a trap or the deadline ends in an error.
    pub async fn handle<B>(
        &self,
        id: FunctionId,
        chain: Chain,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<GuestBody<HyperOutgoingBody>>, InvokeError>
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
            function: function.name.to_string(),
            message: format!("{e:#}"),
        };

        let started = Instant::now();
        let deadline = run::deadline(&chain, function.timeout);
        // Whether the caller's deadline, not the function's own timeout, is what can stop it.
        let callers =
            (chain.deadline == Some(deadline)).then(|| deadline.saturating_duration_since(started));
        let chain = chain.within(deadline);
        let mut store = Store::new(
            &self.engine,
            State::new(
                Caller {
                    function: id,
                    chain,
                },
                &function.name,
                self.outbound.get().cloned(),
                function.memory_limit,
            ),
        );
        store.limiter(|state| &mut state.limiter);
        let memory_exceeded = store.data().limiter.exceeded.clone();
        store.set_epoch_deadline(1);
        // Yield at every tick so a busy guest cannot starve the other requests on its thread,
        // and stop it once its time or its CPU budget is up. The yield goes back to the
        // thread's tokio runtime, which polls its sockets before the guest goes on; there the
        // scheduler moves a guest that computes long off its worker, and shares the CPU of the
        // thread it moves to between segments (`crate::scheduler`).
        let guest = self.scheduler.admit(id, deadline);
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
        let end = GuestEnd::default();
        let guest_end = end.clone();
        // The epoch stops a guest that computes past its deadline; this stops one parked in a
        // host call, which never sees an epoch tick.
        let budget = cpu.clone();
        let task = guest.spawn(run::until_deadline(deadline, end.clone(), async move {
            let _slot = permit;
            let outcome = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            if outcome.is_err() {
                // Said while the store (and its response body's sender) is still alive.
                guest_end.set(if budget.over_budget() {
                    run::Stop::CpuBudget
                } else {
                    run::Stop::Failed
                });
            }
            // The guest is done. On a worker with little to do, whoever waits on what it
            // answered (a client's connection, a calling guest) goes first, and tearing its
            // store down (resetting the pooled instance's memory, a few µs) comes after, off
            // the request's path: a mesh hop's p50 at one connection drops by about 20 µs. On a
            // busy worker the extra turn of its sockets cost 5% more CPU per request for no
            // latency won, so there the store goes at once (docs/performance.md).
            if run::worker_is_quiet() {
                tokio::task::yield_now().await;
            }
            drop(store);
            outcome
        }));

        match receiver.await {
            Ok(Ok(response)) => Ok(response.map(|body| {
                GuestBody::new(
                    body,
                    end,
                    function.name.clone(),
                    function.timeout,
                    cpu.budget(),
                )
            })),
            Ok(Err(code)) => Err(InvokeError::Trap {
                function: function.name.to_string(),
                message: format!("the guest answered with error {code:?}"),
            }),
            Err(_) => {
                // The guest dropped its response outparam: it trapped, ran out of time or memory,
                // or returned without answering. The task's result says which; by the time it
                // is known, the task has returned every slot it held.
                let outcome = task.await;
                if cpu.over_budget() {
                    return Err(InvokeError::CpuBudget {
                        function: function.name.to_string(),
                        cpu_ms: cpu.budget().as_millis(),
                    });
                }
                Err(self.classify(
                    function,
                    outcome,
                    memory_exceeded.load(Ordering::Relaxed),
                    callers,
                ))
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
        // Until the function answers, a caller that stops waiting (its own deadline passed, or
        // its client went away) still leaves a record that says so.
        let waiting = WaitingFlow::new(&mut flow, chain.deadline);
        let mut outcome = self
            .handle(id, chain, hyper::Request::from_parts(parts, body))
            .await;
        waiting.answered();
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
        outcome: Result<wasmtime::Result<()>, TaskLost>,
        memory_exceeded: bool,
        callers_deadline: Option<Duration>,
    ) -> InvokeError {
        let name = function.name.to_string();
        let error = match outcome {
            Ok(Ok(())) => return InvokeError::NoResponse { function: name },
            Ok(Err(e)) => e,
            Err(lost) => {
                return InvokeError::Host {
                    function: name,
                    message: lost.to_string(),
                };
            }
        };
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
            || error.is::<run::DeadlinePassed>()
        {
            return match callers_deadline {
                Some(left) => InvokeError::CallerDeadline {
                    function: name,
                    left_ms: left.as_millis(),
                },
                None => InvokeError::Timeout {
                    function: name,
                    timeout_ms: function.timeout.as_millis(),
                },
            };
        }
        if let Some(exhausted) = error.downcast_ref::<PoolConcurrencyLimitError>() {
            return InvokeError::PoolExhausted {
                function: name,
                segment: function.segment.clone(),
                resource: exhausted.to_string(),
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
