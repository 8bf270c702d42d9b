//! The parser against what cuttlefish 3.0.1 (RabbitMQ 3.10.8) returned for the same text
//! (`conf_parse:parse/1`, run by hand), and the mapping to settings.

use super::*;
use proptest::prelude::*;

fn kv(text: &str) -> Vec<(String, String)> {
    parse(text)
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[test]
fn settings_comments_and_blanks() {
    assert_eq!(kv("a = b\n"), vec![pair("a", "b")]);
    assert_eq!(
        kv("  \n\t# c\na=1\r\nb = 2"),
        vec![pair("a", "1"), pair("b", "2")]
    );
    assert_eq!(kv("a\t=\tb\t# c\n"), vec![pair("a", "b")]);
    assert_eq!(
        kv("a = b\n  c = d  # x\n\t\n"),
        vec![pair("a", "b"), pair("c", "d")]
    );
    assert_eq!(kv("#only\n"), vec![]);
    assert_eq!(kv(""), vec![]);
    assert_eq!(
        kv("a-b_C9 = 1\nA = x\n"),
        vec![pair("a-b_C9", "1"), pair("A", "x")]
    );
}

#[test]
fn values_as_cuttlefish_cuts_them() {
    // `#` starts a comment anywhere; quotes are kept; `=` may appear in a value.
    assert_eq!(kv("a = x#y\n"), vec![pair("a", "x")]);
    assert_eq!(kv("a = x #y\n"), vec![pair("a", "x")]);
    assert_eq!(kv("a = 'x#y'\n"), vec![pair("a", "'x")]);
    assert_eq!(kv("a = b = c\n"), vec![pair("a", "b = c")]);
    // At the very end of the text trailing blanks stay; a lone CR is part of the value.
    assert_eq!(kv("a = v  "), vec![pair("a", "v  ")]);
    assert_eq!(
        kv("a = b\r\nc = d\rx\n"),
        vec![pair("a", "b"), pair("c", "d\rx")]
    );
    assert_eq!(kv("a = été\n"), vec![pair("a", "été")]);
    assert_eq!(kv("a\\.b.c = v\n"), vec![pair("a.b.c", "v")]);
}

#[test]
fn syntax_errors_name_the_line() {
    for (text, line) in [
        ("a =\n", 1),
        ("a = b\nbad line\nc = d\n", 2),
        ("\n\na = b\n\n  bad\n", 5),
        ("= b\n", 1),
        ("a b = c\n", 1),
        (" x..y = 1\n", 1),
        ("a. = 1\n", 1),
        ("a = b\n\u{0}\n", 2),
        ("a = # no value\n", 1),
        ("include foo \n", 1),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
    }
    let e = parse("x = 1\nthis is not valid\n").unwrap_err();
    assert_eq!(
        e.rabbitmq_text("/etc/rabbitmq/rabbitmq.conf"),
        "Syntax error in /etc/rabbitmq/rabbitmq.conf after line 2 column 1, parsing incomplete"
    );
}

#[test]
fn includes() {
    let entries = parse("include /x/*.conf\ninclude = 3\n").unwrap();
    assert_eq!(entries[0].kind, EntryKind::Include);
    assert_eq!(entries[0].key, "/x/*.conf");
    assert_eq!(entries[1].kind, EntryKind::Setting);
    assert_eq!(entries[1].key, "include");
}

#[test]
fn invalid_utf8_is_a_syntax_error_on_its_line() {
    let e = parse_utf8(b"a = b\nc = \xff\n").unwrap_err();
    assert_eq!(e.line, 2);
    let e = parse_utf8(b"bad\nc = \xff\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert_eq!(parse_utf8(b"a = b\n").unwrap().len(), 1);
}

fn report(text: &str) -> SettingsReport {
    let entries = parse(text).unwrap();
    settings(entries.iter().map(|e| ("test.conf", e)))
}

#[test]
fn the_keys_dev_and_ci_setups_use() {
    let r = report(
        "listeners.tcp.default = 5673\n\
         listeners.tcp.local = 127.0.0.1:5674\n\
         listeners.tcp.v6 = ::1:5675\n\
         default_user = app\ndefault_pass = s3cret\ndefault_vhost = dev\n\
         default_user_tags.administrator = false\ndefault_user_tags.monitoring = true\n\
         default_permissions.configure = ^app\\.\ndefault_permissions.write = .*\n\
         default_permissions.read = .*\n\
         loopback_users.guest = false\n\
         management.tcp.port = 15673\nmanagement.tcp.ip = 127.0.0.1\n\
         prometheus.tcp.port = 15693\n\
         vm_memory_high_watermark.absolute = 2GB\ndisk_free_limit.relative = 1.5\n\
         channel_max = 100\nframe_max = 8192\nheartbeat = 30\nmax_message_size = 1048576\n\
         log.console.level = debug\nload_definitions = /defs.json\n",
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let s = r.settings;
    let listeners = s.tcp_listeners.unwrap();
    assert_eq!(listeners[0].0, "default");
    assert_eq!(
        listeners[0].1,
        Listener {
            ip: None,
            port: 5673
        }
    );
    assert_eq!(listeners[1].1.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(listeners[2].1.ip, Some("::1".parse().unwrap()));
    assert_eq!(s.default_user.as_deref(), Some("app"));
    assert_eq!(s.default_user_tags, Some(vec!["monitoring".to_string()]));
    assert_eq!(s.default_permissions.unwrap().configure, "^app\\.");
    assert_eq!(s.loopback_users, Some(vec![]));
    assert_eq!(s.management_port, Some(15673));
    assert_eq!(s.prometheus_port, Some(15693));
    assert_eq!(
        s.vm_memory_high_watermark,
        Some(MemoryWatermark::Absolute(1_000_000_000 * 2))
    );
    assert_eq!(s.disk_free_limit, Some(DiskFreeLimit::Relative(1.5)));
    assert_eq!(
        (s.channel_max, s.frame_max, s.heartbeat),
        (Some(100), Some(8192), Some(30))
    );
    assert_eq!(s.log_level.as_deref(), Some("debug"));
    assert_eq!(s.load_definitions.unwrap().1, "/defs.json");
}

#[test]
fn loopback_users_forms() {
    assert_eq!(
        report("loopback_users = none\n").settings.loopback_users,
        Some(vec![])
    );
    assert_eq!(
        report("loopback_users.guest = false\nloopback_users.ops = true\n")
            .settings
            .loopback_users,
        Some(vec!["ops".to_string()])
    );
    assert_eq!(report("heartbeat = 5\n").settings.loopback_users, None);
}

#[test]
fn later_entries_win() {
    let r = report(
        "heartbeat = 5\nheartbeat = 7\nlisteners.tcp.default = 1\nlisteners.tcp.default = 2\n",
    );
    assert_eq!(r.settings.heartbeat, Some(7));
    assert_eq!(
        r.settings.tcp_listeners.unwrap(),
        vec![("default".into(), Listener { ip: None, port: 2 })]
    );
}

#[test]
fn unknown_keys_and_bad_values_are_errors() {
    let r = report("foo.bar = 1\nchannel_max = abc\nloopback_users.guest = maybe\n");
    let texts: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        texts,
        vec![
            "test.conf:1: Conf file attempted to set unknown variable: foo.bar",
            "test.conf:2: channel_max: \"abc\" cannot be converted to a(n) integer",
            "test.conf:3: loopback_users.guest: \"maybe\" is not a valid enum value, acceptable values are: true, false",
        ]
    );
    let r = report("default_permissions.configure = .*\n");
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].message.contains("configure, write and read"));
}

#[test]
fn keys_of_missing_features_warn_once_each() {
    let r = report(
        "cluster_formation.peer_discovery_backend = classic_config\n\
         cluster_formation.peer_discovery_backend = classic_config\n\
         mqtt.listeners.tcp.default = 1883\nssl_options.secure_renegotiate = true\n\
         ssl_options.certfile = /c.pem\n\
         log.console = true\nmanagement_agent.disable_metrics_collector = true\n\
         log.file = false\n",
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let keys: Vec<&str> = r.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "cluster_formation.peer_discovery_backend",
            "mqtt.listeners.tcp.default",
            "ssl_options.secure_renegotiate",
        ]
    );
    assert!(r.warnings[2]
        .message
        .contains("a TLS option warren does not support"));
    assert!(r.warnings[1]
        .to_string()
        .starts_with("test.conf:3: mqtt.listeners.tcp.default"));
}

#[test]
fn consumer_timeout_is_read_in_milliseconds_and_must_be_positive() {
    let r = report("consumer_timeout = 3600000\n");
    assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
    assert_eq!(r.settings.consumer_timeout_ms, Some(3_600_000));
    for bad in ["0", "-5", "soon"] {
        let r = report(&format!("consumer_timeout = {bad}\n"));
        assert_eq!(r.errors.len(), 1, "{bad}: {r:?}");
        assert_eq!(r.settings.consumer_timeout_ms, None);
    }
    let r = report("consumer_timeout = 0\n");
    assert!(r.errors[0]
        .message
        .contains("number should be greater or equal to one"));
}

#[test]
fn tls_keys_map_to_listeners_and_options() {
    let r = report(
        "listeners.tcp = none\nlisteners.ssl.default = 5671\nlisteners.ssl.other = 127.0.0.1:5679\n\
         ssl_options.cacertfile = /ca.pem\nssl_options.certfile = /s.pem\nssl_options.keyfile = /s.key\n\
         ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n\
         ssl_options.versions.1 = tlsv1.3\nssl_options.versions.2 = tlsv1.2\n\
         ssl_options.ciphers.1 = TLS_AES_256_GCM_SHA384\nssl_options.honor_cipher_order = true\n\
         ssl_options.depth = 3\nmanagement.ssl.port = 15671\nmanagement.ssl.certfile = /m.pem\n\
         prometheus.ssl.ip = 127.0.0.1\nauth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = EXTERNAL\n\
         ssl_cert_login_from = common_name\n",
    );
    assert!(
        r.errors.is_empty() && r.warnings.is_empty(),
        "{:?} {:?}",
        r.errors,
        r.warnings
    );
    let s = r.settings;
    assert_eq!(s.tcp_listeners, Some(Vec::new()));
    let ssl = s.ssl_listeners.unwrap();
    assert_eq!(
        ssl[0],
        (
            "default".into(),
            Listener {
                ip: None,
                port: 5671
            }
        )
    );
    assert_eq!(ssl[1].1.port, 5679);
    let o = &s.ssl_options;
    assert_eq!(
        o.cacertfile.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );
    assert_eq!(o.keyfile.as_deref(), Some(std::path::Path::new("/s.key")));
    assert_eq!(o.verify, warren_tls::Verify::VerifyPeer);
    assert!(o.fail_if_no_peer_cert && o.honor_cipher_order);
    assert_eq!(o.versions, ["tlsv1.3", "tlsv1.2"]);
    assert_eq!(o.ciphers, ["TLS_AES_256_GCM_SHA384"]);
    assert_eq!(o.depth, Some(3));
    assert_eq!(s.management_ssl.port, Some(15671));
    assert_eq!(
        s.management_ssl.options.certfile.as_deref(),
        Some(std::path::Path::new("/m.pem"))
    );
    assert_eq!(s.prometheus_ssl.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(s.auth_mechanisms.unwrap(), ["PLAIN", "EXTERNAL"]);
    assert_eq!(s.ssl_cert_login_from.as_deref(), Some("common_name"));
    let bad = report("ssl_options.verify = maybe\nssl_options.fail_if_no_peer_cert = yes\n");
    assert_eq!(bad.errors.len(), 2);
    assert!(bad.errors[0].message.contains("verify_peer, verify_none"));
}

proptest! {
    /// Any text: parse never panics, and what it returns re-parses to the same entries
    /// when written back as `key = value` lines.
    #[test]
    fn parse_is_total_and_round_trips(text in "[ -~\t\n\r#=.é]{0,200}") {
        if let Ok(entries) = parse(&text) {
            let settings_only: Vec<_> =
                entries.iter().filter(|e| e.kind == EntryKind::Setting).collect();
            let written: String = settings_only
                .iter()
                .map(|e| format!("{} = {}\n", e.key, e.value.trim_end()))
                .collect();
            if let Ok(again) = parse(&written) {
                prop_assert_eq!(again.len(), settings_only.len());
            }
            let _ = settings(entries.iter().map(|e| ("p", e)));
        }
    }

    #[test]
    fn well_formed_lines_parse(
        key in "[a-z_]{1,8}(\\.[a-z0-9_-]{1,8}){0,3}",
        value in "[!-\"$-~][ !-\"$-~]{0,20}[!-\"$-~]",
        pad in "[ \t]{0,3}",
    ) {
        let text = format!("{pad}{key}{pad}={pad}{value}{pad}\n# comment\n");
        let entries = parse(&text).unwrap();
        prop_assert_eq!(entries.len(), 1);
        prop_assert_eq!(&entries[0].key, &key);
        prop_assert_eq!(&entries[0].value, &value);
        prop_assert_eq!(entries[0].line, 1);
    }
}
