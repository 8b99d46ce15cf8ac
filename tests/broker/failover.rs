//! The broker with backup issuers (README, "Backup issuers"): leaves are ordered from the
//! broker's `list issuer` in order; with the primary pebble stopped, the next leaf comes from
//! the backup pebble at once (a leaf waits on its order: the deadline is now), the move is
//! audited and `status` names the issuer and the reason; `renew --now --issuer` is handed to
//! the running service.

use super::*;

/// Ports no other test binary uses; both pebbles validate http-01 at the gateway's listener.
const PRIMARY: Ports = Ports {
    acme: 14540,
    management: 15540,
    dns: 8693,
    challtestsrv: 8695,
    http01: 5482,
    tls_alpn: 5845,
};
const BACKUP: Ports = Ports {
    acme: 14550,
    management: 15550,
    dns: 8703,
    challtestsrv: 8705,
    http01: 5482,
    tls_alpn: 5845,
};

#[test]
fn leaves_fail_over_to_the_backup_issuer() {
    let mut primary = Pebble::start_with(PRIMARY, "broker-failover-primary");
    let backup = Pebble::start_with(BACKUP, "broker-failover-backup");
    let config = |state: &Path| {
        format!(
            "config gatecert 'main'\n\toption state_dir '{state}'\n\toption log 'stderr'\n\n\
             config issuer 'primary'\n\toption directory '{pd}'\n\toption ca_bundle '{pca}'\n\n\
             config issuer 'backup'\n\toption directory '{bd}'\n\toption ca_bundle '{bca}'\n\n\
             config certificate 'gw'\n\tlist domain 'gw.sensors.test'\n\
             \toption http_listen '127.0.0.1:{http}'\n\toption timeout '3'\n\
             \tlist issuer 'primary'\n\tlist issuer 'backup'\n\n\
             config ca 'local'\n\tlist allow_suffix 'sensors.test'\n\n\
             config est 'est'\n\toption listen '127.0.0.1:1'\n\n\
             config broker 'upstream'\n\toption certificate 'gw'\n\
             \toption upstream_wait '{ROOMY_WAIT}'\n\toption interim_lifetime '1h'\n\
             \tlist issuer 'primary'\n\tlist issuer 'backup'\n",
            state = state.display(),
            pd = primary.directory(),
            pca = primary.https_ca.display(),
            bd = backup.directory(),
            bca = backup.https_ca.display(),
            http = PRIMARY.http01,
        )
    };
    let g = Gatecert::start_config("broker-failover", config, &[]);
    g.wait_gateway_cert();
    let primary_int = CertInfo::from_pem(&primary.intermediate()).unwrap();
    let backup_int = CertInfo::from_pem(&backup.intermediate()).unwrap();

    // Both up: from the primary.
    let csr = g.csr("fo1.sensors.test", "fo1");
    let (code, _, body, _) = g.enroll("fo1.sensors.test", &csr);
    assert_eq!(code, 200, "{}", g.log());
    let certs = g.certs(&body, "fo1-cert");
    assert_eq!(Gatecert::leaf(&certs).issuer, primary_int.subject);

    // The primary stopped: the next leaf comes from the backup, not from the local CA.
    primary.stop();
    let csr = g.csr("fo2.sensors.test", "fo2");
    let (code, _, body, _) = g.enroll("fo2.sensors.test", &csr);
    assert_eq!(code, 200, "{}", g.log());
    let certs = g.certs(&body, "fo2-cert");
    let leaf = Gatecert::leaf(&certs);
    assert_eq!(leaf.issuer, backup_int.subject, "{}", g.log());
    assert!(g.audit_has("fo2.sensors.test", "upstream"), "{}", g.audit());
    let moved: Vec<serde_json::Value> = g
        .audit()
        .lines()
        .filter(|l| l.contains("\"event\":\"issuer.failover\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(moved.len(), 1, "{}", g.audit());
    assert_eq!(moved[0]["cert"], "broker");
    assert_eq!(moved[0]["from"], "primary");
    assert_eq!(moved[0]["to"], "backup");
    assert_eq!(moved[0]["reason"], "unreachable");
    let out = g.cli(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let iss = &v["upstream"]["issuers"];
    assert_eq!(iss["active"], "backup", "{v}");
    assert_eq!(iss["reason"], "unreachable");
    assert_eq!(iss["held"][0]["name"], "primary");
    assert_ne!(
        v["upstream"]["state"], "down",
        "the broker's upstream works: {v}"
    );
    let out = g.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("leaves' issuer: backup (failed over from primary: unreachable"),
        "{text}"
    );

    // `renew --now --issuer backup` while the service runs: handed to it, which re-issues the
    // gateway certificate from the backup.
    let out = g.cli(&["renew", "--now", "--issuer", "backup"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        g.log()
    );
    let pem = std::fs::read_to_string(g.state().join("certs/gw/live/cert.pem")).unwrap();
    assert_eq!(CertInfo::from_pem(&pem).unwrap().issuer, backup_int.subject);
    assert!(
        g.audit().contains("\"event\":\"issuer.reissue\""),
        "{}",
        g.audit()
    );
}
