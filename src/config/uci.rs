//! The UCI lexer: text → raw sections, knowing nothing of what the options mean.
//!
//! It follows libuci's file syntax (`file.c` in openwrt/uci), in its strict flavour:
//!
//! - commands `package NAME` (ignored), `config TYPE ['NAME']`, `option NAME VALUE`,
//!   `list NAME VALUE`, and libuci's one-letter forms `p`, `c`, `o`, `l`;
//! - words are unquoted, `'single quoted'` (no escapes inside) or `"double quoted"` (a backslash
//!   takes the next character literally); adjacent pieces join as in the shell (`'a'"b"c`);
//! - quoted values may span lines; a backslash at the end of a line continues the line;
//! - `#` outside quotes starts a comment (as in libuci, also in the middle of a word);
//!   `;` separates commands on one line;
//! - CR before LF is whitespace.
//!
//! Like libuci, a second `option` with the same name replaces the first, `list` accumulates
//! (turning an earlier `option` of that name into the list's first item), and a second
//! `config` with an existing name reopens that section. Unlike libuci's lenient default,
//! extra words after a command are an error (libuci's `UCI_FLAG_STRICT`).

/// One `config TYPE ['NAME']` section with its options, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The section type (`certificate`).
    pub kind: String,
    /// The section name (`gateway`); `None` for an anonymous section.
    pub name: Option<String>,
    /// 1-based line of the `config` command.
    pub line: usize,
    /// The options and lists, one entry per name, in order of first appearance.
    pub options: Vec<Opt>,
}

impl Section {
    /// The option or list called `name`, if present.
    pub fn option(&self, name: &str) -> Option<&Opt> {
        self.options.iter().find(|o| o.name == name)
    }

    /// The name, or `TYPE` for an anonymous section: how messages refer to the section.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.kind)
    }
}

/// One `option NAME VALUE` (one value) or the accumulated `list NAME VALUE` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    /// The option name.
    pub name: String,
    /// The value(s); exactly one for an `option`. A value may be empty (`''`).
    pub values: Vec<String>,
    /// Whether this came from `list` lines.
    pub is_list: bool,
    /// 1-based line of the last `option`, or of the first `list` line.
    pub line: usize,
}

/// A syntax error at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses UCI text into sections, in file order.
pub fn parse(text: &str) -> Result<Vec<Section>, SyntaxError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    };
    let mut sections: Vec<Section> = Vec::new();
    // Index into `sections` of the section that `option`/`list` lines add to.
    let mut current: Option<usize> = None;
    while let Some(cmd) = lexer.command()? {
        let line = cmd[0].line;
        let args = &cmd[1..];
        match cmd[0].text.as_str() {
            "package" | "p" => {
                expect_args(&cmd, 1, 1, "package NAME")?;
            }
            "config" | "c" => {
                expect_args(&cmd, 1, 2, "config TYPE ['NAME']")?;
                let kind = identifier(&args[0], "section type")?;
                let name = match args.get(1) {
                    Some(w) if !w.text.is_empty() => Some(identifier(w, "section name")?),
                    _ => None,
                };
                let existing = name.as_ref().and_then(|n| {
                    sections
                        .iter()
                        .position(|s| s.name.as_deref() == Some(n.as_str()))
                });
                match existing {
                    Some(i) if sections[i].kind != kind => {
                        return Err(SyntaxError {
                            line,
                            msg: format!(
                                "section '{}' was declared as type '{}' on line {}, now '{kind}'",
                                name.unwrap_or_default(),
                                sections[i].kind,
                                sections[i].line
                            ),
                        });
                    }
                    Some(i) => current = Some(i),
                    None => {
                        sections.push(Section {
                            kind,
                            name,
                            line,
                            options: Vec::new(),
                        });
                        current = Some(sections.len() - 1);
                    }
                }
            }
            word @ ("option" | "o" | "list" | "l") => {
                let is_list = word.starts_with('l');
                let form = if is_list {
                    "list NAME VALUE"
                } else {
                    "option NAME VALUE"
                };
                let Some(i) = current else {
                    return Err(SyntaxError {
                        line,
                        msg: format!("'{}' before the first 'config' section", cmd[0].text),
                    });
                };
                expect_args(&cmd, 1, 2, form)?;
                let name = identifier(&args[0], "option name")?;
                let Some(value) = args.get(1) else {
                    return Err(SyntaxError {
                        line,
                        msg: format!("option '{name}' has no value (expected `{form}`)"),
                    });
                };
                add_option(&mut sections[i], name, value.text.clone(), is_list, line);
            }
            other => {
                return Err(SyntaxError {
                    line,
                    msg: format!("unknown command '{other}' (expected config, option or list)"),
                })
            }
        }
    }
    Ok(sections)
}

/// Applies libuci's rules for repeated names: `option` replaces, `list` accumulates.
fn add_option(section: &mut Section, name: String, value: String, is_list: bool, line: usize) {
    match section.options.iter_mut().find(|o| o.name == name) {
        Some(opt) if is_list => {
            opt.values.push(value);
            if !opt.is_list {
                opt.is_list = true;
                opt.line = line;
            }
        }
        Some(opt) => {
            opt.values = vec![value];
            opt.is_list = false;
            opt.line = line;
        }
        None => section.options.push(Opt {
            name,
            values: vec![value],
            is_list,
            line,
        }),
    }
}

/// Checks the argument count of a command (not counting the command word).
fn expect_args(cmd: &[Word], min: usize, max: usize, form: &str) -> Result<(), SyntaxError> {
    let n = cmd.len() - 1;
    if n < min {
        return Err(SyntaxError {
            line: cmd[0].line,
            msg: format!("missing argument (expected `{form}`)"),
        });
    }
    if n > max {
        let extra = &cmd[max + 1];
        return Err(SyntaxError {
            line: extra.line,
            msg: format!(
                "unexpected '{}' after `{form}` (quote values that contain spaces)",
                extra.text
            ),
        });
    }
    Ok(())
}

/// Checks a type, section or option name: `[A-Za-z0-9_]+`, as libuci's `uci_validate_name`.
fn identifier(word: &Word, what: &str) -> Result<String, SyntaxError> {
    let ok = !word.text.is_empty()
        && word
            .text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(word.text.clone())
    } else {
        Err(SyntaxError {
            line: word.line,
            msg: format!(
                "bad {what} '{}': use only letters, digits and '_'",
                word.text
            ),
        })
    }
}

/// One word of a command, quotes removed, and the line it started on.
#[derive(Debug)]
struct Word {
    text: String,
    line: usize,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Skips a line break at the cursor, if there is one (`\n` or `\r\n`), counting it.
    fn skip_newline(&mut self) -> bool {
        match (self.peek(), self.peek_at(1)) {
            (Some('\n'), _) => self.pos += 1,
            (Some('\r'), Some('\n')) => self.pos += 2,
            _ => return false,
        }
        self.line += 1;
        true
    }

    /// The next command's words, or `None` at the end of the text.
    fn command(&mut self) -> Result<Option<Vec<Word>>, SyntaxError> {
        let mut words = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some('\n') => {
                    self.skip_newline();
                    if !words.is_empty() {
                        break;
                    }
                }
                Some(';') => {
                    self.pos += 1;
                    if !words.is_empty() {
                        break;
                    }
                }
                Some('#') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.pos += 1;
                    }
                }
                Some('\\') if matches!(self.peek_at(1), Some('\n') | Some('\r')) => {
                    // A continuation between words.
                    self.pos += 1;
                    if !self.skip_newline() {
                        self.pos -= 1;
                        words.push(self.word()?);
                    }
                }
                Some(c) if c.is_whitespace() => self.pos += 1,
                Some(_) => words.push(self.word()?),
            }
        }
        Ok(if words.is_empty() { None } else { Some(words) })
    }

    /// Reads one word starting at the cursor (which is not whitespace, `#` or `;`).
    fn word(&mut self) -> Result<Word, SyntaxError> {
        let line = self.line;
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\'' => {
                    let start = self.line;
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => return Err(unterminated('\'', start)),
                            Some('\'') => {
                                self.pos += 1;
                                break;
                            }
                            Some('\n') => {
                                self.line += 1;
                                text.push('\n');
                                self.pos += 1;
                            }
                            Some(c) => {
                                text.push(c);
                                self.pos += 1;
                            }
                        }
                    }
                }
                '"' => {
                    let start = self.line;
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => return Err(unterminated('"', start)),
                            Some('"') => {
                                self.pos += 1;
                                break;
                            }
                            Some('\\') => {
                                self.pos += 1;
                                if !self.skip_newline() {
                                    match self.peek() {
                                        None => return Err(unterminated('"', start)),
                                        Some(c) => {
                                            text.push(c);
                                            self.pos += 1;
                                        }
                                    }
                                }
                            }
                            Some('\n') => {
                                self.line += 1;
                                text.push('\n');
                                self.pos += 1;
                            }
                            Some(c) => {
                                text.push(c);
                                self.pos += 1;
                            }
                        }
                    }
                }
                '\\' => {
                    self.pos += 1;
                    if !self.skip_newline() {
                        if let Some(c) = self.peek() {
                            text.push(c);
                            self.pos += 1;
                        }
                    }
                }
                '#' | ';' => break,
                c if c.is_whitespace() => break,
                c => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        Ok(Word { text, line })
    }
}

fn unterminated(quote: char, line: usize) -> SyntaxError {
    SyntaxError {
        line,
        msg: format!("unterminated {quote} quote (opened here)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, name, [(option, values, is_list)]) for compact comparisons.
    type Flat = Vec<(String, Option<String>, Vec<(String, Vec<String>, bool)>)>;

    fn flat(text: &str) -> Flat {
        parse(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .map(|s| {
                let opts = s
                    .options
                    .into_iter()
                    .map(|o| (o.name, o.values, o.is_list))
                    .collect();
                (s.kind, s.name, opts)
            })
            .collect()
    }

    /// The single value of option `x` in the only section.
    fn value(text: &str) -> String {
        let f = flat(&format!("config t 's'\n\toption x {text}\n"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].2.len(), 1, "{text:?}");
        assert_eq!(f[0].2[0].1.len(), 1);
        f[0].2[0].1[0].clone()
    }

    #[test]
    fn quoting_table() {
        let table: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("'single quoted'", "single quoted"),
            ("\"double quoted\"", "double quoted"),
            (r#"'no \escape'"#, r"no \escape"),
            (r#""a\"b\\c""#, r#"a"b\c"#),
            (r#"'a'"b"c"#, "abc"),
            (r#"'it'\''s'"#, "it's"),
            ("''", ""),
            ("'#not a comment'", "#not a comment"),
            ("value # comment", "value"),
            ("value#comment", "value"),
            ("'a b'   # trailing", "a b"),
            ("\"x;y\"", "x;y"),
            (r"un\ quoted", "un quoted"),
            ("'multi\nline'", "multi\nline"),
            ("\"cont\\\ninued\"", "continued"),
            ("'[::]:80'", "[::]:80"),
            ("\tcrlf\r", "crlf"),
        ];
        for (src, want) in table {
            assert_eq!(value(src), *want, "source {src:?}");
        }
    }

    #[test]
    fn sections_lists_and_comments() {
        let text = "# header comment\r\npackage gatecert\r\n\r\nconfig gatecert 'main'\r\n\toption log stderr # why\r\n\n  config certificate gw\n\tlist domain 'a.example'\n\tlist domain b.example\n\toption email x@y\n\toption email z@y\nconfig ca\n";
        let want: Flat = vec![
            (
                "gatecert".into(),
                Some("main".into()),
                vec![("log".into(), vec!["stderr".into()], false)],
            ),
            (
                "certificate".into(),
                Some("gw".into()),
                vec![
                    (
                        "domain".into(),
                        vec!["a.example".into(), "b.example".into()],
                        true,
                    ),
                    ("email".into(), vec!["z@y".into()], false),
                ],
            ),
            ("ca".into(), None, vec![]),
        ];
        assert_eq!(flat(text), want);
    }

    #[test]
    fn short_commands_semicolons_and_reopened_sections() {
        let text = "c t 'a'; o x 1; l y 2\nl y 3\nconfig t a\noption x 4\nlist z 5\n";
        let want: Flat = vec![(
            "t".into(),
            Some("a".into()),
            vec![
                ("x".into(), vec!["4".into()], false),
                ("y".into(), vec!["2".into(), "3".into()], true),
                ("z".into(), vec!["5".into()], true),
            ],
        )];
        assert_eq!(flat(text), want);
    }

    #[test]
    fn option_then_list_becomes_list() {
        let f = flat("config t\noption d one\nlist d two\n");
        assert_eq!(
            f[0].2,
            vec![("d".into(), vec!["one".into(), "two".into()], true)]
        );
    }

    #[test]
    fn line_numbers() {
        let s = parse("\n# c\nconfig t 'n'\n\n\toption a 'x\ny'\n\toption b z\n").unwrap();
        assert_eq!(s[0].line, 3);
        assert_eq!(s[0].options[0].line, 5);
        assert_eq!(s[0].options[1].line, 7);
        assert_eq!(s[0].label(), "n");
    }

    #[test]
    fn continuation_between_words() {
        let f = flat("config t n\noption x \\\n  value\n");
        assert_eq!(f[0].2[0].1, vec!["value".to_string()]);
    }

    #[test]
    fn errors_name_the_line() {
        let table: &[(&str, usize, &str)] = &[
            ("config t\noption x 'open\n\n", 2, "unterminated '"),
            ("config t\n\noption x \"open\\\"\n", 3, "unterminated \""),
            ("option x y\n", 1, "before the first 'config'"),
            ("config t\n\toption x\n", 2, "has no value"),
            ("config t\n\toption\n", 2, "missing argument"),
            ("config\n", 1, "missing argument"),
            (
                "config t\n\toption my-opt 1\n",
                2,
                "bad option name 'my-opt'",
            ),
            ("config my.type\n", 1, "bad section type"),
            ("config t 'bad name'\n", 1, "bad section name"),
            ("config t\n\toption x a b\n", 2, "unexpected 'b'"),
            ("config t n extra\n", 1, "unexpected 'extra'"),
            ("package a b\n", 1, "unexpected 'b'"),
            ("config t\n\tvalue x 1\n", 2, "unknown command 'value'"),
            (
                "config t n\nconfig u n\n",
                2,
                "declared as type 't' on line 1",
            ),
        ];
        for (text, line, needle) in table {
            let err = parse(text).expect_err(text);
            assert_eq!(err.line, *line, "{text:?}: {err}");
            assert!(err.msg.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("# nothing\n\n   \t\n;;\n").unwrap(), vec![]);
    }
}
