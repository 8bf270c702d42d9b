//! What rabbitmqctl, rabbitmq-diagnostics and rabbitmq-plugins share: their command line
//! (global options anywhere, `--opt value` or `--opt=value`), their errors and exit codes,
//! and the informational lines `-q` silences.

use std::cell::RefCell;

use serde_json::Value;

use super::{
    api::{self, Api},
    exit,
};
use crate::ctl::http::{Reply, SendError};

/// An option: long name, short letter, whether it takes a value.
pub(crate) type OptSpec = (&'static str, Option<char>, bool);

/// Options every command of the three tools takes.
pub(crate) const GLOBAL_OPTIONS: &[OptSpec] = &[
    ("node", Some('n'), true),
    ("quiet", Some('q'), false),
    ("silent", Some('s'), false),
    ("timeout", Some('t'), true),
    ("formatter", None, true),
    ("longnames", Some('l'), false),
    ("erlang-cookie", None, true),
    ("help", Some('?'), false),
];

/// A parsed command line.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Parsed {
    /// The arguments as given, for error messages.
    pub(crate) raw: Vec<String>,
    /// Options (long names) and their values, in order.
    pub(crate) options: Vec<(String, Option<String>)>,
    /// The command name and its arguments.
    pub(crate) positional: Vec<String>,
    /// Options that were not recognised, or lack their value.
    pub(crate) invalid: Vec<String>,
}

impl Parsed {
    pub(crate) fn value(&self, long: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == long)
            .and_then(|(_, v)| v.as_deref())
    }

    pub(crate) fn flag(&self, long: &str) -> bool {
        self.options.iter().any(|(k, _)| k == long)
    }

    pub(crate) fn command(&self) -> Option<&str> {
        self.positional.first().map(String::as_str)
    }

    /// The command's arguments (after its name).
    pub(crate) fn args(&self) -> &[String] {
        self.positional.get(1..).unwrap_or_default()
    }

    pub(crate) fn node(&self) -> Option<&str> {
        self.value("node")
    }

    pub(crate) fn vhost(&self) -> &str {
        self.value("vhost").unwrap_or("/")
    }

    /// `-q`, `-s` and machine formats silence informational lines.
    pub(crate) fn quiet(&self) -> bool {
        self.flag("quiet") || self.flag("silent") || self.formatter() != "table"
    }

    pub(crate) fn formatter(&self) -> &str {
        self.value("formatter").unwrap_or("table")
    }

    /// `--timeout` in seconds (RabbitMQ takes seconds on the command line).
    pub(crate) fn timeout(&self) -> Option<f64> {
        self.value("timeout").and_then(|t| t.parse::<f64>().ok())
    }
}

/// Splits `args` by the option table `specs`; unknown options are recorded, not fatal,
/// so that the error can name the command's usage.
pub(crate) fn parse(args: &[String], specs: &[OptSpec]) -> Parsed {
    let mut p = Parsed {
        raw: args.to_vec(),
        ..Parsed::default()
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (spec, inline) = if let Some(long) = arg.strip_prefix("--") {
            if long.is_empty() {
                p.positional.extend(args[i..].iter().cloned());
                break;
            }
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            (specs.iter().find(|s| s.0 == name), inline)
        } else if arg.len() > 1 && arg.starts_with('-') && !is_number(arg) {
            let mut chars = arg[1..].chars();
            let letter = chars.next();
            let rest: String = chars.collect();
            let spec = specs.iter().find(|s| s.1 == letter);
            let inline = (!rest.is_empty()).then_some(rest);
            (spec, inline)
        } else {
            p.positional.push(arg.clone());
            continue;
        };
        let Some(&(long, _, takes_value)) = spec else {
            p.invalid.push(arg.clone());
            continue;
        };
        if !takes_value {
            if inline.is_some() {
                p.invalid.push(arg.clone());
            } else {
                p.options.push((long.to_string(), None));
            }
            continue;
        }
        let value = inline.or_else(|| {
            let v = args.get(i).cloned();
            i += 1;
            v
        });
        match value {
            Some(v) => p.options.push((long.to_string(), Some(v))),
            None => p.invalid.push(arg.clone()),
        }
    }
    p
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// How a command failed; printed as RabbitMQ's CLI prints it, with its exit code.
#[derive(Debug, PartialEq)]
pub(crate) enum Failure {
    /// Argument validation: `Error (argument validation): ...`, the arguments and usage.
    Usage(u8, String),
    /// Options the command does not take.
    InvalidOptions(Vec<String>),
    /// `Error:` and the message on the next line.
    Error(u8, String),
    /// The message alone.
    Bare(u8, String),
    /// The broker's API does not answer.
    Unreachable(String),
}

impl Failure {
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Usage(code, _) | Failure::Error(code, _) | Failure::Bare(code, _) => *code,
            Failure::InvalidOptions(_) => exit::USAGE,
            Failure::Unreachable(_) => exit::UNAVAILABLE,
        }
    }

    /// The text for stderr. `usage` is the command's usage line.
    pub(crate) fn render(&self, p: &Parsed, node: &str, usage: &str) -> String {
        let usage_tail = |head: &str| {
            format!(
                "{head}\nArguments given:\n\t{}\n\n\x1b[1mUsage\x1b[0m\n\n{usage}\n",
                p.raw.join(" ")
            )
        };
        match self {
            Failure::Usage(_, msg) => usage_tail(&format!("Error (argument validation): {msg}")),
            Failure::InvalidOptions(opts) => {
                let list: String = opts.iter().map(|o| format!("{o} : \n")).collect();
                usage_tail(&format!(
                    "Error (argument validation): Invalid options for this command:\n{}",
                    list.trim_end_matches('\n')
                ))
            }
            Failure::Error(_, msg) => format!("Error:\n{msg}\n"),
            Failure::Bare(_, msg) => format!("{msg}\n"),
            Failure::Unreachable(detail) => unreachable_text(node, detail),
        }
    }
}

/// RabbitMQ's "unable to perform an operation on node" text, with what warren tried.
pub(crate) fn unreachable_text(node: &str, detail: &str) -> String {
    format!(
        "Error: unable to perform an operation on node '{node}'. Please see diagnostics information and suggestions below.

Most common reasons for this are:

 * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall issues)
 * CLI tool fails to authenticate with the server (e.g. due to CLI tool's Erlang cookie not matching that of the server)
 * Target node is not running

In addition to the diagnostics info below:

 * See the CLI, clustering and networking guides on https://rabbitmq.com/documentation.html to learn more
 * Consult server logs on node {node}
 * If target node is configured to use long node names, don't forget to use --longnames with CLI tools

DIAGNOSTICS
===========

attempted to contact: ['{node}']

{node}:
  * warren's CLI tools talk to the management HTTP API, not Erlang distribution
  * {detail}
  * suggestion: start the node, or set WARREN_CTL_HOST to its management API address (ADDR:PORT)

"
    )
}

/// The running command: its API, its command line, and informational lines held back
/// until the broker answers (RabbitMQ prints none when the node is down).
pub(crate) struct Ctx<'a> {
    pub(crate) api: Api,
    pub(crate) p: &'a Parsed,
    pending: RefCell<Vec<String>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(p: &'a Parsed) -> Ctx<'a> {
        Ctx {
            api: Api::for_node(p.node()),
            p,
            pending: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn node(&self) -> &str {
        &self.api.node
    }

    pub(crate) fn vhost(&self) -> &str {
        self.p.vhost()
    }

    /// An informational line, printed once the broker has answered (not with `-q`).
    pub(crate) fn info(&self, line: impl Into<String>) {
        if !self.p.quiet() {
            self.pending.borrow_mut().push(line.into());
        }
    }

    /// Prints the informational lines held back.
    pub(crate) fn flush(&self) {
        for line in self.pending.borrow_mut().drain(..) {
            println!("{line}");
        }
    }

    /// One request; any HTTP reply counts as the broker answering.
    pub(crate) fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[String],
    ) -> Result<Reply, Failure> {
        match self.api.send(method, path, body, extra) {
            Ok(reply) => {
                self.flush();
                if reply.status == 401 {
                    return Err(Failure::Error(
                        exit::NO_USER,
                        format!(
                            "The management API at {} refused user \"{}\": {}",
                            self.api.addr,
                            self.api.user,
                            api::reason(&reply)
                        ),
                    ));
                }
                Ok(reply)
            }
            Err(SendError::Unreachable(e)) => Err(Failure::Unreachable(e)),
            Err(SendError::Broken(e)) => Err(Failure::Error(exit::SOFTWARE, e)),
        }
    }

    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        self.request_with(method, path, body, &[])
    }

    /// A request that must succeed: its JSON, or `Error:` with the API's reason (70).
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let reply = self.request(method, path, body)?;
        if reply.status >= 400 {
            return Err(Failure::Error(exit::SOFTWARE, api::reason(&reply)));
        }
        Ok(api::json(&reply))
    }
}

/// Checks the number of command arguments.
pub(crate) fn arity(p: &Parsed, min: usize, max: usize) -> Result<(), Failure> {
    let n = p.args().len();
    if n < min {
        Err(Failure::Usage(exit::USAGE, "not enough arguments.".into()))
    } else if n > max {
        Err(Failure::Usage(exit::USAGE, "too many arguments.".into()))
    } else {
        Ok(())
    }
}

/// Checks that every option given is global or one of `allowed`.
pub(crate) fn allowed_options(p: &Parsed, allowed: &[&str]) -> Result<(), Failure> {
    let mut bad = p.invalid.clone();
    for (k, _) in &p.options {
        let global = GLOBAL_OPTIONS.iter().any(|g| g.0 == k);
        if !global && !allowed.contains(&k.as_str()) {
            bad.push(format!("--{k}"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::InvalidOptions(bad))
    }
}

/// Jaro similarity, as Elixir's `String.jaro_distance` (RabbitMQ's "Did you mean").
pub(crate) fn jaro(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() || b.is_empty() {
        return if a == b { 1.0 } else { 0.0 };
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut b_used = vec![false; b.len()];
    let mut a_matches = Vec::new();
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_used[j] && b[j] == *ca {
                b_used[j] = true;
                a_matches.push(*ca);
                break;
            }
        }
    }
    let m = a_matches.len();
    if m == 0 {
        return 0.0;
    }
    let b_matches: Vec<char> = b
        .iter()
        .zip(&b_used)
        .filter(|(_, used)| **used)
        .map(|(c, _)| *c)
        .collect();
    let transpositions = a_matches
        .iter()
        .zip(&b_matches)
        .filter(|(x, y)| x != y)
        .count()
        / 2;
    let m = m as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64) / m) / 3.0
}

/// RabbitMQ's answer to an unknown command: a suggestion when one is close (Jaro
/// similarity of 0.75 or more; RabbitMQ suggests list_bindings for list_nothing, 0.777),
/// else the tool's usage.
pub(crate) fn unknown_command(name: &str, known: &[&str], usage: &str) -> String {
    let best = known
        .iter()
        .map(|k| (jaro(name, k), *k))
        .fold(None::<(f64, &str)>, |acc, x| match acc {
            Some(a) if a.0 >= x.0 => Some(a),
            _ => Some(x),
        });
    match best {
        Some((score, k)) if score >= 0.75 => {
            format!("\nCommand '{name}' not found. \nDid you mean '{k}'? \n\n")
        }
        _ => format!("\nCommand '{name}' not found. \n\n{usage}\n"),
    }
}

/// A tool's usage: its synopsis and commands.
pub(crate) fn tool_usage(tool: &str, commands: &[&str]) -> String {
    let mut out = format!(
        "\x1b[1mUsage\x1b[0m\n\n{tool} [--node <node>] [--timeout <timeout>] [--longnames] [--quiet] <command> [<command options>]\n\nAvailable commands:\n\n"
    );
    for c in commands {
        out.push_str(&format!("   {c}\n"));
    }
    out.push_str(&format!(
        "\nUse '{tool} help <command>' to learn more about a specific command"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    const SPECS: &[OptSpec] = &[
        ("node", Some('n'), true),
        ("quiet", Some('q'), false),
        ("vhost", Some('p'), true),
        ("priority", None, true),
        ("no-table-headers", None, false),
    ];

    #[test]
    fn options_go_anywhere_in_either_spelling() {
        let p = parse(
            &v(&[
                "list_queues",
                "-p",
                "v1",
                "name",
                "--node=rabbit@h",
                "-q",
                "messages",
                "--no-table-headers",
            ]),
            SPECS,
        );
        assert_eq!(p.positional, v(&["list_queues", "name", "messages"]));
        assert_eq!(p.vhost(), "v1");
        assert_eq!(p.node(), Some("rabbit@h"));
        assert!(p.quiet() && p.flag("no-table-headers"));
        assert!(p.invalid.is_empty());
        assert_eq!(p.args(), v(&["name", "messages"]));
    }

    #[test]
    fn values_may_look_like_options_and_negative_numbers_are_arguments() {
        let p = parse(
            &v(&["set_policy", "--priority", "-1", "n", "-", "-5"]),
            SPECS,
        );
        assert_eq!(p.value("priority"), Some("-1"));
        assert_eq!(p.positional, v(&["set_policy", "n", "-", "-5"]));
        let p = parse(&v(&["-pv2", "x", "--", "-q"]), SPECS);
        assert_eq!(p.vhost(), "v2");
        assert_eq!(p.positional, v(&["x", "-q"]));
    }

    #[test]
    fn unknown_and_valueless_options_are_invalid() {
        let p = parse(&v(&["--bogus", "list_queues", "-p"]), SPECS);
        assert_eq!(p.invalid, v(&["--bogus", "-p"]));
        assert_eq!(
            allowed_options(&p, &[]),
            Err(Failure::InvalidOptions(v(&["--bogus", "-p"])))
        );
        let p = parse(&v(&["--priority", "3", "x"]), SPECS);
        assert_eq!(
            allowed_options(&p, &[]),
            Err(Failure::InvalidOptions(v(&["--priority"])))
        );
        assert_eq!(allowed_options(&p, &["priority"]), Ok(()));
        let p = parse(&v(&["-qx"]), SPECS);
        assert_eq!(p.invalid, v(&["-qx"]));
    }

    #[test]
    fn failures_render_as_rabbitmqctl_prints_them() {
        let p = parse(&v(&["-n", "rabbit@h", "list_queues", "nosuchcol"]), SPECS);
        let f = Failure::Usage(64, "Info key(s) nosuchcol are not supported".into());
        assert_eq!(
            f.render(&p, "rabbit@h", "rabbitmqctl list_queues"),
            "Error (argument validation): Info key(s) nosuchcol are not supported\nArguments given:\n\t-n rabbit@h list_queues nosuchcol\n\n\x1b[1mUsage\x1b[0m\n\nrabbitmqctl list_queues\n"
        );
        let f = Failure::InvalidOptions(v(&["--bogus"]));
        assert!(f
            .render(&p, "n", "u")
            .starts_with("Error (argument validation): Invalid options for this command:\n--bogus : \nArguments given:\n"));
        assert_eq!(f.code(), 64);
        let f = Failure::Error(70, "User \"alice\" already exists".into());
        assert_eq!(
            f.render(&p, "n", "u"),
            "Error:\nUser \"alice\" already exists\n"
        );
        assert_eq!(f.code(), 70);
        let f = Failure::Unreachable("connection refused".into());
        assert_eq!(f.code(), 69);
        assert!(f.render(&p, "rabbit@h", "u").starts_with(
            "Error: unable to perform an operation on node 'rabbit@h'. Please see diagnostics information and suggestions below.\n"
        ));
        assert_eq!(
            arity(&p, 2, 2),
            Err(Failure::Usage(64, "not enough arguments.".into()))
        );
        assert_eq!(
            arity(&p, 0, 0),
            Err(Failure::Usage(64, "too many arguments.".into()))
        );
    }

    #[test]
    fn unknown_commands_get_a_suggestion_when_one_is_close() {
        let known = ["list_queues", "list_bindings", "status"];
        assert_eq!(
            unknown_command("list_nothing", &known, "USAGE"),
            "\nCommand 'list_nothing' not found. \nDid you mean 'list_bindings'? \n\n"
        );
        assert_eq!(
            unknown_command("zzz", &known, "USAGE"),
            "\nCommand 'zzz' not found. \n\nUSAGE\n"
        );
        assert!((jaro("martha", "marhta") - 0.9444).abs() < 0.001);
        assert_eq!(jaro("", "a"), 0.0);
    }
}
