//! The ACME server's state: nonces, orders, authorizations and certificates live in memory,
//! each bounded in number and time; accounts are kept in `<state_dir>/acme/accounts.json`
//! (written only by EAB-authenticated or account-signed requests).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use crate::crypto::{self, b64url};
use crate::store;

/// How long a nonce stays good, seconds (RFC 8555 §6.5: the server may expire them).
pub const NONCE_TTL: i64 = 600;
/// Nonces held at once; the oldest goes first (its request then gets `badNonce` and retries).
pub const MAX_NONCES: usize = 4096;
/// How long an order and its authorizations stay pending, seconds.
pub const ORDER_TTL: i64 = 3600;
/// How long a finished order's certificate stays downloadable, seconds.
pub const CERT_TTL: i64 = 24 * 3600;
/// Identifiers in one order.
pub const MAX_IDENTIFIERS: usize = 20;

/// Single-use anti-replay nonces (RFC 8555 §6.5).
#[derive(Default)]
pub struct Nonces {
    held: HashMap<String, i64>,
}

impl Nonces {
    /// A fresh nonce, remembered until used or expired.
    pub fn fresh(&mut self, now: i64) -> Result<String, Problem> {
        if self.held.len() >= MAX_NONCES {
            self.held.retain(|_, t| now - *t < NONCE_TTL);
        }
        if self.held.len() >= MAX_NONCES {
            if let Some(oldest) = self
                .held
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone())
            {
                self.held.remove(&oldest);
            }
        }
        let n = b64url(&crypto::random_bytes::<16>().map_err(Problem::internal)?);
        self.held.insert(n.clone(), now);
        Ok(n)
    }

    /// Spends `nonce`: true once for a nonce this server gave out and that has not expired.
    pub fn spend(&mut self, nonce: &str, now: i64) -> bool {
        self.held
            .remove(nonce)
            .is_some_and(|t| now - t < NONCE_TTL && now >= t)
    }

    /// How many are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

/// An account (RFC 8555 §7.1.2), bound to the device whose EAB token admitted it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    /// The id in the account URL.
    pub id: u64,
    /// The public key, JWK.
    pub jwk: serde_json::Value,
    /// Its RFC 7638 thumbprint.
    pub thumbprint: String,
    /// The device of the EAB token.
    pub device: String,
    /// The EAB key id that admitted it.
    pub eab_kid: String,
    /// `valid` or `deactivated`.
    pub status: String,
    /// `contact` URLs as sent.
    #[serde(default)]
    pub contact: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct AccountsFile {
    next: u64,
    accounts: Vec<Account>,
}

/// The accounts, read at start and written on each change.
pub struct Accounts {
    path: PathBuf,
    file: AccountsFile,
}

impl Accounts {
    /// Reads `<dir>/accounts.json` (absent: none).
    pub fn open(dir: &Path) -> Result<Accounts, store::Error> {
        let path = dir.join("accounts.json");
        let file = match store::read_optional(&path)? {
            None => AccountsFile::default(),
            Some(t) => serde_json::from_str(&t).map_err(|e| store::Error::Corrupt {
                path: path.clone(),
                what: format!("not an ACME accounts file: {e}"),
            })?,
        };
        Ok(Accounts { path, file })
    }

    /// The account with `id`.
    pub fn get(&self, id: u64) -> Option<&Account> {
        self.file.accounts.iter().find(|a| a.id == id)
    }

    /// The account whose key has `thumbprint`.
    pub fn by_thumbprint(&self, thumbprint: &str) -> Option<&Account> {
        self.file
            .accounts
            .iter()
            .find(|a| a.thumbprint == thumbprint)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.file.accounts.len()
    }

    /// Adds an account and saves; returns its id.
    pub fn add(&mut self, mut account: Account) -> Result<u64, store::Error> {
        self.file.next += 1;
        account.id = self.file.next;
        self.file.accounts.push(account);
        if let Err(e) = self.save() {
            self.file.accounts.pop();
            return Err(e);
        }
        Ok(self.file.next)
    }

    /// Forgets every account `dead` says is, and saves once: (the ids dropped). Nothing is
    /// written when none is.
    pub fn prune(&mut self, dead: impl Fn(&Account) -> bool) -> Result<Vec<u64>, store::Error> {
        let gone: Vec<u64> = self
            .file
            .accounts
            .iter()
            .filter(|a| dead(a))
            .map(|a| a.id)
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        let before = std::mem::take(&mut self.file.accounts);
        self.file.accounts = before
            .iter()
            .filter(|a| !gone.contains(&a.id))
            .cloned()
            .collect();
        if let Err(e) = self.save() {
            self.file.accounts = before;
            return Err(e);
        }
        Ok(gone)
    }

    /// Forgets account `id` (its admission was undone) and saves.
    pub fn remove(&mut self, id: u64) {
        self.file.accounts.retain(|a| a.id != id);
        if let Err(e) = self.save() {
            log::error!("{e}");
        }
    }

    /// Changes account `id` with `f` and saves (undone if the save fails).
    pub fn update(&mut self, id: u64, f: impl FnOnce(&mut Account)) -> Result<(), store::Error> {
        let Some(a) = self.file.accounts.iter_mut().find(|a| a.id == id) else {
            return Ok(());
        };
        let old = a.clone();
        f(a);
        if let Err(e) = self.save() {
            if let Some(a) = self.file.accounts.iter_mut().find(|a| a.id == id) {
                *a = old;
            }
            return Err(e);
        }
        Ok(())
    }

    fn save(&self) -> Result<(), store::Error> {
        if let Some(dir) = self.path.parent() {
            store::private_dir(dir)?;
        }
        let json = serde_json::to_vec_pretty(&self.file).map_err(|e| store::Error::Corrupt {
            path: self.path.clone(),
            what: format!("cannot serialise: {e}"),
        })?;
        store::write_atomic(&self.path, &json, store::SECRET)
    }
}

/// An order's or authorization's status (RFC 8555 §7.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for validation (authz) or for its authorizations (order).
    Pending,
    /// Validation running.
    Processing,
    /// Every authorization valid; finalize may come.
    Ready,
    /// Done.
    Valid,
    /// Failed.
    Invalid,
}

impl Status {
    /// The RFC's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Ready => "ready",
            Status::Valid => "valid",
            Status::Invalid => "invalid",
        }
    }
}

/// An order (RFC 8555 §7.1.3).
pub struct Order {
    /// Who made it.
    pub account: u64,
    /// The identifiers, lower-case, with "is an IP address".
    pub names: Vec<(String, bool)>,
    /// Status (`Ready` is derived from the authorizations).
    pub status: Status,
    /// Its authorizations' ids.
    pub authz: Vec<u64>,
    /// Expiry, Unix seconds.
    pub expires: i64,
    /// The certificate id once valid.
    pub cert: Option<u64>,
    /// Why it is invalid.
    pub error: Option<Problem>,
    /// The profile asked for.
    pub profile: Option<String>,
    /// RFC 9773 §5 `replaces`: (the certID as sent, the replaced certificate's serial, hex).
    pub replaces: Option<(String, String)>,
}

/// An authorization (RFC 8555 §7.1.4) with its challenges (one token for all types).
pub struct Authz {
    /// Who may see and answer it.
    pub account: u64,
    /// The identifier and "is an IP address".
    pub name: (String, bool),
    /// Status.
    pub status: Status,
    /// Expiry, Unix seconds.
    pub expires: i64,
    /// The challenge token (RFC 8555 §8.3: 128 bits of entropy, base64url).
    pub token: String,
    /// The challenge type answered, once a client asked for validation.
    pub tried: Option<String>,
    /// When it became valid.
    pub validated: Option<i64>,
    /// Why validation failed.
    pub error: Option<Problem>,
}

/// An issued certificate, for download and revocation.
pub struct Cert {
    /// Who ordered it.
    pub account: u64,
    /// The PEM chain, leaf first.
    pub pem: String,
    /// Kept until.
    pub expires: i64,
}

/// Orders, authorizations and certificates, bounded by `max_orders` each.
pub struct Orders {
    max: usize,
    next: u64,
    /// By id.
    pub orders: HashMap<u64, Order>,
    /// By id.
    pub authz: HashMap<u64, Authz>,
    /// By id.
    pub certs: HashMap<u64, Cert>,
}

impl Orders {
    /// Empty, holding at most `max` orders (and `max * MAX_IDENTIFIERS` authorizations, `max`
    /// certificates).
    pub fn new(max: usize) -> Orders {
        Orders {
            max,
            next: 0,
            orders: HashMap::new(),
            authz: HashMap::new(),
            certs: HashMap::new(),
        }
    }

    /// A fresh id.
    pub fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Drops what expired; then, if still full, refuses with `rateLimited`.
    pub fn make_room(&mut self, now: i64) -> Result<(), Problem> {
        self.orders.retain(|_, o| o.expires > now);
        self.authz.retain(|_, a| a.expires > now);
        self.certs.retain(|_, c| c.expires > now);
        if self.orders.len() >= self.max || self.certs.len() >= self.max {
            if let Some(oldest) = self
                .certs
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(i, _)| *i)
            {
                if self.certs.len() >= self.max {
                    self.certs.remove(&oldest);
                }
            }
        }
        if self.orders.len() >= self.max
            || self.authz.len() + MAX_IDENTIFIERS > self.max * MAX_IDENTIFIERS
        {
            return Err(Problem::new(
                "rateLimited",
                429,
                format!(
                    "the gateway holds its maximum of {} orders; retry later",
                    self.max
                ),
            ));
        }
        Ok(())
    }

    /// The order's status with its authorizations considered: pending → ready when all are
    /// valid, → invalid when one is invalid.
    pub fn refresh(&mut self, id: u64) {
        let Some(o) = self.orders.get(&id) else {
            return;
        };
        if o.status != Status::Pending {
            return;
        }
        let states: Vec<Status> = o
            .authz
            .iter()
            .map(|a| self.authz.get(a).map_or(Status::Invalid, |a| a.status))
            .collect();
        let new = if states.contains(&Status::Invalid) {
            Status::Invalid
        } else if states.iter().all(|s| *s == Status::Valid) {
            Status::Ready
        } else {
            Status::Pending
        };
        if let Some(o) = self.orders.get_mut(&id) {
            o.status = new;
            if new == Status::Invalid && o.error.is_none() {
                o.error = Some(Problem::unauthorized("an authorization failed"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use_expire_and_are_bounded() {
        let mut n = Nonces::default();
        let a = n.fresh(100).unwrap();
        assert!(n.spend(&a, 101));
        assert!(!n.spend(&a, 101), "a nonce is single-use");
        let b = n.fresh(100).unwrap();
        assert!(!n.spend(&b, 100 + NONCE_TTL), "an old nonce has expired");
        assert!(!n.spend("made-up", 100));
        for _ in 0..MAX_NONCES + 10 {
            n.fresh(200).unwrap();
        }
        assert_eq!(n.len(), MAX_NONCES);
    }

    #[test]
    fn orders_are_bounded() {
        let mut o = Orders::new(2);
        for i in 0..2 {
            o.make_room(0).unwrap();
            let id = o.id();
            o.orders.insert(
                id,
                Order {
                    account: 1,
                    names: vec![(format!("n{i}"), false)],
                    status: Status::Pending,
                    authz: Vec::new(),
                    expires: 10,
                    cert: None,
                    error: None,
                    profile: None,
                    replaces: None,
                },
            );
        }
        assert_eq!(o.make_room(0).unwrap_err().kind, "rateLimited");
        o.make_room(10).unwrap();
    }
}
