//! Keys in a PKCS#11 token (a TPM through tpm2-pkcs11, an HSM, a secure element, SoftHSM2),
//! through the `cryptoki` crate, which `dlopen()`s the module the URI names.
//!
//! Signing is CKM_ECDSA (PKCS#11 v2.40 §2.3.6) over a SHA-256 / SHA-384 digest computed by
//! *ring*; the token returns `r || s`, which [`super::signing::ecdsa_raw_to_der`] encodes.
//! Keys made here are CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE and not CKA_EXTRACTABLE: the private
//! key never leaves the token. One module is loaded and initialised once per process; one
//! session per key, behind a mutex (a PKCS#11 session is not to be used by two threads at once).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::{Error, KeyType, KeyUri};

/// DER OID of P-256 (`prime256v1`, RFC 5480 §2.1.1.1), the CKA_EC_PARAMS value.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER OID of P-384 (`secp384r1`).
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A key pair in a token, with an open, logged-in session.
pub struct TokenKey {
    session: Mutex<Session>,
    private: ObjectHandle,
    kind: KeyType,
    point: Vec<u8>,
    uri: KeyUri,
    token_label: String,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `uri`'s Display leaves any PIN out.
        write!(f, "TokenKey({}, {})", self.kind.as_str(), self.uri)
    }
}

/// What `gatecert check` shows about a token key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenReport {
    /// The module's path, library description and manufacturer.
    pub module: String,
    /// The token's label, model and serial.
    pub token: String,
    /// The key's label and type; `None` when the token holds no key under that label yet.
    pub key: Option<String>,
}

impl TokenKey {
    /// Opens the key pair the URI names.
    pub fn open(uri: &KeyUri) -> Result<TokenKey, Error> {
        let (session, token_label) = login(uri)?;
        let private = find_one(&session, uri, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
            Error::Key(format!(
                "{uri}: no private key labelled {:?} in token {token_label:?}",
                uri.object
            ))
        })?;
        let public = find_one(&session, uri, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| {
            Error::Key(format!(
                "{uri}: the private key has no public key object labelled {:?}",
                uri.object
            ))
        })?;
        let (kind, point) = public_key(&session, public, uri)?;
        Ok(TokenKey {
            session: Mutex::new(session),
            private,
            kind,
            point,
            uri: uri.clone(),
            token_label,
        })
    }

    /// Generates a key pair labelled `uri.object` (and `uri.id`, if given) in the token.
    pub fn generate(uri: &KeyUri, kind: KeyType) -> Result<TokenKey, Error> {
        let (session, token_label) = login(uri)?;
        if find_one(&session, uri, ObjectClass::PRIVATE_KEY)?.is_some()
            || find_one(&session, uri, ObjectClass::PUBLIC_KEY)?.is_some()
        {
            return Err(Error::Key(format!(
                "{uri}: token {token_label:?} already holds a key labelled {:?}; refusing to \
                 make a second one",
                uri.object
            )));
        }
        let params = match kind {
            KeyType::Ec256 => P256_PARAMS,
            KeyType::Ec384 => P384_PARAMS,
        };
        let label = Attribute::Label(uri.object.as_bytes().to_vec());
        let id = Attribute::Id(
            uri.id
                .clone()
                .unwrap_or_else(|| uri.object.as_bytes().to_vec()),
        );
        let public_tpl = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(params.to_vec()),
            label.clone(),
            id.clone(),
        ];
        let private_tpl = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            label,
            id,
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public_tpl, &private_tpl)
            .map_err(|e| ck(uri, "C_GenerateKeyPair", e))?;
        drop(session);
        log::info!(
            "made a {} key in token {token_label:?}: {uri}",
            kind.as_str()
        );
        Self::open(uri)
    }

    /// The URI the key was opened with.
    pub fn uri(&self) -> &KeyUri {
        &self.uri
    }

    /// The key's type.
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// The uncompressed public point.
    pub fn public_point(&self) -> &[u8] {
        &self.point
    }

    /// ECDSA over the curve's hash (ring computes it; CKM_ECDSA signs the digest), DER-encoded.
    pub fn sign_der(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        super::signing::ecdsa_raw_to_der(&self.sign_raw(msg)?)
    }

    /// ECDSA over the curve's hash as the fixed-width `r || s` CKM_ECDSA returns (PKCS#11 v2.40
    /// §2.3.1): the JWS encoding of RFC 7518 §3.4, as ACME requests are signed.
    pub fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let (alg, width) = match self.kind {
            KeyType::Ec256 => (&ring::digest::SHA256, 64),
            KeyType::Ec384 => (&ring::digest::SHA384, 96),
        };
        let digest = ring::digest::digest(alg, msg);
        let raw = {
            let session = self
                .session
                .lock()
                .map_err(|_| Error::Key(format!("{}: session lock poisoned", self.uri)))?;
            session
                .sign(&Mechanism::Ecdsa, self.private, digest.as_ref())
                .map_err(|e| ck(&self.uri, "C_Sign", e))?
        };
        if raw.len() != width {
            return Err(Error::Key(format!(
                "{}: the token returned a {}-byte ECDSA signature (expected {width})",
                self.uri,
                raw.len()
            )));
        }
        Ok(raw)
    }

    /// For `check`: the key's URI and token.
    pub fn describe(&self) -> String {
        format!(
            "{} key {:?} in token {:?} ({})",
            self.kind.as_str(),
            self.uri.object,
            self.token_label,
            self.uri.module_path.display()
        )
    }
}

/// Destroys the key pair `uri` names; absent objects are not an error.
pub fn destroy(uri: &KeyUri) -> Result<(), Error> {
    let (session, _) = login(uri)?;
    let mut removed = 0;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        while let Some(h) = find_one(&session, uri, class)? {
            session
                .destroy_object(h)
                .map_err(|e| ck(uri, "C_DestroyObject", e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        log::info!("removed the key from the token: {uri}");
    }
    Ok(())
}

/// True when the token holds a private key object the URI names (false when it holds none;
/// an error when the module, the token or the PIN fails).
pub fn exists(uri: &KeyUri) -> Result<bool, Error> {
    let (session, _) = login(uri)?;
    Ok(find_one(&session, uri, ObjectClass::PRIVATE_KEY)?.is_some())
}

/// The labels of the EC key objects (private or public) in the URI's token for which `select`
/// is true, each once.
pub fn labels(uri: &KeyUri, select: &dyn Fn(&str) -> bool) -> Result<Vec<String>, Error> {
    let (session, _) = login(uri)?;
    let mut out: Vec<String> = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let found = session
            .find_objects(&[Attribute::Class(class), Attribute::KeyType(CkKeyType::EC)])
            .map_err(|e| ck(uri, "C_FindObjects", e))?;
        for h in found {
            let attrs = session
                .get_attributes(h, &[AttributeType::Label])
                .map_err(|e| ck(uri, "C_GetAttributeValue", e))?;
            for a in attrs {
                if let Attribute::Label(l) = a {
                    let l = String::from_utf8_lossy(&l).into_owned();
                    if select(&l) && !out.contains(&l) {
                        out.push(l);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What `check` reports: the module, the token and the key, or the first thing that failed
/// (module missing, token missing, wrong PIN, a key object that is not a usable EC key).
pub fn report(uri: &KeyUri) -> Result<TokenReport, Error> {
    let ctx = module(&uri.module_path)?;
    let info = ctx
        .get_library_info()
        .map_err(|e| ck(uri, "C_GetInfo", e))?;
    let (session, _) = login(uri)?;
    let slot = find_slot(&ctx, uri)?;
    let t = ctx
        .get_token_info(slot)
        .map_err(|e| ck(uri, "C_GetTokenInfo", e))?;
    let key = match find_one(&session, uri, ObjectClass::PRIVATE_KEY)? {
        None => None,
        Some(_) => {
            drop(session);
            let key = TokenKey::open(uri)?;
            Some(format!(
                "{:?} ({}, non-extractable)",
                uri.object,
                key.kind.as_str()
            ))
        }
    };
    Ok(TokenReport {
        module: format!(
            "{} ({}, {})",
            uri.module_path.display(),
            clean(info.library_description()),
            clean(info.manufacturer_id())
        ),
        token: format!(
            "{:?} (model {}, serial {})",
            clean(t.label()),
            clean(t.model()),
            clean(t.serial_number())
        ),
        key,
    })
}

/// The loaded, initialised module for `path` (loaded once per process: a second C_Initialize
/// of the same module fails with CKR_CRYPTOKI_ALREADY_INITIALIZED).
fn module(path: &Path) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();
    let modules = MODULES.get_or_init(|| Mutex::new(Vec::new()));
    let mut modules = modules
        .lock()
        .map_err(|_| Error::Key("PKCS#11 module table lock poisoned".into()))?;
    if let Some((_, m)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(m.clone());
    }
    if !path.exists() {
        return Err(Error::Key(format!(
            "PKCS#11 module {} does not exist",
            path.display()
        )));
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| Error::Key(format!("loading PKCS#11 module {}: {e}", path.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::Key(format!(
                "initialising PKCS#11 module {}: {e}",
                path.display()
            )))
        }
    }
    modules.push((path.to_path_buf(), ctx.clone()));
    Ok(ctx)
}

/// The slot whose token matches the URI's token attributes.
fn find_slot(ctx: &Pkcs11, uri: &KeyUri) -> Result<Slot, Error> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| ck(uri, "C_GetSlotList", e))?;
    let mut labels = Vec::new();
    for slot in slots {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let Ok(t) = ctx.get_token_info(slot) else {
            continue;
        };
        let m =
            |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == clean(have));
        if m(&uri.token, t.label())
            && m(&uri.serial, t.serial_number())
            && m(&uri.manufacturer, t.manufacturer_id())
            && m(&uri.model, t.model())
        {
            if !t.token_initialized() {
                labels.push(format!("{:?} (not initialised)", clean(t.label())));
                continue;
            }
            return Ok(slot);
        }
        labels.push(format!("{:?}", clean(t.label())));
    }
    Err(Error::Key(format!(
        "{uri}: no such token in module {} (tokens present: {})",
        uri.module_path.display(),
        if labels.is_empty() {
            "none".to_string()
        } else {
            labels.join(", ")
        }
    )))
}

/// Opens a read-write session on the URI's token and logs the user in with the PIN.
fn login(uri: &KeyUri) -> Result<(Session, String), Error> {
    let ctx = module(&uri.module_path)?;
    let slot = find_slot(&ctx, uri)?;
    let label = ctx
        .get_token_info(slot)
        .map(|t| clean(t.label()))
        .unwrap_or_default();
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| ck(uri, "C_OpenSession", e))?;
    let pin = uri
        .read_pin()
        .map_err(|e| Error::Key(format!("{uri}: {e}")))?;
    if let Some(pin) = pin {
        match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
            // Login state is per application and token: a second session is already in.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(Error::Key(format!(
                    "{uri}: the token {label:?} refused the PIN (wrong PIN)"
                )))
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(Error::Key(format!(
                    "{uri}: the token {label:?} has locked the PIN"
                )))
            }
            Err(e) => return Err(ck(uri, "C_Login", e)),
        }
    }
    Ok((session, label))
}

/// The one object of `class` with the URI's label (and id): `None` when there is none.
fn find_one(
    session: &Session,
    uri: &KeyUri,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>, Error> {
    let mut tpl = vec![
        Attribute::Class(class),
        Attribute::KeyType(CkKeyType::EC),
        Attribute::Label(uri.object.as_bytes().to_vec()),
    ];
    if let Some(id) = &uri.id {
        tpl.push(Attribute::Id(id.clone()));
    }
    let found = session
        .find_objects(&tpl)
        .map_err(|e| ck(uri, "C_FindObjects", e))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(Error::Key(format!(
            "{uri}: {} objects match; add id= to the URI to pick one",
            many.len()
        ))),
    }
}

/// The curve and the uncompressed point of a public key object.
fn public_key(
    session: &Session,
    public: ObjectHandle,
    uri: &KeyUri,
) -> Result<(KeyType, Vec<u8>), Error> {
    let attrs = session
        .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|e| ck(uri, "C_GetAttributeValue", e))?;
    let (mut params, mut point) = (None, None);
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let kind = match params.as_deref() {
        Some(P256_PARAMS) => KeyType::Ec256,
        Some(P384_PARAMS) => KeyType::Ec384,
        _ => {
            return Err(Error::Key(format!(
                "{uri}: the key is not on P-256 or P-384"
            )))
        }
    };
    let want = match kind {
        KeyType::Ec256 => 65,
        KeyType::Ec384 => 97,
    };
    // CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some
    // modules give the bare point.
    let point = point.unwrap_or_default();
    let bare = match point.as_slice() {
        [0x04, n, rest @ ..] if usize::from(*n) == want && rest.len() == want => rest.to_vec(),
        [0x04, 0x81, n, rest @ ..] if usize::from(*n) == want && rest.len() == want => {
            rest.to_vec()
        }
        p if p.len() == want && p[0] == 0x04 => p.to_vec(),
        _ => {
            return Err(Error::Key(format!(
                "{uri}: the public key's CKA_EC_POINT is not an uncompressed point"
            )))
        }
    };
    Ok((kind, bare))
}

/// A CK_INFO / CK_TOKEN_INFO text field for display and matching: PKCS#11 pads them with
/// blanks, and some modules (tpm2-pkcs11's model) with NULs; control characters never reach a
/// terminal or log.
fn clean(field: &str) -> String {
    field
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn ck(uri: &KeyUri, call: &str, e: CkError) -> Error {
    Error::Key(format!("{uri}: {call}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tpm2-pkcs11 pads its model with NULs ("SW   TPM\0\0..."): shown and matched without them.
    #[test]
    fn token_info_fields_lose_padding_and_control_characters() {
        assert_eq!(clean("SW   TPM\0\0\0\0\0\0\0\0"), "SW   TPM");
        assert_eq!(clean("gw                              "), "gw");
        assert_eq!(clean("a\x1b[31mb"), "a?[31mb");
    }
}
