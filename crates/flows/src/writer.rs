//! The writer thread behind a [`FlowLog`](crate::FlowLog): woken by a record, it waits the batch
//! delay for more, then drains the channel in one batch, appends one JSON line per record,
//! flushes after every batch and `fdatasync`s at most once per sync interval (and always before
//! acknowledging a sync or exiting). After each batch it hands the batch to the log's
//! [`FlowObservers`], so they run here, never on the request path.
//!
//! The delay is what keeps the writer off the request path: while it sleeps, a request hands its
//! record over without waking anyone (a blocked receiver would need a futex wake-up and two
//! context switches per record, which on a core shared with the request cost more than the
//! record itself), so the writer wakes once per delay at most rather than once per record.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Stdout, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::observe::FlowObservers;
use crate::record::FlowRecord;

/// Most records written between two flushes, so a flood cannot postpone the flush forever.
const MAX_BATCH: usize = 8192;
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

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

/// Counters shared between the handles and the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Times a `record` call found the channel full and had to wait.
    pub(crate) backpressure_events: AtomicU64,
    /// Records the writer could not write (each failure is also logged).
    pub(crate) write_failures: AtomicU64,
}

/// Where the writer thread puts the lines.
pub(crate) enum Sink {
    /// An append-only file. `committed` is its length after the last successful flush, so a
    /// failed batch can be cut back off instead of leaving a half line in the middle of the log.
    File {
        out: BufWriter<File>,
        committed: u64,
        pending: u64,
    },
    /// Standard output, flushed after each batch; there is nothing to sync.
    Stdout(BufWriter<Stdout>),
    /// Nowhere: the records only feed the observers.
    Discard,
}

impl Sink {
    /// A sink appending to `file`, whose current length is `len`.
    pub(crate) fn file(file: File, len: u64) -> Self {
        Self::File {
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            committed: len,
            pending: 0,
        }
    }

    /// A sink writing to standard output.
    pub(crate) fn stdout() -> Self {
        Self::Stdout(BufWriter::with_capacity(WRITE_BUFFER_BYTES, io::stdout()))
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Self::File { out, pending, .. } => {
                out.write_all(line)?;
                *pending += line.len() as u64;
                Ok(())
            }
            Self::Stdout(out) => out.write_all(line),
            Self::Discard => Ok(()),
        }
    }

    fn writes(&self) -> bool {
        !matches!(self, Self::Discard)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::File {
                out,
                committed,
                pending,
            } => {
                out.flush()?;
                *committed += std::mem::take(pending);
                Ok(())
            }
            Self::Stdout(out) => out.flush(),
            Self::Discard => Ok(()),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Self::File { out, .. } => out.get_ref().sync_data(),
            Self::Stdout(_) | Self::Discard => Ok(()),
        }
    }

    /// Forgets a failed batch: drops what is still buffered and cuts whatever part of it
    /// reached the file, so the log again ends on a whole line.
    fn discard_batch(&mut self) -> io::Result<()> {
        match self {
            Self::File {
                out,
                committed,
                pending,
            } => {
                *pending = 0;
                // `BufWriter` can only drop its buffer by being taken apart, so a second handle
                // to the same file stands in for the moment it takes.
                let stand_in = BufWriter::with_capacity(0, out.get_ref().try_clone()?);
                let (file, _unwritten) = std::mem::replace(out, stand_in).into_parts();
                file.set_len(*committed)?;
                *out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
                Ok(())
            }
            // Whatever reached stdout is gone; a reader of the stream sees one bad line.
            Self::Stdout(out) => {
                let _unwritten = std::mem::replace(out, BufWriter::new(io::stdout())).into_parts();
                Ok(())
            }
            Self::Discard => Ok(()),
        }
    }
}

/// Cuts a torn last line (left by a crash mid-write) off `file`: if the file does not end in
/// `\n`, it is truncated to just after its last `\n`, or to empty if it has none.
///
/// Returns the file's length afterwards.
pub(crate) fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
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

fn truncate(file: &File, len: u64, keep: u64) -> io::Result<()> {
    tracing::warn!(
        cut_bytes = len - keep,
        "flow log ended in a torn line, cutting it off"
    );
    file.set_len(keep)?;
    file.sync_data()
}

/// When the writer syncs and how long it lets records gather.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Longest time written records wait for `fdatasync`.
    pub(crate) sync_interval: Duration,
    /// How long a record that woke the writer waits for others to join its batch.
    pub(crate) batch_delay: Duration,
}

/// The writer thread's loop. Returns the first error not yet reported to a `Sync` caller.
pub(crate) fn run(
    commands: &Receiver<Command>,
    mut sink: Sink,
    stats: &Stats,
    timing: Timing,
    observers: &FlowObservers,
) -> io::Result<()> {
    let Timing {
        sync_interval,
        batch_delay,
    } = timing;
    let mut line = Vec::with_capacity(512);
    let mut waiting_for_sync = Vec::new();
    let mut unreported: Option<io::Error> = None;
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    loop {
        // Block for the first command; while data is unsynced, only until the next sync is due.
        let first = if unsynced {
            let due = sync_interval.saturating_sub(last_sync.elapsed());
            match commands.recv_timeout(due) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Command::Shutdown),
            }
        } else {
            Some(commands.recv().unwrap_or(Command::Shutdown))
        };
        // A record woke us: let the ones right behind it gather instead of being woken for
        // each. A sync or a shutdown is served at once.
        if matches!(first, Some(Command::Record(_))) && !batch_delay.is_zero() {
            std::thread::sleep(batch_delay);
        }

        let mut batch = Batch {
            observed: (!observers.is_empty()).then(Vec::new),
            ..Batch::default()
        };
        let mut shutdown = false;
        let mut next = first;
        while let Some(command) = next {
            match command {
                Command::Record(record) => batch.write(&mut sink, &mut line, record),
                Command::Sync(reply) => waiting_for_sync.push(reply),
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
            let observed = batch.observed.take();
            if let Err(error) = batch.finish(&mut sink, stats) {
                unreported.get_or_insert(error);
            } else {
                unsynced = sink.writes();
            }
            // A record that could not be written still describes a flow that happened.
            if let Some(observed) = observed {
                observers.notify(&observed);
            }
        }
        let sync_due = last_sync.elapsed() >= sync_interval;
        if unsynced && (shutdown || sync_due || !waiting_for_sync.is_empty()) {
            if let Err(error) = sink.sync() {
                tracing::error!(%error, "cannot sync the flow log");
                unreported.get_or_insert(error);
            }
            unsynced = false;
            last_sync = Instant::now();
        }
        for reply in waiting_for_sync.drain(..) {
            let outcome = unreported.take().map_or(Ok(()), Err);
            // Nobody waiting any more is not an error of ours.
            let _ = reply.send(outcome);
        }
        if shutdown {
            return unreported.map_or(Ok(()), Err);
        }
    }
}

/// The records written since the last flush, the first error among them, and the records
/// themselves when observers are waiting for them.
#[derive(Default)]
struct Batch {
    records: usize,
    error: Option<io::Error>,
    /// `None` when the log has no observers.
    observed: Option<Vec<Arc<FlowRecord>>>,
}

impl Batch {
    fn write(&mut self, sink: &mut Sink, line: &mut Vec<u8>, record: FlowRecord) {
        self.records += 1;
        // After a failed line the batch is lost as a whole and will be cut off: skip the rest.
        if self.error.is_none() && sink.writes() {
            self.write_line(sink, line, &record);
        }
        if let Some(observed) = &mut self.observed {
            observed.push(Arc::new(record));
        }
    }

    fn write_line(&mut self, sink: &mut Sink, line: &mut Vec<u8>, record: &FlowRecord) {
        line.clear();
        let written = serde_json::to_writer(&mut *line, record)
            .map_err(io::Error::from)
            .and_then(|()| {
                line.push(b'\n');
                sink.write_line(line)
            });
        if let Err(error) = written {
            self.error = Some(error);
        }
    }

    /// Flushes the batch, or on failure cuts it off the log and counts its records as lost.
    fn finish(self, sink: &mut Sink, stats: &Stats) -> io::Result<()> {
        let error = match self.error {
            Some(error) => error,
            None => match sink.flush() {
                Ok(()) => return Ok(()),
                Err(error) => error,
            },
        };
        stats
            .write_failures
            .fetch_add(self.records as u64, Ordering::Relaxed);
        tracing::error!(%error, lost_records = self.records, "cannot write flow records");
        if let Err(cut_error) = sink.discard_batch() {
            tracing::error!(error = %cut_error, "cannot cut a failed batch off the flow log");
        }
        Err(error)
    }
}
