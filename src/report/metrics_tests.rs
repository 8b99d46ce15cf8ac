use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;
use crate::report::fixture::{Fixture, DAY};

/// The venv python with prometheus_client, or None (after a loud message) when PyPI is out of
/// reach. Any other failure of the install script fails the test.
fn python() -> Option<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyvenv.sh");
    let out = Command::new("bash").arg(script).output().unwrap();
    match out.status.code() {
        Some(0) => Some(String::from_utf8(out.stdout).unwrap().trim().to_owned()),
        Some(3) => {
            eprintln!(
                "\n*** SKIPPED: prometheus_client could not be installed from PyPI ***\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        _ => panic!("pyvenv.sh failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Parses `text` with prometheus_client's parser; returns [family, type, sample, labels, value].
fn parse(py: &str, text: &str) -> Vec<serde_json::Value> {
    let prog = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n    \
            out.append([f.name, f.type, None, None, None])\n    \
            for s in f.samples:\n        \
                out.append([f.name, f.type, s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new(py)
        .args(["-c", prog])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find(parsed: &[serde_json::Value], sample: &str, labels: serde_json::Value) -> Option<f64> {
    parsed
        .iter()
        .find(|r| r[2] == sample && r[3] == labels)
        .and_then(|r| r[4].as_f64())
}

fn counters() -> Counters {
    let c = Counters::new();
    c.renewal_attempt("gateway");
    c.renewal_attempt("gateway");
    c.renewal_success("gateway");
    c.renewal_failure("gateway", "urn:ietf:params:acme:error:rateLimited");
    c.renewal_attempt("we\"ird\\na\nme");
    c.challenge_failure("dns-01");
    c.challenge_failure("bogus");
    c.leaf_issued(Source::Interim);
    c.est_request("simpleenroll", 200);
    c.est_request("simpleenroll", 200);
    c.est_request("simpleenroll", 403);
    c.est_request("../../etc/passwd", 404);
    c
}

#[test]
fn scraped_by_a_real_prometheus_parser() {
    let f = Fixture::new("metrics");
    let status = Status::gather(&f.cfg, f.t0 + DAY);
    let text = render_metrics(&status, &counters());
    let Some(py) = python() else { return };
    let p = parse(&py, &text);
    let v = find(
        &p,
        "gatecert_certificate_not_after_seconds",
        serde_json::json!({"name": "gateway", "kind": "gateway"}),
    );
    assert_eq!(v, Some(f.not_after as f64));
    assert!(find(
        &p,
        "gatecert_certificate_not_after_seconds",
        serde_json::json!({"name": "ca-intermediate", "kind": "ca-intermediate"})
    )
    .is_some());
    let fam: Vec<_> = p
        .iter()
        .filter(|r| r[0] == "gatecert_renewal_attempts")
        .collect();
    assert_eq!(fam[0][1], "counter");
    assert_eq!(
        find(
            &p,
            "gatecert_renewal_attempts_total",
            serde_json::json!({"name": "gateway"})
        ),
        Some(2.0)
    );
    assert_eq!(
        find(
            &p,
            "gatecert_renewal_attempts_total",
            serde_json::json!({"name": "we\"ird\\na\nme"})
        ),
        Some(1.0),
        "label escaping must round-trip:\n{text}"
    );
    assert_eq!(
        find(
            &p,
            "gatecert_renewal_success_total",
            serde_json::json!({"name": "gateway"})
        ),
        Some(1.0)
    );
    assert_eq!(
        find(
            &p,
            "gatecert_renewal_failures_total",
            serde_json::json!({"name": "gateway", "problem": "rateLimited"})
        ),
        Some(1.0)
    );
    assert_eq!(
        find(
            &p,
            "gatecert_challenge_failures_total",
            serde_json::json!({"type": "other"})
        ),
        Some(1.0)
    );
    for (src, n) in [("local", 0.0), ("interim", 1.0), ("upstream", 0.0)] {
        assert_eq!(
            find(
                &p,
                "gatecert_leaf_issuances_total",
                serde_json::json!({"source": src})
            ),
            Some(n)
        );
    }
    assert_eq!(
        find(
            &p,
            "gatecert_est_requests_total",
            serde_json::json!({"endpoint": "simpleenroll", "status": "200"})
        ),
        Some(2.0)
    );
    assert_eq!(
        find(
            &p,
            "gatecert_est_requests_total",
            serde_json::json!({"endpoint": "other", "status": "404"})
        ),
        Some(1.0)
    );
    assert_eq!(
        find(&p, "gatecert_clock_trusted", serde_json::json!({})),
        Some(1.0)
    );
    // Standalone: the family is declared but has no sample.
    assert!(p
        .iter()
        .any(|r| r[0] == "gatecert_upstream_up" && r[1] == "gauge"));
    assert_eq!(
        find(&p, "gatecert_upstream_up", serde_json::json!({})),
        None
    );

    // Untrusted clock, upstream down.
    let mut cfg = f.cfg.clone();
    cfg.certificates[0].directory = Some("https://127.0.0.1:1/dir".into());
    std::fs::write(f.state_dir().join("upstream.json"), r#"{"state":"down"}"#).unwrap();
    let status = Status::gather(&cfg, f.t0 - DAY);
    let p = parse(&py, &render_metrics(&status, &Counters::new()));
    assert_eq!(
        find(&p, "gatecert_clock_trusted", serde_json::json!({})),
        Some(0.0)
    );
    assert_eq!(
        find(&p, "gatecert_upstream_up", serde_json::json!({})),
        Some(0.0)
    );
    assert_eq!(
        find(&p, "gatecert_healthy", serde_json::json!({})),
        Some(0.0)
    );
}

#[test]
fn textfile_written_only_on_change() {
    let f = Fixture::new("textfile");
    let status = Status::gather(&f.cfg, f.t0 + DAY);
    let c = Counters::new();
    let path = f.state_dir().join("gatecert.prom");
    assert!(write_textfile(&path, &render_metrics(&status, &c)).unwrap());
    assert!(!write_textfile(&path, &render_metrics(&status, &c)).unwrap());
    c.est_request("cacerts", 200);
    assert!(write_textfile(&path, &render_metrics(&status, &c)).unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("gatecert_est_requests_total{endpoint=\"cacerts\",status=\"200\"} 1\n"));
}

#[test]
fn listener_answers_and_limits() {
    assert!(MetricsListener::bind("0.0.0.0:0".parse().unwrap()).is_err());
    let l = MetricsListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let ask = |req: &[u8]| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let _ = s.write_all(req);
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
            out
        };
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(5000));
        vec![
            ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            ask(b"GET / HTTP/1.1\r\n\r\n"),
            ask(b"POST /metrics HTTP/1.1\r\n\r\n"),
            ask(big.as_bytes()),
        ]
    });
    for _ in 0..4 {
        l.serve_one(&|| "up 1\n".to_owned()).unwrap();
    }
    let r = client.join().unwrap();
    assert!(r[0].starts_with("HTTP/1.1 200 OK\r\n"), "{}", r[0]);
    assert!(r[0].contains("Content-Type: text/plain; version=0.0.4"));
    assert!(r[0].ends_with("\r\n\r\nup 1\n"));
    assert!(r[1].starts_with("HTTP/1.1 404 "));
    assert!(r[2].starts_with("HTTP/1.1 405 "));
    assert!(r[3].starts_with("HTTP/1.1 431 "), "{}", r[3]);
}

#[test]
fn escaping_and_series_cap() {
    assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    let c = Counters::new();
    for i in 0..(MAX_SERIES + 10) {
        c.renewal_attempt(&format!("n{i}"));
    }
    assert_eq!(c.lock().renewal_attempts.len(), MAX_SERIES);
}

#[test]
fn issuer_active_marks_the_issuer_in_use() {
    let f = Fixture::new("issuers");
    let mut cfg = f.cfg.clone();
    let issuer = |name: &str, port: u16| crate::config::Issuer {
        name: name.into(),
        line: 1,
        directory: format!("https://127.0.0.1:{port}/dir"),
        ca_bundle: None,
        email: None,
        eab: None,
        profile: None,
    };
    let gw = &mut cfg.certificates[0];
    gw.issuers = vec![issuer("primary", 1), issuer("backup", 2)];
    gw.directory = Some(gw.issuers[0].directory.clone());
    let render = |cfg: &crate::config::Config| {
        render_metrics(&Status::gather(cfg, f.t0 + DAY), &Counters::new())
    };
    // Nothing recorded yet: the first is the one in use.
    let text = render(&cfg);
    assert!(
        text.contains("# TYPE gatecert_issuer_active gauge"),
        "{text}"
    );
    assert!(text.contains("gatecert_issuer_active{name=\"gateway\",issuer=\"primary\"} 1\n"));
    assert!(text.contains("gatecert_issuer_active{name=\"gateway\",issuer=\"backup\"} 0\n"));
    // After a failover, recorded in state.json as the renew code writes it.
    let state = f.state_dir().join("certs/gateway/state.json");
    std::fs::write(
        &state,
        r#"{"issuer":{"active":"backup","reason":"unreachable","from":"primary"}}"#,
    )
    .unwrap();
    let text = render(&cfg);
    assert!(text.contains("gatecert_issuer_active{name=\"gateway\",issuer=\"primary\"} 0\n"));
    assert!(text.contains("gatecert_issuer_active{name=\"gateway\",issuer=\"backup\"} 1\n"));
    // A certificate without `list issuer` has no sample.
    assert!(!render(&f.cfg).contains("gatecert_issuer_active{"));
}
