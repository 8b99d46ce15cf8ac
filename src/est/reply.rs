//! The bodies of EST answers (RFC 7030 §4): certs-only PKCS#7, CSR attributes, and the
//! serverkeygen multipart.

use crate::ca::Issued;
use crate::crypto;
use crate::http::Response;
use crate::pkcs7;

/// base64 with 64-column lines, as `openssl base64` writes it.
pub(super) fn b64_lines(der: &[u8]) -> String {
    let b = crypto::b64(der);
    let mut out = String::with_capacity(b.len() + b.len() / 64 + 1);
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// RFC 7030 §4.1.3 / §4.2.3: `application/pkcs7-mime; smime-type=certs-only`, base64.
pub(super) fn certs_only_response(certs: &[Vec<u8>]) -> Response {
    Response::new(200)
        .header(
            "Content-Type",
            "application/pkcs7-mime; smime-type=certs-only",
        )
        .header("Content-Transfer-Encoding", "base64")
        .body(b64_lines(&pkcs7::certs_only(certs)).into_bytes())
}

/// RFC 7030 §4.5.2 CsrAttrs: `SEQUENCE { ecdsa-with-SHA256, SEQUENCE { id-ecPublicKey,
/// SET { prime256v1 } } }`: "sign with ECDSA-SHA256, use a P-256 key".
pub(super) const CSR_ATTRS: &[u8] = &[
    0x30, 0x21, // CsrAttrs
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, // ecdsa-with-SHA256
    0x30, 0x15, // Attribute
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
    0x31, 0x0a, // SET
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
];

pub(super) fn csrattrs_response() -> Response {
    Response::new(200)
        .header("Content-Type", "application/csrattrs")
        .header("Content-Transfer-Encoding", "base64")
        .body(b64_lines(CSR_ATTRS).into_bytes())
}

/// The multipart boundary of serverkeygen answers; base64 text can never contain `-`.
pub(super) const BOUNDARY: &str = "gatecert-est-boundary";

/// RFC 7030 §4.4.2: `multipart/mixed` with the private key (`application/pkcs8`, base64 DER)
/// then the certificate (`application/pkcs7-mime; smime-type=certs-only`).
pub(super) fn serverkeygen_response(key_pem: &str, issued: &Issued) -> Response {
    // The PEM's base64 body is exactly the base64 of the PKCS#8 DER.
    let key_b64: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let body = format!(
        "--{BOUNDARY}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {key_b64}--{BOUNDARY}\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}--{BOUNDARY}--\r\n",
        b64_lines(&pkcs7::certs_only(std::slice::from_ref(&issued.leaf_der))),
    );
    Response::new(200)
        .header(
            "Content-Type",
            &format!("multipart/mixed; boundary={BOUNDARY}"),
        )
        .body(body.into_bytes())
}
