//! A hostile upstream: pebble rejecting 30% of nonces and sleeping before validations, and a
//! misbehaving TLS proxy of our own (tests/hostile/proxy.py) in front of pebble that injects
//! 5xx, 429 with Retry-After, truncated and slow bodies and connection resets. Renewals either
//! succeed or fail the way the client documents: 429/503 `Retry-After` honoured when it ends
//! within `RetryPolicy::max_wait` (120 s), otherwise a prompt failure; a request that outlives
//! `timeout` fails; every error names the status or the transport failure and the URL.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Pebble, Proc, TempDir};
use serde_json::json;

const SUITE: &str = "hostile";

struct Case {
    dir: TempDir,
}

impl Case {
    fn new(p: &Pebble, directory: &str, timeout: &str) -> Case {
        let dir = TempDir::new("hostile");
        let c = Case { dir };
        c.config(p, directory, timeout);
        c
    }

    fn config(&self, p: &Pebble, directory: &str, timeout: &str) {
        let d = self.dir.path();
        let conf = format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config certificate 'gw'\n\toption directory '{directory}'\n\toption ca_bundle '{}'\n\
             \tlist domain 'gw.hostile.example'\n\toption http_listen '127.0.0.1:80'\n\
             \toption timeout '{timeout}'\n",
            d.join("state").display(),
            p.https_ca.display(),
        );
        std::fs::write(d.join("gatecert.conf"), conf).unwrap();
    }

    /// `renew --force -v`: (exit code, stderr, wall time).
    fn renew(&self) -> (i32, String, Duration) {
        let t = Instant::now();
        let out: Output = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.dir.path().join("gatecert.conf"))
            .args(["renew", "--force", "-v"])
            .env_remove("GATECERT_FAKE_NOW")
            .output()
            .unwrap();
        common::keep_output(SUITE, "renew", &out);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            t.elapsed(),
        )
    }
}

/// The proxy with one fault plan, killed on drop.
struct Proxy {
    _proc: Proc,
    port: u16,
    log: PathBuf,
}

impl Proxy {
    fn start(p: &Pebble, plan: serde_json::Value) -> Proxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = p.dir.path().join(format!("proxy-{port}.log"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile/proxy.py");
        let child: Child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg("14000")
            .arg(p.dir.path().join("cert.pem"))
            .arg(p.dir.path().join("key.pem"))
            .arg(plan.to_string())
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(common::log_file(SUITE, "proxy"))
            .spawn()
            .unwrap();
        let proc = Proc(child);
        common::wait_for_port(&format!("127.0.0.1:{port}"));
        Proxy {
            _proc: proc,
            port,
            log,
        }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// How many requests for paths containing `m` the proxy saw.
    fn seen(&self, m: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(m))
            .count()
    }
}

/// One fault-plan scenario against a fresh proxy: the outcome, checked by `check`.
fn scenario(
    p: &Pebble,
    name: &str,
    plan: serde_json::Value,
    timeout: &str,
    check: impl FnOnce(i32, &str, Duration, &Proxy),
) {
    let proxy = Proxy::start(p, plan);
    let c = Case::new(p, &proxy.directory(), timeout);
    let (code, err, took) = c.renew();
    eprintln!("{name}: exit {code} in {:.1} s", took.as_secs_f64());
    check(code, &err, took, &proxy);
    // Whatever happened, a clean run through the same (now spent) plan succeeds.
    let (code, err, _) = c.renew();
    assert_eq!(code, 0, "{name}: the next run failed:\n{err}");
}

fn fault(m: &str, fault: &str, times: i64, extra: serde_json::Value) -> serde_json::Value {
    let mut f = serde_json::json!({"match": m, "fault": fault, "times": times});
    for (k, v) in extra.as_object().unwrap() {
        f[k] = v.clone();
    }
    f
}

#[test]
fn renewals_survive_or_fail_clearly_against_a_hostile_upstream() {
    let mut p = Pebble::start();

    // 429 with Retry-After 1, twice: honoured (two waits of 1 s), then success.
    scenario(
        &p,
        "429 Retry-After 1 x2",
        json!([fault(
            "/order-plz",
            "status",
            2,
            json!({"status": 429, "retry_after": "1",
            "type": "urn:ietf:params:acme:error:rateLimited"})
        )]),
        "10s",
        |code, err, took, px| {
            assert_eq!(code, 0, "{err}");
            assert_eq!(
                err.matches("server busy (HTTP 429), retrying in 1s")
                    .count(),
                2,
                "{err}"
            );
            assert!(took >= Duration::from_secs(2), "{took:?}");
            assert_eq!(px.seen("/order-plz status"), 2);
        },
    );

    // 503 with a Retry-After far past max_wait: no waiting an hour, a prompt failure naming
    // the status and the URL, and no hammering.
    scenario(
        &p,
        "503 Retry-After 3600",
        json!([fault(
            "/order-plz",
            "status",
            1,
            json!({"status": 503, "retry_after": "3600"})
        )]),
        "10s",
        |code, err, took, px| {
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("/order-plz") && err.contains("503"), "{err}");
            assert!(took < Duration::from_secs(10), "{took:?}");
            assert_eq!(px.seen("/order-plz"), 1);
        },
    );

    // 429 without Retry-After: fails at once, naming 429.
    scenario(
        &p,
        "429 no Retry-After",
        json!([fault(
            "/order-plz",
            "status",
            1,
            json!({"status": 429,
            "type": "urn:ietf:params:acme:error:rateLimited"})
        )]),
        "10s",
        |code, err, _, _| {
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("429") && err.contains("rateLimited"), "{err}");
        },
    );

    // A 500 at finalize: a clear error naming the status and the URL.
    scenario(
        &p,
        "500 at finalize",
        json!([fault(
            "/finalize-order/",
            "status",
            1,
            json!({"status": 500})
        )]),
        "10s",
        |code, err, _, _| {
            assert_eq!(code, 2, "{err}");
            assert!(
                err.contains("/finalize-order/") && err.contains("500"),
                "{err}"
            );
        },
    );

    // A certificate download cut short: the transport error names the URL.
    scenario(
        &p,
        "truncated certificate body",
        json!([fault("/certZ/", "truncate", 1, json!({"keep": 40}))]),
        "10s",
        |code, err, _, _| {
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("/certZ/") && err.contains("failed"), "{err}");
        },
    );

    // A slow directory body (about 1 s in all) within the timeout: success.
    scenario(
        &p,
        "slow directory within timeout",
        json!([fault("/dir", "slow", 1, json!({"delay": 0.002}))]),
        "10s",
        |code, err, _, _| assert_eq!(code, 0, "{err}"),
    );

    // A body that stalls past `timeout`: fails after about the timeout, saying so.
    scenario(
        &p,
        "stalled order body past timeout",
        json!([fault("/order-plz", "slow", 1, json!({"delay": 1.0}))]),
        "3s",
        |code, err, took, _| {
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("/order-plz"), "{err}");
            assert!(
                err.to_lowercase().contains("timeout") || err.contains("timed out"),
                "{err}"
            );
            assert!(took < Duration::from_secs(15), "{took:?}");
        },
    );

    // Connection reset while polling an authorization: a clear transport error.
    scenario(
        &p,
        "reset on authorization",
        json!([fault("/authZ/", "reset", 1, json!({}))]),
        "10s",
        |code, err, _, _| {
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("/authZ/") && err.contains("failed"), "{err}");
        },
    );

    // pebble itself: 30% of nonces rejected, validations delayed up to 3 s.
    p.restart_with(
        false,
        &[
            ("PEBBLE_WFE_NONCEREJECT", "30"),
            ("PEBBLE_VA_SLEEPTIME", "3"),
        ],
    );
    for i in 0..3 {
        // A fresh account each time, so each renewal has a validation to wait for.
        let c = Case::new(&p, common::DIRECTORY, "30s");
        let (code, err, took) = c.renew();
        eprintln!(
            "nonce reject 30% + VA sleep: exit {code} in {:.1} s",
            took.as_secs_f64()
        );
        assert_eq!(code, 0, "renewal {i}:\n{err}");
    }
}
