//! `rabbitmqctl`: RabbitMQ 3.10's commands, messages and exit codes, over the management
//! API. One row of [`COMMANDS`] per command (its usage line, the options it takes, its
//! argument count and the function that runs it); the `list_*` commands come from
//! [`super::lists`].

use std::io::BufRead;

use serde_json::{json, Value};

use super::{
    api,
    cli::{self, allowed_options, arity, Ctx, Failure, OptSpec, Parsed},
    exit, limits, lists, status,
};
use crate::ctl::http::seg;

/// Options of rabbitmqctl's commands besides the global ones.
const OPTIONS: &[OptSpec] = &[
    ("vhost", Some('p'), true),
    ("no-table-headers", None, false),
    ("online", None, false),
    ("offline", None, false),
    ("local", None, false),
    ("apply-to", None, true),
    ("priority", None, true),
    ("if-empty", Some('e'), false),
    ("if-unused", Some('u'), false),
    ("global", None, false),
    ("per-connection-delay", None, true),
    ("limit", None, true),
    ("format", None, true),
    ("skip-if-unchanged", None, false),
    ("description", None, true),
    ("tags", None, true),
    ("default-queue-type", None, true),
    ("user", None, true),
];

/// One command: name, usage line, options, argument count (min, max), what runs it.
pub(crate) struct Command {
    pub(crate) name: &'static str,
    pub(crate) usage: &'static str,
    options: &'static [&'static str],
    args: (usize, usize),
    run: fn(&Ctx) -> Result<(), Failure>,
}

const NO_LIMIT: usize = usize::MAX;

pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "add_user", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] add_user <username> <password>", options: &[], args: (1, 2), run: add_user },
    Command { name: "delete_user", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] delete_user <username>", options: &[], args: (1, 1), run: delete_user },
    Command { name: "change_password", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] change_password <username> <password>", options: &[], args: (2, 2), run: change_password },
    Command { name: "set_user_tags", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_user_tags <username> <tag> [...]", options: &[], args: (1, NO_LIMIT), run: set_user_tags },
    Command { name: "add_vhost", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] add_vhost <vhost> [--description <description> --tags \"<tag1>,<tag2>,<...>\" --default-queue-type <quorum|classic|stream>]", options: &["description", "tags", "default-queue-type"], args: (1, 1), run: add_vhost },
    Command { name: "delete_vhost", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] delete_vhost <vhost>", options: &[], args: (1, 1), run: delete_vhost },
    Command { name: "set_permissions", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_permissions [--vhost <vhost>] <username> <conf> <write> <read>", options: &["vhost"], args: (4, 4), run: set_permissions },
    Command { name: "clear_permissions", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] clear_permissions [--vhost <vhost>] <username>", options: &["vhost"], args: (1, 1), run: clear_permissions },
    Command { name: "set_topic_permissions", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_topic_permissions [--vhost <vhost>] <username> <exchange> <write> <read>", options: &["vhost"], args: (4, 4), run: set_topic_permissions },
    Command { name: "clear_topic_permissions", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] clear_topic_permissions [--vhost <vhost>] <username> [<exchange>]", options: &["vhost"], args: (1, 2), run: clear_topic_permissions },
    Command { name: "set_vhost_limits", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_vhost_limits [--vhost <vhost>] <definition>", options: &["vhost"], args: (1, 1), run: limits::set_vhost_limits },
    Command { name: "clear_vhost_limits", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] clear_vhost_limits [--vhost <vhost>]", options: &["vhost"], args: (0, 0), run: limits::clear_vhost_limits },
    Command { name: "list_vhost_limits", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_vhost_limits [--vhost <vhost>] [--global] [--no-table-headers]", options: &["vhost", "global", "no-table-headers"], args: (0, 0), run: limits::list_vhost_limits },
    Command { name: "set_user_limits", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_user_limits <username> <definition>", options: &[], args: (2, 2), run: limits::set_user_limits },
    Command { name: "clear_user_limits", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] clear_user_limits <username> <limit_type> | all", options: &[], args: (2, 2), run: limits::clear_user_limits },
    Command { name: "list_user_limits", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] list_user_limits [--user <username>] [--global]", options: &["user", "global"], args: (0, 0), run: limits::list_user_limits },
    Command { name: "set_policy", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>", options: &["vhost", "priority", "apply-to"], args: (3, 3), run: set_policy },
    Command { name: "clear_policy", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] clear_policy [--vhost <vhost>] <name>", options: &["vhost"], args: (1, 1), run: clear_policy },
    Command { name: "purge_queue", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] purge_queue [--vhost <vhost>] <queue>", options: &["vhost"], args: (1, 1), run: purge_queue },
    Command { name: "delete_queue", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] delete_queue [--vhost <vhost>] <queue_name> [--if-empty|-e] [--if-unused|-u]", options: &["vhost", "if-empty", "if-unused"], args: (1, 1), run: delete_queue },
    Command { name: "close_connection", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] close_connection <connection pid> <explanation>", options: &[], args: (2, 2), run: close_connection },
    Command { name: "close_all_connections", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] close_all_connections [--vhost <vhost> --limit <limit>] [-n <node> --global] [--per-connection-delay <delay>] <explanation>", options: &["vhost", "global", "per-connection-delay", "limit"], args: (1, 1), run: close_all_connections },
    Command { name: "import_definitions", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] import_definitions <file_path | \"-\"> [--format <json | erlang>] [--skip-if-unchanged] [--timeout <timeout>]", options: &["format", "skip-if-unchanged"], args: (0, 1), run: import_definitions },
    Command { name: "export_definitions", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] export_definitions <file_path | \"-\"> [--format <json | erlang>]", options: &["format"], args: (1, 1), run: export_definitions },
    Command { name: "status", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] status [--unit <unit>]", options: &[], args: (0, 0), run: status::status },
    Command { name: "await_startup", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] await_startup", options: &[], args: (0, 0), run: await_startup },
    Command { name: "wait", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] wait [<pidfile>] [--pid|-P <pid>]", options: &[], args: (1, 1), run: wait },
    Command { name: "set_vm_memory_high_watermark", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_vm_memory_high_watermark <fraction> | absolute <value>", options: &[], args: (1, 2), run: set_vm_memory_high_watermark },
    Command { name: "set_disk_free_limit", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] set_disk_free_limit <disk_limit> | mem_relative <fraction>", options: &[], args: (1, 2), run: set_disk_free_limit },
    Command { name: "trace_on", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] trace_on [--vhost <vhost>]", options: &["vhost"], args: (0, NO_LIMIT), run: trace_on },
    Command { name: "trace_off", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] trace_off [--vhost <vhost>]", options: &["vhost"], args: (0, NO_LIMIT), run: trace_off },
    Command { name: "version", usage: "rabbitmqctl [--node <node>] [--longnames] [--quiet] version", options: &[], args: (0, 0), run: version },
];

/// Every command name, lists included, for usage and suggestions.
pub(crate) fn names() -> Vec<&'static str> {
    let mut all: Vec<&str> = lists::LISTS.iter().map(|l| l.name).collect();
    all.extend(COMMANDS.iter().map(|c| c.name));
    all.sort_unstable();
    all
}

pub(crate) fn options() -> Vec<OptSpec> {
    cli::GLOBAL_OPTIONS.iter().chain(OPTIONS).copied().collect()
}

pub(crate) fn main(args: &[String]) -> u8 {
    let p = cli::parse(args, &options());
    run_tool("rabbitmqctl", &p, &names(), |name| {
        lists::find(name)
            .map(|def| (def.usage, LIST_OPTIONS, (0, NO_LIMIT), Runner::List(def)))
            .or_else(|| {
                COMMANDS
                    .iter()
                    .find(|c| c.name == name)
                    .map(|c| (c.usage, c.options, c.args, Runner::Fn(c.run)))
            })
    })
}

const LIST_OPTIONS: &[&str] = &["vhost", "no-table-headers", "online", "offline", "local"];

/// What runs a command.
pub(crate) enum Runner {
    List(&'static lists::ListDef),
    Fn(fn(&Ctx) -> Result<(), Failure>),
}

/// A command found by name: usage line, options, argument count, runner.
pub(crate) type Found = (
    &'static str,
    &'static [&'static str],
    (usize, usize),
    Runner,
);

/// Runs the command `p` names with `lookup`, and prints its failure as the tool does.
pub(crate) fn run_tool(
    tool: &str,
    p: &Parsed,
    known: &[&str],
    lookup: impl Fn(&str) -> Option<Found>,
) -> u8 {
    let usage = cli::tool_usage(tool, known);
    let Some(name) = p.command() else {
        eprintln!("\n{usage}");
        return exit::USAGE;
    };
    if name == "help" {
        println!("{usage}");
        return exit::OK;
    }
    let Some((cmd_usage, opts, (min, max), runner)) = lookup(name) else {
        eprint!("{}", cli::unknown_command(name, known, &usage));
        return exit::USAGE;
    };
    let ctx = Ctx::new(p);
    let result = allowed_options(p, opts)
        .and_then(|()| match runner {
            Runner::List(_) => Ok(()),
            Runner::Fn(_) => arity(p, min, max),
        })
        .and_then(|()| match runner {
            Runner::List(def) => lists::run(&ctx, def),
            Runner::Fn(f) => f(&ctx),
        });
    match result {
        Ok(()) => {
            ctx.flush();
            exit::OK
        }
        Err(f) => {
            eprint!("{}", f.render(p, ctx.node(), cmd_usage));
            f.code()
        }
    }
}

fn arg(ctx: &Ctx, i: usize) -> String {
    ctx.p.args().get(i).cloned().unwrap_or_default()
}

fn user_path(name: &str) -> String {
    format!("/api/users/{}", seg(name))
}

fn no_user(name: &str) -> Failure {
    Failure::Error(exit::NO_USER, format!("User \"{name}\" does not exist"))
}

fn add_user(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    ctx.info(format!("Adding user \"{name}\" ..."));
    let password = match ctx.p.args().get(1) {
        Some(p) => p.clone(),
        None => {
            ctx.flush();
            if !ctx.p.quiet() {
                println!("Password: ");
            }
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if line.is_empty() {
                return Err(Failure::Error(
                    exit::DATA_ERR,
                    "Password is not provided via argument or stdin".into(),
                ));
            }
            line
        }
    };
    if ctx.request("GET", &user_path(&name), None)?.status == 200 {
        return Err(Failure::Error(
            exit::SOFTWARE,
            format!("User \"{name}\" already exists"),
        ));
    }
    let body = json!({"password": password, "tags": ""});
    ctx.call("PUT", &user_path(&name), Some(&body))?;
    ctx.info("Done. Don't forget to grant the user permissions to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.");
    Ok(())
}

fn delete_user(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    ctx.info(format!("Deleting user \"{name}\" ..."));
    let reply = ctx.request("DELETE", &user_path(&name), None)?;
    match reply.status {
        404 => Err(no_user(&name)),
        s if s >= 400 => Err(Failure::Error(exit::SOFTWARE, api::reason(&reply))),
        _ => Ok(()),
    }
}

/// The user's record, or "does not exist" (67).
fn get_user(ctx: &Ctx, name: &str) -> Result<Value, Failure> {
    let reply = ctx.request("GET", &user_path(name), None)?;
    match reply.status {
        404 => Err(no_user(name)),
        s if s >= 400 => Err(Failure::Error(exit::SOFTWARE, api::reason(&reply))),
        _ => Ok(api::json(&reply)),
    }
}

fn change_password(ctx: &Ctx) -> Result<(), Failure> {
    let (name, password) = (arg(ctx, 0), arg(ctx, 1));
    ctx.info(format!("Changing password for user \"{name}\" ..."));
    let user = get_user(ctx, &name)?;
    let tags = user.get("tags").cloned().unwrap_or(json!(""));
    let body = json!({"password": password, "tags": tags});
    ctx.call("PUT", &user_path(&name), Some(&body))?;
    Ok(())
}

fn set_user_tags(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    let tags = &ctx.p.args()[1..];
    ctx.info(format!(
        "Setting tags for user \"{name}\" to [{}] ...",
        tags.join(", ")
    ));
    let user = get_user(ctx, &name)?;
    let body = json!({
        "tags": tags.join(","),
        "password_hash": user.get("password_hash").cloned().unwrap_or(json!("")),
        "hashing_algorithm": user.get("hashing_algorithm").cloned().unwrap_or(Value::Null),
    });
    ctx.call("PUT", &user_path(&name), Some(&body))?;
    Ok(())
}

fn add_vhost(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    ctx.info(format!("Adding vhost \"{name}\" ..."));
    let mut body = json!({});
    if let Some(d) = ctx.p.value("description") {
        body["description"] = json!(d);
    }
    if let Some(t) = ctx.p.value("tags") {
        body["tags"] = json!(t);
    }
    if let Some(q) = ctx.p.value("default-queue-type") {
        body["default_queue_type"] = json!(q);
    }
    ctx.call("PUT", &format!("/api/vhosts/{}", seg(&name)), Some(&body))?;
    Ok(())
}

fn delete_vhost(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    ctx.info(format!("Deleting vhost \"{name}\" ..."));
    let reply = ctx.request("DELETE", &format!("/api/vhosts/{}", seg(&name)), None)?;
    match reply.status {
        404 => Err(Failure::Bare(
            exit::DATA_ERR,
            format!("Virtual host '{name}' does not exist"),
        )),
        s if s >= 400 => Err(Failure::Error(exit::SOFTWARE, api::reason(&reply))),
        _ => Ok(()),
    }
}

/// Why a permission request failed: the user (67) or the vhost (69) does not exist, or
/// the API's reason.
fn permission_failure(ctx: &Ctx, user: &str, reply: &crate::ctl::http::Reply) -> Failure {
    let vhost = ctx.vhost();
    if matches!(ctx.request("GET", &user_path(user), None), Ok(r) if r.status == 404) {
        return Failure::Error(exit::NO_USER, format!("User {user} does not exist"));
    }
    let path = format!("/api/vhosts/{}", seg(vhost));
    if matches!(ctx.request("GET", &path, None), Ok(r) if r.status == 404) {
        return Failure::Error(
            exit::UNAVAILABLE,
            format!("Virtual host {vhost} does not exist"),
        );
    }
    Failure::Error(exit::SOFTWARE, api::reason(reply))
}

/// A permission change: `method` on `path`; a 404 is fine when `missing_ok` and both the
/// user and the vhost exist.
fn permission_call(
    ctx: &Ctx,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    missing_ok: bool,
) -> Result<(), Failure> {
    let reply = ctx.request(method, path, body)?;
    if reply.status < 400 {
        return Ok(());
    }
    match permission_failure(ctx, user, &reply) {
        Failure::Error(exit::SOFTWARE, _) if missing_ok && reply.status == 404 => Ok(()),
        f => Err(f),
    }
}

fn set_permissions(ctx: &Ctx) -> Result<(), Failure> {
    let user = arg(ctx, 0);
    ctx.info(format!(
        "Setting permissions for user \"{user}\" in vhost \"{}\" ...",
        ctx.vhost()
    ));
    let body = json!({"configure": arg(ctx, 1), "write": arg(ctx, 2), "read": arg(ctx, 3)});
    let path = format!("/api/permissions/{}/{}", seg(ctx.vhost()), seg(&user));
    permission_call(ctx, &user, "PUT", &path, Some(&body), false)
}

fn clear_permissions(ctx: &Ctx) -> Result<(), Failure> {
    let user = arg(ctx, 0);
    ctx.info(format!(
        "Clearing permissions for user \"{user}\" in vhost \"{}\" ...",
        ctx.vhost()
    ));
    let path = format!("/api/permissions/{}/{}", seg(ctx.vhost()), seg(&user));
    permission_call(ctx, &user, "DELETE", &path, None, true)
}

fn set_topic_permissions(ctx: &Ctx) -> Result<(), Failure> {
    let (user, exchange) = (arg(ctx, 0), arg(ctx, 1));
    ctx.info(format!(
        "Setting topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{}\" ...",
        ctx.vhost()
    ));
    let body = json!({"exchange": exchange, "write": arg(ctx, 2), "read": arg(ctx, 3)});
    let path = format!("/api/topic-permissions/{}/{}", seg(ctx.vhost()), seg(&user));
    permission_call(ctx, &user, "PUT", &path, Some(&body), false)
}

fn clear_topic_permissions(ctx: &Ctx) -> Result<(), Failure> {
    let user = arg(ctx, 0);
    let mut path = format!("/api/topic-permissions/{}/{}", seg(ctx.vhost()), seg(&user));
    match ctx.p.args().get(1) {
        Some(x) => {
            ctx.info(format!(
                "Clearing topic permissions on \"{x}\" for user \"{user}\" in vhost \"{}\" ...",
                ctx.vhost()
            ));
            path = format!("{path}/{}", seg(x));
        }
        None => ctx.info(format!(
            "Clearing topic permissions for user \"{user}\" in vhost \"{}\" ...",
            ctx.vhost()
        )),
    }
    permission_call(ctx, &user, "DELETE", &path, None, true)
}

fn set_policy(ctx: &Ctx) -> Result<(), Failure> {
    let (name, pattern, definition) = (arg(ctx, 0), arg(ctx, 1), arg(ctx, 2));
    let priority: i64 = match ctx.p.value("priority") {
        None => 0,
        Some(p) => p.parse().map_err(|_| {
            Failure::Usage(exit::USAGE, format!("priority must be an integer, not {p}"))
        })?,
    };
    ctx.info(format!(
        "Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \"{priority}\" for vhost \"{}\" ...",
        ctx.vhost()
    ));
    let def: Value = serde_json::from_str(&definition).map_err(|_| {
        ctx.flush();
        Failure::Error(
            exit::UNAVAILABLE,
            "JSON decoding error. Reason: badarg".into(),
        )
    })?;
    let body = json!({
        "pattern": pattern,
        "definition": def,
        "priority": priority,
        "apply-to": ctx.p.value("apply-to").unwrap_or("all"),
    });
    let path = format!("/api/policies/{}/{}", seg(ctx.vhost()), seg(&name));
    let reply = ctx.request("PUT", &path, Some(&body))?;
    match reply.status {
        404 => Err(Failure::Error(
            exit::UNAVAILABLE,
            format!("Virtual host {} does not exist", ctx.vhost()),
        )),
        s if s >= 400 => Err(Failure::Error(
            exit::DATA_ERR,
            format!("Validation failed\n\n{}", api::reason(&reply)),
        )),
        _ => Ok(()),
    }
}

fn clear_policy(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    ctx.info(format!(
        "Clearing policy \"{name}\" on vhost \"{}\" ...",
        ctx.vhost()
    ));
    let path = format!("/api/policies/{}/{}", seg(ctx.vhost()), seg(&name));
    let reply = ctx.request("DELETE", &path, None)?;
    match reply.status {
        404 => Err(Failure::Error(
            exit::UNAVAILABLE,
            "Parameter does not exist".into(),
        )),
        s if s >= 400 => Err(Failure::Error(exit::SOFTWARE, api::reason(&reply))),
        _ => Ok(()),
    }
}

fn queue_path(ctx: &Ctx, name: &str) -> String {
    format!("/api/queues/{}/{}", seg(ctx.vhost()), seg(name))
}

fn purge_queue(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    ctx.info(format!(
        "Purging queue '{name}' in vhost '{}' ...",
        ctx.vhost()
    ));
    let reply = ctx.request(
        "DELETE",
        &format!("{}/contents", queue_path(ctx, &name)),
        None,
    )?;
    match reply.status {
        404 => Err(Failure::Error(exit::UNAVAILABLE, "not_found".into())),
        s if s >= 400 => Err(Failure::Error(exit::SOFTWARE, api::reason(&reply))),
        _ => Ok(()),
    }
}

fn delete_queue(ctx: &Ctx) -> Result<(), Failure> {
    let name = arg(ctx, 0);
    let (empty, unused) = (ctx.p.flag("if-empty"), ctx.p.flag("if-unused"));
    let condition = match (empty, unused) {
        (true, true) => " if queue is empty and unused",
        (true, false) => " if queue is empty",
        (false, true) => " if queue is unused",
        (false, false) => "",
    };
    ctx.info(format!(
        "Deleting queue '{name}' on vhost '{}'{condition} ...",
        ctx.vhost()
    ));
    let reply = ctx.request("GET", &queue_path(ctx, &name), None)?;
    if reply.status == 404 {
        return Err(Failure::Error(exit::USAGE, "Queue not found".into()));
    }
    let ready = api::json(&reply)
        .get("messages_ready")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut query = Vec::new();
    if empty {
        query.push("if-empty=true");
    }
    if unused {
        query.push("if-unused=true");
    }
    let mut path = queue_path(ctx, &name);
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let reply = ctx.request("DELETE", &path, None)?;
    match reply.status {
        404 => Err(Failure::Error(exit::USAGE, "Queue not found".into())),
        s if s >= 400 => Err(Failure::Error(exit::SOFTWARE, api::reason(&reply))),
        _ => {
            println!("Queue was successfully deleted with {ready} ready messages");
            Ok(())
        }
    }
}

fn close_connection(ctx: &Ctx) -> Result<(), Failure> {
    let (pid, why) = (arg(ctx, 0), arg(ctx, 1));
    ctx.info(format!("Closing connection {pid}, reason: {why}..."));
    let reason = vec![format!("X-Reason: {}", why.replace(['\r', '\n'], " "))];
    // Like rabbitmqctl, a connection that is already gone is not an error.
    ctx.request_with(
        "DELETE",
        &format!("/api/connections/{}", seg(&pid)),
        None,
        &reason,
    )?;
    Ok(())
}

fn close_all_connections(ctx: &Ctx) -> Result<(), Failure> {
    let why = arg(ctx, 0);
    let global = ctx.p.flag("global");
    if global {
        ctx.info(format!(
            "Closing all connections to node {} (across all vhosts), reason: {why}...",
            ctx.node()
        ));
    } else {
        ctx.info(format!(
            "Closing all connections in vhost {}, reason: {why}...",
            ctx.vhost()
        ));
    }
    let limit: usize = match ctx.p.value("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| Failure::Usage(exit::USAGE, format!("limit must be a number: {l}")))?,
        None => usize::MAX,
    };
    let delay_ms: u64 = ctx
        .p
        .value("per-connection-delay")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let path = if global {
        "/api/connections".to_string()
    } else {
        format!("/api/vhosts/{}/connections", seg(ctx.vhost()))
    };
    let list = ctx.call("GET", &path, None)?;
    let names: Vec<String> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .take(limit)
        .collect();
    let reason = vec![format!("X-Reason: {}", why.replace(['\r', '\n'], " "))];
    for name in &names {
        ctx.request_with(
            "DELETE",
            &format!("/api/connections/{}", seg(name)),
            None,
            &reason,
        )?;
        if delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        }
    }
    println!("Closed {} connections", names.len());
    Ok(())
}

fn import_definitions(ctx: &Ctx) -> Result<(), Failure> {
    let file = ctx.p.args().first().cloned().unwrap_or_else(|| "-".into());
    if ctx.p.value("format").is_some_and(|f| f != "json") {
        return Err(Failure::Usage(
            exit::USAGE,
            "warren imports definitions in JSON only (--format json)".into(),
        ));
    }
    let text = if file == "-" {
        ctx.info("Importing definitions in JSON from standard input ...");
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            Failure::Error(exit::DATA_ERR, format!("cannot read standard input: {e}"))
        })?;
        s
    } else {
        if !std::path::Path::new(&file).is_file() {
            return Err(Failure::Usage(
                exit::DATA_ERR,
                format!("Bad argument: File {file} does not exist"),
            ));
        }
        ctx.info(format!(
            "Importing definitions in JSON from a file at \"{file}\" ..."
        ));
        std::fs::read_to_string(&file)
            .map_err(|e| Failure::Error(exit::DATA_ERR, format!("cannot read {file}: {e}")))?
    };
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Error(exit::DATA_ERR, format!("Failed to decode JSON: {e}")))?;
    let reply = ctx.request("POST", "/api/definitions", Some(&doc))?;
    if reply.status >= 400 {
        return Err(Failure::Error(exit::DATA_ERR, api::reason(&reply)));
    }
    ctx.info("Successfully started definition import. This process is asynchronous and can take some time.");
    Ok(())
}

fn export_definitions(ctx: &Ctx) -> Result<(), Failure> {
    let file = arg(ctx, 0);
    if ctx.p.value("format").is_some_and(|f| f != "json") {
        return Err(Failure::Usage(
            exit::USAGE,
            "warren exports definitions in JSON only (--format json)".into(),
        ));
    }
    if file != "-" {
        ctx.info(format!(
            "Exporting definitions in JSON to a file at \"{file}\" ..."
        ));
    }
    let doc = ctx.call("GET", "/api/definitions", None)?;
    if file == "-" {
        println!("{doc}");
    } else {
        std::fs::write(&file, doc.to_string())
            .map_err(|e| Failure::Error(exit::SOFTWARE, format!("cannot write {file}: {e}")))?;
    }
    Ok(())
}

/// Polls the API until it answers; `false` when `deadline` passed first.
fn await_api(ctx: &Ctx, deadline: Option<std::time::Instant>) -> bool {
    loop {
        if matches!(ctx.api.send("GET", "/api/overview", None, &[]), Ok(r) if r.status < 500) {
            return true;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn await_startup(ctx: &Ctx) -> Result<(), Failure> {
    let secs = ctx.p.timeout().unwrap_or(300.0).max(0.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    if await_api(ctx, Some(deadline)) {
        Ok(())
    } else {
        Err(Failure::Unreachable(format!(
            "the management API at {} did not answer within {secs} seconds",
            ctx.api.addr
        )))
    }
}

/// `wait PIDFILE`: the PID file appears (warren writes `DATA_DIR/warren.pid`), then the
/// broker answers.
fn wait(ctx: &Ctx) -> Result<(), Failure> {
    let file = arg(ctx, 0);
    let timeout = ctx.p.timeout();
    let deadline =
        timeout.map(|t| std::time::Instant::now() + std::time::Duration::from_secs_f64(t.max(0.0)));
    let timed_out = || {
        Failure::Bare(
            exit::TEMP_FAIL,
            format!(
                "Error: operation wait on node {} timed out. Timeout value used: {}",
                ctx.node(),
                (timeout.unwrap_or(0.0) * 1000.0) as u64
            ),
        )
    };
    let say = |line: String| {
        if !ctx.p.quiet() {
            println!("{line}");
        }
    };
    say(format!("Waiting for pid file '{file}' to appear"));
    let pid = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(pid) = text
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<u32>().ok())
        {
            break pid;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(timed_out());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    say(format!("pid is {pid}"));
    say(format!(
        "Waiting for erlang distribution on node '{}' while OS process '{pid}' is running",
        ctx.node()
    ));
    say(format!(
        "Waiting for applications 'rabbit_and_plugins' to start on node '{}'",
        ctx.node()
    ));
    if !await_api(ctx, deadline) {
        return Err(timed_out());
    }
    say(format!(
        "Applications 'rabbit_and_plugins' are running on node {}",
        ctx.node()
    ));
    Ok(())
}

fn set_vm_memory_high_watermark(ctx: &Ctx) -> Result<(), Failure> {
    let args = ctx.p.args();
    let (body, shown) = match args {
        [f] => {
            let x: f64 = f.parse().map_err(|_| {
                Failure::Usage(
                    exit::USAGE,
                    format!("The threshold should be a fraction between 0.0 and 1.0, not {f}"),
                )
            })?;
            (json!({"relative": x}), f.clone())
        }
        [kind, bytes] if kind == "absolute" => {
            (json!({"absolute": bytes}), format!("{bytes} bytes"))
        }
        _ => {
            return Err(Failure::Usage(
                exit::USAGE,
                "expected <fraction> or absolute <value>".into(),
            ))
        }
    };
    ctx.info(format!(
        "Setting memory threshold on {} to {shown} ...",
        ctx.node()
    ));
    let reply = ctx.request("PUT", "/api/warren/vm-memory-high-watermark", Some(&body))?;
    if reply.status >= 400 {
        return Err(Failure::Error(exit::DATA_ERR, api::reason(&reply)));
    }
    Ok(())
}

fn set_disk_free_limit(ctx: &Ctx) -> Result<(), Failure> {
    let body = match ctx.p.args() {
        [bytes] => json!({"limit": bytes}),
        [kind, _] if kind == "mem_relative" => {
            return Err(Failure::Error(
                exit::SOFTWARE,
                "warren takes an absolute disk free limit (e.g. 2GB), not mem_relative".into(),
            ))
        }
        _ => {
            return Err(Failure::Usage(
                exit::USAGE,
                "expected <disk_limit> or mem_relative <fraction>".into(),
            ))
        }
    };
    ctx.info(format!(
        "Setting disk free limit on {} to {} bytes ...",
        ctx.node(),
        arg(ctx, 0)
    ));
    let reply = ctx.request("PUT", "/api/warren/disk-free-limit", Some(&body))?;
    if reply.status >= 400 {
        return Err(Failure::Error(exit::DATA_ERR, api::reason(&reply)));
    }
    Ok(())
}

fn trace_on(ctx: &Ctx) -> Result<(), Failure> {
    set_tracing(ctx, true)
}

fn trace_off(ctx: &Ctx) -> Result<(), Failure> {
    set_tracing(ctx, false)
}

/// Firehose tracing through the API's vhost `tracing` field. RabbitMQ 3.10 (which
/// ignores extra arguments here) answers success for a vhost that does not exist; the
/// API's PUT would create one, so nothing is changed then.
fn set_tracing(ctx: &Ctx, on: bool) -> Result<(), Failure> {
    let vhost = ctx.vhost();
    let (verb, done) = if on {
        ("Starting", "enabled")
    } else {
        ("Stopping", "disabled")
    };
    ctx.info(format!("{verb} tracing for vhost \"{vhost}\" ..."));
    let path = format!("/api/vhosts/{}", seg(vhost));
    if ctx.request("GET", &path, None)?.status != 404 {
        ctx.call("PUT", &path, Some(&json!({ "tracing": on })))?;
    }
    println!("Trace {done} for vhost {vhost}");
    Ok(())
}

fn version(_ctx: &Ctx) -> Result<(), Failure> {
    println!(
        "{}",
        warren_server::ServerConfig::default().rabbitmq_version
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_table_is_consistent() {
        let all = names();
        let mut sorted = all.clone();
        sorted.dedup();
        assert_eq!(all.len(), sorted.len(), "duplicate command names");
        for c in COMMANDS {
            assert!(
                c.usage.contains(&format!("] {} ", c.name)) || c.usage.ends_with(c.name),
                "{}",
                c.name
            );
            for o in c.options {
                assert!(
                    OPTIONS.iter().any(|s| s.0 == *o),
                    "{} takes unknown --{o}",
                    c.name
                );
            }
            assert!(c.args.0 <= c.args.1);
        }
        for required in [
            "list_queues",
            "list_exchanges",
            "list_bindings",
            "list_connections",
            "list_channels",
            "list_consumers",
            "list_users",
            "list_vhosts",
            "list_permissions",
            "list_policies",
            "add_user",
            "delete_user",
            "change_password",
            "set_user_tags",
            "add_vhost",
            "delete_vhost",
            "set_permissions",
            "clear_permissions",
            "set_topic_permissions",
            "set_vhost_limits",
            "clear_vhost_limits",
            "list_vhost_limits",
            "set_user_limits",
            "clear_user_limits",
            "list_user_limits",
            "set_policy",
            "clear_policy",
            "purge_queue",
            "delete_queue",
            "close_connection",
            "close_all_connections",
            "import_definitions",
            "export_definitions",
            "status",
            "await_startup",
            "wait",
            "set_vm_memory_high_watermark",
            "set_disk_free_limit",
        ] {
            assert!(all.contains(&required), "{required}");
        }
    }

    #[test]
    fn unknown_commands_suggest_like_rabbitmqctl() {
        assert_eq!(
            cli::unknown_command("list_nothing", &names(), "U"),
            "\nCommand 'list_nothing' not found. \nDid you mean 'list_bindings'? \n\n"
        );
    }

    #[test]
    fn set_policy_options_parse() {
        let args: Vec<String> = [
            "set_policy",
            "-p",
            "v1",
            "p1",
            "^q",
            "{}",
            "--apply-to",
            "queues",
            "--priority",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = cli::parse(&args, &options());
        assert_eq!(p.args(), ["p1", "^q", "{}"]);
        assert_eq!(p.value("apply-to"), Some("queues"));
        assert_eq!(p.value("priority"), Some("3"));
        assert_eq!(p.vhost(), "v1");
        assert_eq!(
            allowed_options(&p, &["vhost", "priority", "apply-to"]),
            Ok(())
        );
        assert!(allowed_options(&p, &["vhost"]).is_err());
    }
}
