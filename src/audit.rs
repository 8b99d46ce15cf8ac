//! The audit log: append-only, hash-chained JSON lines at `<state_dir>/audit.log`.
//!
//! Each line is one JSON object `{"event":..,"prev":..,"ts":..,...fields}` where `prev` is the
//! SHA-256 (hex) of the previous line's bytes (without its newline); the first line ever written
//! has `prev` = 64 zeros. Each line is fsynced (issuance rate is low).
//!
//! Rotation: when the file would grow past `max_bytes`, it becomes `audit.log.1` (the old `.1`
//! becomes `.2`; older ones are dropped) and the new file starts with a `rotate` line whose `prev`
//! is the hash of the rotated file's last line, so the chain spans files.
//!
//! Removal from the end can't be seen from the chain alone, so `audit.log.head` (written
//! atomically after each line) holds the hash of the last line; `verify` compares the two.
//!
//! Callers must never pass secrets (tokens, keys) in `fields`.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::crypto;
use crate::store;

/// The `prev` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Rotated files kept.
pub const KEEP: usize = 2;
/// Default rotation size.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;

/// An audit log error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing or renaming a log file failed.
    Store(store::Error),
    /// `fields` was not a JSON object.
    Fields,
    /// A line of an existing log is not JSON, or has no `prev`; names file and line.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(_) => f.write_str("audit log"),
            Error::Fields => f.write_str("audit fields must be a JSON object"),
            Error::Corrupt { path, line, what } => {
                write!(f, "{}:{line}: {what}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

/// One problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 for the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.what)
    }
}

/// The result of [`Audit::verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files checked, oldest first.
    pub files: Vec<PathBuf>,
    /// Lines checked across all files.
    pub lines: usize,
    /// Problems found; empty = the chain is intact.
    pub problems: Vec<Problem>,
    /// The last file ends in an unterminated line (a write torn by a crash): its byte offset.
    pub torn_at: Option<u64>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// An open audit log.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    max_bytes: u64,
    prev: String,
    size: u64,
}

impl Audit {
    /// Opens (or creates) the log at `path`. A torn last line left by a crash is cut off, and a
    /// `repair` line recording how many bytes were cut (and their hash) is appended.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Audit, Error> {
        let mut audit = Audit {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(256),
            prev: GENESIS.to_string(),
            size: 0,
        };
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A fresh file after rotation is never absent, but the head may remember a chain.
                if let Some(head) = read_head(path)? {
                    audit.prev = head;
                }
                return Ok(audit);
            }
            Err(e) => return Err(store::io_err("read", path)(e).into()),
        };
        let (complete, torn) = split_torn(&data);
        audit.size = complete.len() as u64;
        if let Some(last) = complete.split(|b| *b == b'\n').rev().nth(1) {
            audit.prev = crypto::hex(&crypto::sha256(last));
        }
        if !torn.is_empty() {
            log::warn!(
                "{}: cutting a torn last line of {} bytes",
                path.display(),
                torn.len()
            );
            truncate(path, complete.len() as u64)?;
            audit.append_raw(
                0,
                "repair",
                serde_json::json!({
                    "cut_bytes": torn.len(),
                    "cut_sha256": crypto::hex(&crypto::sha256(torn)),
                }),
            )?;
        }
        Ok(audit)
    }

    /// Appends one event. `fields` must be a JSON object; `ts`, `event` and `prev` are set here.
    pub fn append(
        &mut self,
        now: i64,
        event: &str,
        fields: serde_json::Value,
    ) -> Result<(), Error> {
        if !fields.is_object() {
            return Err(Error::Fields);
        }
        let line = render(now, event, fields.clone(), &self.prev)?;
        if self.size > 0 && self.size + line.len() as u64 + 1 > self.max_bytes {
            self.rotate(now)?;
        }
        self.append_raw(now, event, fields)
    }

    fn append_raw(
        &mut self,
        now: i64,
        event: &str,
        fields: serde_json::Value,
    ) -> Result<(), Error> {
        let line = render(now, event, fields, &self.prev)?;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(store::io_err("open", &self.path))?;
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        f.write_all(&bytes)
            .map_err(store::io_err("append to", &self.path))?;
        f.sync_data().map_err(store::io_err("fsync", &self.path))?;
        self.size += bytes.len() as u64;
        self.prev = crypto::hex(&crypto::sha256(line.as_bytes()));
        store::write_atomic(&head_path(&self.path), self.prev.as_bytes(), store::SECRET)?;
        Ok(())
    }

    fn rotate(&mut self, now: i64) -> Result<(), Error> {
        for i in (1..KEEP).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                let to = rotated(&self.path, i + 1);
                fs::rename(&from, &to).map_err(store::io_err("rename", &from))?;
            }
        }
        let first = rotated(&self.path, 1);
        fs::rename(&self.path, &first).map_err(store::io_err("rename", &self.path))?;
        self.size = 0;
        let file = first
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.append_raw(now, "rotate", serde_json::json!({ "from": file }))
    }

    /// Checks the chain across `path.2`, `path.1` and `path`: every line parses, every `prev` is
    /// the hash of the line before it (across files), the oldest file starts at genesis or with a
    /// `rotate` line, the last line matches `audit.log.head`, and no line is torn.
    pub fn verify(path: &Path) -> Result<VerifyReport, Error> {
        let mut report = VerifyReport::default();
        let mut files: Vec<PathBuf> = (1..=KEEP)
            .rev()
            .map(|i| rotated(path, i))
            .filter(|p| p.exists())
            .collect();
        if path.exists() {
            files.push(path.to_path_buf());
        }
        let mut prev: Option<String> = None;
        // The `prev` the newest line claims: equal to the head when a crash came between the
        // line's fsync and the head's update, which loses nothing.
        let mut last_claimed: Option<String> = None;
        let last_index = files.len().saturating_sub(1);
        for (fi, file) in files.iter().enumerate() {
            let data = fs::read(file).map_err(store::io_err("read", file))?;
            let (complete, torn) = split_torn(&data);
            if !torn.is_empty() {
                let what = if fi == last_index {
                    report.torn_at = Some(complete.len() as u64);
                    format!(
                        "torn last line ({} bytes without a newline); `audit verify --repair` cuts it",
                        torn.len()
                    )
                } else {
                    "a rotated file ends in an unterminated line".to_string()
                };
                report.problems.push(Problem {
                    path: file.clone(),
                    line: complete.split(|b| *b == b'\n').count(),
                    what,
                });
            }
            let lines: Vec<&[u8]> = complete
                .strip_suffix(b"\n")
                .map(|c| c.split(|b| *b == b'\n').collect())
                .unwrap_or_default();
            for (li, line) in lines.iter().enumerate() {
                report.lines += 1;
                let n = li + 1;
                let mut problem = |what: String| {
                    report.problems.push(Problem {
                        path: file.clone(),
                        line: n,
                        what,
                    })
                };
                let parsed: Option<serde_json::Value> = serde_json::from_slice(line).ok();
                let claimed = parsed
                    .as_ref()
                    .and_then(|v| v.get("prev"))
                    .and_then(|p| p.as_str())
                    .map(str::to_owned);
                match (&claimed, &prev) {
                    (None, _) => problem("not a JSON object with a \"prev\" hash (edited?)".into()),
                    (Some(c), Some(p)) if c != p => problem(
                        "\"prev\" does not match the line before: that line was edited or removed"
                            .into(),
                    ),
                    (Some(c), None) => {
                        let event = parsed
                            .as_ref()
                            .and_then(|v| v.get("event"))
                            .and_then(|e| e.as_str());
                        if c != GENESIS && event != Some("rotate") {
                            problem(
                                "the oldest line neither starts the chain nor follows a rotation: \
                                 earlier lines were removed"
                                    .into(),
                            );
                        }
                    }
                    _ => {}
                }
                prev = Some(crypto::hex(&crypto::sha256(line)));
                last_claimed = claimed;
            }
        }
        if let (Some(head), Some(last)) = (read_head(path)?, &prev) {
            if &head != last && last_claimed.as_ref() != Some(&head) {
                report.problems.push(Problem {
                    path: path.to_path_buf(),
                    line: report.lines,
                    what: "the log ends before the last recorded entry (audit.log.head): \
                           lines were removed from the end or the last line was edited"
                        .into(),
                });
            }
        } else if read_head(path)?.is_some() && prev.is_none() {
            report.problems.push(Problem {
                path: path.to_path_buf(),
                line: 0,
                what: "the log is empty but audit.log.head records entries".into(),
            });
        }
        report.files = files;
        Ok(report)
    }

    /// Cuts a torn last line off `path`. Returns the number of bytes cut (0 = nothing to do).
    pub fn repair(path: &Path) -> Result<u64, Error> {
        let data = fs::read(path).map_err(store::io_err("read", path))?;
        let (complete, torn) = split_torn(&data);
        if torn.is_empty() {
            return Ok(0);
        }
        truncate(path, complete.len() as u64)?;
        Ok(torn.len() as u64)
    }
}

fn render(now: i64, event: &str, fields: serde_json::Value, prev: &str) -> Result<String, Error> {
    let serde_json::Value::Object(mut map) = fields else {
        return Err(Error::Fields);
    };
    map.insert("ts".into(), now.into());
    map.insert("event".into(), event.into());
    map.insert("prev".into(), prev.into());
    // Invariant: a Map of JSON values always serialises.
    Ok(serde_json::Value::Object(map).to_string())
}

/// Splits the data into complete lines (ending in `\n`) and a torn tail.
fn split_torn(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().rposition(|b| *b == b'\n') {
        Some(i) => data.split_at(i + 1),
        None => data.split_at(0),
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), Error> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(store::io_err("open", path))?;
    f.set_len(len).map_err(store::io_err("truncate", path))?;
    f.sync_all().map_err(store::io_err("fsync", path))?;
    Ok(())
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

fn head_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".head");
    PathBuf::from(s)
}

fn read_head(path: &Path) -> Result<Option<String>, Error> {
    Ok(store::read_optional(&head_path(path))?.map(|s| s.trim().to_string()))
}

/// `<state_dir>/audit.log`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.log")
}

#[cfg(test)]
mod tests;
