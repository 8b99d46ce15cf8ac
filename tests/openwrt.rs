//! OpenWrt: the real `gatecert run` beside an `/etc/config/acme` as luci-app-acme writes it
//! (default webroot mode, an RSA section, an `alpn` one, a `dns_cf` one with credentials).
//! The service starts, serves EST on the address the init script passes (a sensor connects by
//! IP), imports what it can, and `status` explains each skip and names each certificate's
//! source. Only 127.0.0.1; the imported certificates' ACME server is a closed local port.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

/// A `gatecert run` child, killed and reaped on drop.
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const ACME: &str = "\
config acme
\toption account_email 'ops@example.org'
\toption debug '0'

config cert 'router'
\toption enabled '1'
\toption validation_method 'webroot'
\tlist domains 'router.example.org'
\toption acme_server 'https://127.0.0.1:1/dir'
\toption days '30'

config cert 'legacy'
\toption enabled '1'
\toption validation_method 'webroot'
\tlist domains 'legacy.example.org'
\toption key_type 'rsa2048'

config cert 'alpn'
\toption enabled '1'
\toption validation_method 'alpn'
\tlist domains 'alpn.example.org'
\toption acme_server 'https://127.0.0.1:1/dir'

config cert 'cloudflare'
\toption enabled '1'
\toption validation_method 'dns'
\toption dns 'dns_cf'
\tlist credentials 'CF_Token=\"cf-SECRET-token\"'
\tlist domains 'cf.example.org'
\toption acme_server 'https://127.0.0.1:1/dir'
";

fn gatecert(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatecert"));
    c.arg("--config").arg(dir.join("config/gatecert"));
    c
}

#[test]
fn luci_app_acme_config_imports_what_it_can_and_est_serves() {
    let tmp = common::TempDir::new("openwrt-import");
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let state: PathBuf = dir.join("state");
    // The shipped config's shape: no certificate section, lan among the suffixes, EST bound to
    // an interface (the init script resolves it and passes --listen).
    std::fs::write(
        dir.join("config/gatecert"),
        format!(
            "config gatecert 'main'\n\toption enabled '1'\n\toption state_dir '{}'\n\toption log 'stderr'\n\
             config ca 'local'\n\tlist allow_suffix 'lan'\n\tlist allow_ip '127.0.0.0/8'\n\
             config est 'est'\n\toption interface 'lan'\n",
            state.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("config/acme"), ACME).unwrap();
    let port = free_port();
    let log = dir.join("run.log");
    let _run = Run(gatecert(&dir)
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap());
    let t = Instant::now();
    while !common::listening(("127.0.0.1", port)) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "gatecert run did not listen:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A sensor connects by the router's LAN address: the listener certificate names it.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(state.join("ca/root.pem"))
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/.well-known/est/cacerts"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The listener certificate names the router: <hostname>.lan and the LAN address.
    let sans = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | \
             openssl x509 -noout -ext subjectAltName"
        ))
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&sans.stdout);
    let host = String::from_utf8(Command::new("uname").arg("-n").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    assert!(sans.contains("IP Address:127.0.0.1"), "{sans}");
    if !host.contains('.') {
        assert!(sans.contains(&format!("DNS:{host}.lan")), "{sans}");
    }

    let out = gatecert(&dir).args(["status", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let acme_file = dir.join("config/acme").display().to_string();
    let rows: Vec<(String, String, String)> = json["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "gateway")
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["config_file"].as_str().unwrap().to_string(),
                c["config_section"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("router.example.org", "router"),
        ("alpn.example.org", "alpn"),
        ("cf.example.org", "cloudflare"),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), acme_file.clone(), s.to_string()))
    .collect();
    assert_eq!(rows, want);
    let notes: Vec<&str> = json["config_notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(&format!(
            "{acme_file}:16: section 'legacy': skipped: option 'key_type': RSA keys are not supported"
        )),
        "{notes:?}"
    );
    let text = gatecert(&dir).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("config: {acme_file}, section 'router'")),
        "{text}"
    );
    assert!(text.contains("section 'legacy': skipped"), "{text}");
    // The service logged the skip too, and never a credential.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("config: ") && logged.contains("section 'legacy': skipped"),
        "{logged}"
    );
    assert!(!logged.contains("cf-SECRET-token"), "{logged}");
    assert!(!json.to_string().contains("cf-SECRET-token"));
}
