use super::*;
use crate::leaves::{self, Inventory, Leaf, Source};
use crate::report::fixture::{Fixture, DAY};
use crate::report::record_attempt;
use crate::token::{self, Tokens};

fn row<'a>(s: &'a Status, name: &str) -> &'a CertStatus {
    s.certificates.iter().find(|c| c.name == name).unwrap()
}

fn table_line<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

#[test]
fn healthy() {
    let f = Fixture::new("healthy");
    let now = f.t0 + DAY;
    let s = Status::gather(&f.cfg, now);
    assert!(s.healthy, "{:?}", s.attention);
    assert_eq!(s.exit_code(), 0);
    assert!(s.clock.trusted);
    let gw = row(&s, "gateway");
    assert_eq!(gw.state, CertState::Ok);
    assert_eq!(gw.kind, Kind::Gateway);
    assert_eq!(gw.subject.as_deref(), Some("CN=gateway.local"));
    assert!(gw
        .issuer
        .as_deref()
        .unwrap()
        .contains("gatecert Issuing CA"));
    assert_eq!(gw.renewal_reason.as_deref(), Some("lifetime rule"));
    // 90 days + 5 min backdate: renewal at 2/3, jitter moves it up to a day earlier.
    let renew = gw.next_renewal.unwrap();
    assert!(renew <= f.not_after - 30 * DAY && renew > f.not_after - 31 * DAY);
    assert_eq!(gw.alert_at, Some(f.not_after - 10 * DAY));
    assert_eq!(row(&s, "ca-intermediate").state, CertState::Ok);
    assert_eq!(row(&s, "ca-root").kind, Kind::CaRoot);
    assert_eq!(s.upstream.state, "n/a");

    let t = s.render_table();
    assert!(t.contains("clock:    trusted"), "{t}");
    assert!(t.contains("upstream: n/a (no leaf broker"), "{t}");
    let line = table_line(&t, "gateway");
    assert!(line.contains(" ok "), "{line}");
    assert!(line.contains(&crypto::rfc3339(f.not_after)), "{line}");
    assert!(line.contains("89d 0h"), "{line}");
    assert!(line.contains("(lifetime rule)"), "{line}");
    assert!(t.contains("subject: CN=gateway.local; issuer: "), "{t}");
    assert!(t.ends_with("status: healthy\n"), "{t}");
}

#[test]
fn renewal_due_is_not_an_alert() {
    let f = Fixture::new("due");
    let now = f.not_after - 25 * DAY;
    let s = Status::gather(&f.cfg, now);
    assert_eq!(row(&s, "gateway").state, CertState::RenewalDue);
    assert!(s.healthy);
    assert_eq!(s.exit_code(), 0);
    let t = s.render_table();
    let line = table_line(&t, "gateway");
    assert!(line.contains("renewal-due"), "{line}");
    assert!(line.contains("now (lifetime rule)"), "{line}");
}

#[test]
fn in_alert_window() {
    let f = Fixture::new("alert");
    let now = f.not_after - 5 * DAY;
    let s = Status::gather(&f.cfg, now);
    assert_eq!(row(&s, "gateway").state, CertState::Alert);
    assert_eq!(s.exit_code(), 1);
    assert_eq!(s.attention, vec!["gateway (gateway) expires in 5d 0h"]);
    let t = s.render_table();
    assert!(table_line(&t, "gateway").contains(" alert "), "{t}");
    assert!(t.contains("status: NEEDS ATTENTION\n  - gateway (gateway) expires in 5d 0h"));
}

#[test]
fn failing_from_health_json() {
    let f = Fixture::new("failed");
    let now = f.t0 + 61 * DAY;
    let e = "urn:ietf:params:acme:error:rateLimited";
    for i in 0..3 {
        record_attempt(f.state_dir(), "gateway", Err(e), now - 3_600 + i).unwrap();
    }
    let s = Status::gather(&f.cfg, now);
    let gw = row(&s, "gateway");
    assert_eq!(gw.state, CertState::Failing);
    assert_eq!(gw.failures, 3);
    assert_eq!(gw.last_problem.as_deref(), Some("rateLimited"));
    assert_eq!(s.exit_code(), 1);
    assert!(
        s.attention[0].contains("renewal failed 3 times in a row"),
        "{:?}",
        s.attention
    );
    let t = s.render_table();
    assert!(table_line(&t, "gateway").contains(" failing "), "{t}");
    assert!(
        table_line(&t, "gateway").ends_with(&format!("3x: {e}")),
        "{t}"
    );
    // Two failures stay under alert_failures = 3: renewal-due, not failing.
    record_attempt(f.state_dir(), "gateway", Ok(()), now).unwrap();
    record_attempt(f.state_dir(), "gateway", Err(e), now).unwrap();
    let s = Status::gather(&f.cfg, now);
    assert_eq!(row(&s, "gateway").state, CertState::RenewalDue);
    assert_eq!(s.exit_code(), 0);
}

#[test]
fn expired_and_json_schema() {
    let f = Fixture::new("expired");
    let now = f.not_after + 2 * DAY;
    let s = Status::gather(&f.cfg, now);
    assert_eq!(s.exit_code(), 1);
    let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(v["schema"], "gatecert.status/1");
    assert_eq!(v["now"], now);
    assert_eq!(v["healthy"], false);
    assert_eq!(v["clock"]["trusted"], true);
    assert_eq!(v["upstream"]["state"], "n/a");
    assert_eq!(v["ca"]["present"], true);
    let gw = &v["certificates"][0];
    assert_eq!(gw["name"], "gateway");
    assert_eq!(gw["kind"], "gateway");
    assert_eq!(gw["state"], "expired");
    assert_eq!(gw["not_after"], f.not_after);
    assert_eq!(gw["seconds_left"], -2 * DAY);
    assert_eq!(gw["renewal_reason"], "expired");
    assert_eq!(gw["failures"], 0);
    assert!(gw["last_error"].is_null());
    assert_eq!(v["certificates"][1]["kind"], "ca-intermediate");
    assert_eq!(v["certificates"][2]["kind"], "ca-root");
    assert_eq!(v["attention"][0], "gateway (gateway) expired 2d 0h ago");
    for key in ["total", "local", "interim", "upstream", "expired"] {
        assert_eq!(v["leaves"][key], 0, "{key}");
    }
    for key in ["active", "expired", "exhausted", "revoked"] {
        assert_eq!(v["tokens"][key], 0, "{key}");
    }
}

#[test]
fn clock_before_ca_not_before_is_untrusted() {
    let f = Fixture::new("clock");
    let s = Status::gather(&f.cfg, f.t0 - DAY);
    assert!(!s.clock.trusted);
    assert_eq!(s.exit_code(), 1);
    let reason = s.clock.reason.as_deref().unwrap();
    assert!(reason.contains("notBefore"), "{reason}");
    assert!(s
        .render_table()
        .contains("clock:    untrusted (the system clock"));
    assert!(!f.state_dir().join("clock").exists(), "status never writes");
}

#[test]
fn missing_ca_upstream_leaves_tokens() {
    let f = Fixture::new("counts");
    let now = f.t0 + DAY;
    let mut cfg = f.cfg.clone();
    cfg.certificates[0].directory = Some("https://127.0.0.1:14000/dir".into());
    std::fs::write(
        f.state_dir().join("upstream.json"),
        r#"{"state":"down","since":1,"last_error":"connect: refused"}"#,
    )
    .unwrap();
    let mut inv = Inventory::open(&leaves::path_in(f.state_dir())).unwrap();
    for (d, src, na) in [
        ("a", Source::Local, now + DAY),
        ("b", Source::Interim, now - 1),
        ("c", Source::Upstream, now + DAY),
        ("d", Source::Interim, now + DAY),
    ] {
        inv.record(Leaf {
            device: d.into(),
            names: vec![],
            serial: "01".into(),
            not_after: na,
            source: src,
            issued_at: now - DAY,
            ..Leaf::default()
        })
        .unwrap();
    }
    let mut tokens = Tokens::open(&token::path_in(f.state_dir())).unwrap();
    tokens
        .add("t1", &["t1.local".into()], 3_600, 1, now)
        .unwrap();
    tokens
        .add("t2", &["t2.local".into()], 60, 1, now - 120)
        .unwrap();
    let t3 = tokens
        .add("t3", &["t3.local".into()], 3_600, 1, now)
        .unwrap();
    let mut claims = token::Claims::new();
    let (id, _) = tokens.claim(&mut claims, "t3", &t3, "k", now).unwrap();
    tokens.commit(&claims.take(id).unwrap(), now).unwrap();
    tokens
        .add("t4", &["t4.local".into()], 3_600, 1, now)
        .unwrap();
    tokens.revoke("t4").unwrap();
    std::fs::remove_dir_all(f.state_dir().join("ca")).unwrap();

    let s = Status::gather(&cfg, now);
    assert!(!s.ca.present);
    assert_eq!(s.upstream.state, "down");
    assert_eq!(
        (s.leaves.total, s.leaves.local, s.leaves.interim),
        (4, 1, 2)
    );
    assert_eq!((s.leaves.upstream, s.leaves.expired), (1, 1));
    let t = &s.tokens;
    assert_eq!((t.active, t.expired, t.exhausted, t.revoked), (1, 1, 1, 1));
    assert_eq!(s.exit_code(), 1);
    assert!(s
        .attention
        .iter()
        .any(|a| a.starts_with("local CA missing")));
    assert!(s
        .attention
        .iter()
        .any(|a| a == "upstream down: connect: refused"));
    let table = s.render_table();
    assert!(
        table.contains("leaves:   4 (local 1, interim 2, upstream 1); expired 1"),
        "{table}"
    );
    assert!(table.contains("tokens:   active 1, expired 1, exhausted 1, revoked 1"));
    assert!(
        table.contains("upstream: down since 1970-01-01T00:00:01Z (last error: connect: refused)")
    );
    assert!(table.contains("local CA: MISSING"), "{table}");
}

#[test]
fn missing_gateway_set_and_durations() {
    let f = Fixture::new("missing");
    std::fs::remove_dir_all(f.state_dir().join("certs")).unwrap();
    let s = Status::gather(&f.cfg, f.t0);
    assert_eq!(row(&s, "gateway").state, CertState::Missing);
    assert_eq!(s.exit_code(), 1);
    assert_eq!(duration(90 * DAY + 3_600), "90d 1h");
    assert_eq!(duration(-(2 * 3_600 + 60)), "-2h 1m");
    assert_eq!(duration(42), "42s");
    assert_eq!(alert_window(30, 0, 6 * DAY), 2 * DAY);
    assert_eq!(alert_window(30, 0, 90 * DAY), 30 * DAY);
}

/// An imported certificate's `days` shows as its next renewal; the source of each gateway
/// certificate and the config notes are in both outputs.
#[test]
fn days_source_and_config_notes() {
    let mut f = Fixture::new("days");
    let now = f.t0 + DAY;
    f.cfg.certificates[0].renew_days = Some(20);
    f.cfg.certificates[0].origin = crate::config::Origin {
        file: std::path::PathBuf::from("/etc/config/acme"),
        section: "router".into(),
    };
    f.cfg.notes.push(crate::config::Note {
        file: std::path::PathBuf::from("/etc/config/acme"),
        line: 16,
        section: "legacy".into(),
        msg: "skipped: option 'key_type': RSA keys are not supported".into(),
    });
    let s = Status::gather(&f.cfg, now);
    let gw = row(&s, "gateway");
    assert_eq!(gw.renewal_reason.as_deref(), Some("days (20)"));
    assert!(gw.next_renewal.unwrap() <= f.t0 + 20 * DAY);
    assert_eq!(gw.config_file.as_deref(), Some("/etc/config/acme"));
    assert_eq!(gw.config_section.as_deref(), Some("router"));
    assert_eq!(row(&s, "ca-root").config_file, None);
    let note = "/etc/config/acme:16: section 'legacy': skipped: option 'key_type': RSA keys are not supported";
    assert_eq!(s.config_notes, vec![note.to_string()]);
    let t = s.render_table();
    assert!(
        t.contains("    config: /etc/config/acme, section 'router'"),
        "{t}"
    );
    assert!(t.contains(&format!("config notes:\n  - {note}")), "{t}");
    let json = s.to_json();
    assert!(json.contains("\"config_section\": \"router\""), "{json}");
    assert!(json.contains("\"config_notes\": ["), "{json}");
}

#[test]
fn acme_only_without_a_local_ca_is_healthy() {
    let f = Fixture::new("acmeonly");
    let mut cfg = f.cfg.clone();
    cfg.certificates[0].directory = Some("https://127.0.0.1:1/dir".into());
    cfg.est.enabled = false;
    std::fs::remove_dir_all(f.state_dir().join("ca")).unwrap();
    let now = f.t0 + DAY;
    let s = Status::gather(&cfg, now);
    assert!(s.healthy, "{:?}", s.attention);
    assert!(!s.ca.needed && !s.ca.present && s.ca.error.is_none());
    // No broker writes upstream.json: n/a, not "unknown" forever.
    assert_eq!(s.upstream.state, "n/a");
    let t = s.render_table();
    assert!(t.contains("local CA: not used"), "{t}");
    assert!(!t.contains("unknown"), "{t}");
    // The same state with EST on needs the CA.
    cfg.est.enabled = true;
    let s = Status::gather(&cfg, now);
    assert!(s.ca.needed && !s.healthy);
}

#[test]
fn a_revoked_certificate_shows_with_its_serial() {
    let f = Fixture::new("revoked");
    let now = f.t0 + DAY;
    let serial = row(&Status::gather(&f.cfg, now), "gateway")
        .serial
        .clone()
        .unwrap();
    // As `gatecert revoke` records it (an older version kept DER's leading 00).
    std::fs::write(
        f.state_dir().join("certs/gateway/state.json"),
        format!(r#"{{"revoked":"00{}"}}"#, serial.to_lowercase()),
    )
    .unwrap();
    let s = Status::gather(&f.cfg, now);
    assert_eq!(row(&s, "gateway").state, CertState::Revoked);
    assert_eq!(s.exit_code(), 1);
    assert!(
        s.attention
            .iter()
            .any(|a| a.contains(&serial) && a.contains("revoked")),
        "{:?}",
        s.attention
    );
    let t = s.render_table();
    assert!(table_line(&t, "gateway").contains(" revoked "), "{t}");
    assert!(table_line(&t, "gateway").contains("now (revoked)"), "{t}");
    assert!(t.contains(&format!("serial: {serial}")), "{t}");
}

#[test]
fn the_name_column_fits_long_names() {
    let f = Fixture::new("longname");
    let long = "gateway-with-a-very-long-section-name";
    std::fs::rename(
        f.state_dir().join("certs/gateway"),
        f.state_dir().join("certs").join(long),
    )
    .unwrap();
    let mut cfg = f.cfg.clone();
    cfg.certificates[0].name = long.into();
    let t = Status::gather(&cfg, f.t0 + DAY).render_table();
    let line = table_line(&t, long);
    let head = t.lines().find(|l| l.starts_with("NAME")).unwrap();
    // Every column starts where its heading does.
    assert_eq!(line.find(" gateway "), head.find(" KIND"), "{t}");
    assert_eq!(line.find(" ok "), head.find(" STATE"), "{t}");
}

/// `gatecert status` takes the store counts from the service listening on the control socket
/// (`counts NOW`, answered from what it keeps in memory), and reads the stores itself when no
/// service answers or the answer is not counts.
#[test]
fn store_counts_come_from_the_service_when_it_answers() {
    let f = Fixture::new("counts-ask");
    let dir = f.cfg.main.state_dir.clone();
    let now = f.t0 + DAY;
    let local = StoreCounts::read(&dir, now);
    // No service: read here.
    let asked = StoreCounts::ask(&dir, now);
    assert_eq!(
        serde_json::to_value(&asked).unwrap(),
        serde_json::to_value(&local).unwrap()
    );
    let listener = crate::control::Listener::bind(&dir).unwrap();
    let serve = |answer: &str| {
        let l = &listener;
        std::thread::scope(|s| {
            let asker = s.spawn(|| StoreCounts::ask(&dir, now));
            let (client, ask) = loop {
                if let Some(a) = l.accept() {
                    break a;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            };
            assert_eq!(ask, crate::control::Ask::Counts(now));
            client.answer(0, answer);
            asker.join().unwrap()
        })
    };
    let mut from_service = local.clone();
    from_service.tokens.active = 123_456;
    from_service.leaves.counts.total = 654_321;
    let got = serve(&from_service.to_json().unwrap());
    assert_eq!((got.tokens.active, got.leaves.total), (123_456, 654_321));
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&from_service).unwrap()
    );
    // An answer that is not counts: read here.
    let got = serve("not json");
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&local).unwrap()
    );
}
