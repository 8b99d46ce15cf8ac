use std::process::Command;

use super::*;

const NOW: i64 = 1_795_867_200; // 2026-11-28T12:00:00Z

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gatecert-ca-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cfg() -> config::Ca {
    config::Ca {
        lifetime: 24 * 3600,
        max_lifetime: 7 * 24 * 3600,
        allow_suffix: vec!["sensors.example.com".into()],
        allow_ip: vec![("192.0.2.0".parse().unwrap(), 24)],
        server_auth: false,
        name: "test".into(),
        key_uri: None,
        crl_validity: config::CRL_VALIDITY,
        crl_file: None,
        crl_url: None,
    }
}

fn csr_for(dns: &[&str], ips: &[&str]) -> Vec<u8> {
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
    let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
    k.csr(&dns, &ips).unwrap()
}

fn write_pem(path: &Path, label: &str, der: &[u8]) {
    std::fs::write(path, crypto::pem_block(label, der)).unwrap();
}

/// Runs `openssl verify` with the real clock pinned to `NOW` via `-attime`.
fn openssl_verify(dir: &Path, ca: &LocalCa, leaf: &[u8], purpose: Option<&str>) -> (bool, String) {
    let chain = ca.chain_der();
    write_pem(&dir.join("root.crt"), "CERTIFICATE", &chain[1]);
    write_pem(&dir.join("int.crt"), "CERTIFICATE", &chain[0]);
    write_pem(&dir.join("leaf.crt"), "CERTIFICATE", leaf);
    let mut cmd = Command::new("openssl");
    cmd.arg("verify")
        .args(["-attime", &NOW.to_string()])
        .arg("-CAfile")
        .arg(dir.join("root.crt"))
        .arg("-untrusted")
        .arg(dir.join("int.crt"));
    if let Some(p) = purpose {
        cmd.args(["-purpose", p]);
    }
    let out = cmd.arg(dir.join("leaf.crt")).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn init_issue_and_openssl_verifies() {
    let dir = tmp("issue");
    let ca = LocalCa::init(
        &dir.join("ca"),
        &cfg(),
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    let csr = ca
        .verify_csr(&csr_for(&["t1.sensors.example.com"], &["192.0.2.7"]))
        .unwrap();
    let issued = ca
        .issue(
            &IssueRequest {
                csr,
                lifetime: None,
                server_auth: true, // not granted: cfg.server_auth is off
            },
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap();
    let (ok, text) = openssl_verify(&dir, &ca, &issued.leaf_der, Some("sslclient"));
    assert!(ok, "{text}");
    let (ok, _) = openssl_verify(&dir, &ca, &issued.leaf_der, Some("sslserver"));
    assert!(
        !ok,
        "serverAuth must not be granted when server_auth is off"
    );

    let info = CertInfo::from_der(&issued.leaf_der).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("t1.sensors.example.com"));
    assert_eq!(info.dns_names, vec!["t1.sensors.example.com"]);
    assert_eq!(info.ips, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
    assert_eq!(info.not_before, NOW - BACKDATE);
    assert_eq!(info.not_after, NOW + 24 * 3600);
    assert_eq!(issued.not_after, info.not_after);
    assert!(!info.is_ca);
    assert_eq!(info.serial.len(), 16);
    assert_eq!(info.serial[0] & 0x80, 0);
    assert_eq!(issued.serial_hex, info.serial_hex());
    assert_eq!(info.aki, ca.intermediate().ski);
    assert!(info.ski.is_some());
    assert_eq!(
        issued.chain_der,
        vec![issued.leaf_der.clone(), ca.chain_der()[0].clone()]
    );
    assert!(ca.issued_by_me(&issued.leaf_der));
    // A certificate from another CA is not ours.
    let other = LocalCa::init(
        &dir.join("other"),
        &cfg(),
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    let (_, foreign) = other
        .issue_with_new_key(
            &["x.sensors.example.com".into()],
            &[],
            None,
            false,
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap();
    assert!(!ca.issued_by_me(&foreign.leaf_der));
    assert!(!ca.issued_by_me(b"garbage"));

    // Intermediate: pathlen 0, name constrained.
    assert_eq!(crypto::path_len(&ca.chain_der()[0]), Some(0));
    assert!(ca
        .constraints()
        .permitted
        .contains(&Subtree::Dns("sensors.example.com".into())));
}

#[test]
fn server_auth_when_configured_and_for_new_key() {
    let dir = tmp("server");
    let mut c = cfg();
    c.server_auth = true;
    let ca = LocalCa::init(
        &dir.join("ca"),
        &c,
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    let csr = ca
        .verify_csr(&csr_for(&["t2.sensors.example.com"], &[]))
        .unwrap();
    let issued = ca
        .issue(
            &IssueRequest {
                csr,
                lifetime: Some(3600),
                server_auth: true,
            },
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap();
    let (ok, text) = openssl_verify(&dir, &ca, &issued.leaf_der, Some("sslserver"));
    assert!(ok, "{text}");
    assert_eq!(issued.not_after, NOW + 3600);

    let (key, issued) = ca
        .issue_with_new_key(
            &["gw.sensors.example.com".into()],
            &[],
            None,
            true,
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap();
    let info = CertInfo::from_der(&issued.leaf_der).unwrap();
    assert!(key.matches(&info));
    let (ok, text) = openssl_verify(&dir, &ca, &issued.leaf_der, Some("sslserver"));
    assert!(ok, "{text}");
}

#[test]
fn policy_denials() {
    let dir = tmp("policy");
    let ca = LocalCa::init(
        &dir.join("ca"),
        &cfg(),
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    let req = |dns: &[&str], ips: &[&str], lifetime| IssueRequest {
        csr: ca.verify_csr(&csr_for(dns, ips)).unwrap(),
        lifetime,
        server_auth: false,
    };
    for (dns, ips) in [
        (vec!["other.example.com"], vec![]),
        (vec!["evilsensors.example.com"], vec![]), // lookalike suffix
        (vec!["sensors.example.com.evil.net"], vec![]),
        (vec!["ok.sensors.example.com", "bad.example.org"], vec![]),
        (vec!["ok.sensors.example.com"], vec!["198.51.100.1"]),
        (vec![], vec!["2001:db8::1"]),
    ] {
        let err = ca
            .issue(
                &req(&dns, &ips, None),
                crate::trust::TrustedNow::for_tests(NOW),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Policy(_)), "{dns:?} {ips:?}: {err}");
        assert_eq!(err.http_status(), 403);
    }
    // The suffix itself is allowed.
    ca.issue(
        &req(&["sensors.example.com"], &[], None),
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    // Over max_lifetime.
    let err = ca
        .issue(
            &req(&["a.sensors.example.com"], &[], Some(8 * 86_400)),
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap_err();
    assert!(err.to_string().contains("max_lifetime"), "{err}");
    // Exactly max_lifetime is fine.
    ca.issue(
        &req(&["a.sensors.example.com"], &[], Some(7 * 86_400)),
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    // No names.
    assert!(matches!(
        ca.issue(
            &req(&[], &[], None),
            crate::trust::TrustedNow::for_tests(NOW)
        ),
        Err(Error::Policy(_))
    ));
    // issue_with_new_key goes through the same policy.
    assert!(matches!(
        ca.issue_with_new_key(
            &["gw.example.org".into()],
            &[],
            None,
            true,
            crate::trust::TrustedNow::for_tests(NOW)
        ),
        Err(Error::Policy(_))
    ));
}

#[test]
fn config_alone_is_not_enough_the_intermediate_constraints_also_apply() {
    let dir = tmp("nc");
    let ca_dir = dir.join("ca");
    LocalCa::init(&ca_dir, &cfg(), crate::trust::TrustedNow::for_tests(NOW)).unwrap();
    // The operator widens allow_suffix later; the intermediate was constrained at init.
    let mut wider = cfg();
    wider.allow_suffix.push("example.org".into());
    let ca = LocalCa::open(&ca_dir, &wider).unwrap();
    let csr = ca.verify_csr(&csr_for(&["x.example.org"], &[])).unwrap();
    let err = ca
        .issue(
            &IssueRequest {
                csr,
                lifetime: None,
                server_auth: false,
            },
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap_err();
    assert!(err.to_string().contains("name constraints"), "{err}");
}

#[test]
fn weak_and_forged_csrs_are_refused() {
    let dir = tmp("csr");
    let ca = LocalCa::init(
        &dir.join("ca"),
        &cfg(),
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();

    // RSA-1024 made by openssl.
    let key = dir.join("rsa1024.key");
    let csr_path = dir.join("rsa1024.csr");
    let st = Command::new("openssl")
        .args(["req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout"])
        .arg(&key)
        .args([
            "-subj",
            "/CN=r.sensors.example.com",
            "-outform",
            "DER",
            "-out",
        ])
        .arg(&csr_path)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let err = ca
        .verify_csr(&std::fs::read(&csr_path).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::BadCsr(_)));
    assert!(err.to_string().contains("1024"), "{err}");
    assert_eq!(err.http_status(), 400);

    // RSA-2048 from openssl is accepted and issued.
    let st = Command::new("openssl")
        .args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(dir.join("rsa2048.key"))
        .args([
            "-subj",
            "/CN=r.sensors.example.com",
            "-addext",
            "subjectAltName=DNS:r.sensors.example.com",
            "-outform",
            "DER",
            "-out",
        ])
        .arg(dir.join("rsa2048.csr"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let csr = ca
        .verify_csr(&std::fs::read(dir.join("rsa2048.csr")).unwrap())
        .unwrap();
    assert_eq!(csr.dns, vec!["r.sensors.example.com"]);
    let issued = ca
        .issue(
            &IssueRequest {
                csr,
                lifetime: None,
                server_auth: false,
            },
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap();
    let (ok, text) = openssl_verify(&dir, &ca, &issued.leaf_der, None);
    assert!(ok, "{text}");

    // A CSR with only a CN names that CN; policy still applies to it.
    let st = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
        ])
        .arg(dir.join("cn.key"))
        .args([
            "-subj",
            "/CN=cn.sensors.example.com",
            "-outform",
            "DER",
            "-out",
        ])
        .arg(dir.join("cn.csr"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let csr = ca
        .verify_csr(&std::fs::read(dir.join("cn.csr")).unwrap())
        .unwrap();
    assert_eq!(csr.dns, vec!["cn.sensors.example.com"]);

    // Ed25519 from openssl is accepted and issued (openssl verify checks the chain).
    let st = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ed25519", "-nodes", "-keyout"])
        .arg(dir.join("ed.key"))
        .args([
            "-subj",
            "/CN=ed.sensors.example.com",
            "-outform",
            "DER",
            "-out",
        ])
        .arg(dir.join("ed.csr"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let csr = ca
        .verify_csr(&std::fs::read(dir.join("ed.csr")).unwrap())
        .unwrap();
    let issued = ca
        .issue(
            &IssueRequest {
                csr,
                lifetime: None,
                server_auth: false,
            },
            crate::trust::TrustedNow::for_tests(NOW),
        )
        .unwrap();
    let (ok, text) = openssl_verify(&dir, &ca, &issued.leaf_der, None);
    assert!(ok, "{text}");

    // A flipped byte in the signature: no proof of possession.
    let mut der = csr_for(&["f.sensors.example.com"], &[]);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let err = ca.verify_csr(&der).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    // A flipped byte in the signed part (a SAN letter).
    let mut der = csr_for(&["f.sensors.example.com"], &[]);
    let pos = der.windows(3).position(|w| w == b"f.s").unwrap();
    der[pos] = b'g';
    assert!(matches!(ca.verify_csr(&der), Err(Error::BadCsr(_))));
    // Garbage.
    assert!(matches!(
        ca.verify_csr(b"\x30\x03abc"),
        Err(Error::BadCsr(_))
    ));
    assert!(matches!(ca.verify_csr(&[]), Err(Error::BadCsr(_))));
}

#[test]
fn init_refuses_to_overwrite_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tmp("files");
    let ca_dir = dir.join("ca");
    let ca = LocalCa::init(&ca_dir, &cfg(), crate::trust::TrustedNow::for_tests(NOW)).unwrap();
    let root = ca.root_pem();
    assert!(matches!(
        LocalCa::init(&ca_dir, &cfg(), crate::trust::TrustedNow::for_tests(NOW)),
        Err(Error::AlreadyExists(_))
    ));
    let again = LocalCa::open(&ca_dir, &cfg()).unwrap();
    assert_eq!(again.root_pem(), root);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(mode(&ca_dir.join(ROOT_KEY)), 0o600);
    assert_eq!(mode(&ca_dir.join(INT_KEY)), 0o600);
    assert_eq!(mode(&ca_dir.join(INT_CERT)), 0o644);
    assert!(matches!(
        LocalCa::open(&dir.join("none"), &cfg()),
        Err(Error::NotInitialized(_))
    ));
}

#[test]
fn operator_signed_intermediate_install() {
    let dir = tmp("install");
    let ca_dir = dir.join("ca");
    let csr_pem = LocalCa::pending_csr(&ca_dir, &cfg(), TrustedNow::for_tests(NOW)).unwrap();
    std::fs::write(dir.join("int.csr"), &csr_pem).unwrap();
    // The operator's root, with openssl.
    let sh = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "op.key",
        "-out",
        "op.crt",
        "-subj",
        "/CN=Operator Root",
        "-days",
        "3650",
    ]);
    let sign = |ext: &str, out: &str| {
        std::fs::write(dir.join("ext.cnf"), format!("[v]\n{ext}\n")).unwrap();
        sh(&[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "op.crt",
            "-CAkey",
            "op.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v",
            "-out",
            out,
        ]);
        let mut pem = std::fs::read_to_string(dir.join(out)).unwrap();
        pem.push_str(&std::fs::read_to_string(dir.join("op.crt")).unwrap());
        pem
    };
    let now = crypto::CertInfo::from_pem(&std::fs::read_to_string(dir.join("op.crt")).unwrap())
        .unwrap()
        .not_before
        + 60;
    // Not a CA.
    let pem = sign("basicConstraints=critical,CA:false", "a.crt");
    let err = LocalCa::install(
        &ca_dir,
        &cfg(),
        &pem,
        crate::trust::TrustedNow::for_tests(now),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    // A CA without name constraints.
    let pem = sign("basicConstraints=critical,CA:true,pathlen:0", "b.crt");
    let err = LocalCa::install(
        &ca_dir,
        &cfg(),
        &pem,
        crate::trust::TrustedNow::for_tests(now),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nameConstraints"), "{err}");
    // Constraints that miss allow_suffix.
    let pem = sign(
        "basicConstraints=critical,CA:true,pathlen:0\nnameConstraints=critical,permitted;DNS:other.example.com,permitted;IP:192.0.2.0/255.255.255.0",
        "c.crt",
    );
    let err = LocalCa::install(
        &ca_dir,
        &cfg(),
        &pem,
        crate::trust::TrustedNow::for_tests(now),
    )
    .unwrap_err();
    assert!(err.to_string().contains("sensors.example.com"), "{err}");
    // Only the intermediate, no root.
    let good = sign(
        "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nnameConstraints=critical,permitted;DNS:example.com,permitted;IP:192.0.2.0/255.255.255.0",
        "d.crt",
    );
    let only_int = std::fs::read_to_string(dir.join("d.crt")).unwrap();
    assert!(LocalCa::install(
        &ca_dir,
        &cfg(),
        &only_int,
        crate::trust::TrustedNow::for_tests(now)
    )
    .is_err());
    // A cert for another key.
    let other_csr = crypto::pem_block("CERTIFICATE REQUEST", &csr_for(&["x.example.com"], &[]));
    std::fs::write(dir.join("int.csr"), other_csr).unwrap();
    let wrong = sign("basicConstraints=critical,CA:true", "e.crt");
    let err = LocalCa::install(
        &ca_dir,
        &cfg(),
        &wrong,
        crate::trust::TrustedNow::for_tests(now),
    )
    .unwrap_err();
    assert!(err.to_string().contains("pending key"), "{err}");

    // The good one (covering constraints: example.com ⊇ sensors.example.com).
    let ca = LocalCa::install(
        &ca_dir,
        &cfg(),
        &good,
        crate::trust::TrustedNow::for_tests(now),
    )
    .unwrap();
    assert!(!ca_dir.join(PENDING_KEY).exists());
    let csr = ca
        .verify_csr(&csr_for(&["s.sensors.example.com"], &[]))
        .unwrap();
    let issued = ca
        .issue(
            &IssueRequest {
                csr,
                lifetime: None,
                server_auth: false,
            },
            crate::trust::TrustedNow::for_tests(now),
        )
        .unwrap();
    let out = Command::new("openssl")
        .args([
            "verify",
            "-attime",
            &now.to_string(),
            "-CAfile",
            "op.crt",
            "-untrusted",
            "d.crt",
        ])
        .arg({
            write_pem(&dir.join("leaf.crt"), "CERTIFICATE", &issued.leaf_der);
            dir.join("leaf.crt")
        })
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ca.chain_der().len(), 2);
}

#[test]
fn suffix_and_subnet_matching() {
    assert!(dns_in_subtree(
        "a.sensors.example.com",
        "sensors.example.com"
    ));
    assert!(dns_in_subtree("sensors.example.com", "sensors.example.com"));
    assert!(dns_in_subtree(
        "A.Sensors.Example.COM",
        ".sensors.example.com"
    ));
    assert!(!dns_in_subtree(
        "evilsensors.example.com",
        "sensors.example.com"
    ));
    assert!(!dns_in_subtree("example.com", "sensors.example.com"));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(ip_in_subnet(ip("192.0.2.77"), ip("192.0.2.0"), 24));
    assert!(!ip_in_subnet(ip("192.0.3.1"), ip("192.0.2.0"), 24));
    assert!(ip_in_subnet(ip("10.1.2.3"), ip("10.0.0.0"), 8));
    assert!(ip_in_subnet(ip("10.1.2.3"), ip("0.0.0.0"), 0));
    assert!(ip_in_subnet(ip("192.0.2.129"), ip("192.0.2.128"), 25));
    assert!(!ip_in_subnet(ip("192.0.2.127"), ip("192.0.2.128"), 25));
    assert!(ip_in_subnet(ip("2001:db8::5"), ip("2001:db8::"), 32));
    assert!(!ip_in_subnet(ip("2001:db8::5"), ip("192.0.2.0"), 0));
}

/// The nameConstraints are real: a leaf signed by the intermediate key behind the policy's back
/// (a name outside allow_suffix, or an IP when none is allowed) fails `openssl verify`.
#[test]
fn intermediate_constraints_bind_in_openssl() {
    let dir = tmp("bind");
    let mut c = cfg();
    c.allow_ip.clear();
    let ca = LocalCa::init(
        &dir.join("ca"),
        &c,
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    let forge = |sans: Vec<rcgen::SanType>| {
        let k = PrivateKey::generate(KeyType::Ec256).unwrap();
        let mut p = CertificateParams::default();
        p.not_before = to_time(NOW - 60).unwrap();
        p.not_after = to_time(NOW + 3600).unwrap();
        p.subject_alt_names = sans;
        p.distinguished_name = DistinguishedName::new();
        let key = ca.signing_key().unwrap();
        let issuer = Issuer::from_ca_cert_der(&ca.int_der.as_slice().into(), key.rcgen()).unwrap();
        p.signed_by(&k.to_rcgen(), &issuer).unwrap().der().to_vec()
    };
    let inside = forge(crypto::sans(&["a.sensors.example.com".into()], &[]).unwrap());
    let (ok, text) = openssl_verify(&dir, &ca, &inside, None);
    assert!(ok, "{text}");
    let outside = forge(crypto::sans(&["a.example.org".into()], &[]).unwrap());
    let (ok, text) = openssl_verify(&dir, &ca, &outside, None);
    assert!(!ok && text.contains("subtree violation"), "{text}");
    let ip = forge(crypto::sans(&[], &["10.0.0.1".parse().unwrap()]).unwrap());
    let (ok, text) = openssl_verify(&dir, &ca, &ip, None);
    assert!(!ok && text.contains("subtree violation"), "{text}");
}

#[test]
fn the_signer_refuses_a_time_before_the_intermediate() {
    let dir = tmp("before");
    let ca = LocalCa::init(&dir.join("ca"), &cfg(), TrustedNow::for_tests(NOW)).unwrap();
    let csr = ca
        .verify_csr(&csr_for(&["t1.sensors.example.com"], &[]))
        .unwrap();
    let req = IssueRequest {
        csr,
        lifetime: None,
        server_auth: false,
    };
    // Before notBefore (backdated 5 minutes), whatever floor the caller checked.
    let e = ca
        .issue(&req, TrustedNow::for_tests(NOW - BACKDATE - 1))
        .unwrap_err();
    assert!(matches!(e, Error::Clock(_)), "{e}");
    assert_eq!(e.http_status(), 503);
    assert!(ca.issue(&req, TrustedNow::for_tests(NOW)).is_ok());
}

/// An openssl CSR (P-256) with subject CN `cn` and `san` as its subjectAltName extension.
fn openssl_csr(dir: &Path, tag: &str, cn: &str, san: &str) -> Vec<u8> {
    let out = dir.join(format!("{tag}.der"));
    let st = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .arg("-keyout")
        .arg(dir.join(format!("{tag}.key")))
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName={san}"),
        ])
        .args(["-outform", "DER", "-out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(out).unwrap()
}

/// Issue 10 item 7: RFC 5280 ub-common-name is 64; a longer CN is refused with the reason.
#[test]
fn a_common_name_over_64_characters_is_refused() {
    let dir = tmp("cn64");
    let ca = LocalCa::init(&dir.join("ca"), &cfg(), TrustedNow::for_tests(NOW)).unwrap();
    // 64 characters exactly is fine.
    let cn64 = format!("{}.sensors.example.com", "a".repeat(64 - 20));
    assert_eq!(cn64.len(), 64);
    let csr = ca
        .verify_csr(&openssl_csr(&dir, "ok", &cn64, &format!("DNS:{cn64}")))
        .unwrap();
    ca.issue(
        &IssueRequest {
            csr,
            lifetime: None,
            server_auth: false,
        },
        TrustedNow::for_tests(NOW),
    )
    .unwrap();
    // openssl refuses to write such a CSR; an attacker's tool (rcgen here) does not.
    let cn65 = format!("{}.sensors.example.com", "a".repeat(65 - 20));
    let k = PrivateKey::generate(KeyType::Ec256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![cn65.clone()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn65.as_str());
    let long = params.serialize_request(&k.to_rcgen()).unwrap();
    let e = ca.verify_csr(long.der()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("65 characters") && text.contains("ub-common-name"),
        "{text}"
    );
    assert_eq!(e.http_status(), 400);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 10 item 7: a name asked for twice (DNS names in any case, IPs) is issued once.
#[test]
fn duplicate_sans_are_issued_once() {
    let dir = tmp("dupsan");
    let ca = LocalCa::init(&dir.join("ca"), &cfg(), TrustedNow::for_tests(NOW)).unwrap();
    let der = openssl_csr(
        &dir,
        "dup",
        "d.sensors.example.com",
        "DNS:d.sensors.example.com,DNS:D.Sensors.Example.com,DNS:e.sensors.example.com,\
         DNS:d.sensors.example.com,IP:192.0.2.5,IP:192.0.2.5",
    );
    let csr = ca.verify_csr(&der).unwrap();
    assert_eq!(
        csr.dns,
        vec!["d.sensors.example.com", "e.sensors.example.com"]
    );
    assert_eq!(csr.ips.len(), 1);
    let issued = ca
        .issue(
            &IssueRequest {
                csr,
                lifetime: None,
                server_auth: false,
            },
            TrustedNow::for_tests(NOW),
        )
        .unwrap();
    let info = CertInfo::from_der(&issued.leaf_der).unwrap();
    assert_eq!(
        info.dns_names,
        vec!["d.sensors.example.com", "e.sensors.example.com"]
    );
    assert_eq!(info.ips.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `Issued`'s serial and notAfter are what the certificate says, taken from what was encoded
/// rather than parsed back: over many serials, and when the lifetime is cut to the
/// intermediate's notAfter.
#[test]
fn issued_serial_and_not_after_match_the_certificate() {
    let dir = tmp("issued-fields");
    let ca = LocalCa::init(
        &dir.join("ca"),
        &cfg(),
        crate::trust::TrustedNow::for_tests(NOW),
    )
    .unwrap();
    let csr = ca
        .verify_csr(&csr_for(&["f.sensors.example.com"], &[]))
        .unwrap();
    let issue = |at: i64| {
        ca.issue(
            &IssueRequest {
                csr: csr.clone(),
                lifetime: None,
                server_auth: false,
            },
            crate::trust::TrustedNow::for_tests(at),
        )
        .unwrap()
    };
    for _ in 0..64 {
        let issued = issue(NOW);
        let info = CertInfo::from_der(&issued.leaf_der).unwrap();
        assert_eq!(issued.serial_hex, info.serial_hex());
        assert_eq!(issued.not_after, info.not_after);
    }
    // A day before the intermediate expires: the leaf's day is cut to it.
    let end = ca.intermediate().not_after;
    let issued = issue(end - 3600);
    let info = CertInfo::from_der(&issued.leaf_der).unwrap();
    assert_eq!(info.not_after, end);
    assert_eq!(issued.not_after, end);
    assert_eq!(issued.serial_hex, info.serial_hex());
    let _ = std::fs::remove_dir_all(&dir);
}
