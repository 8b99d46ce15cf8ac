//! The service follows `gatecert ca rotate` ([`crate::ca::rotate`]): a rotated intermediate
//! is taken at the next tick, and kept generations whose leaves have expired are retired.

use std::time::Duration;

use super::{causes, Service};
use crate::audit;
use crate::ca;
use crate::trust::ClockTrust;

impl Service {
    /// Takes a rotated intermediate (`gatecert ca rotate` from another process) and retires
    /// kept generations whose leaves have expired (`ca.retire`, on a trusted clock): both
    /// re-open the CA as a reload does, which re-issues the service's own local certificates.
    pub fn follow_ca(&mut self) {
        let now = self.clock.now();
        let ca = self.est.ca();
        let mut changed = ca.changed_on_disk();
        if !changed && !ca.previous().is_empty() {
            let mut trust =
                ClockTrust::load(&self.cfg.main.state_dir, Some(ca.intermediate().not_before));
            if let Ok(t) = trust.check(now) {
                if !ca.generations_due(t).is_empty() {
                    let path = audit::path_in(&self.cfg.main.state_dir);
                    let retired = audit::Audit::open_locked_within(
                        &path,
                        audit::DEFAULT_MAX_BYTES,
                        Duration::from_secs(1),
                    )
                    .map_err(ca::Error::Audit)
                    .and_then(|mut log| ca::rotate::retire_due(ca, t, &mut log));
                    match retired {
                        Ok(r) => changed = !r.is_empty(),
                        Err(e) => {
                            log::error!("retiring a replaced intermediate: {e}: {}", causes(&e))
                        }
                    }
                }
            }
        }
        if changed {
            log::info!("local CA changed on disk (ca rotate): re-opening it");
            if let Err(e) = self.reload(self.cfg.clone()) {
                log::error!("re-opening the local CA failed: {e}: {}", causes(&e));
            }
        }
    }
}
