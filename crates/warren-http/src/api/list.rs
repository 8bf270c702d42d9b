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
    list_json(list, q).map(|v| Json(v).into_response())
}

fn list_json(list: Value, q: &HashMap<String, String>) -> ApiResult<Value> {
    let Value::Array(mut items) = list else {
        return Ok(with_columns(list, q));
    };
    if let Some(key) = q.get("sort").filter(|k| !k.is_empty()) {
        items.sort_by(|a, b| cmp_values(lookup(a, key), lookup(b, key)));
    }
    if q.get("sort_reverse").is_some_and(|v| v == "true") {
        items.reverse();
    }
    let Some((page, size)) = page_params(q)? else {
        return Ok(with_columns(Value::Array(items), q));
    };
    let total = items.len();
    if let Some(keep) = name_filter(q)? {
        items.retain(|i| i.get("name").and_then(Value::as_str).is_some_and(&keep));
    }
    let filtered = items.len();
    check_page(page, size, filtered)?;
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Ok(page_reply(page_items, page, size, filtered, total, q))
}

/// [`list_reply`] for lists whose objects cost to render (queues: stats, policies):
/// when a page is asked for and the order needs only names (`sort` absent, `name` or
/// `vhost`), filtering, sorting and paging run on the names and only the page's objects
/// are rendered, so a page of tens of thousands of queues stays cheap. Any other sort key
/// renders every object first, as `list_reply` does; the answers are the same.
pub(super) fn list_reply_by_name<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    vhost: impl Fn(&T) -> &str,
    render: impl Fn(&T) -> Value,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    list_by_name_json(items, name, vhost, render, q).map(|v| Json(v).into_response())
}

fn list_by_name_json<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    vhost: impl Fn(&T) -> &str,
    render: impl Fn(&T) -> Value,
    q: &HashMap<String, String>,
) -> ApiResult<Value> {
    let key = q.get("sort").map_or("", String::as_str);
    let by_names = matches!(key, "" | "name" | "vhost");
    if !by_names || !q.contains_key("page") {
        return list_json(Value::Array(items.iter().map(render).collect()), q);
    }
    let Some((page, size)) = page_params(q)? else {
        return list_json(Value::Array(items.iter().map(render).collect()), q);
    };
    let mut items = items;
    match key {
        "name" => items.sort_by(|a, b| name(a).cmp(name(b))),
        "vhost" => items.sort_by(|a, b| vhost(a).cmp(vhost(b))),
        _ => {}
    }
    if q.get("sort_reverse").is_some_and(|v| v == "true") {
        items.reverse();
    }
    let total = items.len();
    if let Some(keep) = name_filter(q)? {
        items.retain(|i| keep(name(i)));
    }
    let filtered = items.len();
    check_page(page, size, filtered)?;
    let page_items: Vec<Value> = items
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(render)
        .collect();
    Ok(page_reply(page_items, page, size, filtered, total, q))
}

/// `page` and `page_size` (default 100, at most 500), or None without `page`.
fn page_params(q: &HashMap<String, String>) -> ApiResult<Option<(usize, usize)>> {
    let Some(page_text) = q.get("page") else {
        return Ok(None);
    };
    let size_text = q.get("page_size").cloned();
    let page = page_text.parse::<usize>().ok().filter(|p| *p >= 1);
    let size = match &size_text {
        None => Some(100),
        Some(t) => t.parse::<usize>().ok().filter(|s| (1..=500).contains(s)),
    };
    match (page, size) {
        (Some(page), Some(size)) => Ok(Some((page, size))),
        _ => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_pagination_parameters",
            reason: format!(
                "Invalid pagination parameters: page number {page_text}, page size {}",
                size_text.as_deref().unwrap_or("undefined")
            ),
        }),
    }
}

/// Whether a name passes a list's `name` filter.
type NameFilter = Box<dyn Fn(&str) -> bool>;

/// The `name` filter of a paginated list (a substring, or with `use_regex=true` a regular
/// expression), or None when there is none.
fn name_filter(q: &HashMap<String, String>) -> ApiResult<Option<NameFilter>> {
    let Some(filter) = q.get("name").filter(|n| !n.is_empty()).cloned() else {
        return Ok(None);
    };
    if q.get("use_regex").is_some_and(|v| v == "true") {
        let re = Pattern::new(&filter).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Some(Box::new(move |n: &str| re.matches(n))))
    } else {
        Ok(Some(Box::new(move |n: &str| n.contains(filter.as_str()))))
    }
}

fn check_page(page: usize, size: usize, filtered: usize) -> ApiResult<()> {
    if page > filtered.div_ceil(size).max(1) {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "page_out_of_range",
            reason: format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
        });
    }
    Ok(())
}

fn page_reply(
    items: Vec<Value>,
    page: usize,
    size: usize,
    filtered: usize,
    total: usize,
    q: &HashMap<String, String>,
) -> Value {
    json!({
        "filtered_count": filtered,
        "item_count": items.len(),
        "items": with_columns(Value::Array(items), q),
        "page": page,
        "page_count": filtered.div_ceil(size),
        "page_size": size,
        "total_count": total,
    })
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

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Paging by names renders fewer objects but answers exactly what rendering all does.
    #[test]
    fn paging_by_name_answers_as_rendering_everything() {
        let items: Vec<(String, String, u64)> = (0..1234)
            .map(|i| {
                let vhost = if i % 3 == 0 { "/" } else { "other" };
                (format!("q-{:04}", (i * 7919) % 1234), vhost.to_string(), i)
            })
            .collect();
        let render =
            |x: &(String, String, u64)| json!({"name": x.0, "vhost": x.1, "messages": x.2});
        let all = Value::Array(items.iter().map(render).collect());
        let rendered = std::cell::Cell::new(0);
        let counting = |x: &(String, String, u64)| {
            rendered.set(rendered.get() + 1);
            render(x)
        };
        for pairs in [
            vec![("page", "1")],
            vec![("page", "3"), ("page_size", "50"), ("sort", "name")],
            vec![("page", "2"), ("sort", "name"), ("sort_reverse", "true")],
            vec![("page", "1"), ("sort", "vhost"), ("page_size", "500")],
            vec![("page", "1"), ("name", "q-00"), ("sort", "name")],
            vec![("page", "1"), ("name", "^q-01[0-4]"), ("use_regex", "true")],
            vec![
                ("page", "2"),
                ("sort", "messages"),
                ("sort_reverse", "true"),
            ],
            vec![("page", "1"), ("sort", "name"), ("columns", "name")],
            vec![("sort", "name")],
        ] {
            let q = query(&pairs);
            rendered.set(0);
            let lazy = list_by_name_json(items.clone(), |x| &x.0, |x| &x.1, counting, &q);
            let full = list_json(all.clone(), &q);
            assert_eq!(lazy.ok(), full.ok(), "{pairs:?}");
            let cheap = pairs.iter().any(|(k, _)| *k == "page")
                && !pairs.iter().any(|(k, v)| *k == "sort" && *v == "messages");
            if cheap {
                assert!(
                    rendered.get() <= 500,
                    "{pairs:?}: rendered {}",
                    rendered.get()
                );
            }
        }
        for pairs in [
            vec![("page", "99"), ("sort", "name")],
            vec![("page", "0")],
            vec![("page", "1"), ("name", "("), ("use_regex", "true")],
        ] {
            let q = query(&pairs);
            let lazy = list_by_name_json(items.clone(), |x| &x.0, |x| &x.1, render, &q);
            let full = list_json(all.clone(), &q);
            let (Err(a), Err(b)) = (lazy, full) else {
                panic!("{pairs:?}: expected errors");
            };
            assert_eq!((a.status, a.error, a.reason), (b.status, b.error, b.reason));
        }
    }

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
