//! The `enabled_plugins` file: one Erlang term, a list of atoms ended by a dot, e.g.
//! `[rabbitmq_management,rabbitmq_prometheus].` (what `rabbitmq-plugins enable` writes).

/// Plugins whose features warren has built in: listing them changes nothing, leaving
/// them out turns nothing off.
pub const BUILT_IN_PLUGINS: [&str; 4] = [
    "rabbitmq_management",
    "rabbitmq_management_agent",
    "rabbitmq_web_dispatch",
    "rabbitmq_prometheus",
];

/// Plugins warren implements that are off until enabled, as in RabbitMQ.
pub const OPTIONAL_PLUGINS: [&str; 4] = [
    "rabbitmq_consistent_hash_exchange",
    "rabbitmq_delayed_message_exchange",
    "rabbitmq_auth_mechanism_ssl",
    "rabbitmq_event_exchange",
];

/// An enabled_plugins text that is not a list of atoms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PluginsError {
    pub line: usize,
    pub reason: String,
}

struct Scanner<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Scanner<'a> {
    /// Skips blanks, line ends and `%` comments.
    fn skip(&mut self) {
        loop {
            let trimmed = self.rest.trim_start_matches(|c: char| {
                if c == '\n' {
                    self.line += 1;
                }
                c.is_whitespace()
            });
            self.rest = trimmed;
            match self.rest.strip_prefix('%') {
                Some(comment) => self.rest = comment.find('\n').map_or("", |at| &comment[at..]),
                None => return,
            }
        }
    }

    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, PluginsError> {
        Err(PluginsError {
            line: self.line,
            reason: reason.into(),
        })
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), PluginsError> {
        self.skip();
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                Ok(())
            }
            None => self.fail(format!("expected {what}, found {}", self.found())),
        }
    }

    fn found(&self) -> String {
        match self.rest.chars().next() {
            Some(c) => format!("{c:?}"),
            None => "the end of the file".into(),
        }
    }

    /// An atom: `name` (a lowercase letter, then letters, digits, `_`, `@`) or
    /// `'quoted'`.
    fn atom(&mut self) -> Result<String, PluginsError> {
        self.skip();
        if let Some(quoted) = self.rest.strip_prefix('\'') {
            let Some(end) = quoted
                .find(['\'', '\n'])
                .filter(|at| quoted[*at..].starts_with('\''))
            else {
                return self.fail("unterminated quoted atom");
            };
            self.rest = &quoted[end + 1..];
            return Ok(quoted[..end].to_string());
        }
        if !self.rest.starts_with(|c: char| c.is_ascii_lowercase()) {
            return self.fail(format!("expected a plugin name, found {}", self.found()));
        }
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '@'))
            .unwrap_or(self.rest.len());
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(name.to_string())
    }
}

/// The enabled_plugins text after a runtime switch: the names of `old` that are not
/// optional plugins, plus the optional plugins `enabled` now, sorted, as
/// `rabbitmq-plugins` writes the file (`[a,b].`).
pub fn render_enabled_plugins(old: &[String], enabled: &[String]) -> String {
    let mut names: Vec<&str> = old
        .iter()
        .map(String::as_str)
        .filter(|n| !OPTIONAL_PLUGINS.contains(n))
        .chain(enabled.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    format!("[{}].\n", names.join(","))
}

/// The plugin names of an enabled_plugins file, in order.
pub fn parse_enabled_plugins(text: &str) -> Result<Vec<String>, PluginsError> {
    let mut s = Scanner {
        rest: text,
        line: 1,
    };
    s.expect('[', "`[`")?;
    let mut names = Vec::new();
    s.skip();
    if let Some(r) = s.rest.strip_prefix(']') {
        s.rest = r;
    } else {
        loop {
            names.push(s.atom()?);
            s.skip();
            if let Some(r) = s.rest.strip_prefix(',') {
                s.rest = r;
            } else if let Some(r) = s.rest.strip_prefix(']') {
                s.rest = r;
                break;
            } else {
                return s.fail(format!("expected `,` or `]`, found {}", s.found()));
            }
        }
    }
    s.expect('.', "`.` after the list")?;
    s.skip();
    if !s.rest.is_empty() {
        return s.fail(format!("unexpected {} after the list", s.found()));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_atoms() {
        assert_eq!(
            parse_enabled_plugins("[rabbitmq_management,rabbitmq_prometheus].\n"),
            Ok(vec![
                "rabbitmq_management".to_string(),
                "rabbitmq_prometheus".to_string()
            ])
        );
        assert_eq!(parse_enabled_plugins("[]."), Ok(vec![]));
        assert_eq!(
            parse_enabled_plugins("% comment\n[ 'rabbitmq_shovel' ,\n  rabbitmq_mqtt ] .\n\n"),
            Ok(vec![
                "rabbitmq_shovel".to_string(),
                "rabbitmq_mqtt".to_string()
            ])
        );
    }

    #[test]
    fn a_switch_keeps_the_other_names_and_sorts() {
        let old = vec![
            "rabbitmq_management".to_string(),
            "rabbitmq_consistent_hash_exchange".to_string(),
            "rabbitmq_shovel".to_string(),
        ];
        assert_eq!(
            render_enabled_plugins(&old, &["rabbitmq_event_exchange".to_string()]),
            "[rabbitmq_event_exchange,rabbitmq_management,rabbitmq_shovel].\n"
        );
        assert_eq!(render_enabled_plugins(&[], &[]), "[].\n");
        let text = render_enabled_plugins(&old, &old);
        assert_eq!(parse_enabled_plugins(&text).map(|l| l.len()), Ok(3));
    }

    #[test]
    fn malformed_lists_name_the_line() {
        let e = parse_enabled_plugins("[a,\nb").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_enabled_plugins("[a,b]").is_err());
        assert!(parse_enabled_plugins("[a,]. ").is_err());
        assert!(parse_enabled_plugins("[Foo].").is_err());
        assert!(parse_enabled_plugins("['a].").is_err());
        assert!(parse_enabled_plugins("[a]. [b].").is_err());
        assert!(parse_enabled_plugins("").is_err());
    }
}
