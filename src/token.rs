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
        let (entry, _, token) = fresh(device, names, ttl, uses, now, None)?;
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
        let (entry, kid, token) = fresh(device, names, ttl, uses, now, Some(mac_key))?;
        self.save(&entry)?;
        Ok((kid.unwrap_or_default(), token))
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
    /// ([`Meta`]): no record is read.
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
    let (entry, kid, token) = fresh(device, names, ttl, uses, now, mac_key)?;
    if !journal::append_at_tail(path, &entry.device, &entry)? {
        let mut t = Tokens::open_locked(path)?;
        t.save(&entry)?;
        t.unlock()?;
    }
    Ok((kid, token))
}

/// A new token for `device` and its entry; with `mac_key`, an EAB key id and the token
/// `mac_key(kid)`. Returns `(entry, kid, token)`.
fn fresh(
    device: &str,
    names: &[String],
    ttl: u64,
    uses: u32,
    now: i64,
    mac_key: Option<&dyn Fn(&str) -> String>,
) -> Result<(Entry, Option<String>, String), Error> {
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
    let entry = new_entry(device, names, ttl, uses, now, &token, kid.clone())?;
    Ok((entry, kid, token))
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
mod tests {
    use super::*;

    const NOW: i64 = 1_795_867_200;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gatecert-tok-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("tokens.jnl")
    }

    fn names() -> Vec<String> {
        vec!["s1.sensors.local".to_string()]
    }

    #[test]
    fn lifecycle_and_denials() {
        let path = tmp("life");
        let mut t = Tokens::open(&path).unwrap();
        let tok = t.add("s1", &names(), 3600, 2, NOW).unwrap();
        assert_eq!(crypto::b64url_decode(&tok).unwrap().len(), 32);

        let g = t.check("s1", &tok, NOW).unwrap();
        assert_eq!(g.names, names());
        assert_eq!(t.check("s2", &tok, NOW), Err(Denial::UnknownDevice));
        assert_eq!(t.check("s1", "wrong", NOW), Err(Denial::BadToken));
        assert_eq!(t.check("s1", &tok, NOW + 3600), Err(Denial::Expired));

        // Persisted and reopened: uses go down to zero, then Exhausted.
        let mut claims = Claims::new();
        spend(&mut t, &mut claims, "s1", &tok, "k1");
        let mut t = Tokens::open(&path).unwrap();
        assert_eq!(t.list().unwrap()[0].uses_left, 1);
        assert!(t.check("s1", &tok, NOW).is_ok());
        spend(&mut t, &mut claims, "s1", &tok, "k2");
        assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Exhausted));
        assert!(claims.is_empty());

        assert!(t.revoke("s1").unwrap());
        assert!(!t.revoke("nobody").unwrap());
        assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Revoked));
        assert!(t.list().unwrap()[0].revoked);
    }

    /// Claims and commits one use.
    fn spend(t: &mut Tokens, claims: &mut Claims, device: &str, tok: &str, key: &str) {
        let (id, _) = t.claim(claims, device, tok, key, NOW).unwrap();
        let c = claims.take(id).unwrap();
        t.commit(&c, NOW).unwrap();
    }

    /// A one-use token: the first claim holds the use, so a second enrollment is refused before
    /// it starts; a released claim frees it again; a commit re-checks revocation and
    /// replacement, and a claim continued after a 202 is the same use.
    #[test]
    fn claims_hold_uses_until_committed_or_released() {
        let path = tmp("claims");
        let mut t = Tokens::open(&path).unwrap();
        let tok = t.add("d", &names(), 2 * RETRY_HOLD as u64, 1, NOW).unwrap();
        let mut claims = Claims::new();
        let (a, _) = t.claim(&mut claims, "d", &tok, "ka", NOW).unwrap();
        assert_eq!(
            t.claim(&mut claims, "d", &tok, "kb", NOW),
            Err(Denial::InUse)
        );
        // Same key, claim not waiting for a retry: still a second enrollment.
        assert_eq!(
            t.claim(&mut claims, "d", &tok, "ka", NOW),
            Err(Denial::InUse)
        );
        // Released: free again, nothing was written.
        assert!(claims.take(a).is_some());
        assert_eq!(Tokens::open(&path).unwrap().list().unwrap()[0].uses_left, 1);
        let (b, _) = t.claim(&mut claims, "d", &tok, "kb", NOW).unwrap();

        // 202: the claim waits for the retry of the same key, which continues it.
        claims.hold_for_retry(b, NOW);
        assert_eq!(
            t.claim(&mut claims, "d", &tok, "kc", NOW),
            Err(Denial::InUse)
        );
        let (b2, _) = t.claim(&mut claims, "d", &tok, "kb", NOW + 10).unwrap();
        assert_eq!(b, b2);
        assert_eq!(claims.len(), 1);
        // A retry that never comes frees the use after RETRY_HOLD.
        claims.hold_for_retry(b, NOW);
        let (c, _) = t
            .claim(&mut claims, "d", &tok, "kc", NOW + RETRY_HOLD)
            .unwrap();
        assert!(claims.get(b).is_none());

        // Revoked while claimed: the commit refuses and writes nothing.
        let claim = claims.take(c).unwrap();
        let mut locked = Tokens::open_locked(&path).unwrap();
        locked.revoke("d").unwrap();
        assert!(matches!(
            locked.commit(&claim, NOW),
            Err(Error::Denied(Denial::Revoked))
        ));
        assert_eq!(locked.list().unwrap()[0].uses_left, 1);

        // Replaced while claimed: the commit refuses, and the stale claim holds no use of the
        // new token.
        let tok2 = locked.add("d", &names(), 3600, 1, NOW).unwrap();
        let t2 = Tokens::open(&path).unwrap();
        assert_eq!(
            t2.claim(&mut claims, "d", &tok, "kd", NOW),
            Err(Denial::BadToken)
        );
        let (e, _) = t2.claim(&mut claims, "d", &tok2, "ke", NOW).unwrap();
        let stale = claim;
        assert!(matches!(
            locked.commit(&stale, NOW),
            Err(Error::Denied(Denial::Replaced))
        ));
        let claim = claims.take(e).unwrap();
        locked.commit(&claim, NOW).unwrap();
        assert_eq!(locked.list().unwrap()[0].uses_left, 0);
        // Expired between claim and commit.
        let tok3 = locked.add("d", &names(), 60, 1, NOW).unwrap();
        let (f, _) = locked.claim(&mut claims, "d", &tok3, "kf", NOW).unwrap();
        let claim = claims.take(f).unwrap();
        assert!(matches!(
            locked.commit(&claim, NOW + 60),
            Err(Error::Denied(Denial::Expired))
        ));
    }

    /// A lock held by another process (a stuck `gatecert token add`): the bounded open gives up
    /// with Busy instead of waiting.
    #[test]
    fn bounded_lock_gives_up_when_held() {
        let path = tmp("busy");
        let held = Tokens::open_locked(&path).unwrap();
        let t = std::time::Instant::now();
        let err = Tokens::open_locked_within(&path, Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err}");
        assert!(err.to_string().contains("tokens.jnl.lock"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(held);
        assert!(Tokens::open_locked_within(&path, Duration::from_millis(30)).is_ok());
    }

    #[test]
    fn a_token_for_one_device_does_not_open_another() {
        let path = tmp("cross");
        let mut t = Tokens::open(&path).unwrap();
        let a = t.add("a", &names(), 3600, 1, NOW).unwrap();
        let b = t.add("b", &names(), 3600, 1, NOW).unwrap();
        assert_eq!(t.check("b", &a, NOW), Err(Denial::BadToken));
        assert_eq!(t.check("a", &b, NOW), Err(Denial::BadToken));
        // Re-adding replaces: the old token stops working.
        let a2 = t.add("a", &names(), 3600, 1, NOW).unwrap();
        assert_eq!(t.check("a", &a, NOW), Err(Denial::BadToken));
        assert!(t.check("a", &a2, NOW).is_ok());
    }

    /// A `tokens.json` of an earlier version is migrated into the journal on first open, once;
    /// its tokens keep working and it is gone.
    #[test]
    fn a_legacy_tokens_json_is_migrated_on_first_open() {
        let path = tmp("migrate");
        let legacy = path.with_extension("json");
        // Make entries the way the earlier version stored them.
        let mut made = Tokens::open(&path).unwrap();
        let a = made.add("a", &names(), 3600, 2, NOW).unwrap();
        let b = made.add("b", &names(), 3600, 1, NOW).unwrap();
        let tokens: Vec<Entry> = made.journal.read_range("").map(|r| r.unwrap().1).collect();
        let json = serde_json::json!({"version": 1, "tokens": tokens});
        std::fs::write(&legacy, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        drop(made);
        std::fs::remove_file(&path).unwrap();
        let t = Tokens::open(&path).unwrap();
        assert!(!legacy.exists() && path.exists());
        assert!(t.check("a", &a, NOW).is_ok() && t.check("b", &b, NOW).is_ok());
        assert_eq!(t.list().unwrap().len(), 2);
        // A broken legacy file is an error naming it, and nothing is written.
        let path = tmp("migrate-bad");
        std::fs::write(path.with_extension("json"), "{nope").unwrap();
        let err = Tokens::open(&path).unwrap_err();
        let chain = crate::errchain::one_line(&err);
        assert!(
            chain.contains("tokens.json") && chain.contains("not a token file"),
            "{chain}"
        );
        assert!(!path.exists());
    }

    /// Issue 13: the store keeps no token in memory, only where its record is and a summary;
    /// every answer is read back from the file and agrees with what was written.
    #[test]
    fn values_are_read_back_not_kept() {
        let path = tmp("lazy");
        let mut t = Tokens::open_locked(&path).unwrap();
        let tok = t.add("s1", &names(), 3600, 2, NOW).unwrap();
        t.add("s2", &names(), 3600, 1, NOW).unwrap();
        drop(t);
        let t = Tokens::open(&path).unwrap();
        assert!(t.journal.get("s1").is_none() && t.journal.iter().next().is_none());
        assert!(t.journal.contains("s1") && t.journal.contains("s2"));
        let g = t.check("s1", &tok, NOW).unwrap();
        assert_eq!((g.device.as_str(), g.names), ("s1", names()));
        assert_eq!(t.check("s2", &tok, NOW), Err(Denial::BadToken));
        let list = t.list().unwrap();
        assert_eq!(
            list.iter()
                .map(|i| (i.device.as_str(), i.uses_left))
                .collect::<Vec<_>>(),
            [("s1", 2), ("s2", 1)]
        );
    }

    /// A service's store sees what another process appends (a new token, a revocation) and,
    /// after that process compacted the journal, still reads its records right, then the new
    /// file.
    #[test]
    fn another_process_append_and_compaction_are_seen() {
        let path = tmp("other");
        let mut cli = Tokens::open_locked(&path).unwrap();
        let a = cli.add("a", &names(), 3600, 1, NOW).unwrap();
        cli.unlock().unwrap();
        let mut svc = Tokens::open(&path).unwrap();
        assert!(svc.check("a", &a, NOW).is_ok());
        cli.lock_within(Duration::from_secs(5)).unwrap();
        let b = cli.add("b", &names(), 3600, 1, NOW).unwrap();
        cli.revoke("a").unwrap();
        cli.unlock().unwrap();
        svc.refresh().unwrap();
        assert_eq!(svc.check("a", &a, NOW), Err(Denial::Revoked));
        assert!(svc.check("b", &b, NOW).is_ok());
        // Enough used-up tokens for a compaction, which prunes them and moves the records.
        cli.lock_within(Duration::from_secs(5)).unwrap();
        let mut claims = Claims::new();
        let mut i = 0;
        let before = std::fs::metadata(&path).unwrap();
        loop {
            let dev = format!("x{i}");
            let tok = cli.add(&dev, &names(), 3600, 1, NOW).unwrap();
            let (id, _) = cli.claim(&mut claims, &dev, &tok, "k", NOW).unwrap();
            cli.commit(&claims.take(id).unwrap(), NOW).unwrap();
            i += 1;
            cli.maintain(NOW).unwrap();
            use std::os::unix::fs::MetadataExt as _;
            if std::fs::metadata(&path).unwrap().ino() != before.ino() {
                break;
            }
        }
        cli.unlock().unwrap();
        // Not refreshed yet: the old file, still open, answers.
        assert!(svc.check("b", &b, NOW).is_ok());
        svc.refresh().unwrap();
        assert!(svc.check("b", &b, NOW).is_ok());
        assert_eq!(svc.check("a", &a, NOW), Err(Denial::Revoked));
        assert_eq!(svc.check("x0", "x", NOW), Err(Denial::UnknownDevice));
        assert_eq!(svc.counts(NOW).active, 1);
    }

    /// `status`'s counts, made from what is kept in memory, agree with the records read back.
    #[test]
    fn counts_agree_with_the_records() {
        let path = tmp("counts");
        let mut t = Tokens::open_locked(&path).unwrap();
        let mut claims = Claims::new();
        for i in 0..40 {
            let dev = format!("d{i:02}");
            let tok = t.add(&dev, &names(), 60 + 60 * (i % 3), 1, NOW).unwrap();
            if i % 4 == 0 {
                let (id, _) = t.claim(&mut claims, &dev, &tok, "k", NOW).unwrap();
                t.commit(&claims.take(id).unwrap(), NOW).unwrap();
            }
            if i % 5 == 0 {
                t.revoke(&dev).unwrap();
            }
        }
        drop(t);
        let t = Tokens::open(&path).unwrap();
        for now in [NOW, NOW + 60, NOW + 120, NOW + 180] {
            let mut want = Counts::default();
            for i in t.list().unwrap() {
                match crate::admin::token_state(i.revoked, i.expires, i.uses_left, now) {
                    "revoked" => want.revoked += 1,
                    "expired" => want.expired += 1,
                    "exhausted" => want.exhausted += 1,
                    _ => want.active += 1,
                }
            }
            assert_eq!(t.counts(now), want, "at {now}");
        }
        assert_eq!(t.counts(NOW).revoked, 8);
        assert_eq!(t.counts(NOW + 180).active, 0);
    }

    /// `token add` appends without reading the journal: what the service keeps open sees the
    /// new tokens (an EAB kid through its index); a journal with a torn tail, or none yet, is
    /// opened instead (the tail cut, the file created 0600).
    #[test]
    fn tokens_added_at_the_tail_are_seen_by_the_kept_store() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = tmp("tail");
        let mac = |kid: &str| format!("mac-{kid}");
        let (none, t1) = add_to(&path, "s1", &names(), 3600, 1, NOW, None).unwrap();
        assert!(none.is_none());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let svc = Tokens::open(&path).unwrap();
        assert!(svc.check("s1", &t1, NOW).is_ok());
        drop(svc);
        let before = std::fs::metadata(&path).unwrap().len();
        let (kid, t2) = add_to(&path, "e1", &names(), 3600, 1, NOW, Some(&mac)).unwrap();
        let kid = kid.unwrap();
        assert_eq!(t2, format!("mac-{kid}"));
        let (_, t3) = add_to(&path, "s1", &names(), 3600, 2, NOW, None).unwrap();
        let svc = Tokens::open(&path).unwrap();
        assert_eq!(svc.device_of_eab_kid(&kid).unwrap().as_deref(), Some("e1"));
        assert_eq!(svc.check("s1", &t1, NOW), Err(Denial::BadToken));
        assert!(svc.check("s1", &t3, NOW).is_ok());
        let file = std::fs::read(&path).unwrap();
        assert!(!file.windows(t3.len()).any(|w| w == t3.as_bytes()));
        drop(svc);
        // A torn tail: the store is opened, the tail cut, the token appended after.
        let whole = std::fs::read(&path).unwrap();
        assert!(whole.len() as u64 > before);
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let (_, t4) = add_to(&path, "s4", &names(), 3600, 1, NOW, None).unwrap();
        let t = Tokens::open(&path).unwrap();
        assert!(t.check("s4", &t4, NOW).is_ok());
        assert!(
            t.check("s1", &t1, NOW).is_ok(),
            "the torn last record (s1 again) is gone"
        );
        assert_eq!(t.device_of_eab_kid(&kid).unwrap().as_deref(), Some("e1"));
    }

    /// The EAB key id index: each kid leads to its device; a replaced token's kid to none.
    #[test]
    fn eab_kids_are_found_through_the_index() {
        let path = tmp("kids");
        let mut t = Tokens::open_locked(&path).unwrap();
        let mac = |kid: &str| format!("mac-{kid}");
        let (k1, _) = t.add_eab("e1", &names(), 3600, 1, NOW, &mac).unwrap();
        let (k2, _) = t.add_eab("e2", &names(), 3600, 1, NOW, &mac).unwrap();
        t.add("plain", &names(), 3600, 1, NOW).unwrap();
        drop(t);
        let t = Tokens::open(&path).unwrap();
        assert_eq!(t.device_of_eab_kid(&k1).unwrap().as_deref(), Some("e1"));
        assert_eq!(t.device_of_eab_kid(&k2).unwrap().as_deref(), Some("e2"));
        assert_eq!(t.device_of_eab_kid("00").unwrap(), None);
        drop(t);
        let mut t = Tokens::open_locked(&path).unwrap();
        let (k3, _) = t.add_eab("e1", &names(), 3600, 1, NOW, &mac).unwrap();
        assert_eq!(t.device_of_eab_kid(&k1).unwrap(), None);
        assert_eq!(t.device_of_eab_kid(&k3).unwrap().as_deref(), Some("e1"));
        assert_eq!(t.eab_grant("e1", &k1), Err(Denial::Replaced));
        assert_eq!(t.eab_grant("e1", &k3).unwrap().names, names());
    }

    /// A record damaged after it was indexed is never read as something else: the device is
    /// refused as Unreadable (no use can be claimed or spent), `list` fails naming the file, and
    /// the other tokens keep working.
    #[test]
    fn a_record_that_cannot_be_read_back_fails_closed() {
        use std::os::unix::fs::FileExt as _;
        let path = tmp("damaged");
        let mut t = Tokens::open_locked(&path).unwrap();
        let tok = t.add("s1", &names(), 3600, 2, NOW).unwrap();
        let other = t.add("s2", &names(), 3600, 1, NOW).unwrap();
        t.unlock().unwrap();
        let mut claims = Claims::new();
        let (id, _) = t.claim(&mut claims, "s1", &tok, "k", NOW).unwrap();
        let claim = claims.take(id).unwrap();
        // Damage s1's record in place (same size, same file): its crc no longer matches.
        let bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == b"\"s1\"").unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"\"s9\"", at as u64).unwrap();
        assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Unreadable));
        assert_eq!(
            t.claim(&mut claims, "s1", &tok, "k2", NOW),
            Err(Denial::Unreadable)
        );
        assert_eq!(t.eab_grant("s1", "kid"), Err(Denial::Unreadable));
        assert!(matches!(t.commit(&claim, NOW), Err(Error::Store(_))));
        let err = crate::errchain::one_line(&t.list().unwrap_err());
        assert!(err.contains("tokens.jnl") && err.contains("crc"), "{err}");
        assert!(!err.contains(&tok));
        assert!(t.check("s2", &other, NOW).is_ok());
    }

    /// Used-up and expired tokens are pruned when the journal is compacted; the rest survive.
    #[test]
    fn compaction_prunes_used_up_and_expired_tokens() {
        let path = tmp("prune");
        let mut t = Tokens::open_locked(&path).unwrap();
        let keep = t.add("keep", &names(), 7200, 1, NOW).unwrap();
        t.add("old", &names(), 60, 1, NOW).unwrap();
        // An ACME token stays, expired or used, until it is revoked.
        let mac = |kid: &str| format!("mac-{kid}");
        let (kid, _) = t.add_eab("eab", &names(), 60, 1, NOW, &mac).unwrap();
        t.add_eab("eab-revoked", &names(), 60, 1, NOW, &mac)
            .unwrap();
        t.revoke("eab-revoked").unwrap();
        let mut claims = Claims::new();
        let mut i = 0;
        let prunable = |_: &str, m: Meta| {
            (m.has(Meta::USES) && !m.expired(NOW + 120))
                || (m.has(Meta::EAB) && !m.has(Meta::REVOKED))
        };
        while !t.journal.wants_compaction_by(prunable) {
            let dev = format!("d{i}");
            let tok = t.add(&dev, &names(), 3600, 1, NOW).unwrap();
            let (id, _) = t.claim(&mut claims, &dev, &tok, "k", NOW).unwrap();
            let c = claims.take(id).unwrap();
            t.commit(&c, NOW).unwrap();
            i += 1;
        }
        t.maintain(NOW + 120).unwrap();
        let left: Vec<String> = t.list().unwrap().into_iter().map(|i| i.device).collect();
        assert_eq!(left, ["eab", "keep"]);
        let again = Tokens::open(&path).unwrap();
        assert!(again.check("keep", &keep, NOW + 120).is_ok());
        assert_eq!(
            again.device_of_eab_kid(&kid).unwrap().as_deref(),
            Some("eab")
        );
    }

    #[test]
    fn file_is_0600_and_never_holds_the_token() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = tmp("secret");
        let mut t = Tokens::open(&path).unwrap();
        let tok = t.add("s1", &names(), 3600, 1, NOW).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(text.contains("\"s1\"") && !text.contains(&tok));
        let raw_hex = crypto::hex(&crypto::b64url_decode(&tok).unwrap());
        assert!(!text.contains(&raw_hex));
        assert!(!text.contains(&crypto::hex(&crypto::sha256(tok.as_bytes()))));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let listed = format!("{:?}", t.list().unwrap());
        assert!(!listed.contains(&tok) && !listed.contains("hash"));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut t = Tokens::open(&tmp("bad")).unwrap();
        assert!(matches!(
            t.add("", &names(), 1, 1, NOW),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            t.add("d", &names(), 1, 0, NOW),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(t.add("d", &[], 1, 1, NOW), Err(Error::Invalid(_))));
        // HTTP Basic splits at the first ':' (RFC 7617): such a device could never log in.
        let e = t.add("a:b", &names(), 1, 1, NOW).unwrap_err();
        assert!(
            e.to_string().contains("\"a:b\"") && e.to_string().contains("':'"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        for (s, want) in [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("30m", Some(1800)),
            ("24h", Some(86_400)),
            ("7d", Some(604_800)),
            ("2w", Some(1_209_600)),
            ("7x", None),
            ("", None),
            ("h", None),
        ] {
            assert_eq!(parse_duration(s), want, "{s}");
        }
    }

    /// Two writers on one store: the lock makes the second wait, so neither update is lost.
    #[test]
    fn locked_writers_do_not_lose_updates() {
        let path = tmp("locked");
        let mut a = Tokens::open_locked(&path).unwrap();
        a.add("a", &["a.local".into()], 600, 1, 1_800_000_000)
            .unwrap();
        let p2 = path.clone();
        let writer = std::thread::spawn(move || {
            let mut b = Tokens::open_locked(&p2).unwrap(); // waits for `a`
            b.add("b", &["b.local".into()], 600, 1, 1_800_000_000)
                .unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        a.revoke("a").unwrap();
        drop(a);
        writer.join().unwrap();
        let t = Tokens::open(&path).unwrap();
        let list = t.list().unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(list.iter().find(|i| i.device == "a").unwrap().revoked);
    }

    /// Issue 13: spending a use appends one record to the token store in place (same inode),
    /// however many tokens it holds; it never rewrites the whole file.
    #[test]
    fn spending_a_use_appends_instead_of_rewriting() {
        use std::os::unix::fs::MetadataExt as _;
        let path = tmp("append");
        let mut t = Tokens::open_locked(&path).unwrap();
        for i in 0..500 {
            t.add(&format!("d{i}"), &names(), 3600, 1, NOW).unwrap();
        }
        let tok = t.add("s1", &names(), 3600, 1, NOW).unwrap();
        let mut claims = Claims::new();
        let (id, _) = t.claim(&mut claims, "s1", &tok, "k", NOW).unwrap();
        let claim = claims.take(id).unwrap();
        let before = std::fs::metadata(&path).unwrap();
        t.commit(&claim, NOW).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(before.ino(), after.ino(), "the token store was rewritten");
        assert!(after.len() > before.len() && after.len() - before.len() < 512);
        drop(t);
        assert_eq!(
            Tokens::open(&path).unwrap().check("s1", &tok, NOW),
            Err(Denial::Exhausted)
        );
    }
}
