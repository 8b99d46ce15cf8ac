//! The short CI version of bench/load.sh: 10 s of slowloris connections plus concurrent EST
//! enrollments against the debug `gatecert run`; the service must stay up and keep serving.

mod common;

use std::process::Command;

#[test]
fn service_stays_up_and_serves_under_slowloris_and_load() {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/load.sh"))
        .args(["10", "200", "20"])
        .env("GATECERT_BIN", env!("CARGO_BIN_EXE_gatecert"))
        .output()
        .unwrap();
    common::keep_output("load", "load-sh", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench/load.sh failed");
    assert!(text.contains("service up; enrollment after the load: 200"));
    let served: u64 = text
        .split("enrollments")
        .next()
        .and_then(|s| s.rsplit(": ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(served > 0, "no well-behaved client was served");
}
