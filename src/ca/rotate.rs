//! `gatecert ca rotate`: a new issuing intermediate under the same root, with a new key and the
//! same name constraints (RFC 5280 §4.2.1.10), made live in one step; the intermediate it
//! replaces stays in `previous/` for verification until the last leaf it can have signed has
//! expired, then it is retired.
//!
//! ```text
//! previous/<SERIAL>.pem    a replaced intermediate, kept for verification (/cacerts, re-enroll)
//! previous/<SERIAL>.json   when it was replaced and when it may be retired
//! next.pem, next.key       a rotation staged but not yet live (only while `ca rotate` runs)
//! ```
//!
//! The replaced intermediate's key is not kept: nothing signs with it any more. The CRL is
//! signed by the live intermediate for the revocations of every generation: the generations
//! share the issuer name and the root, which RFC 5280 §6.3.3 (f) allows for a CRL issuer.
//!
//! Going live is two renames, key first: a reader that finds the new key next to the old
//! certificate takes `next.pem` (see `staged_cert`), and the next `ca rotate` finishes the
//! second rename. A rotation that crashed before its first rename is ignored and cleaned up.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CidrSubnet, GeneralSubtree, IsCa, Issuer, NameConstraints};
use serde::{Deserialize, Serialize};

use super::{ca_params, Error, LocalCa, INTERMEDIATE_LIFETIME, INT_CERT, INT_KEY, ROOT_KEY};
use crate::crypto::{self, CertInfo, Constraints, KeyType, PrivateKey, Subtree};
use crate::store;
use crate::trust::TrustedNow;

const PREVIOUS_DIR: &str = "previous";
const NEXT_CERT: &str = "next.pem";
const NEXT_KEY: &str = "next.key";

/// Added to the retirement time: a running service keeps signing with the replaced intermediate
/// until its next tick notices the rotation.
pub const RETIRE_SLACK: i64 = 3600;

/// `previous/<SERIAL>.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    rotated_at: i64,
    retire_after: i64,
}

/// A replaced intermediate, kept for verification.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The certificate.
    pub info: CertInfo,
    /// When `ca rotate` replaced it, Unix seconds.
    pub rotated_at: i64,
    /// From when it may be retired, Unix seconds: no leaf it signed is unexpired then.
    pub retire_after: i64,
}

/// A rotation written to disk but not live yet: [`Staged::commit`] or [`Staged::abandon`].
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    /// The intermediate being replaced.
    pub old: CertInfo,
    /// The new intermediate.
    pub new: CertInfo,
    /// When the old one may be retired.
    pub retire_after: i64,
}

fn previous_dir(dir: &Path) -> PathBuf {
    dir.join(PREVIOUS_DIR)
}

fn corrupt(path: &Path, what: impl ToString) -> store::Error {
    store::Error::Corrupt {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// `next.pem` when a rotation went half live (its key is already `intermediate.key`): the
/// certificate to use with that key.
pub(super) fn staged_cert(dir: &Path) -> Result<Option<String>, Error> {
    if dir.join(NEXT_KEY).exists() {
        // Not live at all: the first rename did not happen.
        return Ok(None);
    }
    Ok(store::read_optional(&dir.join(NEXT_CERT))?)
}

/// The kept generations in `dir`, oldest first, without `current` (a rotation abandoned after
/// it copied the current one there).
pub(super) fn load_previous(dir: &Path, current: &CertInfo) -> Result<Vec<Generation>, Error> {
    let pdir = previous_dir(dir);
    let entries = match std::fs::read_dir(&pdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(store::io_err("read", &pdir)(e).into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(store::io_err("read", &pdir))?.path();
        if path.extension().is_none_or(|e| e != "pem") {
            continue;
        }
        let info = CertInfo::from_pem(&store::read(&path)?).map_err(|e| corrupt(&path, e))?;
        if info.der == current.der {
            continue;
        }
        let rec_path = path.with_extension("json");
        let Some(rec) = store::read_optional(&rec_path)? else {
            // Staged by a rotation that crashed before its record: not a generation.
            continue;
        };
        let rec: Record = serde_json::from_str(&rec).map_err(|e| corrupt(&rec_path, e))?;
        out.push(Generation {
            info,
            rotated_at: rec.rotated_at,
            retire_after: rec.retire_after,
        });
    }
    out.sort_by_key(|g| g.rotated_at);
    Ok(out)
}

/// The intermediate's nameConstraints as rcgen builds them (the new one carries the same).
fn same_constraints(c: &Constraints) -> Result<NameConstraints, Error> {
    let tree = |t: &Subtree| match t {
        Subtree::Dns(s) => Ok(GeneralSubtree::DnsName(s.clone())),
        Subtree::Ip(net, len) => Ok(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
            *net, *len,
        ))),
        Subtree::Other(what) => Err(Error::Policy(format!(
            "the intermediate's nameConstraints hold a {what} subtree, which ca rotate cannot copy"
        ))),
    };
    Ok(NameConstraints {
        permitted_subtrees: c.permitted.iter().map(tree).collect::<Result<_, _>>()?,
        excluded_subtrees: c.excluded.iter().map(tree).collect::<Result<_, _>>()?,
    })
}

impl LocalCa {
    /// The replaced intermediates still kept, oldest first.
    pub fn previous(&self) -> &[Generation] {
        &self.previous
    }

    /// True when `cert_der` was signed by the live intermediate (not by a replaced one): the
    /// gateway's own certificates are re-issued when this turns false.
    pub fn issued_by_current(&self, cert_der: &[u8]) -> bool {
        crypto::signed_by(cert_der, &self.int_der)
    }

    /// The kept generation whose key identifier is `aki` (a leaf's authorityKeyIdentifier).
    pub fn previous_by_aki(&self, aki: &[u8]) -> Option<&Generation> {
        self.previous
            .iter()
            .find(|g| g.info.ski.as_deref() == Some(aki))
    }

    /// True when `intermediate.pem` is no longer the file this CA was opened from (another
    /// process rotated it): the service re-opens the CA.
    pub fn changed_on_disk(&self) -> bool {
        file_stamp(&self.dir) != self.stamp
    }

    /// Stages a rotation: signs a new intermediate with the root key for a new key, with the
    /// live one's name constraints, valid from `now` for [`INTERMEDIATE_LIFETIME`] (at most
    /// to the root's notAfter). The live one goes to `previous/`, to be retired after
    /// `last_leaf` (the latest notAfter of a leaf it signed), or [`RETIRE_SLACK`] plus the
    /// longest lifetime after `now`, whichever is later, and never after its own notAfter.
    ///
    /// Refused when the root key is not here (the operator's own root, or a CA whose key is in
    /// a PKCS#11 token: `ca init` keeps no root key then), naming what is missing.
    pub fn stage_rotation(&self, now: TrustedNow, last_leaf: i64) -> Result<Staged, Error> {
        let now = now.unix();
        let root_key_path = self.dir.join(ROOT_KEY);
        let Some(root_pem) = store::read_optional(&root_key_path)? else {
            return Err(Error::RootOffline(root_key_path));
        };
        if let Some(uri) = &self.cfg.key_uri {
            return Err(Error::Policy(format!(
                "the issuing key is in a PKCS#11 token ({uri}); ca rotate makes file keys only"
            )));
        }
        let root_key = PrivateKey::from_pem(&root_pem).map_err(|e| corrupt(&root_key_path, e))?;
        let root = CertInfo::from_der(&self.root_der)?;
        if !root_key.matches(&root) {
            return Err(corrupt(&root_key_path, "does not match root.pem").into());
        }
        if now < self.int_info.not_before {
            return Err(Error::Clock(format!(
                "the clock ({}) is earlier than the intermediate's notBefore ({})",
                crypto::rfc3339(now),
                crypto::rfc3339(self.int_info.not_before)
            )));
        }
        self.finish_half_commit()?;
        let key = PrivateKey::generate(KeyType::Ec256)?;
        let lifetime = INTERMEDIATE_LIFETIME.min(root.not_after - now);
        if lifetime <= 0 {
            return Err(Error::Policy("the root has expired".into()));
        }
        let mut int = ca_params(&format!("{} Issuing CA", self.cfg.name), now, lifetime)?;
        int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int.name_constraints = Some(same_constraints(&self.int_constraints)?);
        int.use_authority_key_identifier_extension = true;
        let issuer =
            Issuer::from_ca_cert_der(&self.root_der.as_slice().into(), root_key.to_rcgen())?;
        let new_der = int.signed_by(&key.to_rcgen(), &issuer)?.der().to_vec();
        let new = CertInfo::from_der(&new_der)?;

        let longest = i64::try_from(self.cfg.max_lifetime).unwrap_or(i64::MAX / 4);
        let retire_after = last_leaf
            .max(now.saturating_add(longest).saturating_add(RETIRE_SLACK))
            .min(self.int_info.not_after);
        let pdir = previous_dir(&self.dir);
        store::private_dir(&pdir)?;
        let base = pdir.join(self.int_info.serial_hex());
        store::write_atomic(
            &base.with_extension("pem"),
            crypto::pem_block("CERTIFICATE", &self.int_der).as_bytes(),
            store::PUBLIC,
        )?;
        let rec = Record {
            rotated_at: now,
            retire_after,
        };
        let rec = serde_json::to_vec(&rec).map_err(|e| corrupt(&base, e))?;
        store::write_atomic(&base.with_extension("json"), &rec, store::PUBLIC)?;
        // Key first: a certificate is never left without its key.
        store::write_atomic(
            &self.dir.join(NEXT_KEY),
            key.to_pem().as_bytes(),
            store::SECRET,
        )?;
        store::write_atomic(
            &self.dir.join(NEXT_CERT),
            crypto::pem_block("CERTIFICATE", &new_der).as_bytes(),
            store::PUBLIC,
        )?;
        Ok(Staged {
            dir: self.dir.clone(),
            old: self.int_info.clone(),
            new,
            retire_after,
        })
    }

    /// A rotation that went half live (see `staged_cert`): finish it.
    fn finish_half_commit(&self) -> Result<(), Error> {
        let _ = std::fs::remove_file(self.dir.join(NEXT_KEY));
        if self.dir.join(NEXT_CERT).exists() {
            if self.int_der == cert_der_at(&self.dir.join(NEXT_CERT))? {
                rename(&self.dir, NEXT_CERT, INT_CERT)?;
            } else {
                let _ = std::fs::remove_file(self.dir.join(NEXT_CERT));
            }
        }
        Ok(())
    }

    /// Removes a kept generation whose time has come (`ca.retire`): its certificate and record.
    pub fn retire_generation(&self, serial_hex: &str) -> Result<(), Error> {
        let base = previous_dir(&self.dir).join(serial_hex);
        for ext in ["pem", "json"] {
            let p = base.with_extension(ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(store::io_err("remove", &p)(e).into()),
            }
        }
        store::sync_dir(&previous_dir(&self.dir))?;
        Ok(())
    }

    /// The kept generations that may be retired at `now`.
    pub fn generations_due(&self, now: TrustedNow) -> Vec<&Generation> {
        let now = now.unix();
        self.previous
            .iter()
            .filter(|g| now >= g.retire_after)
            .collect()
    }
}

impl Staged {
    /// Makes the new intermediate live: two renames, key first (see the module doc).
    pub fn commit(self) -> Result<(), Error> {
        rename(&self.dir, NEXT_KEY, INT_KEY)?;
        rename(&self.dir, NEXT_CERT, INT_CERT)?;
        Ok(())
    }

    /// Undoes a staged rotation (its audit line could not be written).
    pub fn abandon(self) {
        for f in [NEXT_KEY, NEXT_CERT] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let base = previous_dir(&self.dir).join(self.old.serial_hex());
        for ext in ["json", "pem"] {
            let _ = std::fs::remove_file(base.with_extension(ext));
        }
    }
}

/// Retires every kept generation of `ca` that is due at `now` (no leaf it signed is unexpired):
/// each gets its `ca.retire` audit line through `log` (which the caller holds locked) before its
/// files are removed. Returns the retired serials; on an audit error nothing more is removed.
pub fn retire_due(
    ca: &LocalCa,
    now: TrustedNow,
    log: &mut crate::audit::Audit,
) -> Result<Vec<String>, Error> {
    let mut done = Vec::new();
    for g in ca.generations_due(now) {
        let serial = g.info.serial_hex();
        log.append(
            now.unix(),
            "ca.retire",
            serde_json::json!({"serial": serial, "rotated_at": g.rotated_at,
                "retire_after": g.retire_after, "not_after": g.info.not_after}),
        )
        .map_err(Error::Audit)?;
        ca.retire_generation(&serial)?;
        log::info!("local CA: replaced intermediate {serial} retired (its leaves have expired)");
        done.push(serial);
    }
    Ok(done)
}

fn rename(dir: &Path, from: &str, to: &str) -> Result<(), Error> {
    let from = dir.join(from);
    std::fs::rename(&from, dir.join(to)).map_err(store::io_err("rename", &from))?;
    store::sync_dir(dir)?;
    Ok(())
}

fn cert_der_at(path: &Path) -> Result<Vec<u8>, Error> {
    Ok(CertInfo::from_pem(&store::read(path)?)
        .map_err(|e| corrupt(path, e))?
        .der)
}

/// What identifies `intermediate.pem` on disk (inode, size, mtime): a rotation replaces it.
pub(super) fn file_stamp(dir: &Path) -> Option<(u64, u64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(dir.join(INT_CERT)).ok()?;
    Some((m.ino(), m.size(), m.mtime()))
}

#[cfg(test)]
mod tests;
