//! Formatting an error with its whole `caused by:` chain: a leaf module that the command line and
//! the engines both use, so no engine has to reach back up into `cli`.

/// Prints an error and its whole `caused by:` chain to stderr.
pub fn print_error(err: &dyn std::error::Error) {
    eprint!("{}", text(err));
}

/// What [`print_error`] prints: `gatecert: error: ...` and a `  caused by: ...` line for each
/// cause, each line ending in a newline.
pub fn text(err: &dyn std::error::Error) -> String {
    let mut out = format!("gatecert: error: {err}\n");
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(&format!("  caused by: {c}\n"));
        cause = c.source();
    }
    out
}

/// An error and its whole `caused by:` chain on one line (`a: b: c`), for log lines, health
/// files and one-line reports.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
