//! The `gatecert` binary: parses the command line and hands off to the library.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(gatecert::cli::main());
}
