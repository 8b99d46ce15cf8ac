//! Leaf enrollment latency with the broker on and the upstream blackholed (a listener that
//! accepts and never answers), measured after the first timeout has marked it down: every
//! request must be answered at once with an interim certificate. Driven by
//! `bench/broker-bench.sh`.
//!
//! usage: broker_bench GATECERT_BIN WORK_DIR COUNT
//!
//! It writes a UCI config (upstream = the blackhole, `timeout 2`, `upstream_wait 2`), starts
//! `GATECERT_BIN run`, enrolls once to trip the upstream, waits until `upstream.json` says
//! `down`, then times COUNT `simpleenroll`s, each on a new TLS connection.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatecert::crypto::{self, KeyType, PrivateKey};
use gatecert::daemon::est_client;
use gatecert::token::{self, Tokens};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, dir, count] = args.as_slice() else {
        eprintln!("usage: broker_bench GATECERT_BIN WORK_DIR COUNT");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let count: u32 = count.parse::<u32>().expect("COUNT").clamp(1, 2000);
    let state = dir.join("state");

    // The blackhole: accepted connections are held open and never answered.
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_port = hole.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().flatten() {
            if held.len() < 1024 {
                held.push(s);
            }
        }
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let conf = dir.join("gatecert.conf");
    std::fs::write(
        &conf,
        format!(
            "config gatecert 'main'\n\toption state_dir '{state}'\n\toption log 'stderr'\n\
             config certificate 'gw'\n\toption directory 'https://127.0.0.1:{hole_port}/dir'\n\
             \toption ca_bundle '/etc/ssl/certs/ca-certificates.crt'\n\
             \tlist domain 'gw.sensors.test'\n\toption timeout 2\n\
             config ca 'local'\n\tlist allow_suffix 'sensors.test'\n\
             config est 'est'\n\toption listen '127.0.0.1:{port}'\n\
             config broker 'upstream'\n\toption upstream_wait 2\n",
            state = state.display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&conf)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gatecert");
    let result = std::panic::catch_unwind(|| bench(&state, port, count));
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        std::process::exit(1);
    }
}

fn bench(state: &std::path::Path, port: u16, count: u32) {
    let t = Instant::now();
    while !state.join("ca/root.pem").exists()
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let name = "bench.sensors.test".to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let token = Tokens::open(&token::path_in(state))
        .and_then(|mut t| t.add("bench", std::slice::from_ref(&name), 3600, count + 1, now))
        .expect("token");
    let root = std::fs::read_to_string(state.join("ca/root.pem")).expect("root.pem");
    let root = crypto::certs_from_pem(&root).expect("root PEM")[0].to_vec();
    let key = PrivateKey::generate(KeyType::Ec256).expect("key");
    let body = crypto::b64(&key.csr(&[name], &[]).expect("csr"));
    let auth = format!("Basic {}", crypto::b64(format!("bench:{token}").as_bytes()));
    let url = format!("https://gw.sensors.test:{port}/.well-known/est/simpleenroll");
    let enroll = || {
        let t = Instant::now();
        let resp = est_client(&root, Duration::from_secs(10))
            .post(&url)
            .header("Content-Type", "application/pkcs10")
            .header("Authorization", &auth)
            .send(&body)
            .expect("POST");
        assert_eq!(resp.status().as_u16(), 200);
        let _ = resp.into_body().read_to_vec().expect("body");
        t.elapsed()
    };

    let first = enroll();
    let t = Instant::now();
    let upstream = state.join("upstream.json");
    while !std::fs::read_to_string(&upstream).is_ok_and(|s| s.contains("\"down\"")) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "upstream never marked down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "first enroll (upstream blackholed, not yet known down): {:.0} ms; marked down {:.1} s later",
        first.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64()
    );

    let mut lat = Vec::with_capacity(count as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    let start = Instant::now();
    for _ in 0..count {
        if Instant::now() > deadline {
            break;
        }
        lat.push(enroll());
    }
    let total = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "simpleenroll while down (interim): {} requests in {:.2} s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 <= 50 ms)",
        lat.len(),
        total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
    );
}
