//! `gatecert ca rotate`: the engine is [`crate::ca::rotate`]; this is the command, its locks and
//! its audit lines.

use serde_json::json;

use super::{audit_ready, fingerprint, usage, Res};
use crate::audit::{self, Audit};
use crate::ca::{rotate, LocalCa};
use crate::config::Config;
use crate::crypto;
use crate::leaves::{self, Inventory, Source};
use crate::trust::ClockTrust;

/// `ca rotate`: a new intermediate under the same root, live at once; the replaced one is kept
/// for verification until its leaves have expired. Kept generations that are due are retired
/// first. Nothing changes without its audit line (`ca.retire`, `ca.rotate`).
pub(super) fn ca_rotate(cfg: &Config, args: &[String], now: i64) -> Res {
    if !args.is_empty() {
        return Err(usage("usage: gatecert ca rotate"));
    }
    let state = &cfg.main.state_dir;
    let dir = LocalCa::dir_in(state);
    let ca = LocalCa::open(&dir, &cfg.ca)?;
    let trusted = ClockTrust::load(state, Some(ca.intermediate().not_before)).check(now)?;
    audit_ready(cfg)?;
    // The inventory lock, then the audit lock (as `ca sign` takes them): no leaf is recorded and
    // no other rotation runs while the generation changes. The CA is read again under them.
    let inv = Inventory::open_locked(&leaves::path_in(state), None)?;
    let mut log = Audit::open_locked(&audit::path_in(state), audit::DEFAULT_MAX_BYTES)?;
    let ca = LocalCa::open(&dir, &cfg.ca)?;
    for serial in rotate::retire_due(&ca, trusted, &mut log)? {
        println!("retired the replaced intermediate {serial} (its leaves have expired)");
    }
    let local = |s: Source| s != Source::Upstream;
    let last_leaf = inv
        .list()
        .flat_map(leaves::Leaf::into_certs)
        .filter(|h| local(h.source))
        .map(|h| h.not_after)
        .max()
        .unwrap_or(0);
    let live = inv
        .list()
        .filter(|l| local(l.source) && l.not_after > now && l.state == leaves::DeviceState::Active)
        .count();
    let staged = ca.stage_rotation(trusted, last_leaf)?;
    let fields = json!({
        "old_serial": staged.old.serial_hex(),
        "new_serial": staged.new.serial_hex(),
        "new_sha256": fingerprint(&staged.new.der),
        "retire_after": staged.retire_after,
        "leaves_to_reenroll": live,
    });
    if let Err(e) = log.append(now, "ca.rotate", fields) {
        staged.abandon();
        return Err(e.into());
    }
    let (old, new, retire_after) = (
        staged.old.serial_hex(),
        staged.new.serial_hex(),
        staged.retire_after,
    );
    staged.commit()?;
    drop(log);
    drop(inv);
    println!("new intermediate {new} is live; {old} is kept for verification");
    println!(
        "{old} is retired after {} (when the last leaf it signed has expired)",
        crypto::rfc3339(retire_after)
    );
    println!(
        "{} live leaves of {old}: ACME clients are told to renew now (ARI); EST clients get a \
         certificate of {new} at their next re-enroll",
        live
    );
    println!(
        "a running `gatecert run` takes the new intermediate at its next tick and re-issues \
         its own local certificates"
    );
    Ok(())
}
