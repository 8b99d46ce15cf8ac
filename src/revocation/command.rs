//! `gatecert leaves revoke|disable|enable` as one request ([`Change`]) and what the command
//! prints for it ([`Printed`]). The command hands the request to the running service over the
//! control socket ([`crate::control::leaves`]): the service keeps the inventory open, so the
//! change costs one row's work instead of a read of every row. With no service, the command
//! carries it out itself; both print the same.

use std::fmt::Write as _;

use serde_json::json;

use super::{crl_path_in, cut_off, enable, Error, Site};
use crate::crypto;
use crate::errchain;
use crate::leaves::{self, DeviceState};

/// What is asked of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `leaves revoke`: every certificate revoked; a new token enrolls the device again.
    Revoke,
    /// `leaves disable`: the same, and the device is refused until `leaves enable`.
    Disable,
    /// `leaves enable`: a disabled device may enroll again with a new token.
    Enable,
}

impl Op {
    /// The subcommand's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Revoke => "revoke",
            Op::Disable => "disable",
            Op::Enable => "enable",
        }
    }

    /// The subcommand word's [`Op`].
    pub fn parse(word: &str) -> Option<Op> {
        [Op::Revoke, Op::Disable, Op::Enable]
            .into_iter()
            .find(|op| op.as_str() == word)
    }
}

/// A `leaves revoke|disable|enable` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What is asked.
    pub op: Op,
    /// The device, or (revoke, disable) the serial of any certificate it holds.
    pub who: String,
    /// The RFC 5280 §5.3.1 reason code (revoke, disable).
    pub reason: u8,
}

/// What the command prints, and its exit code (0 done, 2 error).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Printed {
    /// The exit code.
    pub code: i32,
    /// For stdout.
    pub out: String,
    /// For stderr.
    pub err: String,
}

impl Printed {
    /// The error printed, or [`Busy`] when it is a lock held too long.
    fn failed(e: Error) -> Result<Printed, Busy> {
        if e.is_busy() {
            return Err(Busy(errchain::one_line(&e)));
        }
        Ok(Printed {
            code: 2,
            out: String::new(),
            err: errchain::text(&e),
        })
    }

    /// As the service sends it over the control socket (after the exit code's line).
    pub fn to_json(&self) -> String {
        json!({ "out": self.out, "err": self.err }).to_string()
    }

    /// The service's answer; `None` when it is not one (a service that does not know the
    /// request, or a socket busy with a renewal).
    pub fn from_json(code: i32, text: &str) -> Option<Printed> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        Some(Printed {
            code,
            out: v.get("out")?.as_str()?.to_owned(),
            err: v.get("err")?.as_str()?.to_owned(),
        })
    }

    /// Prints it; the exit code.
    pub fn print(&self) -> i32 {
        print!("{}", self.out);
        eprint!("{}", self.err);
        self.code
    }
}

/// A lock the change needs was still held by another process after the site's wait: nothing
/// was changed. The service then leaves the change to the command, which waits.
#[derive(Debug)]
pub struct Busy(pub String);

impl Change {
    /// Carries the change out at `site` (audited, saved, the CRL signed) and says what
    /// happened; [`Busy`] when a lock was not free within `site.wait`.
    pub fn carry_out(&self, site: &Site<'_>, now: i64) -> Result<Printed, Busy> {
        match self.op {
            Op::Revoke => self.cut(site, DeviceState::Revoked, now),
            Op::Disable => self.cut(site, DeviceState::Disabled, now),
            Op::Enable => self.enable(site, now),
        }
    }

    fn cut(&self, site: &Site<'_>, state: DeviceState, now: i64) -> Result<Printed, Busy> {
        let done = match cut_off(site, &self.who, state, self.reason, None, now) {
            Ok(done) => done,
            Err(e) => return Printed::failed(e),
        };
        let verb = match state {
            DeviceState::Disabled => "disabled",
            _ => "revoked",
        };
        let queued = match done.cut.queued_upstream {
            0 => String::new(),
            n => format!(
                ", {n} upstream one(s) queued for revocation at the upstream CA by `gatecert run`"
            ),
        };
        let mut out = format!(
            "device {} {verb} ({}): {} certificate(s) revoked{queued}\n",
            done.cut.device,
            leaves::reason_name(self.reason),
            done.cut.revoked.len(),
        );
        for r in &done.cut.revoked {
            let _ = writeln!(out, "  {} ({})", r.serial, r.source.as_str());
        }
        if done.token_revoked {
            out.push_str(
                "  its bootstrap token is revoked: only a new `gatecert token add` enrolls it \
                 again\n",
            );
        }
        match done.crl {
            Ok(crl) => {
                let _ = writeln!(
                    out,
                    "CRL #{} published: {} (next update {})",
                    crl.number,
                    crl_path_in(site.state_dir).display(),
                    crypto::rfc3339(crl.next_update)
                );
                Ok(Printed {
                    code: 0,
                    out,
                    err: String::new(),
                })
            }
            Err(e) => Ok(Printed {
                code: 2,
                out,
                err: format!(
                    "the revocation is recorded and EST refuses the device now, but the CRL \
                     was not published:\n{}",
                    errchain::text(&e)
                ),
            }),
        }
    }

    fn enable(&self, site: &Site<'_>, now: i64) -> Result<Printed, Busy> {
        let device = &self.who;
        match enable(site, device, now) {
            Ok(true) => Ok(Printed {
                code: 0,
                out: format!(
                    "device {device} enabled: it enrolls again with a new token (`gatecert \
                     token add {device} ...`); its revoked certificates stay revoked\n"
                ),
                err: String::new(),
            }),
            Ok(false) => Ok(Printed {
                code: 2,
                out: String::new(),
                err: format!("gatecert: error: device {device:?} is not disabled\n"),
            }),
            Err(e) => Printed::failed(e),
        }
    }
}
