//! Bootstrap tokens: one-time (or few-time) secrets that let a new sensor make its first EST
//! enrollment (RFC 7030 §3.2.3 HTTP-based client authentication).
//!
//! `<state_dir>/tokens.json` (0600, written atomically) stores per device only a salted hash:
//! `HMAC-SHA-256(key = salt, msg = device || 0x00 || token)`, plus the names the device may ask
//! for, the expiry, the uses left and a revoked flag. The token itself is shown once, by `add`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::store;

/// An error reading or writing the token file.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing `tokens.json` failed, or it does not parse.
    Store(store::Error),
    /// The system RNG failed while making a token.
    Rng,
    /// A bad argument (empty device, zero uses, a device name with control characters...).
    Invalid(String),
    /// `consume` for a device that has no token.
    UnknownDevice(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(_) => f.write_str("bootstrap token store"),
            Error::Rng => f.write_str("system random number generator failed"),
            Error::Invalid(m) => write!(f, "invalid token request: {m}"),
            Error::UnknownDevice(d) => write!(f, "no bootstrap token for device {d:?}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
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
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    tokens: Vec<Entry>,
}

/// The bootstrap token store.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    file: File,
    /// Held by [`Tokens::open_locked`]: an exclusive flock on `<path>.lock` for as long as this
    /// value lives, so a read-modify-write by the service and one by `gatecert token` can't
    /// interleave (a lost `consume` would make a one-time token usable twice).
    _lock: Option<std::fs::File>,
}

impl Tokens {
    /// Opens `path` (usually `<state_dir>/tokens.json`); an absent file is an empty store.
    pub fn open(path: &Path) -> Result<Tokens, Error> {
        let file = match store::read_optional(path)? {
            None => File {
                version: 1,
                tokens: Vec::new(),
            },
            Some(text) => serde_json::from_str(&text).map_err(|e| store::Error::Corrupt {
                path: path.to_path_buf(),
                what: format!("not a token file: {e}"),
            })?,
        };
        Ok(Tokens {
            path: path.to_path_buf(),
            file,
            _lock: None,
        })
    }

    /// Like [`Tokens::open`], for changing the store: waits for an exclusive lock on
    /// `<path>.lock` first and holds it until the value is dropped.
    pub fn open_locked(path: &Path) -> Result<Tokens, Error> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(store::SECRET)
            .open(&lock_path)
            .map_err(store::io_err("open", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            store::Error::Io {
                op: "lock",
                path: lock_path.clone(),
                source: e.into(),
            }
        })?;
        let mut t = Tokens::open(path)?;
        t._lock = Some(lock);
        Ok(t)
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
        if device.is_empty() || device.len() > 128 || device.chars().any(char::is_control) {
            return Err(Error::Invalid(format!("bad device name {device:?}")));
        }
        if uses == 0 {
            return Err(Error::Invalid("uses must be at least 1".into()));
        }
        if names.is_empty() {
            return Err(Error::Invalid("a token needs at least one --name".into()));
        }
        let secret = crypto::random_bytes::<32>().map_err(|_| Error::Rng)?;
        let token = crypto::b64url(&secret);
        let salt = crypto::random_bytes::<16>().map_err(|_| Error::Rng)?;
        let entry = Entry {
            device: device.to_string(),
            names: names.to_vec(),
            salt: crypto::b64url(&salt),
            hash: crypto::hex(&digest(&salt, device, &token)),
            expires: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            uses_left: uses,
            revoked: false,
            created: now,
        };
        self.file.tokens.retain(|e| e.device != device);
        self.file.tokens.push(entry);
        self.save()?;
        Ok(token)
    }

    /// Checks `token` for `device`. The token is compared (in constant time) before anything
    /// else is said about the device's token, so a caller without it learns only whether the
    /// device exists.
    pub fn check(&self, device: &str, token: &str, now: i64) -> Result<Grant, Denial> {
        let e = self
            .file
            .tokens
            .iter()
            .find(|e| e.device == device)
            .ok_or(Denial::UnknownDevice)?;
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

    /// Uses up one enrollment of `device`'s token and persists it. Call after a successful issue.
    pub fn consume(&mut self, device: &str, _now: i64) -> Result<(), Error> {
        let e = self
            .file
            .tokens
            .iter_mut()
            .find(|e| e.device == device)
            .ok_or_else(|| Error::UnknownDevice(device.to_string()))?;
        e.uses_left = e.uses_left.saturating_sub(1);
        self.save()
    }

    /// Every token, without secrets.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.file
            .tokens
            .iter()
            .map(|e| TokenInfo {
                device: e.device.clone(),
                names: e.names.clone(),
                expires: e.expires,
                uses_left: e.uses_left,
                revoked: e.revoked,
            })
            .collect()
    }

    /// Revokes `device`'s token. Returns false when it has none.
    pub fn revoke(&mut self, device: &str) -> Result<bool, Error> {
        let Some(e) = self.file.tokens.iter_mut().find(|e| e.device == device) else {
            return Ok(false);
        };
        e.revoked = true;
        self.save()?;
        Ok(true)
    }

    fn save(&self) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(&self.file).map_err(|e| store::Error::Corrupt {
            path: self.path.clone(),
            what: format!("cannot serialise: {e}"),
        })?;
        store::write_atomic(&self.path, &json, store::SECRET)?;
        Ok(())
    }
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

/// `<state_dir>/tokens.json`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("tokens.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_867_200;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gatecert-tok-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("tokens.json")
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
        t.consume("s1", NOW).unwrap();
        let mut t = Tokens::open(&path).unwrap();
        assert_eq!(t.list()[0].uses_left, 1);
        assert!(t.check("s1", &tok, NOW).is_ok());
        t.consume("s1", NOW).unwrap();
        assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Exhausted));

        assert!(t.revoke("s1").unwrap());
        assert!(!t.revoke("nobody").unwrap());
        assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Revoked));
        assert!(t.list()[0].revoked);
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

    #[test]
    fn file_is_0600_and_never_holds_the_token() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = tmp("secret");
        let mut t = Tokens::open(&path).unwrap();
        let tok = t.add("s1", &names(), 3600, 1, NOW).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&tok));
        let raw_hex = crypto::hex(&crypto::b64url_decode(&tok).unwrap());
        assert!(!text.contains(&raw_hex));
        assert!(!text.contains(&crypto::hex(&crypto::sha256(tok.as_bytes()))));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let listed = format!("{:?}", t.list());
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
        assert!(matches!(t.consume("zz", NOW), Err(Error::UnknownDevice(_))));
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
        a.consume("a", 1_800_000_000).unwrap();
        drop(a);
        writer.join().unwrap();
        let t = Tokens::open(&path).unwrap();
        let list = t.list();
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list.iter().find(|i| i.device == "a").unwrap().uses_left, 0);
    }
}
