//! How long `audit.log` history is kept, on how much disk, and where rotated files go before
//! they are pruned.
//!
//! A [`Policy`] holds the retention period (`option audit_retention`), the disk budget of the
//! stream (`option audit_max_bytes`: rotated files plus the current one), an optional archive
//! directory (`option audit_archive_dir`) and an optional syslog socket (`option audit_syslog`).
//! At each rotation the oldest rotated files go only when they are older than the period (and,
//! with an archive directory, copied there first); a file younger than the period, or not yet
//! archived, goes only when the budget is exceeded, and then the `rotate` line that records the
//! drop says why (`reason`), `short_of_retention` is set, and an error is logged. Every `rotate`
//! line records where history now begins (`history_from`: the `prev` of the oldest kept line),
//! so [`super::Audit::verify`] tells a pruned start from a removed one.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{rotated_files, Error};
use crate::crypto;
use crate::store;

/// Default disk budget of `audit.log` and its rotated files: 64 MiB.
pub const DEFAULT_BUDGET: u64 = 64 << 20;
/// Largest rotation size the budget grows a file to: 8 MiB (a file is read whole when pruned or
/// archived).
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// The syslog socket `option audit_syslog '1'` forwards to.
pub const DEV_LOG: &str = "/dev/log";

/// Retention, budget, archive and syslog of one audit stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Rotated files are kept at least this long, seconds (unless over the budget).
    pub retention: i64,
    /// Bytes the stream may take on disk, rotated files and the current one together.
    pub budget: u64,
    /// Rotated files are copied (and synced) here before they are pruned.
    pub archive_dir: Option<PathBuf>,
    /// Each line is also sent to this syslog socket (RFC 3164, facility "log audit").
    pub syslog: Option<PathBuf>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            retention: super::DEFAULT_RETENTION,
            budget: DEFAULT_BUDGET,
            archive_dir: None,
            syslog: None,
        }
    }
}

impl Policy {
    /// The rotation size for this budget: 1/32 of it, at least [`super::DEFAULT_MAX_BYTES`]
    /// and at most [`MAX_FILE_BYTES`], so the budget holds at least [`super::KEEP`] + 1 files
    /// and pruning frees it in steps of about 3%.
    pub fn file_bytes(&self) -> u64 {
        (self.budget / 32).clamp(super::DEFAULT_MAX_BYTES, MAX_FILE_BYTES)
    }
}

/// Policies set from the config, by state directory: [`super::Audit::open`] of
/// `<state_dir>/audit.log` uses it (all of it), of `<state_dir>/audit-deny.log` its `syslog`.
static CONFIGURED: Mutex<Vec<(PathBuf, Policy)>> = Mutex::new(Vec::new());

/// Sets the policy of the audit streams in `state_dir` for this process (the CLI after loading
/// the config, the service at start and on SIGHUP).
pub fn configure(state_dir: &Path, policy: Policy) {
    if let Ok(mut c) = CONFIGURED.lock() {
        c.retain(|(d, _)| d != state_dir);
        c.push((state_dir.to_path_buf(), policy));
    }
}

/// The configured policy of the stream at `path`, if its directory has one.
pub(super) fn configured(path: &Path) -> Option<Policy> {
    let dir = path.parent()?;
    let c = CONFIGURED.lock().ok()?;
    c.iter().find(|(d, _)| d == dir).map(|(_, p)| p.clone())
}

/// What is known of one rotated file.
#[derive(Debug)]
pub(super) struct FileInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub lines: usize,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// The `prev` of its first line: where it links to.
    pub first_prev: Option<String>,
    /// The SHA-256 of its last line: what the next file's first line links to.
    pub last_hash: Option<String>,
    /// Its name in an archive directory ([`archive_name`]).
    pub archive_name: Option<String>,
}

/// Reads a (rotated, no longer written) file whole.
pub(super) fn info(path: &Path) -> Result<FileInfo, Error> {
    let data = fs::read(path).map_err(store::io_err("read", path))?;
    let (complete, _) = super::split_torn(&data);
    let lines: Vec<&[u8]> = complete
        .strip_suffix(b"\n")
        .map(|c| c.split(|b| *b == b'\n').collect())
        .unwrap_or_default();
    let field = |l: Option<&&[u8]>, k: &str| -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(l?).ok()?;
        v.get(k).cloned()
    };
    Ok(FileInfo {
        path: path.to_path_buf(),
        bytes: data.len() as u64,
        lines: lines.len(),
        first_ts: field(lines.first(), "ts").and_then(|v| v.as_i64()),
        last_ts: field(lines.last(), "ts").and_then(|v| v.as_i64()),
        first_prev: field(lines.first(), "prev").and_then(|v| v.as_str().map(str::to_owned)),
        last_hash: lines.last().map(|l| crypto::hex(&crypto::sha256(l))),
        archive_name: lines.first().map(|l| name_for(l, field(Some(l), "ts"))),
    })
}

/// `audit-<first ts>-<first 16 hex of the first line's SHA-256>.log`: stable whatever number
/// the file has locally (the first line chains to everything before it), sorts by time.
fn name_for(first_line: &[u8], ts: Option<serde_json::Value>) -> String {
    let ts = ts.and_then(|v| v.as_i64()).unwrap_or(0).max(0);
    let h = crypto::hex(&crypto::sha256(first_line));
    format!("audit-{ts:012}-{}.log", &h[..16])
}

/// The archive name of the rotated file at `path`, from its first line only (cheap: `status`
/// uses it).
pub(super) fn archive_name(path: &Path) -> Result<Option<String>, Error> {
    let Some(line) = first_line(path)? else {
        return Ok(None);
    };
    let ts = serde_json::from_slice::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v.get("ts").cloned());
    Ok(Some(name_for(&line, ts)))
}

/// Whether the rotated file is in the archive directory with the same size.
pub(super) fn is_archived(dir: &Path, name: &str, bytes: u64) -> bool {
    fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.len() == bytes)
}

/// Copies a rotated file into the archive directory (temp file, fsync, rename, fsync of the
/// directory): never a half-written archive file under the final name.
pub(super) fn archive(dir: &Path, f: &FileInfo) -> Result<(), Error> {
    let Some(name) = &f.archive_name else {
        return Ok(());
    };
    if is_archived(dir, name, f.bytes) {
        return Ok(());
    }
    let meta = fs::metadata(dir).map_err(store::io_err("open the archive directory", dir))?;
    if !meta.is_dir() {
        return Err(store::io_err("open the archive directory", dir)(
            std::io::ErrorKind::NotADirectory.into(),
        )
        .into());
    }
    let data = fs::read(&f.path).map_err(store::io_err("read", &f.path))?;
    store::write_atomic(&dir.join(name), &data, store::SECRET)?;
    Ok(())
}

/// Why a rotated file is pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// Older than the retention (and archived, when there is an archive).
    Expired,
    /// Kept files exceeded the budget: history younger than the period, or not yet archived,
    /// is dropped.
    OverBudget,
}

/// The plan of one rotation: which of the rotated files (oldest first) go, and why.
pub(super) struct Plan {
    pub pruned: Vec<(FileInfo, Reason, bool)>,
    /// The oldest kept file, after pruning.
    pub oldest_kept: Option<FileInfo>,
    /// An archive copy failed (the directory is unavailable): its error.
    pub archive_error: Option<String>,
    /// Bytes kept after pruning (rotated files).
    pub kept_bytes: u64,
}

/// Decides what a rotation at `now` prunes of the rotated files of `path` (`.1` is the file just
/// rotated), archiving first when the policy says so. `file_bytes` is the room the new current
/// file needs within the budget.
pub(super) fn plan(path: &Path, now: i64, policy: &Policy, file_bytes: u64) -> Result<Plan, Error> {
    let files = rotated_files(path)?;
    let mut sizes: Vec<(PathBuf, u64)> = Vec::with_capacity(files.len());
    for (_, p) in files.iter().rev() {
        let len = fs::metadata(p).map_err(store::io_err("stat", p))?.len();
        sizes.push((p.clone(), len));
    }
    let mut archive_error = None;
    if let (Some(dir), true) = (&policy.archive_dir, archiver_running(path)) {
        // The service's archiver thread copies; the request that rotated never waits for a
        // (slow) stick. Only say whether it is there.
        if !fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
            archive_error = Some(format!("{}: not a mounted directory", dir.display()));
        }
    } else if let Some(dir) = &policy.archive_dir {
        // A command (`ca sign`, `token add`) copies itself, oldest first, so the archive never
        // has a gap before a newer file.
        for (p, _) in &sizes {
            let done = archive_name(p)?.is_some_and(|n| {
                is_archived(dir, &n, fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            });
            if done {
                continue;
            }
            if let Err(e) = info(p).and_then(|i| archive(dir, &i)) {
                archive_error = Some(crate::errchain::one_line(&e));
                break;
            }
        }
    }
    let mut total: u64 = sizes.iter().map(|(_, n)| n).sum();
    let room = policy.budget.saturating_sub(file_bytes);
    let mut count = sizes.len();
    let mut pruned = Vec::new();
    let mut oldest_kept = None;
    for (p, _) in &sizes {
        let i = info(p)?;
        if count <= super::KEEP {
            oldest_kept = Some(i);
            break;
        }
        let expired = i
            .last_ts
            .is_none_or(|ts| ts < now.saturating_sub(policy.retention));
        let archived = match (&policy.archive_dir, &i.archive_name) {
            (Some(dir), Some(n)) => is_archived(dir, n, i.bytes),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let reason = if expired && (archived || policy.archive_dir.is_none()) {
            Reason::Expired
        } else if total > room {
            Reason::OverBudget
        } else {
            oldest_kept = Some(i);
            break;
        };
        total = total.saturating_sub(i.bytes);
        count -= 1;
        pruned.push((i, reason, archived));
    }
    Ok(Plan {
        pruned,
        oldest_kept,
        archive_error,
        kept_bytes: total,
    })
}

/// Logs (`audit.log` paths) whose rotated files a thread of this process archives.
static ARCHIVERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// How often the archiver looks for rotated files to copy.
pub const ARCHIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn archiver_running(path: &Path) -> bool {
    ARCHIVERS.lock().is_ok_and(|a| a.iter().any(|p| p == path))
}

/// Starts the service's archiver for `<state_dir>/audit.log`: every [`ARCHIVE_EVERY`] it copies
/// the rotated files not yet in the configured `audit_archive_dir` (read afresh each time, so
/// a SIGHUP that sets or changes it is followed), oldest first, off the event loop. Rotations
/// in this process then never copy themselves; they prune a file only once its copy is there
/// (or beyond the budget). It reads a first line per rotated file and writes only to the
/// archive, and only when there is something to copy. Errors are logged when they change.
pub fn spawn_archiver(state_dir: &Path) -> std::io::Result<()> {
    let path = super::path_in(state_dir);
    if let Ok(mut a) = ARCHIVERS.lock() {
        if a.contains(&path) {
            return Ok(());
        }
        a.push(path.clone());
    }
    std::thread::Builder::new()
        .name("audit-archive".into())
        .spawn(move || {
            let mut last_error: Option<String> = None;
            loop {
                let dir = configured(&path).and_then(|p| p.archive_dir);
                if let Some(dir) = dir {
                    let error = archive_pending(&path, &dir)
                        .err()
                        .map(|e| crate::errchain::one_line(&e));
                    if error != last_error {
                        match &error {
                            Some(e) => log::error!(
                                "audit archive {} unavailable: {e}; rotated files are kept \
                                 until it is back (within audit_max_bytes)",
                                dir.display()
                            ),
                            None => log::info!("audit archive {} available", dir.display()),
                        }
                        last_error = error;
                    }
                }
                std::thread::sleep(ARCHIVE_EVERY);
            }
        })
        .map(|_| ())
}

/// Copies the rotated files of `path` not yet in `dir`, oldest first; stops at the first
/// failure. A file pruned meanwhile is skipped. Returns how many were copied.
pub fn archive_pending(path: &Path, dir: &Path) -> Result<usize, Error> {
    let mut copied = 0;
    for p in unarchived(path, dir)? {
        let i = match info(&p) {
            Ok(i) => i,
            Err(Error::Store(store::Error::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        archive(dir, &i)?;
        copied += 1;
    }
    Ok(copied)
}

/// Files of `path` not in the archive directory yet (oldest first), for `status`: one small
/// read per rotated file.
pub fn unarchived(path: &Path, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for (_, p) in rotated_files(path)?.iter().rev() {
        let len = fs::metadata(p).map_err(store::io_err("stat", p))?.len();
        if let Some(n) = archive_name(p)? {
            if !is_archived(dir, &n, len) {
                out.push(p.clone());
            }
        }
    }
    Ok(out)
}

/// Sends one audit line to the syslog socket at `socket` (RFC 3164 over a Unix datagram,
/// facility 13 "log audit", severity info). Best effort: a missing socket loses nothing, the
/// line is in the log.
pub(super) fn forward(socket: &Path, line: &str) -> bool {
    let msg = format!(
        "<{}>gatecert-audit[{}]: {line}",
        13 * 8 + 6,
        std::process::id()
    );
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(msg.as_bytes(), socket))
        .is_ok()
}

/// How the history of `audit.log` stands against its policy, for `status` and metrics: read
/// from the current file's first line (the last `rotate` line) and, with an archive directory,
/// the first line of each rotated file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct History {
    /// `audit_retention`, seconds.
    pub retention: i64,
    /// `audit_max_bytes`.
    pub max_bytes: u64,
    /// The last rotation dropped history younger than the retention to stay within the budget.
    pub short_of_retention: bool,
    /// The `ts` of the oldest kept line, as of the last rotation (`None`: never rotated).
    pub history_from_ts: Option<i64>,
    /// The last rotation's time.
    pub rotated_at: Option<i64>,
    /// The archive directory, when configured.
    pub archive_dir: Option<PathBuf>,
    /// Rotated files not (yet) in the archive directory.
    pub unarchived_files: usize,
    /// Why the last rotation could not archive, if it could not.
    pub archive_error: Option<String>,
    /// The history could not be read: why.
    pub error: Option<String>,
}

impl History {
    /// Reads the state of the stream at `path` under `policy`. Never writes.
    pub fn of(path: &Path, policy: &Policy) -> History {
        let mut h = History {
            retention: policy.retention,
            max_bytes: policy.budget,
            archive_dir: policy.archive_dir.clone(),
            ..History::default()
        };
        if let Err(e) = h.read(path, policy) {
            h.error = Some(crate::errchain::one_line(&e));
        }
        h
    }

    fn read(&mut self, path: &Path, policy: &Policy) -> Result<(), Error> {
        if let Some(line) = first_line(path)? {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
            if v.get("event").and_then(|e| e.as_str()) == Some("rotate") {
                self.rotated_at = v.get("ts").and_then(|t| t.as_i64());
                self.history_from_ts = v.get("history_from_ts").and_then(|t| t.as_i64());
                self.short_of_retention = v.get("short_of_retention") == Some(&true.into());
                self.archive_error = v
                    .get("archive_error")
                    .and_then(|e| e.as_str())
                    .map(str::to_owned);
            }
        }
        if let Some(dir) = &policy.archive_dir {
            self.unarchived_files = unarchived(path, dir)?.len();
        }
        Ok(())
    }

    /// What needs an operator, one sentence each (`status` attention, alerts).
    pub fn attention(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.short_of_retention {
            let kept = match (self.rotated_at, self.history_from_ts) {
                (Some(r), Some(f)) => format!("{} day(s)", (r - f).max(0) / 86_400),
                _ => "less".into(),
            };
            out.push(format!(
                "audit history dropped within audit_retention ({} days): only {kept} fit \
                 audit_max_bytes ({} bytes); raise it or set audit_archive_dir",
                self.retention / 86_400,
                self.max_bytes
            ));
        }
        if let (Some(dir), n @ 1..) = (&self.archive_dir, self.unarchived_files) {
            let why = self
                .archive_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            out.push(format!(
                "{n} rotated audit file(s) not archived to {} (unavailable?{why}); kept \
                 locally within audit_max_bytes",
                dir.display()
            ));
        }
        if let Some(e) = &self.error {
            out.push(format!("audit history unreadable: {e}"));
        }
        out
    }
}

/// The first complete line of `path`, at most 64 KiB; `None` when absent or empty.
fn first_line(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    use std::io::{BufRead as _, BufReader, Read as _};
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store::io_err("read", path)(e).into()),
    };
    let mut line = Vec::new();
    BufReader::new(f.take(64 << 10))
        .read_until(b'\n', &mut line)
        .map_err(store::io_err("read", path))?;
    Ok((line.pop() == Some(b'\n')).then_some(line))
}
