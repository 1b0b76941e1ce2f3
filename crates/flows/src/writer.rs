//! The writer thread behind a [`FlowLog`](crate::FlowLog): woken by a record, it waits the batch
//! delay for more, then drains the channel in one batch, serializes it into JSON lines for the
//! [sink thread](crate::sink), and hands the records to the log's [`FlowObservers`], so they run
//! here, never on the request path, and keep running while the sink is stalled.
//!
//! The delay is what keeps the writer off the request path: while it sleeps, a request hands its
//! record over without waking anyone (a blocked receiver would need a futex wake-up and two
//! context switches per record, which on a core shared with the request cost more than the
//! record itself), so the writer wakes once per delay at most rather than once per record.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use crate::observe::FlowObservers;
use crate::record::FlowRecord;
use crate::sink::SinkHandle;

/// Most records in one batch, so a flood cannot postpone the hand-over forever.
const MAX_BATCH: usize = 8192;

/// How often dropped records are reported in septa's own log while they keep being dropped.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a [`FlowLog`](crate::FlowLog) handle sends to the writer thread.
#[expect(
    clippy::large_enum_variant,
    reason = "almost every command is a record; boxing it would allocate once more per flow on the request path"
)]
pub(crate) enum Command {
    /// Append this record.
    Record(FlowRecord),
    /// Flush and sync everything received so far, then answer with the outcome.
    Sync(Sender<io::Result<()>>),
    /// Flush and sync everything received so far, then exit. Sent only by the last handle.
    Shutdown,
}

/// Counters shared between the handles, the writer thread and the sink thread.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Times a `record` call found the channel full and had to wait (block mode).
    pub(crate) backpressure_events: AtomicU64,
    /// Records the sink could not write (each failure is also logged).
    pub(crate) write_failures: AtomicU64,
    /// Records that never reached the sink: the channel or the sink's queue was full, or the
    /// write failed (then also in `write_failures`).
    pub(crate) dropped: AtomicU64,
}

/// The writer thread's loop. Returns the first error not yet reported to a `Sync` caller.
pub(crate) fn run(
    commands: &Receiver<Command>,
    sink: Option<SinkHandle>,
    stats: &Stats,
    batch_delay: Duration,
    observers: &FlowObservers,
) -> io::Result<()> {
    let mut drops = DropReport::default();
    loop {
        let first = commands.recv().unwrap_or(Command::Shutdown);
        // A record woke us: let the ones right behind it gather instead of being woken for
        // each. A sync or a shutdown is served at once.
        if matches!(first, Command::Record(_)) && !batch_delay.is_zero() {
            std::thread::sleep(batch_delay);
        }

        let mut batch = Batch {
            lines: sink.as_ref().map(|_| Vec::with_capacity(64 * 1024)),
            observed: (!observers.is_empty()).then(Vec::new),
            ..Batch::default()
        };
        let mut syncs = Vec::new();
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Record(record) => batch.add(record),
                Command::Sync(reply) => syncs.push(reply),
                Command::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            next = if batch.records < MAX_BATCH {
                commands.try_recv().ok()
            } else {
                None
            };
        }

        if batch.records > 0 {
            if let (Some(sink), Some(lines)) = (&sink, batch.lines.take()) {
                sink.push_lines(lines, batch.records);
            }
            // A record the sink lost still describes a flow that happened.
            if let Some(observed) = batch.observed.take() {
                observers.notify(&observed);
            }
        }
        if let Some(new) = drops.check(stats) {
            observers.notify_dropped(new);
        }
        for reply in syncs {
            match &sink {
                Some(sink) => sink.push_sync(reply),
                None => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        if shutdown {
            return sink.map_or(Ok(()), SinkHandle::close);
        }
    }
}

/// One batch: its records serialized for the sink, and shared for the observers.
#[derive(Default)]
struct Batch {
    records: usize,
    /// `None` when the log has no sink.
    lines: Option<Vec<u8>>,
    /// `None` when the log has no observers.
    observed: Option<Vec<Arc<FlowRecord>>>,
}

impl Batch {
    fn add(&mut self, record: FlowRecord) {
        self.records += 1;
        if let Some(lines) = &mut self.lines {
            let start = lines.len();
            match serde_json::to_writer(&mut *lines, &record) {
                Ok(()) => lines.push(b'\n'),
                Err(error) => {
                    // Only a map with non-string keys fails, which a record never has.
                    lines.truncate(start);
                    tracing::error!(%error, "cannot serialize a flow record");
                }
            }
        }
        if let Some(observed) = &mut self.observed {
            observed.push(Arc::new(record));
        }
    }
}

/// Notices records dropped since the last look, for the observers and septa's own log.
#[derive(Default)]
struct DropReport {
    seen: u64,
    logged_at: Option<Instant>,
    since_logged: u64,
}

impl DropReport {
    /// How many records were dropped since the last call, if any.
    fn check(&mut self, stats: &Stats) -> Option<u64> {
        let total = stats.dropped.load(Ordering::Relaxed);
        let new = total.checked_sub(self.seen).filter(|&n| n > 0)?;
        self.seen = total;
        self.since_logged += new;
        let quiet = self
            .logged_at
            .is_some_and(|at| at.elapsed() < DROP_LOG_INTERVAL);
        if !quiet {
            tracing::warn!(
                dropped = self.since_logged,
                total,
                "flow records dropped: the flow log cannot keep up with the flows (see septa_flow_log_dropped_total)"
            );
            self.logged_at = Some(Instant::now());
            self.since_logged = 0;
        }
        Some(new)
    }
}

/// Cuts a torn last line (left by a crash mid-write) off `file`: if the file does not end in
/// `\n`, it is truncated to just after its last `\n`, or to empty if it has none.
///
/// Returns the file's length afterwards.
pub(crate) fn cut_torn_tail(file: &mut std::fs::File) -> io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const CHUNK: u64 = 8192;
    let len = file.metadata()?.len();
    let mut buf = [0u8; CHUNK as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(newline) = chunk.iter().rposition(|&byte| byte == b'\n') {
            let keep = start + newline as u64 + 1;
            if keep != len {
                truncate(file, len, keep)?;
            }
            return Ok(keep);
        }
        end = start;
    }
    if len != 0 {
        truncate(file, len, 0)?;
    }
    Ok(0)
}

fn truncate(file: &std::fs::File, len: u64, keep: u64) -> io::Result<()> {
    tracing::warn!(
        cut_bytes = len - keep,
        "flow log ended in a torn line, cutting it off"
    );
    file.set_len(keep)?;
    file.sync_data()
}
