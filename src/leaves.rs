//! The leaf inventory, `<state_dir>/leaves.json`: one row per device, from its first enrollment
//! on, with the certificate it holds now, the unexpired ones it held before, and whether the
//! operator cut it off; the CA's revocation list (what the CRL publishes, RFC 5280 §5); the
//! public keys revoked for keyCompromise; and the upstream revocations still to be sent
//! (RFC 8555 §7.6). Everything that reads or changes it goes through [`Inventory`], so that the
//! storage can change behind it.
//!
//! It also decides who may re-enroll (RFC 7030 §4.2.2 leaves that to server policy): only a
//! device's current certificate, or the certificate it replaced for [`GRACE`] seconds after the
//! replacement, so a device whose re-enrollment reply was lost can retry with the certificate it
//! still holds. Any other certificate is superseded ([`Standing`]); a revoked certificate, or any
//! certificate of a disabled device, never stands.
//!
//! Writers hold `leaves.json.lock` ([`Inventory::open_locked`]) from the read to the write, so
//! `gatecert leaves revoke` and the service never lose each other's changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::store;

mod merge;

/// Who issued a leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The local CA, by policy (standalone or no upstream for leaves).
    #[default]
    Local,
    /// The local CA, standing in while the upstream is unreachable; to be upgraded.
    Interim,
    /// The upstream ACME CA, brokered by the gateway.
    Upstream,
}

impl Source {
    /// The spelling in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Interim => "interim",
            Source::Upstream => "upstream",
        }
    }
}

/// How long a replaced certificate may still re-enroll: 10 minutes, enough for a client to retry
/// a re-enrollment whose reply was lost, short enough that a copied old key cannot keep a second
/// lineage alive.
pub const GRACE: i64 = 10 * 60;

/// RFC 5280 §5.3.1 reason code keyCompromise.
pub const KEY_COMPROMISE: u8 = 1;

/// RFC 5280 §5.3.1 reason code cessationOfOperation (what `leaves disable` records).
pub const CESSATION: u8 = 5;

/// The certificate a re-enrollment replaced, and until when it may still re-enroll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Serial, upper-case hex.
    pub serial: String,
    /// Unix seconds; the grace window ends here and is never extended.
    pub until: i64,
}

/// Whether a device may hold certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Enrolled and in good standing.
    #[default]
    Active,
    /// `leaves disable`: its certificates were revoked and it gets nothing (403) until
    /// `leaves enable` and a new token.
    Disabled,
    /// `leaves revoke`: its certificates were revoked; only a new token enrolls it again.
    Revoked,
}

impl DeviceState {
    /// The spelling in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Active => "active",
            DeviceState::Disabled => "disabled",
            DeviceState::Revoked => "revoked",
        }
    }
}

/// A certificate a device held before its current one, still unexpired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Serial, upper-case hex.
    pub serial: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Who issued it.
    pub source: Source,
    /// hex SHA-256 of its SubjectPublicKeyInfo, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// An upstream certificate's DER, base64: what ACME revokeCert needs (RFC 8555 §7.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub der: Option<String>,
}

/// One sensor: its current certificate and what else it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    /// The device name: the bootstrap token's user at the first enrollment, kept for life.
    pub device: String,
    /// The names in the certificate.
    pub names: Vec<String>,
    /// Serial, upper-case hex.
    pub serial: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Who issued it.
    pub source: Source,
    /// When it was issued, Unix seconds.
    pub issued_at: i64,
    /// The certificate this one replaced by re-enrollment, while it may still re-enroll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// hex SHA-256 of the current certificate's SubjectPublicKeyInfo, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The current certificate's DER, base64, for an upstream one (revokeCert needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub der: Option<String>,
    /// Active, disabled or revoked.
    #[serde(default)]
    pub state: DeviceState,
    /// When the state last changed by the operator, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<i64>,
    /// The reason given with `leaves revoke` / `disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Earlier certificates of this device that have not expired yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Held>,
    /// How many times the device was cut off (`leaves revoke` / `disable`): a request
    /// authorized before a cut finds a different number at its end and is refused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cuts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Leaf {
    /// A newly issued certificate for `device`.
    pub fn new(
        device: &str,
        names: Vec<String>,
        serial: &str,
        not_after: i64,
        source: Source,
        issued_at: i64,
    ) -> Leaf {
        Leaf {
            device: device.to_owned(),
            names,
            serial: serial.to_owned(),
            not_after,
            source,
            issued_at,
            ..Leaf::default()
        }
    }

    /// Every certificate of this device: the current one first, then the earlier ones.
    pub fn certs(&self) -> impl Iterator<Item = Held> + '_ {
        std::iter::once(Held {
            serial: self.serial.clone(),
            not_after: self.not_after,
            source: self.source,
            key: self.key.clone(),
            der: self.der.clone(),
        })
        .chain(self.earlier.iter().cloned())
    }
}

/// A revoked certificate, as the CRL lists it (RFC 5280 §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// Serial, upper-case hex.
    pub serial: String,
    /// The device that held it.
    pub device: String,
    /// notAfter, Unix seconds: the entry leaves the CRL after it (RFC 5280 §3.3).
    pub not_after: i64,
    /// revocationDate, Unix seconds.
    pub revoked_at: i64,
    /// CRLReason code, RFC 5280 §5.3.1.
    pub reason: u8,
    /// Who issued it: `upstream` ones are revoked at the upstream CA, not in our CRL.
    pub source: Source,
}

/// An upstream certificate to revoke with ACME revokeCert (RFC 8555 §7.6), queued until the
/// upstream confirms (or answers alreadyRevoked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRevocation {
    /// Serial, upper-case hex.
    pub serial: String,
    /// The device that held it.
    pub device: String,
    /// The certificate, DER base64.
    pub der: String,
    /// CRLReason code.
    pub reason: u8,
    /// When it was queued, Unix seconds.
    pub queued_at: i64,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure, for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
/// Why the inventory refuses an issuance ([`Inventory::refuses`]).
#[derive(Debug)]
pub enum Refusal<'a> {
    /// The operator disabled the device (`gatecert leaves disable`).
    Disabled(&'a Leaf),
    /// The key belongs to a certificate revoked for keyCompromise.
    CompromisedKey,
}

impl Refusal<'_> {
    /// The reason, as a client is told it.
    pub fn reason(&self) -> String {
        match self {
            Refusal::Disabled(l) => format!(
                "device {} is disabled by the operator since {} ({}); `gatecert leaves enable` \
                 and a new bootstrap token bring it back",
                l.device,
                l.state_since.map_or_else(|| "?".into(), crypto::rfc3339),
                l.state_reason.as_deref().unwrap_or("no reason given"),
            ),
            Refusal::CompromisedKey => "the CSR's public key belongs to a certificate revoked \
                                        for keyCompromise; generate a new key"
                .to_owned(),
        }
    }
}

/// What the inventory says about a certificate presented for re-enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing<'a> {
    /// The device's current certificate.
    Current(&'a Leaf),
    /// The certificate the device's current one replaced, still inside its grace window.
    Grace(&'a Leaf),
    /// Replaced, and past its grace window (or replaced twice): it may not re-enroll.
    Superseded(&'a Leaf),
    /// A certificate of a device the operator disabled.
    Disabled(&'a Leaf),
    /// A revoked certificate (of the named device).
    Revoked(&'a Revoked),
    /// No device holds this serial (never recorded, or a device re-enrolled since).
    Unknown,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    leaves: Vec<Leaf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    revoked: Vec<Revoked>,
    /// hex SHA-256 of public keys revoked for keyCompromise: never certified again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    compromised_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    upstream_revocations: Vec<UpstreamRevocation>,
    /// The last CRL number used (RFC 5280 §5.2.3), monotonically increasing.
    #[serde(default)]
    crl_number: u64,
    /// nextUpdate of the CRL last published, Unix seconds (0: none yet).
    #[serde(default)]
    crl_next_update: i64,
    /// A revocation happened since the CRL was last published.
    #[serde(default)]
    crl_pending: bool,
}

/// An inventory error: the file could not be read or written, or a command named what isn't there.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading, locking or writing `leaves.json`.
    Store(store::Error),
    /// No device (or certificate serial) by that name.
    NoSuchDevice(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Store(_) => f.write_str("leaf inventory"),
            Error::NoSuchDevice(d) => write!(
                f,
                "no device and no certificate serial {d:?} in the leaf inventory (see `gatecert leaves`)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            Error::NoSuchDevice(_) => None,
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

/// What [`Inventory::cut_off`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CutOff {
    /// The device.
    pub device: String,
    /// Certificates newly revoked (local and upstream).
    pub revoked: Vec<Revoked>,
    /// Of those, upstream ones queued for ACME revokeCert.
    pub queued_upstream: usize,
}

/// The inventory. One row per device: recording a new leaf updates the device's row.
#[derive(Debug)]
pub struct Inventory {
    path: PathBuf,
    file: File,
    /// Rows merged from an older state dir's split inventory when it was read.
    merged: usize,
    _lock: Option<store::FileLock>,
}

impl Inventory {
    /// Opens `path` (usually `<state_dir>/leaves.json`) to read; an absent file is an empty
    /// inventory. Split rows of an older inventory are merged in memory (see [`merge`]).
    pub fn open(path: &Path) -> Result<Inventory, store::Error> {
        let mut file = match store::read_optional(path)? {
            None => File {
                version: 2,
                ..File::default()
            },
            Some(text) => serde_json::from_str(&text).map_err(|e| store::Error::Corrupt {
                path: path.to_path_buf(),
                what: format!("not a leaf inventory: {e}"),
            })?,
        };
        let merged = merge::split_rows(&mut file.leaves);
        file.version = 2;
        Ok(Inventory {
            path: path.to_path_buf(),
            file,
            merged,
            _lock: None,
        })
    }

    /// Opens `path` to change it: takes `leaves.json.lock` first (waiting at most `wait`, or for
    /// ever with `None`) and holds it until the value is dropped.
    pub fn open_locked(path: &Path, wait: Option<Duration>) -> Result<Inventory, store::Error> {
        let lock = store::FileLock::acquire(path, wait)?;
        let mut inv = Inventory::open(path)?;
        inv._lock = Some(lock);
        Ok(inv)
    }

    /// How many split rows were merged when this was read (0 once the merge was saved).
    pub fn merged(&self) -> usize {
        self.merged
    }

    /// Writes the file (atomically, only when it changed).
    pub fn save(&mut self) -> Result<(), store::Error> {
        let json = serde_json::to_vec_pretty(&self.file).map_err(|e| store::Error::Corrupt {
            path: self.path.clone(),
            what: format!("cannot serialise: {e}"),
        })?;
        store::write_if_changed(&self.path, &json, store::PUBLIC)?;
        self.merged = 0;
        Ok(())
    }

    /// Records `leaf` as its device's current certificate and writes the file. The device's
    /// row keeps its earlier unexpired certificates; a revoked device enrolled again with a new
    /// token is active again (a disabled one stays disabled: EST refuses it before this).
    pub fn record(&mut self, leaf: Leaf) -> Result<(), store::Error> {
        let now = leaf.issued_at;
        match self
            .file
            .leaves
            .iter_mut()
            .find(|l| l.device == leaf.device)
        {
            Some(old) => {
                let mut earlier: Vec<Held> = old
                    .certs()
                    .filter(|h| h.not_after > now && !crypto::same_serial(&h.serial, &leaf.serial))
                    .collect();
                earlier.retain(|h| !self.file.revoked.iter().any(|r| r.serial == h.serial));
                let state = match old.state {
                    DeviceState::Disabled => DeviceState::Disabled,
                    _ => DeviceState::Active,
                };
                let (since, reason) = match state {
                    DeviceState::Disabled => (old.state_since, old.state_reason.clone()),
                    _ => (None, None),
                };
                *old = Leaf {
                    earlier,
                    state,
                    state_since: since,
                    state_reason: reason,
                    cuts: old.cuts,
                    ..leaf
                };
            }
            None => self.file.leaves.push(leaf),
        }
        self.file.leaves.sort_by(|a, b| a.device.cmp(&b.device));
        self.save()
    }

    /// The standing of the certificate with `serial` at `now` (see the module doc).
    pub fn standing(&self, serial: &str, now: i64) -> Standing<'_> {
        if let Some(r) = self
            .file
            .revoked
            .iter()
            .find(|r| crypto::same_serial(&r.serial, serial))
        {
            // A disabled device is told so, whichever of its certificates it presents.
            return match self.by_device(&r.device) {
                Some(l) if l.state == DeviceState::Disabled => Standing::Disabled(l),
                _ => Standing::Revoked(r),
            };
        }
        for l in &self.file.leaves {
            let current = crypto::same_serial(&l.serial, serial);
            let previous = l
                .previous
                .as_ref()
                .filter(|p| crypto::same_serial(&p.serial, serial));
            let earlier = l
                .earlier
                .iter()
                .any(|h| crypto::same_serial(&h.serial, serial));
            if (current || previous.is_some() || earlier) && l.state == DeviceState::Disabled {
                return Standing::Disabled(l);
            }
            if current {
                return Standing::Current(l);
            }
            if let Some(p) = previous {
                return if now < p.until {
                    Standing::Grace(l)
                } else {
                    Standing::Superseded(l)
                };
            }
        }
        Standing::Unknown
    }

    /// The `previous` for a leaf that replaces `presented` (the serial of the client certificate
    /// of a re-enrollment) on `device` at `now`: the current certificate re-enrolling starts a
    /// grace window; the previous one re-enrolling inside its window keeps that window (never
    /// extended); anything else has none.
    pub fn previous_for(&self, device: &str, presented: &str, now: i64) -> Option<Previous> {
        let l = self.by_device(device)?;
        if crypto::same_serial(&l.serial, presented) {
            return Some(Previous {
                serial: l.serial.clone(),
                until: now + GRACE,
            });
        }
        l.previous
            .clone()
            .filter(|p| crypto::same_serial(&p.serial, presented) && now < p.until)
    }

    /// Every device's row, by device name.
    pub fn list(&self) -> &[Leaf] {
        &self.file.leaves
    }

    /// How many times `device` was cut off (0 for a device not in the inventory).
    pub fn cuts(&self, device: &str) -> u32 {
        self.by_device(device).map_or(0, |l| l.cuts)
    }

    /// The row of `device`.
    pub fn by_device(&self, device: &str) -> Option<&Leaf> {
        self.file.leaves.iter().find(|l| l.device == device)
    }

    /// The device whose current certificate carries exactly `names` (any order and case).
    pub fn device_for_names(&self, names: &[String]) -> Option<&Leaf> {
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        let want = norm(names);
        self.file
            .leaves
            .iter()
            .find(|l| !want.is_empty() && norm(&l.names) == want)
    }

    /// The device that holds (or held, for a revoked one) the certificate with `serial`.
    pub fn device_of_serial(&self, serial: &str) -> Option<&str> {
        let s = serial.trim_start_matches("0x").replace(':', "");
        self.file
            .leaves
            .iter()
            .find(|l| {
                l.certs().any(|h| crypto::same_serial(&h.serial, &s))
                    || l.previous
                        .as_ref()
                        .is_some_and(|p| crypto::same_serial(&p.serial, &s))
            })
            .map(|l| l.device.as_str())
            .or_else(|| {
                self.file
                    .revoked
                    .iter()
                    .find(|r| crypto::same_serial(&r.serial, &s))
                    .map(|r| r.device.as_str())
            })
    }

    /// Leaves of `source` (the broker upgrades `Interim` ones).
    pub fn by_source(&self, source: Source) -> impl Iterator<Item = &Leaf> {
        self.file.leaves.iter().filter(move |l| l.source == source)
    }

    /// True when `key` (hex SHA-256 of a SubjectPublicKeyInfo) was revoked for keyCompromise.
    /// Why `device` may not be issued a certificate for the public key `spki_der` now: the
    /// operator disabled it, or the key belongs to a certificate revoked for keyCompromise.
    /// `None` when nothing here refuses it. Every issuance path asks (EST, `ca sign`, ACME).
    pub fn refuses(&self, device: &str, spki_der: &[u8]) -> Option<Refusal<'_>> {
        if let Some(l) = self
            .by_device(device)
            .filter(|l| l.state == DeviceState::Disabled)
        {
            return Some(Refusal::Disabled(l));
        }
        let key = crypto::hex(&crypto::sha256(spki_der));
        self.key_compromised(&key)
            .then_some(Refusal::CompromisedKey)
    }

    pub fn key_compromised(&self, key: &str) -> bool {
        self.file
            .compromised_keys
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
    }

    /// Cuts `who` (a device name, or the serial of any certificate it holds) off at `now`:
    /// every unexpired certificate of the device is revoked with `reason` (listed in the CRL,
    /// or queued for upstream revocation), a keyCompromise reason blocks their public keys for
    /// good, and the device's state becomes `state` (`Revoked` or `Disabled`). Not saved: call
    /// [`Inventory::save`] (after regenerating the CRL, under the same lock).
    pub fn cut_off(
        &mut self,
        who: &str,
        state: DeviceState,
        reason: u8,
        note: Option<&str>,
        now: i64,
    ) -> Result<CutOff, Error> {
        let device = match self.by_device(who) {
            Some(l) => l.device.clone(),
            None => self
                .device_of_serial(who)
                .map(str::to_owned)
                .ok_or_else(|| Error::NoSuchDevice(who.to_owned()))?,
        };
        let mut out = CutOff {
            device: device.clone(),
            ..CutOff::default()
        };
        let Some(row) = self.file.leaves.iter_mut().find(|l| l.device == device) else {
            // Known only from the revocation list: already cut off, nothing held.
            return Ok(out);
        };
        row.state = state;
        row.state_since = Some(now);
        row.cuts = row.cuts.saturating_add(1);
        row.state_reason = Some(note.map_or_else(|| reason_name(reason).to_owned(), str::to_owned));
        let held: Vec<Held> = row.certs().filter(|h| h.not_after > now).collect();
        row.previous = None;
        let queued = self.file.upstream_revocations.len();
        for h in held {
            out.revoked
                .extend(self.revoke_held(&device, h, reason, now));
        }
        out.queued_upstream = self.file.upstream_revocations.len() - queued;
        Ok(out)
    }

    /// Revokes the one certificate `held` of `device` (RFC 5280 §5.3.1 `reason`), unless it
    /// already is: a keyCompromise bans its key, an upstream one (with its DER) is queued for
    /// ACME revokeCert, and the CRL is marked pending. Not saved.
    fn revoke_held(&mut self, device: &str, h: Held, reason: u8, now: i64) -> Option<Revoked> {
        if self
            .file
            .revoked
            .iter()
            .any(|r| crypto::same_serial(&r.serial, &h.serial))
        {
            return None;
        }
        let r = Revoked {
            serial: h.serial.clone(),
            device: device.to_owned(),
            not_after: h.not_after,
            revoked_at: now,
            reason,
            source: h.source,
        };
        if reason == KEY_COMPROMISE {
            if let Some(k) = &h.key {
                if !self.file.compromised_keys.contains(k) {
                    self.file.compromised_keys.push(k.clone());
                }
            }
        }
        if h.source == Source::Upstream {
            if let Some(der) = h.der {
                self.file.upstream_revocations.push(UpstreamRevocation {
                    serial: h.serial.clone(),
                    device: device.to_owned(),
                    der,
                    reason,
                    queued_at: now,
                    attempts: 0,
                    last_error: None,
                });
            }
        }
        self.file.revoked.push(r.clone());
        self.file.crl_pending = true;
        Some(r)
    }

    /// Revokes one certificate (ACME revokeCert, RFC 8555 §7.6) without cutting its device
    /// off: the device keeps its state and may be issued another. `cert` describes it as
    /// presented (its serial, notAfter and key); the device that holds it in the inventory is
    /// recorded, or none for a certificate no row holds any more. `None`: already revoked.
    /// Not saved.
    pub fn revoke_one(&mut self, cert: Held, reason: u8, now: i64) -> Option<Revoked> {
        let held = self.file.leaves.iter().find_map(|l| {
            l.certs()
                .find(|h| crypto::same_serial(&h.serial, &cert.serial))
                .map(|h| (l.device.clone(), h))
        });
        let (device, h) = match held {
            Some((device, h)) => (
                device,
                Held {
                    key: h.key.or(cert.key.clone()),
                    ..h
                },
            ),
            None => (String::new(), cert),
        };
        self.revoke_held(&device, h, reason, now)
    }

    /// `leaves enable`: a disabled device may enroll again (with a new token). Returns false
    /// when it was not disabled. Not saved.
    pub fn enable(&mut self, device: &str, now: i64) -> Result<bool, Error> {
        let row = self
            .file
            .leaves
            .iter_mut()
            .find(|l| l.device == device)
            .ok_or_else(|| Error::NoSuchDevice(device.to_owned()))?;
        if row.state != DeviceState::Disabled {
            return Ok(false);
        }
        row.state = DeviceState::Revoked;
        row.state_since = Some(now);
        row.state_reason = Some("enabled again; needs a new token".into());
        Ok(true)
    }

    /// The revoked certificates of the local CA that have not expired at `now`: the CRL's
    /// entries (RFC 5280 §5.1.2.6). Upstream certificates are the upstream CA's to list.
    pub fn crl_entries(&self, now: i64) -> impl Iterator<Item = &Revoked> {
        self.file
            .revoked
            .iter()
            .filter(move |r| r.source != Source::Upstream && r.not_after > now)
    }

    /// Every revoked certificate still recorded.
    pub fn revoked(&self) -> &[Revoked] {
        &self.file.revoked
    }

    /// The next CRL number (RFC 5280 §5.2.3): above the last one recorded, and at least `now`
    /// (Unix seconds), so that numbers keep increasing even when a periodic re-signing is not
    /// saved here (it changes nothing else: no flash write for it). Not saved.
    pub fn next_crl_number(&mut self, now: i64) -> u64 {
        let now = u64::try_from(now).unwrap_or(0);
        self.file.crl_number = self.file.crl_number.saturating_add(1).max(now);
        self.file.crl_number
    }

    /// True when the CRL must be signed again at `now`: a revocation since the last one, none
    /// published yet, or less than a quarter of `validity` left before its nextUpdate (the
    /// later of the recorded one and `known_next`, what the caller published since).
    pub fn crl_due(&self, now: i64, validity: u64, known_next: i64) -> bool {
        let quarter = i64::try_from(validity / 4).unwrap_or(i64::MAX);
        let next = self.file.crl_next_update.max(known_next);
        self.file.crl_pending || next == 0 || now >= next.saturating_sub(quarter)
    }

    /// A revocation is waiting for the CRL.
    pub fn crl_pending(&self) -> bool {
        self.file.crl_pending
    }

    /// The CRL numbered `number` with this nextUpdate was published. Not saved.
    pub fn crl_published(&mut self, number: u64, next_update: i64) {
        self.file.crl_number = self.file.crl_number.max(number);
        self.file.crl_next_update = next_update;
        self.file.crl_pending = false;
    }

    /// nextUpdate of the CRL last published (0: none yet).
    pub fn crl_next_update(&self) -> i64 {
        self.file.crl_next_update
    }

    /// Drops revoked entries that expired more than a day before `now` (RFC 5280 §3.3: an
    /// expired certificate may leave the CRL); true when it dropped any. Not saved.
    pub fn prune_revoked(&mut self, now: i64) -> bool {
        let before = self.file.revoked.len();
        self.file.revoked.retain(|r| r.not_after + 86_400 > now);
        self.file.revoked.len() != before
    }

    /// Upstream certificates still to be revoked.
    pub fn upstream_revocations(&self) -> &[UpstreamRevocation] {
        &self.file.upstream_revocations
    }

    /// Ends the upstream revocation of `serial`: done (`Ok`) removes it from the queue, a
    /// failure counts the attempt and keeps it. Not saved.
    pub fn upstream_revocation_result(&mut self, serial: &str, result: Result<(), String>) {
        match result {
            Ok(()) => self
                .file
                .upstream_revocations
                .retain(|u| !crypto::same_serial(&u.serial, serial)),
            Err(e) => {
                if let Some(u) = self
                    .file
                    .upstream_revocations
                    .iter_mut()
                    .find(|u| crypto::same_serial(&u.serial, serial))
                {
                    u.attempts = u.attempts.saturating_add(1);
                    u.last_error = Some(e);
                }
            }
        }
    }
}

/// The RFC 5280 §5.3.1 name of a CRLReason code.
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unknown",
    }
}

/// `<state_dir>/leaves.json`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("leaves.json")
}

#[cfg(test)]
mod tests;
