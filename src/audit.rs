//! The audit log: append-only, hash-chained JSON lines at `<state_dir>/audit.log`.
//!
//! Each line is one JSON object `{"event":..,"prev":..,"ts":..,...fields}` where `prev` is the
//! SHA-256 (hex) of the previous line's bytes (without its newline); the first line ever written
//! has `prev` = 64 zeros. Each line is fsynced (issuance rate is low).
//!
//! Two streams, each its own chain: `audit.log` holds what authenticated parties did (CA
//! creation, tokens, every issuance, repairs); `audit-deny.log` holds refusals of requests
//! anyone can send ([`deny_path_in`]), bounded in size per line ([`bounded`]) and, in the
//! service, in lines per minute. A flood of bad requests therefore rotates only the denial
//! stream and never pushes the history of issuances out.
//!
//! Rotation: when the file would grow past `max_bytes`, it becomes `audit.log.1` (older ones
//! move up one number) and the new file starts with a `rotate` line whose `prev` is the hash of
//! the rotated file's last line, so the chain spans files. Which rotated files are pruned is the
//! [`Policy`]'s (`retain`): older than the retention (and archived, with an archive
//! directory), or beyond the disk budget, always keeping [`KEEP`]. The `rotate` line is written
//! before anything is pruned and records each pruned file (its range, last hash and why) and
//! where history now begins (`history_from`), which `verify` checks the oldest file against.
//!
//! Removal from the end can't be seen from the chain alone, so `audit.log.head` (rewritten in
//! place after each line, and synced with it except within a group commit's bounded lag,
//! `HEAD_LAG`) holds the hash of the last line. The head is authoritative:
//! [`Audit::open`] and every append refuse to continue a log whose last line does not match it
//! ([`Error::Broken`]), so a deleted, edited or truncated tail is never laundered by the next
//! line; `gatecert audit verify --repair` records a `repair` line and lets appends resume.
//!
//! Appends are serialised across processes with flock(2) on `audit.log.lock`; the state is
//! re-read under the lock, so two `gatecert ca sign` runs and the service never fork the chain.
//! [`Audit::open_locked`] keeps the lock until dropped, for work (the leaf inventory) that must
//! be ordered with the line.
//!
//! The service does not re-read the log per line: the end of each log (its last hash and size)
//! is kept in memory by path, with the stat(2) of the log and of the head that it was read
//! under (`Stamp`); another process's append changes both, and only then is the tail read.
//!
//! Callers must never pass secrets (tokens, keys) in `fields`: lines may also go to syslog
//! ([`Policy::syslog`]).

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crypto;
use crate::store;

mod retain;
mod rotate;
mod verify;

pub use retain::{
    archive_pending, configure, spawn_archiver, unarchived, History, Policy, ARCHIVE_EVERY,
    DEFAULT_BUDGET, DEV_LOG, MAX_FILE_BYTES,
};
pub use verify::Begins;

/// The `prev` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Rotated files always kept (older ones go once past the retention).
pub const KEEP: usize = 2;
/// Default rotation size (the configured budget may make it larger: [`Policy::file_bytes`]).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// Rotation size of the denial stream.
pub const DENY_MAX_BYTES: u64 = 256 << 10;
/// How long rotated files of `audit.log` are kept at least: 30 days.
pub const DEFAULT_RETENTION: i64 = 30 * 86_400;
/// Longest a string field of a denial may be, in characters ([`bounded`]).
pub const MAX_FIELD_CHARS: usize = 128;
/// Most items of a list field of a denial ([`bounded`]).
pub const MAX_FIELD_ITEMS: usize = 8;
/// How long an append waits for another process's lock before failing.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// An audit log error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing or renaming a log file failed.
    Store(store::Error),
    /// `fields` was not a JSON object.
    Fields,
    /// The log's last line is not the one `audit.log.head` records (lines removed or edited at
    /// the end, or the file truncated): nothing is appended until an operator runs
    /// `gatecert audit verify --repair`.
    Broken {
        /// The log.
        path: PathBuf,
        /// What does not match.
        what: String,
    },
    /// Another process held `audit.log.lock` for longer than the wait.
    Busy(PathBuf),
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
            Error::Broken { path, what } => write!(
                f,
                "{}: audit chain broken: {what}; nothing is issued until an operator checks it \
                 and runs `gatecert audit verify --repair`",
                path.display()
            ),
            Error::Busy(p) => write!(f, "{} is held by another process", p.display()),
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
    /// Where the history begins.
    pub begins: Begins,
    /// The `ts` of the oldest line.
    pub first_ts: Option<i64>,
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
    policy: Policy,
    prev: String,
    size: u64,
    /// `audit.log.lock`, while this handle holds it ([`Audit::open_locked`]).
    lock: Option<fs::File>,
}

impl Audit {
    /// Opens (or creates) the log at `path`, checking its last line against `audit.log.head`
    /// ([`Error::Broken`] when they differ). A torn last line left by a crash is cut off, and a
    /// `repair` line recording how many bytes were cut (and their hash) is appended.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Audit, Error> {
        let mut audit = Audit::open_locked(path, max_bytes)?;
        audit.lock = None;
        Ok(audit)
    }

    /// [`Audit::open`], keeping `audit.log.lock` until the handle is dropped: appends through
    /// it and whatever the caller does meanwhile (the leaf inventory) are one step for every
    /// other process.
    pub fn open_locked(path: &Path, max_bytes: u64) -> Result<Audit, Error> {
        Audit::open_locked_within(path, max_bytes, LOCK_WAIT)
    }

    /// [`Audit::open_locked`], waiting at most `wait` for another process's lock
    /// ([`Error::Busy`] after that): the service's event loop never waits long on a CLI.
    pub fn open_locked_within(path: &Path, max_bytes: u64, wait: Duration) -> Result<Audit, Error> {
        // `audit.log` under a configured state directory follows the config's policy (and its
        // rotation size); the denial stream only its syslog forwarding.
        let (policy, max_bytes) = match retain::configured(path) {
            Some(p) if path.file_name() == Some("audit.log".as_ref()) => {
                let size = p.file_bytes();
                (p, size)
            }
            Some(p) => (
                Policy {
                    syslog: p.syslog,
                    ..Policy::default()
                },
                max_bytes,
            ),
            None => (Policy::default(), max_bytes),
        };
        let mut audit = Audit {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(256),
            policy,
            prev: GENESIS.to_string(),
            size: 0,
            lock: Some(lock_within(path, wait)?),
        };
        audit.load(true)?;
        Ok(audit)
    }

    /// Keep rotated files for at least `secs` (0: only [`KEEP`] of them).
    pub fn with_retention(mut self, secs: i64) -> Audit {
        self.policy.retention = secs.max(0);
        self
    }

    /// Replaces the policy (retention, budget, archive, syslog); the rotation size stays.
    pub fn with_policy(mut self, policy: Policy) -> Audit {
        self.policy = policy;
        self
    }

    /// Reads the log's end under the lock: `prev` and `size`. With `check_head`, a last line
    /// that is not the one the head records is [`Error::Broken`]; a torn tail is cut and a
    /// `repair` line records it.
    fn load(&mut self, check_head: bool) -> Result<(), Error> {
        let path = self.path.clone();
        let stamp = Stamp::of(&path);
        if check_head {
            if let Some((prev, size)) = cached(&path, &stamp) {
                self.prev = prev;
                self.size = size;
                return Ok(());
            }
        }
        let tail = inspect(&path)?;
        if let (true, Some(what)) = (check_head, tail.mismatch) {
            return Err(Error::Broken {
                path,
                what: what.into(),
            });
        }
        self.prev = tail.prev;
        self.size = tail.complete_len;
        if !tail.torn.is_empty() {
            log::warn!(
                "{}: cutting a torn last line of {} bytes",
                path.display(),
                tail.torn.len()
            );
            truncate(&path, tail.complete_len)?;
            self.append_raw(
                0,
                "repair",
                serde_json::json!({
                    "cut_bytes": tail.torn.len(),
                    "cut_sha256": crypto::hex(&crypto::sha256(&tail.torn)),
                }),
            )?;
        } else if check_head && tail.head.as_ref() != Some(&self.prev) && tail.has_lines {
            // The crash window between a line's fsync and the head's update: catch up.
            write_head(&path, &self.prev, 0, false)?;
            remember(&path, &self.prev, self.size);
        } else if check_head {
            remember_as(&path, stamp, &self.prev, self.size);
        }
        Ok(())
    }

    /// Whether the log at `path` may be appended to: `Err(Error::Broken)` when its last line is
    /// not the one `audit.log.head` records. Only reads (no lock, no repair), for `status`.
    ///
    /// When this process last read or wrote the log and neither it nor its head has changed
    /// since (the same `Stamp`: two stat(2) calls), the end it judged then stands, and
    /// nothing is read: EST checks the log before every issuance.
    pub fn check(path: &Path) -> Result<(), Error> {
        if cached(path, &Stamp::of(path)).is_some() {
            return Ok(());
        }
        match inspect(path)?.mismatch {
            Some(what) => Err(Error::Broken {
                path: path.to_path_buf(),
                what: what.into(),
            }),
            None => Ok(()),
        }
    }

    /// Appends one event. `fields` must be a JSON object; `ts`, `event` and `prev` are set here.
    /// Under `audit.log.lock` the log's end is re-read and checked against the head first, so
    /// another process's lines are chained onto and a broken tail is never continued. An error
    /// means the line is not recorded: the caller must not go on as if it were.
    pub fn append(
        &mut self,
        now: i64,
        event: &str,
        fields: serde_json::Value,
    ) -> Result<(), Error> {
        if !fields.is_object() {
            return Err(Error::Fields);
        }
        let _guard = self.lock_for_append()?;
        let line = render(now, event, fields.clone(), &self.prev)?;
        if self.size > 0 && self.size + line.len() as u64 + 1 > self.max_bytes {
            self.rotate(now)?;
            // `prev` changed: the line again, chained to the `rotate` line.
            return self.append_raw(now, event, fields);
        }
        self.append_line(line)
    }

    fn append_raw(
        &mut self,
        now: i64,
        event: &str,
        fields: serde_json::Value,
    ) -> Result<(), Error> {
        let line = render(now, event, fields, &self.prev)?;
        self.append_line(line)
    }

    /// The lock for one append when this handle does not hold `audit.log.lock`: taken, and the
    /// log's end read again under it (another process may have appended). `None` when held.
    fn lock_for_append(&mut self) -> Result<Option<fs::File>, Error> {
        if self.lock.is_some() {
            return Ok(None);
        }
        let g = lock(&self.path)?;
        self.load(true)?;
        Ok(Some(g))
    }

    /// Appends one rendered line (chained to `self.prev`), fsyncs it and updates the head.
    fn append_line(&mut self, line: String) -> Result<(), Error> {
        let mut f = self.open_append()?;
        self.write_line(&mut f, &line)?;
        self.sync_head(f, &[line], false)
    }

    fn open_append(&self) -> Result<fs::File, Error> {
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&self.path)
            .map_err(|e| store::io_err("open", &self.path)(e).into())
    }

    /// Writes one rendered line to `f` (not yet durable: [`Audit::sync_head`]).
    fn write_line(&mut self, f: &mut fs::File, line: &str) -> Result<(), Error> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        f.write_all(&bytes)
            .map_err(store::io_err("append to", &self.path))?;
        self.size += bytes.len() as u64;
        self.prev = crypto::hex(&crypto::sha256(line.as_bytes()));
        Ok(())
    }

    /// Makes the `lines` written to `f` durable (one fsync), records the new end in the head,
    /// then forwards them to syslog when configured. The head is made durable too, except in a
    /// group commit ([`Audit::append_batch`]) while the lines past its last durable state stay
    /// under [`HEAD_LAG`] bytes (see [`write_head`]).
    fn sync_head(&mut self, f: fs::File, lines: &[String], lazy: bool) -> Result<(), Error> {
        f.sync_data().map_err(store::io_err("fsync", &self.path))?;
        forget(&self.path);
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        write_head(&self.path, &self.prev, bytes, lazy)?;
        remember(&self.path, &self.prev, self.size);
        if let Some(socket) = &self.policy.syslog {
            for line in lines {
                if !retain::forward(socket, line) {
                    log::debug!("audit line not forwarded to {}", socket.display());
                }
            }
        }
        Ok(())
    }

    /// Appends several events with one fsync and one head update: a group commit of issuances
    /// that arrived together. `Ok` means every line is durable; an error means none may be taken
    /// as recorded. Each `fields` must be a JSON object.
    pub fn append_batch(
        &mut self,
        now: i64,
        events: Vec<(&str, serde_json::Value)>,
    ) -> Result<(), Error> {
        if events.iter().any(|(_, f)| !f.is_object()) {
            return Err(Error::Fields);
        }
        let _guard = self.lock_for_append()?;
        let mut out: Option<(fs::File, Vec<String>)> = None;
        let mut unsynced = 0u64;
        for (event, fields) in events {
            let mut line = render(now, event, fields.clone(), &self.prev)?;
            // Lines past the head stay within what `inspect` reads back after a crash.
            if unsynced + line.len() as u64 + 1 > BATCH_SYNC {
                if let Some((f, lines)) = out.take() {
                    self.sync_head(f, &lines, true)?;
                }
                unsynced = 0;
            }
            if self.size > 0 && self.size + line.len() as u64 + 1 > self.max_bytes {
                if let Some((f, lines)) = out.take() {
                    self.sync_head(f, &lines, false)?;
                }
                self.rotate(now)?;
                // `prev` changed: the line again, chained to the `rotate` line.
                line = render(now, event, fields, &self.prev)?;
            }
            let (f, lines) = match &mut out {
                Some(o) => o,
                None => out.insert((self.open_append()?, Vec::new())),
            };
            self.write_line(f, &line)?;
            unsynced += line.len() as u64 + 1;
            lines.push(line);
        }
        match out {
            Some((f, lines)) => self.sync_head(f, &lines, true),
            None => Ok(()),
        }
    }

    /// `gatecert audit verify --repair` for a tail that does not match the head: records a
    /// `repair` line naming what was found (so the gap stays visible in the log) and brings the
    /// head up to date, after which appends resume. Returns what was repaired, `None` when the
    /// tail matched.
    pub fn repair_head(path: &Path, now: i64) -> Result<Option<String>, Error> {
        let mut audit = Audit {
            path: path.to_path_buf(),
            max_bytes: DEFAULT_MAX_BYTES,
            policy: retain::configured(path).unwrap_or_default(),
            prev: GENESIS.to_string(),
            size: 0,
            lock: Some(lock(path)?),
        };
        let what = match audit.load(true) {
            Ok(()) => return Ok(None),
            Err(Error::Broken { what, .. }) => what,
            Err(e) => return Err(e),
        };
        let head_was = read_head(path)?;
        audit.load(false)?;
        let found = audit.prev.clone();
        audit.append_raw(
            now,
            "repair",
            serde_json::json!({
                "reason": what,
                "head_was": head_was,
                "log_ended_at": found,
            }),
        )?;
        Ok(Some(what))
    }

    /// Cuts a torn last line off `path`. Returns the number of bytes cut (0 = nothing to do).
    pub fn repair(path: &Path) -> Result<u64, Error> {
        let _lock = lock(path)?;
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
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(store::io_err("open", path))?;
    f.set_len(len).map_err(store::io_err("truncate", path))?;
    f.sync_all().map_err(store::io_err("fsync", path))?;
    Ok(())
}

/// The end of a log as found on disk.
struct Tail {
    /// The hash the next line chains to.
    prev: String,
    /// Bytes of complete lines.
    complete_len: u64,
    /// An unterminated last line (a torn write).
    torn: Vec<u8>,
    /// `audit.log.head`.
    head: Option<String>,
    has_lines: bool,
    /// Why the end does not match the head, if it does not.
    mismatch: Option<&'static str>,
}

/// Reads the end of the log at `path` and judges it against the head. Never writes.
fn inspect(path: &Path) -> Result<Tail, Error> {
    let head = read_head(path)?;
    let (data, offset) = read_tail(path)?;
    let (complete, torn) = split_torn(&data);
    let lines: Vec<&[u8]> = complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let last = lines.last().copied();
    let (prev, mismatch) = match last {
        Some(last) => {
            let hash = crypto::hex(&crypto::sha256(last));
            let claimed = line_prev(last);
            let ok = match &head {
                // A crash between the lines' fsync and the head's update leaves the head behind
                // (one line, or a group commit's lines): that loses nothing, as long as the
                // lines after the head's chain on from it.
                Some(h) => *h == hash || Some(h) == claimed.as_ref() || chains_from(&lines, h),
                // Only the very first line can precede the first head.
                None => claimed.as_deref() == Some(GENESIS),
            };
            let why = if head.is_none() {
                "audit.log.head is missing but the log has lines"
            } else {
                "the last line is not the one audit.log.head records: lines were removed from \
                 the end or the last line was edited"
            };
            (hash, (!ok).then_some(why))
        }
        None => {
            // Empty or absent: fresh, or a crash right after a rotation.
            let base = last_hash_of_newest_rotated(path)?.unwrap_or_else(|| GENESIS.into());
            let ok = head.as_ref().map_or(base == GENESIS, |h| *h == base);
            let why = "the log is empty or missing but audit.log.head records entries";
            (base, (!ok).then_some(why))
        }
    };
    Ok(Tail {
        prev,
        complete_len: offset + complete.len() as u64,
        torn: torn.to_vec(),
        head,
        has_lines: last.is_some(),
        mismatch,
    })
}

/// Whether `head` is the hash of one of `lines` (the end of a log) and every line after it chains
/// on from it (each one's `prev` is the hash of the one before): lines appended, and synced,
/// after the head was last written. [`Audit::append_batch`] keeps them within [`BATCH_SYNC`]
/// bytes, inside the window [`inspect`] reads.
fn chains_from(lines: &[&[u8]], head: &str) -> bool {
    let mut i = lines.len();
    while i >= 2 {
        let before = crypto::hex(&crypto::sha256(lines[i - 2]));
        if line_prev(lines[i - 1]).as_deref() != Some(before.as_str()) {
            return false;
        }
        if before == head {
            return true;
        }
        i -= 1;
    }
    false
}

/// The end of the file at `path` and the offset it starts at: the last [`TAIL_BYTES`] when
/// they hold the whole last line, else the whole file (an absent file is empty). `status` runs
/// this every tick; a 1 MiB log is not read each time.
fn read_tail(path: &Path) -> Result<(Vec<u8>, u64), Error> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(store::io_err("read", path)(e).into()),
    };
    let len = f.metadata().map_err(store::io_err("stat", path))?.len();
    if len > TAIL_BYTES {
        let start = len - TAIL_BYTES;
        let mut buf = Vec::with_capacity(TAIL_BYTES as usize);
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.read_to_end(&mut buf))
            .map_err(store::io_err("read", path))?;
        // The window must hold a newline before the last complete line, so that line is whole.
        let (complete, _) = split_torn(&buf);
        if complete.iter().filter(|b| **b == b'\n').count() >= 2 {
            let cut = complete
                .iter()
                .position(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            return Ok((buf[cut..].to_vec(), start + cut as u64));
        }
        f.seek(SeekFrom::Start(0))
            .map_err(store::io_err("read", path))?;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(store::io_err("read", path))?;
    Ok((buf, 0))
}

/// How many bytes of lines a group commit may leave past the head's last durable state: the
/// head is rewritten in place after every group, but synced only when this much has built up
/// since its last sync (or by any other append). After a power cut the head on disk may be
/// behind by that much; [`chains_from`] accepts a head whose following lines chain on from it,
/// and those lines plus one batch ([`BATCH_SYNC`]) stay inside the window [`inspect`] reads.
const HEAD_LAG: u64 = BATCH_SYNC / 2;

/// Bytes of lines each log's head is behind its durable state, by path (this process's group
/// commits only; every other append syncs the head, which covers them).
static HEAD_BEHIND: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

/// Records `prev` as the log's end in `audit.log.head`. The head is a fixed 64 bytes, rewritten
/// in place (one page dirtied, no new inode or directory entry); a missing, odd-sized or
/// non-regular head is replaced atomically instead. With `lazy`, after `bytes` more bytes of
/// lines, the write is synced only when the lines past the head's last synced state reach
/// [`HEAD_LAG`]: the flash then sees one page for many small group commits.
fn write_head(path: &Path, prev: &str, bytes: u64, lazy: bool) -> Result<(), Error> {
    use std::os::unix::fs::FileExt as _;
    let head = head_path(path);
    let sync = {
        let mut t = HEAD_BEHIND.lock().unwrap_or_else(|e| e.into_inner());
        let i = match t.iter().position(|(p, _)| p == path) {
            Some(i) => i,
            None => {
                t.push((path.to_path_buf(), 0));
                t.len() - 1
            }
        };
        let now = t[i].1 + bytes;
        let sync = !lazy || now > HEAD_LAG;
        t[i].1 = if sync { 0 } else { now };
        sync
    };
    let in_place = fs::OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&head)
        .ok()
        .filter(|f| {
            f.metadata()
                .map(|m| m.is_file() && m.len() == prev.len() as u64)
                .unwrap_or(false)
        });
    let written = match in_place {
        Some(f) => f
            .write_all_at(prev.as_bytes(), 0)
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| store::io_err("update", &head)(e).into()),
        None => store::write_atomic(&head, prev.as_bytes(), store::SECRET).map_err(Error::from),
    };
    if written.is_err() {
        // Unknown state on disk: the next write syncs.
        if let Ok(mut t) = HEAD_BEHIND.lock() {
            t.retain(|(p, _)| p != path);
        }
    }
    written
}

/// How much of a log's end [`inspect`] reads first.
const TAIL_BYTES: u64 = 64 << 10;

/// The most bytes of lines [`Audit::append_batch`] writes before it syncs them and updates the
/// head: half of [`TAIL_BYTES`], so that after a crash the head's line is inside the window.
const BATCH_SYNC: u64 = TAIL_BYTES / 2;

/// The `prev` a line claims.
fn line_prev(line: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get("prev")?.as_str().map(str::to_owned)
}

/// The hash of the last line of `path.1`, if there is one.
fn last_hash_of_newest_rotated(path: &Path) -> Result<Option<String>, Error> {
    let Some((_, p)) = rotated_files(path)?.into_iter().next() else {
        return Ok(None);
    };
    let data = fs::read(&p).map_err(store::io_err("read", &p))?;
    let (complete, _) = split_torn(&data);
    Ok(complete
        .split(|b| *b == b'\n')
        .rev()
        .nth(1)
        .map(|l| crypto::hex(&crypto::sha256(l))))
}

/// The rotated files of `path` (`path.N`), by N ascending (newest first).
fn rotated_files(path: &Path) -> Result<Vec<(usize, PathBuf)>, Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(store::io_err("list", dir)(e).into()),
    };
    let mut out: Vec<(usize, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n = name
                .to_str()?
                .strip_prefix(base)?
                .strip_prefix('.')?
                .parse::<usize>()
                .ok()?;
            (n > 0).then(|| (n, e.path()))
        })
        .collect();
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// Takes `<path>.lock` (0600, created if missing), waiting up to [`LOCK_WAIT`] for another
/// process: a stuck holder gives [`Error::Busy`], never a hang.
fn lock(path: &Path) -> Result<fs::File, Error> {
    lock_within(path, LOCK_WAIT)
}

/// [`lock`], waiting up to `wait`.
fn lock_within(path: &Path, wait: Duration) -> Result<fs::File, Error> {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    let lock_path = PathBuf::from(s);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&lock_path)
        .map_err(store::io_err("open", &lock_path))?;
    let deadline = Instant::now() + wait;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::Busy(lock_path)),
            Err(e) => return Err(store::io_err("lock", &lock_path)(e.into()).into()),
        }
    }
}

/// A denial's fields cut to size: strings to [`MAX_FIELD_CHARS`] characters and lists to
/// [`MAX_FIELD_ITEMS`] items, each cut saying how much was left out. What an unauthenticated
/// client sends can then cost at most about 2 KB of log per line.
pub fn bounded(fields: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn cut_str(s: &str) -> Value {
        if s.chars().count() <= MAX_FIELD_CHARS {
            return Value::String(s.to_owned());
        }
        let head: String = s.chars().take(MAX_FIELD_CHARS).collect();
        Value::String(format!("{head}...(cut, {} bytes)", s.len()))
    }
    fn cut(v: Value, depth: u8) -> Value {
        match v {
            Value::String(s) => cut_str(&s),
            Value::Array(items) if depth < 2 => {
                let n = items.len();
                let mut out: Vec<Value> = items
                    .into_iter()
                    .take(MAX_FIELD_ITEMS)
                    .map(|i| cut(i, depth + 1))
                    .collect();
                if n > MAX_FIELD_ITEMS {
                    out.push(Value::String(format!("...(+{} more)", n - MAX_FIELD_ITEMS)));
                }
                Value::Array(out)
            }
            Value::Object(map) if depth < 2 => Value::Object(
                map.into_iter()
                    .take(4 * MAX_FIELD_ITEMS)
                    .map(|(k, v)| {
                        (
                            cut_str(&k).as_str().unwrap_or_default().to_owned(),
                            cut(v, depth + 1),
                        )
                    })
                    .collect(),
            ),
            Value::Array(_) | Value::Object(_) => Value::String("...(cut)".into()),
            other => other,
        }
    }
    cut(fields, 0)
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

/// What identifies one state of a log and its head without reading them: for each, device,
/// inode, size, mtime and ctime (ns). Any append changes the log's size and ctime; every head
/// update changes its mtime and ctime (and is made after the log's append, which changed the
/// log's size); the ctime cannot be set back by anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp([Option<FileId>; 2]);

/// Device, inode, size, mtime (ns), ctime (ns).
type FileId = (u64, u64, u64, i64, i64);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt as _;
        let one = |p: &Path| {
            let m = fs::symlink_metadata(p).ok()?;
            Some((
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ))
        };
        Stamp([one(path), one(&head_path(path))])
    }
}

/// The end of each log this process last read or wrote: path, stamp, last hash, size.
static TAILS: Mutex<Vec<(PathBuf, Stamp, String, u64)>> = Mutex::new(Vec::new());
/// Logs whose ends are remembered at most (one state directory has two).
const TAILS_KEPT: usize = 8;

/// The remembered end of `path` when its stamp is still `stamp`.
fn cached(path: &Path, stamp: &Stamp) -> Option<(String, u64)> {
    let t = TAILS.lock().ok()?;
    t.iter()
        .find(|(p, s, _, _)| p == path && s == stamp && s.0[0].is_some())
        .map(|(_, _, prev, size)| (prev.clone(), *size))
}

/// Remembers the end of `path` as it is now (called under the lock, after a write).
fn remember(path: &Path, prev: &str, size: u64) {
    remember_as(path, Stamp::of(path), prev, size);
}

fn remember_as(path: &Path, stamp: Stamp, prev: &str, size: u64) {
    if let Ok(mut t) = TAILS.lock() {
        t.retain(|(p, _, _, _)| p != path);
        if t.len() >= TAILS_KEPT {
            t.remove(0);
        }
        t.push((path.to_path_buf(), stamp, prev.to_owned(), size));
    }
}

fn forget(path: &Path) {
    if let Ok(mut t) = TAILS.lock() {
        t.retain(|(p, _, _, _)| p != path);
    }
}

/// `<state_dir>/audit.log`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.log")
}

/// `<state_dir>/audit-deny.log`: refusals of unauthenticated requests, their own chain.
pub fn deny_path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("audit-deny.log")
}

#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;
