//! A minimal AMQP 0-9-1 client on top of warren-codec: just what a load generator needs.

use std::{
    io::{self, IoSlice},
    net::SocketAddr,
};

use amq_protocol::{
    protocol::{basic, channel, confirm, connection, exchange, queue, AMQPClass},
    types::{FieldTable, LongString},
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{rustls::pki_types::ServerName, TlsConnector};
use warren_codec::{decode_frame, encode_method, Frame, PROTOCOL_HEADER};

fn proto(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Reading side of a connection.
pub struct Reader {
    rd: Box<dyn AsyncRead + Send + Unpin>,
    buf: BytesMut,
}

impl Reader {
    pub async fn frame(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 0).map_err(proto)? {
                return Ok(f);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Next method frame, failing on connection.close / channel.close.
    pub async fn method(&mut self) -> io::Result<AMQPClass> {
        loop {
            if let Frame::Method { method, .. } = self.frame().await? {
                return match *method {
                    AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Err(proto(format!(
                        "connection closed: {} {}",
                        c.reply_code, c.reply_text
                    ))),
                    AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Err(proto(format!(
                        "channel closed: {} {}",
                        c.reply_code, c.reply_text
                    ))),
                    m => Ok(m),
                };
            }
        }
    }
}

/// Writing side: frames are gathered in `out` and sent with one write. Large bodies are
/// not copied into `out`: their frames' payloads are slices of the producer's one filler
/// buffer, queued in `chunks` (each chunk goes before what `out` holds) and sent with
/// vectored writes, so the load generator does not spend a copy per body byte that a real
/// client sending a buffer it already holds would not.
pub struct Writer {
    wr: Box<dyn AsyncWrite + Send + Unpin>,
    pub out: BytesMut,
    chunks: Vec<Bytes>,
    pub frame_max: u32,
}

/// Slices per vectored write (below every platform's IOV_MAX).
const SLICES_PER_WRITE: usize = 512;

impl Writer {
    pub fn method(&mut self, channel: u16, m: AMQPClass) -> io::Result<()> {
        encode_method(&mut self.out, channel, &m).map_err(proto)
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.chunks.is_empty() {
            self.chunks.push(self.out.split().freeze());
            self.write_chunks().await?;
        }
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    async fn write_chunks(&mut self) -> io::Result<()> {
        let mut chunks = std::mem::take(&mut self.chunks);
        let mut first = 0;
        while first < chunks.len() {
            let end = (first + SLICES_PER_WRITE).min(chunks.len());
            let slices: Vec<IoSlice<'_>> =
                chunks[first..end].iter().map(|c| IoSlice::new(c)).collect();
            let written = self.wr.write_vectored(&slices).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let mut left = written;
            while left > 0 && first < chunks.len() {
                let len = chunks[first].len();
                if left >= len {
                    left -= len;
                    first += 1;
                } else {
                    chunks[first].advance(left);
                    left = 0;
                }
            }
            while first < chunks.len() && chunks[first].is_empty() {
                first += 1;
            }
        }
        chunks.clear();
        self.chunks = chunks;
        Ok(())
    }

    /// Appends basic.publish with its content.
    pub fn publish(&mut self, exchange: &str, routing_key: &str, properties: &[u8], body: &[u8]) {
        let size = 4 + 2 + 1 + exchange.len() + 1 + routing_key.len() + 1;
        self.out.reserve(size + 8 + body.len() + 64);
        self.out.put_u8(1);
        self.out.put_u16(1);
        self.out.put_u32(size as u32);
        self.out.put_u16(60);
        self.out.put_u16(40);
        self.out.put_u16(0);
        self.out.put_u8(exchange.len() as u8);
        self.out.put_slice(exchange.as_bytes());
        self.out.put_u8(routing_key.len() as u8);
        self.out.put_slice(routing_key.as_bytes());
        self.out.put_u8(0);
        self.out.put_u8(0xCE);
        warren_codec::encode_content(&mut self.out, 1, properties, body, self.frame_max);
    }

    /// Appends basic.publish whose body is `stamp` followed by `filler[stamp.len()..]`,
    /// without copying the filler (see [`Writer`]).
    pub fn publish_shared(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: &[u8],
        stamp: &[u8],
        filler: &Bytes,
    ) {
        self.publish(exchange, routing_key, properties, &[]);
        // publish() wrote an empty body; rewrite the content header's body size.
        let size_at = self.out.len() - 1 - properties.len() - 8;
        self.out[size_at..size_at + 8].copy_from_slice(&(filler.len() as u64).to_be_bytes());
        let chunk = if self.frame_max == 0 {
            filler.len().max(1)
        } else {
            (self.frame_max as usize).saturating_sub(8).max(1)
        };
        let mut at = 0;
        while at < filler.len() {
            let end = (at + chunk).min(filler.len());
            self.out.put_u8(3);
            self.out.put_u16(1);
            self.out.put_u32((end - at) as u32);
            let mut from = at;
            if at == 0 {
                let head = stamp.len().min(end);
                self.out.put_slice(&stamp[..head]);
                from = head;
            }
            if from < end {
                self.chunks.push(self.out.split().freeze());
                self.chunks.push(filler.slice(from..end));
            }
            self.out.put_u8(0xCE);
            at = end;
        }
    }
}

/// Where to connect: the address and, for `amqps`, the TLS client and server name.
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// Opens a connection (TLS when the target says so) and channel 1.
pub async fn connect(
    target: &Target,
    user: &str,
    pass: &str,
    vhost: &str,
) -> io::Result<(Reader, Writer)> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    type Halves = (
        Box<dyn AsyncRead + Send + Unpin>,
        Box<dyn AsyncWrite + Send + Unpin>,
    );
    let (rd, wr): Halves = match &target.tls {
        None => {
            let (rd, wr) = stream.into_split();
            (Box::new(rd), Box::new(wr))
        }
        Some((connector, name)) => {
            let tls = connector.connect(name.clone(), stream).await?;
            let (rd, wr) = tokio::io::split(tls);
            (Box::new(rd), Box::new(wr))
        }
    };
    let mut r = Reader {
        rd,
        buf: BytesMut::with_capacity(64 * 1024),
    };
    let mut w = Writer {
        wr,
        out: BytesMut::with_capacity(64 * 1024),
        chunks: Vec::new(),
        frame_max: 131_072,
    };
    w.out.extend_from_slice(PROTOCOL_HEADER);
    w.flush().await?;
    match r.method().await? {
        AMQPClass::Connection(connection::AMQPMethod::Start(_)) => {}
        other => return Err(proto(format!("expected connection.start, got {other:?}"))),
    }
    let mut response = vec![0u8];
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.extend_from_slice(pass.as_bytes());
    w.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: FieldTable::default(),
            mechanism: "PLAIN".into(),
            response: LongString::from(response),
            locale: "en_US".into(),
        })),
    )?;
    w.flush().await?;
    let tune = match r.method().await? {
        AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
        other => return Err(proto(format!("expected connection.tune, got {other:?}"))),
    };
    w.frame_max = if tune.frame_max == 0 {
        131_072
    } else {
        tune.frame_max
    };
    w.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: tune.channel_max,
            frame_max: w.frame_max,
            heartbeat: 0,
        })),
    )?;
    w.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: vhost.into(),
        })),
    )?;
    w.flush().await?;
    expect(&mut r, "connection.open-ok", |m| {
        matches!(m, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
    })
    .await?;
    // Not pipelined: some brokers (garagemq) refuse channel.open before open-ok.
    w.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )?;
    w.flush().await?;
    expect(&mut r, "channel.open-ok", |m| {
        matches!(m, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
    })
    .await?;
    Ok((r, w))
}

pub async fn expect(
    r: &mut Reader,
    what: &str,
    ok: impl Fn(&AMQPClass) -> bool,
) -> io::Result<AMQPClass> {
    let m = r.method().await?;
    if ok(&m) {
        Ok(m)
    } else {
        Err(proto(format!("expected {what}, got {m:?}")))
    }
}

/// Sends a synchronous method on channel 1 and waits for its reply.
pub async fn rpc(r: &mut Reader, w: &mut Writer, m: AMQPClass) -> io::Result<AMQPClass> {
    w.method(1, m)?;
    w.flush().await?;
    r.method().await
}

pub fn declare_queue(name: &str, durable: bool) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

/// A durable stream queue (`x-queue-type: stream`).
pub fn declare_stream(name: &str) -> AMQPClass {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        amq_protocol::types::AMQPValue::LongString("stream".into()),
    );
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments,
    }))
}

pub fn delete_queue(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
        queue: name.into(),
        if_unused: false,
        if_empty: false,
        nowait: false,
    }))
}

pub fn purge_queue(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
        queue: name.into(),
        nowait: false,
    }))
}

pub fn declare_exchange(name: &str, kind: &str, durable: bool) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
        exchange: name.into(),
        kind: kind.into(),
        passive: false,
        durable,
        auto_delete: false,
        internal: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

pub fn delete_exchange(name: &str) -> AMQPClass {
    AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
        exchange: name.into(),
        if_unused: false,
        nowait: false,
    }))
}

pub fn bind(queue: &str, exchange: &str, key: &str, nowait: bool) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
        queue: queue.into(),
        exchange: exchange.into(),
        routing_key: key.into(),
        nowait,
        arguments: FieldTable::default(),
    }))
}

pub fn confirm_select() -> AMQPClass {
    AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
        nowait: false,
    }))
}

pub fn qos(prefetch: u16) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
        prefetch_count: prefetch,
        global: false,
    }))
}

/// basic.ack of every delivery up to `tag`.
pub fn ack_upto(tag: u64) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
        delivery_tag: tag,
        multiple: true,
    }))
}

/// basic.consume of a stream from its first offset (manual acks, as streams require).
pub fn consume_stream_from_first(queue: &str) -> AMQPClass {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        amq_protocol::types::AMQPValue::LongString("first".into()),
    );
    AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: queue.into(),
        consumer_tag: "".into(),
        no_local: false,
        no_ack: false,
        exclusive: false,
        nowait: false,
        arguments,
    }))
}

pub fn consume(queue: &str, no_ack: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: queue.into(),
        consumer_tag: "".into(),
        no_local: false,
        no_ack,
        exclusive: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(wr: impl AsyncWrite + Send + Unpin + 'static, frame_max: u32) -> Writer {
        Writer {
            wr: Box::new(wr),
            out: BytesMut::new(),
            chunks: Vec::new(),
            frame_max,
        }
    }

    /// What `publish` sends for the same body, interleaved with small messages and across
    /// several vectored writes.
    async fn same_bytes_as_copied(filler_len: usize, frame_max: u32, messages: usize) {
        let filler = Bytes::from(
            (0..filler_len)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        let props = [0x10, 0x00, 2];
        let (a, mut a_rd) = tokio::io::duplex(1 << 16);
        let (b, mut b_rd) = tokio::io::duplex(1 << 16);
        let mut shared = writer(a, frame_max);
        let mut copied = writer(b, frame_max);
        let send = async move {
            for n in 0..messages {
                let stamp = [n as u8; 16];
                let mut body = filler.to_vec();
                let head = stamp.len().min(body.len());
                body[..head].copy_from_slice(&stamp[..head]);
                shared.publish_shared("x", "key", &props, &stamp, &filler);
                copied.publish("x", "key", &props, &body);
                shared.publish("x", "small", &props, b"tiny");
                copied.publish("x", "small", &props, b"tiny");
            }
            shared.flush().await.unwrap();
            copied.flush().await.unwrap();
        };
        let read = async move {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            let (rx, ry) = tokio::join!(a_rd.read_to_end(&mut x), b_rd.read_to_end(&mut y));
            rx.unwrap();
            ry.unwrap();
            (x, y)
        };
        let (_, (x, y)) = tokio::join!(send, read);
        assert!(!x.is_empty());
        assert_eq!(x, y);
    }

    #[tokio::test]
    async fn shared_bodies_go_out_as_the_copied_ones_would() {
        same_bytes_as_copied(100_000, 4096, 3).await;
        // More slices than one vectored write takes.
        same_bytes_as_copied(40_000, 64, 2).await;
        // Bodies shorter than the stamp, and a body of exactly one frame.
        same_bytes_as_copied(10, 4096, 2).await;
        same_bytes_as_copied(4088, 4096, 2).await;
    }
}
