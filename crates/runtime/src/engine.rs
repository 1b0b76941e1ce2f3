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

use crate::pool::PoolSize;

/// How often the epoch advances; a guest yields to its neighbours at least this often. It bounds
/// how long a looping guest keeps a worker from its other requests: at 5 ms, a segment of looping
/// guests pushed another segment's p99 up 16-30x in `tests/noisy_neighbour.rs`; at 1 ms, a few x.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest linear memory any instance may reserve; each function's own limit is lower.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// Builds the engine with the pool `pool`: `pool.instances` instances across all functions at
/// once, each given what `pool.per_instance` says (its core instances, memories and tables, so
/// the pool runs out of instances, never of their parts first). A component that needs more
/// than one instance's share is refused when it is loaded.
pub fn build_engine(pool: PoolSize) -> wasmtime::Result<Engine> {
    let total = pool.total();
    let per = pool.per_instance;
    let mut slots = PoolingAllocationConfig::default();
    slots
        .total_component_instances(pool.instances)
        .total_core_instances(total.core_instances)
        .total_memories(total.memories)
        .total_tables(total.tables)
        .total_stacks(pool.instances)
        .max_core_instances_per_component(per.core_instances)
        .max_memories_per_component(per.memories)
        .max_tables_per_component(per.tables)
        .max_memory_size(MAX_MEMORY_BYTES)
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(slots));
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
