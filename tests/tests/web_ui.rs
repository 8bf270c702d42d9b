//! The management web UI's files, served by a real warren on its management port: no
//! credentials needed, the right content types and cache headers, and the API beside
//! them unchanged. (The UI's behaviour in a browser is tests/ui, run by scripts/test.sh.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

use warren_integration::Broker;

/// A plain GET without credentials; status line, headers (lower-cased names) and body.
fn get(port: u16, path: &str, extra: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn ui_files_are_served_without_credentials() {
    let b = Broker::start();
    let (status, headers, body) = get(b.http_port, "/", "");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    let page = String::from_utf8(body).expect("utf-8 page");
    assert!(page.contains("<title>warren management</title>"));
    let (status, _, same) = get(b.http_port, "/index.html", "");
    assert_eq!((status, same), (200, page.clone().into_bytes()));

    // Every file the page loads, each with its type; their total within the budget.
    let mut total = page.len();
    for (path, ctype) in [
        ("/js/core.js", "text/javascript; charset=utf-8"),
        ("/js/pages.js", "text/javascript; charset=utf-8"),
        ("/js/admin.js", "text/javascript; charset=utf-8"),
        ("/css/warren.css", "text/css; charset=utf-8"),
        ("/img/warren.svg", "image/svg+xml"),
    ] {
        assert!(page.contains(&format!("\"{}\"", &path[1..])), "{path}");
        let (status, headers, body) = get(b.http_port, path, "");
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), Some(ctype), "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        total += body.len();
        let tag = header(&headers, "etag").expect("etag").to_string();
        let (status, _, body) = get(b.http_port, path, &format!("If-None-Match: {tag}\r\n"));
        assert_eq!((status, body.len()), (304, 0), "{path} revalidation");
    }
    assert!(total <= 300 * 1024, "UI files are {total} bytes");

    // Unknown files are 404 with the API's JSON error; the API still wants credentials.
    let (status, _, body) = get(b.http_port, "/js/missing.js", "");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("Object Not Found"));
    let (status, _, _) = get(b.http_port, "/api/overview", "");
    assert_eq!(status, 401);
}

/// The page's API calls (marked `X-Requested-With: XMLHttpRequest`) get their 401 without
/// `WWW-Authenticate`, so browsers show no credentials dialog over the login form; other
/// clients still get the challenge.
#[test]
fn page_requests_get_no_basic_auth_challenge() {
    let b = Broker::start();
    let (status, headers, _) = get(b.http_port, "/api/whoami", "");
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").is_some());
    let (status, headers, body) = get(
        b.http_port,
        "/api/whoami",
        "X-Requested-With: XMLHttpRequest\r\nAuthorization: Basic Z3Vlc3Q6d3Jvbmc=\r\n",
    );
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), None);
    assert!(String::from_utf8_lossy(&body).contains("Login failed"));
    let (status, _, _) = get(
        b.http_port,
        "/api/whoami",
        "X-Requested-With: XMLHttpRequest\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n",
    );
    assert_eq!(status, 200);
}
