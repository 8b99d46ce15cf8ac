//! EST's certs-only PKCS#7 (`gatecert::pkcs7`):
//! - `parse_certs_only` on arbitrary bytes never panics, and what it returns re-encodes to a
//!   message that parses to the same certificates in DER `SET OF` order (sorted, each once);
//! - the same bytes, read as a list of byte strings (each wrapped as a DER SEQUENCE, as a
//!   certificate is), go through `certs_only` → `parse_certs_only` and come back sorted and
//!   without duplicates, as DER requires of a SET OF (X.690 §11.6).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

use gatecert::pkcs7;

/// DER SEQUENCE around `content`, with the shortest length form.
fn sequence(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
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

/// A list of "certificates" built from the fuzz input. At most one string per list is stretched
/// (repeated) past 127, 255 or 65535 bytes, so every DER length form is written and read
/// without making every run slow.
fn certs(u: &mut Unstructured<'_>) -> Result<Vec<Vec<u8>>> {
    let n = u.int_in_range(0..=8u8)?;
    let mut out = Vec::with_capacity(n as usize);
    let mut stretched = false;
    for _ in 0..n {
        let mut content: Vec<u8> = u.arbitrary()?;
        let stretch: u8 = u.arbitrary()?;
        if stretch >= 0xf8 && !stretched && !content.is_empty() {
            stretched = true;
            let target = match stretch {
                0xf8..=0xfb => 0x80,
                0xfc..=0xfd => 0x100,
                0xfe => 0x1_0000,
                _ => 0x1_0123,
            };
            content = content.iter().copied().cycle().take(target).collect();
        }
        out.push(sequence(&content));
    }
    Ok(out)
}

/// `list` as DER orders a SET OF: sorted by encoding (X.690 §11.6), each element once.
fn der_set(mut list: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    list.sort_by(|a, b| pkcs7::der_set_order(a, b));
    list.dedup();
    list
}

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = pkcs7::parse_certs_only(data) {
        let again = pkcs7::parse_certs_only(&pkcs7::certs_only(&parsed));
        assert_eq!(again, Ok(der_set(parsed)), "re-encoding changes the set");
    }
    let mut u = Unstructured::new(data);
    if let Ok(list) = certs(&mut u) {
        let der = pkcs7::certs_only(&list);
        assert_eq!(pkcs7::parse_certs_only(&der), Ok(der_set(list)));
    }
});
