//! RabbitMQ's CLI tools as the `warren` binary provides them: run under their own names
//! (symlinks in a temporary directory) against a test broker's management API, with the
//! outputs and exit codes recorded from RabbitMQ 3.10.8 (tests/fixtures/tools).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use warren_integration::*;

/// A directory with the four tool names linked to the warren binary.
fn tools_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("warren-tools-test-{}", std::process::id()));
        let out = Command::new(warren_bin())
            .arg("install-tools")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .clone()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_at(addr: &str, tool: &str, args: &[&str]) -> Run {
    let out: Output = Command::new(tools_dir().join(tool))
        .args(args)
        .env("WARREN_CTL_HOST", addr)
        .env_remove("WARREN_CTL_USER")
        .env_remove("WARREN_CTL_PASSWORD")
        .env_remove("RABBITMQ_DEFAULT_USER")
        .env_remove("RABBITMQ_DEFAULT_PASS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(broker: &Broker, tool: &str, args: &[&str]) -> Run {
    run_at(&format!("127.0.0.1:{}", broker.http_port), tool, args)
}

fn ok(broker: &Broker, tool: &str, args: &[&str]) -> String {
    let r = run(broker, tool, args);
    assert_eq!(r.code, 0, "{tool} {args:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

#[tokio::test]
async fn rabbitmqctl_lists_with_rabbitmqs_formats() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(
        &ch,
        "q1",
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await;
    publish(&ch, "", "q1", b"a").await;
    publish(&ch, "", "q1", b"b").await;
    sync(&ch).await.unwrap();
    assert_eq!(
        ok(&broker, "rabbitmqctl", &["list_queues"]),
        "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\nq1\t2\n"
    );
    assert_eq!(
        ok(&broker, "rabbitmqctl", &["-q", "list_queues"]),
        "name\tmessages\nq1\t2\n"
    );
    assert_eq!(
        ok(&broker, "rabbitmqctl", &["list_queues", "--silent"]),
        "q1\t2\n"
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmqctl",
            &["list_queues", "--no-table-headers", "-p", "/"]
        ),
        "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nq1\t2\n"
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmqctl",
            &["list_queues", "name,durable", "arguments", "-q"]
        ),
        "name\tdurable\targuments\nq1\ttrue\t[]\n"
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmqctl",
            &["list_queues", "--formatter", "json", "name", "durable"]
        ),
        "[\n{\"name\":\"q1\",\"durable\":true}\n]\n"
    );
    assert_eq!(
        ok(&broker, "rabbitmqctl", &["list_queues", "-p", "nosuch"]),
        "Timeout: 60.0 seconds ...\nListing queues for vhost nosuch ...\n"
    );
    let users = ok(&broker, "rabbitmqctl", &["list_users"]);
    assert_eq!(
        users,
        "Listing users ...\nuser\ttags\nguest\t[administrator]\n"
    );
    let conns = ok(
        &broker,
        "rabbitmqctl",
        &["list_connections", "-q", "user", "state"],
    );
    assert_eq!(conns, "user\tstate\nguest\trunning\n");
    // Unknown columns are a usage error (64), with the usage line.
    let r = run(&broker, "rabbitmqctl", &["list_queues", "nosuchcol"]);
    assert_eq!(r.code, 64);
    assert!(r.stderr.starts_with("Error (argument validation): Info key(s) nosuchcol are not supported\nArguments given:\n\tlist_queues nosuchcol\n"), "{}", r.stderr);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn rabbitmqctl_users_permissions_policies_and_queues() {
    let broker = Broker::start();
    let out = ok(&broker, "rabbitmqctl", &["add_user", "alice", "s3cret"]);
    assert_eq!(out, "Adding user \"alice\" ...\nDone. Don't forget to grant the user permissions to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.\n");
    let r = run(&broker, "rabbitmqctl", &["add_user", "alice", "x"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (70, "Error:\nUser \"alice\" already exists\n")
    );
    ok(&broker, "rabbitmqctl", &["add_vhost", "v1"]);
    ok(
        &broker,
        "rabbitmqctl",
        &["set_permissions", "-p", "v1", "alice", ".*", ".*", ".*"],
    );
    ok(
        &broker,
        "rabbitmqctl",
        &["set_user_tags", "alice", "monitoring"],
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmqctl",
            &["-q", "list_permissions", "-p", "v1"]
        ),
        // rabbitmqctl add_vhost (through the node cookie) grants nobody anything, as in
        // RabbitMQ: only alice is there.
        "user\tconfigure\twrite\tread\nalice\t.*\t.*\t.*\n"
    );
    // The new user logs in over AMQP.
    let url = format!("amqp://alice:s3cret@127.0.0.1:{}/v1", broker.port);
    let conn = connect(&url).await;
    conn.close(200, "bye".into()).await.unwrap();
    let r = run(
        &broker,
        "rabbitmqctl",
        &["set_permissions", "-p", "v1", "nobody", ".*", ".*", ".*"],
    );
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (67, "Error:\nUser nobody does not exist\n")
    );
    let r = run(&broker, "rabbitmqctl", &["delete_user", "nobody"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (67, "Error:\nUser \"nobody\" does not exist\n")
    );
    let out = ok(
        &broker,
        "rabbitmqctl",
        &[
            "set_policy",
            "-p",
            "v1",
            "p1",
            "^q",
            "{\"max-length\":10}",
            "--apply-to",
            "queues",
            "--priority",
            "3",
        ],
    );
    assert_eq!(out, "Setting policy \"p1\" for pattern \"^q\" to \"{\"max-length\":10}\" with priority \"3\" for vhost \"v1\" ...\n");
    assert_eq!(
        ok(&broker, "rabbitmqctl", &["list_policies", "-p", "v1", "-q"]),
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\nv1\tp1\t^q\tqueues\t{\"max-length\":10}\t3\n"
    );
    ok(&broker, "rabbitmqctl", &["clear_policy", "-p", "v1", "p1"]);
    let r = run(&broker, "rabbitmqctl", &["clear_policy", "-p", "v1", "p1"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (69, "Error:\nParameter does not exist\n")
    );
    // Queues: purge and delete, with rabbitmqadmin declaring and publishing.
    assert_eq!(
        ok(
            &broker,
            "rabbitmqadmin",
            &["declare", "queue", "name=qa", "durable=false"]
        ),
        "queue declared\n"
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmqadmin",
            &["publish", "routing_key=qa", "payload=hello"]
        ),
        "Message published\n"
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmqadmin",
            &["publish", "routing_key=nosuch", "payload=x"]
        ),
        "Message published but NOT routed\n"
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmqadmin",
            &["-f", "tsv", "-q", "list", "queues", "name", "messages"]
        ),
        "qa\t1\n"
    );
    let got = ok(&broker, "rabbitmqadmin", &["-f", "tsv", "get", "queue=qa"]);
    assert_eq!(got.lines().next(), Some("routing_key\texchange\tmessage_count\tpayload\tpayload_bytes\tpayload_encoding\tproperties\tredelivered"));
    assert!(got.contains("qa\t\t0\thello\t5\tstring\t\tFalse"), "{got}");
    assert_eq!(
        ok(&broker, "rabbitmqctl", &["purge_queue", "qa"]),
        "Purging queue 'qa' in vhost '/' ...\n"
    );
    assert_eq!(
        ok(&broker, "rabbitmqctl", &["delete_queue", "qa"]),
        "Deleting queue 'qa' on vhost '/' ...\nQueue was successfully deleted with 0 ready messages\n"
    );
    let r = run(&broker, "rabbitmqctl", &["delete_queue", "qa"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (64, "Error:\nQueue not found\n")
    );
    let r = run(&broker, "rabbitmqadmin", &["delete", "queue", "name=qa"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "*** Not found: /api/queues/%2F/qa\n\n")
    );
    let r = run(&broker, "rabbitmqadmin", &["declare", "queue"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "\nERROR: mandatory argument \"name\" is required\n\nrabbitmqadmin --help for help\n\n"
        )
    );
}

#[tokio::test]
async fn diagnostics_and_plugins() {
    let broker = Broker::start();
    let node = "rabbit@localhost";
    assert_eq!(
        ok(&broker, "rabbitmq-diagnostics", &["-n", node, "ping"]),
        "Will ping rabbit@localhost. This only checks if the OS process is running and registered with epmd. Timeout: 60000 ms.\nPing succeeded\n"
    );
    assert_eq!(
        ok(&broker, "rabbitmq-diagnostics", &["-n", node, "check_running"]),
        "Checking if RabbitMQ is running on node rabbit@localhost ...\nRabbitMQ on node rabbit@localhost is fully booted and running\n"
    );
    assert_eq!(
        ok(
            &broker,
            "rabbitmq-diagnostics",
            &["-n", node, "-q", "check_local_alarms"]
        ),
        "Node rabbit@localhost reported no local alarms\n"
    );
    assert_eq!(
        ok(&broker, "rabbitmq-diagnostics", &["-q", "server_version"]),
        "3.10.7\n"
    );
    let listeners = ok(&broker, "rabbitmq-diagnostics", &["-q", "listeners"]);
    assert!(
        listeners.contains(&format!(
            "port: {}, protocol: amqp, purpose: AMQP 0-9-1 and AMQP 1.0",
            broker.port
        )),
        "{listeners}"
    );
    assert!(ok(
        &broker,
        "rabbitmq-diagnostics",
        &["check_port_connectivity"]
    )
    .contains("Successfully connected to ports"));
    ok(&broker, "rabbitmq-diagnostics", &["check_virtual_hosts"]);
    assert!(ok(&broker, "rabbitmqctl", &["status"]).contains("RabbitMQ version: 3.10.7"));
    ok(&broker, "rabbitmqctl", &["await_startup"]);
    let plugins = ok(&broker, "rabbitmq-plugins", &["list", "-q"]);
    // Every plugin warren has, the optional ones not enabled (as RabbitMQ lists all).
    assert!(
        plugins.contains(&format!("[E*] {:<33} 3.10.7\n", "rabbitmq_management")),
        "{plugins}"
    );
    assert!(
        plugins.contains(&format!("[  ] {:<33} 3.10.7\n", "rabbitmq_event_exchange")),
        "{plugins}"
    );
    assert!(ok(
        &broker,
        "rabbitmq-plugins",
        &["enable", "rabbitmq_management"]
    )
    .ends_with("Plugin configuration unchanged.\n"));
    let r = run(&broker, "rabbitmq-plugins", &["enable", "rabbitmq_shovel"]);
    assert_eq!(r.code, 70);
    assert!(
        r.stderr
            .starts_with("Error:\n{:plugins_not_found, [:rabbitmq_shovel]}\n"),
        "{}",
        r.stderr
    );
    // The same tool as a warren subcommand.
    let out = Command::new(warren_bin())
        .args(["rabbitmq-diagnostics", "-q", "ping"])
        .env("WARREN_CTL_HOST", format!("127.0.0.1:{}", broker.http_port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Ping succeeded\n");
}

#[test]
fn usage_errors_and_an_unreachable_broker() {
    // Nothing listens on port 1.
    let down = "127.0.0.1:1";
    let r = run_at(down, "rabbitmqctl", &["list_queues"]);
    assert_eq!((r.code, r.stdout.as_str()), (69, ""));
    assert!(
        r.stderr
            .starts_with("Error: unable to perform an operation on node '"),
        "{}",
        r.stderr
    );
    let r = run_at(
        down,
        "rabbitmq-diagnostics",
        &["-n", "rabbit@localhost", "ping"],
    );
    assert_eq!(r.code, 69);
    assert_eq!(
        r.stderr,
        "Error:\nFailed to connect and authenticate to rabbit@localhost in 60000 ms\n"
    );
    let r = run_at(down, "rabbitmqctl", &["list_nothing"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            64,
            "\nCommand 'list_nothing' not found. \nDid you mean 'list_bindings'? \n\n"
        )
    );
    let r = run_at(down, "rabbitmqctl", &["add_user", "a", "b", "c"]);
    assert_eq!(r.code, 64);
    assert!(r
        .stderr
        .starts_with("Error (argument validation): too many arguments.\n"));
    let r = run_at(down, "rabbitmqctl", &["--bogus", "list_queues"]);
    assert_eq!(r.code, 64);
    assert!(r.stderr.starts_with(
        "Error (argument validation): Invalid options for this command:\n--bogus : \n"
    ));
    let r = run_at(down, "rabbitmqctl", &[]);
    assert_eq!(r.code, 64);
    let r = run_at(down, "rabbitmqadmin", &["list", "queues"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("*** Could not connect: "),
        "{}",
        r.stderr
    );
    let r = run_at(down, "rabbitmqadmin", &["nosuchcmd"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "\nERROR: Action nosuchcmd not understood\n\nrabbitmqadmin --help for help\n\n"
        )
    );
}

/// A tool run with a given HOME and extra variables, no credentials of its own.
fn run_as(broker: &Broker, home: &std::path::Path, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(tools_dir().join("rabbitmqctl"));
    cmd.args(args)
        .env("WARREN_CTL_HOST", format!("127.0.0.1:{}", broker.http_port))
        .env("HOME", home)
        .env_remove("WARREN_CTL_USER")
        .env_remove("WARREN_CTL_PASSWORD")
        .env_remove("RABBITMQ_DEFAULT_USER")
        .env_remove("RABBITMQ_DEFAULT_PASS")
        .env_remove("RABBITMQ_ERLANG_COOKIE")
        .stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_node_cookie_lets_rabbitmqctl_in_whatever_users_exist() {
    use std::os::unix::fs::PermissionsExt;
    let home = std::env::temp_dir().join(format!("warren-cookie-home-{}", std::process::id()));
    let elsewhere = home.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let home_s = home.to_str().unwrap().to_string();
    // No guest: the only user is one the tool does not know the password of.
    let broker = Broker::start_with(
        &[],
        &[
            ("HOME", &home_s),
            ("RABBITMQ_DEFAULT_USER", "boss"),
            ("RABBITMQ_DEFAULT_PASS", "unknown-to-the-tool"),
        ],
    );
    // The broker made the cookie as RabbitMQ does: 20 capital letters, mode 0400.
    let cookie_file = home.join(".erlang.cookie");
    let cookie = std::fs::read_to_string(&cookie_file).unwrap();
    assert_eq!(cookie.len(), 20, "{cookie}");
    assert!(cookie.bytes().all(|c| c.is_ascii_uppercase()), "{cookie}");
    let mode = std::fs::metadata(&cookie_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);

    // Same HOME as the broker: the tool reads the cookie and is let in.
    let r = run_as(&broker, &home, &[], &["list_users", "-q"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("boss\t[administrator]"), "{}", r.stdout);
    // add_vhost through the cookie grants nobody permissions (rmq-cli is no user).
    let r = run_as(&broker, &home, &[], &["add_vhost", "cli-made"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = run_as(
        &broker,
        &home,
        &[],
        &["list_permissions", "-p", "cli-made", "-q"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let rows = r
        .stdout
        .lines()
        .filter(|l| !l.is_empty() && *l != "user\tconfigure\twrite\tread")
        .count();
    assert_eq!(rows, 0, "{}", r.stdout);
    // The cookie given in RABBITMQ_ERLANG_COOKIE works from anywhere.
    let r = run_as(
        &broker,
        &elsewhere,
        &[("RABBITMQ_ERLANG_COOKIE", cookie.trim())],
        &["list_vhosts", "-q"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.lines().any(|l| l == "cli-made"), "{}", r.stdout);
    // No cookie, or a wrong one: only credentials count, and guest does not exist.
    for vars in [
        vec![],
        vec![("RABBITMQ_ERLANG_COOKIE", "WRONGWRONGWRONGWRONG")],
    ] {
        let r = run_as(&broker, &elsewhere, &vars, &["list_users", "-q"]);
        assert_ne!(r.code, 0, "{vars:?}: {}{}", r.stdout, r.stderr);
        assert!(!r.stdout.contains("boss"), "{}", r.stdout);
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&home);
}
