//! dns-01 (RFC 8555 §8.4) through a hook: `HOOK add|del _acme-challenge.<domain> <value>`, with
//! the same three values in `GATECERT_DNS_ACTION`, `GATECERT_DNS_FQDN` and `GATECERT_DNS_VALUE`.
//! Records added are always deleted again when the [`Records`] guard drops.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{dns_value, Error, Pending};

/// TXT records put in place by the hook. Dropping this calls the hook with `del` for each.
#[derive(Debug)]
pub struct Records {
    hook: PathBuf,
    /// Extra environment (acme.sh dnsapi credentials); `Debug` shows no values.
    env: crate::config::HookEnv,
    added: Vec<(String, String)>,
}

/// `_acme-challenge.<domain>` for an identifier value (a wildcard's `*.` is not part of it).
pub fn fqdn(domain: &str) -> String {
    format!("_acme-challenge.{}", domain.trim_start_matches("*."))
}

impl Records {
    /// Runs `hook add` for every pending challenge; on the first failure, deletes what was
    /// added and returns the error.
    pub fn add(
        hook: &Path,
        env: &crate::config::HookEnv,
        pending: &[Pending],
    ) -> Result<Records, Error> {
        let mut records = Records {
            hook: hook.to_path_buf(),
            env: env.clone(),
            added: Vec::new(),
        };
        for p in pending {
            let fqdn = fqdn(p.identifier.value());
            let value = dns_value(&p.key_authorization);
            // Recorded first so a half-done `add` is still cleaned up.
            records.added.push((fqdn.clone(), value.clone()));
            run(hook, &records.env, "add", &fqdn, &value)?;
            log::info!("dns-01: added TXT {fqdn}");
        }
        Ok(records)
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        for (fqdn, value) in &self.added {
            if let Err(e) = run(&self.hook, &self.env, "del", fqdn, value) {
                log::warn!("{e}");
            }
        }
    }
}

fn run(
    hook: &Path,
    env: &crate::config::HookEnv,
    action: &'static str,
    fqdn: &str,
    value: &str,
) -> Result<(), Error> {
    let status = crate::hook::run(
        Command::new(hook)
            .args([action, fqdn, value])
            .envs(env.0.iter().map(|(k, v)| (k, v)))
            .env("GATECERT_DNS_ACTION", action)
            .env("GATECERT_DNS_FQDN", fqdn)
            .env("GATECERT_DNS_VALUE", value)
            .stdin(Stdio::null()),
        crate::hook::TIMEOUT,
    )
    .map_err(|source| Error::HookSpawn {
        hook: hook.to_path_buf(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::HookFailed {
            hook: hook.to_path_buf(),
            action,
            status: status.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::acme::types::Identifier;

    fn hook(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gatecert-dns01-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn pending() -> Pending {
        Pending {
            identifier: Identifier::Dns("*.gw.example".into()),
            token: "t".into(),
            key_authorization: "t.thumb".into(),
        }
    }

    #[test]
    fn hook_gets_args_and_env_and_del_always_follows() {
        let d = tempdir("ok");
        let log = d.join("log");
        let h = hook(
            &d,
            &format!(
                "echo \"$1 $2 $3 $GATECERT_DNS_ACTION $GATECERT_DNS_FQDN $GATECERT_DNS_VALUE\" >> {}",
                log.display()
            ),
        );
        let records = Records::add(&h, &Default::default(), &[pending()]).unwrap();
        drop(records);
        let v = dns_value("t.thumb");
        let lines = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            lines,
            format!(
                "add _acme-challenge.gw.example {v} add _acme-challenge.gw.example {v}\n\
                 del _acme-challenge.gw.example {v} del _acme-challenge.gw.example {v}\n"
            )
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn failing_hook_is_named_with_its_status_and_still_deleted() {
        let d = tempdir("fail");
        let log = d.join("log");
        let h = hook(
            &d,
            &format!("echo $1 >> {}; [ \"$1\" = del ] || exit 3", log.display()),
        );
        let err = Records::add(&h, &Default::default(), &[pending()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("dns_hook {} add failed: exit status: 3", h.display())
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "add\ndel\n");
        std::fs::remove_dir_all(d).unwrap();
    }
}
