//! PKCS#7 / CMS "certs-only" messages: an RFC 5652 §5 SignedData with certificates and no
//! signers, as RFC 7030 §4.1.3 requires for EST `/cacerts` and `/simpleenroll` responses
//! ("a degenerate certs-only CMS Simple PKI Response").
//!
//! The DER is small and fixed in shape, so it is written and read by hand here.

use std::fmt;

/// An error parsing a certs-only message.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The DER is malformed or not a certs-only SignedData; the message says where.
    Malformed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(m) => write!(f, "PKCS#7 certs-only: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// id-signedData, 1.2.840.113549.1.7.2 (RFC 5652 §5.1).
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// id-data, 1.2.840.113549.1.7.1 (RFC 5652 §4).
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const CTX0_CONS: u8 = 0xa0;

/// A DER `ContentInfo { signedData, SignedData { version 1, digestAlgorithms {},
/// encapContentInfo { id-data }, certificates [0] certs, signerInfos {} } }`.
///
/// RFC 5652 §5.1: version is 1 when there are no attribute certificates, no v2 certificates and
/// the eContentType is id-data. `certificates` is a `SET OF`, so DER (X.690 §11.6) puts its
/// elements in ascending order of their encodings, whatever order they are given in; a client
/// finds the leaf by its public key, not by position (RFC 7030 §4.2.3 does not order them).
pub fn certs_only(certs: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted: Vec<&Vec<u8>> = certs.iter().collect();
    sorted.sort_by(|a, b| der_set_order(a, b));
    // A SET OF holds each certificate once.
    sorted.dedup();
    let body: Vec<u8> = sorted.into_iter().flatten().copied().collect();
    let mut signed = Vec::new();
    signed.extend(tlv(INTEGER, &[1]));
    signed.extend(tlv(SET, &[]));
    signed.extend(tlv(SEQUENCE, &tlv(OID, OID_DATA)));
    signed.extend(tlv(CTX0_CONS, &body));
    signed.extend(tlv(SET, &[]));
    let mut content_info = tlv(OID, OID_SIGNED_DATA);
    content_info.extend(tlv(CTX0_CONS, &tlv(SEQUENCE, &signed)));
    tlv(SEQUENCE, &content_info)
}

/// The certificates (DER) of a certs-only message, in order. Accepts what [`certs_only`] writes
/// and what OpenSSL's `crl2pkcs7 -nocrl` writes; refuses signers and trailing bytes.
pub fn parse_certs_only(der: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let (outer, rest) = read(der, SEQUENCE, "ContentInfo")?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after ContentInfo"));
    }
    let (oid, rest) = read(outer, OID, "contentType")?;
    if oid != OID_SIGNED_DATA {
        return Err(bad("contentType is not id-signedData"));
    }
    let (explicit, _) = read(rest, CTX0_CONS, "content [0]")?;
    let (signed, _) = read(explicit, SEQUENCE, "SignedData")?;
    let (_version, rest) = read(signed, INTEGER, "version")?;
    let (_digests, rest) = read(rest, SET, "digestAlgorithms")?;
    let (_encap, mut rest) = read(rest, SEQUENCE, "encapContentInfo")?;
    let mut out = Vec::new();
    if rest.first() == Some(&CTX0_CONS) {
        let (mut certs, after) = read(rest, CTX0_CONS, "certificates")?;
        while !certs.is_empty() {
            let (whole, after_cert) = read_whole(certs, SEQUENCE, "certificate")?;
            out.push(whole.to_vec());
            certs = after_cert;
        }
        rest = after;
    }
    // Optional crls [1], then signerInfos.
    if rest.first() == Some(&0xa1) {
        let (_, after) = read(rest, 0xa1, "crls")?;
        rest = after;
    }
    let (signers, _) = read(rest, SET, "signerInfos")?;
    if !signers.is_empty() {
        return Err(bad("has signerInfos: not a certs-only message"));
    }
    Ok(out)
}

/// X.690 §11.6: the order of a DER `SET OF`: the encodings compared as octet strings, the
/// shorter padded with zero octets at its end. [`certs_only`] writes `certificates` in it.
pub fn der_set_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    let at = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(0);
    (0..n)
        .map(|i| at(a, i).cmp(&at(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

fn bad(m: &str) -> Error {
    Error::Malformed(m.to_string())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend(&bytes[skip..]);
    }
    out.extend(content);
    out
}

/// Reads one TLV with `tag`; returns (content, rest).
fn read<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), Error> {
    let (whole, rest) = read_whole(input, tag, what)?;
    let header = header_len(whole).ok_or_else(|| bad(what))?;
    Ok((&whole[header..], rest))
}

/// Reads one TLV with `tag`; returns (the whole TLV, rest).
fn read_whole<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), Error> {
    match input.first() {
        Some(t) if *t == tag => {}
        Some(t) => {
            return Err(Error::Malformed(format!(
                "{what}: expected tag {tag:#04x}, found {t:#04x}"
            )))
        }
        None => return Err(Error::Malformed(format!("{what}: missing"))),
    }
    let header =
        header_len(input).ok_or_else(|| Error::Malformed(format!("{what}: bad length")))?;
    let len = content_len(input).ok_or_else(|| Error::Malformed(format!("{what}: bad length")))?;
    let end = header
        .checked_add(len)
        .filter(|e| *e <= input.len())
        .ok_or_else(|| Error::Malformed(format!("{what}: length runs past the end")))?;
    Ok(input.split_at(end))
}

fn header_len(input: &[u8]) -> Option<usize> {
    let first = *input.get(1)?;
    if first < 0x80 {
        Some(2)
    } else {
        let n = (first & 0x7f) as usize;
        (1..=4).contains(&n).then_some(2 + n)
    }
}

fn content_len(input: &[u8]) -> Option<usize> {
    let first = *input.get(1)?;
    if first < 0x80 {
        return Some(first as usize);
    }
    let n = (first & 0x7f) as usize;
    if !(1..=4).contains(&n) {
        return None; // indefinite (BER) or absurdly long
    }
    let bytes = input.get(2..2 + n)?;
    Some(bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, PrivateKey};

    fn cert(name: &str) -> Vec<u8> {
        let k = PrivateKey::generate(KeyType::Ec256).unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.self_signed(&k.to_rcgen()).unwrap().der().to_vec()
    }

    fn sorted(mut certs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        certs.sort_by(|a, b| der_set_order(a, b));
        certs
    }

    #[test]
    fn round_trip_keeps_the_set() {
        let certs = vec![cert("a.test"), cert("b.test")];
        let der = certs_only(&certs);
        assert_eq!(parse_certs_only(&der).unwrap(), sorted(certs.clone()));
        // A SET OF holds each certificate once.
        let twice = certs_only(&[certs[0].clone(), certs[0].clone()]);
        assert_eq!(parse_certs_only(&twice).unwrap(), vec![certs[0].clone()]);
        assert_eq!(
            parse_certs_only(&certs_only(&[])).unwrap(),
            Vec::<Vec<u8>>::new()
        );
    }

    #[test]
    fn long_lengths_round_trip() {
        // A fake "certificate" SEQUENCE of 70000 bytes exercises the 3-byte length form.
        let big = tlv(SEQUENCE, &vec![0u8; 70_000]);
        let der = certs_only(std::slice::from_ref(&big));
        assert_eq!(parse_certs_only(&der).unwrap(), vec![big]);
    }

    #[test]
    fn truncated_and_garbage_input_are_errors_not_panics() {
        let der = certs_only(&[cert("a.test")]);
        for cut in [0, 1, 5, der.len() / 2, der.len() - 1] {
            assert!(parse_certs_only(&der[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse_certs_only(&trailing).is_err());
        assert!(parse_certs_only(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn openssl_parses_our_output() {
        let dir = std::env::temp_dir().join(format!("gatecert-p7-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = vec![cert("one.test"), cert("two.test")];
        let path = dir.join("certs.p7");
        std::fs::write(&path, certs_only(&certs)).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkcs7", "-inform", "DER", "-print_certs", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let pem_certs = crate::crypto::certs_from_pem(&text).unwrap();
        let got: Vec<Vec<u8>> = pem_certs.iter().map(|c| c.to_vec()).collect();
        assert_eq!(got, sorted(certs));
    }

    /// Issue 10 item 7: the `certificates` SET OF is DER-sorted (X.690 §11.6) whatever order
    /// the chain comes in; Python cryptography warned InvalidSetOrdering on the old output.
    #[test]
    fn certificates_set_is_der_sorted() {
        // A leaf and a longer certificate: the length octets decide, as in a real chain.
        let short = cert("a.test");
        let long = cert(&format!("{}.test", "l".repeat(200)));
        let trio = vec![long.clone(), short.clone(), cert("b.test")];
        for order in [trio.clone(), trio.iter().rev().cloned().collect()] {
            let got = parse_certs_only(&certs_only(&order)).unwrap();
            assert!(
                got.windows(2).all(|w| w[0].as_slice() <= w[1].as_slice()),
                "not in ascending DER order"
            );
            assert_eq!(got.len(), 3);
        }
        assert_eq!(
            der_set_order(&[1, 2], &[1, 2, 0]),
            std::cmp::Ordering::Equal
        );
        assert_eq!(
            der_set_order(&[1, 3], &[1, 2, 9]),
            std::cmp::Ordering::Greater
        );
    }

    #[test]
    fn parses_openssl_crl2pkcs7_output() {
        let dir = std::env::temp_dir().join(format!("gatecert-p7b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = vec![cert("x.test")];
        let pem = dir.join("c.pem");
        std::fs::write(
            &pem,
            crate::crypto::certs_to_pem(certs.iter().map(|c| c.as_slice())),
        )
        .unwrap();
        let out = std::process::Command::new("openssl")
            .args(["crl2pkcs7", "-nocrl", "-outform", "DER", "-certfile"])
            .arg(&pem)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.status.success());
        assert_eq!(parse_certs_only(&out.stdout).unwrap(), certs);
    }
}
