//! Rotation: `audit.log` becomes `audit.log.1` (older files move up one number), the
//! [`super::Policy`] decides what is archived and pruned, and the new file starts with a
//! `rotate` line that chains on from the rotated file and records every pruned file before any
//! is removed.

use std::fs;

use super::{forget, retain, rotated, rotated_files, Audit, Error};
use crate::store;

impl Audit {
    pub(super) fn rotate(&mut self, now: i64) -> Result<(), Error> {
        for (n, from) in rotated_files(&self.path)?.iter().rev() {
            let to = rotated(&self.path, n + 1);
            fs::rename(from, &to).map_err(store::io_err("rename", from))?;
        }
        let first = rotated(&self.path, 1);
        fs::rename(&self.path, &first).map_err(store::io_err("rename", &self.path))?;
        forget(&self.path);
        self.size = 0;
        // Archive, then decide what goes (oldest files only: the chain stays contiguous). The
        // `rotate` line records it before anything is removed, so a crash in between leaves
        // files that the next rotation prunes again, never an unrecorded gap.
        let plan = retain::plan(&self.path, now, &self.policy, self.max_bytes)?;
        if let (Some(e), Some(dir)) = (&plan.archive_error, &self.policy.archive_dir) {
            log::error!(
                "audit archive {} unavailable: {e}; rotated files are kept until it is back \
                 (within audit_max_bytes)",
                dir.display()
            );
        }
        let short: Vec<_> = plan
            .pruned
            .iter()
            .filter(|(_, r, _)| *r == retain::Reason::OverBudget)
            .collect();
        let young = short.iter().any(|(i, _, _)| {
            i.last_ts
                .is_some_and(|ts| ts >= now.saturating_sub(self.policy.retention))
        });
        for (i, _, archived) in &short {
            log::error!(
                "audit history dropped over audit_max_bytes ({} bytes): {} ({} lines, {}..{}){}{}",
                self.policy.budget,
                i.path.display(),
                i.lines,
                i.first_ts.unwrap_or(0),
                i.last_ts.unwrap_or(0),
                if young {
                    ", younger than audit_retention"
                } else {
                    ""
                },
                if *archived || self.policy.archive_dir.is_none() {
                    ""
                } else {
                    ", not archived"
                },
            );
        }
        let pruned: Vec<serde_json::Value> = plan
            .pruned
            .iter()
            .map(|(i, reason, archived)| {
                let mut v = serde_json::json!({
                    "file": i.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "lines": i.lines,
                    "bytes": i.bytes,
                    "first_ts": i.first_ts,
                    "last_ts": i.last_ts,
                    "last_sha256": i.last_hash,
                    "reason": match reason {
                        retain::Reason::Expired => "older than audit_retention",
                        retain::Reason::OverBudget => "over audit_max_bytes",
                    },
                });
                if self.policy.archive_dir.is_some() {
                    v["archived"] = (*archived).into();
                    v["archive_name"] = i.archive_name.clone().into();
                }
                v
            })
            .collect();
        let file = first
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kept = plan.oldest_kept.as_ref();
        let mut fields = serde_json::json!({
            "from": file,
            "dropped_files": pruned.len(),
            "history_from": kept.and_then(|k| k.first_prev.clone()),
            "history_from_ts": kept.and_then(|k| k.first_ts),
            "retention": self.policy.retention,
            "max_bytes": self.policy.budget,
            "kept_bytes": plan.kept_bytes,
        });
        if !pruned.is_empty() {
            fields["pruned"] = pruned.into();
        }
        if young {
            fields["short_of_retention"] = true.into();
        }
        if let Some(e) = &plan.archive_error {
            fields["archive_error"] = e.clone().into();
        }
        self.append_raw(now, "rotate", fields)?;
        for (i, _, _) in &plan.pruned {
            fs::remove_file(&i.path).map_err(store::io_err("remove", &i.path))?;
        }
        // Pruning the oldest leaves a gap in the numbers only at the old end: nothing to rename.
        Ok(())
    }
}
