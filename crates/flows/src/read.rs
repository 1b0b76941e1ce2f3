//! Reading a flow log back, rotated files included, for tests and `septa suggest`.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::record::FlowRecord;
use crate::rotate::log_files;

/// An error reading a flow log.
#[derive(Debug, thiserror::Error)]
pub enum FlowReadError {
    /// The flow log could not be opened or read.
    #[error("cannot read the flow log `{path}`")]
    Io {
        /// The flow log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line is not a flow record.
    #[error("line {line} of the flow log `{path}` is not a flow record")]
    Parse {
        /// The flow log file.
        path: PathBuf,
        /// The line, counting from 1.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads every record of the flow log at `path`, oldest first: its rotated files
/// (`path.N` … `path.1`, see [`Rotation`](crate::Rotation)) and then `path` itself.
///
/// Blank lines are skipped. A last line without its `\n` that does not parse is skipped too: it
/// is a record still being written, or a torn tail that [`FlowLog::open`](crate::FlowLog::open)
/// will cut off. Any other line that does not parse is an error naming its file and line
/// number.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<FlowRecord>, FlowReadError> {
    let path = path.as_ref();
    let mut files = log_files(path);
    if files.is_empty() {
        // Opening it says why it cannot be read.
        files.push(path.to_owned());
    }
    let mut records = Vec::new();
    for file_path in files {
        let file = File::open(&file_path).map_err(|source| FlowReadError::Io {
            path: file_path.clone(),
            source,
        })?;
        records.extend(read_records_from(BufReader::new(file), &file_path)?);
    }
    Ok(records)
}

/// Like [`read_records`], from any reader (stdin, a socket); `path` only names it in errors.
pub fn read_records_from(
    mut reader: impl BufRead,
    path: impl AsRef<Path>,
) -> Result<Vec<FlowRecord>, FlowReadError> {
    let path = path.as_ref();
    let mut records = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| FlowReadError::Io {
                path: path.to_owned(),
                source,
            })?;
        if read == 0 {
            break;
        }
        let terminated = line.last() == Some(&b'\n');
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(&line) {
            Ok(record) => records.push(record),
            Err(_) if !terminated => break,
            Err(source) => {
                return Err(FlowReadError::Parse {
                    path: path.to_owned(),
                    line: number,
                    source,
                });
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const LINE: &str = r#"{"time":"2026-11-29T20:41:03.123Z","kind":"mesh","src":"function:a","dst":"function:b","verdict":"allow","rule":"a-to-b","reason":"allowed"}"#;

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let text = format!("{LINE}\n\n{LINE}\nnot json\n{LINE}\n");
        let error = read_records_from(text.as_bytes(), "flows.jsonl").unwrap_err();
        assert!(matches!(error, FlowReadError::Parse { line: 4, .. }));
        assert_eq!(
            error.to_string(),
            "line 4 of the flow log `flows.jsonl` is not a flow record"
        );
    }

    #[test]
    fn an_unterminated_partial_last_line_is_skipped() {
        let text = format!("{LINE}\n{}", &LINE[..40]);
        let records = read_records_from(text.as_bytes(), "flows.jsonl").unwrap();
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn an_unterminated_complete_last_line_is_kept() {
        let text = format!("{LINE}\n{LINE}");
        let records = read_records_from(text.as_bytes(), "flows.jsonl").unwrap();
        assert_eq!(records.len(), 2);
    }
}
