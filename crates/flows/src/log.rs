//! The flow log handle: where enforcers hand their records over.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::guard::FlowGuard;
use crate::observe::FlowObservers;
use crate::record::{FlowKind, FlowRecord};
use crate::rotate::Rotation;
use crate::sink::{Sink, SinkHandle, SinkOptions};
use crate::writer::{self, Command, Stats};

/// What a flow log does with a record it has no room for: when the writer's queue is full, or
/// the sink (a file, a pipe) does not keep up and the bytes waiting for it reach
/// [`FlowLogOptions::buffer_bytes`], or a write fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Drop it and count it ([`FlowLog::dropped`]): a stalled sink or a full disk never holds
    /// up a request. The default.
    #[default]
    Drop,
    /// Keep it, whatever it costs: the request that made it waits until there is room, and a
    /// failed write is tried again until it succeeds. For a log that must be complete.
    Block,
}

impl Overflow {
    /// `drop` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Block => "block",
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Overflow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop" => Ok(Self::Drop),
            "block" => Ok(Self::Block),
            other => Err(format!(
                "unknown flow log overflow `{other}` (expected `drop` or `block`)"
            )),
        }
    }
}

/// How a file or stdout flow log buffers, syncs and rotates, and who else sees its records.
#[derive(Debug, Clone)]
pub struct FlowLogOptions {
    /// Records that may wait for the writer thread (at least 1); past them, records are
    /// dropped, or [`FlowLog::record`] waits with [`Overflow::Block`].
    pub capacity: usize,
    /// Bytes of serialized records that may wait for the sink (a file being written slowly, a
    /// pipe nobody reads); past them, batches are dropped, or the writer waits with
    /// [`Overflow::Block`]. A batch larger than this still goes when nothing else waits.
    pub buffer_bytes: usize,
    /// What to do with records there is no room for.
    pub overflow: Overflow,
    /// When a file log moves on to a fresh file, and how many old ones it keeps; `None` grows
    /// one file forever. Ignored by stdout logs.
    pub rotation: Option<Rotation>,
    /// Longest time written records may wait before the file is `fdatasync`ed.
    pub sync_interval: Duration,
    /// How long the writer, woken by a record, waits for more before it writes them all in one
    /// batch (zero: at once). Records reach the file and the observers this much later, and a
    /// [`FlowLog::sync`] may wait this much longer; in exchange the request path no longer wakes
    /// the writer for every record (a futex wake-up and two context switches each, which on a
    /// busy core cost more than writing the record).
    pub batch_delay: Duration,
    /// Called on the writer thread with every batch, as it is handed to the sink.
    pub observers: FlowObservers,
}

impl Default for FlowLogOptions {
    fn default() -> Self {
        Self {
            capacity: 8192,
            buffer_bytes: 2 * 1024 * 1024,
            overflow: Overflow::Drop,
            rotation: None,
            sync_interval: Duration::from_millis(100),
            batch_delay: Duration::from_millis(2),
            observers: FlowObservers::new(),
        }
    }
}

/// An error opening, writing or closing a flow log.
#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    /// The directory that should hold the flow log could not be created.
    #[error("cannot create the directory `{path}` for the flow log")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The flow log file could not be opened.
    #[error("cannot open the flow log `{path}`")]
    Open {
        /// The flow log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another flow log (in this or another process) is appending to the same file.
    #[error("the flow log `{path}` is already being written by another flow log")]
    InUse {
        /// The flow log file.
        path: PathBuf,
    },
    /// The torn last line of the flow log could not be cut off.
    #[error("cannot cut the torn last line off the flow log `{path}`")]
    Repair {
        /// The flow log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the flow log writer thread")]
    Spawn(#[source] io::Error),
    /// Records could not be written or synced; the writer also logged and counted them.
    #[error("cannot write the flow log to {destination}")]
    Write {
        /// `` `path` `` or `stdout`.
        destination: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The writer thread ended without being asked to.
    #[error("the flow log writer for {destination} stopped unexpectedly")]
    WriterGone {
        /// `` `path` `` or `stdout`.
        destination: String,
    },
}

/// A cheap-to-clone handle to a flow log, shared by every enforcer.
///
/// Records sent to a file or stdout log are cut to their fields' limits
/// ([`FlowRecord::bound`]) and go over a bounded channel to one writer thread, which serializes
/// them in batches for a sink thread that appends them as JSON lines. When there is no room
/// for a record (see [`Overflow`]) it is dropped and counted in [`dropped`](Self::dropped), or
/// with [`Overflow::Block`] [`record`](Self::record) waits, counted in
/// [`backpressure_events`](Self::backpressure_events). When the last handle is dropped, the
/// writer writes and syncs everything queued and its threads are joined;
/// [`shutdown`](Self::shutdown) does the same and reports write errors.
#[derive(Clone, Default)]
pub struct FlowLog {
    sink: LogSink,
    /// The node every record names, on a node of a cluster.
    node: Option<Arc<str>>,
}

#[derive(Clone, Default)]
enum LogSink {
    #[default]
    Disabled,
    Memory(Arc<Mutex<Vec<FlowRecord>>>),
    Writer(Arc<WriterHandle>),
}

impl FlowLog {
    /// Opens `path` for appending, creating it and its parent directories if needed, with the
    /// default [`FlowLogOptions`].
    ///
    /// If the file ends in a torn line (a crash mid-write), the line is cut off first, so every
    /// line of the log parses and new records start on a clean line.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FlowLogError> {
        Self::open_with(path, FlowLogOptions::default())
    }

    /// Like [`open`](Self::open), with the given options.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: FlowLogOptions,
    ) -> Result<Self, FlowLogError> {
        let path = path.as_ref();
        let mut file = open_file(path)?;
        let len = writer::cut_torn_tail(&mut file).map_err(|source| FlowLogError::Repair {
            path: path.to_owned(),
            source,
        })?;
        let destination = format!("`{}`", path.display());
        let sink = Sink::file(path.to_owned(), file, len, options.rotation);
        WriterHandle::spawn(Some(sink), destination, &options)
    }

    /// A flow log written to standard output, one JSON line per record.
    pub fn stdout() -> Result<Self, FlowLogError> {
        Self::stdout_with(FlowLogOptions::default())
    }

    /// Like [`stdout`](Self::stdout), with the given options.
    pub fn stdout_with(options: FlowLogOptions) -> Result<Self, FlowLogError> {
        Self::to_writer(io::stdout(), "stdout", options)
    }

    /// A flow log written to `stream` (a pipe, a socket), one JSON line per record, flushed
    /// after each batch; `destination` names it in errors.
    pub fn to_writer(
        stream: impl Write + Send + 'static,
        destination: &str,
        options: FlowLogOptions,
    ) -> Result<Self, FlowLogError> {
        let sink = Sink::stream(Box::new(stream));
        WriterHandle::spawn(Some(sink), destination.to_owned(), &options)
    }

    /// A flow log that writes nothing but still hands every record to the options' observers,
    /// on a writer thread of its own like any other log. Without observers it is
    /// [`disabled`](Self::disabled).
    pub fn observers_only(options: FlowLogOptions) -> Result<Self, FlowLogError> {
        if options.observers.is_empty() {
            return Ok(Self::disabled());
        }
        WriterHandle::spawn(None, "no file (observers only)".to_owned(), &options)
    }

    /// A flow log that throws every record away.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A flow log that keeps its records in memory, to read back with
    /// [`snapshot`](Self::snapshot). Meant for tests.
    pub fn memory() -> Self {
        Self {
            sink: LogSink::Memory(Arc::default()),
            node: None,
        }
    }

    /// The same log, naming node `node` in every record it starts (see [`FlowRecord::node`]).
    #[must_use]
    pub fn for_node(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }

    /// The node this log's records name, on a node of a cluster.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Whether records are kept at all (false only for [`disabled`](Self::disabled)).
    pub fn is_enabled(&self) -> bool {
        !matches!(self.sink, LogSink::Disabled)
    }

    /// Hands `record` to the log, its fields cut to their limits first.
    ///
    /// Returns as soon as the record is queued. When the writer's queue is full the record is
    /// dropped and counted, or with [`Overflow::Block`] this waits for room.
    pub fn record(&self, mut record: FlowRecord) {
        record.bound();
        match &self.sink {
            LogSink::Disabled => {}
            LogSink::Memory(records) => lock(records).push(record),
            LogSink::Writer(handle) => handle.record(record),
        }
    }

    /// Starts a [`FlowGuard`] for a flow from `src` to `dst`, which records it exactly once.
    pub fn guard(
        &self,
        kind: FlowKind,
        src: impl Into<String>,
        dst: impl Into<String>,
    ) -> FlowGuard {
        FlowGuard::new(self, kind, src, dst)
    }

    /// The records of a [`memory`](Self::memory) log so far, oldest first; `None` for any
    /// other log.
    pub fn snapshot(&self) -> Option<Vec<FlowRecord>> {
        match &self.sink {
            LogSink::Memory(records) => Some(lock(records).clone()),
            LogSink::Disabled | LogSink::Writer(_) => None,
        }
    }

    /// How many times [`record`](Self::record) found the writer's queue full and had to wait.
    pub fn backpressure_events(&self) -> u64 {
        self.stats().backpressure_events()
    }

    /// How many records could not be written (each failure is also logged with `tracing`).
    pub fn write_failures(&self) -> u64 {
        self.stats().write_failures()
    }

    /// How many records never reached the sink: there was no room for them, or their write
    /// failed (those are also [`write_failures`](Self::write_failures)).
    pub fn dropped(&self) -> u64 {
        self.stats().dropped()
    }

    /// A read-only view of this log's counters that does not keep the log open: a metrics
    /// observer can hold it without keeping the writer thread alive.
    pub fn stats(&self) -> FlowLogStats {
        match &self.sink {
            LogSink::Writer(handle) => FlowLogStats {
                stats: Some(Arc::clone(&handle.stats)),
            },
            LogSink::Disabled | LogSink::Memory(_) => FlowLogStats { stats: None },
        }
    }

    /// Waits until every record handed over before this call is written and synced.
    ///
    /// Reports the first write error since the last `sync` or `shutdown`, if any.
    pub fn sync(&self) -> Result<(), FlowLogError> {
        match &self.sink {
            LogSink::Writer(handle) => handle.sync(),
            LogSink::Disabled | LogSink::Memory(_) => Ok(()),
        }
    }

    /// Writes and syncs everything queued, and reports any write error not reported yet.
    ///
    /// If this is the last handle, the writer thread is stopped and joined. If other handles
    /// (or [`FlowGuard`]s) are still alive, it waits like [`sync`](Self::sync) and the writer
    /// keeps serving them; it stops when the last of them is dropped.
    pub fn shutdown(self) -> Result<(), FlowLogError> {
        match self.sink {
            LogSink::Writer(handle) => match Arc::try_unwrap(handle) {
                Ok(mut last) => last.close(),
                Err(shared) => shared.sync(),
            },
            LogSink::Disabled | LogSink::Memory(_) => Ok(()),
        }
    }
}

impl fmt::Debug for FlowLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sink = match &self.sink {
            LogSink::Disabled => "disabled",
            LogSink::Memory(_) => "memory",
            LogSink::Writer(handle) => handle.destination.as_str(),
        };
        f.debug_struct("FlowLog").field("sink", &sink).finish()
    }
}

/// The counters of a [`FlowLog`], readable after the log is gone (they stop moving then).
#[derive(Debug, Clone, Default)]
pub struct FlowLogStats {
    /// `None` for a log without a writer thread, whose counters are always zero.
    stats: Option<Arc<Stats>>,
}

impl FlowLogStats {
    /// How many times a record found the writer's queue full and had to wait.
    pub fn backpressure_events(&self) -> u64 {
        self.stats
            .as_ref()
            .map_or(0, |s| s.backpressure_events.load(Ordering::Relaxed))
    }

    /// How many records could not be written.
    pub fn write_failures(&self) -> u64 {
        self.stats
            .as_ref()
            .map_or(0, |s| s.write_failures.load(Ordering::Relaxed))
    }

    /// How many records never reached the sink (no room for them, or a failed write).
    pub fn dropped(&self) -> u64 {
        self.stats
            .as_ref()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }
}

fn lock(records: &Mutex<Vec<FlowRecord>>) -> std::sync::MutexGuard<'_, Vec<FlowRecord>> {
    // A test that panicked while pushing leaves a complete vector behind; keep using it.
    records.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens (creating it and its directory if needed) and locks the flow log file at `path`.
pub(crate) fn open_file(path: &Path) -> Result<File, FlowLogError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        fs::create_dir_all(parent).map_err(|source| FlowLogError::CreateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| FlowLogError::Open {
            path: path.to_owned(),
            source,
        })?;
    // Cutting a torn tail and cutting off a failed batch both assume this is the only writer.
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(FlowLogError::InUse {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(error)) => {
            tracing::warn!(path = %path.display(), %error, "cannot lock the flow log, writing it unlocked");
            Ok(file)
        }
    }
}

/// The sending end of a writer thread, shared by all clones of one [`FlowLog`].
struct WriterHandle {
    commands: SyncSender<Command>,
    thread: Option<JoinHandle<io::Result<()>>>,
    stats: Arc<Stats>,
    destination: String,
    overflow: Overflow,
}

impl WriterHandle {
    /// Starts the writer thread, and the sink thread when there is a `sink`.
    fn spawn(
        sink: Option<Sink>,
        destination: String,
        options: &FlowLogOptions,
    ) -> Result<FlowLog, FlowLogError> {
        let (commands, receiver) = mpsc::sync_channel(options.capacity.max(1));
        let stats = Arc::new(Stats::default());
        let sink = sink
            .map(|sink| {
                let sink_options = SinkOptions {
                    buffer_bytes: options.buffer_bytes,
                    overflow: options.overflow,
                    sync_interval: options.sync_interval,
                };
                SinkHandle::spawn(sink, sink_options, Arc::clone(&stats))
            })
            .transpose()
            .map_err(FlowLogError::Spawn)?;
        let writer_stats = Arc::clone(&stats);
        let batch_delay = options.batch_delay;
        let observers = options.observers.clone();
        let thread = thread::Builder::new()
            .name("septa-flows".to_owned())
            .spawn(move || writer::run(&receiver, sink, &writer_stats, batch_delay, &observers))
            .map_err(FlowLogError::Spawn)?;
        let handle = Self {
            commands,
            thread: Some(thread),
            stats,
            destination,
            overflow: options.overflow,
        };
        Ok(FlowLog {
            sink: LogSink::Writer(Arc::new(handle)),
            node: None,
        })
    }

    fn record(&self, record: FlowRecord) {
        let sent = match self.commands.try_send(Command::Record(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) if self.overflow == Overflow::Drop => {
                // The writer thread reports drops to the observers and the log.
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(command)) => {
                self.stats
                    .backpressure_events
                    .fetch_add(1, Ordering::Relaxed);
                self.commands.send(command).map_err(drop)
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        };
        if sent.is_err() {
            self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                destination = %self.destination,
                "the flow log writer stopped unexpectedly, a flow record was lost"
            );
        }
    }

    fn sync(&self) -> Result<(), FlowLogError> {
        let (reply, outcome) = mpsc::channel();
        self.commands
            .send(Command::Sync(reply))
            .map_err(|_| self.writer_gone())?;
        outcome
            .recv()
            .map_err(|_| self.writer_gone())?
            .map_err(|source| self.write_error(source))
    }

    /// Stops the writer thread once everything queued is written and synced, and joins it.
    fn close(&mut self) -> Result<(), FlowLogError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // If the writer is gone already, joining tells why.
        let _ = self.commands.send(Command::Shutdown);
        match thread.join() {
            Ok(outcome) => outcome.map_err(|source| self.write_error(source)),
            Err(_panic) => Err(self.writer_gone()),
        }
    }

    fn write_error(&self, source: io::Error) -> FlowLogError {
        FlowLogError::Write {
            destination: self.destination.clone(),
            source,
        }
    }

    fn writer_gone(&self) -> FlowLogError {
        FlowLogError::WriterGone {
            destination: self.destination.clone(),
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(error = %error, source = ?std::error::Error::source(&error), "flow log shut down with an error");
        }
    }
}
