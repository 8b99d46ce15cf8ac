//! The local CA's certificate revocation list (RFC 5280 §5), signed by the issuing
//! intermediate. Signing is a signing path: it takes the clock gate's proof ([`TrustedNow`]).

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevocationReason, RevokedCertParams,
    SerialNumber,
};

use super::{to_time, Error, LocalCa};
use crate::crypto;
use crate::trust::TrustedNow;

/// One entry of the CRL (RFC 5280 §5.1.2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Serial, hex.
    pub serial: String,
    /// revocationDate, Unix seconds.
    pub revoked_at: i64,
    /// CRLReason code (RFC 5280 §5.3.1); 0 (unspecified) is left out, as §5.3.1 advises.
    pub reason: u8,
}

/// A signed CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crl {
    /// DER.
    pub der: Vec<u8>,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// cRLNumber (RFC 5280 §5.2.3).
    pub number: u64,
}

fn reason(code: u8) -> Option<RevocationReason> {
    Some(match code {
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

impl LocalCa {
    /// Signs a CRL listing `entries`, valid from `now` for `validity` seconds, with CRL number
    /// `number` (RFC 5280 §5.1, §5.2.3). The intermediate must be valid at `now`.
    pub fn sign_crl(
        &self,
        entries: &[Entry],
        number: u64,
        validity: u64,
        now: TrustedNow,
    ) -> Result<Crl, Error> {
        let now = now.unix();
        if now < self.int_info.not_before {
            return Err(Error::Clock(format!(
                "the clock ({}) is earlier than the intermediate's notBefore ({})",
                crypto::rfc3339(now),
                crypto::rfc3339(self.int_info.not_before)
            )));
        }
        let validity = i64::try_from(validity).unwrap_or(i64::MAX / 4).max(60);
        let next_update = now.saturating_add(validity);
        let mut revoked_certs = Vec::with_capacity(entries.len());
        for e in entries {
            let serial = crypto::hex_decode(&e.serial).ok_or_else(|| {
                Error::Policy(format!("revoked serial {:?} is not hex", e.serial))
            })?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: to_time(e.revoked_at)?,
                reason_code: reason(e.reason),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: to_time(now)?,
            next_update: to_time(next_update)?,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            // The AKI must match the intermediate's SKI (RFC 5280 §5.2.1), however it was made.
            key_identifier_method: match &self.int_info.ski {
                Some(ski) => KeyIdMethod::PreSpecified(ski.clone()),
                None => KeyIdMethod::Sha256,
            },
        };
        let key = self.signing_key()?;
        let issuer = Issuer::from_ca_cert_der(&self.int_der.as_slice().into(), key.rcgen())?;
        let crl = params.signed_by(&issuer)?;
        Ok(Crl {
            der: crl.der().to_vec(),
            this_update: now,
            next_update,
            number,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::crypto::CrlInfo;

    #[test]
    fn crl_lists_the_entries_signed_by_the_intermediate_and_waits_for_its_not_before() {
        let dir = std::env::temp_dir().join(format!("gatecert-crl-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = config::Config::standalone(dir.clone()).ca;
        let now = 1_800_000_000;
        let ca = LocalCa::init(&dir.join("ca"), &cfg, TrustedNow::for_tests(now)).unwrap();
        let entries = [
            Entry {
                serial: "5A0B6C1D2E3F40516273849506A7B8C9".into(),
                revoked_at: now,
                reason: 1,
            },
            Entry {
                serial: "0a0b".into(),
                revoked_at: now,
                reason: 0,
            },
        ];
        let crl = ca
            .sign_crl(&entries, 7, 3600, TrustedNow::for_tests(now + 10))
            .unwrap();
        assert_eq!((crl.this_update, crl.next_update), (now + 10, now + 3610));
        let info = CrlInfo::from_der(&crl.der).unwrap();
        assert_eq!(info.issuer, ca.intermediate().subject);
        assert_eq!(info.next_update, Some(now + 3610));
        assert_eq!(info.number, vec![7]);
        assert_eq!(
            info.revoked,
            vec![
                ("5A0B6C1D2E3F40516273849506A7B8C9".into(), Some(1)),
                ("0A0B".into(), None)
            ]
        );
        // The signature verifies under the intermediate's key.
        let (_, parsed) = x509_parser::parse_x509_crl(&crl.der).unwrap();
        let chain = ca.chain_der();
        let (_, int) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert!(parsed.verify_signature(int.public_key()).is_ok());
        // Before the intermediate's notBefore: refused (a clock the gate should have caught).
        let early = ca.sign_crl(
            &entries,
            8,
            3600,
            TrustedNow::for_tests(now - crate::ca::BACKDATE - 1),
        );
        assert!(matches!(early, Err(Error::Clock(_))), "{early:?}");
        // A serial that is not hex is named.
        let bad = [Entry {
            serial: "xyz".into(),
            revoked_at: now,
            reason: 0,
        }];
        let err = ca
            .sign_crl(&bad, 9, 3600, TrustedNow::for_tests(now))
            .unwrap_err();
        assert!(err.to_string().contains("\"xyz\""), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
