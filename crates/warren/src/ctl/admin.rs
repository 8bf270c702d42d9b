//! `warren ctl` commands that change the broker, one enum and one function per family:
//! users, vhosts, permissions, policies, queues, definitions. Each enum is flattened into
//! the ctl command line, so the subcommands keep their names and their order in --help.

use serde_json::{json, Value};

use super::{http::seg, CtlArgs};

#[derive(Debug, clap::Subcommand)]
pub(super) enum UserCommand {
    #[command(name = "add_user", alias = "add-user")]
    AddUser { name: String, password: String },
    #[command(name = "delete_user", alias = "delete-user")]
    DeleteUser { name: String },
    #[command(name = "change_password", alias = "change-password")]
    ChangePassword { name: String, password: String },
    #[command(name = "set_user_tags", alias = "set-user-tags")]
    SetUserTags { name: String, tags: Vec<String> },
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum VhostCommand {
    #[command(name = "add_vhost", alias = "add-vhost")]
    AddVhost { name: String },
    #[command(name = "delete_vhost", alias = "delete-vhost")]
    DeleteVhost { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum PermissionCommand {
    /// configure, write and read regexes of a user in the vhost (-p).
    #[command(name = "set_permissions", alias = "set-permissions")]
    Set {
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    #[command(name = "clear_permissions", alias = "clear-permissions")]
    Clear { user: String },
    /// write and read regexes for routing keys on a topic exchange, for a user in the
    /// vhost (-p).
    #[command(name = "set_topic_permissions", alias = "set-topic-permissions")]
    SetTopic {
        user: String,
        exchange: String,
        write: String,
        read: String,
    },
    /// A user's topic permissions in the vhost (-p): for one exchange, or all of them.
    #[command(name = "clear_topic_permissions", alias = "clear-topic-permissions")]
    ClearTopic {
        user: String,
        exchange: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum PolicyCommand {
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
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum QueueCommand {
    #[command(name = "purge_queue", alias = "purge-queue")]
    PurgeQueue { name: String },
    #[command(name = "delete_queue", alias = "delete-queue")]
    DeleteQueue { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum DefinitionsCommand {
    /// Imports a RabbitMQ definitions file.
    #[command(name = "import_definitions", alias = "import-definitions")]
    ImportDefinitions { file: String },
    /// Writes the definitions to FILE (`-` for stdout).
    #[command(name = "export_definitions", alias = "export-definitions")]
    ExportDefinitions { file: String },
}

fn user_path(name: &str) -> String {
    format!("/api/users/{}", seg(name))
}

pub(super) fn users(args: &CtlArgs, cmd: &UserCommand) -> Result<(), String> {
    match cmd {
        UserCommand::AddUser { name, password } => {
            args.info(&format!("Adding user \"{name}\" ..."));
            if args.request("GET", &user_path(name), None)?.status == 200 {
                return Err(format!("user_already_exists: {name}"));
            }
            let body = json!({"password": password, "tags": ""});
            args.call("PUT", &user_path(name), Some(&body))?;
        }
        UserCommand::DeleteUser { name } => {
            args.info(&format!("Deleting user \"{name}\" ..."));
            args.call("DELETE", &user_path(name), None)?;
        }
        UserCommand::ChangePassword { name, password } => {
            args.info(&format!("Changing password for user \"{name}\" ..."));
            let user = args.call("GET", &user_path(name), None)?;
            let tags = user.get("tags").cloned().unwrap_or(json!([]));
            let body = json!({"password": password, "tags": tags});
            args.call("PUT", &user_path(name), Some(&body))?;
        }
        UserCommand::SetUserTags { name, tags } => {
            args.info(&format!("Setting tags for user \"{name}\" to {tags:?} ..."));
            let user = args.call("GET", &user_path(name), None)?;
            let mut body = json!({"tags": tags.join(",")});
            body["password_hash"] = user.get("password_hash").cloned().unwrap_or(json!(""));
            body["hashing_algorithm"] = user
                .get("hashing_algorithm")
                .cloned()
                .unwrap_or(Value::Null);
            args.call("PUT", &user_path(name), Some(&body))?;
        }
    }
    Ok(())
}

pub(super) fn vhosts(args: &CtlArgs, cmd: &VhostCommand) -> Result<(), String> {
    match cmd {
        VhostCommand::AddVhost { name } => {
            args.info(&format!("Adding vhost \"{name}\" ..."));
            args.call("PUT", &format!("/api/vhosts/{}", seg(name)), None)?;
        }
        VhostCommand::DeleteVhost { name } => {
            args.info(&format!("Deleting vhost \"{name}\" ..."));
            args.call("DELETE", &format!("/api/vhosts/{}", seg(name)), None)?;
        }
    }
    Ok(())
}

pub(super) fn permissions(args: &CtlArgs, cmd: &PermissionCommand) -> Result<(), String> {
    let vh = seg(&args.vhost);
    match cmd {
        PermissionCommand::Set {
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
        PermissionCommand::Clear { user } => {
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
        PermissionCommand::SetTopic { .. } | PermissionCommand::ClearTopic { .. } => {
            topic_permissions(args, cmd)?
        }
    }
    Ok(())
}

/// `set_topic_permissions [-p vhost] user exchange write read` and
/// `clear_topic_permissions [-p vhost] user [exchange]`, as rabbitmqctl takes them.
fn topic_permissions(args: &CtlArgs, cmd: &PermissionCommand) -> Result<(), String> {
    let path = |user: &str| format!("/api/topic-permissions/{}/{}", seg(&args.vhost), seg(user));
    match cmd {
        PermissionCommand::SetTopic {
            user,
            exchange,
            write,
            read,
        } => {
            args.info(&format!(
                "Setting topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{}\" ...",
                args.vhost
            ));
            let body = json!({"exchange": exchange, "write": write, "read": read});
            args.call("PUT", &path(user), Some(&body))?;
        }
        PermissionCommand::ClearTopic { user, exchange } => match exchange {
            Some(x) => {
                args.info(&format!(
                    "Clearing topic permissions on \"{x}\" for user \"{user}\" in vhost \"{}\" ...",
                    args.vhost
                ));
                args.call("DELETE", &format!("{}/{}", path(user), seg(x)), None)?;
            }
            None => {
                args.info(&format!(
                    "Clearing topic permissions for user \"{user}\" in vhost \"{}\" ...",
                    args.vhost
                ));
                args.call("DELETE", &path(user), None)?;
            }
        },
        _ => {}
    }
    Ok(())
}

pub(super) fn policies(args: &CtlArgs, cmd: &PolicyCommand) -> Result<(), String> {
    let vh = seg(&args.vhost);
    match cmd {
        PolicyCommand::SetPolicy {
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
        PolicyCommand::ClearPolicy { name } => {
            args.info(&format!(
                "Clearing policy \"{name}\" on vhost \"{}\" ...",
                args.vhost
            ));
            args.call("DELETE", &format!("/api/policies/{vh}/{}", seg(name)), None)?;
        }
    }
    Ok(())
}

pub(super) fn queues(args: &CtlArgs, cmd: &QueueCommand) -> Result<(), String> {
    let vh = seg(&args.vhost);
    match cmd {
        QueueCommand::PurgeQueue { name } => {
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
        QueueCommand::DeleteQueue { name } => {
            args.info(&format!(
                "Deleting queue '{name}' on vhost '{}' ...",
                args.vhost
            ));
            args.call("DELETE", &format!("/api/queues/{vh}/{}", seg(name)), None)?;
        }
    }
    Ok(())
}

pub(super) fn definitions(args: &CtlArgs, cmd: &DefinitionsCommand) -> Result<(), String> {
    match cmd {
        DefinitionsCommand::ImportDefinitions { file } => {
            args.info(&format!(
                "Importing definitions in JSON from a file at \"{file}\" ..."
            ));
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
            let doc: Value =
                serde_json::from_str(&text).map_err(|e| format!("invalid JSON in {file}: {e}"))?;
            args.call("POST", "/api/definitions", Some(&doc))?;
        }
        DefinitionsCommand::ExportDefinitions { file } => {
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
    }
    Ok(())
}
