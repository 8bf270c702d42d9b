//! `rabbitmq-plugins`: warren's built-in "plugins" (the management API, its agent and web
//! dispatch, and the Prometheus endpoint) are always enabled; enabling them is a no-op,
//! enabling anything else fails as RabbitMQ fails for a plugin it does not have.

use serde_json::{json, Value};

use super::{
    cli::{self, Ctx, Failure, OptSpec},
    exit,
    rabbitmqctl::{run_tool, Found, Runner},
};

/// The plugins warren provides that count as explicitly enabled (as in the
/// `rabbitmq:management` image's enabled_plugins file); the others in [`ENABLED`] are
/// implicitly enabled, as dependencies.
const EXPLICIT: &[&str] = &["rabbitmq_management", "rabbitmq_prometheus"];

/// Every plugin warren runs, sorted.
pub(crate) const ENABLED: &[&str] = &[
    "rabbitmq_management",
    "rabbitmq_management_agent",
    "rabbitmq_prometheus",
    "rabbitmq_web_dispatch",
];

const OPTIONS: &[OptSpec] = &[
    ("enabled", Some('e'), false),
    ("implicitly-enabled", Some('E'), false),
    ("verbose", Some('v'), false),
    ("minimal", Some('m'), false),
    ("offline", None, false),
    ("online", None, false),
    ("all", None, false),
];

type Run = fn(&Ctx) -> Result<(), Failure>;

/// (name, usage line, options, argument count (min, max), runner).
type PluginCommand = (
    &'static str,
    &'static str,
    &'static [&'static str],
    (usize, usize),
    Run,
);

const COMMANDS: &[PluginCommand] = &[
    ("list", "rabbitmq-plugins [--node <node>] [--longnames] [--quiet] list [pattern] [--verbose] [--minimal] [--enabled] [--implicitly-enabled]", &["enabled", "implicitly-enabled", "verbose", "minimal"], (0, 1), list),
    ("enable", "rabbitmq-plugins [--node <node>] [--longnames] [--quiet] enable <plugin1> [ <plugin2>] | --all [--offline] [--online]", &["offline", "online", "all"], (0, usize::MAX), enable),
    ("disable", "rabbitmq-plugins [--node <node>] [--longnames] [--quiet] disable <plugin1> [ <plugin2>] | --all [--offline] [--online]", &["offline", "online", "all"], (0, usize::MAX), disable),
    ("set", "rabbitmq-plugins [--node <node>] [--longnames] [--quiet] set [<plugin>] [--offline] [--online]", &["offline", "online"], (0, usize::MAX), enable),
    ("is_enabled", "rabbitmq-plugins [--node <node>] [--longnames] [--quiet] is_enabled <plugin1> [ <plugin2>] [--offline] [--online]", &["offline", "online"], (1, usize::MAX), is_enabled),
];

pub(crate) fn main(args: &[String]) -> u8 {
    let specs: Vec<OptSpec> = cli::GLOBAL_OPTIONS.iter().chain(OPTIONS).copied().collect();
    let p = cli::parse(args, &specs);
    let known: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
    run_tool("rabbitmq-plugins", &p, &known, |name| -> Option<Found> {
        let (_, usage, opts, arity, run) = COMMANDS.iter().find(|c| c.0 == name)?;
        Some((usage, opts, *arity, Runner::Fn(*run)))
    })
}

fn version() -> String {
    warren_server::ServerConfig::default().rabbitmq_version
}

/// `[E*]`, `[e*]`: explicitly or implicitly enabled, and running.
fn marker(name: &str, running: bool) -> String {
    let star = if running { "*" } else { " " };
    if EXPLICIT.contains(&name) {
        format!("[E{star}]")
    } else {
        format!("[e{star}]")
    }
}

/// Whether the broker answers (so its plugins count as running).
fn running(ctx: &Ctx) -> bool {
    ctx.api.send("GET", "/api/overview", None, &[]).is_ok()
}

/// The `list` lines for the plugins matching `pattern` (a regex-free substring match,
/// `.*` for all). Every plugin warren has is enabled, so `-e` and `-E` change nothing
/// (RabbitMQ 3.10's `list -e` shows implicitly enabled plugins too).
fn list_lines(pattern: &str, running: bool, minimal: bool) -> Vec<String> {
    let matching: Vec<&str> = ENABLED
        .iter()
        .copied()
        .filter(|n| pattern == ".*" || n.contains(pattern.trim_matches(['.', '*', '^', '$'])))
        .collect();
    let width = matching.iter().map(|n| n.len()).max().unwrap_or(0);
    matching
        .iter()
        .map(|n| {
            if minimal {
                n.to_string()
            } else {
                format!("{} {n:<width$} {}", marker(n, running), version())
            }
        })
        .collect()
}

fn list(ctx: &Ctx) -> Result<(), Failure> {
    let p = ctx.p;
    let pattern = p.args().first().map_or(".*", String::as_str);
    let up = running(ctx);
    if p.formatter() == "json" {
        let plugins: Vec<Value> = ENABLED
            .iter()
            .map(|n| {
                let v: Vec<u8> = version().into_bytes();
                json!({
                    "enabled": if EXPLICIT.contains(n) { "enabled" } else { "implicit" },
                    "name": n,
                    "running": up,
                    "running_version": if up { json!(v) } else { Value::Null },
                    "version": v,
                })
            })
            .collect();
        let doc = json!({"format": "normal", "plugins": plugins, "status": if up { "running" } else { "node_down" }});
        println!("{doc}");
        return Ok(());
    }
    if !p.quiet() {
        println!("Listing plugins with pattern \"{pattern}\" ...");
        if !p.flag("minimal") {
            println!(" Configured: E = explicitly enabled; e = implicitly enabled");
            println!(" | Status: * = running on {}", ctx.node());
            println!(" |/");
        }
    }
    for line in list_lines(pattern, up, p.flag("minimal")) {
        println!("{line}");
    }
    Ok(())
}

/// The configured set, as enable and disable print it.
fn configured() -> String {
    ENABLED.iter().map(|n| format!("  {n}\n")).collect()
}

fn enable(ctx: &Ctx) -> Result<(), Failure> {
    let names = ctx.p.args();
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !ENABLED.contains(&n.as_str()))
        .collect();
    if !ctx.p.quiet() {
        println!("Enabling plugins on node {}:", ctx.node());
        for n in names {
            println!("{n}");
        }
    }
    if !unknown.is_empty() {
        let atoms: Vec<String> = unknown.iter().map(|n| format!(":{n}")).collect();
        return Err(Failure::Error(
            exit::SOFTWARE,
            format!(
                "{{:plugins_not_found, [{}]}}\nwarren provides only these plugins, built in: {}",
                atoms.join(", "),
                ENABLED.join(", ")
            ),
        ));
    }
    applied(ctx);
    Ok(())
}

fn applied(ctx: &Ctx) {
    if !ctx.p.quiet() {
        print!(
            "The following plugins have been configured:\n{}",
            configured()
        );
        println!("Applying plugin configuration to {}...", ctx.node());
        println!("Plugin configuration unchanged.");
    }
}

fn disable(ctx: &Ctx) -> Result<(), Failure> {
    let names = ctx.p.args();
    if !ctx.p.quiet() {
        println!("Disabling plugins on node {}:", ctx.node());
        for n in names {
            println!("{n}");
        }
    }
    applied(ctx);
    let builtin: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| ENABLED.contains(n))
        .collect();
    if !builtin.is_empty() {
        eprintln!(
            "warren: {} built in and stay enabled (turn a listener off with --http-listen off or --prometheus-listen off)",
            builtin.join(", ") + if builtin.len() == 1 { " is" } else { " are" }
        );
    }
    Ok(())
}

fn is_enabled(ctx: &Ctx) -> Result<(), Failure> {
    let names = ctx.p.args();
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !ENABLED.contains(n))
        .collect();
    if missing.is_empty() {
        if !ctx.p.quiet() {
            for n in names {
                println!("Plugin {n} is enabled");
            }
        }
        Ok(())
    } else {
        let lines: Vec<String> = missing
            .iter()
            .map(|n| format!("Plugin {n} is not enabled"))
            .collect();
        Err(Failure::Bare(exit::UNAVAILABLE, lines.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_mark_explicit_and_implicit_plugins() {
        let v = version();
        assert_eq!(
            list_lines(".*", true, false),
            [
                format!("[E*] rabbitmq_management       {v}"),
                format!("[e*] rabbitmq_management_agent {v}"),
                format!("[E*] rabbitmq_prometheus       {v}"),
                format!("[e*] rabbitmq_web_dispatch     {v}"),
            ]
        );
        assert_eq!(
            list_lines("prometheus", false, false),
            [format!("[E ] rabbitmq_prometheus {v}")]
        );
        assert_eq!(
            list_lines("management", true, true),
            ["rabbitmq_management", "rabbitmq_management_agent"]
        );
        let mut sorted = ENABLED.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, ENABLED);
        for p in EXPLICIT {
            assert!(ENABLED.contains(p));
        }
    }
}
