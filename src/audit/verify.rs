//! `gatecert audit verify`: the chain across all files of a stream, or of an archive directory.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::{lock, read_head, retain, rotated_files, split_torn, Audit, Error, Problem};
use super::{VerifyReport, GENESIS};
use crate::crypto;
use crate::store;

impl Audit {
    /// Checks the chain across the rotated files (oldest first) and `path` as one: every line
    /// parses, every `prev` is the hash of the line before it (the first line of each file links
    /// to the last of the previous one), the oldest line starts the chain (genesis) or is where a
    /// pruning recorded in a `rotate` line left history (`history_from`), the last line matches
    /// `audit.log.head`, and no line is torn.
    pub fn verify(path: &Path) -> Result<VerifyReport, Error> {
        // Best effort: a reader who may not create the lock file still gets a report.
        let _lock = lock(path).ok();
        let mut files: Vec<PathBuf> = rotated_files(path)?
            .into_iter()
            .rev()
            .map(|(_, p)| p)
            .collect();
        if path.exists() {
            files.push(path.to_path_buf());
        }
        let (mut report, prev, last_claimed) = check_chain(files, true)?;
        if let (Some(head), Some(last)) = (read_head(path)?, &prev) {
            // The head may trail the end by the lines of one group commit that a crash caught
            // between their fsync and the head's update ([`super::inspect`] decides, as the
            // next append does): that loses nothing.
            let behind =
                last_claimed.as_ref() == Some(&head) || super::inspect(path)?.mismatch.is_none();
            if &head != last && !behind {
                report.problems.push(Problem {
                    path: path.to_path_buf(),
                    line: report.lines,
                    what: "the log ends before the last recorded entry (audit.log.head): \
                             lines were removed from the end or the last line was edited; \
                           `audit verify --repair` records the gap and lets issuance resume"
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
        Ok(report)
    }

    /// Checks the files of an archive directory (`option audit_archive_dir`) as one chain, in
    /// chain order: the same checks as [`Audit::verify`] but for the head (an archive holds
    /// rotated files only, so its newest line is wherever the last copy ended).
    pub fn verify_dir(dir: &Path) -> Result<VerifyReport, Error> {
        let rd = fs::read_dir(dir).map_err(store::io_err("list", dir))?;
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("audit-") && n.ends_with(".log")
            })
            .map(|e| e.path())
            .collect();
        names.sort();
        let mut infos = Vec::with_capacity(names.len());
        for p in &names {
            infos.push(retain::info(p)?);
        }
        // Chain order: start at the file nothing links to, follow the links; whatever is left
        // (a gap) follows in name (= time) order and is reported by the chain check.
        let ends: HashSet<&str> = infos
            .iter()
            .filter_map(|i| i.last_hash.as_deref())
            .collect();
        let by_prev: HashMap<&str, usize> = infos
            .iter()
            .enumerate()
            .filter_map(|(n, i)| Some((i.first_prev.as_deref()?, n)))
            .collect();
        let mut order: Vec<usize> = Vec::with_capacity(infos.len());
        let mut used = vec![false; infos.len()];
        let start = infos
            .iter()
            .position(|i| i.first_prev.as_deref().is_none_or(|p| !ends.contains(p)));
        let mut next = start;
        while let Some(n) = next.filter(|n| !used[*n]) {
            used[n] = true;
            order.push(n);
            next = infos[n]
                .last_hash
                .as_deref()
                .and_then(|h| by_prev.get(h).copied());
        }
        order.extend((0..infos.len()).filter(|n| !used[*n]));
        let files = order.into_iter().map(|n| infos[n].path.clone()).collect();
        Ok(check_chain(files, false)?.0)
    }
}

/// Checks `files` (oldest first) as one chain. With `live`, the last file is the one being
/// appended to (a torn last line there is a crash to repair). Returns the report, the hash of
/// the last line and the `prev` the last line claims.
fn check_chain(
    files: Vec<PathBuf>,
    live: bool,
) -> Result<(VerifyReport, Option<String>, Option<String>), Error> {
    let mut report = VerifyReport::default();
    let mut prev: Option<String> = None;
    // The `prev` the newest line claims: equal to the head when a crash came between the
    // line's fsync and the head's update, which loses nothing.
    let mut last_claimed: Option<String> = None;
    // Where recorded prunings left history (`history_from` of `rotate` lines).
    let mut starts: HashSet<String> = HashSet::new();
    // The oldest line: its file, its `prev`, whether it is a `rotate` line.
    let mut oldest: Option<(PathBuf, String, bool, Option<i64>)> = None;
    let last_index = files.len().saturating_sub(1);
    for (fi, file) in files.iter().enumerate() {
        let data = fs::read(file).map_err(store::io_err("read", file))?;
        let (complete, torn) = split_torn(&data);
        if !torn.is_empty() {
            let what = if live && fi == last_index {
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
            // Only the fields the chain needs, borrowed: a month of lines is checked in seconds.
            let parsed: Option<ChainFields<'_>> = serde_json::from_slice(line).ok();
            let claimed = parsed
                .as_ref()
                .and_then(|v| v.prev.as_deref().map(str::to_owned));
            let event = parsed.as_ref().and_then(|v| v.event.as_deref());
            if event == Some("rotate") {
                if let Some(h) = parsed.as_ref().and_then(|v| v.history_from.as_deref()) {
                    starts.insert(h.to_owned());
                }
            }
            match (&claimed, &prev) {
                (None, _) => problem("not a JSON object with a \"prev\" hash (edited?)".into()),
                (Some(c), Some(p)) if c != p => problem(
                    "\"prev\" does not match the line before: that line was edited or removed"
                        .into(),
                ),
                (Some(c), None) => {
                    let ts = parsed.as_ref().and_then(|v| v.ts);
                    oldest = Some((file.clone(), c.clone(), event == Some("rotate"), ts));
                }
                _ => {}
            }
            prev = Some(crypto::hex(&crypto::sha256(line)));
            last_claimed = claimed;
        }
    }
    if let Some((file, first_prev, is_rotate, ts)) = oldest {
        report.first_ts = ts;
        if first_prev == GENESIS {
            report.begins = Begins::Genesis;
        } else if starts.contains(&first_prev) {
            report.begins = Begins::Pruned;
        } else if starts.is_empty() && is_rotate {
            // Written before `history_from` was recorded: the rotation is all there is to go by.
            report.begins = Begins::Unrecorded;
        } else {
            report.problems.push(Problem {
                path: file,
                line: 1,
                what: "the oldest line neither starts the chain nor is where a recorded pruning \
                       (a `rotate` line's history_from) left history: earlier lines were removed"
                    .into(),
            });
        }
    }
    report.files = files;
    Ok((report, prev, last_claimed))
}

/// The fields of a line the chain check reads; the rest is skipped unparsed.
#[derive(serde::Deserialize)]
struct ChainFields<'a> {
    #[serde(borrow, default)]
    prev: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    history_from: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    ts: Option<i64>,
}

/// Where the verified history begins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Begins {
    /// No lines.
    #[default]
    Empty,
    /// The very first line ever written.
    Genesis,
    /// After files pruned by retention or budget, as a `rotate` line recorded.
    Pruned,
    /// After a rotation of a log written before prunings were recorded.
    Unrecorded,
}
