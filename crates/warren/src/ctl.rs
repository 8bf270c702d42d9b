//! `warren ctl`: what CI scripts use from rabbitmqctl and rabbitmqadmin, over the
//! management HTTP API (so it works against warren and RabbitMQ alike). Plain tables for
//! people, `--format json` for scripts.

mod http;
mod list;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use http::seg;
use list::{cell, text};

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
    /// list_queues, list_exchanges ...: one per row of [`list::LISTS`].
    #[command(flatten)]
    List(list::ListCommand),
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
        CtlCommand::List(cmd) => list::run(args, cmd)?,
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
