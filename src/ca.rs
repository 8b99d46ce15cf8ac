//! The local issuing CA for leaf sensors: a root and a name-constrained issuing intermediate.
//!
//! Layout of the CA directory (`<state_dir>/ca/`, 0700, see [`LocalCa::dir_in`]):
//! ```text
//! root.pem            the root certificate (self-signed by `ca init`, or the operator's root)
//! root.key            the root key (0600); absent when the operator's own root signed us
//! intermediate.pem    the issuing intermediate (pathlen 0, name constraints)
//! intermediate.key    its key (0600); absent when `key_uri` puts it in a PKCS#11 token
//! pending.key         `ca csr`: the key waiting for the operator's signed intermediate (0600)
//! ```
//!
//! With `key_uri` in `config ca`, the intermediate's key is made in and used from a TPM or HSM
//! (PKCS#11, RFC 7512 URI) and never touches the flash; `ca init` then makes the root key in
//! memory only, signs the intermediate with it and forgets it (no `root.key`). A token key that
//! can't be reached (wrong PIN, token missing, key object removed) leaves the CA open for
//! `/cacerts` while issuance answers 503, and each issuance tries the token again.
//!
//! Every leaf goes through one policy ([`LocalCa::issue`]): names inside both the configured
//! `allow_suffix` / `allow_ip` and the intermediate's nameConstraints (RFC 5280 §4.2.1.10),
//! lifetime capped by `max_lifetime`, and a key of acceptable strength whose CSR signature
//! verifies (RFC 2986 proof of possession).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SerialNumber,
};

use crate::config;
use crate::crypto::{
    self, CertInfo, Constraints, KeyStrength, KeyType, PrivateKey, SigningKey, Subtree,
};
use crate::store;
use crate::trust::TrustedNow;

pub mod crl;
mod names;
pub mod rotate;

use names::{constraints_permit, normalize_dns, rcgen_constraints, Name};
pub use names::{dns_host_name, dns_in_subtree, ip_in_subnet};

/// How far notBefore is backdated, for sensors whose clocks run a little behind.
pub const BACKDATE: i64 = 5 * 60;
/// Root lifetime: 10 years.
pub const ROOT_LIFETIME: i64 = 10 * 365 * 86_400;
/// Intermediate lifetime: 5 years.
pub const INTERMEDIATE_LIFETIME: i64 = 5 * 365 * 86_400;

const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root.key";
const INT_CERT: &str = "intermediate.pem";
const INT_KEY: &str = "intermediate.key";
const PENDING_KEY: &str = "pending.key";

/// An error from the local CA. [`Error::http_status`] maps it for EST.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request asks for something the policy forbids (a name outside the allowed suffixes
    /// or IP ranges, a lifetime over `max_lifetime`). EST: 403.
    Policy(String),
    /// The CSR is malformed, its signature does not verify, or its key is weak. EST: 400.
    BadCsr(String),
    /// There is no CA in this directory yet (`gatecert ca init`). EST: 503.
    NotInitialized(PathBuf),
    /// `init` found a CA already there and will not overwrite it.
    AlreadyExists(PathBuf),
    /// `ca install` refused the certificate; the message says why.
    Install(String),
    /// Reading or writing the CA directory failed.
    Store(store::Error),
    /// Building, signing or parsing failed.
    Crypto(crypto::Error),
    /// The clock is before the intermediate's notBefore. EST: 503 (come back later).
    Clock(String),
    /// The issuing key in the PKCS#11 token can't be used now (wrong PIN, token missing, key
    /// object removed). EST: 503; the next issuance tries the token again.
    KeyUnavailable(String),
    /// `ca rotate` needs the root key, and it is not in the CA directory (this path).
    RootOffline(PathBuf),
    /// The audit line could not be written: nothing was changed.
    Audit(crate::audit::Error),
}

impl Error {
    /// The HTTP status an EST server should answer with (RFC 7030 §4.2.3 leaves the choice to
    /// the server; 4xx for the client's fault, 5xx for ours).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Policy(_) => 403,
            Error::BadCsr(_) => 400,
            Error::NotInitialized(_) | Error::Clock(_) | Error::KeyUnavailable(_) => 503,
            _ => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Policy(m) => write!(f, "refused by CA policy: {m}"),
            Error::BadCsr(m) => write!(f, "bad CSR: {m}"),
            Error::NotInitialized(d) => {
                write!(f, "no local CA in {} (run `gatecert ca init`)", d.display())
            }
            Error::AlreadyExists(d) => write!(
                f,
                "a CA already exists in {}; refusing to overwrite it",
                d.display()
            ),
            Error::Install(m) => write!(f, "cannot install the intermediate: {m}"),
            Error::Clock(m) => write!(f, "clock untrusted: {m}"),
            Error::KeyUnavailable(m) => write!(f, "the CA's issuing key is unavailable: {m}"),
            Error::RootOffline(p) => write!(
                f,
                "the root key {} is not here (an operator's root, or a CA made with key_uri): \
                 ca rotate needs it to sign the new intermediate",
                p.display()
            ),
            Error::Audit(_) => f.write_str("audit log (nothing was changed)"),
            Error::Store(_) => f.write_str("CA state"),
            Error::Crypto(_) => f.write_str("CA crypto"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            Error::Crypto(e) => Some(e),
            Error::Audit(e) => Some(e),
            _ => None,
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

impl From<crypto::Error> for Error {
    fn from(e: crypto::Error) -> Self {
        Error::Crypto(e)
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Crypto(crypto::Error::Build(e.to_string()))
    }
}

/// A CSR that parsed, whose signature verified and whose key is strong enough. Names are not
/// yet checked against policy: [`LocalCa::issue`] does that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    /// Subject commonName, if any (informational: leaves get CN = their first SAN).
    pub subject_cn: Option<String>,
    /// dNSName SANs requested.
    pub dns: Vec<String>,
    /// iPAddress SANs requested.
    pub ips: Vec<IpAddr>,
    /// The DER SubjectPublicKeyInfo the leaf will carry.
    pub spki_der: Vec<u8>,
    /// The CSR's DER.
    pub der: Vec<u8>,
}

/// What to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The verified CSR.
    pub csr: Csr,
    /// Requested lifetime in seconds; `None` = `lifetime` from the config.
    pub lifetime: Option<u64>,
    /// Ask for EKU serverAuth too (granted only when the config's `server_auth` is on).
    pub server_auth: bool,
}

/// An issued leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The leaf certificate, DER.
    pub leaf_der: Vec<u8>,
    /// `[leaf, intermediate]`, DER (what EST `/simpleenroll` returns).
    pub chain_der: Vec<Vec<u8>>,
    /// The serial, upper-case hex (as `openssl x509 -serial` prints it).
    pub serial_hex: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

/// The local CA: the root certificate, the intermediate and its key, and the issuing policy.
pub struct LocalCa {
    dir: PathBuf,
    cfg: config::Ca,
    root_der: Vec<u8>,
    int_der: Vec<u8>,
    int_info: CertInfo,
    int_constraints: Constraints,
    /// The issuing key: a file key, or a token key opened now or at the next issuance.
    key: Mutex<Option<Arc<SigningKey>>>,
    /// Replaced intermediates kept for verification (`ca rotate`), oldest first.
    previous: Vec<rotate::Generation>,
    /// `intermediate.pem`'s identity when opened ([`LocalCa::changed_on_disk`]).
    stamp: Option<(u64, u64, i64)>,
    /// The intermediate as rcgen's issuer, built on the issuing key it holds: parsed from the
    /// intermediate once, not for every leaf. Built again when the key is another (a token
    /// key opened again).
    issuer: Mutex<Option<(Arc<SigningKey>, Issuer<'static, crypto::RcgenKey<'static>>)>>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .field("intermediate", &self.int_info.subject)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// The CA directory inside a state directory: `<state_dir>/ca`.
    pub fn dir_in(state_dir: &Path) -> PathBuf {
        state_dir.join("ca")
    }

    /// True when `dir` holds an installed intermediate.
    pub fn exists(dir: &Path) -> bool {
        dir.join(INT_CERT).exists() || dir.join(INT_KEY).exists()
    }

    /// Creates a P-256 self-signed root (10 years) and an issuing intermediate (5 years,
    /// pathlen 0, nameConstraints permitting `allow_suffix` DNS subtrees and `allow_ip` ranges,
    /// RFC 5280 §4.2.1.10) in `dir` (the CA directory itself, e.g. [`LocalCa::dir_in`]).
    /// Refuses to overwrite an existing CA. `now` proves the clock was trusted
    /// ([`crate::trust`]): a CA dated by a 1970 clock expires before the clock is right.
    pub fn init(dir: &Path, cfg: &config::Ca, now: TrustedNow) -> Result<LocalCa, Error> {
        let now = now.unix();
        if Self::exists(dir) || dir.join(ROOT_KEY).exists() {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        store::private_dir(dir)?;
        let root_key = PrivateKey::generate(KeyType::Ec256)?;
        let int_key = match &cfg.key_uri {
            // The root key then lives in memory only: it signs the intermediate and is gone.
            Some(uri) => SigningKey::generate_in_token(uri, KeyType::Ec256)
                .map_err(|e| Error::KeyUnavailable(e.to_string()))?,
            None => SigningKey::from(PrivateKey::generate(KeyType::Ec256)?),
        };

        let mut root = ca_params(&format!("{} Root CA", cfg.name), now, ROOT_LIFETIME)?;
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root_rc = root_key.to_rcgen();
        let root_cert = root.self_signed(&root_rc)?;
        let root_der = root_cert.der().to_vec();

        let int_der = Self::sign_intermediate(&root_der, &root_key, &int_key, cfg, now)?;

        // Keys first, certificates last: a crash leaves no certificate without its key.
        if let Some(int_key) = int_key.as_file() {
            store::write_atomic(
                &dir.join(ROOT_KEY),
                root_key.to_pem().as_bytes(),
                store::SECRET,
            )?;
            store::write_atomic(
                &dir.join(INT_KEY),
                int_key.to_pem().as_bytes(),
                store::SECRET,
            )?;
        }
        store::write_atomic(
            &dir.join(ROOT_CERT),
            crypto::pem_block("CERTIFICATE", &root_der).as_bytes(),
            store::PUBLIC,
        )?;
        store::write_atomic(
            &dir.join(INT_CERT),
            crypto::pem_block("CERTIFICATE", &int_der).as_bytes(),
            store::PUBLIC,
        )?;
        log::info!("local CA initialised in {}", dir.display());
        Self::open(dir, cfg)
    }

    fn sign_intermediate(
        root_der: &[u8],
        root_key: &PrivateKey,
        int_key: &SigningKey,
        cfg: &config::Ca,
        now: i64,
    ) -> Result<Vec<u8>, Error> {
        let mut int = ca_params(
            &format!("{} Issuing CA", cfg.name),
            now,
            INTERMEDIATE_LIFETIME,
        )?;
        int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int.name_constraints = Some(rcgen_constraints(cfg));
        int.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&root_der.into(), root_key.to_rcgen())?;
        Ok(int.signed_by(&int_key.rcgen(), &issuer)?.der().to_vec())
    }

    /// Opens the CA in `dir`. Checks that the intermediate matches its key and is a CA.
    pub fn open(dir: &Path, cfg: &config::Ca) -> Result<LocalCa, Error> {
        let stamp = rotate::file_stamp(dir);
        let Some(int_pem) = store::read_optional(&dir.join(INT_CERT))? else {
            return Err(Error::NotInitialized(dir.to_path_buf()));
        };
        let key = match &cfg.key_uri {
            Some(uri) => match SigningKey::open(uri) {
                Ok(k) => Some(k),
                Err(e) => {
                    // Serve what we can (/cacerts, status); issuance answers 503 until it's back.
                    log::error!("local CA: the issuing key in the token is unavailable: {e}");
                    None
                }
            },
            None => {
                let key_path = dir.join(INT_KEY);
                let k = PrivateKey::from_pem(&store::read(&key_path)?).map_err(|e| {
                    store::Error::Corrupt {
                        path: key_path.clone(),
                        what: e.to_string(),
                    }
                })?;
                Some(SigningKey::from(k))
            }
        };
        let int_path = dir.join(INT_CERT);
        let corrupt = |what: String| store::Error::Corrupt {
            path: int_path.clone(),
            what,
        };
        let mut int_info = CertInfo::from_pem(&int_pem).map_err(|e| corrupt(e.to_string()))?;
        if cfg.key_uri.is_none() && key.as_ref().is_some_and(|k| !k.matches(&int_info)) {
            // A rotation between its two renames: the new key is live, its certificate staged.
            if let Some(staged) = rotate::staged_cert(dir)? {
                let next = CertInfo::from_pem(&staged).map_err(|e| corrupt(e.to_string()))?;
                if key.as_ref().is_some_and(|k| k.matches(&next)) {
                    int_info = next;
                }
            }
        }
        if key.as_ref().is_some_and(|k| !k.matches(&int_info)) {
            let which = match &cfg.key_uri {
                Some(uri) => format!("does not match the token key {uri}"),
                None => "does not match intermediate.key".into(),
            };
            return Err(corrupt(which).into());
        }
        if !int_info.is_ca {
            return Err(corrupt("is not a CA certificate".into()).into());
        }
        let int_constraints = crypto::name_constraints(&int_info.der)
            .map_err(|e| corrupt(e.to_string()))?
            .unwrap_or_default();
        let root_path = dir.join(ROOT_CERT);
        let root_der = crypto::certs_from_pem(&store::read(&root_path)?)
            .map_err(|e| store::Error::Corrupt {
                path: root_path.clone(),
                what: e.to_string(),
            })?
            .remove(0)
            .to_vec();
        let previous = rotate::load_previous(dir, &int_info)?;
        Ok(LocalCa {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            root_der,
            int_der: int_info.der.clone(),
            int_info,
            int_constraints,
            key: Mutex::new(key.map(Arc::new)),
            previous,
            stamp,
            issuer: Mutex::new(None),
        })
    }

    /// The issuing key, opening the token again when it was unavailable. A key that does not
    /// match the intermediate (another object under the same label) is refused.
    fn signing_key(&self) -> Result<Arc<SigningKey>, Error> {
        let mut slot = self
            .key
            .lock()
            .map_err(|_| Error::KeyUnavailable("key lock poisoned".into()))?;
        if let Some(k) = slot.as_ref() {
            return Ok(k.clone());
        }
        let Some(uri) = &self.cfg.key_uri else {
            return Err(Error::KeyUnavailable("no issuing key".into()));
        };
        let k = SigningKey::open(uri).map_err(|e| Error::KeyUnavailable(e.to_string()))?;
        if !k.matches(&self.int_info) {
            return Err(Error::KeyUnavailable(format!(
                "the token key {uri} does not match the intermediate"
            )));
        }
        log::info!(
            "local CA: the issuing key in the token is back: {}",
            k.describe()
        );
        let k = Arc::new(k);
        *slot = Some(k.clone());
        Ok(k)
    }

    /// A description of the issuing key (`check`), or why it is unavailable.
    pub fn key_status(&self) -> Result<String, Error> {
        self.signing_key().map(|k| k.describe())
    }

    /// Forgets a token key whose use failed, so the next issuance opens the token again.
    fn drop_key(&self) {
        if self.cfg.key_uri.is_some() {
            if let Ok(mut slot) = self.key.lock() {
                *slot = None;
            }
        }
    }

    /// `ca csr`: makes (or reuses) `pending.key` and returns a PEM CSR for an intermediate that
    /// the operator's own root will sign. Refuses when a CA is already installed here. Like
    /// every creating call, it takes the clock gate's proof ([`crate::trust`]).
    pub fn pending_csr(dir: &Path, cfg: &config::Ca, _now: TrustedNow) -> Result<String, Error> {
        if Self::exists(dir) {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        store::private_dir(dir)?;
        if let Some(uri) = &cfg.key_uri {
            // The pending key is made in the token (or reused from an earlier `ca csr`).
            let key = match SigningKey::open(uri) {
                Ok(k) => k,
                Err(_) => SigningKey::generate_in_token(uri, KeyType::Ec256)
                    .map_err(|e| Error::KeyUnavailable(e.to_string()))?,
            };
            let csr = ca_csr_params(cfg).serialize_request(&key.rcgen())?;
            return Ok(crypto::pem_block("CERTIFICATE REQUEST", csr.der()));
        }
        let path = dir.join(PENDING_KEY);
        let key = match store::read_optional(&path)? {
            Some(pem) => PrivateKey::from_pem(&pem).map_err(|e| store::Error::Corrupt {
                path: path.clone(),
                what: e.to_string(),
            })?,
            None => {
                let k = PrivateKey::generate(KeyType::Ec256)?;
                store::write_atomic(&path, k.to_pem().as_bytes(), store::SECRET)?;
                k
            }
        };
        let csr = ca_csr_params(cfg).serialize_request(&key.to_rcgen())?;
        Ok(crypto::pem_block("CERTIFICATE REQUEST", csr.der()))
    }

    /// `ca install`: installs the operator-signed intermediate for `pending.key`. `pem` holds the
    /// intermediate first, then its issuer chain up to the operator's root (at least one cert).
    /// Refuses, with the reason, a certificate that does not match the pending key, is not a CA,
    /// is not signed by the next certificate, or whose nameConstraints do not cover every
    /// `allow_suffix` (and `allow_ip`).
    /// `now` is the clock gate's proof ([`crate::trust`]): expiry is judged on a trusted clock.
    pub fn install(
        dir: &Path,
        cfg: &config::Ca,
        pem: &str,
        now: TrustedNow,
    ) -> Result<LocalCa, Error> {
        let now = now.unix();
        if Self::exists(dir) {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        let key_path = dir.join(PENDING_KEY);
        let key = match &cfg.key_uri {
            Some(uri) => SigningKey::open(uri)
                .map_err(|e| Error::Install(format!("{e} (run `gatecert ca csr` first)")))?,
            None => {
                let Some(key_pem) = store::read_optional(&key_path)? else {
                    return Err(Error::Install(format!(
                        "no pending key {} (run `gatecert ca csr` first)",
                        key_path.display()
                    )));
                };
                SigningKey::from(PrivateKey::from_pem(&key_pem)?)
            }
        };
        let certs = crypto::certs_from_pem(pem).map_err(|e| Error::Install(e.to_string()))?;
        let int = CertInfo::from_der(&certs[0]).map_err(|e| Error::Install(e.to_string()))?;
        if !key.matches(&int) {
            return Err(Error::Install(
                "the certificate's public key is not the pending key's".into(),
            ));
        }
        if !int.is_ca {
            return Err(Error::Install(
                "the certificate is not a CA (basicConstraints cA)".into(),
            ));
        }
        if now >= int.not_after {
            return Err(Error::Install("the certificate has expired".into()));
        }
        if certs.len() < 2 {
            return Err(Error::Install(
                "no issuer certificate: append the operator's root (and any intermediates) after \
                 the intermediate in the file"
                    .into(),
            ));
        }
        for pair in certs.windows(2) {
            if !crypto::signed_by(&pair[0], &pair[1]) {
                return Err(Error::Install(
                    "the chain does not verify: a certificate is not signed by the next one".into(),
                ));
            }
        }
        let nc = crypto::name_constraints(&int.der)
            .map_err(|e| Error::Install(e.to_string()))?
            .ok_or_else(|| {
                Error::Install(
                    "the certificate carries no nameConstraints; the local CA must be \
                     name-constrained to allow_suffix"
                        .into(),
                )
            })?;
        for s in &cfg.allow_suffix {
            let s = s.trim_start_matches('.').to_ascii_lowercase();
            if !constraints_permit(&nc, &Name::Dns(&s)) {
                return Err(Error::Install(format!(
                    "its nameConstraints do not cover allow_suffix {s:?}"
                )));
            }
        }
        for (net, len) in &cfg.allow_ip {
            let covered = !nc.excluded.iter().any(|t| matches!(t, Subtree::Ip(n, l) if ip_in_subnet(*net, *n, *l) || ip_in_subnet(*n, *net, *len)))
                && nc.permitted.iter().any(|t| matches!(t, Subtree::Ip(n, l) if l <= len && ip_in_subnet(*net, *n, *l)));
            if !covered {
                return Err(Error::Install(format!(
                    "its nameConstraints do not cover allow_ip {net}/{len}"
                )));
            }
        }
        // The operator's root is the last certificate; intermediates between are not kept.
        let root = &certs[certs.len() - 1];
        let root_pem = crypto::pem_block("CERTIFICATE", root);
        if let Some(key) = key.as_file() {
            store::write_atomic(&dir.join(INT_KEY), key.to_pem().as_bytes(), store::SECRET)?;
        }
        store::write_atomic(&dir.join(ROOT_CERT), root_pem.as_bytes(), store::PUBLIC)?;
        store::write_atomic(
            &dir.join(INT_CERT),
            crypto::pem_block("CERTIFICATE", &int.der).as_bytes(),
            store::PUBLIC,
        )?;
        let _ = std::fs::remove_file(&key_path);
        log::info!(
            "operator-signed intermediate installed in {}",
            dir.display()
        );
        Self::open(dir, cfg)
    }

    /// True when the CA in `dir` was created by gatecert (`ca init` or the service, so it holds
    /// `root.key`) with a clock that could not have been right: its root's notBefore is before
    /// [`crate::trust::EPOCH`], when no gatecert existed. Such a CA (an older build created it
    /// at 1970 on a router without RTC) expires long before the clock is right.
    pub fn made_with_bad_clock(dir: &Path) -> bool {
        if !dir.join(ROOT_KEY).exists() {
            return false;
        }
        let Ok(Some(pem)) = store::read_optional(&dir.join(ROOT_CERT)) else {
            return false;
        };
        CertInfo::from_pem(&pem).is_ok_and(|root| root.not_before < crate::trust::EPOCH)
    }

    /// Moves the CA in `dir` aside to `<dir>.bad-clock-<root notBefore>` (kept for
    /// inspection, 0700 like the CA) and returns where it went. The caller has checked
    /// [`LocalCa::made_with_bad_clock`] and that the CA issued nothing.
    pub fn retire(dir: &Path) -> Result<PathBuf, Error> {
        let stamp = store::read_optional(&dir.join(ROOT_CERT))?
            .and_then(|pem| CertInfo::from_pem(&pem).ok())
            .map_or(0, |root| root.not_before);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ca".into());
        let to = dir.with_file_name(format!("{name}.bad-clock-{stamp}"));
        let _ = std::fs::remove_dir_all(&to);
        std::fs::rename(dir, &to).map_err(store::io_err("rename", dir))?;
        if let Some(parent) = dir.parent() {
            store::sync_dir(parent)?;
        }
        Ok(to)
    }

    /// `[intermediate, root]`, DER: the EST `/cacerts` set (RFC 7030 §4.1.3).
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        if self.root_der == self.int_der {
            vec![self.int_der.clone()]
        } else {
            vec![self.int_der.clone(), self.root_der.clone()]
        }
    }

    /// The root certificate, PEM (what sensors pin as their trust anchor).
    pub fn root_pem(&self) -> String {
        crypto::pem_block("CERTIFICATE", &self.root_der)
    }

    /// The intermediate, parsed.
    pub fn intermediate(&self) -> &CertInfo {
        &self.int_info
    }

    /// The intermediate's nameConstraints.
    pub fn constraints(&self) -> &Constraints {
        &self.int_constraints
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Parses a PKCS#10 CSR, judges its key and verifies its signature (proof of possession).
    /// Accepts P-256, P-384, Ed25519 and RSA of 2048 bits or more; anything weaker is refused
    /// with the reason.
    pub fn verify_csr(&self, csr_der: &[u8]) -> Result<Csr, Error> {
        verify_csr(csr_der)
    }

    /// True when the config's `server_auth` lets leaves carry EKU serverAuth.
    pub fn allows_server_auth(&self) -> bool {
        self.cfg.server_auth
    }

    /// The longest lifetime this CA issues (`max_lifetime`), seconds.
    pub fn max_lifetime(&self) -> u64 {
        self.cfg.max_lifetime
    }

    /// Issues a leaf for a verified CSR, after the policy checks (see the module doc), at a
    /// trusted time ([`crate::trust`]).
    pub fn issue(&self, req: &IssueRequest, now: TrustedNow) -> Result<Issued, Error> {
        let server_auth = req.server_auth && self.cfg.server_auth;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(&req.csr.spki_der)
            .map_err(|e| Error::BadCsr(format!("public key not usable: {e}")))?;
        self.sign_leaf(
            &req.csr.dns,
            &req.csr.ips,
            req.lifetime,
            server_auth,
            &spki,
            now,
        )
    }

    /// Makes a fresh P-256 key and issues a leaf for it: EST `/serverkeygen` (RFC 7030 §4.4) and
    /// the gateway's own serving certificate in standalone mode. `server_auth` is granted here
    /// whatever the config says, since the caller (not a sensor) chose it.
    pub fn issue_with_new_key(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        lifetime: Option<u64>,
        server_auth: bool,
        now: TrustedNow,
    ) -> Result<(PrivateKey, Issued), Error> {
        let key = PrivateKey::generate(KeyType::Ec256)?;
        let issued = self.sign_leaf(dns, ips, lifetime, server_auth, &key.to_rcgen(), now)?;
        Ok((key, issued))
    }

    /// Issues a leaf for a key the caller holds (a key in a PKCS#11 token): the EST listener's
    /// and standalone certificates' own sets. Same policy and gates as every leaf.
    pub fn issue_for_key(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        lifetime: Option<u64>,
        server_auth: bool,
        key: &SigningKey,
        now: TrustedNow,
    ) -> Result<Issued, Error> {
        self.sign_leaf(dns, ips, lifetime, server_auth, &key.rcgen(), now)
    }

    /// True when `cert_der`'s signature verifies under the intermediate's key or a replaced one
    /// still kept (EST `/simplereenroll` checks the client's current certificate with this, so
    /// a leaf of the replaced intermediate re-enrolls onto the new one).
    pub fn issued_by_me(&self, cert_der: &[u8]) -> bool {
        self.issued_by_current(cert_der)
            || self
                .previous
                .iter()
                .any(|g| crypto::signed_by(cert_der, &g.info.der))
    }

    fn sign_leaf(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        lifetime: Option<u64>,
        server_auth: bool,
        spki: &impl rcgen::PublicKeyData,
        now: TrustedNow,
    ) -> Result<Issued, Error> {
        let now = now.unix();
        // The one signing path for leaves: whatever floor the caller's clock check used, never
        // sign before the intermediate itself is valid (a leaf it could not have issued).
        if now < self.int_info.not_before {
            return Err(Error::Clock(format!(
                "the clock ({}) is earlier than the intermediate's notBefore ({})",
                crypto::rfc3339(now),
                crypto::rfc3339(self.int_info.not_before)
            )));
        }
        self.check_names(dns, ips)?;
        let lifetime = match lifetime {
            None => self.cfg.lifetime,
            Some(l) if l > self.cfg.max_lifetime => {
                return Err(Error::Policy(format!(
                    "lifetime {l}s exceeds max_lifetime {}s",
                    self.cfg.max_lifetime
                )))
            }
            Some(0) => return Err(Error::Policy("lifetime 0".into())),
            Some(l) => l,
        };
        let lifetime = i64::try_from(lifetime).unwrap_or(i64::MAX / 4);
        let dns: Vec<String> = dns
            .iter()
            .map(|d| normalize_dns(d))
            .collect::<Result<_, _>>()?;
        let mut not_after = now.saturating_add(lifetime);
        if not_after > self.int_info.not_after {
            log::warn!(
                "leaf lifetime cut to the intermediate's notAfter {}",
                crypto::rfc3339(self.int_info.not_after)
            );
            not_after = self.int_info.not_after;
        }
        if not_after <= now {
            return Err(Error::Policy("the intermediate has expired".into()));
        }

        let mut params = CertificateParams::default();
        params.not_before = to_time(now - BACKDATE)?;
        params.not_after = to_time(not_after)?;
        let mut serial = crypto::random_bytes::<16>()?;
        serial[0] &= 0x7f; // positive (RFC 5280 §4.1.2.2)
        serial[0] |= 0x01; // and exactly 16 bytes long, whatever the RNG gave
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.subject_alt_names = crypto::sans(&dns, ips)?;
        let cn = dns
            .first()
            .cloned()
            .or_else(|| ips.first().map(IpAddr::to_string))
            .unwrap_or_default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.cfg.crl_url {
            // RFC 5280 §4.2.1.13: where relying parties find this CA's CRL.
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        let key = self.signing_key()?;
        let mut kept = self
            .issuer
            .lock()
            .map_err(|_| Error::KeyUnavailable("issuer lock poisoned".into()))?;
        let issuer = match &mut *kept {
            Some((k, issuer)) if Arc::ptr_eq(k, &key) => issuer,
            slot => {
                let issuer =
                    Issuer::from_ca_cert_der(&self.int_der.as_slice().into(), key.rcgen_shared())?;
                &mut slot.insert((key.clone(), issuer)).1
            }
        };
        let leaf = match params.signed_by(spki, &*issuer) {
            Ok(leaf) => leaf,
            Err(rcgen::Error::RemoteKeyError) => {
                // A token key failed to sign (token pulled, object removed, session lost).
                *kept = None;
                self.drop_key();
                log::error!("local CA: the issuing key in the token failed to sign");
                return Err(Error::KeyUnavailable(
                    "the token failed to sign (see the log for its error)".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let leaf_der = leaf.der().to_vec();
        // What was just encoded, without parsing it back: the serial is 16 bytes with the top
        // bit clear and a non-zero first byte (so its DER INTEGER is exactly those bytes), and
        // the times are whole seconds.
        Ok(Issued {
            chain_der: vec![leaf_der.clone(), self.int_der.clone()],
            leaf_der,
            serial_hex: crypto::serial_display(&crypto::hex(&serial)),
            not_after,
        })
    }
}

/// RFC 5280 Appendix A.1, `ub-common-name`.
pub const UB_COMMON_NAME: usize = 64;

/// Parses and verifies a CSR (see [`LocalCa::verify_csr`]); needs no CA.
pub fn verify_csr(csr_der: &[u8]) -> Result<Csr, Error> {
    let info = crypto::parse_csr(csr_der).map_err(|e| Error::BadCsr(e.to_string()))?;
    match info.key {
        KeyStrength::P256 | KeyStrength::P384 | KeyStrength::Ed25519 => {}
        KeyStrength::Rsa(bits) if bits >= 2048 => {}
        KeyStrength::Rsa(bits) => {
            return Err(Error::BadCsr(format!(
                "RSA key of {bits} bits is too weak: at least 2048 bits required"
            )))
        }
    }
    crypto::verify_csr_signature(csr_der).map_err(|e| match e {
        crypto::Error::BadSignature => {
            Error::BadCsr("the CSR's signature does not verify (no proof of possession)".into())
        }
        other => Error::BadCsr(other.to_string()),
    })?;
    // RFC 5280 Appendix A.1: ub-common-name INTEGER ::= 64. A longer CN is refused, not cut.
    if let Some(cn) = &info.subject_cn {
        let n = cn.chars().count();
        if n > UB_COMMON_NAME {
            return Err(Error::BadCsr(format!(
                "the subject CN is {n} characters long; RFC 5280 allows at most \
                 {UB_COMMON_NAME} (ub-common-name)"
            )));
        }
    }
    // A name asked for twice is issued once, as public CAs do (Boulder dedupes the CSR's names
    // case-insensitively): the certificate is the same either way, and a SAN list with
    // duplicates only inflates it. DNS names compare case-insensitively (RFC 4343).
    let mut dns: Vec<String> = Vec::with_capacity(info.dns.len());
    for d in info.dns {
        if !dns.iter().any(|x| x.eq_ignore_ascii_case(&d)) {
            dns.push(d);
        }
    }
    let mut ips: Vec<IpAddr> = Vec::with_capacity(info.ips.len());
    for ip in info.ips {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    // A CSR with no SAN (common with `openssl req -subj /CN=..`): the CN is the one name asked
    // for. It still goes through the same policy in `issue`.
    if dns.is_empty() && ips.is_empty() {
        if let Some(cn) = &info.subject_cn {
            match cn.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(cn.clone()),
            }
        }
    }
    Ok(Csr {
        subject_cn: info.subject_cn,
        dns,
        ips,
        spki_der: info.spki_der,
        der: info.der,
    })
}

/// The CSR for an intermediate the operator's root will sign (`ca csr`).
fn ca_csr_params(cfg: &config::Ca) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{} Issuing CA", cfg.name));
    params
}

fn ca_params(cn: &str, now: i64, lifetime: i64) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = to_time(now - BACKDATE)?;
    p.not_after = to_time(now + lifetime)?;
    let mut serial = crypto::random_bytes::<16>()?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn to_time(unix: i64) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| Error::Crypto(crypto::Error::Build(format!("time {unix}: {e}"))))
}

#[cfg(test)]
mod tests;
