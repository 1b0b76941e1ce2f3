//! One cached connection to a network backend, made on demand and dropped when it fails.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Fault;

/// A connection shared by every call of one endpoint.
///
/// Connecting is serialized, so a backend coming back sees one connection attempt per
/// endpoint rather than one per waiting call; each call still gives up at its own timeout.
pub(crate) struct Slot<C> {
    state: Mutex<State<C>>,
    connecting: tokio::sync::Mutex<()>,
}

struct State<C> {
    /// Counts connections made, so a stale lease cannot discard a newer connection.
    generation: u64,
    connection: Option<C>,
}

/// A connection lent to one call, with what is needed to drop it if it turns out broken.
pub(crate) struct Lease<C> {
    pub(crate) connection: C,
    generation: u64,
    /// Made for this call rather than reused: a failure on it is not a stale connection.
    pub(crate) fresh: bool,
}

impl<C: Clone> Slot<C> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                generation: 0,
                connection: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The cached connection if `usable` says it still is, else a new one from `connect`.
    pub(crate) async fn lease<F>(
        &self,
        usable: impl Fn(&C) -> bool,
        connect: impl FnOnce() -> F,
    ) -> Result<Lease<C>, Fault>
    where
        F: Future<Output = Result<C, Fault>>,
    {
        if let Some(lease) = self.cached_lease(&usable) {
            return Ok(lease);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(lease) = self.cached_lease(&usable) {
            return Ok(lease);
        }
        let connection = connect().await?;
        let mut state = self.state();
        state.generation += 1;
        state.connection = Some(connection.clone());
        Ok(Lease {
            connection,
            generation: state.generation,
            fresh: true,
        })
    }

    fn cached_lease(&self, usable: &impl Fn(&C) -> bool) -> Option<Lease<C>> {
        let state = self.state();
        let connection = state.connection.as_ref().filter(|c| usable(c))?;
        Some(Lease {
            connection: connection.clone(),
            generation: state.generation,
            fresh: false,
        })
    }

    /// Drops the leased connection, unless another call already replaced it.
    pub(crate) fn discard(&self, lease: &Lease<C>) {
        let mut state = self.state();
        if state.generation == lease.generation {
            state.connection = None;
        }
    }

    /// Drops whatever connection is cached.
    pub(crate) fn forget(&self) {
        self.state().connection = None;
    }

    fn state(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
