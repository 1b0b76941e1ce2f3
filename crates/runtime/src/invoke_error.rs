//! Why a request to a function failed: the detail the flow record and septa's log keep, the
//! status the caller gets, and the few words a client may read.

use http::StatusCode;

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
    /// The instance pool had no room for another instance (`--instances`, or one of the
    /// core instances, memories or tables its slots hold).
    #[error("function `{function}` (segment `{segment}`) found no free instance slot: {resource}")]
    PoolExhausted {
        /// The function.
        function: String,
        /// Its segment.
        segment: String,
        /// What ran out, as wasmtime says it.
        resource: String,
    },
    /// The guest ran past its timeout and was stopped.
    #[error("function `{function}` exceeded its timeout of {timeout_ms} ms")]
    Timeout {
        /// The function.
        function: String,
        /// Its `timeout_ms`.
        timeout_ms: u128,
    },
    /// The guest was stopped at the deadline of the chain it answers, which came before its own
    /// timeout: its caller stopped waiting.
    #[error(
        "function `{function}` was stopped when its caller's deadline passed, {left_ms} ms into the call"
    )]
    CallerDeadline {
        /// The function.
        function: String,
        /// What the chain had left when the call began.
        left_ms: u128,
    },
    /// The guest used more CPU time than its budget and was stopped, as a timeout is.
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
            Self::Overloaded { .. }
            | Self::SegmentOverloaded { .. }
            | Self::PoolExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } | Self::CallerDeadline { .. } | Self::CpuBudget { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a client may be told: a few words for the status, never a function's name, its
    /// limits or what its guest said (those are for the flow record and septa's log).
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::Overloaded { .. }
            | Self::SegmentOverloaded { .. }
            | Self::PoolExhausted { .. } => "overloaded, try again later",
            Self::Timeout { .. } | Self::CallerDeadline { .. } | Self::CpuBudget { .. } => {
                "the function did not answer in time"
            }
            Self::BodyTimeout { .. } => "the request body did not arrive in time",
            Self::MemoryLimit { .. }
            | Self::Trap { .. }
            | Self::NoResponse { .. }
            | Self::Host { .. } => "the function failed",
        }
    }
}
