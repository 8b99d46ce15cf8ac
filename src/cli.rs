//! The command line: `gatecert [--config FILE] <command> [options]`.
//!
//! Raw arguments are only checked here, then turned into typed settings and handed to the module
//! that owns the command. Exit codes follow uacme: 0 done, 1 nothing to do, 2 error.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::errchain::print_error;

/// The default config path.
pub const DEFAULT_CONFIG: &str = "/etc/config/gatecert";

const USAGE: &str = "usage: gatecert [--config FILE] <command> [options]

commands:
  renew [--force] [-v] [--cert NAME]     renew due gateway certificates (0 renewed, 1 nothing due, 2 error)
  renew --now --issuer NAME [CERT]       re-issue at once from one of `list issuer` (e.g. after a CA distrust)
  run [--state-dir DIR] [--listen ADDR]  the service: EST, the local CA, the renewal scheduler, the broker
  status [--json] [--state-dir DIR]      certificates, clock, upstream health, leaves and tokens
  check                                  pre-flight checks
  revoke [--reason R] [--cert NAME] [-v] revoke the gateway certificate
  account rollover [--cert NAME] [-v]    replace the ACME account key (RFC 8555 7.3.5)
  ca init|csr [--out FILE]|install CERT|show|rotate
  ca sign --csr FILE [--lifetime 24h | --days N] [--server-auth] [--out FILE]
                                         the local issuing CA (gatecert ca --help)
  token add DEVICE --name N [--name N ...] [--ttl 7d] [--uses 1] [--bundle | --qr | --qr-matrix | --acme]
  token list [--json] | revoke DEVICE    bootstrap tokens (gatecert token --help)
  leaves [--json]                        leaf inventory
  leaves revoke|disable|enable DEVICE    cut a sensor off (gatecert leaves --help)
  audit verify [--repair|--dir DIR]      check the audit log's hash chain
  demo [--keep]                          the whole job in a temp dir, with no outside CA

options:
  --config FILE            default /etc/config/gatecert (when that file is missing, the embedded
                           standalone default; any other FILE must exist)
  -h, --help               this text; `gatecert COMMAND --help` for one command
  -V, --version            the version";

/// One command's usage, printed by `gatecert COMMAND --help` (exit 0, nothing else done).
fn command_usage(command: &str) -> Option<&'static str> {
    Some(match command {
        "renew" => "usage: gatecert renew [--force] [-v] [--cert NAME]
       gatecert renew --now --issuer NAME [CERT]

Renews every due certificate (standalone ones are issued by the local CA).
  --force       renew even if not due, and without waiting out a failure backoff
  -v            show each ACME step
  --cert NAME   only this certificate section
  --now --issuer NAME
                re-issue now, due or not, from the issuer NAME of `list issuer` (every
                certificate that lists it, or CERT); audited (issuer.reissue)
exit: 0 renewed, 1 nothing due, 2 error",
        "run" => "usage: gatecert run [--state-dir DIR] [--listen ADDR]

The service in the foreground: EST, the local CA, the renewal scheduler, the broker.
SIGHUP reloads config and certificates, SIGTERM stops cleanly.
  --state-dir DIR   override the config's state_dir
  --listen ADDR     override the EST listen address
exit: 0 on SIGTERM, 2 error",
        "status" => "usage: gatecert status [--json] [--state-dir DIR]

Certificates, clock, upstream health, leaves and tokens.
  --json            machine-readable (doc/status-schema.md)
  --state-dir DIR   look at DIR instead of the config's state_dir (e.g. `demo --keep`'s)
exit: 0 healthy, 1 needs attention, 2 error",
        "check" => "usage: gatecert check

Pre-flight: config, clock, state dir, the local CA (when the config uses one: there and valid),
ACME directory reachable, ports bindable, hooks executable.
exit: 0 ok, 2 a check failed",
        "revoke" => "usage: gatecert revoke [--reason R] [--cert NAME] [-v]

Revokes the live certificate. R: unspecified, keyCompromise, superseded,
cessationOfOperation, ... or the RFC 5280 reason number.
exit: 0 revoked, 2 error",
        "account" => "usage: gatecert account rollover [--cert NAME] [-v]

Replaces the ACME account key (RFC 8555 7.3.5).
exit: 0 done, 2 error",
        "ca" => "usage: gatecert ca init|csr|install|show|sign|rotate

  ca init                     a self-signed P-256 root and a name-constrained issuing intermediate
  ca csr [--out FILE]         a key and CSR for an intermediate your own root will sign
  ca install CERT             install that signed intermediate
  ca show                     subject, issuer, validity, constraints, fingerprints
  ca sign --csr FILE [--lifetime 24h | --days N] [--server-auth] [--out FILE]
                              manual issuance through the same policy (audited)
  ca rotate                   a new intermediate under the same root, live at once; the replaced
                              one kept for verification until its leaves expire (needs root.key)
exit: 0 done, 2 error",
        "token" => "usage: gatecert token add|list|revoke

  token add DEVICE --name N [--name N ...] [--ttl 7d] [--uses 1]
                       a bootstrap token bound to those names; printed once, stored hashed
    --acme             an ACME External Account Binding (eab_kid=, eab_hmac=) instead, for
                       leaves that speak ACME (config acme_server)
    --bundle           print the provisioning bundle instead (JSON: EST URLs, the root and its
                       SHA-256, device, token, expiry); it holds the token: shown only now
    --qr               the bundle as a QR code in the terminal (UTF-8 blocks), then its JSON
    --qr-matrix        the bundle and its QR matrix as one JSON object (for LuCI)
  token list [--json]  tokens and their state (active, expired, exhausted, revoked; no secrets)
  token revoke DEVICE  revoke the device's tokens
exit: 0 done, 2 error",
        "leaves" => "usage: gatecert leaves [--json]
       gatecert leaves revoke DEVICE|SERIAL [--reason R] | disable DEVICE [--reason R] | enable DEVICE

  leaves                  the inventory: one row per device (serial, notAfter, source, state,
                          earlier unexpired certificates), revoked certificates, pending
                          upstream revocations
  leaves revoke WHO       WHO: a device, or the serial of any certificate it holds. Revokes every
                          unexpired certificate of the device (local ones in the CRL, upstream
                          ones at the upstream CA), revokes its bootstrap token, refuses its
                          re-enrollment; a new `token add` enrolls it again
  leaves disable DEVICE   the same, and refuses the device everything until `leaves enable`
  leaves enable DEVICE    a disabled device may enroll again with a new token
  --reason R              RFC 5280 reason: unspecified (revoke's default), keyCompromise (its
                          public keys are never certified again), cessationOfOperation
                          (disable's default), superseded, ... or the number
exit: 0 done, 2 error",
        "audit" => "usage: gatecert audit verify [--repair | --dir ARCHIVE_DIR]

Checks the audit log's hash chain across rotated files as one chain, and where its history
begins (the first line ever, or where a recorded pruning left it); --repair cuts a torn last
line and records the repair in the log; --dir checks the files of an archive directory
(option audit_archive_dir) as one chain.
exit: 0 intact, 2 broken",
        "demo" => "usage: gatecert demo [--keep]

The whole job in a temp dir with no outside CA: a local CA, the gateway's certificate, EST on
127.0.0.1, a bootstrap token and a simulated sensor enrolling over TLS.
  --keep   leave the state directory, with the sensor's key and certificate, for a look around
exit: 0, 2 error",
        _ => return None,
    })
}

/// Parses `std::env::args` and runs the command. Returns the exit code.
pub fn main() -> i32 {
    quiet_on_broken_pipe();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (config, explicit, rest) = match split_config(args) {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("gatecert: error: {msg}\n\n{USAGE}");
            return 2;
        }
    };
    let command = rest.first().and_then(|a| a.to_str()).map(str::to_owned);
    let sub: Vec<String> = rest
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // `COMMAND --help` only prints: it runs before the config is read, so it can't act.
    if let Some(usage) = command.as_deref().and_then(command_usage) {
        if sub
            .iter()
            .any(|a| a == "-h" || a == "--help" || a == "help")
        {
            println!("{usage}");
            return 0;
        }
    }
    if explicit && !config.exists() {
        eprintln!(
            "gatecert: error: --config {}: no such file (only the default path {DEFAULT_CONFIG} \
             may be missing, which means the embedded standalone default)",
            config.display()
        );
        return 2;
    }
    let with_config =
        |run: fn(&crate::config::Config, &[String]) -> i32| match crate::config::Config::load(
            &config,
        ) {
            Ok(cfg) => {
                crate::audit::configure(&cfg.main.state_dir, cfg.audit_policy());
                run(&cfg, &sub)
            }
            Err(e) => {
                print_error(&e);
                2
            }
        };
    match command.as_deref() {
        Some("renew") => with_config(crate::renew::cmd_renew),
        Some("revoke") => with_config(crate::renew::cmd_revoke),
        Some("account") => with_config(crate::renew::cmd_account),
        Some("run") => with_config(crate::daemon::cmd_run),
        Some("ca") => with_config(crate::admin::cmd_ca),
        Some("token") => with_config(crate::admin::cmd_token),
        Some("audit") => with_config(crate::admin::cmd_audit),
        Some("leaves") => with_config(crate::admin::cmd_leaves),
        Some("status") => with_config(crate::report::cmd_status),
        Some("check") => match crate::config::Config::load(&config) {
            Ok(cfg) => crate::report::cmd_check(&cfg, &sub),
            Err(e) => crate::report::check::config_failed(&config, &e),
        },
        Some("demo") => crate::daemon::cmd_demo(&sub),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            0
        }
        None => {
            eprintln!("{USAGE}");
            2
        }
        Some("-V" | "--version") => {
            println!("gatecert {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(other) => {
            eprintln!("gatecert: error: unknown command {other:?}\n\n{USAGE}");
            2
        }
    }
}

/// `gatecert ca show | head` closes our stdout early. Rust ignores SIGPIPE, so the next
/// `println!` fails with EPIPE and panics; a Unix tool instead dies quietly of SIGPIPE. The hook
/// recognises exactly that panic (std's "failed printing to stdout" with a broken pipe) and ends
/// the process the way SIGPIPE's default action would; every other panic goes to the default hook.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Pulls `--config FILE` / `--config=FILE` out of the arguments, wherever it appears.
/// Returns the path, whether it was given, and the other arguments.
pub fn split_config(args: Vec<OsString>) -> Result<(PathBuf, bool, Vec<OsString>), String> {
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    let mut explicit = false;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" || s == "-c" {
            config = it.next().ok_or("--config needs a FILE")?.into();
            explicit = true;
        } else if let Some(v) = s.strip_prefix("--config=") {
            config = PathBuf::from(v);
            explicit = true;
        } else {
            rest.push(a);
        }
    }
    Ok((config, explicit, rest))
}
