//! `config::uci::parse` and `Config::parse` on arbitrary text: never panic; what parses is
//! well-formed (identifiers, line numbers in range) and survives a print → parse round trip.
//! Text that mentions `cert` also goes through the acme-common import (`/etc/config/acme`).
#![no_main]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use gatecert::config::uci::{self, Section};
use gatecert::config::Config;

#[path = "common/scratch.rs"]
mod common;

/// (type, name, [(option, values, is_list)]): a section without its line numbers.
type Flat = Vec<(String, Option<String>, Vec<(String, Vec<String>, bool)>)>;

fn flat(sections: &[Section]) -> Flat {
    sections
        .iter()
        .map(|s| {
            let opts = s
                .options
                .iter()
                .map(|o| (o.name.clone(), o.values.clone(), o.is_list))
                .collect();
            (s.kind.clone(), s.name.clone(), opts)
        })
        .collect()
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// libuci's section types: printable ASCII, no spaces.
fn is_type(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b))
}

fn dquote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes sections back as UCI: types and values double-quoted with `"` and `\` escaped.
fn print(sections: &[Section]) -> String {
    let mut out = String::new();
    for s in sections {
        match &s.name {
            Some(n) => writeln!(out, "config {} '{n}'", dquote(&s.kind)),
            None => writeln!(out, "config {}", dquote(&s.kind)),
        }
        .ok();
        for o in &s.options {
            let cmd = if o.is_list { "list" } else { "option" };
            for v in &o.values {
                writeln!(out, "\t{cmd} {} {}", o.name, dquote(v)).ok();
            }
        }
    }
    out
}

/// The scratch dir for the acme-common import, which reads a file.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::dir("uci"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sections) = uci::parse(text) {
        let lines = text.matches('\n').count() + 1;
        for s in &sections {
            assert!(is_type(&s.kind), "section type {:?}", s.kind);
            assert!(s.name.as_deref().is_none_or(is_ident), "name {:?}", s.name);
            assert!((1..=lines).contains(&s.line), "section line {}", s.line);
            for o in &s.options {
                assert!(is_ident(&o.name), "option name {:?}", o.name);
                assert!(!o.values.is_empty());
                assert!(o.is_list || o.values.len() == 1);
                assert!((1..=lines).contains(&o.line), "option line {}", o.line);
            }
        }
        let printed = print(&sections);
        let again = uci::parse(&printed)
            .unwrap_or_else(|e| panic!("printed form does not parse: {e}\n{printed}"));
        assert_eq!(flat(&again), flat(&sections), "round trip\n{printed}");
    }
    if let Err(e) = Config::parse(text, Path::new("fuzz.conf")) {
        let _ = e.to_string();
    }
    if text.contains("cert") {
        let dir = scratch();
        let acme = dir.join("acme");
        std::fs::write(&acme, text).expect("write scratch");
        if let Err(e) = Config::load_with_acme(&dir.join("absent"), &acme) {
            let _ = e.to_string();
        }
    }
});
