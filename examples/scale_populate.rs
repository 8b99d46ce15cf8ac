//! Fills a state directory with N sensors for `bench/scale.sh`, with the library's own store
//! code (the same `Tokens::add` and `Inventory::record` the CLI and the service call): N
//! bootstrap tokens (`s0`..`s{N-1}`, one use each, already spent, as after provisioning, then
//! pruned by `Tokens::maintain` as the service's compaction does) and N
//! inventory rows with random serials. Each store is written under its lock with one sync.
//!
//! usage: scale_populate STATE_DIR N

use gatecert::leaves::{self, Inventory, Leaf, Source};
use gatecert::token::{self, Claims, Tokens};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [state, n] = args.as_slice() else {
        eprintln!("usage: scale_populate STATE_DIR N");
        std::process::exit(2);
    };
    let state = std::path::PathBuf::from(state);
    let n: u32 = n.parse::<u32>().expect("N").min(1_000_000);
    let now = gatecert::clock::from_env().now();
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
