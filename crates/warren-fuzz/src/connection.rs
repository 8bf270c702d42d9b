//! The connection state machine: the input is everything a client sends (protocol
//! header, then frames), written into an in-process stream served by
//! `warren_server::serve_stream` with a fresh in-memory broker, then closed.
//!
//! Checks: the connection finishes once its input ends (within a few seconds), every
//! byte the server sends is a well-formed frame (or the protocol header it answers a
//! wrong one with), and it never closes with 541 INTERNAL_ERROR, which warren sends
//! only when something broke inside it (a caught panic among others).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_codec::{decode_frame, methods::connection, AMQPClass, Frame, PROTOCOL_HEADER};
use warren_server::{Broker, ServerConfig};

/// Longest one input may take: everything here is in memory, so this is a hang.
const LIMIT: Duration = Duration::from_secs(10);

/// Serves one connection that sends `data` and hangs up.
pub fn run(data: &[u8]) {
    let output = crate::runtime().block_on(async {
        let session = tokio::time::timeout(LIMIT, session(data.to_vec()));
        session
            .await
            .unwrap_or_else(|_| panic!("the connection did not finish within {LIMIT:?}"))
    });
    check_output(&output);
}

/// A broker as `warren` starts with no data directory: the default vhost and guest.
pub(crate) fn broker() -> Arc<Broker> {
    let config = ServerConfig {
        data_dir: std::env::temp_dir().join("warren-fuzz-unused"),
        ..ServerConfig::default()
    };
    Broker::new(config)
}

async fn session(input: Vec<u8>) -> Vec<u8> {
    let broker = broker();
    let (client, server) = tokio::io::duplex(64 << 10);
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let conn = tokio::spawn(warren_server::serve_stream(server, peer, broker.clone()));
    let (mut rd, mut wr) = tokio::io::split(client);
    // The server may stop reading (after closing on an error): writing must not hold up
    // reading its answer, so the writer runs apart and is dropped at the end.
    let writer = tokio::spawn(async move {
        for chunk in Chunks(&input) {
            if wr.write_all(chunk).await.is_err() {
                break;
            }
            // Let the server handle the frame (and what it causes, like a delivery)
            // before the next, as a client waiting for replies would.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        let _ = wr.shutdown().await;
        wr
    });
    let mut output = Vec::new();
    let _ = rd.read_to_end(&mut output).await;
    writer.abort();
    if let Err(e) = conn.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    assert_eq!(
        broker.admin.connections.len(),
        0,
        "a finished connection is still registered"
    );
    output
}

/// A client's bytes cut where its frames end (by their size fields alone, so any
/// input can be cut): the protocol header, then one frame at a time.
struct Chunks<'a>(&'a [u8]);

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let len = if self.0.starts_with(b"AMQP") {
            PROTOCOL_HEADER.len()
        } else {
            match self.0.get(3..7) {
                Some(size) => 8 + u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize,
                None => self.0.len(),
            }
        };
        let (chunk, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        Some(chunk)
    }
}

/// Everything the server wrote must be frames a client can read.
fn check_output(output: &[u8]) {
    if output.starts_with(b"AMQP") && output.len() == PROTOCOL_HEADER.len() {
        assert_eq!(output, PROTOCOL_HEADER);
        return;
    }
    let mut buf = BytesMut::from(output);
    while !buf.is_empty() {
        match decode_frame(&mut buf, 0) {
            Ok(Some(Frame::Method { method, .. })) => {
                if let AMQPClass::Connection(connection::AMQPMethod::Close(close)) = *method {
                    assert_ne!(
                        close.reply_code, 541,
                        "INTERNAL_ERROR: {}",
                        close.reply_text
                    );
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the server wrote a torn frame: {:?}", &buf[..]),
            Err(e) => panic!("the server wrote a frame it cannot read back: {e:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness really talks to the broker: a recorded pika session that publishes
    /// "Hello" and consumes it gets it delivered.
    #[test]
    fn a_recorded_session_is_served() {
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/corpus/connection/basic-0"
        ))
        .expect("seed");
        let output = crate::runtime().block_on(session(seed));
        check_output(&output);
        let mut buf = BytesMut::from(&output[..]);
        let mut deliveries = 0;
        let mut bodies = Vec::new();
        while let Ok(Some(frame)) = decode_frame(&mut buf, 0) {
            match frame {
                Frame::Method { method, .. } => {
                    if matches!(
                        *method,
                        AMQPClass::Basic(warren_codec::methods::basic::AMQPMethod::Deliver(_))
                    ) {
                        deliveries += 1;
                    }
                }
                Frame::Body { payload, .. } => bodies.push(payload),
                _ => {}
            }
        }
        assert_eq!(deliveries, 1);
        assert_eq!(bodies, vec![bytes::Bytes::from_static(b"Hello")]);
    }
}
