//! The read side of a connection, over a TCP socket or any other byte stream.
//!
//! The connection task waits until its socket is readable and only then takes memory for
//! the read (an idle connection holds no read buffer), so it needs "wait" and "read
//! without waiting" as two steps. A TCP socket offers both; any other `AsyncRead` (an
//! in-process `tokio::io::duplex` in tests and fuzzing) goes through [`StreamReader`],
//! which reads into a buffer of its own while waiting.

use std::{future::Future, io};

use bytes::{Buf, BufMut, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    net::tcp::OwnedReadHalf,
};

/// A buffer reads append to: the read buffer, or a message's body buffer.
pub(crate) trait ReadTarget: BufMut {
    /// Bytes that fit before the buffer must grow.
    fn spare(&self) -> usize;
}

impl ReadTarget for BytesMut {
    fn spare(&self) -> usize {
        self.capacity() - self.len()
    }
}

impl ReadTarget for Vec<u8> {
    fn spare(&self) -> usize {
        self.capacity() - self.len()
    }
}

/// What the connection task reads from.
pub(crate) trait ConnRead: Send {
    /// Resolves once bytes (or the end of the stream) can be read. Cancel safe: dropping
    /// the future loses nothing.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Appends what can be read now to `buf`, at most `limit` bytes: `Ok(0)` at the end of
    /// the stream, `WouldBlock` when nothing is there yet.
    fn try_read_buf(&mut self, buf: &mut impl ReadTarget, limit: usize) -> io::Result<usize>;
}

impl ConnRead for OwnedReadHalf {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        OwnedReadHalf::readable(self)
    }

    fn try_read_buf(&mut self, buf: &mut impl ReadTarget, limit: usize) -> io::Result<usize> {
        if limit >= buf.spare() {
            return OwnedReadHalf::try_read_buf(self, buf);
        }
        let mut limited = BufMut::limit(&mut *buf, limit);
        OwnedReadHalf::try_read_buf(self, &mut limited)
    }
}

/// Any `AsyncRead` as a [`ConnRead`]: waiting reads into `pending`, reading hands it over.
pub(crate) struct StreamReader<R> {
    inner: R,
    pending: BytesMut,
    eof: bool,
}

/// How much one wait reads ahead.
const CHUNK: usize = 16 * 1024;

impl<R> StreamReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        StreamReader {
            inner,
            pending: BytesMut::new(),
            eof: false,
        }
    }
}

impl<R: AsyncRead + Unpin + Send> ConnRead for StreamReader<R> {
    async fn readable(&mut self) -> io::Result<()> {
        if self.pending.is_empty() && !self.eof {
            self.pending.reserve(CHUNK);
            // `read_buf` is cancel safe: if this future is dropped, nothing was read.
            if self.inner.read_buf(&mut self.pending).await? == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    fn try_read_buf(&mut self, buf: &mut impl ReadTarget, limit: usize) -> io::Result<usize> {
        if self.pending.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = self.pending.len().min(limit.max(1));
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Ok(n)
    }
}

/// Waits for bytes and reads them: `Ok(0)` at the end of the stream.
pub(crate) async fn read_some(rd: &mut impl ConnRead, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        rd.readable().await?;
        match rd.try_read_buf(buf, usize::MAX) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_stream_reads_through_to_its_end() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut rd = StreamReader::new(server);
        let mut buf = BytesMut::new();
        assert_eq!(
            rd.try_read_buf(&mut buf, usize::MAX).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
        client.write_all(b"AMQP").await.expect("write");
        assert_eq!(read_some(&mut rd, &mut buf).await.expect("read"), 4);
        drop(client);
        assert_eq!(read_some(&mut rd, &mut buf).await.expect("read"), 0);
        assert_eq!(&buf[..], b"AMQP");
    }

    #[tokio::test]
    async fn a_limited_read_leaves_the_rest_for_later() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut rd = StreamReader::new(server);
        let mut buf = BytesMut::new();
        client.write_all(b"AMQP0091").await.expect("write");
        rd.readable().await.expect("readable");
        assert_eq!(rd.try_read_buf(&mut buf, 3).expect("read"), 3);
        assert_eq!(rd.try_read_buf(&mut buf, usize::MAX).expect("read"), 5);
        assert_eq!(&buf[..], b"AMQP0091");
    }
}
