//! The command line: `gatecert [--config FILE] <command> [options]`.
//!
//! Raw arguments are only checked here, then turned into typed settings and handed to the module
//! that owns the command. Exit codes follow uacme: 0 done, 1 nothing to do, 2 error.

use std::ffi::OsString;
use std::path::PathBuf;

/// The default config path.
pub const DEFAULT_CONFIG: &str = "/etc/config/gatecert";

/// Prints an error and its whole `caused by:` chain to stderr.
pub fn print_error(err: &dyn std::error::Error) {
    eprintln!("gatecert: error: {err}");
    let mut cause = err.source();
    while let Some(c) = cause {
        eprintln!("  caused by: {c}");
        cause = c.source();
    }
}

const USAGE: &str = "usage: gatecert [--config FILE] <command> [options]

commands:
  renew [--force] [-v]     renew due gateway certificates (exit 0 renewed, 1 nothing due, 2 error)
  run                      the service: EST, the local CA and the renewal scheduler
  status [--json]          certificates, upstream health, leaves and tokens
  check                    pre-flight checks
  revoke [--reason R]      revoke the gateway certificate
  account rollover         replace the ACME account key (RFC 8555 7.3.5)
  ca init|csr|install|show|sign
  token add|list|revoke
  leaves                   leaf inventory
  audit verify             check the audit log's hash chain
  demo                     the whole job in a temp dir, with no outside CA

options:
  --config FILE            default /etc/config/gatecert
  -h, --help               this text
  -V, --version            the version";

/// Parses `std::env::args` and runs the command. Returns the exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (config, rest) = match split_config(args) {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("gatecert: {msg}\n\n{USAGE}");
            return 2;
        }
    };
    match rest.first().and_then(|a| a.to_str()) {
        Some(cmd @ ("ca" | "token" | "audit" | "leaves" | "status" | "check")) => {
            let cfg = match crate::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) if cmd == "check" => {
                    return crate::report::check::config_failed(&config, &e)
                }
                Err(e) => {
                    print_error(&e);
                    return 2;
                }
            };
            let args: Vec<String> = rest[1..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            match cmd {
                "ca" => crate::admin::cmd_ca(&cfg, &args),
                "token" => crate::admin::cmd_token(&cfg, &args),
                "audit" => crate::admin::cmd_audit(&cfg, &args),
                "status" => crate::report::cmd_status(&cfg, &args),
                "check" => crate::report::cmd_check(&cfg, &args),
                _ => crate::admin::cmd_leaves(&cfg, &args),
            }
        }
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            0
        }
        Some("-V" | "--version") => {
            println!("gatecert {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(other) => {
            eprintln!("gatecert: unknown command {other:?}\n\n{USAGE}");
            2
        }
    }
}

/// Pulls `--config FILE` / `--config=FILE` out of the arguments, wherever it appears.
pub fn split_config(args: Vec<OsString>) -> Result<(PathBuf, Vec<OsString>), String> {
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" || s == "-c" {
            config = it.next().ok_or("--config needs a FILE")?.into();
        } else if let Some(v) = s.strip_prefix("--config=") {
            config = PathBuf::from(v);
        } else {
            rest.push(a);
        }
    }
    Ok((config, rest))
}
