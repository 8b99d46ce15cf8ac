//! A SoftHSM2 token (Debian `softhsm2`) of a test's own: `SOFTHSM2_CONF` points at a config in
//! the test's directory, so tests never share a token. pkcs11-tool (Debian `opensc`) looks at it
//! from outside gatecert.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN. Not a substring that could turn up in a serial or a port by chance.
pub const PIN: &str = "pinQ7xZ";

/// True when SoftHSM2 and pkcs11-tool are installed.
pub fn available() -> bool {
    Path::new(MODULE).exists()
        && Command::new("pkcs11-tool")
            .arg("--version")
            .output()
            .is_ok()
}

/// A token `gw` (user PIN [`PIN`]) under `dir`, and a PIN file `dir/pin`.
pub struct SoftHsm {
    dir: PathBuf,
}

impl SoftHsm {
    pub fn init(dir: &Path) -> SoftHsm {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 is not installed ({MODULE}): apt-get install softhsm2"
        );
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        std::fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("pin"), format!("{PIN}\n")).unwrap();
        // tests/secrets.sh then checks that no kept log holds the PIN.
        super::keep_secret(PIN);
        let h = SoftHsm {
            dir: dir.to_path_buf(),
        };
        h.tool(Command::new("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            "gw",
            "--pin",
            PIN,
            "--so-pin",
            "5678",
        ]));
        h
    }

    /// The PIN file.
    pub fn pin_file(&self) -> PathBuf {
        self.dir.join("pin")
    }

    /// Points `cmd` at this token.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
    }

    /// Runs a tool against this token; it must succeed.
    pub fn tool(&self, cmd: &mut Command) -> Output {
        let out = self.env(cmd).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `pkcs11-tool --list-objects` as the user: what the token holds.
    pub fn objects(&self) -> String {
        self.try_objects().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`SoftHsm::objects`], or what `pkcs11-tool` said when it failed.
    pub fn try_objects(&self) -> Result<String, String> {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.args([
            "--module",
            MODULE,
            "--login",
            "--pin",
            PIN,
            "--list-objects",
        ]);
        let out = self.env(&mut cmd).output().unwrap();
        if !out.status.success() {
            // Not the command line: it holds the PIN, which no kept output may.
            return Err(format!(
                "pkcs11-tool --list-objects: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A key URI for `object`, with the PIN from the pin file.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token=gw;object={object}?module-path={MODULE}&pin-source=file:{}",
            self.pin_file().display()
        )
    }

    /// The token's objects as (header line, label), from [`SoftHsm::objects`].
    pub fn labels(&self) -> Vec<(String, String)> {
        labels_of(&self.objects())
    }

    /// The DER SubjectPublicKeyInfo of the public key object `label` (pkcs11-tool exports
    /// P-256 keys, not P-384 ones: see [`SoftHsm::public_point`]).
    pub fn public_key_der(&self, label: &str) -> Vec<u8> {
        self.tool(Command::new("pkcs11-tool").args([
            "--module",
            MODULE,
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            label,
        ]))
        .stdout
    }

    /// The uncompressed public point of the public key object `label` (its EC_POINT, the DER
    /// OCTET STRING around the point); `None` when there is no such object. pkcs11-tool can't
    /// export a P-384 public key, but its listing shows the point.
    pub fn public_point(&self, label: &str) -> Option<Vec<u8>> {
        let objects = self.objects();
        let block = blocks(&objects).into_iter().find(|b| {
            b.starts_with("Public Key Object") && b.contains(&format!("label:      {label}\n"))
        })?;
        let hex = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("EC_POINT:"))?
            .trim()
            .to_string();
        let der = gatecert::crypto::hex_decode(&hex)?;
        // 04 <len> point (a short length: at most 97 bytes).
        der.get(2..).map(<[u8]>::to_vec)
    }
}

/// One block per object: its header line, then its indented attribute lines.
fn blocks(objects: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in objects.lines() {
        match out.last_mut() {
            Some(b) if l.starts_with(' ') => b.push_str(&format!("{l}\n")),
            _ => out.push(format!("{l}\n")),
        }
    }
    out
}

/// The objects of a `pkcs11-tool --list-objects` output as (header line, label).
pub fn labels_of(objects: &str) -> Vec<(String, String)> {
    blocks(objects)
        .into_iter()
        .filter_map(|b| {
            let head = b.lines().next()?.to_string();
            let label = b
                .lines()
                .find_map(|l| l.trim().strip_prefix("label:"))?
                .trim()
                .to_string();
            Some((head, label))
        })
        .collect()
}
