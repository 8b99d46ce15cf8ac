//! Bootstrap tokens: one-time (or few-time) secrets that let a new sensor make its first EST
//! enrollment (RFC 7030 §3.2.3 HTTP-based client authentication).
//!
//! `<state_dir>/tokens.jnl` (0600, a [`Journal`]: one record appended per change, synced before
//! the call returns; compaction prunes used-up and expired tokens) stores per device only a salted hash:
//! `HMAC-SHA-256(key = salt, msg = device || 0x00 || token)`, plus the names the device may ask
//! for, the expiry, the uses left and a revoked flag. The token itself is shown once, by `add`.
//!
//! ## One use, one certificate, under concurrency
//!
//! An enrollment **claims** one use of the token before anything is parked or sent upstream
//! ([`Tokens::claim`]): the uses left in the file, minus the claims already held, must cover it,
//! so a `--uses 1` token has at most one enrollment in progress. The claim is **committed**
//! ([`Tokens::commit`]) under the lock on `tokens.jnl.lock`, with every check repeated (the
//! token not revoked, replaced or expired, a use left), just before the certificate goes out;
//! only then does `uses_left` fall. An enrollment that ends without a certificate **releases**
//! its claim, and the use is free again.
//!
//! Claims live in the memory of the one service that owns the state directory (its state lock
//! keeps a second one out). A killed service leaves nothing behind: a certificate only leaves
//! after its commit, so an uncommitted claim delivered nothing, and forgetting it neither burns
//! a use nor grants an extra one. A client told `202` + `Retry-After` (RFC 7030 §4.2.3) keeps its
//! claim, bound to its device and public key, for [`RETRY_HOLD`] seconds: its retry continues
//! that claim instead of taking a second use.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::journal::{self, Journal};
use crate::store;

/// An error reading or writing the token file.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing `tokens.jnl` failed, or it does not parse.
    Store(store::Error),
    /// The system RNG failed while making a token.
    Rng,
    /// A bad argument (empty device, zero uses, a device name with control characters...).
    Invalid(String),
    /// A commit for a device that has no token.
    UnknownDevice(String),
    /// Another process holds `tokens.jnl.lock` (a `gatecert token` command, or one that is
    /// stuck) and it stayed held for the whole bounded wait.
    Busy(PathBuf),
    /// A commit found the token no longer good for this claim.
    Denied(Denial),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(_) => f.write_str("bootstrap token store"),
            Error::Rng => f.write_str("system random number generator failed"),
            Error::Invalid(m) => write!(f, "invalid token request: {m}"),
            Error::UnknownDevice(d) => write!(f, "no bootstrap token for device {d:?}"),
            Error::Busy(p) => write!(f, "{} is held by another process", p.display()),
            Error::Denied(d) => write!(f, "token refused: {d}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            Error::Denied(d) => Some(d),
            _ => None,
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

/// What a valid token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The device the token was made for.
    pub device: String,
    /// The names it may enroll for.
    pub names: Vec<String>,
}

/// Why a token was refused. `reason()` is safe for the audit log: it never holds the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// No token exists for this device.
    UnknownDevice,
    /// The token does not match.
    BadToken,
    /// The token's expiry has passed.
    Expired,
    /// The token was revoked.
    Revoked,
    /// The token has no uses left.
    Exhausted,
    /// Every use left is claimed by an enrollment in progress.
    InUse,
    /// The token was replaced (`token add` again) while an enrollment held a claim on it.
    Replaced,
    /// The device's record could not be read back from `tokens.jnl` (logged): nothing can be
    /// said about its token, so it is refused (a server error, not the client's).
    Unreadable,
}

impl Denial {
    /// A short reason for the audit log and the EST error body.
    pub fn reason(self) -> &'static str {
        match self {
            Denial::UnknownDevice => "unknown device",
            Denial::BadToken => "wrong token",
            Denial::Expired => "token expired",
            Denial::Revoked => "token revoked",
            Denial::Exhausted => "token already used",
            Denial::InUse => "token in use by an enrollment in progress",
            Denial::Replaced => "token was replaced",
            Denial::Unreadable => "token store unreadable",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Denial {}

/// A token as `token list` shows it: no hash, no salt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Device.
    pub device: String,
    /// Names it may enroll for.
    pub names: Vec<String>,
    /// Expiry, Unix seconds.
    pub expires: i64,
    /// Uses left.
    pub uses_left: u32,
    /// Revoked by `token revoke`.
    pub revoked: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    device: String,
    names: Vec<String>,
    /// base64url, 16 bytes.
    salt: String,
    /// hex HMAC-SHA-256(salt, device || 0 || token).
    hash: String,
    expires: i64,
    uses_left: u32,
    revoked: bool,
    created: i64,
    /// The ACME External Account Binding key id, for a token made with `--acme` (its token is
    /// the EAB MAC key, derived from the kid: see `acme_server::eab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eab_kid: Option<String>,
}

/// What the store keeps in memory of each token (its record stays in the file, read back on
/// demand): enough to count tokens ([`Tokens::counts`]) and decide pruning
/// ([`Tokens::maintain`]) without reading any record.
/// Eight bytes, so that a slot of the journal's map takes 24 bytes, not 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    /// The expiry, Unix seconds, clamped to `0..=u32::MAX` ([`Meta::expired`]).
    expires: u32,
    /// [`Meta::USES`], [`Meta::REVOKED`], [`Meta::EAB`].
    flags: u8,
}

impl Meta {
    /// Uses left.
    const USES: u8 = 1;
    /// Revoked.
    const REVOKED: u8 = 2;
    /// Made with `--acme` (has an EAB key id).
    const EAB: u8 = 4;

    fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether the token has expired at `now`, as `now >= expires` on the record says for any
    /// `now` before 2106 (an expiry past `u32::MAX` seconds is kept as never).
    fn expired(self, now: i64) -> bool {
        self.expires != u32::MAX && now >= i64::from(self.expires)
    }
}

/// The store's index: the devices of the EAB key ids, by a hash of the kid (a few bytes per
/// ACME token; a lookup reads the records it points to and checks their kid).
#[derive(Debug, Default)]
struct Kids(BTreeSet<(u64, Arc<str>)>);

fn kid_hash(kid: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::hash::DefaultHasher::new();
    kid.hash(&mut h);
    h.finish()
}

impl journal::Index<Entry> for Kids {
    const KEEP_VALUES: bool = false;
    type Meta = Meta;

    fn meta(e: &Entry) -> Meta {
        let flag = |on: bool, f: u8| if on { f } else { 0 };
        Meta {
            expires: u32::try_from(e.expires.max(0)).unwrap_or(u32::MAX),
            flags: flag(e.uses_left > 0, Meta::USES)
                | flag(e.revoked, Meta::REVOKED)
                | flag(e.eab_kid.is_some(), Meta::EAB),
        }
    }

    fn add(&mut self, key: &Arc<str>, e: &Entry) {
        if let Some(kid) = &e.eab_kid {
            self.0.insert((kid_hash(kid), Arc::clone(key)));
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// How many tokens are in each state at a given time (see [`Tokens::counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Usable now.
    pub active: usize,
    /// Past their expiry (and not revoked).
    pub expired: usize,
    /// No uses left (and neither revoked nor expired).
    pub exhausted: usize,
    /// Revoked.
    pub revoked: usize,
}

type Store = Journal<Entry, Kids>;

#[derive(Debug, Default, Deserialize)]
struct LegacyFile {
    tokens: Vec<Entry>,
}

/// The bootstrap token store: a [`Journal`] of entries keyed by device.
#[derive(Debug)]
pub struct Tokens {
    journal: Store,
    /// Set by [`Tokens::set_batch`]: changes are appended but synced only when it ends.
    batch: bool,
    /// The journal's length when [`Tokens::maintain`] last looked for garbage.
    checked_at: u64,
}

/// The store this process opened last, kept between opens (see [`journal::Kept`]).
static KEPT: journal::Kept<(Store, u64)> = journal::Kept::new();

impl Drop for Tokens {
    fn drop(&mut self) {
        if !self.journal.release_for_keeping() {
            return;
        }
        let path = self.journal.path().to_path_buf();
        let j = std::mem::replace(&mut self.journal, Journal::detached(&path, store::SECRET));
        KEPT.keep(&path, (j, self.checked_at));
    }
}

impl Tokens {
    /// Opens `path` (usually `<state_dir>/tokens.jnl`); an absent file is an empty store. A
    /// `tokens.json` of an earlier version next to it, and no journal yet, is migrated first
    /// (under the lock, written atomically, then removed).
    pub fn open(path: &Path) -> Result<Tokens, Error> {
        let (journal, checked_at) = match KEPT.take(path) {
            Some((mut j, at)) => {
                j.refresh()?;
                (j, at)
            }
            None => (Journal::open(path, store::SECRET)?, 0),
        };
        let mut t = Tokens {
            journal,
            batch: false,
            checked_at,
        };
        let legacy = legacy_path(path);
        if !t.journal.exists() && legacy != path && legacy.exists() {
            t.migrate(&legacy)?;
        }
        Ok(t)
    }

    fn migrate(&mut self, legacy: &Path) -> Result<(), Error> {
        self.journal.lock(None)?;
        if !self.journal.exists() {
            if let Some(text) = store::read_optional(legacy)? {
                let file: LegacyFile =
                    serde_json::from_str(&text).map_err(|e| store::Error::Corrupt {
                        path: legacy.to_path_buf(),
                        what: format!("not a token file: {e}"),
                    })?;
                self.journal
                    .create_from(file.tokens.iter().map(|e| (e.device.as_str(), e)))?;
                std::fs::remove_file(legacy).map_err(store::io_err("remove", legacy))?;
                if let Some(dir) = legacy.parent() {
                    store::sync_dir(dir)?;
                }
            }
        }
        self.journal.unlock()?;
        Ok(())
    }

    /// Like [`Tokens::open`], for changing the store: waits for an exclusive lock on
    /// `<path>.lock` first and holds it until the value is dropped. For the command line; the
    /// service uses [`Tokens::open_locked_within`].
    pub fn open_locked(path: &Path) -> Result<Tokens, Error> {
        let mut t = Tokens::open(path)?;
        t.journal.lock(None)?;
        Ok(t)
    }

    /// Like [`Tokens::open_locked`], but gives up with [`Error::Busy`] when the lock is still held
    /// after `wait`: the service's loop must never block on a stuck `gatecert token`.
    pub fn open_locked_within(path: &Path, wait: Duration) -> Result<Tokens, Error> {
        let mut t = Tokens::open(path)?;
        t.lock_within(wait)?;
        Ok(t)
    }

    /// Takes the lock of a store kept open (the service's), waiting at most `wait`, and catches
    /// up with what other processes appended.
    pub fn lock_within(&mut self, wait: Duration) -> Result<(), Error> {
        match self.journal.lock(Some(wait)) {
            Err(store::Error::Locked(p)) => Err(Error::Busy(p)),
            r => Ok(r?),
        }
    }

    /// Releases the lock of [`Tokens::lock_within`] (what was written is already durable).
    pub fn unlock(&mut self) -> Result<(), Error> {
        Ok(self.journal.unlock()?)
    }

    /// Catches up with what other processes appended (one `stat` when nothing was).
    pub fn refresh(&mut self) -> Result<(), Error> {
        Ok(self.journal.refresh()?)
    }

    /// Durable syncs done by this value.
    pub fn syncs(&self) -> u64 {
        self.journal.syncs()
    }

    /// With `on`, changes made under the lock of [`Tokens::open_locked`] are appended but not
    /// synced; turning it off syncs them all at once (an import of many tokens: one sync).
    pub fn set_batch(&mut self, on: bool) -> Result<(), Error> {
        self.batch = on;
        if !on {
            self.journal.sync()?;
        }
        Ok(())
    }

    /// Compacts the journal when superseded records outweigh live ones, pruning tokens used up
    /// or expired at `now` (they can never enroll again; an ACME EAB token is kept until it is
    /// revoked, since its account lives on). Needs the lock.
    /// The scan that counts prunable tokens runs only after the journal grew by a quarter of its
    /// live bytes (at least [`journal::COMPACT_MIN_GARBAGE`]) since the last one, so its cost
    /// per call stays flat however many tokens there are.
    pub fn maintain(&mut self, now: i64) -> Result<(), Error> {
        let step = (self.journal.live() / 4).max(journal::COMPACT_MIN_GARBAGE);
        if self.journal.appended() < self.checked_at.saturating_add(step) {
            return Ok(());
        }
        self.checked_at = self.journal.appended();
        // An EAB token stays while it is not revoked: its ACME account lives on after the uses.
        // Decided on what is kept in memory of each token: no record is read.
        let keep = |_: &str, m: Meta| {
            (m.has(Meta::USES) && !m.expired(now)) || (m.has(Meta::EAB) && !m.has(Meta::REVOKED))
        };
        if self.journal.wants_compaction_by(keep) {
            self.journal.compact_by(keep)?;
            self.checked_at = self.journal.appended();
        }
        Ok(())
    }

    /// Makes a token for `device` (replacing any earlier one), good for `uses` enrollments of
    /// `names` until `now + ttl`. Returns the token, which is not stored and cannot be shown again.
    pub fn add(
        &mut self,
        device: &str,
        names: &[String],
        ttl: u64,
        uses: u32,
        now: i64,
    ) -> Result<String, Error> {
        let (entry, token) = fresh(device, names, ttl, uses, now, None)?;
        self.save(&entry)?;
        Ok(token)
    }

    /// Like [`Tokens::add`], for an ACME leaf (RFC 8555 §7.3.4 External Account Binding): makes
    /// a random key id and a token `mac_key(kid)`, which is the EAB MAC key. Only its salted hash
    /// is stored, with the kid. Returns `(kid, token)`.
    pub fn add_eab(
        &mut self,
        device: &str,
        names: &[String],
        ttl: u64,
        uses: u32,
        now: i64,
        mac_key: &dyn Fn(&str) -> String,
    ) -> Result<(String, String), Error> {
        let (entry, token) = fresh(device, names, ttl, uses, now, Some(mac_key))?;
        self.save(&entry)?;
        Ok((entry.eab_kid.unwrap_or_default(), token))
    }

    /// The device whose token has the EAB key id `kid`: a lookup in the index of kids, and a
    /// read of the record it points to (checked: its kid is `kid`). An error when a record can't
    /// be read back. Once per ACME account registration.
    pub fn device_of_eab_kid(&self, kid: &str) -> Result<Option<String>, Error> {
        let h = kid_hash(kid);
        let from = (h, Arc::<str>::from(""));
        for (hh, device) in self.journal.index().0.range(from..) {
            if *hh != h {
                break;
            }
            if let Some(e) = self.journal.read(device)? {
                if e.eab_kid.as_deref() == Some(kid) {
                    return Ok(Some(e.device));
                }
            }
        }
        Ok(None)
    }

    /// `device`'s entry, read back from the file ([`Denial::UnknownDevice`] when it has none);
    /// a record that can't be read back is logged and [`Denial::Unreadable`]: refused, never
    /// guessed.
    fn entry(&self, device: &str) -> Result<Entry, Denial> {
        match self.journal.read(device) {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(Denial::UnknownDevice),
            Err(e) => {
                log::error!("{}", crate::errchain::one_line(&e));
                Err(Denial::Unreadable)
            }
        }
    }

    /// How many tokens are in each state at `now`, counted from what is kept in memory of each
    /// (`Meta`): no record is read.
    pub fn counts(&self, now: i64) -> Counts {
        let mut c = Counts::default();
        for (_, m) in self.journal.metas("") {
            if m.has(Meta::REVOKED) {
                c.revoked += 1;
            } else if m.expired(now) {
                c.expired += 1;
            } else if !m.has(Meta::USES) {
                c.exhausted += 1;
            } else {
                c.active += 1;
            }
        }
        c
    }

    /// For an ACME account admitted with EAB key id `kid`: the names its device's token grants,
    /// while that token is the same one (not replaced) and not revoked. Expiry and uses do not
    /// matter here: they bounded the admission, the account lives on.
    pub fn eab_grant(&self, device: &str, kid: &str) -> Result<Grant, Denial> {
        let e = self.entry(device)?;
        if e.eab_kid.as_deref() != Some(kid) {
            return Err(Denial::Replaced);
        }
        if e.revoked {
            return Err(Denial::Revoked);
        }
        Ok(Grant {
            device: e.device,
            names: e.names,
        })
    }

    /// Checks `token` for `device`. The token is compared (in constant time) before anything
    /// else is said about the device's token, so a caller without it learns only whether the
    /// device exists. One record read back.
    pub fn check(&self, device: &str, token: &str, now: i64) -> Result<Grant, Denial> {
        let e = self.entry(device)?;
        check_entry(&e, device, token, now)
    }

    /// Claims one use of `device`'s token for the enrollment of the public key `key` (hex
    /// SHA-256 of its SubjectPublicKeyInfo): [`Tokens::check`], and then a use left that no other
    /// claim in `claims` holds. A claim held for this device and key's retry (after a `202`) is
    /// continued instead of taking a second use. Nothing is written; see the module doc.
    pub fn claim(
        &self,
        claims: &mut Claims,
        device: &str,
        token: &str,
        key: &str,
        now: i64,
    ) -> Result<(u64, Grant), Denial> {
        let e = self.entry(device)?;
        let grant = check_entry(&e, device, token, now)?;
        claims.expire(now);
        let mine = |c: &Claim| c.device == device && c.hash == e.hash;
        if let Some(c) = claims
            .held
            .iter_mut()
            .find(|c| mine(c) && c.key == key && c.retry_since.is_some())
        {
            c.retry_since = None;
            return Ok((c.id, grant));
        }
        let held = claims.held.iter().filter(|c| mine(c)).count();
        if u64::try_from(held).unwrap_or(u64::MAX) >= u64::from(e.uses_left) {
            return Err(Denial::InUse);
        }
        claims.next += 1;
        let id = claims.next;
        claims.held.push(Claim {
            id,
            device: device.to_owned(),
            hash: e.hash,
            key: key.to_owned(),
            retry_since: None,
        });
        Ok((id, grant))
    }

    /// Turns `claim` into a spent use, with every check repeated: the token is still the one
    /// claimed (not replaced), not revoked, not expired, and has a use left. Open the store with
    /// [`Tokens::open_locked_within`] so that nothing changes between this check and the write.
    /// [`Error::Denied`] when the token is no longer good: no certificate may go out.
    pub fn commit(&mut self, claim: &Claim, now: i64) -> Result<(), Error> {
        let held = self.journal.is_locked();
        self.stage_commit(claim, now)?;
        let saved = self.save_staged();
        if !held {
            // Locked for this write only, as an open to read never holds the lock.
            self.journal.unlock()?;
        }
        saved
    }

    /// [`Tokens::commit`]'s checks and the spent use, in memory only, for a group commit: the
    /// caller writes every staged use with one [`Tokens::save_staged`] (one sync), after what
    /// must be durable before it (the audit line). Needs the lock.
    pub fn stage_commit(&mut self, claim: &Claim, now: i64) -> Result<(), Error> {
        if !self.journal.is_locked() {
            // Opened to read: take the lock (and catch up) for this change.
            self.journal.lock(None)?;
        }
        let mut e = self.checked(claim, now)?;
        e.uses_left -= 1;
        let device = e.device.clone();
        Ok(self.journal.stage(&device, Some(e))?)
    }

    /// [`Tokens::commit`]'s checks alone: whether `claim` may become a spent use now (with the
    /// lock held, nothing can change that before [`Tokens::stage_commit`]).
    pub fn can_commit(&self, claim: &Claim, now: i64) -> Result<(), Error> {
        self.checked(claim, now).map(|_| ())
    }

    fn checked(&self, claim: &Claim, now: i64) -> Result<Entry, Error> {
        let e = self
            .journal
            .read(&claim.device)?
            .ok_or_else(|| Error::UnknownDevice(claim.device.clone()))?;
        if e.hash != claim.hash {
            return Err(Error::Denied(Denial::Replaced));
        }
        if e.revoked {
            return Err(Error::Denied(Denial::Revoked));
        }
        if now >= e.expires {
            return Err(Error::Denied(Denial::Expired));
        }
        if e.uses_left == 0 {
            return Err(Error::Denied(Denial::Exhausted));
        }
        Ok(e)
    }

    /// Appends every use staged by [`Tokens::stage_commit`] and makes them durable (one sync).
    pub fn save_staged(&mut self) -> Result<(), Error> {
        self.journal.flush()?;
        Ok(self.journal.sync()?)
    }

    /// Every token, without secrets (every record read back: for `token list`, not per
    /// request).
    pub fn list(&self) -> Result<Vec<TokenInfo>, Error> {
        self.journal
            .read_range("")
            .map(|r| {
                let (_, e) = r?;
                Ok(TokenInfo {
                    device: e.device,
                    names: e.names,
                    expires: e.expires,
                    uses_left: e.uses_left,
                    revoked: e.revoked,
                })
            })
            .collect()
    }

    /// Revokes `device`'s token. Returns false when it has none.
    pub fn revoke(&mut self, device: &str) -> Result<bool, Error> {
        let Some(mut e) = self.journal.read(device)? else {
            return Ok(false);
        };
        e.revoked = true;
        self.save(&e)?;
        Ok(true)
    }

    /// Appends `e` and makes it durable, under the lock: the one held, or taken for this write.
    fn save(&mut self, e: &Entry) -> Result<(), Error> {
        if self.journal.is_locked() {
            self.journal.put(&e.device, Some(e))?;
            if !self.batch {
                self.journal.sync()?;
            }
            return Ok(());
        }
        self.journal.lock(None)?;
        let put = self.journal.put(&e.device, Some(e));
        let unlocked = self.journal.unlock();
        put?;
        Ok(unlocked?)
    }
}

/// [`Tokens::check`] of `e`, `device`'s entry.
fn check_entry(e: &Entry, device: &str, token: &str, now: i64) -> Result<Grant, Denial> {
    let salt = crypto::b64url_decode(&e.salt).map_err(|_| Denial::BadToken)?;
    let want = crypto::hex(&digest(&salt, device, token));
    if !crypto::constant_time_eq(want.as_bytes(), e.hash.as_bytes()) {
        return Err(Denial::BadToken);
    }
    if e.revoked {
        return Err(Denial::Revoked);
    }
    if now >= e.expires {
        return Err(Denial::Expired);
    }
    if e.uses_left == 0 {
        return Err(Denial::Exhausted);
    }
    Ok(Grant {
        device: e.device.clone(),
        names: e.names.clone(),
    })
}

/// `gatecert token add`: [`Tokens::add`], or with `mac_key` [`Tokens::add_eab`], on the store
/// at `path`, appended without reading the journal when its end can be trusted from its last
/// bytes ([`journal::append_at_tail`]: O(1) however many tokens it holds), else through
/// [`Tokens::open_locked`] (which reads it and cuts a torn tail). Used-up and expired tokens
/// are pruned when an enrollment commits ([`Tokens::maintain`]). Returns `(kid, token)`.
pub fn add_to(
    path: &Path,
    device: &str,
    names: &[String],
    ttl: u64,
    uses: u32,
    now: i64,
    mac_key: Option<&dyn Fn(&str) -> String>,
) -> Result<(Option<String>, String), Error> {
    let (entry, token) = fresh(device, names, ttl, uses, now, mac_key)?;
    if !journal::append_at_tail(path, &entry.device, &entry)? {
        let mut t = Tokens::open_locked(path)?;
        t.save(&entry)?;
        t.unlock()?;
    }
    Ok((entry.eab_kid, token))
}

/// A new token for `device` and its entry; with `mac_key`, an EAB key id (the entry's
/// `eab_kid`) and the token `mac_key(kid)`. Returns `(entry, token)`.
fn fresh(
    device: &str,
    names: &[String],
    ttl: u64,
    uses: u32,
    now: i64,
    mac_key: Option<&dyn Fn(&str) -> String>,
) -> Result<(Entry, String), Error> {
    let (kid, token) = match mac_key {
        // Hex, so that a kid never starts with a '-' that a client's option parser would take.
        Some(mac_key) => {
            let kid = crypto::hex(&crypto::random_bytes::<16>().map_err(|_| Error::Rng)?);
            let token = mac_key(&kid);
            (Some(kid), token)
        }
        None => {
            let secret = crypto::random_bytes::<32>().map_err(|_| Error::Rng)?;
            (None, crypto::b64url(&secret))
        }
    };
    let entry = new_entry(device, names, ttl, uses, now, &token, kid)?;
    Ok((entry, token))
}

/// A new token entry for `device`, checked: the token's salted hash, never the token.
fn new_entry(
    device: &str,
    names: &[String],
    ttl: u64,
    uses: u32,
    now: i64,
    token: &str,
    eab_kid: Option<String>,
) -> Result<Entry, Error> {
    if device.is_empty() || device.len() > 128 || device.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "bad device name {device:?}: it must be 1 to 128 characters without control \
             characters"
        )));
    }
    if device.contains(':') {
        return Err(Error::Invalid(format!(
            "bad device name {device:?}: it contains ':', where HTTP Basic splits the user \
             name from the token (RFC 7617 section 2), so the device could never log in"
        )));
    }
    if uses == 0 {
        return Err(Error::Invalid("uses must be at least 1".into()));
    }
    if names.is_empty() {
        return Err(Error::Invalid("a token needs at least one --name".into()));
    }
    let salt = crypto::random_bytes::<16>().map_err(|_| Error::Rng)?;
    Ok(Entry {
        device: device.to_string(),
        names: names.to_vec(),
        salt: crypto::b64url(&salt),
        hash: crypto::hex(&digest(&salt, device, token)),
        expires: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        uses_left: uses,
        revoked: false,
        created: now,
        eab_kid,
    })
}

fn digest(salt: &[u8], device: &str, token: &str) -> [u8; 32] {
    let mut msg = Vec::with_capacity(device.len() + 1 + token.len());
    msg.extend(device.as_bytes());
    msg.push(0);
    msg.extend(token.as_bytes());
    crypto::hmac_sha256(salt, &msg)
}

/// Parses a duration: `90`, `90s`, `30m`, `24h`, `7d`, `2w` → seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// How long a claim waits for the retry of a client told `202` + `Retry-After`, seconds. After
/// that the use is free again, and a late retry claims afresh.
pub const RETRY_HOLD: i64 = 3600;

/// One use of a token, claimed by an enrollment in progress (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    id: u64,
    device: String,
    /// The stored hash of the token claimed: a `token add` replacing it voids the claim.
    hash: String,
    /// hex SHA-256 of the enrolling public key.
    key: String,
    /// Since when (Unix seconds) the claim waits for the client's retry after a `202`.
    retry_since: Option<i64>,
}

impl Claim {
    /// The device whose token this is.
    pub fn device(&self) -> &str {
        &self.device
    }
}

/// The claims held by enrollments in progress, by id. Lives in the service's memory only.
#[derive(Debug, Default)]
pub struct Claims {
    held: Vec<Claim>,
    next: u64,
}

impl Claims {
    /// No claims.
    pub fn new() -> Claims {
        Claims::default()
    }

    /// The claim `id`, while held.
    pub fn get(&self, id: u64) -> Option<&Claim> {
        self.held.iter().find(|c| c.id == id)
    }

    /// Ends claim `id` (committed or released) and returns it.
    pub fn take(&mut self, id: u64) -> Option<Claim> {
        let i = self.held.iter().position(|c| c.id == id)?;
        Some(self.held.swap_remove(i))
    }

    /// Keeps claim `id` for the retry of its client, told `202` at `now`.
    pub fn hold_for_retry(&mut self, id: u64, now: i64) {
        if let Some(c) = self.held.iter_mut().find(|c| c.id == id) {
            c.retry_since = Some(now);
        }
    }

    /// How many claims are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no claim is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Frees the claims whose retry did not come within [`RETRY_HOLD`].
    fn expire(&mut self, now: i64) {
        self.held.retain(|c| {
            c.retry_since
                .is_none_or(|t| now.saturating_sub(t) < RETRY_HOLD)
        });
    }
}

/// `<state_dir>/tokens.jnl`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("tokens.jnl")
}

/// `tokens.json` next to the journal `path`: the store of earlier versions, migrated on open.
fn legacy_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

#[cfg(test)]
mod tests;
