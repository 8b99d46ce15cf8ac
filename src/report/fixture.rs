//! Test fixture: a state directory with a real local CA and an installed 90-day gateway set.

use std::path::PathBuf;

use crate::ca::LocalCa;
use crate::config::Config;
use crate::crypto;
use crate::store::{CertSet, SetDir};

pub const DAY: i64 = 86_400;

/// A state dir in a temp dir; `t0` is when the CA and the gateway certificate were issued.
pub struct Fixture {
    pub cfg: Config,
    pub t0: i64,
    /// The gateway certificate's notAfter.
    pub not_after: i64,
}

impl Fixture {
    /// `alert_days` 10, `alert_failures` 3; a 90-day `gateway` certificate from the local CA.
    pub fn new(tag: &str) -> Fixture {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("gatecert-report-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config::standalone(dir.clone());
        cfg.main.alert_days = 10;
        cfg.ca.max_lifetime = 100 * DAY as u64;
        let t0 = crate::trust::BUILD_TIME.parse::<i64>().unwrap() + DAY;
        let ca = LocalCa::init(
            &LocalCa::dir_in(&dir),
            &cfg.ca,
            crate::trust::TrustedNow::for_tests(t0),
        )
        .unwrap();
        let (key, issued) = ca
            .issue_with_new_key(
                &["gateway.local".into()],
                &[],
                Some(90 * DAY as u64),
                true,
                crate::trust::TrustedNow::for_tests(t0),
            )
            .unwrap();
        let set = CertSet {
            key_pem: key.to_pem(),
            cert_pem: crypto::pem_block("CERTIFICATE", &issued.leaf_der),
            chain_pem: crypto::certs_to_pem(issued.chain_der[1..].iter().map(Vec::as_slice)),
        };
        SetDir::new(dir.join("certs").join("gateway"))
            .install(&set)
            .unwrap();
        Fixture {
            cfg,
            t0,
            not_after: issued.not_after,
        }
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.cfg.main.state_dir
    }
}
