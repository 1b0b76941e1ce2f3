//! Reading an incoming body and writing an outgoing one, blocking on the streams.

use wasi::http::types::{IncomingBody, OutgoingBody};
use wasi::io::streams::StreamError;

/// The most `blocking_write_and_flush` accepts in one call.
const WRITE_CHUNK: usize = 4096;

/// How much to ask for per read; the host may return less.
const READ_CHUNK: u64 = 64 * 1024;

/// A body read up to a limit.
pub(crate) struct BodyBytes {
    pub(crate) bytes: Vec<u8>,
    /// The body went on past the limit; `bytes` holds only the first part.
    pub(crate) truncated: bool,
}

/// Reads `body` to its end, or until `limit` bytes, whichever comes first.
///
/// Past the limit the rest is left unread: the caller decided it does not want it, and
/// reading it anyway would let a large body use up the guest's memory.
pub(crate) fn read_body(body: IncomingBody, limit: usize) -> Result<BodyBytes, String> {
    let stream = body
        .stream()
        .map_err(|()| "the body stream was already taken".to_string())?;
    let mut bytes = Vec::new();
    let mut truncated = false;
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                let room = limit.saturating_sub(bytes.len());
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(format!(
                    "reading the body failed: {}",
                    error.to_debug_string()
                ));
            }
        }
    }
    // The stream is a child of the body: it must go first or the host traps.
    drop(stream);
    drop(body);
    Ok(BodyBytes { bytes, truncated })
}

/// Writes all of `bytes` to `body` and finishes it.
pub(crate) fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body
        .write()
        .map_err(|()| "the body stream was already taken".to_string())?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        if let Err(error) = stream.blocking_write_and_flush(chunk) {
            return Err(match error {
                StreamError::Closed => "the peer closed the body stream".to_string(),
                StreamError::LastOperationFailed(error) => {
                    format!("writing the body failed: {}", error.to_debug_string())
                }
            });
        }
    }
    // Same parent/child rule as in `read_body`.
    drop(stream);
    OutgoingBody::finish(body, None).map_err(|code| format!("finishing the body failed: {code:?}"))
}
