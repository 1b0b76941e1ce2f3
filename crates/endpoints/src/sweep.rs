//! The sweeper: removes each store's expired entries in the background.
//!
//! Expired entries are invisible from the moment their TTL passes, but they still take room
//! (and count against the endpoint's quotas) until they are removed. Each store has one sweeper
//! thread running a small tokio runtime of its own: every [`StoreOptions::sweep_interval`] it
//! removes expired entries one bounded batch at a time ([`Store::sweep_expired`]), until a batch
//! comes back short. It holds the store only while it sweeps, and stops when the store is
//! dropped.
//!
//! [`StoreOptions::sweep_interval`]: crate::StoreOptions::sweep_interval

use std::io;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::{SWEEP_BATCH, Store, WeakStore};

/// The most batches one round removes, so a store that expires faster than it is swept still
/// lets the round end (the next round goes on).
const MAX_BATCHES_PER_ROUND: usize = 1000;

/// Starts sweeping `store` until `stopped` resolves (its sender is dropped with the store).
pub(crate) fn start(store: &Store, stopped: oneshot::Receiver<()>) -> io::Result<()> {
    let interval = store.options().sweep_interval.max(Duration::from_millis(1));
    let weak = store.downgrade();
    let endpoint = store.endpoint().to_owned();
    std::thread::Builder::new()
        .name(format!("septa-sweep-{endpoint}"))
        .spawn(move || {
            // A connection the sweeper makes runs its I/O on this runtime, which runs as long
            // as the thread does.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(run(weak, interval, stopped)),
                Err(error) => {
                    tracing::error!(%endpoint, %error, "cannot start the sweeper's runtime; expired entries stay until written again");
                }
            }
        })?;
    Ok(())
}

async fn run(store: WeakStore, interval: Duration, mut stopped: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(interval) => {}
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        round(&store).await;
    }
}

/// Sweeps batch after batch while they come back full.
async fn round(store: &Store) {
    let mut removed = 0;
    for _ in 0..MAX_BATCHES_PER_ROUND {
        // A failure is logged by the store; the next round tries again.
        match store.sweep_expired().await {
            Ok(n) => {
                removed += n;
                if n < SWEEP_BATCH {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if removed > 0 {
        tracing::debug!(
            endpoint = store.endpoint(),
            removed,
            "swept expired entries"
        );
    }
}
