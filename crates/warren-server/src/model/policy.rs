//! Policies: a name, a regex over queue/exchange names, what they apply to, a priority and
//! a definition (`max-length`, `dead-letter-exchange`, ...), as RabbitMQ's `rabbit_policy`.
//!
//! For each object the matching policy with the highest priority is its effective policy
//! (only one applies, as in RabbitMQ). [`PolicyStore::effective_queue_args`] merges it with
//! a queue's own `x-` arguments using RabbitMQ's per-key precedence, so queue features read
//! one table whatever set the value.

use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::{
    model::auth::Pattern,
    model::vhost::VHost,
    persist::{MetaOp, Persistence},
    util::error::AmqpResult,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    All,
}

impl ApplyTo {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queues" => Some(ApplyTo::Queues),
            "exchanges" => Some(ApplyTo::Exchanges),
            "all" => Some(ApplyTo::All),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
    pub pattern: Pattern,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: Map<String, Value>,
}

impl Policy {
    /// Builds a policy from its JSON (an API body or a definitions file entry).
    pub fn from_json(vhost: &str, name: &str, v: &Value) -> Result<Policy, String> {
        let pattern = v
            .get("pattern")
            .and_then(Value::as_str)
            .ok_or("[{key_missing,pattern}]")?;
        if v.get("definition").is_none() {
            return Err("[{key_missing,definition}]".into());
        }
        let pattern = Pattern::new(pattern).map_err(|e| {
            format!(
                "Validation failed\n\npattern should be regular expression but is invalid: {}\n",
                e.reason
            )
        })?;
        let apply_to = match v.get("apply-to").and_then(Value::as_str) {
            None => ApplyTo::All,
            Some(s) => ApplyTo::parse(s).ok_or_else(|| {
                format!(
                    "Validation failed\n\napply-to '{s}' unrecognised; should be 'queues', 'exchanges' or 'all'\n"
                )
            })?,
        };
        let priority = match v.get("priority") {
            None | Some(Value::Null) => 0,
            Some(p) => p
                .as_i64()
                .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
                .ok_or("priority must be an integer")?,
        };
        let definition = v
            .get("definition")
            .and_then(Value::as_object)
            .cloned()
            .ok_or("[{key_missing,definition}]")?;
        validate_definition(&definition).map_err(|e| e.to_string())?;
        Ok(Policy {
            vhost: vhost.to_string(),
            name: name.to_string(),
            pattern,
            apply_to,
            priority,
            definition,
        })
    }

    /// The record of this policy.
    fn op(&self) -> MetaOp {
        MetaOp::Policy {
            vhost: self.vhost.clone(),
            name: self.name.clone(),
            policy: self.to_json().to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern.source,
            "apply-to": self.apply_to.as_str(),
            "definition": Value::Object(self.definition.clone()),
            "priority": self.priority,
        })
    }
}

/// What a policy key accepts, and RabbitMQ's words for a bad value (rabbit_policies).
#[derive(Debug, Clone, Copy)]
enum KeyType {
    Str(&'static str),
    NonNegInt(&'static str),
    PosInt(&'static str),
    OneOf(&'static [&'static str], &'static str),
    /// Accepted and kept (exports round-trip) but without effect in warren: mirroring,
    /// queue versions, stream and quorum settings.
    Inert,
}

const KEYS: &[(&str, KeyType)] = &[
    (
        "alternate-exchange",
        KeyType::Str("alternate exchange name"),
    ),
    (
        "dead-letter-exchange",
        KeyType::Str("dead letter exchange name"),
    ),
    (
        "dead-letter-routing-key",
        KeyType::Str("dead letter routing key"),
    ),
    ("message-ttl", KeyType::NonNegInt("message TTL")),
    ("expires", KeyType::PosInt("queue expiry")),
    ("max-length", KeyType::NonNegInt("maximum length")),
    (
        "max-length-bytes",
        KeyType::NonNegInt("maximum length in bytes"),
    ),
    ("delivery-limit", KeyType::NonNegInt("delivery limit")),
    (
        "overflow",
        KeyType::OneOf(
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            "overflow value",
        ),
    ),
    (
        "queue-mode",
        KeyType::OneOf(&["default", "lazy"], "queue-mode value"),
    ),
    ("queue-master-locator", KeyType::Inert),
    ("max-in-memory-length", KeyType::Inert),
    ("max-in-memory-bytes", KeyType::Inert),
    ("queue-version", KeyType::Inert),
    ("max-age", KeyType::Inert),
    (
        "stream-max-segment-size-bytes",
        KeyType::NonNegInt("segment size"),
    ),
    ("dead-letter-strategy", KeyType::Inert),
    ("ha-mode", KeyType::Inert),
    ("ha-params", KeyType::Inert),
    ("ha-sync-mode", KeyType::Inert),
    ("ha-sync-batch-size", KeyType::Inert),
    ("ha-promote-on-shutdown", KeyType::Inert),
    ("ha-promote-on-failure", KeyType::Inert),
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("Validation failed\n\n{0}")]
    Invalid(String),
}

/// A JSON value as Erlang prints the term RabbitMQ decoded it to (`<<"text">>`, `5`,
/// `true`), HTML-escaped the way the management API escapes its reasons.
fn erlang_term(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(erlang_term).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => format!(
            "[{}]",
            m.iter()
                .map(|(k, v)| format!("{{<<\"{k}\">>,{}}}", erlang_term(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Null => "null".into(),
        other => other.to_string(),
    };
    raw.replace('<', "&lt;").replace('>', "&gt;")
}

/// Checks a policy's definition; the texts are RabbitMQ 3.10's (recorded in
/// tests/fixtures/management/policy_validation.json).
pub fn validate_definition(def: &Map<String, Value>) -> Result<(), PolicyError> {
    if def.is_empty() {
        return Err(PolicyError::Invalid("no policy provided\n".into()));
    }
    let unknown: Vec<String> = def
        .iter()
        .filter(|(k, _)| !KEYS.iter().any(|(known, _)| known == k))
        .map(|(k, v)| format!("{{&lt;&lt;\"{k}\"&gt;&gt;,{}}}", erlang_term(v)))
        .collect();
    if !unknown.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "[{}] are not recognised policy settings\n",
            unknown.join(",")
        )));
    }
    for (key, value) in def {
        let Some((_, ty)) = KEYS.iter().find(|(k, _)| k == key) else {
            continue;
        };
        let (ok, what) = match ty {
            KeyType::Str(what) => (value.is_string(), *what),
            KeyType::NonNegInt(what) => (value.as_u64().is_some(), *what),
            KeyType::PosInt(what) => (value.as_u64().is_some_and(|n| n > 0), *what),
            KeyType::OneOf(allowed, what) => {
                (value.as_str().is_some_and(|v| allowed.contains(&v)), *what)
            }
            KeyType::Inert => (true, ""),
        };
        if !ok {
            return Err(PolicyError::Invalid(format!(
                "{} is not a valid {what}\n",
                erlang_term(value)
            )));
        }
    }
    Ok(())
}

/// All policies of the broker.
#[derive(Debug, Default)]
pub struct PolicyStore {
    policies: RwLock<Vec<Arc<Policy>>>,
    /// Bumped on every change, so code that caches effective arguments knows to refresh.
    generation: std::sync::atomic::AtomicU64,
    /// Where changes are recorded so policies survive a restart.
    persistence: std::sync::OnceLock<Arc<Persistence>>,
    /// Serializes changes: each is checked, recorded and applied while this is held, so
    /// the log lists them in the order memory took them (readers never wait for it).
    writes: parking_lot::Mutex<()>,
}

impl PolicyStore {
    /// Changes with every policy added, replaced or removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn attach_persistence(&self, persistence: Arc<Persistence>) {
        let _ = self.persistence.set(persistence);
    }

    /// Records `op` (see [`Persistence::record_or_undo`]); nothing to do without a log.
    fn record(&self, op: MetaOp, undo: MetaOp) -> AmqpResult<()> {
        match self.persistence.get() {
            Some(p) => p.record_or_undo(&[op], &[undo]),
            None => Ok(()),
        }
    }

    /// Adds or replaces a policy; true when it is new. The change is recorded first: when
    /// the record fails the policies stay as they were and the error (541) is returned.
    pub fn put(&self, policy: Policy) -> AmqpResult<bool> {
        let _serial = self.writes.lock();
        let previous = self.get(&policy.vhost, &policy.name);
        let undo = match &previous {
            Some(p) => p.op(),
            None => MetaOp::DeletePolicy {
                vhost: policy.vhost.clone(),
                name: policy.name.clone(),
            },
        };
        self.record(policy.op(), undo)?;
        {
            let mut all = self.policies.write();
            let existing = all
                .iter()
                .position(|p| p.vhost == policy.vhost && p.name == policy.name);
            match existing {
                Some(i) => all[i] = Arc::new(policy),
                None => all.push(Arc::new(policy)),
            }
        }
        self.changed();
        Ok(previous.is_none())
    }

    /// Removes a policy; false when there is no such policy (nothing is recorded then).
    /// Recorded first: when the record fails the policy stays and the error (541) is
    /// returned.
    pub fn remove(&self, vhost: &str, name: &str) -> AmqpResult<bool> {
        let _serial = self.writes.lock();
        let Some(previous) = self.get(vhost, name) else {
            return Ok(false);
        };
        let op = MetaOp::DeletePolicy {
            vhost: vhost.to_string(),
            name: name.to_string(),
        };
        self.record(op, previous.op())?;
        self.policies
            .write()
            .retain(|p| !(p.vhost == vhost && p.name == name));
        self.changed();
        Ok(true)
    }

    /// Drops the policies of a deleted vhost, in memory only: the vhost's deletion is
    /// their record (see [`crate::model::broker::Broker::delete_vhost`]).
    pub fn remove_vhost(&self, vhost: &str) {
        let _serial = self.writes.lock();
        self.policies.write().retain(|p| p.vhost != vhost);
        self.changed();
    }

    pub fn get(&self, vhost: &str, name: &str) -> Option<Arc<Policy>> {
        self.policies
            .read()
            .iter()
            .find(|p| p.vhost == vhost && p.name == name)
            .cloned()
    }

    /// Policies sorted by vhost and name (optionally of one vhost).
    pub fn list(&self, vhost: Option<&str>) -> Vec<Arc<Policy>> {
        let mut all: Vec<_> = self
            .policies
            .read()
            .iter()
            .filter(|p| vhost.is_none_or(|v| p.vhost == v))
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
        all
    }

    /// The policy in effect for a queue (`is_queue`) or an exchange: the matching one with
    /// the highest priority; ties go to the name that sorts first.
    pub fn effective(&self, vhost: &str, name: &str, is_queue: bool) -> Option<Arc<Policy>> {
        self.policies
            .read()
            .iter()
            .filter(|p| {
                p.vhost == vhost
                    && match p.apply_to {
                        ApplyTo::All => true,
                        ApplyTo::Queues => is_queue,
                        ApplyTo::Exchanges => !is_queue,
                    }
                    && p.pattern.matches(name)
            })
            .max_by(|a, b| {
                a.priority
                    .cmp(&b.priority)
                    .then_with(|| b.name.cmp(&a.name))
            })
            .cloned()
    }

    /// A queue's effective `x-` arguments: its own arguments merged with its effective
    /// policy. Where both set a key, RabbitMQ's rule decides (rabbit_amqqueue_process):
    /// the smaller value for `message-ttl`, `expires`, `max-length`, `max-length-bytes` and
    /// `delivery-limit`; the queue's argument for `dead-letter-exchange`,
    /// `dead-letter-routing-key`, `overflow` and `queue-mode`.
    pub fn effective_queue_args(
        &self,
        vhost: &str,
        queue: &str,
        arguments: &FieldTable,
    ) -> FieldTable {
        let mut out = arguments.clone();
        let Some(policy) = self.effective(vhost, queue, true) else {
            return out;
        };
        let stream = crate::model::args::is_stream(arguments);
        for (key, value) in &policy.definition {
            let arg_key = format!("x-{key}");
            // Streams take the smaller of argument and policy for their own keys too
            // (rabbit_stream_queue); other queue types ignore them.
            let stream_key = matches!(key.as_str(), "max-age" | "stream-max-segment-size-bytes");
            if stream_key && !stream {
                continue;
            }
            if key == "max-age" {
                let Value::String(policy_age) = value else {
                    continue;
                };
                let own = out.inner().get("x-max-age").cloned();
                let own_ms = own.as_ref().and_then(|v| match v {
                    AMQPValue::LongString(s) => {
                        crate::model::args::parse_max_age(&String::from_utf8_lossy(s.as_bytes()))
                            .ok()
                    }
                    _ => None,
                });
                let smaller = match (crate::model::args::parse_max_age(policy_age), own_ms) {
                    (Ok(p), Some(o)) => p < o,
                    (Ok(_), None) => true,
                    (Err(_), _) => false,
                };
                if smaller {
                    out.insert(
                        arg_key.into(),
                        AMQPValue::LongString(LongString::from(policy_age.as_bytes().to_vec())),
                    );
                }
                continue;
            }
            let min_rule = stream_key
                || matches!(
                    key.as_str(),
                    "message-ttl"
                        | "expires"
                        | "max-length"
                        | "max-length-bytes"
                        | "delivery-limit"
                );
            let arg_rule = matches!(
                key.as_str(),
                "dead-letter-exchange" | "dead-letter-routing-key" | "overflow" | "queue-mode"
            );
            if !min_rule && !arg_rule {
                continue;
            }
            let policy_value = match value {
                Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => AMQPValue::LongLongInt(i),
                    None => continue,
                },
                _ => continue,
            };
            let current = out.inner().get(arg_key.as_str()).cloned();
            let chosen = match current {
                None => policy_value,
                Some(cur) if min_rule => match (int_value(&cur), int_value(&policy_value)) {
                    (Some(a), Some(p)) if p < a => policy_value,
                    _ => cur,
                },
                Some(cur) => cur,
            };
            out.insert(arg_key.into(), chosen);
        }
        out
    }

    /// An exchange's alternate exchange: its own `alternate-exchange` argument, or else the
    /// one of its effective policy.
    pub fn alternate_exchange(
        &self,
        vhost: &str,
        exchange: &str,
        arguments: &FieldTable,
    ) -> Option<Arc<str>> {
        match arguments.inner().get("alternate-exchange") {
            Some(AMQPValue::LongString(s)) => {
                return Some(Arc::from(String::from_utf8_lossy(s.as_bytes())))
            }
            Some(AMQPValue::ShortString(s)) => return Some(Arc::from(s.as_str())),
            _ => {}
        }
        let policy = self.effective(vhost, exchange, false)?;
        policy
            .definition
            .get("alternate-exchange")
            .and_then(Value::as_str)
            .map(Arc::from)
    }

    /// Re-applies policies to every exchange and queue of a vhost after a policy change:
    /// alternate exchanges, and the queue features (TTLs, limits, dead-lettering).
    pub fn apply(&self, vhost: &VHost) {
        self.apply_to_exchanges(vhost);
        let queues: Vec<_> = vhost.topology.read().queues.values().cloned().collect();
        for q in queues {
            let effective = self.effective_queue_args(&vhost.name, &q.name, &q.arguments);
            let what = format!("queue '{}' in vhost '{}'", q.name, vhost.name);
            match crate::model::args::queue_settings(&effective, &what) {
                Ok(settings) => q.update_settings(settings),
                Err(e) => tracing::warn!(queue = %q.name, error = %e.text, "policy not applicable"),
            }
        }
    }

    /// Re-applies policies to every exchange of a vhost (after a policy change or an
    /// exchange declaration): today that is the alternate exchange.
    pub fn apply_to_exchanges(&self, vhost: &VHost) {
        let mut topo = vhost.topology.write();
        for (name, entry) in topo.exchanges.iter_mut() {
            entry.router.alternate_exchange =
                self.alternate_exchange(&vhost.name, name, &entry.meta.arguments);
        }
    }
}

fn int_value(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, pattern: &str, apply: ApplyTo, priority: i64, def: Value) -> Policy {
        Policy {
            vhost: "/".into(),
            name: name.into(),
            pattern: Pattern::new(pattern).unwrap(),
            apply_to: apply,
            priority,
            definition: def.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn highest_priority_wins_and_apply_to_filters() {
        let s = PolicyStore::default();
        assert_eq!(
            s.put(policy(
                "low",
                "^q",
                ApplyTo::All,
                0,
                json!({"max-length": 5}),
            )),
            Ok(true)
        );
        assert_eq!(
            s.put(policy(
                "high",
                "^q",
                ApplyTo::Queues,
                10,
                json!({"max-length": 50}),
            )),
            Ok(true)
        );
        assert_eq!(
            s.put(policy(
                "ex",
                "^q",
                ApplyTo::Exchanges,
                99,
                json!({"alternate-exchange": "ae"}),
            )),
            Ok(true)
        );
        assert_eq!(
            s.effective("/", "q1", true).map(|p| p.name.clone()),
            Some("high".into())
        );
        assert_eq!(
            s.effective("/", "q1", false).map(|p| p.name.clone()),
            Some("ex".into())
        );
        assert!(s.effective("/", "other", true).is_none());
        assert!(s.effective("dev", "q1", true).is_none());
        assert_eq!(
            s.put(policy(
                "low",
                "^z",
                ApplyTo::All,
                0,
                json!({"max-length": 5})
            )),
            Ok(false)
        );
        let before = s.generation();
        assert_eq!(s.remove("/", "low"), Ok(true));
        assert_eq!(s.remove("/", "low"), Ok(false));
        assert!(s.generation() > before);
    }

    #[test]
    fn queue_arguments_merge_with_rabbitmq_precedence() {
        let s = PolicyStore::default();
        assert_eq!(s.put(policy(
            "p",
            ".*",
            ApplyTo::Queues,
            0,
            json!({"max-length": 10, "message-ttl": 60000, "dead-letter-exchange": "pdlx", "overflow": "reject-publish"}),
        )), Ok(true));
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(100));
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(b"qdlx".to_vec())),
        );
        let eff = s.effective_queue_args("/", "q", &args);
        let get = |k: &str| eff.inner().get(k).cloned();
        // The smaller of policy and argument.
        assert_eq!(get("x-max-length").and_then(|v| int_value(&v)), Some(10));
        assert_eq!(get("x-message-ttl").and_then(|v| int_value(&v)), Some(1000));
        // The argument wins.
        assert_eq!(
            get("x-dead-letter-exchange"),
            Some(AMQPValue::LongString(LongString::from(b"qdlx".to_vec())))
        );
        // Only the policy sets it.
        assert_eq!(
            get("x-overflow"),
            Some(AMQPValue::LongString(LongString::from(
                b"reject-publish".to_vec()
            )))
        );
    }

    #[test]
    fn a_change_whose_record_fails_leaves_the_policies_unchanged() {
        let dir = std::env::temp_dir().join(format!(
            "warren-policy-failing-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        let persistence = Persistence::new(usize::MAX);
        let s = PolicyStore::default();
        s.attach_persistence(persistence.clone());
        let max_length = |n: u64| json!({ "max-length": n });
        // No log attached yet: nothing to record, nothing fails.
        assert_eq!(
            s.put(policy("p", "^q", ApplyTo::Queues, 0, max_length(5))),
            Ok(true)
        );
        let log = crate::persist::MetaLog::failing(&dir).expect("log");
        assert!(persistence.attach_log(log).is_ok());
        let generation = s.generation();
        let failed = |r: AmqpResult<bool>| matches!(r, Err(e) if e.code == crate::util::error::ReplyCode::InternalError && e.cause.is_some());
        assert!(failed(s.put(policy(
            "p",
            "^z",
            ApplyTo::All,
            9,
            max_length(9)
        ))));
        let kept = s.get("/", "p").expect("still there");
        assert_eq!(
            (kept.pattern.source.as_str(), kept.priority),
            ("^q", 0),
            "not replaced"
        );
        assert!(failed(s.put(policy(
            "new",
            ".*",
            ApplyTo::All,
            0,
            max_length(1)
        ))));
        assert!(s.get("/", "new").is_none(), "not added");
        assert!(failed(s.remove("/", "p")));
        assert!(s.get("/", "p").is_some(), "not removed");
        assert_eq!(s.remove("/", "absent"), Ok(false), "nothing to record");
        assert_eq!(s.generation(), generation);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn definitions_are_validated() {
        assert!(validate_definition(&Map::new()).is_err());
        let ok = json!({"max-length": 1, "overflow": "drop-head"});
        assert_eq!(validate_definition(ok.as_object().unwrap()), Ok(()));
        let bad = json!({"max-length": "x"});
        assert!(validate_definition(bad.as_object().unwrap()).is_err());
        let unknown = json!({"colour": "blue"});
        assert!(validate_definition(unknown.as_object().unwrap()).is_err());
    }
}
