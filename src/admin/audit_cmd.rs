//! `gatecert audit verify`: the chains of the state directory's streams, or of an archive.

use std::path::{Path, PathBuf};

use super::{finish, usage, Res};
use crate::audit::{self, Audit, Begins, VerifyReport};
use crate::clock;
use crate::config::Config;

const USAGE: &str = "usage: gatecert audit verify [--repair | --dir ARCHIVE_DIR]";

/// `gatecert audit verify [--repair | --dir DIR]`: both streams (`audit.log`, and
/// `audit-deny.log` when present), each across its rotated files as one chain, or with `--dir`
/// the files of an archive directory (`option audit_archive_dir`). Exit 0 when every chain is
/// intact. `--repair` cuts a torn last line, and for a tail that does not match the head
/// records a `repair` line (the gap stays visible) so that issuance can resume.
pub fn cmd_audit(cfg: &Config, args: &[String]) -> i32 {
    let (repair, dir) = match args {
        [v] if v == "verify" => (false, None),
        [v, r] if v == "verify" && r == "--repair" => (true, None),
        [v, d, p] if v == "verify" && d == "--dir" => (false, Some(PathBuf::from(p))),
        _ => return finish(Err(usage(USAGE))),
    };
    if let Some(dir) = dir {
        return finish((|| -> Res {
            let report = Audit::verify_dir(&dir)?;
            if report.files.is_empty() {
                return Err(usage(format!(
                    "{}: no archived audit files (audit-*.log)",
                    dir.display()
                )));
            }
            print_report(&dir, &report);
            if report.ok() {
                Ok(())
            } else {
                Err(usage(format!(
                    "audit archive {} failed verification ({} problem(s))",
                    dir.display(),
                    report.problems.len()
                )))
            }
        })());
    }
    let now = clock::from_env().now();
    let state = &cfg.main.state_dir;
    let mut paths = vec![audit::path_in(state)];
    let deny = audit::deny_path_in(state);
    if deny.exists() {
        paths.push(deny);
    }
    finish((|| -> Res {
        let mut failed = Vec::new();
        for path in &paths {
            let mut report = Audit::verify(path)?;
            if repair && report.torn_at.is_some() {
                let cut = Audit::repair(path)?;
                println!("{}: cut a torn last line of {cut} bytes", path.display());
                report = Audit::verify(path)?;
            }
            if repair && !report.ok() {
                if let Some(what) = Audit::repair_head(path, now)? {
                    println!("{}: recorded a repair: {what}", path.display());
                    report = Audit::verify(path)?;
                }
            }
            print_report(path, &report);
            if !report.ok() {
                failed.push(format!(
                    "{} ({} problem(s))",
                    path.display(),
                    report.problems.len()
                ));
            }
        }
        if failed.is_empty() {
            println!("audit log intact");
            Ok(())
        } else {
            Err(usage(format!(
                "audit log failed verification: {}",
                failed.join(", ")
            )))
        }
    })())
}

fn print_report(what: &Path, report: &VerifyReport) {
    for p in &report.problems {
        println!("{p}");
    }
    if !report.ok() {
        return;
    }
    let begins = match report.begins {
        Begins::Empty => "no lines".to_string(),
        Begins::Genesis => "history begins at the first line ever written".to_string(),
        Begins::Pruned => format!(
            "history begins at ts {} after files pruned as recorded",
            report.first_ts.unwrap_or(0)
        ),
        Begins::Unrecorded => format!(
            "history begins at ts {} after a rotation that did not record it (older version)",
            report.first_ts.unwrap_or(0)
        ),
    };
    println!(
        "{}: intact: {} lines in {} file(s); {begins}",
        what.display(),
        report.lines,
        report.files.len()
    );
}
