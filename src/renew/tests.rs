//! Renewal decisions, ARI persistence and install/rollback, without a network.

use std::path::PathBuf;

use super::cli::flags;
use super::*;
use crate::acme::transport::{response, Method, TestTransport};
use crate::acme::types::RevocationReason;
use crate::clock::FixedClock;
use crate::crypto::KeyType;

const DAY: i64 = 86_400;
const DIR: &str = "https://ca.test/dir";

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "gatecert-renew-{tag}-{}-{}",
        std::process::id(),
        crypto::hex(&crypto::random_bytes::<4>().unwrap())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn renewal_due_for_90_day_6_day_and_24_hour_certs() {
    let nb = 1_800_000_000;
    // 90 days: due with 30 days left.
    let na = nb + 90 * DAY;
    assert!(!renewal_due(nb, na, na - 30 * DAY - 1));
    assert!(renewal_due(nb, na, na - 30 * DAY));
    // 6 days (< 10): due with half left, 3 days.
    let na = nb + 6 * DAY;
    assert!(!renewal_due(nb, na, na - 3 * DAY - 1));
    assert!(renewal_due(nb, na, na - 3 * DAY));
    // 24 hours: due with 12 hours left.
    let na = nb + DAY;
    assert!(!renewal_due(nb, na, nb + DAY / 2 - 1));
    assert!(renewal_due(nb, na, nb + DAY / 2));
    // Expired is due.
    assert!(renewal_due(nb, na, na + 1));
}

fn issued(cert_key: &PrivateKey, dns: &str, not_before: i64, not_after: i64) -> (String, String) {
    let ca_key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_rc = ca_key.to_rcgen();
    let ca_cert = ca.self_signed(&ca_rc).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_rc);
    let mut leaf = rcgen::CertificateParams::new(vec![dns.to_owned()]).unwrap();
    leaf.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
    leaf.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    leaf.use_authority_key_identifier_extension = true;
    let leaf = leaf.signed_by(&cert_key.to_rcgen(), &issuer).unwrap();
    (leaf.pem(), ca_cert.pem())
}

fn cert_config(dns: &str) -> Certificate {
    let mut c = Certificate::standalone("gw", vec![dns.into()]);
    c.directory = Some(DIR.into());
    c
}

#[test]
fn install_then_failing_hook_restores_the_previous_set() {
    let state = tempdir("install");
    let mut cfg = cert_config("gw.example");
    let now = 1_800_000_000;
    let k1 = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf1, ca1) = issued(&k1, "gw.example", now, now + 90 * DAY);
    let first = install(&state, &cfg, &k1, &format!("{leaf1}{ca1}")).unwrap();
    assert_eq!(
        first,
        Outcome::Renewed {
            not_after: now + 90 * DAY
        }
    );

    // A key that is not the certificate's is refused before anything is installed.
    let stranger = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf_x, ca_x) = issued(&k1, "gw.example", now, now + DAY);
    assert!(matches!(
        install(&state, &cfg, &stranger, &format!("{leaf_x}{ca_x}")),
        Err(Error::KeyMismatch)
    ));

    let marker = state.join("hook.log");
    cfg.deploy_hook = Some(format!(
        "echo \"$GATECERT_CERT_NAME $GATECERT_LIVE_DIR\" >> {}; exit 4",
        marker.display()
    ));
    let k2 = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf2, ca2) = issued(&k2, "gw.example", now, now + 90 * DAY);
    let err = install(&state, &cfg, &k2, &format!("{leaf2}{ca2}")).unwrap_err();
    assert!(err.to_string().contains("failed (exit status: 4)"), "{err}");
    assert!(err
        .to_string()
        .ends_with("the previous certificate was restored"));
    let live = SetDir::new(cert_dir(&state, "gw")).live();
    assert_eq!(
        std::fs::read_to_string(live.join("cert.pem")).unwrap(),
        leaf1
    );
    assert_eq!(
        std::fs::read_to_string(live.join("key.pem")).unwrap(),
        k1.to_pem()
    );
    let log = std::fs::read_to_string(&marker).unwrap();
    let line = format!("gw {}\n", live.display());
    assert_eq!(
        log,
        format!("{line}{line}"),
        "the hook ran for the new and the restored set"
    );
    std::fs::remove_dir_all(state).unwrap();
}

#[test]
fn install_dir_gets_the_openwrt_layout() {
    let state = tempdir("export");
    // Not there yet: created on the first export.
    let out = state.join("etc/ssl/acme");
    let mut cfg = cert_config("gw.example");
    cfg.install_dir = Some(out.clone());
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, ca) = issued(&k, "gw.example", 1_800_000_000, 1_800_000_000 + DAY);
    install(&state, &cfg, &k, &format!("{leaf}{ca}")).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("gw.crt")).unwrap(), leaf);
    assert_eq!(
        std::fs::read_to_string(out.join("gw.chain.crt")).unwrap(),
        ca
    );
    assert_eq!(
        std::fs::read_to_string(out.join("gw.fullchain.crt")).unwrap(),
        format!("{leaf}{ca}")
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(out.join("gw.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::remove_dir_all(state).unwrap();
}

#[test]
fn ari_choice_is_persisted_and_rewritten_only_when_the_window_moves() {
    let state = tempdir("ari");
    let cfg = cert_config("gw.example");
    let now = 1_800_000_000;
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, _) = issued(&k, "gw.example", now - 10 * DAY, now + 80 * DAY);
    let info = CertInfo::from_pem(&leaf).unwrap();
    let id = cert_id(&info).unwrap();
    let window = |s: i64, e: i64| {
        format!(
            r#"{{"suggestedWindow":{{"start":"{}","end":"{}"}}}}"#,
            crypto::rfc3339(s),
            crypto::rfc3339(e)
        )
    };
    let t = TestTransport::new();
    let dir = r#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r",
        "keyChange":"k","renewalInfo":"https://ca.test/ari"}"#;
    t.push(Method::Get, DIR, response(200, &[], dir));
    let ari_url = format!("https://ca.test/ari/{id}");
    let (s1, e1) = (now + 50 * DAY, now + 52 * DAY);
    t.push(Method::Get, &ari_url, response(200, &[], &window(s1, e1)));
    t.push(Method::Get, &ari_url, response(200, &[], &window(s1, e1)));
    // The CA moves the window into the past (e.g. after an incident): due now.
    t.push(
        Method::Get,
        &ari_url,
        response(200, &[], &window(now - 2 * DAY, now - DAY)),
    );
    let clock = FixedClock::new(now);
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: false,
    };
    let client = Client::new(&t, &clock, &|_| {}, DIR).unwrap();
    let d1 = decide(&client, &env, &cfg, &info).unwrap();
    assert_eq!(d1.reason, schedule::Reason::AriWindow);
    assert!((s1..=e1).contains(&d1.at), "uniform pick inside the window");
    assert!(!d1.due(now));
    let path = cert_dir(&state, "gw").join("state.json");
    let stored = std::fs::read_to_string(&path).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let d2 = decide(&client, &env, &cfg, &info).unwrap();
    assert_eq!(d2.at, d1.at, "the same window keeps the same pick");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), stored);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        mtime,
        "not rewritten"
    );
    let d3 = decide(&client, &env, &cfg, &info).unwrap();
    assert!(d3.due(now));
    assert_ne!(std::fs::read_to_string(&path).unwrap(), stored);
    std::fs::remove_dir_all(state).unwrap();
}

#[test]
fn without_ari_the_lifetime_rule_decides() {
    let state = tempdir("noari");
    let cfg = cert_config("gw.example");
    let now = 1_800_000_000;
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, _) = issued(&k, "gw.example", now, now + 6 * DAY);
    let info = CertInfo::from_pem(&leaf).unwrap();
    let t = TestTransport::new();
    t.push(
        Method::Get,
        DIR,
        response(
            200,
            &[],
            r#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r","keyChange":"k"}"#,
        ),
    );
    let clock = FixedClock::new(now);
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: false,
    };
    let client = Client::new(&t, &clock, &|_| {}, DIR).unwrap();
    let d = decide(&client, &env, &cfg, &info).unwrap();
    assert_eq!(d.reason, schedule::Reason::Lifetime);
    // Half of 6 days left, moved earlier by at most the jitter (1/20 of the lifetime).
    assert!(
        d.at <= now + 3 * DAY && d.at > now + 3 * DAY - 6 * DAY / 20,
        "{}",
        d.at
    );
    assert!(!cert_dir(&state, "gw").join("state.json").exists());
    std::fs::remove_dir_all(state).unwrap();
}

#[test]
fn a_revoked_certificate_is_due_at_once_whatever_ari_says() {
    let state = tempdir("revoked");
    let cfg = cert_config("gw.example");
    let now = 1_800_000_000;
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, _) = issued(&k, "gw.example", now - DAY, now + 80 * DAY);
    let info = CertInfo::from_pem(&leaf).unwrap();
    let t = TestTransport::new();
    let dir = r#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r",
        "keyChange":"k","renewalInfo":"https://ca.test/ari"}"#;
    t.push(Method::Get, DIR, response(200, &[], dir));
    // The CA's window is weeks away (acme2certifier does not move it for revoked certs).
    let window = format!(
        r#"{{"suggestedWindow":{{"start":"{}","end":"{}"}}}}"#,
        crypto::rfc3339(now + 50 * DAY),
        crypto::rfc3339(now + 52 * DAY)
    );
    let ari_url = format!("https://ca.test/ari/{}", cert_id(&info).unwrap());
    t.push(Method::Get, &ari_url, response(200, &[], &window));
    let clock = FixedClock::new(now);
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: false,
    };
    let client = Client::new(&t, &clock, &|_| {}, DIR).unwrap();
    // Another serial was revoked: this one follows ARI.
    let other = State {
        revoked: Some("01".into()),
        ..State::default()
    };
    other.save(&state, "gw").unwrap();
    let d = decide(&client, &env, &cfg, &info).unwrap();
    assert_eq!(d.reason, schedule::Reason::AriWindow);
    assert!(!d.due(now));
    // This serial was revoked (as `gatecert revoke` records it): due now, ARI not asked.
    let mut st = State::load(&state, "gw").unwrap();
    st.revoked = Some(info.serial_hex());
    st.save(&state, "gw").unwrap();
    let d = decide(&client, &env, &cfg, &info).unwrap();
    assert_eq!(d.reason, schedule::Reason::Revoked);
    assert!(d.due(now));
    std::fs::remove_dir_all(state).unwrap();
}

#[test]
fn wildcards_need_dns01_and_ips_cannot_use_it() {
    let mut c = cert_config("*.gw.example");
    assert!(check_names(&c)
        .unwrap_err()
        .to_string()
        .contains("needs challenge dns-01"));
    c.challenge = ChallengeKind::Dns01;
    check_names(&c).unwrap();
    c.ips = vec!["192.0.2.1".parse().unwrap()];
    assert!(check_names(&c).is_err());
}

#[test]
fn names_match_ignores_order_and_case() {
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, _) = issued(&k, "GW.example", 0, DAY);
    let info = CertInfo::from_pem(&leaf).unwrap();
    assert!(names_match(&cert_config("gw.example"), &info));
    assert!(!names_match(&cert_config("other.example"), &info));
}

#[test]
fn flags_parse_reasons_and_reject_unknown_options() {
    let args: Vec<String> = ["--reason", "keyCompromise", "--cert=gw"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let f = flags(&args, &["--reason", "--cert"]).unwrap();
    assert_eq!(f.reason, Some(RevocationReason(1)));
    assert_eq!(f.cert.as_deref(), Some("gw"));
    assert!(flags(&["--bogus".into()], &["--cert"]).is_err());
    assert!(flags(&["--reason".into(), "nope".into()], &["--reason"]).is_err());
}

#[test]
fn a_run_with_nothing_due_repairs_a_torn_export() {
    // SIGKILL between writing <name>.key and <name>.crt leaves install_dir with files from two
    // sets; the next run puts the live set back even when nothing is due.
    let state = tempdir("reexport");
    let out = state.join("acme");
    std::fs::create_dir_all(&out).unwrap();
    let mut cfg = cert_config("gw.example");
    cfg.install_dir = Some(out.clone());
    let now = 1_800_000_000;
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, ca) = issued(&k, "gw.example", now, now + 6 * DAY);
    install(&state, &cfg, &k, &format!("{leaf}{ca}")).unwrap();
    let live_key = std::fs::read_to_string(out.join("gw.key")).unwrap();
    let other = PrivateKey::generate(KeyType::Ec256).unwrap();
    std::fs::write(out.join("gw.key"), other.to_pem()).unwrap();
    let crt_mtime = std::fs::metadata(out.join("gw.crt"))
        .unwrap()
        .modified()
        .unwrap();
    let t = TestTransport::new();
    t.push(
        Method::Get,
        DIR,
        response(
            200,
            &[],
            r#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r","keyChange":"k"}"#,
        ),
    );
    let clock = FixedClock::new(now);
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: false,
    };
    let outcome = renew_one(&env, &cfg, false).unwrap();
    assert!(matches!(outcome, Outcome::NotDue(_)), "{outcome:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("gw.key")).unwrap(),
        live_key
    );
    assert_eq!(
        std::fs::metadata(out.join("gw.crt"))
            .unwrap()
            .modified()
            .unwrap(),
        crt_mtime,
        "unchanged files are not rewritten"
    );
    std::fs::remove_dir_all(state).unwrap();
}

/// One ACME directory with ARI, for the ARI tests below.
fn ari_setup(
    tag: &str,
    lifetime: (i64, i64),
) -> (PathBuf, Certificate, CertInfo, TestTransport, String) {
    let state = tempdir(tag);
    let cfg = cert_config("gw.example");
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, _) = issued(&k, "gw.example", lifetime.0, lifetime.1);
    let info = CertInfo::from_pem(&leaf).unwrap();
    let id = cert_id(&info).unwrap();
    let t = TestTransport::new();
    let dir = r#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r",
        "keyChange":"k","renewalInfo":"https://ca.test/ari"}"#;
    t.push(Method::Get, DIR, response(200, &[], dir));
    (state, cfg, info, t, format!("https://ca.test/ari/{id}"))
}

fn ari_window(s: i64, e: i64) -> String {
    format!(
        r#"{{"suggestedWindow":{{"start":"{}","end":"{}"}}}}"#,
        crypto::rfc3339(s),
        crypto::rfc3339(e)
    )
}

/// Issue 18 / RFC 9773 §4.3: the renewalInfo Retry-After (clamped to 1 h .. 24 h, 6 h when
/// absent) is when the service looks again; a window the CA moved earlier in the meantime is
/// noticed at that poll, not at the old pick weeks later.
#[test]
fn ari_is_polled_again_after_retry_after_and_a_moved_window_is_acted_on() {
    let now = 1_800_000_000;
    let (state, cfg, info, t, url) = ari_setup("ari-repoll", (now - 10 * DAY, now + 80 * DAY));
    let (s1, e1) = (now + 50 * DAY, now + 52 * DAY);
    t.push(
        Method::Get,
        &url,
        response(200, &[("Retry-After", "7200")], &ari_window(s1, e1)),
    );
    // Two hours later the CA has moved the window into the past (a mass revocation).
    t.push(
        Method::Get,
        &url,
        response(200, &[], &ari_window(now - DAY, now + HOUR_S)),
    );
    // Then: no Retry-After → 6 h; a huge one → clamped to 24 h.
    t.push(Method::Get, &url, response(200, &[], &ari_window(s1, e1)));
    t.push(
        Method::Get,
        &url,
        response(200, &[("Retry-After", "9999999")], &ari_window(s1, e1)),
    );
    let clock = FixedClock::new(now);
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: false,
    };
    let client = Client::new(&t, &clock, &|_| {}, DIR).unwrap();
    let d1 = decide(&client, &env, &cfg, &info).unwrap();
    assert!((s1..=e1).contains(&d1.at));
    assert_eq!(d1.recheck, Some(now + 7_200));
    assert_eq!(
        d1.wake_at(),
        now + 7_200,
        "the service wakes for the re-poll"
    );
    clock.advance(7_200);
    let d2 = decide(&client, &env, &cfg, &info).unwrap();
    assert!(d2.due(clock.now()), "the moved window is acted on at once");
    assert_eq!(d2.reason, schedule::Reason::AriWindow);
    assert_eq!(
        decide(&client, &env, &cfg, &info).unwrap().recheck,
        Some(clock.now() + 6 * 3_600)
    );
    assert_eq!(
        decide(&client, &env, &cfg, &info).unwrap().recheck,
        Some(clock.now() + DAY)
    );
    assert_eq!(t.remaining(), 0);
    std::fs::remove_dir_all(state).unwrap();
}

const HOUR_S: i64 = 3_600;

/// Issue 18: the cron `renew` (remember_polls) keeps the Retry-After in state.json and does
/// not fetch renewalInfo again before it; after it, it does.
#[test]
fn cron_renew_honours_the_stored_ari_retry_after() {
    let now = 1_800_000_000;
    let (state, cfg, info, t, url) = ari_setup("ari-cron", (now - 10 * DAY, now + 80 * DAY));
    let (s1, e1) = (now + 50 * DAY, now + 52 * DAY);
    t.push(
        Method::Get,
        &url,
        response(200, &[("Retry-After", "21600")], &ari_window(s1, e1)),
    );
    t.push(Method::Get, &url, response(200, &[], &ari_window(s1, e1)));
    let clock = FixedClock::new(now);
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: true,
    };
    let client = Client::new(&t, &clock, &|_| {}, DIR).unwrap();
    let d1 = decide(&client, &env, &cfg, &info).unwrap();
    let fetches = || t.seen().iter().filter(|r| r.url == url).count();
    assert_eq!(fetches(), 1);
    // A cron run an hour later (a new process: the state is re-read from disk).
    clock.advance(HOUR_S);
    let d2 = decide(&client, &env, &cfg, &info).unwrap();
    assert_eq!(fetches(), 1, "no fetch inside the Retry-After");
    assert_eq!(d2.at, d1.at);
    assert_eq!(d2.recheck, Some(now + 21_600));
    clock.advance(5 * HOUR_S);
    decide(&client, &env, &cfg, &info).unwrap();
    assert_eq!(fetches(), 2, "fetched again once it has passed");
    std::fs::remove_dir_all(state).unwrap();
}

/// RFC 9773 §4.2 MUST: an inverted window (end before start) or an empty one (start = end) is
/// treated as no answer: the lifetime rule decides, and ARI is asked again later.
#[test]
fn inverted_and_empty_ari_windows_fall_back_to_the_lifetime_rule() {
    let now = 1_800_000_000;
    for (tag, s, e) in [
        ("ari-inverted", now + 5 * DAY, now + 4 * DAY),
        ("ari-empty", now + 5 * DAY, now + 5 * DAY),
    ] {
        let (nb, na) = (now - 10 * DAY, now + 80 * DAY);
        let (state, cfg, info, t, url) = ari_setup(tag, (nb, na));
        t.push(Method::Get, &url, response(200, &[], &ari_window(s, e)));
        let clock = FixedClock::new(now);
        let env = Env {
            state_dir: &state,
            clock: &clock,
            transport: &t,
            sleep: &|_| {},
            remember_polls: false,
        };
        let client = Client::new(&t, &clock, &|_| {}, DIR).unwrap();
        let d = decide(&client, &env, &cfg, &info).unwrap();
        assert_eq!(d.reason, schedule::Reason::Lifetime, "{tag}");
        assert!(d.at <= na - 30 * DAY && d.at > na - 31 * DAY, "{tag}");
        assert_eq!(d.recheck, Some(now + 6 * HOUR_S), "{tag}");
        let stored = State::load(&state, "gw").unwrap();
        assert_eq!(stored.ari, None, "{tag}");
        std::fs::remove_dir_all(state).unwrap();
    }
}

/// Certificates imported from acme-common send its events through `notify`, as acme-acmesh's
/// hook does: issue-failed without a live certificate, renew-failed with one, nothing when
/// no renewal was due; with main_domain, domains and CERT_DIR set.
#[test]
fn imported_certificates_send_acme_events() {
    let state = tempdir("events");
    let log = state.join("events.log");
    let notify = state.join("notify");
    std::fs::write(
        &notify,
        format!(
            "#!/bin/sh\necho \"$1 $2 main_domain=$main_domain domains=$domains CERT_DIR=$CERT_DIR\" >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut cfg = cert_config("gw.example");
    cfg.domains.push("www.gw.example".into());
    cfg.install_dir = Some(state.join("ssl"));
    cfg.notify = Some(notify);
    let now = 1_800_000_000;
    let clock = FixedClock::new(now);
    let dir_doc =
        r#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r","keyChange":"k"}"#;
    let events = || std::fs::read_to_string(&log).unwrap_or_default();

    // No certificate yet, the CA answers 500: issue-failed.
    let t = TestTransport::new();
    t.push(Method::Get, DIR, response(500, &[], "down"));
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: true,
    };
    assert!(renew_one(&env, &cfg, false).is_err());
    let ssl = state.join("ssl").display().to_string();
    assert_eq!(
        events(),
        format!("issue-failed gw main_domain=gw.example domains=gw.example www.gw.example CERT_DIR={ssl}\n")
    );

    // Installed and not due: no event.
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, ca) = issued(&k, "gw.example", now, now + 90 * DAY);
    let mut plain = cfg.clone();
    plain.notify = None;
    plain.domains = vec!["gw.example".into()];
    install(&state, &plain, &k, &format!("{leaf}{ca}")).unwrap();
    std::fs::remove_file(&log).unwrap();
    let mut one = cfg.clone();
    one.domains = vec!["gw.example".into()];
    let t = TestTransport::new();
    t.push(Method::Get, DIR, response(200, &[], dir_doc));
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: true,
    };
    let outcome = renew_one(&env, &one, false).unwrap();
    assert!(matches!(outcome, Outcome::NotDue(_)), "{outcome:?}");
    assert_eq!(events(), "");

    // Installed, forced, the CA fails: renew-failed.
    let t = TestTransport::new();
    t.push(Method::Get, DIR, response(500, &[], "down"));
    let env = Env {
        state_dir: &state,
        clock: &clock,
        transport: &t,
        sleep: &|_| {},
        remember_polls: true,
    };
    assert!(renew_one(&env, &one, true).is_err());
    assert!(
        events().starts_with("renew-failed gw main_domain=gw.example "),
        "{}",
        events()
    );
    std::fs::remove_dir_all(state).unwrap();
}

/// acme-common's `days`: due once the certificate is that old, unless the usual rule says
/// earlier.
#[test]
fn days_brings_the_renewal_forward_never_back() {
    let now = 1_800_000_000;
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let (leaf, _) = issued(&k, "gw.example", now, now + 90 * DAY);
    let info = CertInfo::from_pem(&leaf).unwrap();
    let usual = Decision {
        at: now + 60 * DAY,
        reason: schedule::Reason::Lifetime,
        recheck: None,
    };
    let mut cfg = cert_config("gw.example");
    assert_eq!(by_days(&cfg, &info, usual.clone()).at, now + 60 * DAY);
    cfg.renew_days = Some(30);
    assert_eq!(by_days(&cfg, &info, usual.clone()).at, now + 30 * DAY);
    cfg.renew_days = Some(75);
    assert_eq!(by_days(&cfg, &info, usual).at, now + 60 * DAY);
}
