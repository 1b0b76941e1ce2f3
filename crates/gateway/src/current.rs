//! The gateway serving now, replaced whole on a reload.

use std::sync::{Arc, RwLock};

use crate::Gateway;

/// The gateway in force. A request takes it once, when its head has arrived, and keeps it to
/// the end: the gateway holds its policy, and its host holds the mesh deciding with that same
/// policy, so a request and every mesh call it makes are decided by one policy, old or new,
/// never a mix. Swapping never waits for requests in flight; they finish on the gateway they
/// took, which is dropped with the last of them.
pub struct CurrentGateway {
    gateway: RwLock<Arc<Gateway>>,
}

impl CurrentGateway {
    /// Serves `gateway` until [`CurrentGateway::swap`].
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway: RwLock::new(gateway),
        }
    }

    /// The gateway in force now.
    pub fn load(&self) -> Arc<Gateway> {
        // The lock guards one pointer and nothing panics while holding it; a poisoned lock
        // still holds a whole `Arc`.
        match self.gateway.read() {
            Ok(gateway) => gateway.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `gateway` in force for every request that starts from now on, and returns the one
    /// it replaces.
    pub fn swap(&self, gateway: Arc<Gateway>) -> Arc<Gateway> {
        let mut slot = match self.gateway.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *slot, gateway)
    }
}
