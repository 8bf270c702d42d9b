//! rabbitmqctl's vhost and user limit commands (`set_vhost_limits`,
//! `clear_vhost_limits`, `list_vhost_limits`, `set_user_limits`, `clear_user_limits`,
//! `list_user_limits`) over `/api/vhost-limits` and `/api/user-limits`, with RabbitMQ
//! 3.10.8's messages and exit codes (tests/fixtures/limits/rabbitmq_3.10.8.json).
//!
//! The API sets and clears one limit at a time; a definition is validated here first
//! (the broker's own rules, `warren_server::limits`), so a bad one changes nothing.

use serde_json::Value;
use warren_server::limits::{LimitScope, Limits};

use super::{
    api,
    cli::{Ctx, Failure},
    exit,
};
use crate::ctl::http::seg;

fn arg(ctx: &Ctx, i: usize) -> String {
    ctx.p.args().get(i).cloned().unwrap_or_default()
}

/// The definition argument as JSON (RabbitMQ decodes it before anything else; the
/// informational line is printed first, as there).
fn decode(ctx: &Ctx, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|_| {
        ctx.flush();
        Failure::Error(
            exit::UNAVAILABLE,
            "JSON decoding error. Reason: badarg".into(),
        )
    })
}

/// The definition checked as the broker checks limits of `scope`.
fn validate(scope: LimitScope, value: &Value) -> Result<Limits, Failure> {
    Limits::from_json(scope, value).map_err(|e| {
        let text = match scope {
            LimitScope::Vhost => e.validation_text(),
            LimitScope::User => e.to_string(),
        };
        Failure::Error(exit::UNAVAILABLE, text)
    })
}

/// A request that must succeed; its JSON.
fn call(ctx: &Ctx, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
    let reply = ctx.request(method, path, body)?;
    if reply.status >= 400 {
        return Err(Failure::Error(exit::UNAVAILABLE, api::reason(&reply)));
    }
    Ok(api::json(&reply))
}

/// Makes the limits at `base` (`/api/vhost-limits/v`) exactly `wanted`, given the
/// limits `current` there now.
fn apply(ctx: &Ctx, base: &str, current: &Value, wanted: &Limits) -> Result<(), Failure> {
    let wanted = wanted.to_json();
    if let Some(set) = wanted.as_object() {
        for (name, value) in set {
            let body = serde_json::json!({ "value": value });
            call(ctx, "PUT", &format!("{base}/{}", seg(name)), Some(&body))?;
        }
    }
    if let Some(old) = current.as_object() {
        for name in old.keys().filter(|n| wanted.get(n.as_str()).is_none()) {
            call(ctx, "DELETE", &format!("{base}/{}", seg(name)), None)?;
        }
    }
    Ok(())
}

/// The `value` of the first entry of a limits list reply (`{}` when there is none).
fn first_value(list: &Value) -> Value {
    list.get(0)
        .and_then(|e| e.get("value"))
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()))
}

fn no_vhost(vhost: &str) -> Failure {
    Failure::Bare(
        exit::DATA_ERR,
        format!("Virtual host '{vhost}' does not exist"),
    )
}

fn no_user(user: &str) -> Failure {
    Failure::Error(exit::UNAVAILABLE, format!("{{:no_such_user, \"{user}\"}}"))
}

/// The vhost's current limits; `no_vhost` when it does not exist.
fn vhost_limits(ctx: &Ctx, vhost: &str) -> Result<Value, Failure> {
    let reply = ctx.request("GET", &format!("/api/vhost-limits/{}", seg(vhost)), None)?;
    match reply.status {
        404 => Err(no_vhost(vhost)),
        s if s >= 400 => Err(Failure::Error(exit::UNAVAILABLE, api::reason(&reply))),
        _ => Ok(first_value(&api::json(&reply))),
    }
}

/// The user's current limits; `no_user` when there is no such user.
fn user_limits(ctx: &Ctx, user: &str) -> Result<Value, Failure> {
    let reply = ctx.request("GET", &format!("/api/user-limits/{}", seg(user)), None)?;
    match reply.status {
        404 => Err(no_user(user)),
        s if s >= 400 => Err(Failure::Error(exit::UNAVAILABLE, api::reason(&reply))),
        _ => Ok(first_value(&api::json(&reply))),
    }
}

/// `set_vhost_limits [-p vhost] <definition>`: replaces the vhost's limits.
pub(crate) fn set_vhost_limits(ctx: &Ctx) -> Result<(), Failure> {
    let (vhost, text) = (ctx.vhost().to_string(), arg(ctx, 0));
    ctx.info(format!(
        "Setting vhost limits to \"{text}\" for vhost \"{vhost}\" ..."
    ));
    let value = decode(ctx, &text)?;
    let current = vhost_limits(ctx, &vhost)?;
    let wanted = validate(LimitScope::Vhost, &value)?;
    apply(
        ctx,
        &format!("/api/vhost-limits/{}", seg(&vhost)),
        &current,
        &wanted,
    )
}

/// `clear_vhost_limits [-p vhost]`: "Parameter does not exist" when it has none.
pub(crate) fn clear_vhost_limits(ctx: &Ctx) -> Result<(), Failure> {
    let vhost = ctx.vhost().to_string();
    ctx.info(format!("Clearing vhost \"{vhost}\" limits ..."));
    let missing = || Failure::Error(exit::UNAVAILABLE, "Parameter does not exist".into());
    let current = vhost_limits(ctx, &vhost).map_err(|_| missing())?;
    if current.as_object().is_none_or(|o| o.is_empty()) {
        return Err(missing());
    }
    apply(
        ctx,
        &format!("/api/vhost-limits/{}", seg(&vhost)),
        &current,
        &Limits::default(),
    )
}

/// `list_vhost_limits [-p vhost] [--global]`.
pub(crate) fn list_vhost_limits(ctx: &Ctx) -> Result<(), Failure> {
    let json = ctx.p.formatter() == "json";
    if ctx.p.flag("global") {
        ctx.info("Listing limits for all vhosts ...");
        let all = call(ctx, "GET", "/api/vhost-limits", None)?;
        let rows: Vec<(String, String)> = entries(&all, "vhost");
        print_global(&rows, "vhost", json, !ctx.p.flag("no-table-headers"));
        return Ok(());
    }
    let vhost = ctx.vhost().to_string();
    ctx.info(format!("Listing limits for vhost \"{vhost}\" ..."));
    let current = vhost_limits(ctx, &vhost)?;
    let empty = current.as_object().is_none_or(|o| o.is_empty());
    match (json, empty) {
        (true, true) => println!("[]"),
        (true, false) => println!(
            "{}",
            serde_json::json!({"node": ctx.node(), "result": "ok", "value": current.to_string()})
        ),
        (false, true) => println!(),
        (false, false) => println!("{current}"),
    }
    Ok(())
}

/// (name, limits as JSON text) of each entry of a limits list.
fn entries(list: &Value, key: &str) -> Vec<(String, String)> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let name = e.get(key).and_then(Value::as_str).unwrap_or_default();
                    let value = e.get("value").cloned().unwrap_or(Value::Null);
                    (name.to_string(), value.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `--global` listing: a table with headers (none when there are no rows), or a
/// JSON list of `{key, limits}` one entry a line.
fn print_global(rows: &[(String, String)], key: &str, json: bool, headers: bool) {
    if json {
        println!("[");
        let lines: Vec<String> = rows
            .iter()
            // In RabbitMQ's key order (a JSON map here would sort them).
            .map(|(n, l)| {
                format!(
                    "{{\"{key}\":{},\"limits\":{}}}",
                    Value::from(n.as_str()),
                    Value::from(l.as_str())
                )
            })
            .collect();
        if !lines.is_empty() {
            println!("{}", lines.join(",\n"));
        }
        println!("]");
        return;
    }
    if rows.is_empty() {
        println!();
        return;
    }
    if headers {
        println!("{key}\tlimits");
    }
    for (n, l) in rows {
        println!("{n}\t{l}");
    }
}

/// `set_user_limits <user> <definition>`: merged into the user's limits.
pub(crate) fn set_user_limits(ctx: &Ctx) -> Result<(), Failure> {
    let (user, text) = (arg(ctx, 0), arg(ctx, 1));
    ctx.info(format!(
        "Setting user limits to \"{text}\" for user \"{user}\" ..."
    ));
    let value = decode(ctx, &text)?;
    let current = user_limits(ctx, &user)?;
    let given = validate(LimitScope::User, &value)?;
    let merged = Limits::from_json(LimitScope::User, &current)
        .unwrap_or_default()
        .merged(&given);
    apply(
        ctx,
        &format!("/api/user-limits/{}", seg(&user)),
        &current,
        &merged,
    )
}

/// `clear_user_limits <user> <limit_type> | all`.
pub(crate) fn clear_user_limits(ctx: &Ctx) -> Result<(), Failure> {
    let (user, which) = (arg(ctx, 0), arg(ctx, 1));
    if which == "all" {
        ctx.info(format!("Clearing all limits for user \"{user}\" ..."));
    } else {
        ctx.info(format!(
            "Clearing \"{which}\" limit for user \"{user}\" ..."
        ));
    }
    let current = user_limits(ctx, &user)?;
    let base = format!("/api/user-limits/{}", seg(&user));
    if which == "all" {
        return apply(ctx, &base, &current, &Limits::default());
    }
    call(ctx, "DELETE", &format!("{base}/{}", seg(&which)), None).map(drop)
}

/// `list_user_limits [--user <user>] [--global]` (the user defaults to guest).
pub(crate) fn list_user_limits(ctx: &Ctx) -> Result<(), Failure> {
    let json = ctx.p.formatter() == "json";
    if ctx.p.flag("global") {
        ctx.info("Listing limits for all users ...");
        let all = call(ctx, "GET", "/api/user-limits", None)?;
        print_global(&entries(&all, "user"), "user", json, true);
        return Ok(());
    }
    let user = ctx.p.value("user").unwrap_or("guest").to_string();
    ctx.info(format!("Listing limits for user \"{user}\" ..."));
    let current = user_limits(ctx, &user)?;
    if json {
        println!("{}", serde_json::json!({"message": current.to_string()}));
    } else {
        println!("{current}");
    }
    Ok(())
}
