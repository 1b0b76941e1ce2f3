//! The flow log's bounds as `septa up` and `septa node` take them: rotation by size, how many
//! rotated files to keep, how many records may wait in memory, and what happens when they are
//! more (drop and count, or make requests wait).

use std::path::Path;

use anyhow::Context;
use clap::{Args, ValueEnum};
use septa_flows::{FlowLog, FlowLogOptions, FlowObservers, Overflow, Rotation};

/// Bytes of serialized records allowed to wait for the sink per record of `--flow-log-queue`.
const BUFFER_BYTES_PER_RECORD: usize = 256;

/// `--flow-log-queue` unless given: the library's default queue, and so 2 MiB for the sink.
const DEFAULT_QUEUE: u64 = 8192;

/// How the flow log is bounded.
#[derive(Args, Clone, Debug)]
pub(crate) struct FlowLogBounds {
    /// Size at which the flow log file moves on to a fresh one (the full one becomes
    /// FILE.1, FILE.1 becomes FILE.2, ...).
    #[arg(long, value_name = "BYTES", default_value_t = Rotation::default().max_bytes,
          value_parser = clap::value_parser!(u64).range(1024..))]
    flow_log_max_bytes: u64,
    /// Rotated flow log files kept beside the current one; older ones are removed.
    #[arg(long, value_name = "N", default_value_t = Rotation::default().keep)]
    flow_log_keep: usize,
    /// When the flow log cannot keep up (a stalled `--flow-log -` pipe, a full or slow disk):
    /// `drop` records and count them (`septa_flow_log_dropped_total`, `flow_records_dropped`
    /// alerts), never holding up a request; or `block` requests until the records are
    /// written, for a log that must be complete.
    #[arg(long, value_enum, default_value_t = OverflowArg::Drop)]
    flow_log_overflow: OverflowArg,
    /// Flow records held in memory while the log's sink is slower than the flows (and about
    /// 256 bytes each of serialized records waiting for the sink); past them `--flow-log-overflow`
    /// applies.
    #[arg(long, value_name = "RECORDS", default_value_t = DEFAULT_QUEUE,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    flow_log_queue: u64,
}

/// `--flow-log-overflow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OverflowArg {
    /// Drop records there is no room for, and count them.
    Drop,
    /// Make requests wait until their records are written.
    Block,
}

impl FlowLogBounds {
    /// Options for a flow log bounded as asked, feeding `observers`.
    fn options(&self, observers: FlowObservers) -> FlowLogOptions {
        let capacity = usize::try_from(self.flow_log_queue).unwrap_or(usize::MAX);
        FlowLogOptions {
            capacity,
            buffer_bytes: capacity.saturating_mul(BUFFER_BYTES_PER_RECORD),
            overflow: match self.flow_log_overflow {
                OverflowArg::Drop => Overflow::Drop,
                OverflowArg::Block => Overflow::Block,
            },
            rotation: Some(Rotation {
                max_bytes: self.flow_log_max_bytes,
                keep: self.flow_log_keep,
            }),
            observers,
            ..FlowLogOptions::default()
        }
    }

    /// Opens the flow log at `path` (`-` for standard output), or at `default` when no path
    /// was given, bounded as asked.
    pub(crate) fn open(
        &self,
        path: Option<&Path>,
        default: &Path,
        observers: FlowObservers,
    ) -> anyhow::Result<FlowLog> {
        let options = self.options(observers);
        let path = path.unwrap_or(default);
        if path == Path::new("-") {
            return Ok(FlowLog::stdout_with(options)?);
        }
        FlowLog::open_with(path, options)
            .with_context(|| format!("cannot open flow log `{}`", path.display()))
    }

    /// A log that writes nothing but feeds `observers`, bounded in memory as asked.
    pub(crate) fn observers_only(&self, observers: FlowObservers) -> anyhow::Result<FlowLog> {
        Ok(FlowLog::observers_only(self.options(observers))?)
    }
}
