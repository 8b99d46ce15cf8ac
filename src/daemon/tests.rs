//! The service's clock gate on CA creation ([`super::ensure_ca`]) and its own sets.

use super::*;
use crate::leaves::{Inventory, Leaf, Source};
use crate::trust::TrustedNow;

const DAY: i64 = 86_400;

/// A year after this binary was built: above every floor.
fn good_now() -> i64 {
    crate::trust::BUILD_TIME.parse::<i64>().unwrap() + 365 * DAY
}

fn cfg(tag: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("gatecert-daemon-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Config::standalone(dir)
}

fn root_pem(cfg: &Config) -> String {
    std::fs::read_to_string(LocalCa::dir_in(&cfg.main.state_dir).join("root.pem")).unwrap()
}

fn moved_aside(cfg: &Config) -> usize {
    std::fs::read_dir(&cfg.main.state_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ca.bad-clock-"))
        .count()
}

#[test]
fn no_ca_below_the_floor_and_one_audited_above_it() {
    let cfg = cfg("floor");
    let why = ensure_ca(&cfg, 3600).unwrap().expect("untrusted at 1970");
    assert_eq!(why.now, 3600);
    assert!(!LocalCa::dir_in(&cfg.main.state_dir).exists());
    assert!(!audit::path_in(&cfg.main.state_dir).exists());
    assert!(ensure_ca(&cfg, good_now()).unwrap().is_none());
    assert!(LocalCa::exists(&LocalCa::dir_in(&cfg.main.state_dir)));
    let log = std::fs::read_to_string(audit::path_in(&cfg.main.state_dir)).unwrap();
    assert!(log.contains("\"event\":\"ca-init\""), "{log}");
    // Once made, it is kept.
    let root = root_pem(&cfg);
    assert!(ensure_ca(&cfg, good_now() + DAY).unwrap().is_none());
    assert_eq!(root_pem(&cfg), root);
}

#[test]
fn a_bad_clock_ca_is_replaced_only_if_it_issued_nothing() {
    let cfg = cfg("badca");
    let dir = LocalCa::dir_in(&cfg.main.state_dir);
    LocalCa::init(&dir, &cfg.ca, TrustedNow::for_tests(3600)).unwrap();
    assert!(LocalCa::made_with_bad_clock(&dir));
    Inventory::open(&leaves::path_in(&cfg.main.state_dir))
        .unwrap()
        .record(Leaf {
            device: "s1".into(),
            names: vec!["s1.local".into()],
            serial: "01".into(),
            not_after: 3600 + DAY,
            source: Source::Local,
            issued_at: 3600,
            ..Leaf::default()
        })
        .unwrap();
    let root = root_pem(&cfg);
    assert!(ensure_ca(&cfg, good_now()).unwrap().is_none());
    assert_eq!(root_pem(&cfg), root, "a CA that issued leaves is kept");
    assert_eq!(moved_aside(&cfg), 0);

    std::fs::remove_file(leaves::path_in(&cfg.main.state_dir)).unwrap();
    // Below the floor it is not touched either.
    assert!(ensure_ca(&cfg, 3600).unwrap().is_some());
    assert_eq!(root_pem(&cfg), root);
    assert!(ensure_ca(&cfg, good_now()).unwrap().is_none());
    assert_ne!(root_pem(&cfg), root, "replaced");
    assert!(!LocalCa::made_with_bad_clock(&dir));
    assert_eq!(moved_aside(&cfg), 1);
    let log = std::fs::read_to_string(audit::path_in(&cfg.main.state_dir)).unwrap();
    assert!(log.contains("\"event\":\"ca-replace\""), "{log}");
}

#[test]
fn an_operator_ca_is_never_taken_for_a_bad_clock_one() {
    let cfg = cfg("operator");
    let dir = LocalCa::dir_in(&cfg.main.state_dir);
    LocalCa::init(&dir, &cfg.ca, TrustedNow::for_tests(3600)).unwrap();
    // No root.key: the operator's root signed this intermediate (`ca install`).
    std::fs::remove_file(dir.join("root.key")).unwrap();
    assert!(!LocalCa::made_with_bad_clock(&dir));
    let root = root_pem(&cfg);
    assert!(ensure_ca(&cfg, good_now()).unwrap().is_none());
    assert_eq!(root_pem(&cfg), root);
}

#[test]
fn reload_refuses_a_new_state_dir() {
    let cfg = cfg("reload");
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::FixedClock::new(good_now()));
    let mut c = cfg.clone();
    c.est.enabled = false;
    let mut svc = Service::start(c.clone(), clock).unwrap();
    let other = cfg.main.state_dir.join("elsewhere");
    let mut moved = c.clone();
    moved.main.state_dir = other.clone();
    assert!(matches!(
        svc.reload(moved),
        Err(Error::StateDirChanged { .. })
    ));
    assert!(!other.exists());
    assert_eq!(svc.config().main.state_dir, cfg.main.state_dir);
}
