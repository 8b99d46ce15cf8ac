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
    let command = rest.first().and_then(|a| a.to_str()).map(str::to_owned);
    let sub: Vec<String> = rest
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let with_config =
        |run: fn(&crate::config::Config, &[String]) -> i32| match crate::config::Config::load(
            &config,
        ) {
            Ok(cfg) => run(&cfg, &sub),
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
