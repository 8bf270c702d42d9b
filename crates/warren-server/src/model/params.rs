//! Runtime parameters beyond limits and policies: global parameters
//! (`/api/global-parameters`, any JSON value under a name) and operator policies
//! (`/api/operator-policies`: policies an operator sets over the users' own, restricted
//! to RabbitMQ's operator keys). Both are recorded in the metadata log before they take
//! effect, as the other durable metadata.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::Value;

use crate::{
    model::{broker::Broker, policy::Policy},
    persist::MetaOp,
    util::error::AmqpResult,
};

/// The keys an operator policy may set (rabbit_policies' `operator_policy_validator`s).
pub const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

/// Global parameters by name; operator policies by (vhost, name).
#[derive(Debug, Default)]
pub struct ParamTables {
    pub globals: BTreeMap<String, Value>,
    pub operator_policies: BTreeMap<(String, String), Arc<Policy>>,
}

/// An Erlang term as RabbitMQ prints an unrecognised operator policy setting (not
/// HTML-escaped on this path, unlike the user policies' text).
fn erlang_term(v: &Value) -> String {
    match v {
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
    }
}

/// An operator policy from its JSON, with RabbitMQ's texts for settings an operator
/// policy may not have (recorded in tests/fixtures/management/completeness.json).
pub fn operator_policy_from_json(vhost: &str, name: &str, v: &Value) -> Result<Policy, String> {
    if let Some(def) = v.get("definition").and_then(Value::as_object) {
        let unknown: Vec<String> = def
            .iter()
            .filter(|(k, _)| !OPERATOR_KEYS.contains(&k.as_str()))
            .map(|(k, v)| format!("{{<<\"{k}\">>,{}}}", erlang_term(v)))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "Validation failed\n\n[{}] are not recognised policy settings\n",
                unknown.join(",")
            ));
        }
    }
    Policy::from_json(vhost, name, v)
}

fn global_op(name: &str, value: Option<&Value>) -> MetaOp {
    match value {
        Some(v) => MetaOp::GlobalParameter {
            name: name.to_string(),
            value: v.to_string(),
        },
        None => MetaOp::ClearGlobalParameter {
            name: name.to_string(),
        },
    }
}

fn operator_op(vhost: &str, name: &str, p: Option<&Policy>) -> MetaOp {
    match p {
        Some(p) => MetaOp::OperatorPolicy {
            vhost: vhost.to_string(),
            name: name.to_string(),
            policy: p.to_json().to_string(),
        },
        None => MetaOp::DeleteOperatorPolicy {
            vhost: vhost.to_string(),
            name: name.to_string(),
        },
    }
}

impl Broker {
    /// Every global parameter, by name.
    pub fn global_parameters(&self) -> Vec<(String, Value)> {
        let t = self.params.read();
        t.globals
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn global_parameter(&self, name: &str) -> Option<Value> {
        self.params.read().globals.get(name).cloned()
    }

    /// Sets a global parameter; true when it is new. Recorded first (a failed write
    /// changes nothing and answers 541).
    pub fn set_global_parameter(&self, name: &str, value: Value) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let previous = self.global_parameter(name);
        self.persistence.record_or_undo(
            &[global_op(name, Some(&value))],
            &[global_op(name, previous.as_ref())],
        )?;
        self.params.write().globals.insert(name.to_string(), value);
        Ok(previous.is_none())
    }

    /// Clears a global parameter; false when there was none.
    pub fn clear_global_parameter(&self, name: &str) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let Some(previous) = self.global_parameter(name) else {
            return Ok(false);
        };
        self.persistence.record_or_undo(
            &[global_op(name, None)],
            &[global_op(name, Some(&previous))],
        )?;
        self.params.write().globals.remove(name);
        Ok(true)
    }

    /// Operator policies, of one vhost or all, by vhost and name.
    pub fn operator_policies(&self, vhost: Option<&str>) -> Vec<Arc<Policy>> {
        self.params
            .read()
            .operator_policies
            .iter()
            .filter(|((v, _), _)| vhost.is_none_or(|want| want == v))
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn operator_policy(&self, vhost: &str, name: &str) -> Option<Arc<Policy>> {
        self.params
            .read()
            .operator_policies
            .get(&(vhost.to_string(), name.to_string()))
            .cloned()
    }

    /// Adds or replaces an operator policy; true when it is new. Recorded first.
    pub fn put_operator_policy(&self, policy: Policy) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let previous = self.operator_policy(&policy.vhost, &policy.name);
        self.persistence.record_or_undo(
            &[operator_op(&policy.vhost, &policy.name, Some(&policy))],
            &[operator_op(
                &policy.vhost,
                &policy.name,
                previous.as_deref(),
            )],
        )?;
        let key = (policy.vhost.clone(), policy.name.clone());
        self.params
            .write()
            .operator_policies
            .insert(key, Arc::new(policy));
        Ok(previous.is_none())
    }

    /// Deletes an operator policy; false when there was none.
    pub fn delete_operator_policy(&self, vhost: &str, name: &str) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let Some(previous) = self.operator_policy(vhost, name) else {
            return Ok(false);
        };
        self.persistence.record_or_undo(
            &[operator_op(vhost, name, None)],
            &[operator_op(vhost, name, Some(&previous))],
        )?;
        self.params
            .write()
            .operator_policies
            .remove(&(vhost.to_string(), name.to_string()));
        Ok(true)
    }

    /// The operator policy that applies to a queue (`is_queue`) or exchange: the
    /// matching one with the highest priority, as for user policies.
    pub fn effective_operator_policy(
        &self,
        vhost: &str,
        name: &str,
        is_queue: bool,
    ) -> Option<Arc<Policy>> {
        use crate::model::policy::ApplyTo;
        let t = self.params.read();
        t.operator_policies
            .values()
            .filter(|p| p.vhost == vhost && p.pattern.matches(name))
            .filter(|p| match p.apply_to {
                ApplyTo::All => true,
                ApplyTo::Queues => is_queue,
                ApplyTo::Exchanges => !is_queue,
            })
            .max_by_key(|p| p.priority)
            .cloned()
    }
}

/// The records that recreate the global parameters and operator policies.
pub fn snapshot(broker: &Broker) -> Vec<MetaOp> {
    let t = broker.params.read();
    let mut ops: Vec<MetaOp> = t
        .globals
        .iter()
        .map(|(k, v)| global_op(k, Some(v)))
        .collect();
    ops.extend(
        t.operator_policies
            .iter()
            .map(|((v, n), p)| operator_op(v, n, Some(p))),
    );
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ServerConfig;
    use serde_json::json;

    #[test]
    fn operator_policies_take_only_operator_keys() {
        let bad = operator_policy_from_json(
            "/",
            "p",
            &json!({"pattern": ".*", "definition": {"ha-mode": "all"}}),
        );
        assert_eq!(
            bad.err().as_deref(),
            Some("Validation failed\n\n[{<<\"ha-mode\">>,<<\"all\">>}] are not recognised policy settings\n")
        );
        let ok = operator_policy_from_json(
            "/",
            "p",
            &json!({"pattern": "^q", "definition": {"max-length": 3}, "apply-to": "queues", "priority": 1}),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn stores_and_snapshots() {
        let b = Broker::new(ServerConfig::default());
        assert_eq!(b.set_global_parameter("p", json!({"a": 1})), Ok(true));
        assert_eq!(b.set_global_parameter("p", json!(42)), Ok(false));
        assert_eq!(b.global_parameter("p"), Some(json!(42)));
        let p = operator_policy_from_json(
            "/",
            "op",
            &json!({"pattern": "^q", "definition": {"max-length": 3}, "apply-to": "queues"}),
        )
        .expect("valid");
        assert_eq!(b.put_operator_policy(p), Ok(true));
        assert!(b.effective_operator_policy("/", "q1", true).is_some());
        assert!(b.effective_operator_policy("/", "q1", false).is_none());
        assert!(b.effective_operator_policy("/", "other", true).is_none());
        let ops = snapshot(&b);
        assert_eq!(ops.len(), 2);
        // Replayed into a fresh broker, they come back.
        let fresh = Broker::new(ServerConfig::default());
        for op in &ops {
            crate::recovery::metadata::apply(&fresh, op).expect("applies");
        }
        assert_eq!(fresh.global_parameter("p"), Some(json!(42)));
        assert!(fresh.operator_policy("/", "op").is_some());
        assert_eq!(b.clear_global_parameter("p"), Ok(true));
        assert_eq!(b.clear_global_parameter("p"), Ok(false));
        assert_eq!(b.delete_operator_policy("/", "op"), Ok(true));
        assert_eq!(b.delete_operator_policy("/", "op"), Ok(false));
    }
}
