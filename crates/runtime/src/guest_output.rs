//! What a guest writes to stdout and stderr: a line in septa's log for each line it writes,
//! naming the function, the stream and the request's trace, so that a `println!`, a Python
//! `print` or a JavaScript `console.log`, and above all the panic message a guest writes before
//! it traps, reach the operator beside the flow record of the same trace.
//!
//! The lines are events of target `septa::guest` at level INFO: `SEPTA_LOG` shows them by default
//! and `SEPTA_LOG=warn` leaves them out, and then a guest's output is discarded unread, as it was
//! before. A guest is untrusted, and so is what it writes, so:
//!
//! - each line is written quoted and escaped, so no control character or terminal escape it
//!   writes reaches the operator's terminal, and one longer than [`MAX_LINE`] bytes is cut into
//!   pieces of that size;
//! - one request writes at most [`MAX_PER_REQUEST`] bytes to each stream; the rest is counted,
//!   and one line at the end says how much was left out;
//! - one function writes at most [`LINES_PER_WINDOW`] lines every [`WINDOW`], whatever the number
//!   of its requests; the rest are counted, and the next line written says how many were left
//!   out (`suppressed=N`). As with septa's own warnings, a flood of requests to a function that
//!   prints or panics costs the log a few lines, not one per request.
//!
//! Writing never fails and never waits: output past a bound is dropped, so a guest that writes
//! without end neither traps nor holds its request up, and cannot fill septa's log.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use septa_flows::LogThrottle;
use septa_policy::FunctionId;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::trace_id;

/// The longest line written as one; a longer one is written in pieces of this size.
pub const MAX_LINE: usize = 2048;
/// What one request may write to each of stdout and stderr.
pub const MAX_PER_REQUEST: usize = 64 * 1024;
/// The lines one function may write every [`WINDOW`], over all its requests.
pub const LINES_PER_WINDOW: u32 = 100;
/// The window of [`LINES_PER_WINDOW`].
pub const WINDOW: Duration = Duration::from_secs(10);

/// How much a guest may write in one call: any amount is taken at once.
const WRITE_PERMIT: usize = 64 * 1024;

static THROTTLE: LogThrottle<FunctionId> = LogThrottle::new(LINES_PER_WINDOW, WINDOW);

/// Whether septa's log takes guest output at all: when it does not, a guest's stdout and stderr
/// stay the empty sinks of a fresh WASI context, and cost nothing.
pub(crate) fn wanted() -> bool {
    tracing::enabled!(target: "septa::guest", tracing::Level::INFO)
}

/// One stream (stdout or stderr) of one request, as the guest's WASI context holds it.
pub(crate) struct GuestOutput(Arc<Mutex<Lines>>);

impl GuestOutput {
    pub(crate) fn new(
        function: FunctionId,
        name: Arc<str>,
        trace: u64,
        stream: &'static str,
    ) -> Self {
        Self(Arc::new(Mutex::new(Lines {
            source: Source {
                function,
                name,
                trace,
                stream,
            },
            cut: Cutter::default(),
        })))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(Writer(self.0.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only for WASIp3, which septa does not link.
        Box::new(tokio::io::sink())
    }
}

/// The `output-stream` a guest writes through; each `get-stdout` makes one, all sharing the
/// request's [`Lines`].
struct Writer(Arc<Mutex<Lines>>);

impl OutputStream for Writer {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl Pollable for Writer {
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

/// What one request wrote to one stream and has not written out yet.
struct Lines {
    source: Source,
    cut: Cutter,
}

impl Lines {
    fn take(&mut self, bytes: &[u8]) {
        let source = &self.source;
        self.cut.take(bytes, |line| source.say(line));
    }
}

impl Drop for Lines {
    /// The request is over: its last line, even without a newline, and what was left out.
    fn drop(&mut self) {
        let source = &self.source;
        let dropped = self.cut.finish(|line| source.say(line));
        if dropped > 0 {
            let note = format!(
                "[septa: {dropped} more bytes left out; a request writes at most {MAX_PER_REQUEST} bytes to {}]",
                source.stream
            );
            source.say(note.as_bytes());
        }
    }
}

/// Whose output a stream is: a function's, in one request, on stdout or stderr.
struct Source {
    function: FunctionId,
    name: Arc<str>,
    trace: u64,
    stream: &'static str,
}

impl Source {
    /// Writes one line (less a final `\r`) to septa's log, unless the function is past its lines
    /// for this window.
    fn say(&self, line: &[u8]) {
        let Some(suppressed) = THROTTLE.admit(self.function) else {
            return;
        };
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        let (name, stream, trace) = (&self.name, self.stream, trace_id(self.trace));
        if suppressed == 0 {
            tracing::info!(target: "septa::guest", function = %name, stream, %trace, "{line:?}");
        } else {
            tracing::info!(target: "septa::guest", function = %name, stream, %trace, suppressed, "{line:?}");
        }
    }
}

/// Cuts what a stream is written into lines: at each newline, and every [`MAX_LINE`] bytes of a
/// longer line; past [`MAX_PER_REQUEST`] bytes it only counts.
struct Cutter {
    /// The line being written, up to its newline.
    partial: Vec<u8>,
    /// Bytes that may still be taken.
    left: usize,
    /// Bytes past [`MAX_PER_REQUEST`], counted and dropped.
    dropped: u64,
}

impl Default for Cutter {
    fn default() -> Self {
        Self {
            partial: Vec::new(),
            left: MAX_PER_REQUEST,
            dropped: 0,
        }
    }
}

impl Cutter {
    /// Takes `bytes`, handing each line they complete to `line` (without its newline).
    fn take(&mut self, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        let kept = bytes.len().min(self.left);
        self.left -= kept;
        self.dropped += (bytes.len() - kept) as u64;
        for piece in bytes[..kept].split_inclusive(|b| *b == b'\n') {
            let (text, ends) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            for chunk in text.chunks(MAX_LINE) {
                let room = MAX_LINE - self.partial.len();
                let (now, later) = chunk.split_at(chunk.len().min(room));
                self.partial.extend_from_slice(now);
                if self.partial.len() == MAX_LINE {
                    line(&self.partial);
                    self.partial.clear();
                    self.partial.extend_from_slice(later);
                }
            }
            if ends {
                line(&self.partial);
                self.partial.clear();
            }
        }
    }

    /// Hands the unfinished line, if any, to `line`, and says how many bytes were dropped.
    fn finish(&mut self, mut line: impl FnMut(&[u8])) -> u64 {
        if !self.partial.is_empty() {
            line(&self.partial);
            self.partial.clear();
        }
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The lines `writes` make, and the bytes dropped.
    fn cut(writes: &[&[u8]]) -> (Vec<Vec<u8>>, u64) {
        let mut cutter = Cutter::default();
        let mut lines = Vec::new();
        for bytes in writes {
            cutter.take(bytes, |line| lines.push(line.to_vec()));
        }
        let dropped = cutter.finish(|line| lines.push(line.to_vec()));
        (lines, dropped)
    }

    #[test]
    fn lines_end_at_newlines_and_the_last_one_without() {
        let (lines, dropped) = cut(&[b"one\ntw", b"o\n\nthree"]);
        assert_eq!(lines, [&b"one"[..], b"two", b"", b"three"]);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_long_line_is_written_in_pieces_of_the_longest_line() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let (lines, _) = cut(&[b"ab", &long, b"\nz"]);
        let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 7, 1]);
    }

    #[test]
    fn past_the_request_allowance_bytes_are_counted_not_kept() {
        let line = [b'y'; 1000];
        let mut writes: Vec<&[u8]> = Vec::new();
        for _ in 0..100 {
            writes.push(&line);
            writes.push(b"\n");
        }
        let (lines, dropped) = cut(&writes);
        // 65 whole lines of 1001 bytes with their newlines, then the first 471 of the next.
        assert_eq!(MAX_PER_REQUEST, 65 * 1001 + 471);
        assert_eq!(lines.len(), 66);
        assert!(lines[..65].iter().all(|l| l.len() == 1000));
        assert_eq!(lines[65].len(), 471);
        assert_eq!(dropped, (100 * 1001 - MAX_PER_REQUEST) as u64);
    }
}
