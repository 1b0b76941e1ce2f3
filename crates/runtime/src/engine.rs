//! The wasmtime engine septa runs every function on, and the clock that enforces timeouts.
//!
//! One engine per process: the pooling allocator with small keep-resident sizes (the shape
//! DESIGN.md measured fastest), async support so a guest's outbound call does not block its
//! thread, and epoch interruption driven by a ticker thread so a looping guest yields every tick
//! and is stopped at its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; a guest yields to its neighbours at least this often. It bounds
/// how long a looping guest keeps a worker from its other requests: at 5 ms, a segment of looping
/// guests pushed another segment's p99 up 16-30x in `tests/noisy_neighbour.rs`; at 1 ms, a few x.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest linear memory any instance may reserve; each function's own limit is lower.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// Builds the engine. `instances` bounds how many instances can exist at once across all
/// functions (each takes a pooled slot).
pub fn build_engine(instances: u32) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(2))
        .total_memories(instances)
        .total_tables(instances.saturating_mul(2))
        .total_stacks(instances)
        .max_memory_size(MAX_MEMORY_BYTES)
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("septa-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
