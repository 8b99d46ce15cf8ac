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

/// The journal and its index, which a process keeps between opens ([`CACHE`]).
#[derive(Debug)]
struct Core {
    /// The keys, where their records are (rows are read back on demand), and the serials.
    journal: Journal<Rec, Serials>,
    /// A `leaves.json` of an earlier version was read into memory, to be written as the
    /// journal by the first [`Inventory::save`].
    migrating: bool,
    /// A record could not be read back (logged when it happened): what was decided without it
    /// must not be saved, and the index is not kept.
    failed: std::sync::Mutex<Option<String>>,
}

/// Every serial a row holds (current, previous, earlier) to the key of the row (`d/DEVICE`),
/// by a 64-bit hash of the serial in [`crypto::serial_display`] form: about 40 bytes a serial,
/// the device's key shared with the journal's. A hash is not the serial: a lookup reads the
/// rows it names and keeps the one that holds the serial (so a collision, or an entry gone
/// stale because another process changed the row, costs a read, never a wrong answer).
#[derive(Debug, Default)]
struct Serials(HashMap<u64, Holders, std::hash::BuildHasherDefault<AsIs>>);

/// The rows a serial hash names: almost always one.
#[derive(Debug)]
enum Holders {
    One(Arc<str>),
    Many(Vec<Arc<str>>),
}

impl Holders {
    fn as_slice(&self) -> &[Arc<str>] {
        match self {
            Holders::One(k) => std::slice::from_ref(k),
            Holders::Many(v) => v,
        }
    }
}

/// A hash of [`crypto::serial_display`]`(serial)`, without making that string.
fn serial_hash(serial: &str) -> u64 {
    use std::hash::Hasher as _;
    let mut s = serial.trim();
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Upper-cased through a buffer: one `write` per serial rather than one per byte.
    let mut buf = [0u8; 64];
    for part in s.as_bytes().chunks(buf.len()) {
        let up = &mut buf[..part.len()];
        up.copy_from_slice(part);
        up.make_ascii_uppercase();
        h.write(up);
    }
    h.finish()
}

/// The serial index's keys are hashes already: used as they are.
#[derive(Clone, Copy, Debug, Default)]
struct AsIs(u64);

impl std::hash::Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Serials {
    fn insert(&mut self, serial: &str, key: &Arc<str>) {
        match self.0.entry(serial_hash(serial)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Holders::One(Arc::clone(key)));
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let h = e.get_mut();
                if h.as_slice().iter().any(|k| k == key) {
                    return;
                }
                let mut v = h.as_slice().to_vec();
                v.push(Arc::clone(key));
                *h = Holders::Many(v);
            }
        }
    }

    fn remove(&mut self, serial: &str, key: &str) {
        let hash = serial_hash(serial);
        let Some(h) = self.0.get_mut(&hash) else {
            return;
        };
        let mut v: Vec<Arc<str>> = h
            .as_slice()
            .iter()
            .filter(|k| &***k != key)
            .cloned()
            .collect();
        match v.len() {
            0 => {
                self.0.remove(&hash);
            }
            1 => *h = Holders::One(v.remove(0)),
            _ => *h = Holders::Many(v),
        }
    }

    /// The keys of the rows that may hold `serial`.
    fn candidates(&self, serial: &str) -> &[Arc<str>] {
        self.0
            .get(&serial_hash(serial))
            .map_or(&[], Holders::as_slice)
    }
}

/// What the inventory keeps of each record besides where it is in the file: what
/// [`Inventory::counts`] counts (for `status`, and the service's alerts at every tick), so
/// that counting reads no row.
#[derive(Clone, Copy, Debug)]
struct Meta {
    /// A row's (current certificate's) or a revoked certificate's notAfter.
    not_after: i64,
    source: Source,
    state: DeviceState,
}

impl crate::journal::Index<Rec> for Serials {
    const KEEP_VALUES: bool = false;
    type Meta = Meta;

    fn meta(value: &Rec) -> Meta {
        match value {
            Rec::Leaf(l) => Meta {
                not_after: l.not_after,
                source: l.source,
                state: l.state,
            },
            Rec::Revoked(r) => Meta {
                not_after: r.not_after,
                source: r.source,
                state: DeviceState::Revoked,
            },
            Rec::Key | Rec::Upstream(_) | Rec::Crl(_) => Meta {
                not_after: 0,
                source: Source::Local,
                state: DeviceState::Active,
            },
        }
    }

    fn add(&mut self, key: &Arc<str>, value: &Rec) {
        if let Rec::Leaf(l) = value {
            for s in serials_of(l) {
                self.insert(s, key);
            }
        }
    }

    fn clear(&mut self) {
        // A new map: the old one's capacity is given back.
        self.0 = HashMap::default();
    }
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

impl Core {
    /// A placeholder that read nothing (what a dropped inventory leaves behind).
    fn detached(path: &Path) -> Core {
        Core {
            journal: Journal::detached(path, store::PUBLIC),
            migrating: false,
            failed: std::sync::Mutex::new(None),
        }
    }

    fn load(path: &Path) -> Result<Core, store::Error> {
        match CACHE.take(path) {
            Some(mut core) => {
                core.journal.refresh()?;
                Ok(core)
            }
            None => Ok(Core {
                journal: Journal::open(path, store::PUBLIC)?,
                migrating: false,
                failed: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Notes that a record could not be read back: logged now, refused by the next save.
    fn fail(&self, e: &store::Error) {
        log::error!("leaf inventory: {e}");
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
    }

    fn has_failed(&self) -> bool {
        self.failed.lock().map_or(true, |f| f.is_some())
    }

    fn read(&self, key: &str) -> Option<Rec> {
        match self.journal.read(key) {
            Ok(r) => r,
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    fn read_range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = Rec> + 'a {
        self.journal
            .read_range(prefix)
            .filter_map(move |r| match r {
                Ok((_, rec)) => Some(rec),
                Err(e) => {
                    self.fail(&e);
                    None
                }
            })
    }

    fn rows(&self) -> impl Iterator<Item = Leaf> + '_ {
        self.read_range("d/").filter_map(|r| match r {
            Rec::Leaf(l) => Some(l),
            _ => None,
        })
    }

    fn row(&self, device: &str) -> Option<Leaf> {
        self.row_at(&device_key(device))
    }

    fn row_at(&self, key: &str) -> Option<Leaf> {
        match self.read(key) {
            Some(Rec::Leaf(l)) => Some(l),
            _ => None,
        }
    }

    /// The row that holds `serial` (as its current, previous or an earlier certificate).
    fn holder(&self, serial: &str) -> Option<Leaf> {
        self.journal
            .index()
            .candidates(serial)
            .iter()
            .filter_map(|k| self.row_at(k))
            .find(|l| serials_of(l).any(|s| crypto::same_serial(s, serial)))
    }

    fn revoked(&self, serial: &str) -> Option<Revoked> {
        match self.read(&revoked_key(serial)) {
            Some(Rec::Revoked(r)) => Some(r),
            _ => None,
        }
    }

    fn crl(&self) -> CrlMeta {
        match self.read(CRL_KEY) {
            Some(Rec::Crl(m)) => m,
            _ => CrlMeta::default(),
        }
    }

    fn stage(&mut self, key: &str, rec: Option<Rec>) -> Result<(), store::Error> {
        if self.migrating {
            // Staged with the migration; written with it.
            match rec {
                Some(r) => self.journal.preload(key, r),
                None => self.journal.preload_remove(key),
            }
            return Ok(());
        }
        if !self.journal.is_locked() {
            // Opened to read: the first change takes the lock (and catches up).
            self.journal.lock(None)?;
        }
        self.journal.stage(key, rec)
    }

    fn set_row(&mut self, leaf: Leaf) -> Result<(), store::Error> {
        let key = device_key(&leaf.device);
        if let Some(old) = self.row(&leaf.device) {
            // Its serials are indexed again (by the journal) from the new row.
            for s in serials_of(&old) {
                self.journal.index_mut().remove(s, &key);
            }
        }
        self.stage(&key, Some(Rec::Leaf(leaf)))
    }

    fn set_crl(&mut self, m: CrlMeta) -> Result<(), store::Error> {
        if self.crl() == m {
            return Ok(());
        }
        self.stage(CRL_KEY, Some(Rec::Crl(m)))
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
    /// (its split rows merged in memory, see [`merge`]) and becomes the journal at the first
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
            Some(l) => l.device,
            None => self
                .device_of_serial(who)
                .ok_or_else(|| Error::NoSuchDevice(who.to_owned()))?,
        };
        let mut out = CutOff {
            device: device.clone(),
            ..CutOff::default()
        };
        let Some(mut row) = self.by_device(&device) else {
            // Known only from the revocation list: already cut off, nothing held.
            return Ok(out);
        };
        self.discard = true; // until saved
        row.state = state;
        row.state_since = Some(now);
        row.cuts = row.cuts.saturating_add(1);
        row.state_reason = Some(note.map_or_else(|| reason_name(reason).to_owned(), str::to_owned));
        let held: Vec<Held> = row.certs().filter(|h| h.not_after > now).collect();
        row.previous = None;
        self.core.set_row(row)?;
        for h in held {
            let upstream = h.source == Source::Upstream && h.der.is_some();
            if let Some(r) = self.revoke_held(&device, h, reason, now)? {
                out.queued_upstream += usize::from(upstream);
                out.revoked.push(r);
            }
        }
        self.discard = false;
        Ok(out)
    }

    /// Revokes the one certificate `held` of `device` (RFC 5280 §5.3.1 `reason`), unless it
    /// already is: a keyCompromise bans its key, an upstream one (with its DER) is queued for
    /// ACME revokeCert, and the CRL is marked pending. Not saved.
    fn revoke_held(
        &mut self,
        device: &str,
        h: Held,
        reason: u8,
        now: i64,
    ) -> Result<Option<Revoked>, store::Error> {
        if self.core.revoked(&h.serial).is_some() {
            return Ok(None);
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
                self.core.stage(&compromised_key(k), Some(Rec::Key))?;
            }
        }
        if h.source == Source::Upstream {
            if let Some(der) = h.der {
                self.core.stage(
                    &upstream_key(&h.serial),
                    Some(Rec::Upstream(UpstreamRevocation {
                        serial: h.serial.clone(),
                        device: device.to_owned(),
                        der,
                        reason,
                        queued_at: now,
                        attempts: 0,
                        last_error: None,
                    })),
                )?;
            }
        }
        self.core
            .stage(&revoked_key(&r.serial), Some(Rec::Revoked(r.clone())))?;
        let mut m = self.core.crl();
        m.pending = true;
        self.core.set_crl(m)?;
        Ok(Some(r))
    }

    /// Revokes one certificate (ACME revokeCert, RFC 8555 §7.6) without cutting its device
    /// off: the device keeps its state and may be issued another. `cert` describes it as
    /// presented (its serial, notAfter and key); the device that holds it in the inventory is
    /// recorded, or none for a certificate no row holds any more. `None`: already revoked (or
    /// the change could not be staged: then nothing is saved). Not saved.
    pub fn revoke_one(&mut self, cert: Held, reason: u8, now: i64) -> Option<Revoked> {
        let held = self.core.holder(&cert.serial).and_then(|l| {
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
        match self.revoke_held(&device, h, reason, now) {
            Ok(r) => r,
            Err(e) => {
                log::error!("leaf inventory: {e}");
                self.discard = true;
                None
            }
        }
    }

    /// `leaves enable`: a disabled device may enroll again (with a new token). Returns false
    /// when it was not disabled. Not saved.
    pub fn enable(&mut self, device: &str, now: i64) -> Result<bool, Error> {
        let mut row = self
            .by_device(device)
            .ok_or_else(|| Error::NoSuchDevice(device.to_owned()))?;
        if row.state != DeviceState::Disabled {
            return Ok(false);
        }
        row.state = DeviceState::Revoked;
        row.state_since = Some(now);
        row.state_reason = Some("enabled again; needs a new token".into());
        self.core.set_row(row)?;
        Ok(true)
    }

    /// The revoked certificates of the local CA that have not expired at `now`: the CRL's
    /// entries (RFC 5280 §5.1.2.6). Upstream certificates are the upstream CA's to list.
    pub fn crl_entries(&self, now: i64) -> impl Iterator<Item = Revoked> + '_ {
        self.revoked()
            .filter(move |r| r.source != Source::Upstream && r.not_after > now)
    }

    /// Every revoked certificate still recorded.
    pub fn revoked(&self) -> impl Iterator<Item = Revoked> + '_ {
        self.core.read_range("r/").filter_map(|r| match r {
            Rec::Revoked(r) => Some(r),
            _ => None,
        })
    }

    /// The next CRL number (RFC 5280 §5.2.3): above the last one recorded, and at least `now`
    /// (Unix seconds), so that numbers keep increasing even if a publication was never saved
    /// (a crash between signing and saving). Not saved.
    pub fn next_crl_number(&mut self, now: i64) -> u64 {
        let now = u64::try_from(now).unwrap_or(0);
        let mut m = self.core.crl();
        m.number = m.number.saturating_add(1).max(now);
        // Only in memory until a save; a reader (no lock) keeps it there.
        if (self.core.journal.is_locked() || self.core.migrating) && self.core.set_crl(m).is_err() {
            self.discard = true;
        }
        m.number
    }

    /// True when the CRL must be signed again at `now`: a revocation since the last one, none
    /// published yet, or less than a quarter of `validity` left before its nextUpdate (the
    /// later of the recorded one and `known_next`, what the caller published since).
    pub fn crl_due(&self, now: i64, validity: u64, known_next: i64) -> bool {
        let quarter = i64::try_from(validity / 4).unwrap_or(i64::MAX);
        let m = self.core.crl();
        let next = m.next_update.max(known_next);
        m.pending || next == 0 || now >= next.saturating_sub(quarter)
    }

    /// A revocation is waiting for the CRL.
    pub fn crl_pending(&self) -> bool {
        self.core.crl().pending
    }

    /// The CRL numbered `number` with this nextUpdate was published. Not saved.
    pub fn crl_published(&mut self, number: u64, next_update: i64) {
        let mut m = self.core.crl();
        m.number = m.number.max(number);
        m.next_update = next_update;
        m.pending = false;
        if self.core.set_crl(m).is_err() {
            self.discard = true;
        }
    }

    /// nextUpdate of the CRL last published (0: none yet).
    pub fn crl_next_update(&self) -> i64 {
        self.core.crl().next_update
    }

    /// Drops revoked entries that expired more than a day before `now` (RFC 5280 §3.3: an
    /// expired certificate may leave the CRL); true when it dropped any. Not saved.
    pub fn prune_revoked(&mut self, now: i64) -> bool {
        let gone: Vec<String> = self
            .revoked()
            .filter(|r| r.not_after + 86_400 <= now)
            .map(|r| revoked_key(&r.serial))
            .collect();
        for k in &gone {
            if self.core.stage(k, None).is_err() {
                self.discard = true;
            }
        }
        !gone.is_empty()
    }

    /// Upstream certificates still to be revoked.
    pub fn upstream_revocations(&self) -> impl Iterator<Item = UpstreamRevocation> + '_ {
        self.core.read_range("u/").filter_map(|r| match r {
            Rec::Upstream(u) => Some(u),
            _ => None,
        })
    }

    /// Ends the upstream revocation of `serial`: done (`Ok`) removes it from the queue, a
    /// failure counts the attempt and keeps it. Not saved.
    pub fn upstream_revocation_result(&mut self, serial: &str, result: Result<(), String>) {
        let key = upstream_key(serial);
        let staged = match result {
            Ok(()) => self.core.stage(&key, None),
            Err(e) => match self.core.read(&key) {
                Some(Rec::Upstream(mut u)) => {
                    u.attempts = u.attempts.saturating_add(1);
                    u.last_error = Some(e);
                    self.core.stage(&key, Some(Rec::Upstream(u)))
                }
                _ => Ok(()),
            },
        };
        if staged.is_err() {
            self.discard = true;
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
