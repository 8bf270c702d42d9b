//! `warren ctl`: what CI scripts use from rabbitmqctl and rabbitmqadmin, over the
//! management HTTP API (so it works against warren and RabbitMQ alike). Plain tables for
//! people, `--format json` for scripts.

mod http;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use http::seg;

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Management API address.
    #[arg(long, env = "WARREN_CTL_HOST", default_value = "127.0.0.1:15672")]
    host: String,
    #[arg(long, short = 'u', env = "WARREN_CTL_USER", default_value = "guest")]
    user: String,
    #[arg(long, env = "WARREN_CTL_PASSWORD", default_value = "guest")]
    password: String,
    /// Virtual host for vhost-scoped commands.
    #[arg(long, short = 'p', default_value = "/")]
    vhost: String,
    /// `table` (tab-separated, with a header) or `json`.
    #[arg(long, short = 'f', default_value = "table")]
    format: Format,
    /// No informational lines (table output only has rows).
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// Queues of the vhost, with chosen columns (default: name messages).
    #[command(name = "list_queues", alias = "list-queues")]
    ListQueues { columns: Vec<String> },
    /// Exchanges of the vhost (default: name type).
    #[command(name = "list_exchanges", alias = "list-exchanges")]
    ListExchanges { columns: Vec<String> },
    /// Bindings of the vhost (default: source destination destination_type routing_key arguments).
    #[command(name = "list_bindings", alias = "list-bindings")]
    ListBindings { columns: Vec<String> },
    /// Connections (default: user peer_host peer_port state).
    #[command(name = "list_connections", alias = "list-connections")]
    ListConnections { columns: Vec<String> },
    /// Channels (default: name user vhost consumer_count messages_unacknowledged).
    #[command(name = "list_channels", alias = "list-channels")]
    ListChannels { columns: Vec<String> },
    /// Consumers of the vhost (default: queue.name channel_details.name consumer_tag ack_required prefetch_count).
    #[command(name = "list_consumers", alias = "list-consumers")]
    ListConsumers { columns: Vec<String> },
    #[command(name = "list_users", alias = "list-users")]
    ListUsers,
    #[command(name = "list_vhosts", alias = "list-vhosts")]
    ListVhosts,
    /// Permissions in the vhost.
    #[command(name = "list_permissions", alias = "list-permissions")]
    ListPermissions,
    #[command(name = "list_policies", alias = "list-policies")]
    ListPolicies,
    #[command(name = "add_user", alias = "add-user")]
    AddUser { name: String, password: String },
    #[command(name = "delete_user", alias = "delete-user")]
    DeleteUser { name: String },
    #[command(name = "change_password", alias = "change-password")]
    ChangePassword { name: String, password: String },
    #[command(name = "set_user_tags", alias = "set-user-tags")]
    SetUserTags { name: String, tags: Vec<String> },
    #[command(name = "add_vhost", alias = "add-vhost")]
    AddVhost { name: String },
    #[command(name = "delete_vhost", alias = "delete-vhost")]
    DeleteVhost { name: String },
    /// configure, write and read regexes of a user in the vhost (-p).
    #[command(name = "set_permissions", alias = "set-permissions")]
    SetPermissions {
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    #[command(name = "clear_permissions", alias = "clear-permissions")]
    ClearPermissions { user: String },
    #[command(name = "set_policy", alias = "set-policy")]
    SetPolicy {
        name: String,
        pattern: String,
        /// JSON object, e.g. '{"max-length": 100}'.
        definition: String,
        #[arg(long, default_value_t = 0)]
        priority: i64,
        #[arg(long, default_value = "all")]
        apply_to: String,
    },
    #[command(name = "clear_policy", alias = "clear-policy")]
    ClearPolicy { name: String },
    #[command(name = "purge_queue", alias = "purge-queue")]
    PurgeQueue { name: String },
    #[command(name = "delete_queue", alias = "delete-queue")]
    DeleteQueue { name: String },
    /// Imports a RabbitMQ definitions file.
    #[command(name = "import_definitions", alias = "import-definitions")]
    ImportDefinitions { file: String },
    /// Writes the definitions to FILE (`-` for stdout).
    #[command(name = "export_definitions", alias = "export-definitions")]
    ExportDefinitions { file: String },
    /// Node status (overview).
    Status,
    /// Waits until the broker answers (for scripts), up to --timeout seconds.
    #[command(name = "await_startup", alias = "await-startup")]
    AwaitStartup {
        #[arg(long, short = 't', default_value_t = 300)]
        timeout: u64,
    },
}

impl CtlArgs {
    fn info(&self, line: &str) {
        if !self.quiet && self.format == Format::Table {
            println!("{line}");
        }
    }
}

/// A cell: dotted paths reach into objects; strings bare, everything else as JSON.
fn cell(row: &Value, col: &str) -> Value {
    let mut v = row;
    for part in col.split('.') {
        match v.get(part) {
            Some(x) => v = x,
            None => return Value::Null,
        }
    }
    v.clone()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_rows(args: &CtlArgs, rows: &Value, columns: &[&str]) {
    let items = rows.as_array().cloned().unwrap_or_default();
    match args.format {
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
            println!("{}", Value::Array(out));
        }
        Format::Table => {
            println!("{}", columns.join("\t"));
            for r in &items {
                let cells: Vec<String> = columns.iter().map(|c| text(&cell(r, c))).collect();
                println!("{}", cells.join("\t"));
            }
        }
    }
}

fn cols<'a>(given: &'a [String], default: &[&'a str]) -> Vec<&'a str> {
    if given.is_empty() {
        default.to_vec()
    } else {
        given.iter().map(String::as_str).collect()
    }
}

pub fn main(args: CtlArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(69)
        }
    }
}

fn run(args: &CtlArgs) -> Result<(), String> {
    let vh = seg(&args.vhost);
    match &args.command {
        CtlCommand::ListQueues { columns } => {
            args.info(&format!("Listing queues for vhost {} ...", args.vhost));
            let rows = args.call("GET", &format!("/api/queues/{vh}"), None)?;
            print_rows(args, &rows, &cols(columns, &["name", "messages"]));
        }
        CtlCommand::ListExchanges { columns } => {
            args.info(&format!("Listing exchanges for vhost {} ...", args.vhost));
            let rows = args.call("GET", &format!("/api/exchanges/{vh}"), None)?;
            print_rows(args, &rows, &cols(columns, &["name", "type"]));
        }
        CtlCommand::ListBindings { columns } => {
            args.info(&format!("Listing bindings for vhost {}...", args.vhost));
            let rows = args.call("GET", &format!("/api/bindings/{vh}"), None)?;
            let default = [
                "source",
                "destination",
                "destination_type",
                "routing_key",
                "arguments",
            ];
            print_rows(args, &rows, &cols(columns, &default));
        }
        CtlCommand::ListConnections { columns } => {
            args.info("Listing connections ...");
            let rows = args.call("GET", "/api/connections", None)?;
            print_rows(
                args,
                &rows,
                &cols(columns, &["user", "peer_host", "peer_port", "state"]),
            );
        }
        CtlCommand::ListChannels { columns } => {
            args.info("Listing channels ...");
            let rows = args.call("GET", "/api/channels", None)?;
            let default = [
                "name",
                "user",
                "vhost",
                "consumer_count",
                "messages_unacknowledged",
            ];
            print_rows(args, &rows, &cols(columns, &default));
        }
        CtlCommand::ListConsumers { columns } => {
            args.info(&format!("Listing consumers in vhost {} ...", args.vhost));
            let rows = args.call("GET", &format!("/api/consumers/{vh}"), None)?;
            let default = [
                "queue.name",
                "channel_details.name",
                "consumer_tag",
                "ack_required",
                "prefetch_count",
            ];
            print_rows(args, &rows, &cols(columns, &default));
        }
        CtlCommand::ListUsers => {
            args.info("Listing users ...");
            let rows = args.call("GET", "/api/users", None)?;
            print_rows(args, &rows, &["name", "tags"]);
        }
        CtlCommand::ListVhosts => {
            args.info("Listing vhosts ...");
            let rows = args.call("GET", "/api/vhosts", None)?;
            print_rows(args, &rows, &["name"]);
        }
        CtlCommand::ListPermissions => {
            args.info(&format!(
                "Listing permissions for vhost \"{}\" ...",
                args.vhost
            ));
            let rows = args.call("GET", &format!("/api/vhosts/{vh}/permissions"), None)?;
            print_rows(args, &rows, &["user", "configure", "write", "read"]);
        }
        CtlCommand::ListPolicies => {
            args.info(&format!(
                "Listing policies for vhost \"{}\" ...",
                args.vhost
            ));
            let rows = args.call("GET", &format!("/api/policies/{vh}"), None)?;
            print_rows(
                args,
                &rows,
                &[
                    "vhost",
                    "name",
                    "pattern",
                    "apply-to",
                    "definition",
                    "priority",
                ],
            );
        }
        CtlCommand::AddUser { name, password } => {
            args.info(&format!("Adding user \"{name}\" ..."));
            if args
                .request("GET", &format!("/api/users/{}", seg(name)), None)?
                .status
                == 200
            {
                return Err(format!("user_already_exists: {name}"));
            }
            args.call(
                "PUT",
                &format!("/api/users/{}", seg(name)),
                Some(&json!({"password": password, "tags": ""})),
            )?;
        }
        CtlCommand::DeleteUser { name } => {
            args.info(&format!("Deleting user \"{name}\" ..."));
            args.call("DELETE", &format!("/api/users/{}", seg(name)), None)?;
        }
        CtlCommand::ChangePassword { name, password } => {
            args.info(&format!("Changing password for user \"{name}\" ..."));
            let user = args.call("GET", &format!("/api/users/{}", seg(name)), None)?;
            let tags = user.get("tags").cloned().unwrap_or(json!([]));
            args.call(
                "PUT",
                &format!("/api/users/{}", seg(name)),
                Some(&json!({"password": password, "tags": tags})),
            )?;
        }
        CtlCommand::SetUserTags { name, tags } => {
            args.info(&format!("Setting tags for user \"{name}\" to {tags:?} ..."));
            let user = args.call("GET", &format!("/api/users/{}", seg(name)), None)?;
            let mut body = json!({"tags": tags.join(",")});
            body["password_hash"] = user.get("password_hash").cloned().unwrap_or(json!(""));
            body["hashing_algorithm"] = user
                .get("hashing_algorithm")
                .cloned()
                .unwrap_or(Value::Null);
            args.call("PUT", &format!("/api/users/{}", seg(name)), Some(&body))?;
        }
        CtlCommand::AddVhost { name } => {
            args.info(&format!("Adding vhost \"{name}\" ..."));
            args.call("PUT", &format!("/api/vhosts/{}", seg(name)), None)?;
        }
        CtlCommand::DeleteVhost { name } => {
            args.info(&format!("Deleting vhost \"{name}\" ..."));
            args.call("DELETE", &format!("/api/vhosts/{}", seg(name)), None)?;
        }
        CtlCommand::SetPermissions {
            user,
            configure,
            write,
            read,
        } => {
            args.info(&format!(
                "Setting permissions for user \"{user}\" in vhost \"{}\" ...",
                args.vhost
            ));
            let body = json!({"configure": configure, "write": write, "read": read});
            args.call(
                "PUT",
                &format!("/api/permissions/{vh}/{}", seg(user)),
                Some(&body),
            )?;
        }
        CtlCommand::ClearPermissions { user } => {
            args.info(&format!(
                "Clearing permissions for user \"{user}\" in vhost \"{}\" ...",
                args.vhost
            ));
            args.call(
                "DELETE",
                &format!("/api/permissions/{vh}/{}", seg(user)),
                None,
            )?;
        }
        CtlCommand::SetPolicy {
            name,
            pattern,
            definition,
            priority,
            apply_to,
        } => {
            args.info(&format!("Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \"{priority}\" for vhost \"{}\" ...", args.vhost));
            let def: Value = serde_json::from_str(definition)
                .map_err(|e| format!("invalid definition JSON: {e}"))?;
            let body = json!({"pattern": pattern, "definition": def, "priority": priority, "apply-to": apply_to});
            args.call(
                "PUT",
                &format!("/api/policies/{vh}/{}", seg(name)),
                Some(&body),
            )?;
        }
        CtlCommand::ClearPolicy { name } => {
            args.info(&format!(
                "Clearing policy \"{name}\" on vhost \"{}\" ...",
                args.vhost
            ));
            args.call("DELETE", &format!("/api/policies/{vh}/{}", seg(name)), None)?;
        }
        CtlCommand::PurgeQueue { name } => {
            args.info(&format!(
                "Purging queue '{name}' in vhost '{}' ...",
                args.vhost
            ));
            args.call(
                "DELETE",
                &format!("/api/queues/{vh}/{}/contents", seg(name)),
                None,
            )?;
        }
        CtlCommand::DeleteQueue { name } => {
            args.info(&format!(
                "Deleting queue '{name}' on vhost '{}' ...",
                args.vhost
            ));
            args.call("DELETE", &format!("/api/queues/{vh}/{}", seg(name)), None)?;
        }
        CtlCommand::ImportDefinitions { file } => {
            args.info(&format!(
                "Importing definitions in JSON from a file at \"{file}\" ..."
            ));
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
            let doc: Value =
                serde_json::from_str(&text).map_err(|e| format!("invalid JSON in {file}: {e}"))?;
            args.call("POST", "/api/definitions", Some(&doc))?;
        }
        CtlCommand::ExportDefinitions { file } => {
            let doc = args.call("GET", "/api/definitions", None)?;
            let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            if file == "-" {
                println!("{text}");
            } else {
                args.info(&format!(
                    "Exporting definitions in JSON to a file at \"{file}\" ..."
                ));
                std::fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))?;
            }
        }
        CtlCommand::Status => {
            let o = args.call("GET", "/api/overview", None)?;
            match args.format {
                Format::Json => println!("{o}"),
                Format::Table => {
                    args.info("Status of node ...");
                    for (label, path) in [
                        ("Node", "node"),
                        ("Cluster name", "cluster_name"),
                        ("RabbitMQ version", "rabbitmq_version"),
                        ("Product", "product_name"),
                        ("Product version", "product_version"),
                        ("Connections", "object_totals.connections"),
                        ("Channels", "object_totals.channels"),
                        ("Queues", "object_totals.queues"),
                        ("Consumers", "object_totals.consumers"),
                        ("Messages", "queue_totals.messages"),
                    ] {
                        println!("{label}: {}", text(&cell(&o, path)));
                    }
                }
            }
        }
        CtlCommand::AwaitStartup { timeout } => {
            let deadline = Instant::now() + Duration::from_secs(*timeout);
            loop {
                match args.call("GET", "/api/healthchecks/node", None) {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!("broker did not start within {timeout} s: {e}"))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_dotted_paths() {
        assert_eq!(text(&cell(&json!({"a": {"b": 1}}), "a.b")), "1");
    }
}
