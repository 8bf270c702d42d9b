//! RabbitMQ's own configuration, read as RabbitMQ 3.10 reads it: the `RABBITMQ_*`
//! environment variables, rabbitmq.conf (`RABBITMQ_CONFIG_FILE`, by default
//! `/etc/rabbitmq/rabbitmq.conf`) with the additional files (`RABBITMQ_CONFIG_FILES`, by
//! default `/etc/rabbitmq/conf.d/*.conf`, in lexical order), and `enabled_plugins`.
//! The parsing itself is `warren_server::util::rabbitmq_conf`; this module finds and
//! reads the files and merges the variables in.

use std::path::{Path, PathBuf};

use warren_server::util::rabbitmq_conf::{
    self as conf, ConfEntry, Listener, Settings, BUILT_IN_PLUGINS,
};

use super::{Env, Note};

/// What the official Docker image's entrypoint refuses (3.9 to 3.13, unchanged): each set
/// one is named, then the start stops.
pub(crate) const DEPRECATED_ENV_VARS: [&str; 15] = [
    "RABBITMQ_DEFAULT_PASS_FILE",
    "RABBITMQ_DEFAULT_USER_FILE",
    "RABBITMQ_MANAGEMENT_SSL_CACERTFILE",
    "RABBITMQ_MANAGEMENT_SSL_CERTFILE",
    "RABBITMQ_MANAGEMENT_SSL_DEPTH",
    "RABBITMQ_MANAGEMENT_SSL_FAIL_IF_NO_PEER_CERT",
    "RABBITMQ_MANAGEMENT_SSL_KEYFILE",
    "RABBITMQ_MANAGEMENT_SSL_VERIFY",
    "RABBITMQ_SSL_CACERTFILE",
    "RABBITMQ_SSL_CERTFILE",
    "RABBITMQ_SSL_DEPTH",
    "RABBITMQ_SSL_FAIL_IF_NO_PEER_CERT",
    "RABBITMQ_SSL_KEYFILE",
    "RABBITMQ_SSL_VERIFY",
    "RABBITMQ_VM_MEMORY_HIGH_WATERMARK",
];

/// The entrypoint's text (stderr, then exit 1) when a deprecated variable is set and not
/// empty; `None` when none is.
pub(crate) fn deprecated_env_error(env: &Env) -> Option<String> {
    let set: Vec<&str> = DEPRECATED_ENV_VARS
        .into_iter()
        .filter(|v| env.get(v).is_some())
        .collect();
    if set.is_empty() {
        return None;
    }
    let mut text = String::new();
    for v in set {
        text.push_str(&format!("error: {v} is set but deprecated\n"));
    }
    text.push_str("error: deprecated environment variables detected\n\n");
    text.push_str("Please use a configuration file instead; visit https://www.rabbitmq.com/configure.html to learn more\n");
    Some(text)
}

/// Everything the RabbitMQ side says, merged: rabbitmq.conf, then the variables.
#[derive(Debug, Default)]
pub(crate) struct RabbitLayer {
    pub settings: Settings,
    /// From `RABBITMQ_MNESIA_DIR` or `RABBITMQ_MNESIA_BASE`.
    pub data_dir: Option<PathBuf>,
    /// Enabled plugins warren implements beyond the built-in ones.
    pub plugins: Vec<String>,
}

/// The plugin that provides the EXTERNAL mechanism in RabbitMQ; warren has it built in,
/// and offers EXTERNAL from rabbitmq.conf's auth_mechanisms only when it is enabled.
pub(crate) const AUTH_MECHANISM_SSL: &str = "rabbitmq_auth_mechanism_ssl";

/// Reads the RabbitMQ side. `etc` is where the default files are looked for
/// (`/etc/rabbitmq`; `None` turns the default lookup off). Errors are complete messages.
pub(crate) fn load(
    env: &Env,
    etc: Option<&Path>,
    notes: &mut Vec<Note>,
) -> Result<RabbitLayer, Vec<String>> {
    let files = conf_files(env, etc, notes).map_err(|e| vec![e])?;
    let mut parsed: Vec<(String, Vec<ConfEntry>)> = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| {
            vec![format!(
                "Error parsing configuration: cannot read {}: {e}",
                file.display()
            )]
        })?;
        let name = file.display().to_string();
        let entries = conf::parse_utf8(&bytes).map_err(|e| {
            vec![format!(
                "Error parsing configuration: {} ({}); are these files using the Cuttlefish format?",
                e.rabbitmq_text(&name),
                e.reason
            )]
        })?;
        parsed.push((name, entries));
    }
    if !files.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        notes.push(Note::info(format!("config file(s): {}", names.join(", "))));
    }
    let report = conf::settings(
        parsed
            .iter()
            .flat_map(|(name, entries)| entries.iter().map(move |e| (name.as_str(), e))),
    );
    if !report.errors.is_empty() {
        return Err(report
            .errors
            .iter()
            .map(|p| format!("Error preparing configuration: {p}"))
            .collect());
    }
    for w in &report.warnings {
        notes.push(Note::warn(w.to_string()));
    }
    let mut settings = report.settings;
    apply_env(&mut settings, env).map_err(|e| vec![e])?;
    let plugins = plugins(env, etc, notes).map_err(|e| vec![e])?;
    Ok(RabbitLayer {
        settings,
        data_dir: data_dir(env),
        plugins,
    })
}

/// The main file then the additional ones, as RabbitMQ finds them.
fn conf_files(
    env: &Env,
    etc: Option<&Path>,
    notes: &mut Vec<Note>,
) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let main = match env.get("RABBITMQ_CONFIG_FILE") {
        Some(v) => Some(main_file(&v)?),
        None => etc.map(|dir| dir.join("rabbitmq.conf")),
    };
    if let Some(main) = main.filter(|m| m.is_file()) {
        files.push(main);
    }
    if env.get("RABBITMQ_CONFIG_FILE").is_none() {
        if let Some(dir) = etc {
            for other in ["rabbitmq.config", "advanced.config"] {
                if dir.join(other).is_file() {
                    notes.push(Note::warn(format!(
                        "{}: Erlang-term configuration is not read by warren; ignored",
                        dir.join(other).display()
                    )));
                }
            }
        }
    }
    let pattern = match env.get("RABBITMQ_CONFIG_FILES") {
        Some(v) => Some(PathBuf::from(v)),
        None => etc.map(|dir| dir.join("conf.d").join("*.conf")),
    };
    if let Some(pattern) = pattern {
        files.extend(additional_files(&pattern));
    }
    Ok(files)
}

/// `RABBITMQ_CONFIG_FILE`: the extension is optional (`.conf` is added); `.config` is the
/// Erlang-term format warren does not read.
fn main_file(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    match path.extension().and_then(|e| e.to_str()) {
        Some("conf") => Ok(path),
        Some("config") => Err(format!(
            "RABBITMQ_CONFIG_FILE={value}: warren reads the rabbitmq.conf format only, \
             not Erlang-term .config files"
        )),
        _ => Ok(PathBuf::from(format!("{value}.conf"))),
    }
}

/// A directory (every file directly in it) or a pattern whose last part may hold `*`
/// (`conf.d/*.conf`); sorted by name. Nothing when the place does not exist.
fn additional_files(pattern: &Path) -> Vec<PathBuf> {
    let (dir, glob) = if pattern.is_dir() {
        (pattern.to_path_buf(), "*".to_string())
    } else {
        let name = pattern.file_name().map(|n| n.to_string_lossy().to_string());
        match (pattern.parent(), name) {
            (Some(dir), Some(name)) if name.contains('*') => (dir.to_path_buf(), name),
            _ => {
                return [pattern.to_path_buf()]
                    .into_iter()
                    .filter(|p| p.is_file())
                    .collect()
            }
        }
    };
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| glob_match(&glob, &n.to_string_lossy()))
        })
        .collect();
    files.sort();
    files
}

/// `*` matches any run of characters; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob_match(tail, &rest[i..]))
        }
    }
}

/// The variables, as RabbitMQ 3.10 weighs them: `RABBITMQ_DEFAULT_*` override
/// rabbitmq.conf; `RABBITMQ_NODE_PORT` / `RABBITMQ_NODE_IP_ADDRESS` apply only when
/// rabbitmq.conf sets no `listeners.tcp`.
fn apply_env(s: &mut Settings, env: &Env) -> Result<(), String> {
    if let Some(user) = env.get("RABBITMQ_DEFAULT_USER") {
        s.default_user = Some(user);
    }
    if let Some(pass) = env.get("RABBITMQ_DEFAULT_PASS") {
        s.default_pass = Some(pass);
    }
    if let Some(vhost) = env.get("RABBITMQ_DEFAULT_VHOST") {
        s.default_vhost = Some(vhost);
    }
    let port = env.get("RABBITMQ_NODE_PORT");
    let ip = env.get("RABBITMQ_NODE_IP_ADDRESS");
    if s.tcp_listeners.is_none() && (port.is_some() || ip.is_some()) {
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("RABBITMQ_NODE_PORT={p} is not a port number"))?,
            None => 5672,
        };
        let ip = match ip {
            Some(a) => Some(
                a.trim_matches(['[', ']'])
                    .parse()
                    .map_err(|_| format!("RABBITMQ_NODE_IP_ADDRESS={a} is not an IP address"))?,
            ),
            None => None,
        };
        s.tcp_listeners = Some(vec![("default".into(), Listener { ip, port })]);
    }
    Ok(())
}

/// `RABBITMQ_MNESIA_DIR` is the data directory; `RABBITMQ_MNESIA_BASE` holds it as
/// `BASE/warren` (RabbitMQ uses `BASE/NODENAME`; warren's name does not depend on the
/// host name, so a re-created container keeps its data).
fn data_dir(env: &Env) -> Option<PathBuf> {
    env.get("RABBITMQ_MNESIA_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            env.get("RABBITMQ_MNESIA_BASE")
                .map(|b| Path::new(&b).join("warren"))
        })
}

/// Reads `enabled_plugins` (and `RABBITMQ_ENABLED_PLUGINS`): built-in plugins are always
/// on; the optional ones warren implements ([`conf::OPTIONAL_PLUGINS`]) are returned;
/// others are named in a warning.
fn plugins(env: &Env, etc: Option<&Path>, notes: &mut Vec<Note>) -> Result<Vec<String>, String> {
    let mut names: Vec<(String, String)> = Vec::new();
    let file = env
        .get("RABBITMQ_ENABLED_PLUGINS_FILE")
        .map(PathBuf::from)
        .or_else(|| etc.map(|d| d.join("enabled_plugins")));
    if let Some(file) = file.filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read enabled plugins file {}: {e}", file.display()))?;
        let list = conf::parse_enabled_plugins(&text)
            .map_err(|e| format!("Malformed enabled plugins file {}: {e}", file.display()))?;
        let origin = file.display().to_string();
        names.extend(list.into_iter().map(|n| (n, origin.clone())));
    }
    if let Some(list) = env.get("RABBITMQ_ENABLED_PLUGINS").filter(|l| l != "ALL") {
        names.extend(
            list.split(',')
                .map(|n| (n.trim().to_string(), "RABBITMQ_ENABLED_PLUGINS".to_string()))
                .filter(|(n, _)| !n.is_empty()),
        );
    }
    let mut enabled = Vec::new();
    for (name, origin) in names {
        if conf::OPTIONAL_PLUGINS.contains(&name.as_str()) {
            if !enabled.contains(&name) {
                enabled.push(name);
            }
        } else if !BUILT_IN_PLUGINS.contains(&name.as_str()) {
            notes.push(Note::warn(format!(
                "plugin {name} (enabled in {origin}) is not part of warren; ignored"
            )));
        }
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.conf", "10-a.conf"));
        assert!(!glob_match("*.conf", "10-a.conf.bak"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b", "ac"));
    }

    #[test]
    fn config_file_extension_is_optional() {
        assert_eq!(
            main_file("/x/rabbitmq").unwrap(),
            PathBuf::from("/x/rabbitmq.conf")
        );
        assert_eq!(main_file("/x/r.conf").unwrap(), PathBuf::from("/x/r.conf"));
        assert!(main_file("/x/rabbitmq.config").is_err());
    }

    #[test]
    fn deprecated_variables_text() {
        let env = Env::from_pairs(&[
            ("RABBITMQ_VM_MEMORY_HIGH_WATERMARK", "0.6"),
            ("RABBITMQ_SSL_CERTFILE", "/c.pem"),
            ("RABBITMQ_SSL_KEYFILE", ""),
        ]);
        assert_eq!(
            deprecated_env_error(&env).unwrap(),
            "error: RABBITMQ_SSL_CERTFILE is set but deprecated\n\
             error: RABBITMQ_VM_MEMORY_HIGH_WATERMARK is set but deprecated\n\
             error: deprecated environment variables detected\n\n\
             Please use a configuration file instead; visit https://www.rabbitmq.com/configure.html to learn more\n"
        );
        assert!(
            deprecated_env_error(&Env::from_pairs(&[("RABBITMQ_DEFAULT_USER", "a")])).is_none()
        );
    }

    #[test]
    fn node_port_yields_to_conf_listeners() {
        let env = Env::from_pairs(&[
            ("RABBITMQ_NODE_PORT", "5699"),
            ("RABBITMQ_DEFAULT_USER", "bob"),
        ]);
        let mut s = Settings::default();
        apply_env(&mut s, &env).unwrap();
        assert_eq!(s.tcp_listeners.as_ref().unwrap()[0].1.port, 5699);
        assert_eq!(s.default_user.as_deref(), Some("bob"));
        let mut s = Settings {
            tcp_listeners: Some(vec![("default".into(), Listener { ip: None, port: 1 })]),
            default_user: Some("carol".into()),
            ..Settings::default()
        };
        apply_env(&mut s, &env).unwrap();
        assert_eq!(s.tcp_listeners.unwrap()[0].1.port, 1);
        assert_eq!(s.default_user.as_deref(), Some("bob"));
    }

    #[test]
    fn data_dir_mapping() {
        let env = Env::from_pairs(&[("RABBITMQ_MNESIA_BASE", "/var/lib/rabbitmq/mnesia")]);
        assert_eq!(
            data_dir(&env),
            Some(PathBuf::from("/var/lib/rabbitmq/mnesia/warren"))
        );
        let env = Env::from_pairs(&[
            ("RABBITMQ_MNESIA_BASE", "/b"),
            ("RABBITMQ_MNESIA_DIR", "/d"),
        ]);
        assert_eq!(data_dir(&env), Some(PathBuf::from("/d")));
    }
}
