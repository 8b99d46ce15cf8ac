//! Fills a state directory with N sensors for `bench/scale.sh`, with the library's own store
//! code (the same `Tokens::add` and `Inventory::record` the CLI and the service call): N
//! bootstrap tokens (`s0`..`s{N-1}`, one use each, already spent, as after provisioning, then
//! pruned by `Tokens::maintain` as the service's compaction does) and N
//! inventory rows with random serials. Each store is written under its lock with one sync.
//!
//! With `--tokens-only FILE` (for `bench/cap.sh` with `CAP_FLEET=1`): N unused one-use tokens
//! for devices `f0`..`f{N-1}` (names `f{i}.sensors.local`), no rows, and FILE (0600) gets one
//! line per token, `DEVICE TOKEN NAME`, for `examples/est_load.rs` to enroll each device once.
//!
//! usage: scale_populate STATE_DIR N [--tokens-only FILE]

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use gatecert::leaves::{self, Inventory, Leaf, Source};
use gatecert::token::{self, Claims, Tokens};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (state, n, out) = match args.as_slice() {
        [state, n] => (state, n, None),
        [state, n, flag, out] if flag == "--tokens-only" => (state, n, Some(out)),
        _ => {
            eprintln!("usage: scale_populate STATE_DIR N [--tokens-only FILE]");
            std::process::exit(2);
        }
    };
    let state = std::path::PathBuf::from(state);
    let n: u32 = n.parse::<u32>().expect("N").min(1_000_000);
    let now = gatecert::clock::from_env().now();
    if let Some(out) = out {
        tokens_only(&state, n, out, now);
        return;
    }
    let mut tokens = Tokens::open_locked(&token::path_in(&state)).expect("tokens");
    tokens.set_batch(true).expect("batch");
    let mut claims = Claims::new();
    // SCALE_TOKENS_UNUSED=1: the tokens stay unused (a fleet provisioned ahead of its sensors).
    let unused = std::env::var_os("SCALE_TOKENS_UNUSED").is_some();
    for i in 0..n {
        let dev = format!("s{i}");
        let names = vec![format!("{dev}.sensors.local")];
        let tok = tokens.add(&dev, &names, 86_400, 1, now).expect("token add");
        if unused {
            continue;
        }
        let (id, _) = tokens
            .claim(&mut claims, &dev, &tok, "populate", now)
            .expect("claim");
        let claim = claims.take(id).expect("claim held");
        tokens.commit(&claim, now).expect("commit");
    }
    tokens.set_batch(false).expect("sync");
    // As the service does after a commit: the used-up tokens are pruned by compaction.
    tokens.maintain(now).expect("compaction");
    drop(tokens);
    let mut inv = Inventory::open_locked(&leaves::path_in(&state), None).expect("inventory");
    for i in 0..n {
        let serial = gatecert::crypto::hex(&gatecert::crypto::random_bytes::<16>().expect("rng"))
            .to_ascii_uppercase();
        inv.stage_record(Leaf::new(
            &format!("s{i}"),
            vec![format!("s{i}.sensors.local")],
            &serial,
            now + 30 * 86_400,
            Source::Local,
            now,
        ))
        .expect("record");
    }
    inv.save().expect("sync");
    println!("populated {n} sensors in {}", state.display());
}

/// `--tokens-only FILE`: N unused tokens, one sync, and the file of `DEVICE TOKEN NAME` lines.
fn tokens_only(state: &std::path::Path, n: u32, out: &str, now: i64) {
    let mut tokens = Tokens::open_locked(&token::path_in(state)).expect("tokens");
    tokens.set_batch(true).expect("batch");
    let mut lines = String::new();
    for i in 0..n {
        let dev = format!("f{i}");
        let name = format!("{dev}.sensors.local");
        let tok = tokens
            .add(&dev, std::slice::from_ref(&name), 86_400, 1, now)
            .expect("token add");
        lines.push_str(&format!("{dev} {tok} {name}\n"));
    }
    tokens.set_batch(false).expect("sync");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .expect("tokens file");
    println!("{n} unused tokens in {}, listed in {out}", state.display());
}
