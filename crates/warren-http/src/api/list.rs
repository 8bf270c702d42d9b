//! List answers: sorting, pagination with the `name` filter, and `columns` selection, as
//! RabbitMQ's management plugin applies them to every list endpoint.

use std::collections::HashMap;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};
use warren_server::auth::Pattern;

use crate::{ApiError, ApiResult};

/// The value at a dotted path.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, p| v.get(p))
}

fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// A list answer with RabbitMQ's query options: `sort`/`sort_reverse`, and with `page`
/// the paginated form (`name` filter, `use_regex`, `page_size` up to 500) wrapped as
/// `{items, page, page_count, page_size, item_count, filtered_count, total_count}`;
/// `columns` applies to the items.
pub(super) fn list_reply(list: Value, q: &HashMap<String, String>) -> ApiResult<Response> {
    let Value::Array(mut items) = list else {
        return Ok(Json(with_columns(list, q)).into_response());
    };
    if let Some(key) = q.get("sort").filter(|k| !k.is_empty()) {
        items.sort_by(|a, b| cmp_values(lookup(a, key), lookup(b, key)));
    }
    if q.get("sort_reverse").is_some_and(|v| v == "true") {
        items.reverse();
    }
    let Some(page_text) = q.get("page") else {
        return Ok(Json(with_columns(Value::Array(items), q)).into_response());
    };
    let size_text = q.get("page_size").cloned();
    let page = page_text.parse::<usize>().ok().filter(|p| *p >= 1);
    let size = match &size_text {
        None => Some(100),
        Some(t) => t.parse::<usize>().ok().filter(|s| (1..=500).contains(s)),
    };
    let (Some(page), Some(size)) = (page, size) else {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_pagination_parameters",
            reason: format!(
                "Invalid pagination parameters: page number {page_text}, page size {}",
                size_text.as_deref().unwrap_or("undefined")
            ),
        });
    };
    let total = items.len();
    if let Some(filter) = q.get("name").filter(|n| !n.is_empty()) {
        if q.get("use_regex").is_some_and(|v| v == "true") {
            let re = Pattern::new(filter).map_err(|e| ApiError::bad_request(e.to_string()))?;
            items.retain(|i| {
                i.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| re.matches(n))
            });
        } else {
            items.retain(|i| {
                i.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.contains(filter.as_str()))
            });
        }
    }
    let filtered = items.len();
    let page_count = filtered.div_ceil(size);
    if page > page_count.max(1) {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "page_out_of_range",
            reason: format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
        });
    }
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Ok(Json(json!({
        "filtered_count": filtered,
        "item_count": page_items.len(),
        "items": with_columns(Value::Array(page_items), q),
        "page": page,
        "page_count": page_count,
        "page_size": size,
        "total_count": total,
    }))
    .into_response())
}

/// Sets `parts` (a dotted path) in `map`, creating the objects on the way.
fn insert_path(map: &mut Map<String, Value>, parts: &[&str], value: Value) {
    match parts {
        [] => {}
        [last] => {
            map.insert(last.to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// `?columns=a,b.c` keeps only those fields (dotted paths reach into objects).
pub(super) fn with_columns(value: Value, q: &HashMap<String, String>) -> Value {
    let Some(cols) = q.get("columns") else {
        return value;
    };
    let cols: Vec<&str> = cols.split(',').filter(|c| !c.is_empty()).collect();
    let pick = |obj: &Value| -> Value {
        let mut out = Map::new();
        for col in &cols {
            let mut src = obj;
            let parts: Vec<&str> = col.split('.').collect();
            let mut found = true;
            for p in &parts {
                match src.get(*p) {
                    Some(v) => src = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if !found {
                continue;
            }
            insert_path(&mut out, &parts, src.clone());
        }
        Value::Object(out)
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(pick).collect()),
        other => pick(&other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_filter_nested_fields() {
        let v = json!([{"name": "q", "messages": 3, "message_stats": {"publish": 1, "ack": 2}}]);
        let mut q = HashMap::new();
        q.insert(
            "columns".to_string(),
            "name,message_stats.publish".to_string(),
        );
        assert_eq!(
            with_columns(v, &q),
            json!([{"name": "q", "message_stats": {"publish": 1}}])
        );
    }
}
