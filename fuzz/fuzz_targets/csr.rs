//! PKCS#10 CSRs as EST receives them (RFC 7030 §4.2.1): `crypto::parse_csr` and
//! `ca::verify_csr` on arbitrary bytes, and on the input read as a base64 body through
//! `crypto::b64_decode`. Never panic; what verifies is self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gatecert::{ca, crypto};

fn check(der: &[u8]) {
    if let Ok(info) = crypto::parse_csr(der) {
        assert_eq!(info.der, der);
        assert_eq!(crypto::key_strength(&info.spki_der).ok(), Some(info.key));
    }
    match ca::verify_csr(der) {
        Ok(csr) => {
            assert_eq!(csr.der, der);
            // verify_csr implies parse_csr and a good signature.
            let info = crypto::parse_csr(der).expect("verified CSR parses");
            assert_eq!(csr.spki_der, info.spki_der);
            assert!(crypto::verify_csr_signature(der).is_ok());
            assert!(
                !csr.dns.is_empty() || !csr.ips.is_empty() || info.subject_cn.is_none(),
                "a CSR with a CN names at least that"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(der) = crypto::b64_decode(data) {
        // b64_decode is strict (canonical padding and trailing bits): it only ignores
        // whitespace, so re-encoding gives back the input without it.
        let clean: Vec<u8> = data
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        assert_eq!(crypto::b64(&der).as_bytes(), clean.as_slice());
        check(&der);
    }
});
