//! RabbitMQ's own configuration formats, read the way RabbitMQ 3.10 reads them: the
//! `rabbitmq.conf` syntax (cuttlefish's `key = value` lines, [`parse`]), its keys mapped
//! to what warren can act on ([`settings`]), and the `enabled_plugins` file
//! ([`parse_enabled_plugins`]). Pure: text in, values out; reading files, environment
//! variables and precedence belong to the binary.
//!
//! The syntax, as cuttlefish 3.0.1 (RabbitMQ 3.10.8) accepts it, line by line:
//! - empty lines, lines of spaces and tabs, and comments (`#` after optional blanks);
//! - `key = value`: blanks around `key` and `=` allowed; the key is words of
//!   `[A-Za-z0-9_-]` (or `\.`, an escaped dot) joined by `.`; the value is everything up
//!   to the end of the line or the first `#` (which starts a comment), less the blanks
//!   before either; it may not be empty and may hold `=` and quotes (no unquoting:
//!   `'a'` is three characters);
//! - `include PATH` (cuttlefish's include directive).
//!
//! Anything else stops the parse at that line, which RabbitMQ reports as
//! `Syntax error in FILE after line N column 1, parsing incomplete`.

mod keys;
mod plugins;
mod settings;

pub use keys::{is_rabbitmq_key, RABBITMQ_KEYS_VERSION};
pub use plugins::{
    parse_enabled_plugins, render_enabled_plugins, PluginsError, BUILT_IN_PLUGINS, OPTIONAL_PLUGINS,
};
pub use settings::{
    settings, ConfProblem, DiskFreeLimit, Listener, MemoryWatermark, Permissions, Settings,
    SettingsReport, SslListener,
};

/// One line of a rabbitmq.conf that says something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfEntry {
    /// The dotted key (an escaped dot `\.` is kept as a plain `.`), or the path of an
    /// `include` directive.
    pub key: String,
    /// The value as written, without the blanks around it.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `key = value`.
    Setting,
    /// `include PATH`: `key` holds the path, `value` is empty.
    Include,
}

/// Where parsing stopped: the line that is not a setting, comment, blank or include.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error after line {line} column 1, parsing incomplete ({reason})")]
pub struct ConfSyntaxError {
    /// 1-based line number of the offending line (RabbitMQ's "after line N column 1").
    pub line: usize,
    /// What warren found wrong there (RabbitMQ says nothing more than the position).
    pub reason: String,
}

impl ConfSyntaxError {
    /// RabbitMQ's wording, naming the file: `Syntax error in FILE after line N column 1,
    /// parsing incomplete`.
    pub fn rabbitmq_text(&self, file: &str) -> String {
        format!(
            "Syntax error in {file} after line {} column 1, parsing incomplete",
            self.line
        )
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Parses rabbitmq.conf text. Errors name the first line that is not valid.
pub fn parse(text: &str) -> Result<Vec<ConfEntry>, ConfSyntaxError> {
    let mut entries = Vec::new();
    let mut rest = text;
    let mut line = 0;
    while !rest.is_empty() {
        line += 1;
        // A line ends at "\n" (an "\r" right before it belongs to the line end); the
        // last one may end at the end of the text.
        let (raw, terminated, next) = match rest.find('\n') {
            Some(at) => (&rest[..at], true, &rest[at + 1..]),
            None => (rest, false, ""),
        };
        rest = next;
        let content = if terminated {
            raw.strip_suffix('\r').unwrap_or(raw)
        } else {
            raw
        };
        if let Some(entry) =
            parse_line(content, terminated).map_err(|reason| ConfSyntaxError { line, reason })?
        {
            entries.push(ConfEntry { line, ..entry });
        }
    }
    Ok(entries)
}

/// [`parse`] for bytes as read from a file: text that is not UTF-8 is a syntax error on
/// the line where it stops being UTF-8.
pub fn parse_utf8(bytes: &[u8]) -> Result<Vec<ConfEntry>, ConfSyntaxError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = 1 + good.iter().filter(|b| **b == b'\n').count();
            // The lines before it must be valid too; report the first problem.
            let before = std::str::from_utf8(good).unwrap_or_default();
            let upto = before.rfind('\n').map_or("", |at| &before[..=at]);
            parse(upto)?;
            Err(ConfSyntaxError {
                line,
                reason: "the line is not valid UTF-8".into(),
            })
        }
    }
}

/// One line without its line end; `Ok(None)` for blanks and comments.
fn parse_line(content: &str, terminated: bool) -> Result<Option<ConfEntry>, String> {
    let body = content.trim_start_matches(is_blank);
    if body.is_empty() || body.starts_with('#') {
        return Ok(None);
    }
    match parse_setting(body, terminated) {
        Ok(entry) => Ok(Some(entry)),
        Err(reason) => match parse_include(body) {
            Some(entry) => Ok(Some(entry)),
            None => Err(reason),
        },
    }
}

/// `key ws* = ws* value ws* comment?` with leading blanks already gone.
fn parse_setting(body: &str, terminated: bool) -> Result<ConfEntry, String> {
    let (key, after_key) = parse_key(body)?;
    let after_key = after_key.trim_start_matches(is_blank);
    let Some(after_eq) = after_key.strip_prefix('=') else {
        return Err(match after_key.chars().next() {
            None => format!("`{key}` has no `= value`"),
            Some(c) => format!("expected `=` after the key `{key}`, found {c:?}"),
        });
    };
    let value_text = after_eq.trim_start_matches(is_blank);
    // A `#` starts a comment wherever it is; the value ends before the blanks ahead of
    // it, or of the line end (at the very end of the text, cuttlefish keeps them).
    let value = match value_text.find('#') {
        Some(at) => value_text[..at].trim_end_matches(is_blank),
        None if terminated => value_text.trim_end_matches(is_blank),
        None => value_text,
    };
    if value.is_empty() {
        return Err(format!("`{key}` has no value"));
    }
    Ok(ConfEntry {
        key,
        value: value.to_string(),
        line: 0,
        kind: EntryKind::Setting,
    })
}

/// A dotted key at the start of `text`; the key and what follows it.
fn parse_key(text: &str) -> Result<(String, &str), String> {
    let mut key = String::new();
    let mut rest = text;
    loop {
        let word_start = key.len();
        loop {
            if let Some(r) = rest.strip_prefix("\\.") {
                key.push('.');
                rest = r;
            } else if let Some(c) = rest.chars().next().filter(|c| is_word_char(*c)) {
                key.push(c);
                rest = &rest[c.len_utf8()..];
            } else {
                break;
            }
        }
        if key.len() == word_start {
            return Err(match rest.chars().next() {
                Some(c) if word_start == 0 => format!("a key cannot start with {c:?}"),
                Some(c) => format!("invalid character {c:?} in the key"),
                None => "the key ends with `.`".into(),
            });
        }
        // Another word follows a dot; a dot with no word after it ends the key (and the
        // `=` check then fails on the dot).
        match rest.strip_prefix('.') {
            Some(r) if r.starts_with("\\.") || r.chars().next().is_some_and(is_word_char) => {
                key.push('.');
                rest = r;
            }
            _ => return Ok((key, rest)),
        }
    }
}

/// `include PATH comment?` with leading blanks already gone.
fn parse_include(body: &str) -> Option<ConfEntry> {
    let after = body.strip_prefix("include")?;
    let path_start = after.trim_start_matches(is_blank);
    if path_start.len() == after.len() {
        return None;
    }
    let end = path_start
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_./*".contains(c)))
        .unwrap_or(path_start.len());
    let (path, tail) = path_start.split_at(end);
    let tail_ok = tail.is_empty() || tail.trim_start_matches(is_blank).starts_with('#');
    (!path.is_empty() && tail_ok).then(|| ConfEntry {
        key: path.to_string(),
        value: String::new(),
        line: 0,
        kind: EntryKind::Include,
    })
}

#[cfg(test)]
mod tests;
