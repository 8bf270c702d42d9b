//! The management web UI's static files (crates/warren-http/ui/), built into the binary
//! and served on the management port at `/`, `/index.html`, `/js/...`, `/css/...` and
//! `/img/...`, without authentication as RabbitMQ serves its UI: the page itself logs in
//! against `/api/whoami` with basic auth.

use axum::{
    extract::{Path, Request},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// One built-in file: its path under the UI root, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!("../ui/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("css/warren.css", CSS),
    asset!("js/core.js", JS),
    asset!("js/pages.js", JS),
    asset!("js/admin.js", JS),
    asset!("img/warren.svg", SVG),
];

/// The page may load only its own scripts and styles and talk only to its own origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// Total size of the built-in files, for the budget check in the tests and the docs.
pub fn total_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// An entity tag from the file's bytes (FNV-1a), so a browser revalidates cheaply and a
/// new binary with changed files is never served from a stale cache.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset.body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate on every load (a 304 when unchanged): the files change with the binary.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if asset.content_type == HTML {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    resp
}

fn by_path(path: &str, headers: &HeaderMap) -> Response {
    match find(path) {
        Some(asset) => serve(asset, headers),
        None => crate::ApiError::not_found().into_response(),
    }
}

/// The UI's routes; they need no state, so they merge into the API's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { by_path("index.html", &h) }))
        .route(
            "/index.html",
            get(|h: HeaderMap| async move { by_path("index.html", &h) }),
        )
        .route(
            "/js/{file}",
            get(|Path(f): Path<String>, h: HeaderMap| async move {
                by_path(&format!("js/{f}"), &h)
            }),
        )
        .route(
            "/css/{file}",
            get(|Path(f): Path<String>, h: HeaderMap| async move {
                by_path(&format!("css/{f}"), &h)
            }),
        )
        .route(
            "/img/{file}",
            get(|Path(f): Path<String>, h: HeaderMap| async move {
                by_path(&format!("img/{f}"), &h)
            }),
        )
}

/// The page's own API calls carry `X-Requested-With: XMLHttpRequest`; their 401 answers go
/// without `WWW-Authenticate`, so a wrong password shows the page's login error instead
/// of the browser's own credentials dialog. Other clients get the header as before.
pub(crate) async fn no_auth_prompt_for_page(req: Request, next: Next) -> Response {
    let from_page = req
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    let mut resp = next.run(req).await;
    if from_page {
        resp.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget for the UI: 300 KB uncompressed.
    #[test]
    fn assets_fit_the_budget() {
        assert!(total_size() > 10_000, "the UI files look empty");
        assert!(
            total_size() <= 300 * 1024,
            "UI files are {} bytes",
            total_size()
        );
    }

    #[test]
    fn every_asset_referenced_by_the_page_is_built_in() {
        let index =
            std::str::from_utf8(find("index.html").map_or(&[][..], |a| a.body)).unwrap_or_default();
        for a in ASSETS.iter().filter(|a| a.path != "index.html") {
            assert!(
                index.contains(&format!("\"{}\"", a.path)),
                "index.html does not load {}",
                a.path
            );
        }
    }

    #[test]
    fn conditional_get_answers_not_modified() {
        let Some(asset) = find("js/core.js") else {
            panic!("core.js missing");
        };
        let first = serve(asset, &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers().get(header::ETAG).cloned();
        let Some(tag) = tag else {
            panic!("no ETag");
        };
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve(asset, &h).status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn unknown_files_are_not_found() {
        assert_eq!(
            by_path("js/../../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            by_path("js/nope.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
