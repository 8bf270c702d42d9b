//! `rabbitmqadmin`: the management plugin's CLI (3.10's Python script), its `name=value`
//! arguments, its output formats and its messages, over the same HTTP API.

use serde_json::{json, Map, Value};

use super::api::{self, Api};
use crate::ctl::http::{seg, SendError};

/// How a command failed: a usage error (`ERROR: ...` and the help hint) or `*** ...`;
/// both exit 1, as the script does.
#[derive(Debug, PartialEq)]
enum Fail {
    Usage(String),
    Die(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Opts {
    host: Option<String>,
    port: Option<String>,
    vhost: Option<String>,
    user: Option<String>,
    password: Option<String>,
    path_prefix: String,
    quiet: bool,
    format: String,
    depth: usize,
    sort: Option<String>,
    sort_reverse: bool,
    version: bool,
    help: bool,
    /// `--ssl` / `-s`: HTTPS.
    ssl: bool,
    /// `--ssl-ca-cert-file`.
    ssl_ca: Option<String>,
}

/// (long, short, takes a value).
const OPTIONS: &[(&str, Option<char>, bool)] = &[
    ("config", Some('c'), true),
    ("node", Some('N'), true),
    ("host", Some('H'), true),
    ("port", Some('P'), true),
    ("path-prefix", None, true),
    ("vhost", Some('V'), true),
    ("username", Some('u'), true),
    ("password", Some('p'), true),
    ("base-uri", Some('U'), true),
    ("quiet", Some('q'), false),
    ("ssl", Some('s'), false),
    ("ssl-key-file", None, true),
    ("ssl-cert-file", None, true),
    ("ssl-ca-cert-file", None, true),
    ("ssl-disable-hostname-verification", None, false),
    ("ssl-insecure", Some('k'), false),
    ("request-timeout", Some('t'), true),
    ("format", Some('f'), true),
    ("sort", Some('S'), true),
    ("sort-reverse", Some('R'), false),
    ("depth", Some('d'), true),
    ("bash-completion", None, false),
    ("version", None, false),
    ("help", Some('h'), false),
];

/// optparse's way: options anywhere, `-Pvalue`, `-P value`, `--port=value`.
fn parse_opts(args: &[String]) -> Result<(Opts, Vec<String>), String> {
    let mut o = Opts {
        host: None,
        port: None,
        vhost: None,
        user: None,
        password: None,
        path_prefix: String::new(),
        quiet: false,
        format: "table".into(),
        depth: 1,
        sort: None,
        sort_reverse: false,
        version: false,
        help: false,
        ssl: false,
        ssl_ca: None,
    };
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let (spec, inline) = if let Some(long) = a.strip_prefix("--") {
            if long.is_empty() {
                rest.extend(args[i..].iter().cloned());
                break;
            }
            let (n, v) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            (OPTIONS.iter().find(|s| s.0 == n), v)
        } else if a.len() > 1 && a.starts_with('-') {
            let letter = a[1..].chars().next();
            let tail = &a[1 + letter.map_or(0, char::len_utf8)..];
            (
                OPTIONS.iter().find(|s| s.1 == letter),
                (!tail.is_empty()).then(|| tail.to_string()),
            )
        } else {
            rest.push(a.clone());
            continue;
        };
        let Some(&(long, _, takes)) = spec else {
            return Err(format!(
                "no such option: {}",
                a.split('=').next().unwrap_or(a)
            ));
        };
        let value = if takes {
            match inline {
                Some(v) => Some(v),
                None => {
                    let v = args.get(i).cloned();
                    i += 1;
                    Some(v.ok_or_else(|| format!("{a} option requires an argument"))?)
                }
            }
        } else {
            None
        };
        set_opt(&mut o, long, value)?;
    }
    Ok((o, rest))
}

fn set_opt(o: &mut Opts, long: &str, value: Option<String>) -> Result<(), String> {
    let v = value.unwrap_or_default();
    match long {
        "host" => o.host = Some(v),
        "port" => o.port = Some(v),
        "vhost" => o.vhost = Some(v),
        "username" => o.user = Some(v),
        "password" => o.password = Some(v),
        "path-prefix" => o.path_prefix = v,
        "quiet" => o.quiet = true,
        "format" => o.format = v,
        "depth" => o.depth = v.parse().map_err(|_| format!("invalid depth: {v}"))?,
        "sort" => o.sort = Some(v),
        "sort-reverse" => o.sort_reverse = true,
        "version" => o.version = true,
        "help" => o.help = true,
        "ssl" => o.ssl = true,
        "ssl-ca-cert-file" => o.ssl_ca = Some(v),
        "base-uri" => base_uri(o, &v),
        "request-timeout" | "node" => {}
        "config" => return Err(
            "configuration files (-c) are not supported by warren's rabbitmqadmin; use -H/-P/-u/-p"
                .into(),
        ),
        _ => {
            return Err(format!(
            "--{long} is not supported by warren's rabbitmqadmin (-s and --ssl-ca-cert-file are)"
        ))
        }
    }
    Ok(())
}

/// `-U http://user:pass@host:port/`: the parts that are there.
fn base_uri(o: &mut Opts, uri: &str) {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let (creds, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    if let Some(c) = creds {
        let (u, p) = c.split_once(':').unwrap_or((c, ""));
        o.user = Some(u.to_string());
        if !p.is_empty() {
            o.password = Some(p.to_string());
        }
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => {
            o.host = Some(h.to_string());
            o.port = Some(p.to_string());
        }
        _ if !hostport.is_empty() => o.host = Some(hostport.to_string()),
        _ => {}
    }
}

struct Admin {
    o: Opts,
    api: Api,
    args: Vec<String>,
}

pub(crate) fn main(args: &[String]) -> u8 {
    let (o, rest) = match parse_opts(args) {
        Ok(x) => x,
        Err(e) => {
            eprint!("Usage: rabbitmqadmin [options] subcommand\n\nrabbitmqadmin: error: {e}\n");
            return 2;
        }
    };
    if o.version {
        println!(
            "rabbitmqadmin {}",
            warren_server::ServerConfig::default().rabbitmq_version
        );
        return 0;
    }
    if o.help {
        println!("{}", help());
        return 0;
    }
    let (user, password) = api::credentials();
    let ctl_host = std::env::var("WARREN_CTL_HOST")
        .ok()
        .filter(|h| !h.is_empty());
    let addr = match (&o.host, &o.port, ctl_host) {
        (None, None, Some(h)) => h,
        (h, p, _) => format!(
            "{}:{}",
            h.as_deref().unwrap_or("localhost"),
            p.as_deref().unwrap_or("15672")
        ),
    };
    // rabbitmqadmin's -s: HTTPS, verified against --ssl-ca-cert-file.
    let addr = if o.ssl && !addr.starts_with("https://") {
        format!("https://{addr}")
    } else {
        addr
    };
    let api = Api {
        cacert: o
            .ssl_ca
            .clone()
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("WARREN_CTL_CACERT").map(std::path::PathBuf::from)),
        addr,
        user: o.user.clone().unwrap_or(user),
        password: o.password.clone().unwrap_or(password),
        node: String::new(),
        // rabbitmqadmin is an HTTP client with its own -u/-p, as RabbitMQ's script.
        cookie: None,
    };
    let admin = Admin {
        args: rest.get(1..).unwrap_or_default().to_vec(),
        o,
        api,
    };
    let result = match rest.first().map(String::as_str) {
        None => Err(Fail::Usage("Action not specified".into())),
        Some("list") => admin.list(),
        Some("show") => admin.show(),
        Some("declare") => admin.change("declare"),
        Some("delete") => admin.change("delete"),
        Some("close") => admin.change("close"),
        Some("purge") => admin.change("purge"),
        Some("publish") => admin.publish(),
        Some("get") => admin.get(),
        Some("export") => admin.export(),
        Some("import") => admin.import(),
        Some("help") => {
            println!("{}", help());
            Ok(())
        }
        Some(other) => Err(Fail::Usage(format!("Action {other} not understood"))),
    };
    match result {
        Ok(()) => 0,
        Err(Fail::Usage(msg)) => {
            eprint!("\nERROR: {msg}\n\nrabbitmqadmin --help for help\n\n");
            1
        }
        Err(Fail::Die(msg)) => {
            eprint!("*** {msg}\n\n");
            1
        }
    }
}

fn help() -> String {
    "Usage: rabbitmqadmin [options] subcommand

  list <type> [<column>...]     connections channels consumers exchanges queues bindings
                                users vhosts permissions nodes parameters policies
  show overview [<column>...]
  declare <type> name=value...  exchange queue binding vhost user permission parameter policy
  delete <type> name=value...
  close connection name=...
  purge queue name=...
  publish routing_key=... [payload=...] [exchange=...] [properties=...]
  get queue=... [count=...] [ackmode=...] [payload_file=...]
  export <file>
  import <file>

Options: -H HOST -P PORT -V VHOST -u USERNAME -p PASSWORD -U BASE_URI -q
         -f table|tsv|long|kvp|bash|raw_json|pretty_json -d DEPTH -S SORT -R --version"
        .to_string()
}

impl Admin {
    fn verbose(&self, line: &str) {
        if !self.o.quiet {
            println!("{line}");
        }
    }

    /// One request to `/api<path>`: the reply text, or rabbitmqadmin's message.
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Result<String, Fail> {
        let full = format!("{}/api{path}", self.o.path_prefix);
        let reply = self
            .api
            .send(method, &full, body, &[])
            .map_err(|e| match e {
                SendError::Unreachable(e) => Fail::Die(format!("Could not connect: {e}")),
                SendError::Broken(e) => Fail::Die(format!("Error getting HTTP response:\n\n{e}")),
            })?;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        match reply.status {
            400 => Err(Fail::Die(api::reason(&reply))),
            401 => Err(Fail::Die(format!("Access refused: {full}"))),
            404 => Err(Fail::Die(format!("Not found: {full}"))),
            s if s > 400 => Err(Fail::Die(format!(
                "Received response {s} for path {full}\n{text}"
            ))),
            _ => Ok(text),
        }
    }

    fn list(&self) -> Result<(), Fail> {
        let kind = self.args.first().map(String::as_str).unwrap_or_default();
        let Some(&(_, vhost_scoped, defaults, json_keys)) = LISTABLE.iter().find(|l| l.0 == kind)
        else {
            return Err(Fail::Usage(format!("Don't know how to list {kind}")));
        };
        let mut uri = format!("/{}", kind.replace('_', "-"));
        if vhost_scoped {
            if let Some(v) = &self.o.vhost {
                uri = format!("{uri}/{}", seg(v));
            }
        }
        let mut cols: Vec<String> = self.args[1..].to_vec();
        if cols.is_empty() && self.o.depth == 1 && !self.o.format.contains("json") {
            cols = defaults.iter().map(|c| c.to_string()).collect();
        }
        let text = self.http("GET", &self.with_query(uri, &cols), None)?;
        self.format_list(&text, &cols, json_keys)
    }

    fn with_query(&self, uri: String, cols: &[String]) -> String {
        let mut query = Vec::new();
        if !cols.is_empty() {
            query.push(format!("columns={}", cols.join(",")));
        }
        if let Some(s) = &self.o.sort {
            query.push(format!("sort={s}"));
        }
        if self.o.sort_reverse {
            query.push("sort_reverse=true".into());
        }
        if query.is_empty() {
            uri
        } else {
            format!("{uri}?{}", query.join("&"))
        }
    }

    fn show(&self) -> Result<(), Fail> {
        let kind = self.args.first().map(String::as_str).unwrap_or_default();
        if kind != "overview" {
            return Err(Fail::Usage(format!("Don't know how to show {kind}")));
        }
        let mut cols: Vec<String> = self.args[1..].to_vec();
        if cols.is_empty() && self.o.depth == 1 && !self.o.format.contains("json") {
            cols = [
                "rabbitmq_version",
                "cluster_name",
                "queue_totals.messages",
                "object_totals.queues",
            ]
            .iter()
            .map(|c| c.to_string())
            .collect();
        }
        let text = self.http("GET", &self.with_query("/overview".into(), &cols), None)?;
        self.format_list(&format!("[{text}]"), &cols, &[])
    }

    /// declare, delete, close, purge: `verb TYPE name=value...`.
    fn change(&self, verb: &str) -> Result<(), Fail> {
        let kind = self
            .args
            .first()
            .ok_or_else(|| Fail::Usage("Type not specified".into()))?;
        let spec = obj_spec(verb, kind)
            .ok_or_else(|| Fail::Usage(format!("Type {kind} not recognised")))?;
        let (uri, upload) = parse_args(&self.args[1..], &spec, self.o.vhost.as_deref())?;
        let method = match (verb, kind.as_str()) {
            ("declare", "binding") => "POST",
            ("declare", _) => "PUT",
            _ => "DELETE",
        };
        let body = (verb == "declare").then_some(Value::Object(upload));
        self.http(method, &uri, body.as_ref())?;
        let done = match verb {
            "declare" => "declared",
            "delete" => "deleted",
            "close" => "closed",
            _ => "purged",
        };
        self.verbose(&format!("{kind} {done}"));
        Ok(())
    }

    fn publish(&self) -> Result<(), Fail> {
        let spec = obj_spec("publish", "").ok_or_else(|| Fail::Usage("publish".into()))?;
        let (uri, mut upload) = parse_args(&self.args, &spec, self.o.vhost.as_deref())?;
        if !upload.contains_key("payload") {
            let mut data = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut data);
            upload.insert("payload".into(), json!(crate::ctl::http::base64(&data)));
            upload.insert("payload_encoding".into(), json!("base64"));
        }
        let text = self.http("POST", &uri, Some(&Value::Object(upload)))?;
        let routed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if routed.get("routed").and_then(Value::as_bool) == Some(true) {
            self.verbose("Message published");
        } else {
            self.verbose("Message published but NOT routed");
        }
        Ok(())
    }

    fn get(&self) -> Result<(), Fail> {
        let spec = obj_spec("get", "").ok_or_else(|| Fail::Usage("get".into()))?;
        let (uri, upload) = parse_args(&self.args, &spec, self.o.vhost.as_deref())?;
        let payload_file = upload
            .get("payload_file")
            .and_then(Value::as_str)
            .map(String::from);
        if payload_file.is_some() && upload.get("count") != Some(&json!("1")) {
            return Err(Fail::Usage(
                "Cannot get multiple messages using payload_file".into(),
            ));
        }
        let text = self.http("POST", &uri, Some(&Value::Object(upload)))?;
        match payload_file {
            Some(file) => {
                write_payload_file(&file, &text)?;
                let cols: Vec<String> = [
                    "routing_key",
                    "exchange",
                    "message_count",
                    "payload_bytes",
                    "redelivered",
                ]
                .iter()
                .map(|c| c.to_string())
                .collect();
                self.format_list(&text, &cols, &[])
            }
            None => self.format_list(&text, &[], &[]),
        }
    }

    fn one_arg(&self) -> Result<&str, Fail> {
        match self.args.as_slice() {
            [a] => Ok(a),
            _ => Err(Fail::Usage("Exactly one argument required".into())),
        }
    }

    fn definitions_uri(&self) -> String {
        match &self.o.vhost {
            Some(v) => format!("/definitions/{}", seg(v)),
            None => "/definitions".into(),
        }
    }

    fn hostname(&self) -> String {
        self.o.host.clone().unwrap_or_else(|| "localhost".into())
    }

    fn export(&self) -> Result<(), Fail> {
        let path = self.one_arg()?;
        let text = self.http("GET", &self.definitions_uri(), None)?;
        std::fs::write(path, text).map_err(|e| Fail::Die(format!("cannot write {path}: {e}")))?;
        self.verbose(&format!(
            "Exported definitions for {} to \"{path}\"",
            self.hostname()
        ));
        Ok(())
    }

    fn import(&self) -> Result<(), Fail> {
        let path = self.one_arg()?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Fail::Die(format!("cannot read {path}: {e}")))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| Fail::Die(format!("{path} is not JSON: {e}")))?;
        self.http("POST", &self.definitions_uri(), Some(&doc))?;
        self.verbose(&format!(
            "Uploaded definitions from \"{}\" to {path}. The import process may take some time. Consult server logs to track progress.",
            self.hostname()
        ));
        Ok(())
    }

    fn format_list(&self, text: &str, cols: &[String], json_keys: &[&str]) -> Result<(), Fail> {
        match self.o.format.as_str() {
            "raw_json" => {
                println!("{text}");
                return Ok(());
            }
            "pretty_json" => {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(());
            }
            "table" | "tsv" | "long" | "kvp" | "bash" => {}
            other => return Err(Fail::Usage(format!("Format {other} not recognised"))),
        }
        let items: Vec<Value> = match serde_json::from_str(text) {
            Ok(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let depth = if cols.is_empty() {
            self.o.depth
        } else {
            usize::MAX
        };
        let (columns, table) = list_to_table(&items, cols, depth, json_keys);
        if table.is_empty() {
            self.verbose("No items");
            return Ok(());
        }
        print!("{}", render(&self.o.format, &columns, &table, self.o.quiet));
        Ok(())
    }
}

/// (type, vhost-scoped, default columns, keys shown as JSON).
const LISTABLE: &[(&str, bool, &[&str], &[&str])] = &[
    ("connections", false, &["name", "user", "channels"], &[]),
    ("channels", false, &["name", "user"], &[]),
    ("consumers", true, &[], &[]),
    ("exchanges", true, &["name", "type"], &[]),
    ("queues", true, &["name", "messages"], &[]),
    (
        "bindings",
        true,
        &["source", "destination", "routing_key"],
        &[],
    ),
    ("users", false, &[], &[]),
    ("vhosts", false, &["name", "messages"], &[]),
    ("permissions", false, &[], &[]),
    ("nodes", false, &["name", "type", "mem_used"], &[]),
    ("parameters", false, &[], &["value"]),
    ("policies", false, &[], &["definition"]),
    ("operator_policies", false, &[], &["definition"]),
    ("vhost_limits", false, &[], &["value"]),
];

/// What a `name=value` command takes.
struct ObjSpec {
    /// Required names; `a|b` means one of them.
    mandatory: &'static [&'static str],
    /// Optional names and their defaults (sent when not null).
    optional: Vec<(&'static str, Value)>,
    /// Names whose values are JSON.
    json: &'static [&'static str],
    uri: &'static str,
}

fn obj_spec(verb: &str, kind: &str) -> Option<ObjSpec> {
    let s = |mandatory, optional, json, uri| {
        Some(ObjSpec {
            mandatory,
            optional,
            json,
            uri,
        })
    };
    let f = || json!("false");
    match (verb, kind) {
        ("declare", "exchange") => s(
            &["name", "type"],
            vec![
                ("auto_delete", f()),
                ("durable", json!("true")),
                ("internal", f()),
                ("arguments", json!({})),
            ],
            &["arguments"],
            "/exchanges/{vhost}/{name}",
        ),
        ("declare", "queue") => s(
            &["name"],
            vec![
                ("auto_delete", f()),
                ("durable", json!("true")),
                ("arguments", json!({})),
                ("node", Value::Null),
                ("queue_type", Value::Null),
            ],
            &["arguments"],
            "/queues/{vhost}/{name}",
        ),
        ("declare", "binding") => s(
            &["source", "destination"],
            vec![
                ("destination_type", json!("queue")),
                ("routing_key", json!("")),
                ("arguments", json!({})),
            ],
            &["arguments"],
            "/bindings/{vhost}/e/{source}/{destination_char}/{destination}",
        ),
        ("declare", "vhost") => s(
            &["name"],
            vec![("tracing", Value::Null)],
            &[],
            "/vhosts/{name}",
        ),
        ("declare", "user") => s(
            &["name", "password|password_hash", "tags"],
            vec![("hashing_algorithm", Value::Null)],
            &[],
            "/users/{name}",
        ),
        ("declare", "permission") => s(
            &["vhost", "user", "configure", "write", "read"],
            vec![],
            &[],
            "/permissions/{vhost}/{user}",
        ),
        ("declare", "parameter") => s(
            &["component", "name", "value"],
            vec![],
            &["value"],
            "/parameters/{component}/{vhost}/{name}",
        ),
        ("declare", "policy") => s(
            &["name", "pattern", "definition"],
            vec![("priority", json!(0)), ("apply-to", Value::Null)],
            &["definition", "priority"],
            "/policies/{vhost}/{name}",
        ),
        _ => other_spec(verb, kind),
    }
}

/// The specs of delete, close, purge, publish and get.
fn other_spec(verb: &str, kind: &str) -> Option<ObjSpec> {
    let s = |mandatory, optional, json, uri| {
        Some(ObjSpec {
            mandatory,
            optional,
            json,
            uri,
        })
    };
    match (verb, kind) {
        ("delete", "exchange") => s(&["name"], vec![], &[], "/exchanges/{vhost}/{name}"),
        ("delete", "queue") => s(&["name"], vec![], &[], "/queues/{vhost}/{name}"),
        ("delete", "binding") => s(
            &["source", "destination_type", "destination"],
            vec![("properties_key", json!("~"))],
            &[],
            "/bindings/{vhost}/e/{source}/{destination_char}/{destination}/{properties_key}",
        ),
        ("delete", "vhost") => s(&["name"], vec![], &[], "/vhosts/{name}"),
        ("delete", "user") => s(&["name"], vec![], &[], "/users/{name}"),
        ("delete", "permission") => s(
            &["vhost", "user"],
            vec![],
            &[],
            "/permissions/{vhost}/{user}",
        ),
        ("delete", "parameter") => s(
            &["component", "name"],
            vec![],
            &[],
            "/parameters/{component}/{vhost}/{name}",
        ),
        ("delete", "policy") => s(&["name"], vec![], &[], "/policies/{vhost}/{name}"),
        ("close", "connection") => s(&["name"], vec![], &[], "/connections/{name}"),
        ("purge", "queue") => s(&["name"], vec![], &[], "/queues/{vhost}/{name}/contents"),
        ("publish", _) => s(
            &["routing_key"],
            vec![
                ("payload", Value::Null),
                ("properties", json!({})),
                ("exchange", json!("amq.default")),
                ("payload_encoding", json!("string")),
            ],
            &["properties"],
            "/exchanges/{vhost}/{exchange}/publish",
        ),
        ("get", _) => s(
            &["queue"],
            vec![
                ("count", json!("1")),
                ("ackmode", json!("ack_requeue_true")),
                ("payload_file", Value::Null),
                ("encoding", json!("auto")),
            ],
            &[],
            "/queues/{vhost}/{queue}/get",
        ),
        _ => None,
    }
}

/// rabbitmqadmin's `parse_args`: the URI and the upload for `name=value` arguments.
fn parse_args(
    args: &[String],
    spec: &ObjSpec,
    vhost: Option<&str>,
) -> Result<(String, Map<String, Value>), Fail> {
    let mut upload = Map::new();
    for (k, v) in &spec.optional {
        if !v.is_null() {
            upload.insert(k.to_string(), v.clone());
        }
    }
    let mandatory_keys: Vec<&str> = spec.mandatory.iter().flat_map(|m| m.split('|')).collect();
    for a in args {
        let (name, value) = a
            .split_once('=')
            .ok_or_else(|| Fail::Usage(format!("Argument \"{a}\" not in the name=value format")))?;
        if !mandatory_keys.contains(&name) && !spec.optional.iter().any(|(k, _)| *k == name) {
            return Err(Fail::Usage(format!(
                "Argument \"{name}\" is not recognised"
            )));
        }
        let v = if spec.json.contains(&name) {
            serde_json::from_str(value)
                .map_err(|_| Fail::Die(format!("Could not parse JSON:\n  {value}")))?
        } else {
            Value::from(value)
        };
        upload.insert(name.to_string(), v);
    }
    for m in spec.mandatory {
        let alternatives: Vec<&str> = m.split('|').collect();
        if !alternatives.iter().any(|k| upload.contains_key(*k)) {
            return Err(Fail::Usage(if alternatives.len() > 1 {
                let quoted: Vec<String> = alternatives.iter().map(|k| format!("'{k}'")).collect();
                format!(
                    "one of mandatory arguments \"[{}]\" is required",
                    quoted.join(", ")
                )
            } else {
                format!("mandatory argument \"{m}\" is required")
            }));
        }
    }
    if !mandatory_keys.contains(&"vhost") {
        upload.insert("vhost".into(), json!(vhost.unwrap_or("/")));
    }
    let mut uri = spec.uri.to_string();
    for (k, v) in &upload {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            uri = uri.replace(&format!("{{{k}}}"), &seg(s));
            if k == "destination_type" {
                uri = uri.replace(
                    "{destination_char}",
                    &s[..s.char_indices().nth(1).map_or(s.len(), |(i, _)| i)],
                );
            }
        }
    }
    if let Some(t) = upload.remove("queue_type") {
        if let Some(args) = upload.get_mut("arguments").and_then(Value::as_object_mut) {
            args.insert("x-queue-type".into(), t);
        }
    }
    Ok((uri, upload))
}

/// rabbitmqadmin's column order: promoted names first, then alphabetical.
fn column_sort_key(col: &str) -> (u8, usize, String) {
    const PROMOTE: &[&str] = &[
        "vhost",
        "name",
        "type",
        "source",
        "destination",
        "destination_type",
        "routing_key",
    ];
    match PROMOTE.iter().position(|p| *p == col) {
        Some(i) => (1, i, String::new()),
        None => (2, 0, col.to_string()),
    }
}

/// Python's `str()` of a JSON scalar.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Python's `json.dumps` (`", "` and `": "` separators, ASCII only).
fn py_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{}: {}", py_json(&Value::from(k.as_str())), py_json(x)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(py_json).collect::<Vec<_>>().join(", ")),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        other => other.to_string(),
    }
}

/// The cells of one item: (column, text), objects flattened to `max_depth`.
fn flatten(
    prefix: &str,
    depth: usize,
    item: &Map<String, Value>,
    max_depth: usize,
    json_keys: &[&str],
    out: &mut Vec<(String, String)>,
) {
    for (key, sub) in item {
        let column = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match sub {
            Value::Object(m) => {
                if json_keys.contains(&key.as_str()) {
                    out.push((column, py_json(sub)));
                } else if depth < max_depth {
                    flatten(&column, depth + 1, m, max_depth, json_keys, out);
                }
            }
            Value::Array(a) => {
                let text = if a.iter().all(Value::is_string) {
                    a.iter().map(py_str).collect::<Vec<_>>().join(" ")
                } else {
                    py_json(sub)
                };
                out.push((column, text));
            }
            other => out.push((column, py_str(other))),
        }
    }
}

/// rabbitmqadmin's `list_to_table`: the columns (given, or every one found, sorted) and
/// the rows.
fn list_to_table(
    items: &[Value],
    cols: &[String],
    max_depth: usize,
    json_keys: &[&str],
) -> (Vec<String>, Vec<Vec<String>>) {
    let cells: Vec<Vec<(String, String)>> = items
        .iter()
        .map(|i| {
            let mut out = Vec::new();
            if let Some(m) = i.as_object() {
                flatten("", 1, m, max_depth, json_keys, &mut out);
            }
            out
        })
        .collect();
    let columns: Vec<String> = if cols.is_empty() {
        let mut all: Vec<String> = Vec::new();
        for (c, _) in cells.iter().flatten() {
            if !all.contains(c) {
                all.push(c.clone());
            }
        }
        all.sort_by_key(|c| column_sort_key(c));
        all
    } else {
        cols.to_vec()
    };
    let table = cells
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    row.iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    (columns, table)
}

/// The table, tsv, long, kvp and bash formats.
fn render(format: &str, columns: &[String], table: &[Vec<String>], quiet: bool) -> String {
    let mut out = String::new();
    match format {
        "tsv" => {
            if !quiet {
                out.push_str(&format!("{}\n", columns.join("\t")));
            }
            for row in table {
                out.push_str(&format!("{}\n", row.join("\t")));
            }
        }
        "long" => {
            let sep = format!("\n{}\n", "-".repeat(80));
            let width = columns.iter().map(|c| c.chars().count()).max().unwrap_or(0);
            out.push_str(&format!("{sep}\n"));
            for row in table {
                for (c, v) in columns.iter().zip(row) {
                    out.push_str(&format!("{c:>width$}: {v}\n"));
                }
                out.push_str(&format!("{sep}\n"));
            }
        }
        "kvp" => {
            for row in table {
                let pairs: Vec<String> = columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| format!("{c}=\"{v}\""))
                    .collect();
                out.push_str(&format!("{}\n", pairs.join(" ")));
            }
        }
        "bash" => {
            if let Some(ix) = columns.iter().rposition(|c| c == "name") {
                let names: Vec<&str> = table
                    .iter()
                    .filter_map(|r| r.get(ix).map(String::as_str))
                    .collect();
                out.push_str(&format!("{}\n", names.join(" ")));
            }
        }
        _ => out = ascii_table(columns, table),
    }
    out
}

fn ascii_table(columns: &[String], table: &[Vec<String>]) -> String {
    let len = |s: &str| s.chars().count();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            std::iter::once(&columns[i])
                .chain(table.iter().filter_map(|r| r.get(i)))
                .map(|s| len(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let bar = format!(
        "+{}\n",
        widths
            .iter()
            .map(|w| format!("{}+", "-".repeat(w + 2)))
            .collect::<String>()
    );
    let row = |cells: &[String], center: bool| {
        let mut line = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            let pad = w.saturating_sub(len(cell));
            let left = if center { pad / 2 } else { 0 };
            line.push_str(&format!(
                " {}{cell}{} |",
                " ".repeat(left),
                " ".repeat(pad - left)
            ));
        }
        line.push('\n');
        line
    };
    let mut out = bar.clone();
    out.push_str(&row(columns, true));
    out.push_str(&bar);
    for r in table {
        out.push_str(&row(r, false));
    }
    out.push_str(&bar);
    out
}

/// `get ... payload_file=F`: the first message's payload, decoded, into F.
fn write_payload_file(file: &str, text: &str) -> Result<(), Fail> {
    let msgs: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let first = msgs
        .get(0)
        .ok_or_else(|| Fail::Die("no message to write".into()))?;
    let payload = first
        .get("payload")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let data = if first.get("payload_encoding").and_then(Value::as_str) == Some("base64") {
        base64_decode(payload).ok_or_else(|| Fail::Die("payload is not valid base64".into()))?
    } else {
        payload.as_bytes().to_vec()
    };
    std::fs::write(file, data).map_err(|e| Fail::Die(format!("cannot write {file}: {e}")))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n: u32 = 0;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(val(*b)?) << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_anywhere_as_optparse_takes_them() {
        let (o, rest) = parse_opts(&v(&[
            "-P",
            "15693",
            "declare",
            "queue",
            "-Vv1",
            "name=q",
            "--format=tsv",
            "-q",
        ]))
        .unwrap();
        assert_eq!(rest, v(&["declare", "queue", "name=q"]));
        assert_eq!(
            (
                o.port.as_deref(),
                o.vhost.as_deref(),
                o.format.as_str(),
                o.quiet
            ),
            (Some("15693"), Some("v1"), "tsv", true)
        );
        assert_eq!(
            parse_opts(&v(&["--bogus", "list"])).unwrap_err(),
            "no such option: --bogus"
        );
        let (o, _) = parse_opts(&v(&["-U", "http://u:p@h:1567/x"])).unwrap();
        assert_eq!(
            (
                o.user.as_deref(),
                o.password.as_deref(),
                o.host.as_deref(),
                o.port.as_deref()
            ),
            (Some("u"), Some("p"), Some("h"), Some("1567"))
        );
    }

    #[test]
    fn name_value_arguments_as_rabbitmqadmin_parses_them() {
        let spec = obj_spec("declare", "queue").unwrap();
        let (uri, up) = parse_args(
            &v(&[
                "name=a b",
                "durable=false",
                "arguments={\"x-max-length\":5}",
                "queue_type=quorum",
            ]),
            &spec,
            None,
        )
        .unwrap();
        assert_eq!(uri, "/queues/%2F/a%20b");
        assert_eq!(
            Value::Object(up),
            json!({"auto_delete": "false", "durable": "false", "arguments": {"x-max-length": 5, "x-queue-type": "quorum"}, "name": "a b", "vhost": "/"})
        );
        assert_eq!(
            parse_args(&[], &spec, None).unwrap_err(),
            Fail::Usage("mandatory argument \"name\" is required".into())
        );
        assert_eq!(
            parse_args(&v(&["nam=x"]), &spec, None).unwrap_err(),
            Fail::Usage("Argument \"nam\" is not recognised".into())
        );
        assert_eq!(
            parse_args(&v(&["x"]), &spec, None).unwrap_err(),
            Fail::Usage("Argument \"x\" not in the name=value format".into())
        );
        let spec = obj_spec("delete", "binding").unwrap();
        let (uri, _) = parse_args(
            &v(&[
                "source=xa",
                "destination=qb",
                "destination_type=queue",
                "properties_key=k",
            ]),
            &spec,
            Some("v"),
        )
        .unwrap();
        assert_eq!(uri, "/bindings/v/e/xa/q/qb/k");
        let spec = obj_spec("declare", "user").unwrap();
        assert_eq!(
            parse_args(&v(&["name=u", "tags="]), &spec, None).unwrap_err(),
            Fail::Usage(
                "one of mandatory arguments \"['password', 'password_hash']\" is required".into()
            )
        );
    }

    #[test]
    fn tables_as_rabbitmqadmin_prints_them() {
        let items = vec![json!({"name": "qa", "messages": 1}), json!({"name": "qbb"})];
        let cols = v(&["name", "messages"]);
        let (c, t) = list_to_table(&items, &cols, usize::MAX, &[]);
        assert_eq!(
            render("table", &c, &t, false),
            "+------+----------+\n| name | messages |\n+------+----------+\n| qa   | 1        |\n| qbb  |          |\n+------+----------+\n"
        );
        assert_eq!(
            render("tsv", &c, &t, false),
            "name\tmessages\nqa\t1\nqbb\t\n"
        );
        assert_eq!(render("tsv", &c, &t, true), "qa\t1\nqbb\t\n");
        assert_eq!(
            render("kvp", &c, &t, false),
            "name=\"qa\" messages=\"1\"\nname=\"qbb\" messages=\"\"\n"
        );
        assert_eq!(render("bash", &c, &t, false), "qa qbb\n");
        let (c, t) = list_to_table(
            &[json!({"name": "x", "type": "direct"})],
            &v(&["name", "type"]),
            usize::MAX,
            &[],
        );
        assert_eq!(
            ascii_table(&c, &t).lines().nth(1),
            Some("| name |  type  |")
        );
    }

    #[test]
    fn columns_found_are_sorted_with_promoted_names_first() {
        let msg = json!({"payload_bytes": 2, "redelivered": false, "exchange": "xa", "routing_key": "k", "message_count": 1, "properties": {"delivery_mode": 2}, "payload": "hi", "payload_encoding": "string"});
        let (c, t) = list_to_table(&[msg], &[], 1, &[]);
        assert_eq!(
            c,
            v(&[
                "routing_key",
                "exchange",
                "message_count",
                "payload",
                "payload_bytes",
                "payload_encoding",
                "redelivered"
            ])
        );
        assert_eq!(t[0], v(&["k", "xa", "1", "hi", "2", "string", "False"]));
        let pol = json!({"vhost": "/", "name": "pa", "definition": {"max-length": 3}, "tags": ["a", "b"], "n": [1]});
        let (c, t) = list_to_table(&[pol], &[], 1, &["definition"]);
        assert_eq!(c, v(&["vhost", "name", "definition", "n", "tags"]));
        assert_eq!(t[0], v(&["/", "pa", "{\"max-length\": 3}", "[1]", "a b"]));
    }

    #[test]
    fn python_json_and_base64() {
        assert_eq!(
            py_json(&json!({"a": [1, "é"], "b": null})),
            "{\"a\": [1, \"\\u00e9\"], \"b\": null}"
        );
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("a$").is_none());
    }
}
