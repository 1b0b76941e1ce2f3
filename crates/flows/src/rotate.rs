//! Rotating a file flow log by size, and finding the files of a rotated log.
//!
//! `flows.jsonl` is the file being written; when the next line would take it past
//! [`Rotation::max_bytes`], it becomes `flows.jsonl.1`, the earlier `flows.jsonl.1` becomes
//! `flows.jsonl.2`, and so on up to [`Rotation::keep`] files; the oldest beyond that is
//! overwritten. A fresh `flows.jsonl` takes the new lines. Every rotated file ends on a whole
//! line, so each one reads on its own.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// When a file flow log rotates and how many rotated files it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The size a file may reach before the log moves on to a fresh one (a single line longer
    /// than this still gets a file of its own). At least 1.
    pub max_bytes: u64,
    /// How many rotated files are kept beside the one being written (0: none, a full file is
    /// simply emptied).
    pub keep: usize,
}

impl Default for Rotation {
    /// 64 MiB files, four of them kept beside the current one.
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            keep: 4,
        }
    }
}

/// `path` with `.n` appended: `flows.jsonl.3`.
pub(crate) fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Shifts the rotated files up by one (dropping the one past `keep`) and moves `path` to
/// `path.1`. With `keep == 0` it does nothing: the caller empties `path` instead.
pub(crate) fn shift(path: &Path, keep: usize) -> io::Result<()> {
    if keep == 0 {
        return Ok(());
    }
    for n in (1..keep).rev() {
        match std::fs::rename(rotated_path(path, n), rotated_path(path, n + 1)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    std::fs::rename(path, rotated_path(path, 1))
}

/// The files of the flow log at `path` that exist, oldest first: the rotated ones from the
/// highest number down, then `path` itself.
pub fn log_files(path: impl AsRef<Path>) -> Vec<PathBuf> {
    let path = path.as_ref();
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated_path(path, n))
        .take_while(|rotated| rotated.is_file())
        .collect();
    files.reverse();
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn rotated_files_are_listed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.jsonl");
        assert!(log_files(&path).is_empty());
        std::fs::write(&path, "c\n").unwrap();
        std::fs::write(rotated_path(&path, 1), "b\n").unwrap();
        std::fs::write(rotated_path(&path, 2), "a\n").unwrap();
        // A gap ends the rotated files: `.4` is not one of them.
        std::fs::write(rotated_path(&path, 4), "x\n").unwrap();
        let names: Vec<String> = log_files(&path)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["flows.jsonl.2", "flows.jsonl.1", "flows.jsonl"]);
    }

    #[test]
    fn shifting_keeps_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.jsonl");
        for generation in 0..5 {
            std::fs::write(&path, format!("{generation}\n")).unwrap();
            shift(&path, 2).unwrap();
        }
        assert!(!path.exists());
        let read = |n| std::fs::read_to_string(rotated_path(&path, n)).unwrap();
        assert_eq!((read(1), read(2)), ("4\n".to_owned(), "3\n".to_owned()));
        assert!(!rotated_path(&path, 3).exists());
    }
}
