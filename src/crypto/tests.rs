use super::*;

#[test]
fn key_round_trips_through_pem_and_signs() {
    for kind in [KeyType::Ec256, KeyType::Ec384] {
        let k = PrivateKey::generate(kind).unwrap();
        let k2 = PrivateKey::from_pem(&k.to_pem()).unwrap();
        assert_eq!(k.public_point(), k2.public_point());
        assert_eq!(k2.kind(), kind);
        let sig = k.sign_jws(b"hello").unwrap();
        let want = if kind == KeyType::Ec256 { 64 } else { 96 };
        assert_eq!(sig.len(), want);
        let alg: &dyn signature::VerificationAlgorithm = match kind {
            KeyType::Ec256 => &signature::ECDSA_P256_SHA256_FIXED,
            KeyType::Ec384 => &signature::ECDSA_P384_SHA384_FIXED,
        };
        signature::UnparsedPublicKey::new(alg, k.public_point())
            .verify(b"hello", &sig)
            .unwrap();
    }
}

#[test]
fn debug_never_prints_key_material() {
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let dbg = format!("{k:?}");
    assert_eq!(dbg, "PrivateKey(ec256, <redacted>)");
}

/// RFC 7638 §3.1 gives an RSA example only; check the thumbprint is the SHA-256 of the
/// canonical members by recomputing it from the JWK we publish.
#[test]
fn thumbprint_is_sha256_of_canonical_jwk() {
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let jwk = k.jwk();
    let canonical = serde_json::to_string(&jwk).unwrap(); // serde_json sorts keys (BTreeMap)
    assert_eq!(k.jwk_thumbprint(), b64url(&sha256(canonical.as_bytes())));
}

/// RFC 4231 test case 2.
#[test]
fn hmac_sha256_matches_rfc4231() {
    let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex(&tag),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn csr_and_self_signed_cert_parse_back() {
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let dns = vec!["gw.test".to_string()];
    let ips = vec!["192.0.2.10".parse().unwrap()];
    let csr = k.csr(&dns, &ips).unwrap();
    assert!(!csr.is_empty());
    let params = rcgen::CertificateParams::new(dns.clone()).unwrap();
    let cert = params.self_signed(&k.to_rcgen()).unwrap();
    let info = CertInfo::from_der(cert.der()).unwrap();
    assert_eq!(info.dns_names, dns);
    assert!(k.matches(&info));
    let other = PrivateKey::generate(KeyType::Ec256).unwrap();
    assert!(!other.matches(&info));
    let pem = certs_to_pem([cert.der().as_ref()]);
    assert_eq!(CertInfo::from_pem(&pem).unwrap(), info);
}

/// Found by `cargo fuzz run csr`: an openssl CSR whose SubjectPublicKeyInfo BIT STRING was
/// shortened, leaving bytes after it inside the SPKI SEQUENCE. x509-parser skips those and
/// hands out a `raw` SPKI that stops at the BIT STRING (a truncated TLV); parse_csr took it.
const FUZZ_CSR_SPKI_TRAILING: &[&str] = &[
    "308201153081bd0201003021311f301d06035504030c1673312e73656e736f72732e6578616d706c",
    "652e636f6d3059301306072a8648ce3d020106082a8648ce3d030107030c0052b6c404426a44ef6f",
    "a55a0539f6905a34fd035b1196a29ec65bfbd2ced46b4792bfda4548ddf9da6c52bc9886f0958e2a",
    "a8c4d4a60f3a3dd9a6f4bf6ef15c8685a03a303806092a864886f70d01090e312b30293027060355",
    "1d110420301e821673312e73656e736f72732e6578616d706c652e636f6d87040a000007300a0608",
    "2a8648ce3d04030203470030440220322b786f7d3e04d63323fdc369bf9e917549ed3e2473f784d6",
    "8101cb2301c76a0220203b9539faef4445107cff220006936b745e3e144810bbcd50bfd1d0d94274",
    "60",
];

#[test]
fn csr_with_bytes_after_the_spki_bit_string_is_refused() {
    let der: Vec<u8> = FUZZ_CSR_SPKI_TRAILING
        .concat()
        .as_bytes()
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect();
    assert_eq!(der.len(), 281);
    let err = parse_csr(&der).expect_err("malformed SPKI accepted");
    assert!(err.to_string().contains("SubjectPublicKeyInfo"), "{err}");
}

/// The same flaw with a genuine signature over the altered request. (Before the fix,
/// `ca::verify_csr` still refused it, but only as "signature does not verify", because
/// `verify_csr_signature` re-reads the truncated `raw`; `parse_csr` returned it as valid.)
#[test]
fn signed_csr_with_garbage_inside_the_spki_is_refused() {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 0x1_0000);
        let mut out = vec![tag, 0x82, (body.len() >> 8) as u8, body.len() as u8];
        out.extend(body);
        out
    }
    /// Splits DER content into its TLVs (short and long length forms).
    fn tlvs(mut der: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !der.is_empty() {
            let (head, len) = match der[1] {
                n if n < 0x80 => (2, n as usize),
                n => {
                    let k = (n & 0x7f) as usize;
                    (
                        2 + k,
                        der[2..2 + k].iter().fold(0, |a, b| a << 8 | *b as usize),
                    )
                }
            };
            out.push(&der[..head + len]);
            der = &der[head + len..];
        }
        out
    }
    fn content(tlv: &[u8]) -> &[u8] {
        &tlv[2 + if tlv[1] < 0x80 {
            0
        } else {
            (tlv[1] & 0x7f) as usize
        }..]
    }
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let csr = k.csr(&["garbage.test".to_string()], &[]).unwrap();
    assert!(parse_csr(&csr).is_ok());
    let outer = tlvs(content(&csr));
    let cri = tlvs(content(outer[0]));
    let mut spki = content(cri[2]).to_vec();
    spki.extend([0x05, 0x00]); // a NULL after the BIT STRING
    let mut body = [cri[0], cri[1]].concat();
    body.extend(tlv(0x30, &spki));
    body.extend(cri[3..].concat());
    let new_cri = tlv(0x30, &body);
    let sig = k.sign_der(&new_cri).unwrap();
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, k.public_point())
        .verify(&new_cri, &sig)
        .unwrap();
    let mut bits = vec![0];
    bits.extend(sig);
    let forged = tlv(
        0x30,
        &[new_cri, outer[1].to_vec(), tlv(0x03, &bits)].concat(),
    );
    let err = parse_csr(&forged).expect_err("CSR with garbage inside its SPKI accepted");
    assert!(err.to_string().contains("SubjectPublicKeyInfo"), "{err}");
}

/// `sign_der` (the parsed signer's `r || s`, DER-encoded) verifies as an ASN.1 ECDSA
/// signature on both curves, many times over (short `r`/`s` included by chance), and a
/// signature over other bytes does not.
#[test]
fn sign_der_verifies_as_asn1_on_both_curves() {
    for (kind, alg) in [
        (KeyType::Ec256, &signature::ECDSA_P256_SHA256_ASN1),
        (KeyType::Ec384, &signature::ECDSA_P384_SHA384_ASN1),
    ] {
        let k = PrivateKey::generate(kind).unwrap();
        let key = signature::UnparsedPublicKey::new(alg, k.public_point());
        for i in 0..200u32 {
            let msg = i.to_be_bytes();
            let sig = k.sign_der(&msg).unwrap();
            assert_eq!(sig[0], 0x30, "not a DER SEQUENCE");
            key.verify(&msg, &sig).unwrap();
            assert!(key.verify(b"other", &sig).is_err());
        }
    }
}

#[test]
fn base64_variants() {
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    assert_eq!(b64url_decode("-_8").unwrap(), vec![0xfb, 0xff]);
    assert_eq!(b64_decode(b"aGVs\r\nbG8=\n").unwrap(), b"hello");
    assert!(b64_decode(b"!!!").is_err());
}

#[test]
fn random_below_stays_in_range() {
    for n in [1u64, 2, 7, 1000] {
        for _ in 0..100 {
            assert!(random_below(n).unwrap() < n);
        }
    }
}

#[test]
fn rfc3339_round_trip() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(parse_rfc3339("2026-11-28T12:00:00Z"), Some(1_795_867_200));
    assert_eq!(
        parse_rfc3339("2026-11-28T13:00:00+01:00"),
        Some(1_795_867_200)
    );
}
