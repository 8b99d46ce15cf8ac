//! The UCI lexer: text → raw sections, knowing nothing of what the options mean.
//!
//! A port of libuci's file parser (`file.c` in openwrt/uci: `uci_parse_line`, `next_arg`,
//! `parse_str`, `parse_backslash`, `uci_getln`), in the strict mode that `uci_alloc_context`
//! selects and so that `uci show` and LuCI use. It works like libuci, in place on a line buffer,
//! so that gatecert never reads something other than what `uci show` displays:
//!
//! - commands `package NAME` (ignored), `config TYPE ['NAME']`, `option NAME VALUE`,
//!   `list NAME VALUE`, and the one-letter forms `p`, `c`, `o`, `l`; the command word runs to
//!   the next space or tab, so a line of only `;` or `\` is an invalid command;
//! - words are unquoted, `'single quoted'` (no escapes inside) or `"double quoted"` (a backslash
//!   takes the next character literally); adjacent pieces join as in the shell (`'a'"b"c`);
//! - quoted values may span lines; a backslash at the end of a line pulls the next line in at
//!   that point (so an indented next line ends the word there);
//! - `#` outside quotes ends the line; `;` separates commands, except right after an unquoted
//!   word, where libuci overwrites it and drops the rest of the line;
//! - an `option` with an empty value (`option x ''` or `option x`) changes nothing;
//! - type names may hold any printable ASCII; section and option names only `[A-Za-z0-9_]`;
//! - anonymous sections get libuci's generated name `cfgNNHHHH` (see [`Section::id`]).
//!
//! Like libuci, a second `option` with the same name replaces the first, `list` accumulates
//! (turning an earlier `option` of that name into the list's first item), and a second
//! `config` with an existing name reopens that section (a different type is an error).
//! Extra words after a command are an error (libuci's `UCI_FLAG_STRICT`).

/// One `config TYPE ['NAME']` section with its options, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The section type (`certificate`).
    pub kind: String,
    /// The section name (`gateway`); `None` for an anonymous section.
    pub name: Option<String>,
    /// The name libuci gives the section: `name`, or for an anonymous section
    /// `cfg` + a two-digit hex counter + four hex digits of a hash of the type, as
    /// `uci_fixup_section` in libuci's `list.c` makes them (what `uci show -X` prints).
    pub id: String,
    /// The position among sections of the same type: `@kind[index]` in uci's syntax.
    pub index: usize,
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

    /// How `uci show` and messages refer to the section: its name, or `@kind[index]` when
    /// anonymous.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("@{}[{}]", self.kind, self.index),
        }
    }
}

/// One `option NAME VALUE` (one value) or the accumulated `list NAME VALUE` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    /// The option name.
    pub name: String,
    /// The value(s); exactly one for an `option`. A list item may be empty (`''`).
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

/// Resolves a uci section reference: a plain name, or `@type[index]` (negative counts from
/// the end), as libuci's `uci_lookup_ext_section`. Returns the index into `sections`.
pub fn lookup(sections: &[Section], reference: &str) -> Option<usize> {
    let Some(rest) = reference.strip_prefix('@') else {
        return sections.iter().position(|s| s.id == reference);
    };
    let (kind, idx) = rest.strip_suffix(']')?.split_once('[')?;
    let idx: i64 = idx.parse().ok()?;
    let of_kind: Vec<usize> = (0..sections.len())
        .filter(|&i| kind.is_empty() || sections[i].kind == kind)
        .collect();
    let idx = if idx < 0 {
        idx + of_kind.len() as i64
    } else {
        idx
    };
    usize::try_from(idx)
        .ok()
        .and_then(|i| of_kind.get(i).copied())
}

/// Parses UCI text into sections, in file order.
pub fn parse(text: &str) -> Result<Vec<Section>, SyntaxError> {
    let mut p = Parser {
        src: text.as_bytes(),
        src_pos: 0,
        buf: Vec::new(),
        pos: 0,
        line: 0,
        cmd_line: 0,
        sections: Vec::new(),
        current: None,
        n_section: 0,
    };
    while p.src_pos < p.src.len() {
        p.pos = 0;
        p.getln(0);
        if p.at(0) != 0 {
            p.parse_line()?;
        }
    }
    Ok(p.sections)
}

/// libuci's parse context: the current logical line in `buf` (NUL = end, as in C), edited
/// in place while words are read out of it.
struct Parser<'a> {
    src: &'a [u8],
    src_pos: usize,
    buf: Vec<u8>,
    pos: usize,
    line: usize,
    /// The line the current command started on.
    cmd_line: usize,
    sections: Vec<Section>,
    /// Index of the section that `option`/`list` lines add to.
    current: Option<usize>,
    /// libuci's `package->n_section`, for anonymous names.
    n_section: usize,
}

/// C's `isspace` in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// libuci's `uci_validate_str(str, name=true)`: `[A-Za-z0-9_]+`.
fn valid_name(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// libuci's `uci_validate_type`: printable ASCII without spaces.
fn valid_type(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|c| (33..=126).contains(c))
}

/// libuci's `djbhash`.
fn djbhash(mut hash: u32, s: &str) -> u32 {
    if hash == !0 {
        hash = 5381;
    }
    for b in s.bytes() {
        hash = (hash << 5).wrapping_add(hash).wrapping_add(u32::from(b));
    }
    hash & 0x7FFF_FFFF
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        self.buf.get(i).copied().unwrap_or(0)
    }

    fn cur(&self) -> u8 {
        self.at(self.pos)
    }

    fn set(&mut self, i: usize, c: u8) {
        if i >= self.buf.len() {
            self.buf.resize(i + 1, 0);
        }
        self.buf[i] = c;
    }

    /// The NUL-terminated string at `i`.
    fn str_at(&self, i: usize) -> &[u8] {
        let rest = self.buf.get(i..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn text_at(&self, i: usize) -> String {
        String::from_utf8_lossy(self.str_at(i)).into_owned()
    }

    fn error(&self, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line.max(1),
            msg: msg.into(),
        }
    }

    /// `uci_getln`: replaces the buffer from `offset` on with the next input line.
    fn getln(&mut self, offset: usize) {
        self.buf.truncate(offset);
        let rest = &self.src[self.src_pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .map_or(rest.len(), |i| i + 1);
        self.buf.extend_from_slice(&rest[..n]);
        self.src_pos += n;
        if self.buf.last() == Some(&b'\n') {
            self.line += 1;
        } else if n > 0 {
            // The last line without a newline still counts for messages.
            self.line += 1;
        }
    }

    /// `parse_backslash`: false when the backslash ended the line (the next line is pulled in).
    fn backslash(&mut self) -> bool {
        self.pos += 1;
        let c = self.cur();
        if c == 0
            || c == b'\n'
            || (c == b'\r' && self.at(self.pos + 1) == b'\n' && self.at(self.pos + 2) == 0)
        {
            self.getln(self.pos);
            return false;
        }
        true
    }

    fn skip_whitespace(&mut self) {
        while self.cur() != 0 && is_space(self.cur()) {
            self.pos += 1;
        }
    }

    fn addc(&mut self, target: &mut usize) {
        let c = self.cur();
        self.set(*target, c);
        *target += 1;
        self.pos += 1;
    }

    fn double_quote(&mut self, target: &mut usize) -> Result<(), SyntaxError> {
        let opened = self.line;
        self.pos += 1;
        loop {
            match self.cur() {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos);
                    if self.cur() == 0 {
                        return Err(unterminated('"', opened));
                    }
                }
                b'\\' => {
                    if self.backslash() {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    fn single_quote(&mut self, target: &mut usize) -> Result<(), SyntaxError> {
        let opened = self.line;
        self.pos += 1;
        loop {
            match self.cur() {
                b'\'' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.getln(self.pos);
                    if self.cur() == 0 {
                        return Err(unterminated('\'', opened));
                    }
                }
                _ => self.addc(target),
            }
        }
    }

    /// `parse_str`: one word, written in place from `target`.
    fn word(&mut self, target: &mut usize) -> Result<(), SyntaxError> {
        let mut next = true;
        loop {
            match self.cur() {
                b'\'' => self.single_quote(target)?,
                b'"' => self.double_quote(target)?,
                b'#' => {
                    let p = self.pos;
                    self.set(p, 0);
                    break;
                }
                0 => break,
                b';' => {
                    next = false;
                    break;
                }
                b'\\' => {
                    if self.backslash() {
                        self.addc(target);
                    }
                }
                _ => self.addc(target),
            }
            if self.cur() == 0 || is_space(self.cur()) {
                break;
            }
        }
        if self.cur() != 0 && next {
            self.pos += 1;
        }
        let t = *target;
        self.set(t, 0);
        Ok(())
    }

    /// `next_arg`: the offset of the next argument (empty when there is none).
    fn next_arg(&mut self, required: bool, name: bool) -> Result<usize, SyntaxError> {
        self.skip_whitespace();
        let val = self.pos;
        let mut ptr = val;
        if self.cur() == b';' {
            let p = self.pos;
            self.set(p, 0);
            self.pos += 1;
        } else {
            self.word(&mut ptr)?;
        }
        if self.at(val) == 0 {
            if required {
                return Err(self.error("insufficient arguments"));
            }
            return Ok(val);
        }
        if name && !valid_name(self.str_at(val)) {
            return Err(self.error(format!(
                "invalid character in name field '{}': use only letters, digits and '_'",
                self.text_at(val)
            )));
        }
        Ok(val)
    }

    /// `assert_eol` in strict mode.
    fn assert_eol(&mut self, form: &str) -> Result<(), SyntaxError> {
        self.skip_whitespace();
        let v = self.next_arg(false, false)?;
        if self.at(v) != 0 {
            return Err(self.error(format!(
                "too many arguments: unexpected '{}' after `{form}` (quote values that contain spaces)",
                self.text_at(v)
            )));
        }
        Ok(())
    }

    /// `uci_increase_pos` past the (NUL-terminated) command word.
    fn skip_command(&mut self, what: &str) -> Result<(), SyntaxError> {
        let add = self.str_at(self.pos).len() + 1;
        if self.pos + add > self.buf.len() {
            return Err(self.error(format!("{what} without name")));
        }
        self.pos += add;
        Ok(())
    }

    /// `uci_parse_line`: every command on the line.
    fn parse_line(&mut self) -> Result<(), SyntaxError> {
        self.skip_whitespace();
        loop {
            // strtok(cur, " \t"): skip spaces and tabs, cut the word at the next one.
            let mut i = self.pos;
            while matches!(self.at(i), b' ' | b'\t') {
                i += 1;
            }
            if self.at(i) == 0 {
                return Ok(());
            }
            let start = i;
            while !matches!(self.at(i), 0 | b' ' | b'\t') {
                i += 1;
            }
            if self.at(i) != 0 {
                self.set(i, 0);
            }
            let word = self.str_at(start).to_vec();
            self.cmd_line = self.line.max(1);
            let rest = &word[1..];
            match word[0] {
                b'#' => return Ok(()),
                b'p' if rest.is_empty() || rest == b"ackage" => self.package()?,
                b'c' if rest.is_empty() || rest == b"onfig" => self.config()?,
                b'o' if rest.is_empty() || rest == b"ption" => self.option(false)?,
                b'l' if rest.is_empty() || rest == b"ist" => self.option(true)?,
                _ => {
                    let shown = String::from_utf8_lossy(&word).trim_end().to_string();
                    return Err(self.error(if shown.is_empty() {
                        "invalid command: a `;` ends the line, and libuci reads the line end as \
                         the next command; remove the `;`"
                            .to_string()
                    } else {
                        format!("invalid command '{shown}' (expected config, option or list)")
                    }));
                }
            }
        }
    }

    fn package(&mut self) -> Result<(), SyntaxError> {
        self.skip_command("package")?;
        self.next_arg(true, true)?;
        self.assert_eol("package NAME")
    }

    fn config(&mut self) -> Result<(), SyntaxError> {
        self.skip_command("config")?;
        let t = self.next_arg(true, false)?;
        if !valid_type(self.str_at(t)) {
            return Err(self.error(format!(
                "invalid character in type field '{}'",
                self.text_at(t)
            )));
        }
        let n = self.next_arg(false, true)?;
        self.assert_eol("config TYPE ['NAME']")?;
        let kind = self.text_at(t);
        let name = Some(self.text_at(n)).filter(|n| !n.is_empty());
        let line = self.cmd_line;
        if let Some(name) = &name {
            if let Some(i) = self.sections.iter().position(|s| s.id == *name) {
                if self.sections[i].kind != kind {
                    return Err(self.error(format!(
                        "section of different type overwrites prior section with same name: \
                         '{name}' was declared as type '{}' on line {}, now '{kind}'",
                        self.sections[i].kind, self.sections[i].line
                    )));
                }
                self.current = Some(i);
                return Ok(());
            }
        }
        // uci_alloc_section counts every section; uci_fixup_section counts anonymous ones
        // once more, then names them after the counter and a hash of the type (the section has
        // no options yet when libuci names it).
        self.n_section += 1;
        let id = match &name {
            Some(n) => n.clone(),
            None => {
                self.n_section += 1;
                let hash = djbhash(!0, &kind);
                format!("cfg{:02x}{:04x}", self.n_section, hash % (1 << 16))
            }
        };
        let index = self.sections.iter().filter(|s| s.kind == kind).count();
        self.sections.push(Section {
            kind,
            name,
            id,
            index,
            line,
            options: Vec::new(),
        });
        self.current = Some(self.sections.len() - 1);
        Ok(())
    }

    fn option(&mut self, is_list: bool) -> Result<(), SyntaxError> {
        let Some(i) = self.current else {
            return Err(self.error("option/list command found before the first section"));
        };
        self.skip_command(if is_list { "list" } else { "option" })?;
        let n = self.next_arg(true, true)?;
        let v = self.next_arg(false, false)?;
        self.assert_eol(if is_list {
            "list NAME VALUE"
        } else {
            "option NAME VALUE"
        })?;
        let name = self.text_at(n);
        let value = self.text_at(v);
        // uci_set with an empty value during parsing is a no-op (the lookup is not
        // "complete"): `option x ''` and `option x` leave x as it was.
        if !is_list && value.is_empty() {
            return Ok(());
        }
        let line = self.cmd_line;
        add_option(&mut self.sections[i], name, value, is_list, line);
        Ok(())
    }
}

/// An unterminated quote, reported at the line that opened it (libuci: "EOF with
/// unterminated '").
fn unterminated(quote: char, line: usize) -> SyntaxError {
    SyntaxError {
        line: line.max(1),
        msg: format!(
            "unterminated {quote} quote (opened here; libuci: EOF with unterminated {quote})"
        ),
    }
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
        // `o x 1;` ends in an unquoted word right before `;`: libuci drops `l y 2`.
        let text = "c t 'a'; o x '1'; l y 2\nl y 3\nconfig t a\noption x 4\nlist z 5\n";
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
        assert_eq!(s[0].id, "n");
        assert_eq!(s[0].label(), "n");
    }

    #[test]
    fn continuation_joins_lines_in_place() {
        let f = flat("config t n\noption x va\\\nlue\n");
        assert_eq!(f[0].2[0].1, vec!["value".to_string()]);
    }

    /// `uci show -X`-like rendering: `id=type`, `id.option='value'`, lists as `'a' 'b'`.
    fn show(text: &str) -> Result<Vec<String>, (usize, String)> {
        let sections = parse(text).map_err(|e| (e.line, e.msg))?;
        let mut out = Vec::new();
        for s in sections {
            out.push(format!("{}={}", s.id, s.kind));
            for o in s.options {
                let vals: Vec<String> = o.values.iter().map(|v| format!("'{v}'")).collect();
                out.push(format!("{}.{}={}", s.id, o.name, vals.join(" ")));
            }
        }
        Ok(out)
    }

    /// What libuci (strict mode, as `uci show` and LuCI load files) makes of each input,
    /// worked out from openwrt/uci's file.c/list.c/util.c; the reason is next to each case.
    #[test]
    fn libuci_table() {
        type Want = Result<&'static [&'static str], (usize, &'static str)>;
        let table: &[(&str, Want, &str)] = &[
            (
                "config certificate\n\tlist domain a.lan\n",
                Ok(&["cfg020828=certificate", "cfg020828.domain='a.lan'"]),
                "`uci add`: anonymous; uci_alloc_section and uci_fixup_section both count, \
                 hash of the type only",
            ),
            (
                "config ca\nconfig est 'e'\nconfig ca\n",
                Ok(&["cfg027769=ca", "e=est", "cfg057769=ca"]),
                "a named section counts once, an anonymous one twice",
            ),
            (
                "config my-type.v2 'n'\n",
                Ok(&["n=my-type.v2"]),
                "uci_validate_type accepts any printable ASCII in a type",
            ),
            (
                "config t 'a-b'\n",
                Err((1, "invalid character in name field 'a-b'")),
                "section names are [A-Za-z0-9_] (uci_validate_name)",
            ),
            (
                "config t 'n'\n\toption my-opt 1\n",
                Err((2, "invalid character in name field 'my-opt'")),
                "option names too",
            ),
            (
                "config t 'n'\n\toption enabled\n",
                Ok(&["n=t"]),
                "no value: uci_set with \"\" during parsing is a no-op (unset)",
            ),
            (
                "config t 'n'\n\toption x 'a'\n\toption x ''\n",
                Ok(&["n=t", "n.x='a'"]),
                "an empty value does not delete an earlier one while parsing",
            ),
            (
                "config t 'n'\n\tlist x ''\n",
                Ok(&["n=t", "n.x=''"]),
                "uci_add_list keeps an empty item",
            ),
            (
                "config t 'n'\n\toption a 1;option b 2\n",
                Ok(&["n=t", "n.a='1'"]),
                "`;` right after an unquoted word is overwritten by its NUL: rest of line dropped",
            ),
            (
                "config t 'n'\n\toption a '1';option b 2\n",
                Ok(&["n=t", "n.a='1'", "n.b='2'"]),
                "after a quoted word `;` separates commands",
            ),
            (
                "config t 'n'\n\toption a 1 ; option b 2\n",
                Ok(&["n=t", "n.a='1'", "n.b='2'"]),
                "after whitespace too",
            ),
            (
                "config t 'n'\n\toption a 'x';\n",
                Err((2, "invalid command")),
                "after a `;` that ends the line, strtok(\" \\t\") returns the newline as a command",
            ),
            (
                "config t 'n'\n\toption a x;\n",
                Ok(&["n=t", "n.a='x'"]),
                "but right after an unquoted word the `;` became the word's NUL: nothing follows",
            ),
            (
                "config t 'n'\n;\n",
                Err((2, "invalid command ';'")),
                "strtok(\" \\t\") makes `;` the command word",
            ),
            (
                "config t 'n'\n\\\n\toption a 1\n",
                Err((2, "invalid command '\\'")),
                "a line of only a backslash: the command word is `\\`",
            ),
            (
                "config t 'n'\n\toption a foo\\\n\tbar\n",
                Err((3, "too many arguments: unexpected 'bar'")),
                "backslash-newline pulls the next line in; its indent ends the word",
            ),
            (
                "config t 'n'\n\toption a foo\\\nbar\n",
                Ok(&["n=t", "n.a='foobar'"]),
                "without indent the word continues",
            ),
            (
                "config t 'n'\n\toption a \\\n\tfoo\n",
                Err((3, "too many arguments: unexpected 'foo'")),
                "a continuation as the value is an empty word, `foo` one too many",
            ),
            (
                "config t 'n'\n\toption a \"x\\\n  y\"\n",
                Ok(&["n=t", "n.a='x  y'"]),
                "inside double quotes backslash-newline joins the lines",
            ),
            (
                "'config' t\n",
                Err((1, "invalid command ''config''")),
                "the command word is not unquoted",
            ),
            (
                "config t 'n'\n\toption a 'x'#c\n\toption b y#z\n",
                Ok(&["n=t", "n.a='x'", "n.b='y'"]),
                "`#` ends the line, also inside a word",
            ),
            (
                "config t 'n'\nconfig u 'n'\n",
                Err((2, "section of different type overwrites prior section")),
                "strict mode",
            ),
            (
                "config t 'n'\n\toption x a b\n",
                Err((2, "too many arguments: unexpected 'b'")),
                "strict mode",
            ),
            (
                "option x y\n",
                Err((1, "before the first section")),
                "option/list command found before the first section",
            ),
            (
                "config t 'n'\n\tlist x 1\n\toption x 2\n",
                Ok(&["n=t", "n.x='2'"]),
                "an option replaces a list",
            ),
        ];
        for (text, want, why) in table {
            let got = show(text);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{text:?} ({why})"),
                (Err((line, needle)), Err((gl, gm))) => {
                    assert_eq!(gl, line, "{text:?} ({why}): {gm}");
                    assert!(gm.contains(needle), "{text:?} ({why}): {gm}");
                }
                _ => panic!("{text:?} ({why}): want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn section_references() {
        let s = parse(
            "config certificate 'a'\nconfig ca\nconfig certificate\nconfig certificate 'c'\n",
        )
        .unwrap();
        assert_eq!(lookup(&s, "@certificate[0]"), Some(0));
        assert_eq!(lookup(&s, "@certificate[1]"), Some(2));
        assert_eq!(lookup(&s, "@certificate[-1]"), Some(3));
        assert_eq!(lookup(&s, "@certificate[3]"), None);
        assert_eq!(lookup(&s, "@ca[0]"), Some(1));
        assert_eq!(lookup(&s, "c"), Some(3));
        assert_eq!(lookup(&s, &s[2].id.clone()), Some(2));
        assert_eq!(lookup(&s, "@certificate[x]"), None);
        assert_eq!(s[2].label(), "@certificate[1]");
    }

    #[test]
    fn errors_name_the_line() {
        let table: &[(&str, usize, &str)] = &[
            ("config t\noption x 'open\n\n", 2, "unterminated '"),
            ("config t\n\noption x \"open\\\"\n", 3, "unterminated \""),
            ("config t\n\toption \n", 2, "insufficient arguments"),
            ("config t\n\toption\n", 2, "invalid command 'option'"),
            ("config\n", 1, "invalid command 'config'"),
            ("config \n", 1, "insufficient arguments"),
            (
                "config t 'bad name'\n",
                1,
                "invalid character in name field",
            ),
            ("config t n extra\n", 1, "unexpected 'extra'"),
            ("package a b\n", 1, "unexpected 'b'"),
            ("config t\n\tvalue x 1\n", 2, "invalid command 'value'"),
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
        assert_eq!(parse("# nothing\n\n   \t\n  # x ; y\n").unwrap(), vec![]);
    }
}
