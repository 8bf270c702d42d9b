//! The physical floor for a broker on this machine: the same byte stream a producer sends
//! for `size`-byte messages (basic.publish, content header, body frames of at most 128
//! KiB), relayed through a process that only reads each byte into a buffer and writes it
//! on to a consumer, over loopback. No broker can move messages faster than that relay;
//! `make bench` reports brokers against it.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;

/// What the relay moved.
#[derive(Debug, Clone, Serialize)]
pub struct RelaySummary {
    pub duration_s: f64,
    pub size: usize,
    /// Bytes on the wire per message (frames included).
    pub wire_bytes_per_message: usize,
    pub received_rate: f64,
    pub body_mb_per_s: f64,
}

/// One message as a publisher's frames.
fn publish_frames(size: usize) -> Vec<u8> {
    fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
        out.push(kind);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out.push(0xCE);
    }
    let mut out = Vec::with_capacity(size + 128);
    let mut method = vec![0, 60, 0, 40, 0, 0, 0, 8];
    method.extend_from_slice(b"perf-q-0");
    method.push(0);
    frame(&mut out, 1, &method);
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&(size as u64).to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    frame(&mut out, 2, &header);
    let body = vec![b'x'; size];
    for part in body.chunks(131_072 - 8) {
        frame(&mut out, 3, part);
    }
    out
}

/// Relays for `duration` and reports messages per second received by the consumer.
pub fn relay_floor(size: usize, duration: Duration) -> std::io::Result<RelaySummary> {
    let message = publish_frames(size);
    // Whole messages per write, about 1 MiB at a time, as a client's buffered writer would.
    let per_write = (1 << 20) / message.len().max(1) + 1;
    let batch = message.repeat(per_write);

    let inbound = TcpListener::bind("127.0.0.1:0")?;
    let outbound = TcpListener::bind("127.0.0.1:0")?;
    let (in_addr, out_addr) = (inbound.local_addr()?, outbound.local_addr()?);
    let stop = Arc::new(AtomicBool::new(false));

    let producer = {
        let stop = stop.clone();
        thread::spawn(move || -> std::io::Result<()> {
            let mut sock = TcpStream::connect(in_addr)?;
            sock.set_nodelay(true)?;
            while !stop.load(Ordering::Relaxed) {
                if sock.write_all(&batch).is_err() {
                    break;
                }
            }
            Ok(())
        })
    };
    let consumer = {
        let stop = stop.clone();
        thread::spawn(move || -> std::io::Result<u64> {
            let mut sock = TcpStream::connect(out_addr)?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            let mut buf = vec![0u8; 256 << 10];
            let mut total = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match sock.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(total)
        })
    };
    let (mut from, _) = inbound.accept()?;
    let (mut to, _) = outbound.accept()?;
    to.set_nodelay(true)?;
    from.set_read_timeout(Some(Duration::from_millis(200)))?;
    let relay = {
        let stop = stop.clone();
        thread::spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; 256 << 10];
            while !stop.load(Ordering::Relaxed) {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => to.write_all(&buf[..n])?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    };
    let started = Instant::now();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let received = consumer
        .join()
        .map_err(|_| std::io::Error::other("consumer thread panicked"))??;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = relay.join();
    let _ = producer.join();
    let messages = received as f64 / message.len() as f64;
    Ok(RelaySummary {
        duration_s: elapsed,
        size,
        wire_bytes_per_message: message.len(),
        received_rate: messages / elapsed,
        body_mb_per_s: messages * size as f64 / elapsed / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_moves_whole_messages() {
        let r = relay_floor(4096, Duration::from_millis(300)).unwrap();
        assert!(r.received_rate > 0.0);
        assert_eq!(r.wire_bytes_per_message, publish_frames(4096).len());
        // 4 KiB of body in one frame, plus method and header frames.
        assert!(r.wire_bytes_per_message > 4096 && r.wire_bytes_per_message < 4096 + 80);
    }

    #[test]
    fn large_bodies_are_split_into_frames_of_128_kib() {
        let frames = publish_frames(1 << 20);
        // 9 body frames (8 full, one remainder) of 8 bytes overhead each.
        let overhead = frames.len() - (1 << 20);
        assert!(overhead > 9 * 8 && overhead < 9 * 8 + 60, "{overhead}");
    }
}
