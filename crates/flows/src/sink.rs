//! The sink thread: where a flow log's lines leave the process, apart from everything else.
//!
//! The writer thread serializes each batch and hands its lines here over a queue bounded in
//! bytes. This thread writes them (rotating a file by size), flushes after each batch and
//! `fdatasync`s at most once per sync interval. A sink that stalls (a paused `--flow-log -`
//! pipe, a hung disk) stalls only this thread: the writer thread and its observers go on, and
//! once the queue is full each further batch is dropped and counted, unless the log was opened
//! with [`Overflow::Block`], in which case the writer waits for room and requests in turn wait
//! for the writer. A failed write (a full disk) likewise loses its batch, counted, or is retried
//! until it succeeds in block mode.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::log::{Overflow, open_file};
use crate::rotate::{self, Rotation};
use crate::writer::Stats;

const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// How long closing a log in drop mode waits for a stalled sink before giving up on what it
/// still holds.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest pause between two attempts at a failed write in block mode.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How often a sink that keeps failing says so in the log.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where the sink thread puts the lines.
pub(crate) enum Sink {
    /// An append-only file, rotated by size when asked.
    File(FileSink),
    /// Any stream (standard output, a pipe), flushed after each batch; there is nothing to sync.
    Stream(BufWriter<Box<dyn Write + Send>>),
}

/// A file sink. `committed` is the file's length after the last successful flush, so a failed
/// batch can be cut back off instead of leaving a half line in the middle of the log.
pub(crate) struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    committed: u64,
    pending: u64,
    rotation: Option<Rotation>,
}

impl Sink {
    /// A sink appending to `file` at `path`, whose current length is `len`.
    pub(crate) fn file(path: PathBuf, file: File, len: u64, rotation: Option<Rotation>) -> Self {
        Self::File(FileSink {
            path,
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            committed: len,
            pending: 0,
            rotation: rotation.map(|r| Rotation {
                max_bytes: r.max_bytes.max(1),
                ..r
            }),
        })
    }

    /// A sink writing to `stream`.
    pub(crate) fn stream(stream: Box<dyn Write + Send>) -> Self {
        Self::Stream(BufWriter::with_capacity(WRITE_BUFFER_BYTES, stream))
    }

    /// Writes `lines[*done..]` and flushes; `done` moves past what is flushed for good, so a
    /// retry after a failure neither loses nor repeats a line.
    fn write_batch(&mut self, lines: &[u8], done: &mut usize) -> io::Result<()> {
        match self {
            Self::File(file) => file.write_batch(lines, done),
            Self::Stream(out) => {
                out.write_all(&lines[*done..])?;
                out.flush()?;
                *done = lines.len();
                Ok(())
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Self::File(file) => file.out.get_ref().sync_data(),
            Self::Stream(_) => Ok(()),
        }
    }

    /// Forgets a failed batch: drops what is still buffered and cuts whatever part of it
    /// reached the file, so the log again ends on a whole line.
    fn discard_batch(&mut self) -> io::Result<()> {
        match self {
            Self::File(file) => file.discard_batch(),
            // Whatever reached the stream is gone; a reader of it sees one bad line.
            Self::Stream(out) => {
                let stand_in: Box<dyn Write + Send> = Box::new(io::sink());
                let stream = std::mem::replace(out, BufWriter::new(stand_in));
                let (stream, _unwritten) = stream.into_parts();
                *out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, stream);
                Ok(())
            }
        }
    }
}

impl FileSink {
    fn write_batch(&mut self, lines: &[u8], done: &mut usize) -> io::Result<()> {
        let mut at = *done;
        while at < lines.len() {
            let take = self.room_for(&lines[at..]);
            if take == 0 {
                self.flush()?;
                *done = at;
                self.rotate()?;
                continue;
            }
            self.out.write_all(&lines[at..at + take])?;
            self.pending += take as u64;
            at += take;
        }
        self.flush()?;
        *done = at;
        Ok(())
    }

    /// How many bytes of whole lines from the start of `rest` fit in the current file: all of
    /// them without rotation, none when the file must rotate first, and at least the first line
    /// of an empty file however long it is.
    fn room_for(&self, rest: &[u8]) -> usize {
        let Some(rotation) = self.rotation else {
            return rest.len();
        };
        let size = self.committed + self.pending;
        let room = usize::try_from(rotation.max_bytes.saturating_sub(size)).unwrap_or(usize::MAX);
        let fits = rest[..room.min(rest.len())]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        if fits == 0 && size == 0 {
            return rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |newline| newline + 1);
        }
        fits
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.committed += std::mem::take(&mut self.pending);
        Ok(())
    }

    /// Moves the full file aside (or empties it when no rotated file is kept) and starts a
    /// fresh one. Called with nothing pending.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.map_or(0, |r| r.keep);
        self.out.get_ref().sync_data()?;
        if keep == 0 {
            self.out.get_ref().set_len(0)?;
        } else {
            rotate::shift(&self.path, keep)?;
            let file = open_file(&self.path).map_err(io::Error::other)?;
            // The old file (and its lock) is closed as it is replaced.
            self.out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        }
        self.committed = 0;
        Ok(())
    }

    fn discard_batch(&mut self) -> io::Result<()> {
        self.pending = 0;
        // `BufWriter` can only drop its buffer by being taken apart, so a second handle to the
        // same file stands in for the moment it takes.
        let stand_in = BufWriter::with_capacity(0, self.out.get_ref().try_clone()?);
        let (file, _unwritten) = std::mem::replace(&mut self.out, stand_in).into_parts();
        file.set_len(self.committed)?;
        self.out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        Ok(())
    }
}

/// What the writer thread hands the sink thread.
enum Item {
    /// One batch of JSON lines.
    Lines { lines: Vec<u8> },
    /// Flush and sync everything before, then answer with the first error not yet reported.
    Sync(Sender<io::Result<()>>),
    /// Flush and sync everything before, then exit.
    Shutdown,
}

/// The queue between the writer thread and the sink thread, bounded in bytes of lines.
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
    limit: usize,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Item>,
    /// Bytes of lines queued or being written.
    bytes: usize,
    /// The sink thread has exited: nothing will make room any more.
    closed: bool,
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next item, waiting at most `timeout` (forever with `None`).
    fn pop(&self, timeout: Option<Duration>) -> Option<Item> {
        let mut state = self.state();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            state = match deadline {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Gives back the room a written batch took.
    fn release(&self, bytes: usize) {
        let mut state = self.state();
        state.bytes = state.bytes.saturating_sub(bytes);
        self.changed.notify_all();
    }

    fn push(&self, item: Item) {
        let mut state = self.state();
        state.items.push_back(item);
        self.changed.notify_all();
    }
}

/// Marks the queue closed when the sink thread ends, however it ends.
struct CloseOnExit(Arc<Queue>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.state().closed = true;
        self.0.changed.notify_all();
    }
}

/// How the sink thread behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SinkOptions {
    /// Bytes of lines that may wait for the sink.
    pub(crate) buffer_bytes: usize,
    /// What happens when they are more.
    pub(crate) overflow: Overflow,
    /// Longest time written lines wait for `fdatasync`.
    pub(crate) sync_interval: Duration,
}

/// The writer thread's end of a sink thread.
pub(crate) struct SinkHandle {
    queue: Arc<Queue>,
    overflow: Overflow,
    stats: Arc<Stats>,
    done: Receiver<io::Result<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SinkHandle {
    /// Starts the sink thread writing to `sink`.
    pub(crate) fn spawn(sink: Sink, options: SinkOptions, stats: Arc<Stats>) -> io::Result<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::default(),
            changed: Condvar::new(),
            limit: options.buffer_bytes.max(1),
        });
        let (report, done) = mpsc::channel();
        let thread = {
            let queue = Arc::clone(&queue);
            let stats = Arc::clone(&stats);
            thread::Builder::new()
                .name("septa-flows-sink".to_owned())
                .spawn(move || {
                    let _closed = CloseOnExit(Arc::clone(&queue));
                    let outcome = run(&queue, sink, &stats, options);
                    // Nobody waiting any more (the log gave up on us) is not an error of ours.
                    let _ = report.send(outcome);
                })?
        };
        Ok(Self {
            queue,
            overflow: options.overflow,
            stats,
            done,
            thread: Some(thread),
        })
    }

    /// Hands a batch of lines to the sink. When the queue has no room for it, drops it and
    /// counts its records, or in block mode waits for room.
    pub(crate) fn push_lines(&self, lines: Vec<u8>, records: usize) {
        let len = lines.len();
        let mut state = self.queue.state();
        loop {
            // A batch larger than the whole buffer still goes when the queue is empty.
            let fits = state.bytes == 0 || state.bytes + len <= self.queue.limit;
            if fits && !state.closed {
                break;
            }
            if state.closed || self.overflow == Overflow::Drop {
                drop(state);
                self.stats
                    .dropped
                    .fetch_add(records as u64, Ordering::Relaxed);
                return;
            }
            state = self
                .queue
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.bytes += len;
        state.items.push_back(Item::Lines { lines });
        self.queue.changed.notify_all();
    }

    /// Asks the sink to flush and sync everything before, answering on `reply`.
    pub(crate) fn push_sync(&self, reply: Sender<io::Result<()>>) {
        if self.queue.state().closed {
            let _ = reply.send(Err(io::Error::other(
                "the flow log sink thread has stopped",
            )));
            return;
        }
        self.queue.push(Item::Sync(reply));
    }

    /// Stops the sink once it has written everything queued. In drop mode a sink that does
    /// not drain within [`SHUTDOWN_GRACE`] is left behind and what it holds is lost.
    pub(crate) fn close(mut self) -> io::Result<()> {
        self.queue.push(Item::Shutdown);
        let outcome = match self.overflow {
            Overflow::Block => self.done.recv().map_err(|_| gone()),
            Overflow::Drop => match self.done.recv_timeout(SHUTDOWN_GRACE) {
                Ok(outcome) => Ok(outcome),
                Err(RecvTimeoutError::Disconnected) => Err(gone()),
                Err(RecvTimeoutError::Timeout) => {
                    let waiting = self.queue.state().bytes;
                    tracing::error!(
                        bytes = waiting,
                        "the flow log sink did not drain within {} s; giving up on what it holds",
                        SHUTDOWN_GRACE.as_secs()
                    );
                    // The thread stays blocked in its write; it ends with the process.
                    drop(self.thread.take());
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the flow log sink did not drain within {} s",
                            SHUTDOWN_GRACE.as_secs()
                        ),
                    ));
                }
            },
        };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        outcome?
    }
}

fn gone() -> io::Error {
    io::Error::other("the flow log sink thread stopped unexpectedly")
}

/// The sink thread's loop. Returns the first error not yet reported to a `Sync` caller.
fn run(queue: &Queue, mut sink: Sink, stats: &Stats, options: SinkOptions) -> io::Result<()> {
    let mut unreported: Option<io::Error> = None;
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    let mut failures = FailureLog::default();
    loop {
        let due = unsynced.then(|| options.sync_interval.saturating_sub(last_sync.elapsed()));
        let item = queue.pop(due);
        let mut sync_now = false;
        let mut replies = Vec::new();
        let mut shutdown = false;
        match item {
            Some(Item::Lines { lines }) => {
                let written = write(&mut sink, &lines, options.overflow, stats, &mut failures);
                queue.release(lines.len());
                match written {
                    Ok(()) => unsynced = true,
                    Err(error) => {
                        unreported.get_or_insert(error);
                    }
                }
            }
            Some(Item::Sync(reply)) => {
                sync_now = true;
                replies.push(reply);
            }
            Some(Item::Shutdown) => {
                sync_now = true;
                shutdown = true;
            }
            None => {}
        }
        let due = last_sync.elapsed() >= options.sync_interval;
        if unsynced && (sync_now || due) {
            if let Err(error) = sink.sync() {
                tracing::error!(%error, "cannot sync the flow log");
                unreported.get_or_insert(error);
            }
            unsynced = false;
            last_sync = Instant::now();
        }
        for reply in replies {
            let _ = reply.send(unreported.take().map_or(Ok(()), Err));
        }
        if shutdown {
            return unreported.map_or(Ok(()), Err);
        }
    }
}

/// Writes one batch. In drop mode a failure loses the batch (cut off the file, counted); in
/// block mode the batch is tried again, from the first line not yet flushed, until it goes.
fn write(
    sink: &mut Sink,
    lines: &[u8],
    overflow: Overflow,
    stats: &Stats,
    failures: &mut FailureLog,
) -> io::Result<()> {
    let mut done = 0;
    let mut delay = Duration::from_millis(10);
    loop {
        let error = match sink.write_batch(lines, &mut done) {
            Ok(()) => {
                failures.recovered();
                return Ok(());
            }
            Err(error) => error,
        };
        if let Err(cut_error) = sink.discard_batch() {
            tracing::error!(error = %cut_error, "cannot cut a failed batch off the flow log");
        }
        let unwritten = lines[done..].iter().filter(|&&b| b == b'\n').count();
        match overflow {
            Overflow::Drop => {
                stats
                    .write_failures
                    .fetch_add(unwritten as u64, Ordering::Relaxed);
                stats.dropped.fetch_add(unwritten as u64, Ordering::Relaxed);
                failures.failed(&error, unwritten, false);
                return Err(error);
            }
            Overflow::Block => {
                failures.failed(&error, unwritten, true);
                thread::sleep(delay);
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// Says that writes fail without saying it for every batch: the first failure of a run, then
/// at most once per [`FAILURE_LOG_INTERVAL`] with what happened since.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    since: usize,
}

impl FailureLog {
    fn failed(&mut self, error: &io::Error, records: usize, retrying: bool) {
        self.since += records;
        if self
            .last
            .is_some_and(|last| last.elapsed() < FAILURE_LOG_INTERVAL)
        {
            return;
        }
        self.last = Some(Instant::now());
        let records = std::mem::take(&mut self.since);
        if retrying {
            tracing::error!(%error, records, "cannot write flow records; retrying while new records wait (overflow `block`)");
        } else {
            tracing::error!(%error, lost_records = records, "cannot write flow records");
        }
    }

    fn recovered(&mut self) {
        if self.last.take().is_some() {
            tracing::warn!("the flow log is being written again");
        }
        self.since = 0;
    }
}
