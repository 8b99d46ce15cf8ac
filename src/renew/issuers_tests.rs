//! The failover loop ([`try_in_order`]) with a fixed clock and scripted attempts: no network.

use std::cell::RefCell;
use std::path::PathBuf;

use super::*;
use crate::acme::types::Problem;
use crate::clock::FixedClock;

const T0: i64 = 1_800_000_000;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "gatecert-issuers-{tag}-{}-{}",
        std::process::id(),
        crate::crypto::hex(&crate::crypto::random_bytes::<4>().unwrap())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn issuer(name: &str) -> Issuer {
    Issuer {
        name: name.into(),
        line: 1,
        directory: format!("https://{name}.test/dir"),
        ca_bundle: None,
        email: None,
        eab: None,
        profile: None,
    }
}

fn problem(kind: &str, retry_after: Option<i64>) -> Error {
    Error::Acme(acme::Error::Problem {
        url: "https://ca.test/new-order".into(),
        problem: Box::new(Problem {
            kind: Some(format!("urn:ietf:params:acme:error:{kind}")),
            ..Problem::default()
        }),
        retry_after,
    })
}

fn events(state_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(crate::audit::path_in(state_dir))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs [`try_in_order`] where each issuer answers from `script` (by name); returns the
/// result and the issuers asked, in order.
fn run(
    state_dir: &Path,
    clock: &FixedClock,
    record: &mut Record,
    deadline: i64,
    script: &dyn Fn(&str) -> Result<&'static str, Error>,
) -> (Result<&'static str, Error>, Vec<String>) {
    let asked = RefCell::new(Vec::new());
    let issuers = [issuer("primary"), issuer("backup")];
    let r = try_in_order(state_dir, clock, "gw", &issuers, record, deadline, |i| {
        asked.borrow_mut().push(i.name.clone());
        script(&i.name)
    });
    (r, asked.into_inner())
}

#[test]
fn a_lasting_failure_moves_on_audited_and_the_primary_is_held_then_preferred() {
    let dir = tempdir("move");
    let clock = FixedClock::new(T0);
    let mut record = Record::default();
    // Account refusal at the primary: the backup at once, after the audit line.
    let (r, asked) = run(&dir, &clock, &mut record, T0 + 86_400, &|n| match n {
        "primary" => Err(problem("unauthorized", None)),
        _ => Ok("from backup"),
    });
    assert_eq!(r.unwrap(), "from backup");
    assert_eq!(asked, ["primary", "backup"]);
    assert_eq!(record.active.as_deref(), Some("backup"));
    assert_eq!(record.reason, Some(Reason::Account));
    assert_eq!(record.from.as_deref(), Some("primary"));
    assert!(record.held("primary", T0 + 3599));
    let ev = events(&dir);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["event"], "issuer.failover");
    assert_eq!(ev[0]["to"], "backup");
    assert_eq!(ev[0]["reason"], "account");
    // While held, the primary is not asked; the reason stays.
    let (r, asked) = run(&dir, &clock, &mut record, T0 + 86_400, &|_| Ok("ok"));
    assert!(r.is_ok());
    assert_eq!(asked, ["backup"]);
    assert_eq!(record.reason, Some(Reason::Account));
    // After the hold: the primary again, and the reason is gone.
    clock.set(T0 + 3600);
    let (r, asked) = run(&dir, &clock, &mut record, T0 + 86_400, &|_| Ok("ok"));
    assert!(r.is_ok());
    assert_eq!(asked, ["primary"]);
    assert_eq!(record.active.as_deref(), Some("primary"));
    assert_eq!(record.reason, None);
    assert!(!record.held("primary", T0 + 3600));
    assert_eq!(events(&dir).len(), 1, "coming back is no failover");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_client_side_error_or_a_short_rate_limit_stays() {
    let dir = tempdir("stay");
    let clock = FixedClock::new(T0);
    let mut record = Record::default();
    for e in ["rejectedIdentifier", "malformed", "badCSR"] {
        let (r, asked) = run(&dir, &clock, &mut record, T0, &|_| Err(problem(e, None)));
        assert!(r.is_err());
        assert_eq!(asked, ["primary"], "{e}");
    }
    let (r, asked) = run(&dir, &clock, &mut record, T0 + 86_400, &|_| {
        Err(problem("rateLimited", Some(3600)))
    });
    assert!(r.is_err());
    assert_eq!(asked, ["primary"]);
    assert!(events(&dir).is_empty());
    assert!(record.streaks.iter().all(|s| s.hold_until.is_none()));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn no_order_from_the_backup_without_its_audit_line() {
    let dir = tempdir("audit");
    // An audit log that cannot be appended to (a directory where the file should be).
    std::fs::create_dir_all(crate::audit::path_in(&dir)).unwrap();
    let clock = FixedClock::new(T0);
    let mut record = Record::default();
    let (r, asked) = run(&dir, &clock, &mut record, T0, &|n| match n {
        "primary" => Err(problem("caa", None)),
        _ => Ok("from backup"),
    });
    assert!(matches!(r, Err(Error::Audit(_))), "{r:?}");
    assert_eq!(asked, ["primary"], "the backup was not asked");
    assert_eq!(record.active, None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_issuer_failing_returns_the_last_error() {
    let dir = tempdir("all");
    let clock = FixedClock::new(T0);
    let mut record = Record::default();
    // No certificate yet (deadline now): an outage moves on at once, then the backup fails too.
    let (r, asked) = run(&dir, &clock, &mut record, T0, &|_| {
        Err(problem("serverInternal", None))
    });
    assert_eq!(asked, ["primary", "backup"]);
    assert!(r.unwrap_err().to_string().contains("serverInternal"));
    assert_eq!(record.active, None);
    assert!(record.held("primary", T0));
    assert!(!record.held("backup", T0), "the last one is not held");
    std::fs::remove_dir_all(dir).unwrap();
}
