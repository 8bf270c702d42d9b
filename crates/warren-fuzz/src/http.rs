//! The management API: the input is an HTTP/1.1 request as a client writes it (request
//! line, header lines, a blank line, the body), handed to the API's router in-process
//! (`tower::ServiceExt::oneshot`) with a fresh in-memory broker, as from 127.0.0.1.
//!
//! Checks: no panic, the response body can be read, and no 500: without a disk to fail,
//! an internal error can only be a bug.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri},
};
use tower::ServiceExt;

/// Largest response body read back.
const BODY_LIMIT: usize = 16 << 20;

/// Sends the request in `data` (when it parses as one) to the management API.
pub fn run(data: &[u8]) {
    let Some(request) = parse_request(data) else {
        return;
    };
    let described = format!("{} {}", request.method(), request.uri());
    let status = crate::runtime().block_on(async {
        let router = warren_http::api_router(crate::connection::broker());
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        if let Err(e) = axum::body::to_bytes(response.into_body(), BODY_LIMIT).await {
            panic!("{described}: the response body cannot be read: {e}");
        }
        status
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{described}");
}

/// Request line, headers up to the first empty line, then the body. `None` when the
/// method or URI is not valid (the HTTP server would refuse it before the router).
pub fn parse_request(data: &[u8]) -> Option<Request<Body>> {
    let (head, body) = split_head(data);
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut words = lines.next()?.split(|b| *b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    let mut request = Request::builder().method(method).uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            request = request.header(name, value);
        }
    }
    let mut request = request.body(Body::from(body.to_vec())).ok()?;
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    Some(request)
}

fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    for sep in [&b"\r\n\r\n"[..], b"\n\n"] {
        if let Some(at) = data.windows(sep.len()).position(|w| w == sep) {
            return (&data[..at], &data[at + sep.len()..]);
        }
    }
    (data, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_request_reaches_its_handler() {
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/corpus/http/put_queue"
        ))
        .expect("seed");
        let request = parse_request(&seed).expect("parses");
        assert_eq!(request.method(), Method::PUT);
        let status = crate::runtime().block_on(async {
            let broker = crate::connection::broker();
            let router = warren_http::api_router(broker.clone());
            let status = router.oneshot(request).await.expect("infallible").status();
            assert!(broker
                .vhost("/")
                .expect("vhost")
                .topology
                .read()
                .queues
                .contains_key("hq"));
            status
        });
        assert_eq!(status, StatusCode::CREATED);
    }
}
