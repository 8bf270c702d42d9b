//! rabbitmqctl's `list_*` commands: RabbitMQ's info keys (column names) mapped to the
//! management API's fields, and its table, JSON and CSV output.

use serde_json::Value;

use super::{
    cli::{Ctx, Failure},
    exit,
};
use crate::ctl::http::seg;

/// One list command.
pub(crate) struct ListDef {
    pub(crate) name: &'static str,
    /// First informational line; `{vhost}` is the `-p` vhost.
    banner: &'static str,
    /// API path; `{vhost}` is the percent-encoded vhost.
    path: &'static str,
    /// Columns printed when none are given.
    defaults: &'static [&'static str],
    /// Every info key the command takes; empty when it takes no columns.
    keys: &'static [&'static str],
    /// Info keys whose API field is named differently (key, dotted API path).
    renames: &'static [(&'static str, &'static str)],
    /// Whether the command prints RabbitMQ's "Timeout: ..." line first.
    timeout_line: bool,
    pub(crate) usage: &'static str,
}

const QUEUE_KEYS: &[&str] = &[
    "name",
    "durable",
    "auto_delete",
    "arguments",
    "policy",
    "pid",
    "owner_pid",
    "exclusive",
    "exclusive_consumer_pid",
    "exclusive_consumer_tag",
    "messages_ready",
    "messages_unacknowledged",
    "messages",
    "messages_ready_ram",
    "messages_unacknowledged_ram",
    "messages_ram",
    "messages_persistent",
    "message_bytes",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "message_bytes_ram",
    "message_bytes_persistent",
    "head_message_timestamp",
    "disk_reads",
    "disk_writes",
    "consumers",
    "consumer_utilisation",
    "consumer_capacity",
    "memory",
    "slave_pids",
    "synchronised_slave_pids",
    "state",
    "type",
    "leader",
    "members",
    "online",
];

const CONNECTION_KEYS: &[&str] = &[
    "pid",
    "name",
    "port",
    "host",
    "peer_port",
    "peer_host",
    "ssl",
    "ssl_protocol",
    "ssl_key_exchange",
    "ssl_cipher",
    "ssl_hash",
    "peer_cert_subject",
    "peer_cert_issuer",
    "peer_cert_validity",
    "state",
    "channels",
    "protocol",
    "auth_mechanism",
    "user",
    "vhost",
    "timeout",
    "frame_max",
    "channel_max",
    "client_properties",
    "recv_oct",
    "recv_cnt",
    "send_oct",
    "send_cnt",
    "send_pend",
    "connected_at",
    "node",
    "type",
];

const CHANNEL_KEYS: &[&str] = &[
    "pid",
    "connection",
    "name",
    "number",
    "user",
    "vhost",
    "transactional",
    "confirm",
    "consumer_count",
    "messages_unacknowledged",
    "messages_uncommitted",
    "acks_uncommitted",
    "messages_unconfirmed",
    "prefetch_count",
    "global_prefetch_count",
    "state",
];

pub(crate) const LISTS: &[ListDef] = &[
    ListDef {
        name: "list_queues",
        banner: "Listing queues for vhost {vhost} ...",
        path: "/api/queues/{vhost}",
        defaults: &["name", "messages"],
        keys: QUEUE_KEYS,
        renames: &[("owner_pid", "owner_pid_details.name")],
        timeout_line: true,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_queues [--vhost <vhost>] [--online] [--offline] [--local] [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_exchanges",
        banner: "Listing exchanges for vhost {vhost} ...",
        path: "/api/exchanges/{vhost}",
        defaults: &["name", "type"],
        keys: &["name", "type", "durable", "auto_delete", "internal", "arguments", "policy"],
        renames: &[],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_exchanges [--vhost <vhost>] [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_bindings",
        banner: "Listing bindings for vhost {vhost}...",
        path: "/api/bindings/{vhost}",
        defaults: &[
            "source_name",
            "source_kind",
            "destination_name",
            "destination_kind",
            "routing_key",
            "arguments",
        ],
        keys: &[
            "source_name",
            "source_kind",
            "destination_name",
            "destination_kind",
            "routing_key",
            "arguments",
        ],
        renames: &[
            ("source_name", "source"),
            ("destination_name", "destination"),
            ("destination_kind", "destination_type"),
        ],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_bindings [--vhost <vhost>] [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_connections",
        banner: "Listing connections ...",
        path: "/api/connections",
        defaults: &["user", "peer_host", "peer_port", "state"],
        keys: CONNECTION_KEYS,
        renames: &[("pid", "name")],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_connections [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_channels",
        banner: "Listing channels ...",
        path: "/api/channels",
        defaults: &["pid", "user", "consumer_count", "messages_unacknowledged"],
        keys: CHANNEL_KEYS,
        renames: &[("pid", "name"), ("connection", "connection_details.name")],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_channels [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_consumers",
        banner: "Listing consumers in vhost {vhost} ...",
        path: "/api/consumers/{vhost}",
        defaults: &[
            "queue_name",
            "channel_pid",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "arguments",
        ],
        keys: &[
            "queue_name",
            "channel_pid",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "activity_status",
            "arguments",
            "exclusive",
        ],
        renames: &[
            ("queue_name", "queue.name"),
            ("channel_pid", "channel_details.name"),
        ],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_consumers [--vhost <vhost>] [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_users",
        banner: "Listing users ...",
        path: "/api/users",
        defaults: &["user", "tags"],
        keys: &[],
        renames: &[("user", "name")],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_users [--no-table-headers] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_vhosts",
        banner: "Listing vhosts ...",
        path: "/api/vhosts",
        defaults: &["name"],
        keys: &["name", "description", "tags", "tracing", "cluster_state", "default_queue_type"],
        renames: &[],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_vhosts [--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_permissions",
        banner: "Listing permissions for vhost \"{vhost}\" ...",
        path: "/api/vhosts/{vhost}/permissions",
        defaults: &["user", "configure", "write", "read"],
        keys: &[],
        renames: &[],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_permissions [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_topic_permissions",
        banner: "Listing topic permissions for vhost \"{vhost}\" ...",
        path: "/api/vhosts/{vhost}/topic-permissions",
        defaults: &["user", "exchange", "write", "read"],
        keys: &[],
        renames: &[],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_topic_permissions [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]",
    },
    ListDef {
        name: "list_policies",
        banner: "Listing policies for vhost \"{vhost}\" ...",
        path: "/api/policies/{vhost}",
        defaults: &["vhost", "name", "pattern", "apply-to", "definition", "priority"],
        keys: &[],
        renames: &[],
        timeout_line: false,
        usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_policies [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]",
    },
];

pub(crate) fn find(name: &str) -> Option<&'static ListDef> {
    LISTS.iter().find(|l| l.name == name)
}

impl ListDef {
    /// The columns asked for (`name messages` or `name,messages`), checked against the
    /// command's info keys.
    pub(crate) fn columns(&self, args: &[String]) -> Result<Vec<String>, Failure> {
        let given: Vec<String> = args
            .iter()
            .flat_map(|a| a.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        if given.is_empty() {
            return Ok(self.defaults.iter().map(|c| c.to_string()).collect());
        }
        if self.keys.is_empty() {
            return Err(Failure::Usage(exit::USAGE, "too many arguments.".into()));
        }
        let unknown: Vec<&str> = given
            .iter()
            .filter(|c| !self.keys.contains(&c.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(Failure::Usage(
                exit::USAGE,
                format!("Info key(s) {} are not supported", unknown.join(",")),
            ));
        }
        Ok(given)
    }

    /// The API field (dotted path) behind an info key.
    fn field(&self, key: &str) -> String {
        self.renames
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(key, |(_, f)| f)
            .to_string()
    }

    /// A cell as RabbitMQ prints it: (table text, JSON value).
    fn cell(&self, row: &Value, key: &str) -> (String, Value) {
        if self.name == "list_bindings" && key == "source_kind" {
            return ("exchange".into(), Value::from("exchange"));
        }
        let mut v = row;
        for part in self.field(key).split('.') {
            match v.get(part) {
                Some(x) => v = x,
                None => return (String::new(), Value::from("")),
            }
        }
        match key {
            "arguments" | "client_properties" => (erlang_table(v), amqp_table_json(v)),
            "tags" => {
                let tags = tag_list(v);
                (
                    format!("[{}]", tags.join(", ")),
                    Value::Array(tags.into_iter().map(Value::from).collect()),
                )
            }
            "definition" => {
                let text = v.to_string();
                (text.clone(), Value::from(text))
            }
            _ => match v {
                Value::Null => (String::new(), Value::from("")),
                Value::String(s) => (s.clone(), v.clone()),
                other => (other.to_string(), other.clone()),
            },
        }
    }
}

/// Tags from the API: a list, or a comma-separated string.
fn tag_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// An argument table as rabbitmqctl's table output prints it: `[{"x-max-length",5}]`,
/// keys sorted.
pub(crate) fn erlang_table(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return match v {
            Value::Array(a) if a.is_empty() => "[]".into(),
            Value::Null => "[]".into(),
            other => erlang_value(other),
        };
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let items: Vec<String> = keys
        .iter()
        .map(|k| format!("{{\"{k}\",{}}}", erlang_value(&map[*k])))
        .collect();
    format!("[{}]", items.join(","))
}

fn erlang_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(_) => erlang_table(v),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(erlang_value).collect();
            format!("[{}]", items.join(","))
        }
        Value::Null => "undefined".into(),
        other => other.to_string(),
    }
}

/// An argument table as rabbitmqctl's JSON output gives it: `[["key","type",value]]`.
pub(crate) fn amqp_table_json(v: &Value) -> Value {
    let Some(map) = v.as_object() else {
        return Value::Array(Vec::new());
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    Value::Array(
        keys.iter()
            .map(|k| {
                let x = &map[*k];
                let kind = match x {
                    Value::String(_) => "longstr",
                    Value::Bool(_) => "bool",
                    Value::Number(n) if n.is_f64() => "double",
                    Value::Number(_) => "long",
                    Value::Object(_) => "table",
                    Value::Array(_) => "array",
                    Value::Null => "void",
                };
                let value = if x.is_object() {
                    amqp_table_json(x)
                } else {
                    x.clone()
                };
                Value::Array(vec![Value::from(k.as_str()), Value::from(kind), value])
            })
            .collect(),
    )
}

/// Output formats rabbitmqctl's list commands take.
pub(crate) fn check_formatter(f: &str) -> Result<(), Failure> {
    match f {
        "table" | "json" | "csv" => Ok(()),
        other => Err(Failure::Usage(
            exit::USAGE,
            format!("Formatter '{other}' is not supported (table, json, csv)"),
        )),
    }
}

/// The rows as printed. Table: tab-separated, a header unless `headers` is false, and
/// nothing at all without rows; JSON: one object per line; CSV: every cell quoted.
pub(crate) fn render(
    def: &ListDef,
    rows: &[Value],
    columns: &[String],
    formatter: &str,
    headers: bool,
) -> String {
    match formatter {
        "json" => {
            let lines: Vec<String> = rows
                .iter()
                .map(|r| {
                    let fields: Vec<String> = columns
                        .iter()
                        .map(|c| format!("{}:{}", Value::from(c.as_str()), def.cell(r, c).1))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                })
                .collect();
            if lines.is_empty() {
                "[\n]\n".into()
            } else {
                format!("[\n{}\n]\n", lines.join("\n,"))
            }
        }
        "csv" => {
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            let mut out = String::new();
            if headers && !rows.is_empty() {
                let head: Vec<String> = columns.iter().map(|c| quote(c)).collect();
                out.push_str(&format!("{}\n", head.join(",")));
            }
            for r in rows {
                let cells: Vec<String> = columns.iter().map(|c| quote(&def.cell(r, c).0)).collect();
                out.push_str(&format!("{}\n", cells.join(",")));
            }
            out
        }
        _ => {
            let mut out = String::new();
            if rows.is_empty() {
                // list_policies prints an empty line where the table would be.
                if def.name == "list_policies" {
                    out.push('\n');
                }
                return out;
            }
            if headers {
                out.push_str(&format!("{}\n", columns.join("\t")));
            }
            for r in rows {
                let cells: Vec<String> = columns.iter().map(|c| def.cell(r, c).0).collect();
                out.push_str(&format!("{}\n", cells.join("\t")));
            }
            out
        }
    }
}

/// Runs a list command.
pub(crate) fn run(ctx: &Ctx, def: &ListDef) -> Result<(), Failure> {
    let p = ctx.p;
    check_formatter(p.formatter())?;
    if p.formatter() == "json" && p.flag("no-table-headers") {
        return Err(Failure::InvalidOptions(vec!["--no-table-headers".into()]));
    }
    let columns = def.columns(p.args())?;
    let vhost = ctx.vhost();
    if def.timeout_line {
        let secs = p.timeout().unwrap_or(60.0);
        ctx.info(format!("Timeout: {secs:.1} seconds ..."));
    }
    ctx.info(def.banner.replace("{vhost}", vhost));
    let reply = ctx.request("GET", &def.path.replace("{vhost}", &seg(vhost)), None)?;
    // A vhost that does not exist lists nothing, as in RabbitMQ.
    let rows = if reply.status == 404 {
        Vec::new()
    } else if reply.status >= 400 {
        return Err(Failure::Error(exit::SOFTWARE, super::api::reason(&reply)));
    } else {
        match super::api::json(&reply) {
            Value::Array(a) => a,
            _ => Vec::new(),
        }
    };
    let headers = !p.flag("no-table-headers") && !p.flag("silent");
    print!("{}", render(def, &rows, &columns, p.formatter(), headers));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn queues() -> Vec<Value> {
        vec![
            json!({"name": "qb", "messages": 0, "durable": true, "arguments": {"x-max-length": 5}, "policy": null}),
            json!({"name": "q1", "messages": 2, "durable": true, "arguments": {}}),
        ]
    }

    #[test]
    fn table_output_matches_rabbitmqctl() {
        let def = find("list_queues").unwrap();
        let cols = def.columns(&[]).unwrap();
        assert_eq!(
            render(def, &queues(), &cols, "table", true),
            "name\tmessages\nqb\t0\nq1\t2\n"
        );
        assert_eq!(
            render(def, &queues(), &cols, "table", false),
            "qb\t0\nq1\t2\n"
        );
        assert_eq!(render(def, &[], &cols, "table", true), "");
        let cols = def.columns(&v(&["name,arguments", "policy"])).unwrap();
        assert_eq!(
            render(def, &queues(), &cols, "table", true),
            "name\targuments\tpolicy\nqb\t[{\"x-max-length\",5}]\t\nq1\t[]\t\n"
        );
        let pol = find("list_policies").unwrap();
        assert_eq!(
            render(pol, &[], &pol.columns(&[]).unwrap(), "table", true),
            "\n"
        );
    }

    #[test]
    fn json_and_csv_output_match_rabbitmqctl() {
        let def = find("list_queues").unwrap();
        let cols = def.columns(&v(&["name", "durable"])).unwrap();
        assert_eq!(
            render(def, &queues(), &cols, "json", true),
            "[\n{\"name\":\"qb\",\"durable\":true}\n,{\"name\":\"q1\",\"durable\":true}\n]\n"
        );
        assert_eq!(render(def, &[], &cols, "json", true), "[\n]\n");
        let cols = def.columns(&v(&["name", "arguments"])).unwrap();
        assert_eq!(
            render(def, &queues()[..1], &cols, "json", true),
            "[\n{\"name\":\"qb\",\"arguments\":[[\"x-max-length\",\"long\",5]]}\n]\n"
        );
        let cols = def.columns(&[]).unwrap();
        assert_eq!(
            render(def, &queues(), &cols, "csv", true),
            "\"name\",\"messages\"\n\"qb\",\"0\"\n\"q1\",\"2\"\n"
        );
    }

    #[test]
    fn renamed_and_special_columns() {
        let b = find("list_bindings").unwrap();
        let row = json!({"source": "", "destination": "q", "destination_type": "queue", "routing_key": "q", "arguments": {}});
        assert_eq!(
            render(b, &[row], &b.columns(&[]).unwrap(), "table", true),
            "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n\texchange\tq\tqueue\tq\t[]\n"
        );
        let u = find("list_users").unwrap();
        let rows = [
            json!({"name": "alice", "tags": ["administrator", "monitoring"]}),
            json!({"name": "bob", "tags": ""}),
        ];
        assert_eq!(
            render(u, &rows, &u.columns(&[]).unwrap(), "table", true),
            "user\ttags\nalice\t[administrator, monitoring]\nbob\t[]\n"
        );
        assert_eq!(
            render(u, &rows[..1], &u.columns(&[]).unwrap(), "json", true),
            "[\n{\"user\":\"alice\",\"tags\":[\"administrator\",\"monitoring\"]}\n]\n"
        );
        let p = find("list_policies").unwrap();
        let row = json!({"vhost": "v1", "name": "p1", "pattern": "^q", "apply-to": "queues", "definition": {"max-length": 10}, "priority": 3});
        assert_eq!(
            render(p, std::slice::from_ref(&row), &p.columns(&[]).unwrap(), "table", true),
            "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\nv1\tp1\t^q\tqueues\t{\"max-length\":10}\t3\n"
        );
        assert_eq!(
            render(p, &[row], &p.columns(&[]).unwrap(), "json", true),
            "[\n{\"vhost\":\"v1\",\"name\":\"p1\",\"pattern\":\"^q\",\"apply-to\":\"queues\",\"definition\":\"{\\\"max-length\\\":10}\",\"priority\":3}\n]\n"
        );
    }

    #[test]
    fn columns_are_checked() {
        let q = find("list_queues").unwrap();
        assert_eq!(
            q.columns(&v(&["name", "nosuchcol"])),
            Err(Failure::Usage(
                64,
                "Info key(s) nosuchcol are not supported".into()
            ))
        );
        let u = find("list_users").unwrap();
        assert_eq!(
            u.columns(&v(&["user"])),
            Err(Failure::Usage(64, "too many arguments.".into()))
        );
        for def in LISTS {
            for d in def.defaults {
                assert!(
                    def.keys.is_empty() || def.keys.contains(d),
                    "{} {d}",
                    def.name
                );
            }
        }
        assert!(check_formatter("json").is_ok() && check_formatter("tsv").is_err());
    }

    #[test]
    fn argument_tables() {
        let args =
            json!({"x-queue-mode": "lazy", "x-max-length": 5, "x-dead-letter-exchange": "dlx"});
        assert_eq!(
            erlang_table(&args),
            "[{\"x-dead-letter-exchange\",\"dlx\"},{\"x-max-length\",5},{\"x-queue-mode\",\"lazy\"}]"
        );
        assert_eq!(
            amqp_table_json(&json!({"a": 1, "x-match": "any", "f": true})),
            json!([
                ["a", "long", 1],
                ["f", "bool", true],
                ["x-match", "longstr", "any"]
            ])
        );
    }
}
