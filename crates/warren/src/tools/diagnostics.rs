//! `rabbitmq-diagnostics`: the health checks and reports container health checks and
//! scripts call, with RabbitMQ 3.10's messages and exit codes.

use std::{net::TcpStream, time::Duration};

use serde_json::Value;

use super::{
    cli::{self, Ctx, Failure, OptSpec},
    exit, lists,
    rabbitmqctl::{run_tool, Found, Runner},
    status,
};

type Run = fn(&Ctx) -> Result<(), Failure>;

/// (name, usage line, runner).
const COMMANDS: &[(&str, &str, Run)] = &[
    (
        "ping",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] ping",
        ping,
    ),
    (
        "check_running",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] check_running",
        check_running,
    ),
    (
        "is_running",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] is_running",
        is_running,
    ),
    (
        "check_local_alarms",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] check_local_alarms",
        check_local_alarms,
    ),
    (
        "check_alarms",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] check_alarms",
        check_alarms,
    ),
    (
        "alarms",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] alarms",
        alarms,
    ),
    (
        "check_port_connectivity",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] check_port_connectivity",
        check_port_connectivity,
    ),
    (
        "check_virtual_hosts",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] check_virtual_hosts",
        check_virtual_hosts,
    ),
    (
        "listeners",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] listeners",
        listeners,
    ),
    (
        "check_certificate_expiration",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] check_certificate_expiration [--unit <days|weeks|months|years>] [--within <period>]",
        check_certificate_expiration,
    ),
    (
        "status",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] status [--unit <unit>]",
        status::status,
    ),
    (
        "server_version",
        "rabbitmq-diagnostics [--node <node>] [--longnames] [--quiet] server_version",
        server_version,
    ),
];

/// The list commands rabbitmq-diagnostics shares with rabbitmqctl.
const LISTS: &[&str] = &[
    "list_bindings",
    "list_channels",
    "list_connections",
    "list_consumers",
    "list_exchanges",
    "list_permissions",
    "list_policies",
    "list_queues",
    "list_topic_permissions",
    "list_users",
    "list_vhosts",
];

const OPTIONS: &[OptSpec] = &[
    ("vhost", Some('p'), true),
    ("no-table-headers", None, false),
    ("online", None, false),
    ("offline", None, false),
    ("local", None, false),
    ("within", None, true),
    ("unit", None, true),
];

pub(crate) fn main(args: &[String]) -> u8 {
    let specs: Vec<OptSpec> = cli::GLOBAL_OPTIONS.iter().chain(OPTIONS).copied().collect();
    let p = cli::parse(args, &specs);
    let mut known: Vec<&str> = COMMANDS
        .iter()
        .map(|c| c.0)
        .chain(LISTS.iter().copied())
        .collect();
    known.sort_unstable();
    run_tool(
        "rabbitmq-diagnostics",
        &p,
        &known,
        |name| -> Option<Found> {
            if LISTS.contains(&name) {
                let def = lists::find(name)?;
                return Some((
                    def.usage,
                    &["vhost", "no-table-headers", "online", "offline", "local"],
                    (0, usize::MAX),
                    Runner::List(def),
                ));
            }
            let (_, usage, run) = COMMANDS.iter().find(|c| c.0 == name)?;
            let allowed: &[&str] = if name == "check_certificate_expiration" {
                &["within", "unit"]
            } else {
                &[]
            };
            Some((usage, allowed, (0, 0), Runner::Fn(*run)))
        },
    )
}

/// Prints an informational line now (diagnostics print theirs before contacting the node).
fn say(ctx: &Ctx, line: String) {
    ctx.info(line);
    ctx.flush();
}

fn ping(ctx: &Ctx) -> Result<(), Failure> {
    let ms = (ctx.p.timeout().unwrap_or(60.0) * 1000.0) as u64;
    say(ctx, format!(
        "Will ping {}. This only checks if the OS process is running and registered with epmd. Timeout: {ms} ms.",
        ctx.node()
    ));
    match ctx.api.send("GET", "/api/overview", None, &[]) {
        Ok(_) => {
            println!("Ping succeeded");
            Ok(())
        }
        Err(_) => Err(Failure::Error(
            exit::UNAVAILABLE,
            format!(
                "Failed to connect and authenticate to {} in {ms} ms",
                ctx.node()
            ),
        )),
    }
}

fn check_running(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!("Checking if RabbitMQ is running on node {} ...", ctx.node()),
    );
    ctx.call("GET", "/api/overview", None)?;
    println!(
        "RabbitMQ on node {} is fully booted and running",
        ctx.node()
    );
    Ok(())
}

fn is_running(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!("Asking node {} for its status ...", ctx.node()),
    );
    ctx.call("GET", "/api/overview", None)?;
    println!(
        "RabbitMQ on node {} is fully booted and running",
        ctx.node()
    );
    Ok(())
}

/// The alarms in effect on the node.
fn node_alarms(ctx: &Ctx) -> Result<Vec<String>, Failure> {
    let node = status::node_info(ctx)?;
    Ok(status::alarms(&node, ctx.node()))
}

fn check_local_alarms(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!(
            "Asking node {} to report any local resource alarms ...",
            ctx.node()
        ),
    );
    let alarms = node_alarms(ctx)?;
    if alarms.is_empty() {
        println!("Node {} reported no local alarms", ctx.node());
        Ok(())
    } else {
        Err(Failure::Error(exit::UNAVAILABLE, alarms.join("\n")))
    }
}

fn check_alarms(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!(
            "Asking node {} to report any local resource alarms ...",
            ctx.node()
        ),
    );
    let alarms = node_alarms(ctx)?;
    if alarms.is_empty() {
        println!(
            "Node {} reported no alarms, local or clusterwide",
            ctx.node()
        );
        Ok(())
    } else {
        Err(Failure::Bare(exit::UNAVAILABLE, alarms.join("\n")))
    }
}

fn alarms(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!(
            "Asking node {} to report any known resource alarms ...",
            ctx.node()
        ),
    );
    let alarms = node_alarms(ctx)?;
    if alarms.is_empty() {
        println!(
            "Node {} reported no alarms, local or clusterwide",
            ctx.node()
        );
    }
    for a in alarms {
        println!("{a}");
    }
    Ok(())
}

fn check_port_connectivity(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!(
            "Testing TCP connections to all active listeners on node {} ...",
            ctx.node()
        ),
    );
    let overview = ctx.call("GET", "/api/overview", None)?;
    // The listeners are on the host the API answered from.
    let host = ctx
        .api
        .addr
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h)
        .to_string();
    let mut ports: Vec<u64> = status::listeners(&overview)
        .iter()
        .map(|l| l.port)
        .collect();
    ports.sort_unstable();
    let failed: Vec<String> = ports
        .iter()
        .filter(|port| {
            let addr = format!("{host}:{port}");
            let reachable = std::net::ToSocketAddrs::to_socket_addrs(&addr)
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
            !reachable
        })
        .map(u64::to_string)
        .collect();
    let list: Vec<String> = ports.iter().map(u64::to_string).collect();
    if failed.is_empty() {
        println!(
            "Successfully connected to ports {} on node {}.",
            list.join(", "),
            ctx.node()
        );
        Ok(())
    } else {
        Err(Failure::Error(
            exit::UNAVAILABLE,
            format!(
                "Connection to ports {} on node {} failed",
                failed.join(", "),
                ctx.node()
            ),
        ))
    }
}

fn check_virtual_hosts(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!(
            "Checking if all vhosts are running on node {} ...",
            ctx.node()
        ),
    );
    let vhosts = ctx.call("GET", "/api/vhosts", None)?;
    let down: Vec<&str> = vhosts
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|v| {
            v.get("cluster_state")
                .and_then(Value::as_object)
                .is_some_and(|s| s.values().any(|st| st.as_str() != Some("running")))
        })
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .collect();
    if down.is_empty() {
        println!("Node {} reported all vhosts as running", ctx.node());
        Ok(())
    } else {
        Err(Failure::Error(
            exit::UNAVAILABLE,
            format!("Some virtual hosts failed to start: {}", down.join(", ")),
        ))
    }
}

fn listeners(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!(
            "Asking node {} to report its protocol listeners ...",
            ctx.node()
        ),
    );
    let overview = ctx.call("GET", "/api/overview", None)?;
    for l in status::listeners(&overview) {
        println!("{}", l.line());
    }
    Ok(())
}

/// Seconds in `within` `unit`s (RabbitMQ's CLI: a month is 30 days, a year 365).
fn expiry_window(within: &str, unit: &str) -> Result<i64, String> {
    let n: i64 = within
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("Period must be a non-negative integer, not '{within}'"))?;
    let per = match unit {
        "days" => 86_400,
        "weeks" => 7 * 86_400,
        "months" => 30 * 86_400,
        "years" => 365 * 86_400,
        _ => return Err("Time unit must be one of: days, weeks, months, years".into()),
    };
    Ok(n.saturating_mul(per))
}

/// `YYYY-MM-DD HH:MM:SS`, as RabbitMQ prints expiry dates.
fn expiry_text(secs: i64) -> String {
    warren_tls::format_timestamp(secs)
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
}

/// The AMQP TLS listeners whose certificate or CA file holds a certificate that expires
/// within the window, printed as RabbitMQ's CLI prints them (an Elixir map each).
fn check_certificate_expiration(ctx: &Ctx) -> Result<(), Failure> {
    let within = ctx.p.value("within").unwrap_or("4");
    let unit = ctx.p.value("unit").unwrap_or("weeks");
    let window = expiry_window(within, unit).map_err(|e| Failure::Usage(exit::USAGE, e))?;
    say(
        ctx,
        format!("Checking certificate expiration on node {} ...", ctx.node()),
    );
    let listeners = ctx.call("GET", "/api/warren/certificates", None)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let deadline = now.saturating_add(window);
    let mut expiring = Vec::new();
    for l in listeners.as_array().map(Vec::as_slice).unwrap_or_default() {
        // RabbitMQ looks at the AMQP listeners only (HTTPS keeps its files elsewhere).
        if l.get("protocol").and_then(Value::as_str) != Some("amqp/ssl") {
            continue;
        }
        let dates = |key: &str| -> Vec<i64> {
            l.get(key)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.get("not_after").and_then(Value::as_i64))
                .collect()
        };
        let (certs, cas) = (dates("certificates"), dates("ca_certificates"));
        if !certs.iter().chain(&cas).any(|t| *t <= deadline) {
            continue;
        }
        let list = |ts: &[i64]| {
            let items: Vec<String> = ts
                .iter()
                .map(|t| format!("\"{}\"", expiry_text(*t)))
                .collect();
            format!("[{}]", items.join(", "))
        };
        let text = |key: &str| {
            l.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ip = text("ip_address");
        let interface = if ip == "0.0.0.0" || ip == "::" {
            "[::]".to_string()
        } else {
            ip
        };
        expiring.push(format!(
            "%{{cacertfile: \"{}\", cacertfile_expires_on: {}, certfile: \"{}\", certfile_expires_on: {}, interface: \"{interface}\", node: :{}, port: {}, protocol: :\"amqp/ssl\", purpose: \"AMQP 0-9-1 and AMQP 1.0 over TLS\"}}",
            text("cacertfile"),
            list(&cas),
            text("certfile"),
            list(&certs),
            ctx.node(),
            l.get("port").and_then(Value::as_u64).unwrap_or(0),
        ));
    }
    if expiring.is_empty() {
        println!("No certificates are expiring within {within} {unit}.");
        Ok(())
    } else {
        Err(Failure::Bare(exit::UNAVAILABLE, expiring.join("\n")))
    }
}

fn server_version(ctx: &Ctx) -> Result<(), Failure> {
    say(
        ctx,
        format!("Asking node {} for its RabbitMQ version...", ctx.node()),
    );
    let overview = ctx.call("GET", "/api/overview", None)?;
    let version = overview
        .get("rabbitmq_version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    println!("{version}");
    Ok(())
}
