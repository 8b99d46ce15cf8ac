//! The leaf inventory, `<state_dir>/leaves.jnl` (an append-only [`Journal`]): one row per device, from its first enrollment
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
//! Writers hold `leaves.jnl.lock` ([`Inventory::open_locked`]) from the read to the write, so
//! `gatecert leaves revoke` and the service never lose each other's changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::journal::{Journal, Kept};
use crate::store;

mod merge;
mod revoke;
mod rows;

use rows::Core;

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

/// RFC 5280 §5.3.1 reason code superseded: an earlier certificate pushed out by
/// [`MAX_EARLIER`].
pub const SUPERSEDED: u8 = 4;

/// How many earlier unexpired certificates a device's row keeps besides its current one. An
/// issuance beyond that revokes the oldest ones (reason superseded, so they go to the CRL, and
/// upstream ones to the upstream CA): the row, and the bytes written per enrollment, stay
/// bounded however often one device enrolls, and revoking the device still reaches every
/// certificate it holds.
pub const MAX_EARLIER: usize = 16;

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

    /// [`Leaf::certs`], out of the row.
    pub fn into_certs(self) -> impl Iterator<Item = Held> {
        std::iter::once(Held {
            serial: self.serial,
            not_after: self.not_after,
            source: self.source,
            key: self.key,
            der: self.der,
        })
        .chain(self.earlier)
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
pub enum Refusal {
    /// The operator disabled the device (`gatecert leaves disable`).
    Disabled(Box<Leaf>),
    /// The key belongs to a certificate revoked for keyCompromise.
    CompromisedKey,
}

impl Refusal {
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
pub enum Standing {
    /// The device's current certificate.
    Current(Leaf),
    /// The certificate the device's current one replaced, still inside its grace window.
    Grace(Leaf),
    /// Replaced, and past its grace window (or replaced twice): it may not re-enroll.
    Superseded(Leaf),
    /// A certificate of a device the operator disabled.
    Disabled(Leaf),
    /// A revoked certificate (of the named device).
    Revoked(Revoked),
    /// No device holds this serial (never recorded, or a device re-enrolled since).
    Unknown,
}

/// The inventory file of earlier versions (`leaves.json`), read to migrate it.
#[derive(Debug, Default, Deserialize)]
struct LegacyFile {
    #[serde(default)]
    leaves: Vec<Leaf>,
    #[serde(default)]
    revoked: Vec<Revoked>,
    #[serde(default)]
    compromised_keys: Vec<String>,
    #[serde(default)]
    upstream_revocations: Vec<UpstreamRevocation>,
    #[serde(default)]
    crl_number: u64,
    #[serde(default)]
    crl_next_update: i64,
    #[serde(default)]
    crl_pending: bool,
}

/// The CRL's bookkeeping (RFC 5280 §5.2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CrlMeta {
    /// The last CRL number used, monotonically increasing.
    number: u64,
    /// nextUpdate of the CRL last published, Unix seconds (0: none yet).
    next_update: i64,
    /// A revocation happened since the CRL was last published.
    pending: bool,
}

/// One record of the inventory's journal. Keys: `d/DEVICE` a device's row, `r/SERIAL` a
/// revoked certificate, `k/KEY` a public key revoked for keyCompromise, `u/SERIAL` an upstream
/// revocation still to send, `crl` the CRL's bookkeeping. Serials are in
/// [`crypto::serial_display`] form.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Rec {
    Leaf(Leaf),
    Revoked(Revoked),
    Key,
    Upstream(UpstreamRevocation),
    Crl(CrlMeta),
}

const CRL_KEY: &str = "crl";

fn device_key(device: &str) -> String {
    format!("d/{device}")
}

fn revoked_key(serial: &str) -> String {
    format!("r/{}", crypto::serial_display(serial))
}

fn upstream_key(serial: &str) -> String {
    format!("u/{}", crypto::serial_display(serial))
}

fn compromised_key(key: &str) -> String {
    format!("k/{}", key.to_ascii_lowercase())
}

/// An inventory error: the file could not be read or written, or a command named what isn't there.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading, locking or writing the inventory.
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

/// The inventory in numbers ([`Inventory::counts`]; in `status` as they are).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Devices with a row.
    pub total: usize,
    /// Of those, whose current certificate the local CA issued by policy.
    pub local: usize,
    /// ... issued by the local CA standing in for the upstream.
    pub interim: usize,
    /// ... issued by the upstream CA.
    pub upstream: usize,
    /// Devices whose current certificate has expired.
    pub expired: usize,
    /// The devices the operator disabled, by name.
    pub disabled: Vec<String>,
    /// The devices the operator revoked, by name.
    pub revoked: Vec<String>,
    /// Revoked certificates not expired yet.
    pub revoked_certificates: usize,
    /// Upstream revocations still to send.
    pub upstream_revocations_pending: usize,
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

/// The last inventory this process opened, kept while nobody holds it: the next open only
/// catches up with what other processes appended (one `stat` when nothing was), so the cost of
/// a request does not grow with the number of devices. An inventory dropped with changes it
/// did not save is not kept.
static CACHE: Kept<Core> = Kept::new();

/// The inventory. One row per device: recording a new leaf updates the device's row.
///
/// Storage: an append-only [`Journal`] (`leaves.jnl`): a change appends the records of what it
/// changed, synced by [`Inventory::save`]; a compaction rewrites it when superseded records
/// outweigh live ones. Readers take no lock; writers hold the journal's lock from the read to
/// the write ([`Inventory::open_locked`]), so `gatecert leaves revoke` and the service never
/// lose each other's changes.
#[derive(Debug)]
pub struct Inventory {
    core: Core,
    /// Rows merged from an older state dir's split inventory when it was read.
    merged: usize,
    /// Not kept in [`CACHE`] on drop (an error left the memory ahead of the file).
    discard: bool,
}

impl Drop for Inventory {
    fn drop(&mut self) {
        if self.discard
            || self.core.migrating
            || self.core.has_failed()
            || !self.core.journal.release_for_keeping()
        {
            return;
        }
        let path = self.core.journal.path().to_path_buf();
        let core = std::mem::replace(&mut self.core, Core::detached(&path));
        CACHE.keep(&path, core);
    }
}

/// Every serial a row holds: the current certificate's, the previous one's, the earlier ones'.
fn serials_of(l: &Leaf) -> impl Iterator<Item = &String> {
    std::iter::once(&l.serial)
        .chain(l.previous.iter().map(|p| &p.serial))
        .chain(l.earlier.iter().map(|h| &h.serial))
}

/// The journal `leaves.jnl` for `path` (either the journal or an older `leaves.json`).
fn journal_path(path: &Path) -> PathBuf {
    path.with_extension("jnl")
}

impl Inventory {
    /// Opens the inventory at `path` (usually `<state_dir>/leaves.jnl`) to read; an absent file
    /// is an empty inventory. A `leaves.json` of an earlier version, and no journal yet, is read
    /// (its split rows merged in memory, see `merge`) and becomes the journal at the first
    /// [`Inventory::save`].
    pub fn open(path: &Path) -> Result<Inventory, store::Error> {
        let jpath = journal_path(path);
        let mut core = Core::load(&jpath)?;
        let mut merged = 0;
        let legacy = path.with_extension("json");
        if !core.journal.exists() && core.journal.is_empty() && legacy.exists() {
            merged = Inventory::read_legacy(&mut core, &legacy)?;
        }
        Ok(Inventory {
            core,
            merged,
            discard: false,
        })
    }

    fn read_legacy(core: &mut Core, legacy: &Path) -> Result<usize, store::Error> {
        let Some(text) = store::read_optional(legacy)? else {
            return Ok(0);
        };
        let mut file: LegacyFile =
            serde_json::from_str(&text).map_err(|e| store::Error::Corrupt {
                path: legacy.to_path_buf(),
                what: format!("not a leaf inventory: {e}"),
            })?;
        let merged = merge::split_rows(&mut file.leaves);
        core.migrating = true;
        for l in file.leaves {
            core.journal.preload(&device_key(&l.device), Rec::Leaf(l));
        }
        for r in file.revoked {
            core.journal
                .preload(&revoked_key(&r.serial), Rec::Revoked(r));
        }
        for k in file.compromised_keys {
            core.journal.preload(&compromised_key(&k), Rec::Key);
        }
        for u in file.upstream_revocations {
            core.journal
                .preload(&upstream_key(&u.serial), Rec::Upstream(u));
        }
        core.journal.preload(
            CRL_KEY,
            Rec::Crl(CrlMeta {
                number: file.crl_number,
                next_update: file.crl_next_update,
                pending: file.crl_pending,
            }),
        );
        Ok(merged)
    }

    /// Opens the inventory to change it: takes the journal's lock (`leaves.jnl.lock`) first
    /// (waiting at most `wait`, or for ever with `None`) and holds it until the value is saved
    /// and dropped.
    pub fn open_locked(path: &Path, wait: Option<Duration>) -> Result<Inventory, store::Error> {
        let mut inv = Inventory::open(path)?;
        if let Err(e) = inv.core.journal.lock(wait) {
            inv.discard = true;
            return Err(e);
        }
        Ok(inv)
    }

    /// How many split rows were merged when this was read (0 once the merge was saved).
    pub fn merged(&self) -> usize {
        self.merged
    }

    /// Makes the changes durable: appends their records and syncs (one `fdatasync`), or writes
    /// a migrated `leaves.json` as the journal and removes it. Compacts the journal when
    /// superseded records outweigh live ones. Needs [`Inventory::open_locked`].
    pub fn save(&mut self) -> Result<(), store::Error> {
        let r = self.save_inner();
        if r.is_err() {
            self.discard = true;
        }
        r
    }

    fn save_inner(&mut self) -> Result<(), store::Error> {
        if let Some(what) = self.core.failed.lock().ok().and_then(|f| f.clone()) {
            // Decided without a row that could not be read: nothing of it is written.
            return Err(store::Error::Corrupt {
                path: self.core.journal.path().to_path_buf(),
                what: format!("not saved: a record could not be read back ({what})"),
            });
        }
        let j = &mut self.core.journal;
        if self.core.migrating {
            j.create_from_memory()?;
            self.core.migrating = false;
            let legacy = j.path().with_extension("json");
            if legacy.exists() {
                std::fs::remove_file(&legacy).map_err(store::io_err("remove", &legacy))?;
                if let Some(dir) = legacy.parent() {
                    store::sync_dir(dir)?;
                }
            }
            self.merged = 0;
            return Ok(());
        }
        j.flush()?;
        j.sync()?;
        if j.wants_compaction() {
            j.compact(|_, _| true)?;
        }
        Ok(())
    }

    /// Records `leaf` as its device's current certificate and saves. The device's row keeps its
    /// earlier unexpired certificates (at most [`MAX_EARLIER`]: the oldest beyond are revoked as
    /// superseded, and returned, for the caller's audit line); a revoked device enrolled again
    /// with a new token is active again (a disabled one stays disabled: EST refuses it before
    /// this).
    pub fn record(&mut self, leaf: Leaf) -> Result<Vec<Revoked>, store::Error> {
        let held = self.core.journal.is_locked();
        let superseded = self.stage_record(leaf)?;
        self.save()?;
        if !held {
            // Opened to read and locked for this write only.
            self.core.journal.unlock()?;
        }
        Ok(superseded)
    }

    /// [`Inventory::record`] without the save: the caller saves (group commit).
    pub fn stage_record(&mut self, leaf: Leaf) -> Result<Vec<Revoked>, store::Error> {
        let r = self.stage_record_inner(leaf);
        if r.is_err() {
            self.discard = true;
        }
        r
    }

    fn stage_record_inner(&mut self, leaf: Leaf) -> Result<Vec<Revoked>, store::Error> {
        let now = leaf.issued_at;
        let device = leaf.device.clone();
        let mut pushed_out = Vec::new();
        let row = match self.core.row(&leaf.device) {
            Some(old) => {
                let mut earlier: Vec<Held> = old
                    .certs()
                    .filter(|h| h.not_after > now && !crypto::same_serial(&h.serial, &leaf.serial))
                    .collect();
                earlier.retain(|h| self.core.revoked(&h.serial).is_none());
                if earlier.len() > MAX_EARLIER {
                    // Newest first: the oldest beyond the bound are superseded.
                    earlier.sort_by_key(|h| std::cmp::Reverse(h.not_after));
                    pushed_out = earlier.split_off(MAX_EARLIER);
                }
                let state = match old.state {
                    DeviceState::Disabled => DeviceState::Disabled,
                    _ => DeviceState::Active,
                };
                let (since, reason) = match state {
                    DeviceState::Disabled => (old.state_since, old.state_reason),
                    _ => (None, None),
                };
                Leaf {
                    earlier,
                    state,
                    state_since: since,
                    state_reason: reason,
                    cuts: old.cuts,
                    ..leaf
                }
            }
            None => leaf,
        };
        self.core.set_row(row)?;
        let mut superseded = Vec::new();
        for h in pushed_out {
            if let Some(r) = self.revoke_held(&device, h, SUPERSEDED, now)? {
                superseded.push(r);
            }
        }
        Ok(superseded)
    }

    /// The standing of the certificate with `serial` at `now` (see the module doc).
    pub fn standing(&self, serial: &str, now: i64) -> Standing {
        if let Some(r) = self.core.revoked(serial) {
            // A disabled device is told so, whichever of its certificates it presents.
            return match self.by_device(&r.device) {
                Some(l) if l.state == DeviceState::Disabled => Standing::Disabled(l),
                _ => Standing::Revoked(r),
            };
        }
        let Some(l) = self.core.holder(serial) else {
            return Standing::Unknown;
        };
        let current = crypto::same_serial(&l.serial, serial);
        let previous = l
            .previous
            .as_ref()
            .filter(|p| crypto::same_serial(&p.serial, serial))
            .map(|p| p.until);
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
        if let Some(until) = previous {
            return if now < until {
                Standing::Grace(l)
            } else {
                Standing::Superseded(l)
            };
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
                serial: l.serial,
                until: now + GRACE,
            });
        }
        l.previous
            .filter(|p| crypto::same_serial(&p.serial, presented) && now < p.until)
    }

    /// Every device's row, by device name (each read back from the journal as the iterator
    /// gets to it: a scan of the whole inventory, not for a request path).
    pub fn list(&self) -> impl Iterator<Item = Leaf> + '_ {
        self.core.rows()
    }

    /// The inventory in numbers at `now`, from what is kept in memory: no row is read.
    pub fn counts(&self, now: i64) -> Counts {
        let mut c = Counts::default();
        for (k, m) in self.core.journal.metas("d/") {
            c.total += 1;
            match m.source {
                Source::Local => c.local += 1,
                Source::Interim => c.interim += 1,
                Source::Upstream => c.upstream += 1,
            }
            c.expired += usize::from(m.not_after <= now);
            let device = || k.strip_prefix("d/").unwrap_or(k).to_owned();
            match m.state {
                DeviceState::Active => {}
                DeviceState::Disabled => c.disabled.push(device()),
                DeviceState::Revoked => c.revoked.push(device()),
            }
        }
        c.revoked_certificates = self
            .core
            .journal
            .metas("r/")
            .filter(|(_, m)| m.not_after > now)
            .count();
        c.upstream_revocations_pending = self.core.journal.keys("u/").count();
        c
    }

    /// How many devices have a row (nothing is read).
    pub fn len(&self) -> usize {
        self.core.journal.keys("d/").count()
    }

    /// Whether no device has a row (nothing is read).
    pub fn is_empty(&self) -> bool {
        self.core.journal.keys("d/").next().is_none()
    }

    /// How many times `device` was cut off (0 for a device not in the inventory).
    pub fn cuts(&self, device: &str) -> u32 {
        self.by_device(device).map_or(0, |l| l.cuts)
    }

    /// The row of `device` (read back from the journal).
    pub fn by_device(&self, device: &str) -> Option<Leaf> {
        self.core.row(device)
    }

    /// The row whose current certificate has `serial`.
    pub fn by_serial(&self, serial: &str) -> Option<Leaf> {
        self.core
            .holder(serial)
            .filter(|l| crypto::same_serial(&l.serial, serial))
    }

    /// The device whose current certificate carries exactly `names` (any order and case). A
    /// scan of every row: for `ca sign`, not for a request path.
    pub fn device_for_names(&self, names: &[String]) -> Option<Leaf> {
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        let want = norm(names);
        self.core
            .rows()
            .find(|l| !want.is_empty() && norm(&l.names) == want)
    }

    /// The device that holds (or held, for a revoked one) the certificate with `serial`.
    pub fn device_of_serial(&self, serial: &str) -> Option<String> {
        let s = serial.trim_start_matches("0x").replace(':', "");
        self.core
            .holder(&s)
            .map(|l| l.device)
            .or_else(|| self.core.revoked(&s).map(|r| r.device))
    }

    /// Leaves of `source` (the broker upgrades `Interim` ones). A scan of every row.
    pub fn by_source(&self, source: Source) -> impl Iterator<Item = Leaf> + '_ {
        self.core.rows().filter(move |l| l.source == source)
    }

    /// Why `device` may not be issued a certificate for the public key `spki_der` now: the
    /// operator disabled it, or the key belongs to a certificate revoked for keyCompromise.
    /// `None` when nothing here refuses it. Every issuance path asks (EST, `ca sign`, ACME).
    pub fn refuses(&self, device: &str, spki_der: &[u8]) -> Option<Refusal> {
        if let Some(l) = self
            .by_device(device)
            .filter(|l| l.state == DeviceState::Disabled)
        {
            return Some(Refusal::Disabled(Box::new(l)));
        }
        let key = crypto::hex(&crypto::sha256(spki_der));
        self.key_compromised(&key)
            .then_some(Refusal::CompromisedKey)
    }

    /// True when `key` (hex SHA-256 of a SubjectPublicKeyInfo) was revoked for keyCompromise.
    pub fn key_compromised(&self, key: &str) -> bool {
        self.core.journal.contains(&compromised_key(key))
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

/// Whether an inventory exists at `path`: its journal, or a `leaves.json` of an earlier version
/// that the first save migrates.
pub fn exists(path: &Path) -> bool {
    journal_path(path).exists() || path.with_extension("json").exists()
}

/// `<state_dir>/leaves.jnl`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("leaves.jnl")
}

#[cfg(test)]
mod tests;
