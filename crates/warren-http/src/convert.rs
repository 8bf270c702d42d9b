//! Conversions between AMQP field tables / message properties and the JSON RabbitMQ's
//! management API uses for them.

use bytes::Bytes;
use serde_json::{json, Map, Number, Value};
use warren_codec::{BasicProperties, ShortString};

pub use warren_server::json::{json_to_table, json_to_value, table_to_json, value_to_json};

/// Message properties as the management API shows them (`[]` when there are none, the
/// way RabbitMQ serialises an empty Erlang property list).
pub fn properties_to_json(raw: &Bytes) -> Value {
    let Ok(p) = warren_codec::parse_properties(raw) else {
        return Value::Array(Vec::new());
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put(
        "content_type",
        p.content_type().as_ref().map(|s| json!(s.as_str())),
    );
    put(
        "content_encoding",
        p.content_encoding().as_ref().map(|s| json!(s.as_str())),
    );
    put("headers", p.headers().as_ref().map(table_to_json));
    put("delivery_mode", (*p.delivery_mode()).map(|n| json!(n)));
    put("priority", (*p.priority()).map(|n| json!(n)));
    put(
        "correlation_id",
        p.correlation_id().as_ref().map(|s| json!(s.as_str())),
    );
    put("reply_to", p.reply_to().as_ref().map(|s| json!(s.as_str())));
    put(
        "expiration",
        p.expiration().as_ref().map(|s| json!(s.as_str())),
    );
    put(
        "message_id",
        p.message_id().as_ref().map(|s| json!(s.as_str())),
    );
    put("timestamp", (*p.timestamp()).map(|n| json!(n)));
    put("type", p.kind().as_ref().map(|s| json!(s.as_str())));
    put("user_id", p.user_id().as_ref().map(|s| json!(s.as_str())));
    put("app_id", p.app_id().as_ref().map(|s| json!(s.as_str())));
    put(
        "cluster_id",
        p.cluster_id().as_ref().map(|s| json!(s.as_str())),
    );
    if m.is_empty() {
        Value::Array(Vec::new())
    } else {
        Value::Object(m)
    }
}

/// Why a properties object was refused.
#[derive(Debug, thiserror::Error)]
pub enum PropertiesError {
    #[error("{0}")]
    Invalid(String),
}

/// Builds a raw content-header property block from the publish endpoint's `properties`.
pub fn properties_from_json(v: &Value) -> Result<(Bytes, bool), PropertiesError> {
    let mut p = BasicProperties::default();
    let mut persistent = false;
    let Some(m) = v.as_object() else {
        if v.is_null() || v.as_array().is_some_and(Vec::is_empty) {
            return encode(&p).map(|b| (b, false));
        }
        return Err(PropertiesError::Invalid(
            "properties must be an object".into(),
        ));
    };
    let text = |k: &str| -> Result<Option<ShortString>, PropertiesError> {
        match m.get(k) {
            None => Ok(None),
            // A shortstr on the wire: longer would not encode.
            Some(Value::String(s)) if s.len() > 255 => Err(PropertiesError::Invalid(format!(
                "property {k} is {} bytes long; AMQP 0-9-1 allows at most 255",
                s.len()
            ))),
            Some(Value::String(s)) => Ok(Some(ShortString::from(s.clone()))),
            Some(other) => Err(PropertiesError::Invalid(format!(
                "property {k} must be a string, got {other}"
            ))),
        }
    };
    let int = |k: &str| -> Result<Option<u64>, PropertiesError> {
        match m.get(k) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                PropertiesError::Invalid(format!("property {k} must be a number, got {v}"))
            }),
        }
    };
    if let Some(s) = text("content_type")? {
        p = p.with_content_type(s);
    }
    if let Some(s) = text("content_encoding")? {
        p = p.with_content_encoding(s);
    }
    if let Some(h) = m.get("headers") {
        p = p.with_headers(json_to_table(h));
    }
    if let Some(n) = int("delivery_mode")? {
        persistent = n == 2;
        p = p.with_delivery_mode(n as u8);
    }
    if let Some(n) = int("priority")? {
        p = p.with_priority(n as u8);
    }
    if let Some(s) = text("correlation_id")? {
        p = p.with_correlation_id(s);
    }
    if let Some(s) = text("reply_to")? {
        p = p.with_reply_to(s);
    }
    if let Some(s) = text("expiration")? {
        p = p.with_expiration(s);
    }
    if let Some(s) = text("message_id")? {
        p = p.with_message_id(s);
    }
    if let Some(n) = int("timestamp")? {
        p = p.with_timestamp(n);
    }
    if let Some(s) = text("type")? {
        p = p.with_type(s);
    }
    if let Some(s) = text("user_id")? {
        p = p.with_user_id(s);
    }
    if let Some(s) = text("app_id")? {
        p = p.with_app_id(s);
    }
    encode(&p).map(|b| (b, persistent))
}

fn encode(p: &BasicProperties) -> Result<Bytes, PropertiesError> {
    warren_codec::encode_properties(p)
        .map(Bytes::from)
        .map_err(|e| PropertiesError::Invalid(e.to_string()))
}

/// `{"rate": r}` as RabbitMQ writes a `*_details` object.
pub fn rate(r: f64) -> Value {
    let n = Number::from_f64((r * 100.0).round() / 100.0).unwrap_or_else(|| Number::from(0));
    json!({ "rate": Value::Number(n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip() {
        let v = json!({"x-max-length": 100, "s": "text", "b": true, "nested": {"a": [1, "two"]}});
        assert_eq!(table_to_json(&json_to_table(&v)), v);
    }

    #[test]
    fn properties_round_trip() {
        let v = json!({"delivery_mode": 2, "content_type": "text/plain", "headers": {"h": "v"}});
        let (raw, persistent) = properties_from_json(&v).unwrap();
        assert!(persistent);
        assert_eq!(properties_to_json(&raw), v);
        let (empty, _) = properties_from_json(&json!({})).unwrap();
        assert_eq!(properties_to_json(&empty), json!([]));
        assert!(properties_from_json(&json!({"delivery_mode": "x"})).is_err());
    }
}
