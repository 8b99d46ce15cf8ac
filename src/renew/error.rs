//! The renewal error ([`Error`]): one enum for everything a renewal can fail on.

use std::fmt;
use std::path::PathBuf;

use crate::acme::types::Identifier;
use crate::acme::{self, transport};
use crate::{challenge, crypto, store};

/// A renewal error for one certificate.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The ACME exchange failed (the server's problem document is inside).
    Acme(acme::Error),
    /// A challenge could not be put in place.
    Challenge(challenge::Error),
    /// A state file could not be read or written.
    Store(store::Error),
    /// A key or certificate could not be generated or parsed.
    Crypto(crypto::Error),
    /// The HTTP client could not be set up (trust bundle).
    Transport(transport::Error),
    /// The certificate section cannot work as configured.
    Config(String),
    /// The server offered no challenge of the configured type for an identifier.
    NoChallenge {
        /// The identifier.
        identifier: Identifier,
        /// The configured type.
        wanted: &'static str,
        /// What the server offered.
        offered: Vec<String>,
    },
    /// The issued certificate's public key is not the key we sent in the CSR.
    KeyMismatch,
    /// The deploy hook failed; the previous certificate set was put back.
    DeployHook {
        /// The hook command.
        hook: String,
        /// Its exit status.
        status: String,
        /// Whether a previous generation was restored.
        restored: bool,
    },
    /// No certificate is installed (for revoke).
    NoCertificate(PathBuf),
    /// No account exists for this directory (for revoke and rollover).
    NoAccount(PathBuf),
    /// The clock is below its floor ([`crate::trust`]): no order is placed.
    Clock(crate::trust::Untrusted),
    /// A standalone certificate could not be issued from the local CA
    /// ([`crate::renew::standalone`]).
    Local(crate::est::Error),
    /// An audit line (a failover, a forced re-issue) could not be written: nothing was ordered.
    Audit(crate::audit::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Acme(e) => write!(f, "{e}"),
            Error::Challenge(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::Crypto(e) => write!(f, "{e}"),
            Error::Transport(e) => write!(f, "{e}"),
            Error::Config(m) => f.write_str(m),
            Error::NoChallenge {
                identifier,
                wanted,
                offered,
            } => write!(
                f,
                "the server offers no {wanted} challenge for {identifier} (it offers: {})",
                offered.join(", ")
            ),
            Error::KeyMismatch => {
                f.write_str("the issued certificate does not match the key of the request")
            }
            Error::DeployHook {
                hook,
                status,
                restored,
            } => {
                write!(f, "deploy_hook {hook:?} failed ({status}); ")?;
                if *restored {
                    f.write_str("the previous certificate was restored")
                } else {
                    f.write_str("there was no previous certificate to restore")
                }
            }
            Error::NoCertificate(p) => write!(f, "no certificate installed at {}", p.display()),
            Error::NoAccount(p) => write!(f, "no ACME account at {}", p.display()),
            Error::Clock(u) => write!(f, "{u}"),
            Error::Local(e) => write!(f, "{e}"),
            Error::Audit(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The wrapped errors print themselves; their causes come next in the chain.
        match self {
            Error::Acme(e) => e.source(),
            Error::Challenge(e) => e.source(),
            Error::Store(e) => e.source(),
            Error::Crypto(e) => e.source(),
            Error::Transport(e) => e.source(),
            Error::Local(e) => e.source(),
            Error::Audit(e) => e.source(),
            _ => None,
        }
    }
}

macro_rules! from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$v(e)
            }
        }
    )*};
}
from!(acme::Error => Acme, challenge::Error => Challenge, store::Error => Store,
      crypto::Error => Crypto, transport::Error => Transport);
