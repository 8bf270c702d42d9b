//! The HTTP side of `warren ctl`: one HTTP/1.1 request per call to the management API,
//! with basic auth, and the little parsing a reply needs (status line, chunked bodies).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::Duration,
};

use serde_json::Value;

use super::CtlArgs;

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Percent-encodes a path segment (vhost `/` becomes `%2F`).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a request got no HTTP reply: nothing listens there (the broker is down), or the
/// exchange broke off.
#[derive(Debug)]
pub(crate) enum SendError {
    Unreachable(String),
    Broken(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unreachable(e) | SendError::Broken(e) => f.write_str(e),
        }
    }
}

/// The system's CA bundle (Debian's ca-certificates), trusted for HTTPS without
/// `--cacert`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An `https://HOST:PORT` address: the TLS client for it and the address without the
/// scheme; a plain ADDR:PORT is returned as it is, with no client.
fn tls_target<'a>(
    host: &'a str,
    cacert: Option<&Path>,
) -> Result<(&'a str, Option<rustls::ClientConnection>), SendError> {
    let Some(addr) = host.strip_prefix("https://") else {
        return Ok((host.strip_prefix("http://").unwrap_or(host), None));
    };
    let addr = addr.trim_end_matches('/');
    let ca = cacert.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let config =
        warren_tls::client_config(ca).map_err(|e| SendError::Unreachable(e.to_string()))?;
    let name = match addr.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => addr,
    };
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|_| SendError::Unreachable(format!("'{name}' is not a valid TLS server name")))?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), server)
        .map_err(|e| SendError::Unreachable(format!("TLS client: {e}")))?;
    Ok((addr, Some(conn)))
}

/// A plain or TLS stream, for one exchange.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => match s.read(buf) {
                // A server that closes without close_notify has still sent everything
                // (Connection: close); treat it as the end.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One HTTP/1.1 request with basic auth and `Connection: close` to `host` (ADDR:PORT, or
/// `https://HOST:PORT` verified against `cacert`); `extra` headers are added as given
/// (`Name: value`).
pub(crate) fn send(
    host: &str,
    cacert: Option<&Path>,
    credentials: (&str, &str),
    method: &str,
    path: &str,
    body: Option<&Value>,
    extra: &[String],
) -> Result<Reply, SendError> {
    let (host, tls) = tls_target(host, cacert)?;
    let tcp = TcpStream::connect(host)
        .map_err(|e| SendError::Unreachable(format!("cannot connect to {host}: {e}")))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
    let mut stream = match tls {
        Some(conn) => Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
        None => Stream::Plain(tcp),
    };
    let payload = body.map(Value::to_string).unwrap_or_default();
    let auth = base64(format!("{}:{}", credentials.0, credentials.1).as_bytes());
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        payload.len()
    );
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(payload.as_bytes()))
        .map_err(|e| SendError::Broken(format!("request failed: {e}")))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| SendError::Broken(format!("reading the reply failed: {e}")))?;
    parse_reply(&raw).map_err(SendError::Broken)
}

impl CtlArgs {
    /// One HTTP/1.1 request with `Connection: close`.
    pub(super) fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        send(
            &self.host,
            self.cacert.as_deref(),
            (&self.user, &self.password),
            method,
            path,
            body,
            &[],
        )
        .map_err(|e| e.to_string())
    }

    /// A request whose reply must be a success: its JSON body (null when empty or not
    /// JSON), or `HTTP <status>: <reason>`.
    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let r = self.request(method, path, body)?;
        let doc: Value = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap_or(Value::Null)
        };
        if r.status >= 400 {
            let reason = doc
                .get("reason")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
            return Err(format!("HTTP {}: {reason}", r.status));
        }
        Ok(doc)
    }
}

fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP reply")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed HTTP status line")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(Reply { status, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = &data[(end + 2).min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments_and_credentials() {
        assert_eq!(seg("/"), "%2F");
        assert_eq!(seg("a b"), "a%20b");
        assert_eq!(base64(b"guest:guest"), "Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn parses_replies() {
        let r = parse_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[]"[..]));
        let r = parse_reply(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"{}"[..]));
    }
}
