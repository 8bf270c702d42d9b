//! `warren ctl`: what CI scripts use from rabbitmqctl and rabbitmqadmin, over the
//! management HTTP API (so it works against warren and RabbitMQ alike). Plain tables for
//! people, `--format json` for scripts.

mod admin;
mod alarms;
pub(crate) mod http;
mod list;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use list::{cell, text};

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Management API address: ADDR:PORT, or https://HOST:PORT for an HTTPS API.
    #[arg(long, env = "WARREN_CTL_HOST", default_value = "127.0.0.1:15672")]
    host: String,
    /// CA certificates (PEM) that an HTTPS API's certificate must chain to; default:
    /// the system's bundle (/etc/ssl/certs/ca-certificates.crt).
    #[arg(long, env = "WARREN_CTL_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
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
    #[command(flatten)]
    User(admin::UserCommand),
    #[command(flatten)]
    Vhost(admin::VhostCommand),
    #[command(flatten)]
    Permission(admin::PermissionCommand),
    #[command(flatten)]
    Policy(admin::PolicyCommand),
    #[command(flatten)]
    Queue(admin::QueueCommand),
    #[command(flatten)]
    Definitions(admin::DefinitionsCommand),
    #[command(flatten)]
    Alarm(alarms::AlarmCommand),
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
    match &args.command {
        CtlCommand::List(cmd) => list::run(args, cmd),
        CtlCommand::User(cmd) => admin::users(args, cmd),
        CtlCommand::Vhost(cmd) => admin::vhosts(args, cmd),
        CtlCommand::Permission(cmd) => admin::permissions(args, cmd),
        CtlCommand::Policy(cmd) => admin::policies(args, cmd),
        CtlCommand::Queue(cmd) => admin::queues(args, cmd),
        CtlCommand::Definitions(cmd) => admin::definitions(args, cmd),
        CtlCommand::Alarm(cmd) => alarms::run(args, cmd),
        CtlCommand::Status => status(args),
        CtlCommand::AwaitStartup { timeout } => await_startup(args, *timeout),
    }
}

/// The overview: as it comes in JSON, or the lines rabbitmqctl status leads with.
fn status(args: &CtlArgs) -> Result<(), String> {
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
    Ok(())
}

/// Polls the node health check until it answers or `timeout` seconds have passed.
fn await_startup(args: &CtlArgs, timeout: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        match args.call("GET", "/api/healthchecks/node", None) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("broker did not start within {timeout} s: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// `warren ctl` on its own.
    #[derive(Debug, Parser)]
    pub(in crate::ctl) struct Cli {
        #[command(flatten)]
        pub(in crate::ctl) ctl: CtlArgs,
    }

    #[test]
    fn subcommands_keep_their_names_aliases_and_order() {
        Cli::command().debug_assert();
        let names = [
            "list_queues",
            "list_exchanges",
            "list_bindings",
            "list_connections",
            "list_channels",
            "list_consumers",
            "list_users",
            "list_vhosts",
            "list_permissions",
            "list_topic_permissions",
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
            "clear_topic_permissions",
            "set_policy",
            "clear_policy",
            "purge_queue",
            "delete_queue",
            "import_definitions",
            "export_definitions",
            "set_vm_memory_high_watermark",
            "set_disk_free_limit",
            "status",
            "await_startup",
        ];
        // rabbitmqctl's argument order: [-p vhost] user exchange write read.
        let cli = Cli::try_parse_from([
            "ctl",
            "-p",
            "v",
            "set_topic_permissions",
            "u",
            "amq.topic",
            "^a",
            "^r",
        ])
        .expect("parses");
        let parsed = format!("{:?}", cli.ctl);
        assert!(
            parsed.contains(
                r#"SetTopic { user: "u", exchange: "amq.topic", write: "^a", read: "^r" }"#
            ),
            "{parsed}"
        );
        let cmd = Cli::command();
        let got: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(got, names);
        // Each also answers to its dashed spelling.
        for sub in cmd.get_subcommands() {
            let dashed = sub.get_name().replace('_', "-");
            if dashed != sub.get_name() {
                assert!(
                    sub.get_all_aliases().any(|a| a == dashed),
                    "{}",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn family_commands_parse_into_their_family() {
        let parse = |line: &[&str]| {
            Cli::try_parse_from(std::iter::once("ctl").chain(line.iter().copied()))
                .map(|c| c.ctl.command)
        };
        assert!(matches!(
            parse(&["add-user", "u", "p"]),
            Ok(CtlCommand::User(admin::UserCommand::AddUser { .. }))
        ));
        assert!(matches!(
            parse(&["set_policy", "n", "^q", "{}", "--priority", "3"]),
            Ok(CtlCommand::Policy(admin::PolicyCommand::SetPolicy {
                priority: 3,
                ..
            }))
        ));
        assert!(matches!(
            parse(&["await_startup", "-t", "5"]),
            Ok(CtlCommand::AwaitStartup { timeout: 5 })
        ));
        assert!(matches!(parse(&["status"]), Ok(CtlCommand::Status)));
        assert!(parse(&["list_nothing"]).is_err());
    }
}
