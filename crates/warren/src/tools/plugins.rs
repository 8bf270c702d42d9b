//! `rabbitmq-plugins`: warren's built-in "plugins" (the management API, its agent and web
//! dispatch, and the Prometheus endpoint) are always enabled; enabling them is a no-op.
//! The optional plugins warren implements (`OPTIONAL_PLUGINS`: the consistent-hash and
//! event exchanges, EXTERNAL authentication) are switched on the running broker through
//! `PUT /api/warren/plugins`, which also rewrites its enabled_plugins file, as RabbitMQ's
//! CLI does. Enabling anything else fails as RabbitMQ fails for a plugin it does not have.
//! Texts and exit codes as recorded from 3.10.8
//! (tests/fixtures/plugins/rabbitmq_plugins_3.10.8.txt).

use serde_json::{json, Value};
use warren_server::util::rabbitmq_conf::OPTIONAL_PLUGINS;

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
    ("set", "rabbitmq-plugins [--node <node>] [--longnames] [--quiet] set [<plugin>] [--offline] [--online]", &["offline", "online"], (0, usize::MAX), set),
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

/// Every plugin warren knows, sorted: the built-in ones and the optional ones.
fn all_plugins() -> Vec<&'static str> {
    let mut all: Vec<&str> = ENABLED
        .iter()
        .chain(OPTIONAL_PLUGINS.iter())
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// What the broker runs: the optional plugins enabled, or `None` when it does not answer.
struct State {
    running: bool,
    optional: Vec<String>,
}

impl State {
    fn enabled(&self, name: &str) -> bool {
        ENABLED.contains(&name) || self.optional.iter().any(|p| p == name)
    }

    /// `[E*]`, `[e*]`: explicitly or implicitly enabled, and running; `[  ]` not enabled.
    fn marker(&self, name: &str) -> String {
        if !self.enabled(name) {
            return "[  ]".into();
        }
        let star = if self.running { "*" } else { " " };
        let e = if ENABLED.contains(&name) && !EXPLICIT.contains(&name) {
            'e'
        } else {
            'E'
        };
        format!("[{e}{star}]")
    }

    /// The configured set, as enable and disable print it.
    fn configured(&self) -> String {
        all_plugins()
            .into_iter()
            .filter(|n| self.enabled(n))
            .map(|n| format!("  {n}\n"))
            .collect()
    }
}

/// The broker's plugins now (an unreachable broker runs none of the optional ones).
fn state(ctx: &Ctx) -> State {
    match ctx.api.send("GET", "/api/warren/plugins", None, &[]) {
        Ok(reply) if reply.status < 300 => State {
            running: true,
            optional: names(&super::api::json(&reply)["enabled"]),
        },
        Ok(_) => State {
            running: true,
            optional: Vec::new(),
        },
        Err(_) => State {
            running: false,
            optional: Vec::new(),
        },
    }
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `list` lines for the plugins matching `pattern` (a regex-free substring match,
/// `.*` for all); `enabled_only` for `-e` / `-E`.
fn list_lines(pattern: &str, st: &State, minimal: bool, enabled_only: bool) -> Vec<String> {
    let matching: Vec<&str> = all_plugins()
        .into_iter()
        .filter(|n| pattern == ".*" || n.contains(pattern.trim_matches(['.', '*', '^', '$'])))
        .filter(|n| !enabled_only || st.enabled(n))
        .collect();
    let width = matching.iter().map(|n| n.len()).max().unwrap_or(0);
    matching
        .iter()
        .map(|n| {
            if minimal {
                n.to_string()
            } else {
                format!("{} {n:<width$} {}", st.marker(n), version())
            }
        })
        .collect()
}

fn list(ctx: &Ctx) -> Result<(), Failure> {
    let p = ctx.p;
    let pattern = p.args().first().map_or(".*", String::as_str);
    let st = state(ctx);
    let enabled_only = p.flag("enabled") || p.flag("implicitly-enabled");
    if p.formatter() == "json" {
        let plugins: Vec<Value> = all_plugins()
            .into_iter()
            .filter(|n| !enabled_only || st.enabled(n))
            .map(|n| {
                let v: Vec<u8> = version().into_bytes();
                let enabled = if !st.enabled(n) {
                    "not_enabled"
                } else if ENABLED.contains(&n) && !EXPLICIT.contains(&n) {
                    "implicit"
                } else {
                    "enabled"
                };
                let running = st.running && st.enabled(n);
                json!({
                    "enabled": enabled,
                    "name": n,
                    "running": running,
                    "running_version": if running { json!(v) } else { Value::Null },
                    "version": v,
                })
            })
            .collect();
        let doc = json!({"format": "normal", "plugins": plugins, "status": if st.running { "running" } else { "node_down" }});
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
    for line in list_lines(pattern, &st, p.flag("minimal"), enabled_only) {
        println!("{line}");
    }
    Ok(())
}

/// Checks the names (RabbitMQ's `plugins_not_found`, 70).
fn check_known(names: &[String]) -> Result<(), Failure> {
    let all = all_plugins();
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !all.contains(&n.as_str()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let atoms: Vec<String> = unknown.iter().map(|n| format!(":{n}")).collect();
    Err(Failure::Error(
        exit::SOFTWARE,
        format!(
            "{{:plugins_not_found, [{}]}}\nwarren provides only these plugins: {}",
            atoms.join(", "),
            all.join(", ")
        ),
    ))
}

/// Asks the broker to run `optional` and prints what changed, as RabbitMQ does.
fn switch(ctx: &Ctx, optional: Vec<String>, enabling: bool) -> Result<(), Failure> {
    let reply = ctx.call(
        "PUT",
        "/api/warren/plugins",
        Some(&json!({ "enabled": optional })),
    )?;
    let changed = if enabling {
        names(&reply["started"])
    } else {
        names(&reply["stopped"])
    };
    let st = State {
        running: true,
        optional: names(&reply["enabled"]),
    };
    if ctx.p.quiet() {
        return Ok(());
    }
    print!(
        "The following plugins have been configured:\n{}",
        st.configured()
    );
    println!("Applying plugin configuration to {}...", ctx.node());
    if changed.is_empty() {
        println!("Plugin configuration unchanged.");
        return Ok(());
    }
    let (what, verb) = if enabling {
        ("enabled", "started")
    } else {
        ("disabled", "stopped")
    };
    println!("The following plugins have been {what}:");
    for n in &changed {
        println!("  {n}");
    }
    println!();
    println!("{verb} {} plugins.", changed.len());
    Ok(())
}

fn enable(ctx: &Ctx) -> Result<(), Failure> {
    let names = ctx.p.args();
    if !ctx.p.quiet() {
        println!("Enabling plugins on node {}:", ctx.node());
        for n in names {
            println!("{n}");
        }
    }
    check_known(names)?;
    let mut optional = state_or_down(ctx)?.optional;
    for n in names {
        if OPTIONAL_PLUGINS.contains(&n.as_str()) && !optional.contains(n) {
            optional.push(n.clone());
        }
    }
    switch(ctx, optional, true)
}

/// `set`: exactly the named plugins (and the built-in ones) enabled.
fn set(ctx: &Ctx) -> Result<(), Failure> {
    let names = ctx.p.args();
    if !ctx.p.quiet() {
        println!("Enabling plugins on node {}:", ctx.node());
        for n in names {
            println!("{n}");
        }
    }
    check_known(names)?;
    state_or_down(ctx)?;
    let optional: Vec<String> = names
        .iter()
        .filter(|n| OPTIONAL_PLUGINS.contains(&n.as_str()))
        .cloned()
        .collect();
    switch(ctx, optional, true)
}

/// The broker's state; an unreachable broker fails the switch (69), as RabbitMQ's
/// online change does.
fn state_or_down(ctx: &Ctx) -> Result<State, Failure> {
    let st = state(ctx);
    if st.running {
        Ok(st)
    } else {
        ctx.request("GET", "/api/warren/plugins", None).map(|_| st)
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
    let optional: Vec<String> = state_or_down(ctx)?
        .optional
        .into_iter()
        .filter(|p| !names.contains(p))
        .collect();
    switch(ctx, optional, false)?;
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
    let st = state(ctx);
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !st.enabled(n))
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
    fn list_lines_mark_explicit_implicit_and_disabled_plugins() {
        let v = version();
        let st = State {
            running: true,
            optional: vec!["rabbitmq_event_exchange".into()],
        };
        let lines = list_lines(".*", &st, false, false);
        assert!(lines.contains(&format!("[  ] rabbitmq_consistent_hash_exchange {v}")));
        assert!(lines.contains(&format!("[E*] rabbitmq_event_exchange           {v}")));
        assert!(lines.contains(&format!("[e*] rabbitmq_management_agent         {v}")));
        assert_eq!(
            list_lines(".*", &st, false, true),
            [
                format!("[E*] rabbitmq_event_exchange   {v}"),
                format!("[E*] rabbitmq_management       {v}"),
                format!("[e*] rabbitmq_management_agent {v}"),
                format!("[E*] rabbitmq_prometheus       {v}"),
                format!("[e*] rabbitmq_web_dispatch     {v}"),
            ]
        );
        let down = State {
            running: false,
            optional: Vec::new(),
        };
        assert_eq!(
            list_lines("prometheus", &down, false, false),
            [format!("[E ] rabbitmq_prometheus {v}")]
        );
        assert_eq!(
            list_lines("management", &st, true, false),
            ["rabbitmq_management", "rabbitmq_management_agent"]
        );
        assert_eq!(
            st.configured(),
            "  rabbitmq_event_exchange\n  rabbitmq_management\n  rabbitmq_management_agent\n  rabbitmq_prometheus\n  rabbitmq_web_dispatch\n"
        );
        let mut sorted = ENABLED.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, ENABLED);
        for p in EXPLICIT {
            assert!(ENABLED.contains(p));
        }
    }

    #[test]
    fn unknown_plugins_are_refused() {
        assert!(check_known(&["rabbitmq_event_exchange".into()]).is_ok());
        assert!(check_known(&["rabbitmq_shovel".into()]).is_err());
    }
}
