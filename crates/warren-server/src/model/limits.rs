//! Vhost and user limits, as RabbitMQ 3.10 keeps and enforces them: a vhost's
//! `max-connections` and `max-queues` (its `vhost-limits` runtime parameter), a user's
//! `max-connections` and `max-channels` (the user record's `limits`). A negative value
//! is no limit, 0 allows none. Texts and codes were recorded from RabbitMQ 3.10.8
//! (tests/fixtures/limits/rabbitmq_3.10.8.json).
//!
//! Counting costs nothing until a limit is set: connections are counted from the one
//! registry (`AdminState::connections`), channels from the same entries, queues from the
//! vhost's topology, only when the limit concerned is non-negative. A connection or
//! channel is checked and registered under one small mutex (`admit_*`), and a queue is
//! counted under the topology lock that adds it, so concurrent opens cannot overshoot.

use std::collections::BTreeMap;

use parking_lot::MutexGuard;
use serde_json::{Map, Value};

use crate::{
    model::broker::Broker,
    persist::MetaOp,
    util::error::{AmqpError, AmqpResult},
};

/// The limits RabbitMQ 3.10 has, in the order of their names (which is how they list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKind {
    MaxChannels,
    MaxConnections,
    MaxQueues,
}

impl LimitKind {
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::MaxChannels => "max-channels",
            LimitKind::MaxConnections => "max-connections",
            LimitKind::MaxQueues => "max-queues",
        }
    }
}

/// Whose limits: a vhost's or a user's (each has its own two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Vhost,
    User,
}

impl LimitScope {
    /// The limit called `name` in this scope, if it has one.
    pub fn kind(self, name: &str) -> Option<LimitKind> {
        match (self, name) {
            (_, "max-connections") => Some(LimitKind::MaxConnections),
            (LimitScope::Vhost, "max-queues") => Some(LimitKind::MaxQueues),
            (LimitScope::User, "max-channels") => Some(LimitKind::MaxChannels),
            _ => None,
        }
    }

    /// The word RabbitMQ's validation names the set by.
    fn term(self) -> &'static str {
        match self {
            LimitScope::Vhost => "limits",
            LimitScope::User => "user-limits",
        }
    }
}

/// Why a set of limits was refused, with RabbitMQ's text (without the `Validation
/// failed` framing its vhost-limit replies add: see [`LimitError::validation_text`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// Names the scope has no limit of, with their values.
    #[error("Unrecognised terms [{}] in {}", terms.iter().map(|(n, v)| format!("{{{},{}}}", erlang_term(&Value::String(n.clone())), erlang_term(v))).collect::<Vec<_>>().join(","), scope.term())]
    Unrecognised {
        scope: LimitScope,
        terms: Vec<(String, Value)>,
    },
    /// A value that is not an integer.
    #[error("{name} should be a number, actually was {}", erlang_term(value))]
    NotANumber { name: String, value: Value },
    /// The limits are not a JSON object.
    #[error("limits must be a JSON object, got {0}")]
    NotAnObject(Value),
}

impl LimitError {
    /// RabbitMQ's reply for a vhost limit (runtime parameter validation):
    /// `Validation failed\n\n<text>\n`.
    pub fn validation_text(&self) -> String {
        format!("Validation failed\n\n{self}\n")
    }
}

/// `v` as Erlang's `~p` prints the term RabbitMQ decoded it to (binaries for strings).
pub fn erlang_term(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => erlang_float(n.as_f64().unwrap_or_default()),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().all(|c| (' '..='~').contains(&c)) => {
            format!("<<\"{}\">>", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        Value::String(s) => format!("<<\"{}\"/utf8>>", s.escape_default()),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(erlang_term).collect::<Vec<_>>().join(",")
        ),
        Value::Object(o) => format!(
            "#{{{}}}",
            o.iter()
                .map(|(k, v)| format!(
                    "{} => {}",
                    erlang_term(&Value::String(k.clone())),
                    erlang_term(v)
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A float as Erlang prints it: always with a fraction, exponents as `1.0e20`.
fn erlang_float(f: f64) -> String {
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
        Some(_) => s,
        None if s.contains('.') => s,
        None => format!("{s}.0"),
    }
}

/// One vhost's or user's limits, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits(BTreeMap<LimitKind, i64>);

impl Limits {
    /// The limits in a JSON object (`{"max-queues": 10}`), checked as RabbitMQ checks
    /// them: every value an integer, every name one the scope has.
    pub fn from_json(scope: LimitScope, v: &Value) -> Result<Self, LimitError> {
        let Value::Object(map) = v else {
            return Err(LimitError::NotAnObject(v.clone()));
        };
        let mut limits = Limits::default();
        let mut unknown = Vec::new();
        for (name, value) in map {
            let Some(kind) = scope.kind(name) else {
                unknown.push((name.clone(), value.clone()));
                continue;
            };
            limits.0.insert(kind, limit_value(name, value)?);
        }
        if !unknown.is_empty() {
            return Err(LimitError::Unrecognised {
                scope,
                terms: unknown,
            });
        }
        Ok(limits)
    }

    /// The stored form (names to values); names the scope does not have are skipped.
    pub fn from_stored(scope: LimitScope, stored: &BTreeMap<String, i64>) -> Self {
        Limits(
            stored
                .iter()
                .filter_map(|(name, v)| scope.kind(name).map(|k| (k, *v)))
                .collect(),
        )
    }

    pub fn to_stored(&self) -> BTreeMap<String, i64> {
        self.0
            .iter()
            .map(|(k, v)| (k.name().to_string(), *v))
            .collect()
    }

    /// As the API and definitions show them: `{"max-connections": 10, ...}`.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.name().to_string(), Value::from(*v)))
                .collect::<Map<String, Value>>(),
        )
    }

    /// As rabbitmqctl prints them: compact JSON, names in order.
    pub fn to_json_text(&self) -> String {
        self.to_json().to_string()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value set for `kind`, negative ones included.
    pub fn get(&self, kind: LimitKind) -> Option<i64> {
        self.0.get(&kind).copied()
    }

    /// The limit in force for `kind`: none when unset or negative.
    pub fn limit(&self, kind: LimitKind) -> Option<u64> {
        self.get(kind).and_then(|v| u64::try_from(v).ok())
    }

    pub fn set(&mut self, kind: LimitKind, value: i64) {
        self.0.insert(kind, value);
    }

    /// Removes `kind`; false when it was not set.
    pub fn remove(&mut self, kind: LimitKind) -> bool {
        self.0.remove(&kind).is_some()
    }

    /// These limits with `other`'s set over them (rabbitmqctl set_user_limits merges).
    pub fn merged(&self, other: &Limits) -> Limits {
        let mut out = self.clone();
        out.0.extend(other.0.iter().map(|(k, v)| (*k, *v)));
        out
    }
}

/// A limit's value: a JSON integer (RabbitMQ's `is_integer`; `1.0` is not one).
pub fn limit_value(name: &str, value: &Value) -> Result<i64, LimitError> {
    value.as_i64().ok_or_else(|| LimitError::NotANumber {
        name: name.to_string(),
        value: value.clone(),
    })
}

/// The record that sets a vhost's limits (an empty set clears them).
fn vhost_limits_op(vhost: &str, limits: &Limits) -> MetaOp {
    MetaOp::VhostLimits {
        vhost: vhost.to_string(),
        limits: limits.to_stored(),
    }
}

/// The record that sets a user's limits (an empty set clears them).
pub(crate) fn user_limits_op(user: &str, limits: &Limits) -> MetaOp {
    MetaOp::UserLimits {
        user: user.to_string(),
        limits: limits.to_stored(),
    }
}

impl Broker {
    /// `vhost`'s limits (empty when it has none).
    pub fn vhost_limits(&self, vhost: &str) -> Limits {
        self.limits
            .read()
            .vhosts
            .get(vhost)
            .cloned()
            .unwrap_or_default()
    }

    /// `user`'s limits (empty when it has none).
    pub fn user_limits(&self, user: &str) -> Limits {
        self.limits
            .read()
            .users
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Every vhost with limits, by name.
    pub fn all_vhost_limits(&self) -> Vec<(String, Limits)> {
        let all = self.limits.read();
        let mut out: Vec<_> = all
            .vhosts
            .iter()
            .map(|(v, l)| (v.clone(), l.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every user with limits, by name.
    pub fn all_user_limits(&self) -> Vec<(String, Limits)> {
        let all = self.limits.read();
        let mut out: Vec<_> = all
            .users
            .iter()
            .map(|(u, l)| (u.clone(), l.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Replaces `vhost`'s limits (an empty set clears them). Recorded first: when the
    /// record fails they stay as they were and the error (541) is returned.
    pub fn set_vhost_limits(&self, vhost: &str, limits: Limits) -> AmqpResult<()> {
        let _serial = self.meta_writes.lock();
        let previous = self.vhost_limits(vhost);
        if previous == limits {
            return Ok(()); // nothing to record (an import of unchanged users, say)
        }
        self.persistence.record_or_undo(
            &[vhost_limits_op(vhost, &limits)],
            &[vhost_limits_op(vhost, &previous)],
        )?;
        self.vhost_limits_events(vhost, &limits);
        let mut all = self.limits.write();
        if limits.is_empty() {
            all.vhosts.remove(vhost);
        } else {
            all.vhosts.insert(vhost.to_string(), limits);
        }
        Ok(())
    }

    /// What 3.10.8 emits for a vhost's limits: the `vhost-limits` parameter set (or
    /// cleared), then `vhost.limits.set` (each limit a header) or `vhost.limits.cleared`.
    fn vhost_limits_events(&self, vhost: &str, limits: &Limits) {
        use crate::model::events;
        let ev = &self.admin.events;
        if !ev.enabled() {
            return;
        }
        let who = events::actor();
        if limits.is_empty() {
            ev.emit("parameter.cleared", |h| {
                h.str("user_who_performed_action", &who)
                    .str("name", "limits")
                    .str("component", "vhost-limits")
                    .str("vhost", vhost);
            });
            ev.emit("vhost.limits.cleared", |h| {
                h.str("user_who_performed_action", &who)
                    .str("name", "limits");
            });
            return;
        }
        let stored = limits.to_stored();
        let table = warren_codec::Table(
            stored
                .iter()
                .map(|(k, v)| {
                    (
                        bytes::Bytes::copy_from_slice(k.as_bytes()),
                        warren_codec::Value::I64(*v),
                    )
                })
                .collect(),
        );
        ev.emit("parameter.set", |h| {
            h.str("user_who_performed_action", &who)
                .value("value", warren_codec::Value::Table(table))
                .str("name", "limits")
                .str("component", "vhost-limits")
                .str("vhost", vhost);
        });
        ev.emit("vhost.limits.set", |h| {
            for (k, v) in &stored {
                h.long(k, *v);
            }
            h.str("user_who_performed_action", &who)
                .str("name", "limits");
        });
    }

    /// Replaces `user`'s limits (an empty set clears them). Recorded first, as
    /// [`Broker::set_vhost_limits`].
    pub fn set_user_limits(&self, user: &str, limits: Limits) -> AmqpResult<()> {
        let _serial = self.meta_writes.lock();
        let previous = self.user_limits(user);
        if previous == limits {
            return Ok(()); // nothing to record (an import of unchanged users, say)
        }
        self.persistence.record_or_undo(
            &[user_limits_op(user, &limits)],
            &[user_limits_op(user, &previous)],
        )?;
        let mut all = self.limits.write();
        if limits.is_empty() {
            all.users.remove(user);
        } else {
            all.users.insert(user.to_string(), limits);
        }
        Ok(())
    }

    /// [`Broker::check_connection_limits`], returning a guard to hold until the
    /// connection is in the registry, so two opens at once cannot both take the last
    /// place (the same guard serialises channel opens, see [`Broker::admit_channel`]).
    pub fn admit_connection(&self, vhost: &str, user: &str) -> AmqpResult<MutexGuard<'_, ()>> {
        let gate = self.limits_gate.lock();
        self.check_connection_limits(vhost, user)?;
        Ok(gate)
    }

    /// [`Broker::check_channel_limit`] with the guard of [`Broker::admit_connection`],
    /// to hold until the channel is in the registry.
    pub fn admit_channel(&self, user: &str) -> AmqpResult<MutexGuard<'_, ()>> {
        let gate = self.limits_gate.lock();
        self.check_channel_limit(user)?;
        Ok(gate)
    }

    /// RabbitMQ's checks at connection.open, vhost limit first, then the user's (both
    /// before vhost access): 530 NOT_ALLOWED closing the connection.
    pub fn check_connection_limits(&self, vhost: &str, user: &str) -> AmqpResult<()> {
        let (vhost_max, user_max) = {
            let all = self.limits.read();
            let of = |l: Option<&Limits>| l.and_then(|l| l.limit(LimitKind::MaxConnections));
            (of(all.vhosts.get(vhost)), of(all.users.get(user)))
        };
        if let Some(max) = vhost_max {
            let open = self.count_connections(|c| c.vhost == vhost);
            if open >= max {
                return Err(AmqpError::not_allowed(format_args!(
                    "access to vhost '{vhost}' refused for user '{user}': connection limit ({max}) is reached"
                ))
                .on_connection());
            }
        }
        if let Some(max) = user_max {
            let open = self.count_connections(|c| c.user == user);
            if open >= max {
                return Err(AmqpError::not_allowed(format_args!(
                    "connection refused for user '{user}': user connection limit ({max}) is reached"
                ))
                .on_connection());
            }
        }
        Ok(())
    }

    fn count_connections(&self, which: impl Fn(&crate::model::registry::ConnInfo) -> bool) -> u64 {
        self.admin
            .connections
            .iter()
            .filter(|c| which(c.value()))
            .count() as u64
    }

    /// RabbitMQ's check at channel.open: the user's channels on all its connections
    /// against its `max-channels`; 530 NOT_ALLOWED closing the connection.
    pub fn check_channel_limit(&self, user: &str) -> AmqpResult<()> {
        let Some(max) = self
            .limits
            .read()
            .users
            .get(user)
            .and_then(|l| l.limit(LimitKind::MaxChannels))
        else {
            return Ok(());
        };
        let open: u64 = self
            .admin
            .connections
            .iter()
            .filter(|c| c.user == user)
            .map(|c| c.channels.lock().len() as u64)
            .sum();
        if open >= max {
            return Err(AmqpError::not_allowed(format_args!(
                "number of channels opened for user '{user}' has reached the maximum allowed user limit of ({max})"
            ))
            .on_connection());
        }
        Ok(())
    }

    /// `vhost`'s `max-queues` in force, if any.
    pub fn queue_limit(&self, vhost: &str) -> Option<u64> {
        self.limits
            .read()
            .vhosts
            .get(vhost)
            .and_then(|l| l.limit(LimitKind::MaxQueues))
    }
}

/// RabbitMQ's refusal of a queue beyond its vhost's `max-queues` (406, a channel error).
pub fn queue_limit_reached(queue: &str, vhost: &str, max: u64) -> AmqpError {
    AmqpError::precondition(format_args!(
        "cannot declare queue '{queue}': queue limit in vhost '{vhost}' ({max}) is reached"
    ))
}

/// Every vhost's and user's limits.
#[derive(Debug, Default)]
pub struct LimitTables {
    pub vhosts: std::collections::HashMap<String, Limits>,
    pub users: std::collections::HashMap<String, Limits>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_texts_are_rabbitmqs() {
        let e = Limits::from_json(LimitScope::Vhost, &json!({"max-bogus": 2})).unwrap_err();
        assert_eq!(
            e.validation_text(),
            "Validation failed\n\nUnrecognised terms [{<<\"max-bogus\">>,2}] in limits\n"
        );
        let e = Limits::from_json(LimitScope::User, &json!({"max-queues": 2})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unrecognised terms [{<<\"max-queues\">>,2}] in user-limits"
        );
        for (value, shown) in [
            (json!("x"), "<<\"x\">>"),
            (json!(1.5), "1.5"),
            (json!(1.0), "1.0"),
            (json!(1e20), "1.0e20"),
            (json!(null), "null"),
            (json!(true), "true"),
            (json!([1, "a"]), "[1,<<\"a\">>]"),
        ] {
            let e =
                Limits::from_json(LimitScope::Vhost, &json!({"max-queues": value})).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("max-queues should be a number, actually was {shown}")
            );
        }
    }

    #[test]
    fn negative_is_no_limit_and_zero_allows_none() {
        let l = Limits::from_json(
            LimitScope::Vhost,
            &json!({"max-connections": -1, "max-queues": 0}),
        )
        .unwrap();
        assert_eq!(l.limit(LimitKind::MaxConnections), None);
        assert_eq!(l.get(LimitKind::MaxConnections), Some(-1));
        assert_eq!(l.limit(LimitKind::MaxQueues), Some(0));
        assert_eq!(l.to_json_text(), r#"{"max-connections":-1,"max-queues":0}"#);
        let round = Limits::from_stored(LimitScope::Vhost, &l.to_stored());
        assert_eq!(round, l);
    }

    #[test]
    fn user_limits_merge() {
        let a = Limits::from_json(LimitScope::User, &json!({"max-connections": 1})).unwrap();
        let b = Limits::from_json(LimitScope::User, &json!({"max-channels": 2})).unwrap();
        assert_eq!(
            a.merged(&b).to_json(),
            json!({"max-channels": 2, "max-connections": 1})
        );
    }

    #[test]
    fn limits_are_kept_cleared_and_counted() {
        let b = Broker::new(crate::model::config::ServerConfig::default());
        let l = Limits::from_json(LimitScope::Vhost, &json!({"max-queues": 1})).unwrap();
        assert!(b.set_vhost_limits("/", l).is_ok());
        assert_eq!(b.queue_limit("/"), Some(1));
        assert_eq!(b.all_vhost_limits().len(), 1);
        assert!(b.set_vhost_limits("/", Limits::default()).is_ok());
        assert!(b.all_vhost_limits().is_empty());
        let u = Limits::from_json(LimitScope::User, &json!({"max-connections": 0})).unwrap();
        assert!(b.set_user_limits("guest", u).is_ok());
        let e = b.check_connection_limits("/", "guest").unwrap_err();
        assert_eq!(
            e.text,
            "NOT_ALLOWED - connection refused for user 'guest': user connection limit (0) is reached"
        );
        assert!(b.check_connection_limits("/", "other").is_ok());
        let c = Limits::from_json(LimitScope::User, &json!({"max-channels": 0})).unwrap();
        assert!(b.set_user_limits("guest", c).is_ok());
        assert_eq!(
            b.check_channel_limit("guest").unwrap_err().text,
            "NOT_ALLOWED - number of channels opened for user 'guest' has reached the maximum allowed user limit of (0)"
        );
    }
}
