//! The wasmtime engine septa runs every function on, and the clock that enforces timeouts.
//!
//! One engine per process: the pooling allocator with small keep-resident sizes (the shape
//! DESIGN.md measured fastest), async support so a guest's outbound call does not block its
//! thread, and epoch interruption driven by a ticker thread so a looping guest yields every tick
//! and is stopped at its deadline. The tick is finer while a guest computes for longer than one
//! (see [`CONTENDED_TICK`]): only then does a request that arrives wait for a slice to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::pool::PoolSize;

/// How often the epoch advances while no guest computes for longer than a tick: a guest yields
/// to its worker at least this often. A request that ends within its first tick (most do) never
/// pays for a finer one.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How often the epoch advances while some guest has computed for longer than an
/// [`EPOCH_TICK`]: the longest a request that arrives at its worker waits for the guest on the
/// CPU to reach a yield point, where the scheduler lets it run first. With 1 ms ticks, a quiet
/// segment's p99 rose from 0.4 ms alone to 1.7-10 ms beside a looping segment
/// (`tests/noisy_neighbour.rs`); a yield costs the looping guest a few microseconds, so a
/// quarter of a millisecond costs it about 1-2% of its CPU, and only while it loops.
pub const CONTENDED_TICK: Duration = Duration::from_micros(250);

/// Epochs per [`EPOCH_TICK`]: the epoch counts contended ticks whichever pace it runs at, so a
/// deadline of one epoch ends at the next tick either way.
const EPOCHS_PER_TICK: u32 = (EPOCH_TICK.as_micros() / CONTENDED_TICK.as_micros()) as u32;

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

/// Advances the engine's epoch every [`EPOCH_TICK`], or every [`CONTENDED_TICK`] while a guest
/// computes for longer than a tick, until dropped.
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
                // The kernel may wake a sleeper up to its timer slack late (50 µs by default): a
                // fifth of a contended tick. The ticker asks for 1 µs.
                let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
                let fine = std::env::var("SEPTA_FINE_US").ok().and_then(|v| v.parse().ok()).map(Duration::from_micros).unwrap_or(CONTENDED_TICK);
                let mut hist = [0u64; 12];
                while !flag.load(Ordering::Relaxed) {
                    if crate::scheduler::contended() {
                        let t = std::time::Instant::now();
                        std::thread::sleep(fine);
                        let us = t.elapsed().as_micros() as u64;
                        let b = match us { 0..=150 => 0, 151..=400 => 1, 401..=500 => 2, 501..=750 => 3, 751..=1000 => 4, 1001..=1500 => 5, 1501..=2000 => 6, 2001..=3000 => 7, _ => 8 };
                        hist[b] += 1;
                        if hist.iter().sum::<u64>() % 500 == 0 { eprintln!("TICKS <=300 {} <=400 {} <=500 {} <=750 {} <=1000 {} <=1500 {} <=2000 {} <=3000 {} more {}", hist[0], hist[1], hist[2], hist[3], hist[4], hist[5], hist[6], hist[7], hist[8]); }
                        engine.increment_epoch();
                    } else {
                        std::thread::sleep(EPOCH_TICK);
                        for _ in 0..EPOCHS_PER_TICK {
                            engine.increment_epoch();
                        }
                    }
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
