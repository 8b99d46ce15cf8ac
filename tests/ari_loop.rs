//! Issue 18: ARI (RFC 9773) in a closed loop. `gatecert run` keeps a certificate from
//! tests/peers/ari_double.py, an ACME test double whose renewalInfo window the test moves while
//! the service is up: the service asks again per `Retry-After` (the test-only
//! `GATECERT_ARI_POLL_MIN_SECS` lets it be seconds), treats an inverted or empty window as no
//! answer (the lifetime rule, RFC 9773 §4.2), and renews with `replaces` at the first poll that
//! sees the window moved to now.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, gatecert_in, now, spawn_run, AriDouble, TempDir};

const DAY: i64 = 86_400;
/// The double's `Retry-After`, seconds.
const RETRY: i64 = 2;

/// `renewal_reason` of certificate `gw` in `gatecert status --json`.
fn renewal_reason(dir: &Path) -> String {
    status_row(dir)["renewal_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The row of certificate `gw` in `gatecert status --json`.
fn status_row(dir: &Path) -> serde_json::Value {
    let out = gatecert_in(dir)
        .args(["status", "--json"])
        .output()
        .unwrap();
    common::keep_output("ari_loop", "status", &out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gw")
        .cloned()
        .unwrap()
}

/// The renewalInfo requests logged by the double from index `from` on.
fn polls_since(double: &AriDouble, from: usize) -> Vec<serde_json::Value> {
    double
        .requests()
        .into_iter()
        .skip(from)
        .filter(|r| r["op"] == "renewal-info")
        .collect()
}

#[test]
fn the_service_follows_a_moved_window_and_treats_inverted_and_empty_ones_as_no_answer() {
    let tmp = TempDir::new("ari-loop");
    let dir = tmp.path();
    let t0 = now();
    // First a window well inside the 90-day certificate, a month out: nothing due.
    let double = AriDouble::start(&dir.join("double"), (t0 + 30 * DAY, t0 + 31 * DAY, RETRY));
    common::write_acme_config(dir, &double.directory(), &double.root());
    // The first certificate from `gatecert renew` (cron's way), so that the service starts
    // with one and asks for its renewalInfo at once.
    let out = gatecert_in(dir)
        .arg("renew")
        .env("GATECERT_ARI_POLL_MIN_SECS", "1")
        .output()
        .unwrap();
    common::keep_output("ari_loop", "renew", &out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = double.requests();
    let orders: Vec<_> = first.iter().filter(|r| r["op"] == "order").collect();
    assert_eq!(orders.len(), 1);
    assert!(orders[0]["replaces"].is_null(), "{first:?}");

    let (mut run, log) = spawn_run(dir, &[("GATECERT_ARI_POLL_MIN_SECS", "1")]);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let limit = Duration::from_secs(60);

    // Re-polled per Retry-After, never sooner (the double logs whole seconds).
    eventually("three renewalInfo polls", limit, &mut || {
        polls_since(&double, 0).len() >= 3
    });
    let polls = polls_since(&double, 0);
    for pair in polls.windows(2) {
        let gap = pair[1]["t"].as_i64().unwrap() - pair[0]["t"].as_i64().unwrap();
        assert!(gap >= RETRY - 1, "polled after {gap} s: {polls:?}");
    }
    let cert_id = polls[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(renewal_reason(dir), "ARI window");

    // The CA moves the window ten days earlier: the service's next poll picks a time in it.
    let moved = (t0 + 20 * DAY, t0 + 20 * DAY + 3600);
    double.set_window_for(Some(&cert_id), moved.0, moved.1, RETRY);
    eventually(
        "the renewal time inside the moved window",
        limit,
        &mut || {
            let at = status_row(dir)["next_renewal"].as_i64().unwrap_or(0);
            moved.0 <= at && at <= moved.1
        },
    );
    assert!(
        logged().contains("the CA moved the ARI window"),
        "{}",
        logged()
    );
    assert_eq!(double.count("order"), 1);

    // An inverted window around now, then an empty one in the past: either would be due now if
    // taken as a window. Both count as no answer: the lifetime rule, no order.
    let bad = [
        ("inverted", t0 + 600, t0 - 600),
        ("empty", t0 - 60, t0 - 60),
    ];
    for (what, start, end) in bad {
        let mark = double.requests().len();
        double.set_window_for(Some(&cert_id), start, end, RETRY);
        eventually(
            &format!("two polls with the {what} window"),
            limit,
            &mut || polls_since(&double, mark).len() >= 2,
        );
        assert_eq!(double.count("order"), 1, "{what}: {:?}", double.requests());
        assert_eq!(renewal_reason(dir), "lifetime rule", "{what}");
    }
    assert!(
        logged().contains("ends before it starts or is empty"),
        "{}",
        logged()
    );

    // The CA moves the window to now (a mass revocation): a window that has already begun
    // (here: already over, so that the client's random pick inside it is in the past whatever
    // it is, RFC 9773 §4.2) means renew now. Renewed at the next poll, with `replaces` naming
    // the certificate it replaces.
    let mark = double.requests().len();
    let t = now();
    double.set_window_for(Some(&cert_id), t - 600, t - 1, RETRY);
    eventually("the renewal", limit, &mut || double.count("order") == 2);
    let after: Vec<_> = double.requests().into_iter().skip(mark).collect();
    let at = after.iter().position(|r| r["op"] == "order").unwrap();
    // At most one poll after the change (a poll in flight may already have read it).
    let polled = after[..at]
        .iter()
        .filter(|r| r["op"] == "renewal-info")
        .count();
    assert!(polled <= 1, "{after:?}");
    assert_eq!(after[at]["replaces"], cert_id.as_str(), "{after:?}");
    // The new certificate is polled under its own certID (the worker looks at a renewed
    // certificate again after a minute) and is not renewed again.
    let limit = Duration::from_secs(90);
    eventually("a poll for the new certificate", limit, &mut || {
        polls_since(&double, mark)
            .iter()
            .any(|r| r["id"] != cert_id.as_str())
    });
    assert_eq!(double.count("order"), 2);
    assert!(run.0.try_wait().unwrap().is_none(), "{}", logged());
}
