//! `gatecert leaves [revoke DEVICE|SERIAL [--reason R] | disable DEVICE [--reason R] |
//! enable DEVICE]`: the inventory, and cutting a sensor off (the engine is
//! [`crate::revocation`]).

use super::{finish, table, usage, Res};
use crate::acme::types::RevocationReason;
use crate::clock;
use crate::config::Config;
use crate::control;
use crate::crypto;
use crate::leaves::{self, Inventory, Source};
use crate::revocation::{self, Change, Op, Printed};

const USAGE: &str = "usage: gatecert leaves | leaves revoke DEVICE|SERIAL [--reason R] | \
                     leaves disable DEVICE [--reason R] | leaves enable DEVICE";

/// `gatecert leaves ...`. Exit 0 done, 2 error.
pub fn cmd_leaves(cfg: &Config, args: &[String]) -> i32 {
    let now = clock::from_env().now();
    let rest = args.get(1..).unwrap_or_default();
    let change = match args.first().map(String::as_str) {
        None => return finish(list(cfg, now, false)),
        Some("--json") if rest.is_empty() => return finish(list(cfg, now, true)),
        Some("revoke") => cut(rest, Op::Revoke),
        Some("disable") => cut(rest, Op::Disable),
        Some("enable") => match rest {
            [device] => Ok(Change {
                op: Op::Enable,
                who: device.clone(),
                reason: 0,
            }),
            _ => Err(usage("usage: gatecert leaves enable DEVICE")),
        },
        Some(other) => Err(usage(format!(
            "leaves: unknown subcommand {other:?}\n{USAGE}"
        ))),
    };
    match change {
        Ok(change) => carry_out(cfg, &change, now),
        Err(e) => finish(Err(e)),
    }
}

fn list(cfg: &Config, now: i64, json: bool) -> Res {
    let inv = Inventory::open(&leaves::path_in(&cfg.main.state_dir))?;
    let earlier = |l: &leaves::Leaf| l.earlier.iter().filter(|h| h.not_after > now).count();
    if json {
        let list: Vec<serde_json::Value> = inv
            .list()
            .map(|l| {
                serde_json::json!({"device": l.device, "names": l.names,
                    "serial": crypto::serial_display(&l.serial), "not_after": l.not_after,
                    "source": l.source.as_str(), "state": l.state.as_str(),
                    "earlier": earlier(&l), "issued_at": l.issued_at})
            })
            .collect();
        println!("{}", serde_json::json!({ "leaves": list }));
        return Ok(());
    }
    let rows: Vec<[String; 7]> = inv
        .list()
        .map(|l| {
            [
                l.device.clone(),
                crypto::serial_display(&l.serial),
                crypto::rfc3339(l.not_after),
                l.source.as_str().to_owned(),
                l.state.as_str().to_owned(),
                earlier(&l).to_string(),
                l.names.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "DEVICE",
                "SERIAL",
                "NOT AFTER",
                "SOURCE",
                "STATE",
                "EARLIER",
                "NAMES"
            ],
            &rows
        )
    );
    let interim = inv.by_source(Source::Interim).count();
    if interim > 0 {
        println!(
            "{interim} on interim certificates (local CA, upstream was down); each gets an \
             upstream certificate at its next re-enrollment"
        );
    }
    let revoked: Vec<_> = inv.revoked().filter(|r| r.not_after > now).collect();
    if !revoked.is_empty() {
        println!("\nrevoked certificates (listed until they expire):");
        for r in revoked {
            println!(
                "  {:<34} {:<20} {:<20} {} ({})",
                crypto::serial_display(&r.serial),
                r.device,
                leaves::reason_name(r.reason),
                crypto::rfc3339(r.revoked_at),
                r.source.as_str()
            );
        }
    }
    for u in inv.upstream_revocations() {
        println!(
            "upstream revocation pending: {} of {} ({} attempt(s){})",
            crypto::serial_display(&u.serial),
            u.device,
            u.attempts,
            u.last_error
                .as_deref()
                .map(|e| format!(", last: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn parse_reason(v: &str) -> Result<u8, Box<dyn std::error::Error>> {
    RevocationReason::parse(v).map(|r| r.0).ok_or_else(|| {
        usage(format!(
            "unknown revocation reason {v:?} (RFC 5280 5.3.1: e.g. keyCompromise, \
             cessationOfOperation, superseded, or its number)"
        ))
    })
}

/// `revoke|disable WHO [--reason R]`.
fn cut(args: &[String], op: Op) -> Result<Change, Box<dyn std::error::Error>> {
    let mut who = None;
    let mut reason = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reason" => {
                let v = it.next().ok_or_else(|| usage("--reason needs a value"))?;
                reason = Some(parse_reason(v)?);
            }
            s if s.starts_with("--reason=") => {
                reason = Some(parse_reason(&s["--reason=".len()..])?);
            }
            s if s.starts_with('-') => return Err(usage(format!("unknown option {s:?}\n{USAGE}"))),
            s if who.is_none() => who = Some(s.to_owned()),
            s => return Err(usage(format!("unexpected argument {s:?}\n{USAGE}"))),
        }
    }
    let who = who.ok_or_else(|| usage(USAGE))?;
    let reason = reason.unwrap_or(match op {
        Op::Disable => leaves::CESSATION,
        _ => 0,
    });
    Ok(Change { op, who, reason })
}

/// Hands the change to the running service, which keeps the inventory open (one row's work
/// however many devices there are), or carries it out here when no service answers; prints
/// what was done either way. The exit code.
fn carry_out(cfg: &Config, change: &Change, now: i64) -> i32 {
    let state_dir = &cfg.main.state_dir;
    let printed = match control::leaves(state_dir, change, now) {
        Some(printed) => printed,
        // The command waits for the locks as long as it takes: never busy.
        None => match change.carry_out(&revocation::Site::cli(state_dir, &cfg.ca), now) {
            Ok(printed) => printed,
            Err(revocation::Busy(what)) => Printed {
                code: 2,
                out: String::new(),
                err: format!("gatecert: error: {what}\n"),
            },
        },
    };
    printed.print()
}
