//! EST `simpleenroll` throughput and latency against a running `gatecert run`, a new TLS
//! connection for every request. Driven by `bench/est-bench.sh`, which starts the server
//! pinned to one core.
//!
//! usage: est_bench STATE_DIR PORT COUNT

use std::time::{Duration, Instant};

use gatecert::crypto::{self, KeyType, PrivateKey};
use gatecert::daemon::est_client;
use gatecert::token::{self, Tokens};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [state, port, count] = args.as_slice() else {
        eprintln!("usage: est_bench STATE_DIR PORT COUNT");
        std::process::exit(2);
    };
    let state = std::path::PathBuf::from(state);
    let port: u16 = port.parse().expect("PORT");
    let count: u32 = count.parse::<u32>().expect("COUNT").clamp(1, 5000);

    let name = "bench.sensors.local".to_string();
    let now = gatecert::clock::from_env().now();
    let token = Tokens::open(&token::path_in(&state))
        .and_then(|mut t| t.add("bench", std::slice::from_ref(&name), 3600, count, now))
        .expect("token");
    let root = std::fs::read_to_string(state.join("ca/root.pem")).expect("root.pem");
    let root = crypto::certs_from_pem(&root).expect("root PEM")[0].to_vec();
    let key = PrivateKey::generate(KeyType::Ec256).expect("key");
    let body = crypto::b64(&key.csr(&[name], &[]).expect("csr"));
    let auth = format!("Basic {}", crypto::b64(format!("bench:{token}").as_bytes()));
    let url = format!("https://gateway.local:{port}/.well-known/est/simpleenroll");

    let mut lat = Vec::with_capacity(count as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    let start = Instant::now();
    for _ in 0..count {
        if Instant::now() > deadline {
            break;
        }
        // A fresh agent each time: no pooled connection, a full TLS handshake per request.
        let agent = est_client(&root, Duration::from_secs(5));
        let t = Instant::now();
        let resp = agent
            .post(&url)
            .header("Content-Type", "application/pkcs10")
            .header("Authorization", &auth)
            .send(&body)
            .expect("POST");
        assert_eq!(resp.status().as_u16(), 200);
        let _ = resp.into_body().read_to_vec().expect("body");
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "simpleenroll: {} requests in {:.2} s = {:.1} req/s (new TLS connection each); p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        total.as_secs_f64(),
        lat.len() as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}
