//! `warren ctl list_*`: every list command is one row of [`LISTS`] (its name, the API path
//! it reads, the line it prints first, its default columns), and one function runs them
//! all. A column is a dotted path into each row the API returns (`queue.name`); a column
//! the rows do not have is an empty cell (`null` in JSON), as in rabbitmqadmin.

use clap::{error::ErrorKind, Arg, ArgAction, ArgMatches, Command, FromArgMatches, Subcommand};
use serde_json::Value;

use super::{http::seg, CtlArgs, Format};

/// One `list_*` command. In `banner` and `path`, `{vhost}` stands for the `-p` vhost
/// (percent-encoded in the path).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ListSpec {
    /// The subcommand, as rabbitmqctl spells it.
    pub(super) name: &'static str,
    /// The same with dashes, also accepted.
    pub(super) alias: &'static str,
    /// What `--help` says about it (the default columns are added to it when the command
    /// takes columns).
    pub(super) summary: Option<&'static str>,
    /// The informational line printed before the rows (not with `-q` or `--format json`).
    pub(super) banner: &'static str,
    /// The management API path it reads (GET).
    pub(super) path: &'static str,
    /// The columns printed when none are given.
    pub(super) columns: &'static [&'static str],
    /// Whether columns may be given on the command line; if not, `columns` always.
    pub(super) takes_columns: bool,
}

pub(super) const LISTS: &[ListSpec] = &[
    ListSpec {
        name: "list_queues",
        alias: "list-queues",
        summary: Some("Queues of the vhost, with chosen columns"),
        banner: "Listing queues for vhost {vhost} ...",
        path: "/api/queues/{vhost}",
        columns: &["name", "messages"],
        takes_columns: true,
    },
    ListSpec {
        name: "list_exchanges",
        alias: "list-exchanges",
        summary: Some("Exchanges of the vhost"),
        banner: "Listing exchanges for vhost {vhost} ...",
        path: "/api/exchanges/{vhost}",
        columns: &["name", "type"],
        takes_columns: true,
    },
    ListSpec {
        name: "list_bindings",
        alias: "list-bindings",
        summary: Some("Bindings of the vhost"),
        banner: "Listing bindings for vhost {vhost}...",
        path: "/api/bindings/{vhost}",
        columns: &[
            "source",
            "destination",
            "destination_type",
            "routing_key",
            "arguments",
        ],
        takes_columns: true,
    },
    ListSpec {
        name: "list_connections",
        alias: "list-connections",
        summary: Some("Connections"),
        banner: "Listing connections ...",
        path: "/api/connections",
        columns: &["user", "peer_host", "peer_port", "state"],
        takes_columns: true,
    },
    ListSpec {
        name: "list_channels",
        alias: "list-channels",
        summary: Some("Channels"),
        banner: "Listing channels ...",
        path: "/api/channels",
        columns: &[
            "name",
            "user",
            "vhost",
            "consumer_count",
            "messages_unacknowledged",
        ],
        takes_columns: true,
    },
    ListSpec {
        name: "list_consumers",
        alias: "list-consumers",
        summary: Some("Consumers of the vhost"),
        banner: "Listing consumers in vhost {vhost} ...",
        path: "/api/consumers/{vhost}",
        columns: &[
            "queue.name",
            "channel_details.name",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
        ],
        takes_columns: true,
    },
    ListSpec {
        name: "list_users",
        alias: "list-users",
        summary: None,
        banner: "Listing users ...",
        path: "/api/users",
        columns: &["name", "tags"],
        takes_columns: false,
    },
    ListSpec {
        name: "list_vhosts",
        alias: "list-vhosts",
        summary: None,
        banner: "Listing vhosts ...",
        path: "/api/vhosts",
        columns: &["name"],
        takes_columns: false,
    },
    ListSpec {
        name: "list_permissions",
        alias: "list-permissions",
        summary: Some("Permissions in the vhost"),
        banner: "Listing permissions for vhost \"{vhost}\" ...",
        path: "/api/vhosts/{vhost}/permissions",
        columns: &["user", "configure", "write", "read"],
        takes_columns: false,
    },
    ListSpec {
        name: "list_topic_permissions",
        alias: "list-topic-permissions",
        summary: Some("Topic permissions in the vhost"),
        banner: "Listing topic permissions for vhost \"{vhost}\" ...",
        path: "/api/vhosts/{vhost}/topic-permissions",
        columns: &["user", "exchange", "write", "read"],
        takes_columns: false,
    },
    ListSpec {
        name: "list_policies",
        alias: "list-policies",
        summary: None,
        banner: "Listing policies for vhost \"{vhost}\" ...",
        path: "/api/policies/{vhost}",
        columns: &[
            "vhost",
            "name",
            "pattern",
            "apply-to",
            "definition",
            "priority",
        ],
        takes_columns: false,
    },
];

impl ListSpec {
    fn find(name: &str) -> Option<&'static ListSpec> {
        LISTS.iter().find(|s| s.name == name)
    }

    /// The `--help` line.
    fn about(&self) -> Option<String> {
        match (self.summary, self.takes_columns) {
            (Some(s), true) => Some(format!("{s} (default: {})", self.columns.join(" "))),
            (Some(s), false) => Some(s.to_string()),
            (None, true) => Some(format!("(default: {})", self.columns.join(" "))),
            (None, false) => None,
        }
    }

    /// The clap subcommand: `name [COLUMNS]...`, or `name` alone.
    fn command(&self) -> Command {
        let mut cmd = Command::new(self.name).alias(self.alias);
        if let Some(about) = self.about() {
            cmd = cmd.about(about);
        }
        if self.takes_columns {
            cmd = cmd.arg(
                Arg::new("columns")
                    .value_name("COLUMNS")
                    .num_args(1..)
                    .action(ArgAction::Append)
                    .value_parser(clap::value_parser!(String)),
            );
        }
        cmd
    }

    fn banner_for(&self, vhost: &str) -> String {
        self.banner.replace("{vhost}", vhost)
    }

    fn path_for(&self, vhost: &str) -> String {
        self.path.replace("{vhost}", &seg(vhost))
    }
}

/// A parsed `list_*` command line.
#[derive(Debug)]
pub(super) struct ListCommand {
    spec: &'static ListSpec,
    columns: Vec<String>,
}

impl ListCommand {
    /// The columns given, or the command's defaults.
    fn columns(&self) -> Vec<&str> {
        if self.columns.is_empty() {
            self.spec.columns.to_vec()
        } else {
            self.columns.iter().map(String::as_str).collect()
        }
    }
}

impl FromArgMatches for ListCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, mut sub)) = matches.remove_subcommand() else {
            return Err(clap::Error::raw(
                ErrorKind::MissingSubcommand,
                "a subcommand is required but one was not provided",
            ));
        };
        let spec = ListSpec::find(&name).ok_or_else(|| {
            clap::Error::raw(
                ErrorKind::InvalidSubcommand,
                format!("the subcommand '{name}' wasn't recognized"),
            )
        })?;
        let columns = if spec.takes_columns {
            sub.try_remove_many::<String>("columns")
                .map_err(|e| clap::Error::raw(ErrorKind::InvalidValue, e))?
                .map(Iterator::collect)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(ListCommand { spec, columns })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for ListCommand {
    fn augment_subcommands(cmd: Command) -> Command {
        LISTS
            .iter()
            .fold(cmd, |cmd, spec| cmd.subcommand(spec.command()))
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        Self::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        ListSpec::find(name).is_some()
    }
}

/// Runs a `list_*` command: its banner, then the rows of its API path.
pub(super) fn run(args: &CtlArgs, cmd: &ListCommand) -> Result<(), String> {
    args.info(&cmd.spec.banner_for(&args.vhost));
    let rows = args.call("GET", &cmd.spec.path_for(&args.vhost), None)?;
    print!("{}", render(args.format, &rows, &cmd.columns()));
    Ok(())
}

/// A cell: dotted paths reach into objects; strings bare, everything else as JSON.
pub(super) fn cell(row: &Value, col: &str) -> Value {
    let mut v = row;
    for part in col.split('.') {
        match v.get(part) {
            Some(x) => v = x,
            None => return Value::Null,
        }
    }
    v.clone()
}

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The rows (a JSON array; anything else counts as none) as printed: one JSON array of
/// objects with the chosen columns, or a tab-separated table with a header line.
fn render(format: Format, rows: &Value, columns: &[&str]) -> String {
    let items = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    match format {
        Format::Json => {
            let out: Vec<Value> = items
                .iter()
                .map(|r| {
                    let mut m = serde_json::Map::new();
                    for c in columns {
                        m.insert((*c).to_string(), cell(r, c));
                    }
                    Value::Object(m)
                })
                .collect();
            format!("{}\n", Value::Array(out))
        }
        Format::Table => {
            let mut out = columns.join("\t");
            out.push('\n');
            for r in items {
                let cells: Vec<String> = columns.iter().map(|c| text(&cell(r, c))).collect();
                out.push_str(&cells.join("\t"));
                out.push('\n');
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;
    use crate::ctl::{tests::Cli, CtlCommand};

    fn parse(line: &[&str]) -> Result<ListCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("ctl").chain(line.iter().copied()))?;
        match cli.ctl.command {
            CtlCommand::List(cmd) => Ok(cmd),
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn every_list_command_has_its_default_columns() {
        let expected: &[(&str, &[&str])] = &[
            ("list_queues", &["name", "messages"]),
            ("list_exchanges", &["name", "type"]),
            (
                "list_bindings",
                &[
                    "source",
                    "destination",
                    "destination_type",
                    "routing_key",
                    "arguments",
                ],
            ),
            (
                "list_connections",
                &["user", "peer_host", "peer_port", "state"],
            ),
            (
                "list_channels",
                &[
                    "name",
                    "user",
                    "vhost",
                    "consumer_count",
                    "messages_unacknowledged",
                ],
            ),
            (
                "list_consumers",
                &[
                    "queue.name",
                    "channel_details.name",
                    "consumer_tag",
                    "ack_required",
                    "prefetch_count",
                ],
            ),
            ("list_users", &["name", "tags"]),
            ("list_vhosts", &["name"]),
            ("list_permissions", &["user", "configure", "write", "read"]),
            (
                "list_topic_permissions",
                &["user", "exchange", "write", "read"],
            ),
            (
                "list_policies",
                &[
                    "vhost",
                    "name",
                    "pattern",
                    "apply-to",
                    "definition",
                    "priority",
                ],
            ),
        ];
        let names: Vec<&str> = LISTS.iter().map(|s| s.name).collect();
        let expected_names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, expected_names);
        for (name, columns) in expected {
            let cmd = parse(&[name]).unwrap();
            assert_eq!(cmd.spec.name, *name);
            assert_eq!(cmd.columns(), *columns, "{name}");
            // The dashed spelling is the same command.
            let dashed = parse(&[&name.replace('_', "-")]).unwrap();
            assert_eq!(dashed.spec, cmd.spec);
            assert_eq!(cmd.spec.alias, name.replace('_', "-"));
        }
    }

    #[test]
    fn given_columns_replace_the_defaults_where_the_command_takes_them() {
        for spec in LISTS {
            let given = parse(&[spec.name, "name", "no_such_column", "a.b"]);
            if spec.takes_columns {
                let cmd = given.unwrap();
                assert_eq!(cmd.columns(), ["name", "no_such_column", "a.b"]);
                // --help names the defaults.
                let about = spec.about().unwrap();
                assert!(
                    about.ends_with(&format!("(default: {})", spec.columns.join(" "))),
                    "{about}"
                );
            } else {
                let err = given.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::UnknownArgument, "{}", spec.name);
            }
        }
    }

    #[test]
    fn help_lines_and_paths() {
        let q = ListSpec::find("list_queues").unwrap();
        assert_eq!(
            q.about().as_deref(),
            Some("Queues of the vhost, with chosen columns (default: name messages)")
        );
        assert_eq!(q.banner_for("/"), "Listing queues for vhost / ...");
        assert_eq!(q.path_for("/"), "/api/queues/%2F");
        let p = ListSpec::find("list_permissions").unwrap();
        assert_eq!(p.about().as_deref(), Some("Permissions in the vhost"));
        assert_eq!(
            p.banner_for("a b"),
            "Listing permissions for vhost \"a b\" ..."
        );
        assert_eq!(p.path_for("a b"), "/api/vhosts/a%20b/permissions");
        assert_eq!(ListSpec::find("list_users").unwrap().about(), None);
        assert_eq!(
            ListSpec::find("list_connections").unwrap().path_for("/"),
            "/api/connections"
        );
        assert!(ListSpec::find("list_nothing").is_none());
    }

    #[test]
    fn unknown_columns_are_empty_cells_and_null_in_json() {
        let rows = json!([
            {"name": "q", "messages": 3, "arguments": {"k": "v"}},
            {"name": "r", "messages": 0, "arguments": {}},
        ]);
        // Columns in sorted order, so that the JSON text is the same whether or not
        // serde_json keeps insertion order.
        let columns = ["arguments", "arguments.k", "messages", "nosuch"];
        assert_eq!(
            render(Format::Table, &rows, &columns),
            "arguments\targuments.k\tmessages\tnosuch\n\
             {\"k\":\"v\"}\tv\t3\t\n\
             {}\t\t0\t\n"
        );
        assert_eq!(
            render(Format::Json, &rows, &columns),
            "[{\"arguments\":{\"k\":\"v\"},\"arguments.k\":\"v\",\"messages\":3,\"nosuch\":null},\
             {\"arguments\":{},\"arguments.k\":null,\"messages\":0,\"nosuch\":null}]\n"
        );
    }

    #[test]
    fn no_rows_is_a_header_or_an_empty_array() {
        for rows in [json!([]), Value::Null, json!({"error": "x"})] {
            assert_eq!(
                render(Format::Table, &rows, &["name", "type"]),
                "name\ttype\n"
            );
            assert_eq!(render(Format::Json, &rows, &["name"]), "[]\n");
        }
    }

    #[test]
    fn cells_follow_dotted_paths() {
        let row = json!({"a": {"b": 1, "s": "x"}, "n": null});
        assert_eq!(text(&cell(&row, "a.b")), "1");
        assert_eq!(text(&cell(&row, "a.s")), "x");
        assert_eq!(text(&cell(&row, "a")), "{\"b\":1,\"s\":\"x\"}");
        assert_eq!(text(&cell(&row, "n")), "");
        assert_eq!(cell(&row, "a.b.c"), Value::Null);
    }
}
