//! Credit flow: a publisher faster than the broker can deliver to a consumer that has
//! credit is held back (its socket is not read, connection state `flow`) once the queue
//! backs up, instead of the broker buffering without bound; it goes on when deliveries
//! flow again, and nothing is lost. A queue whose consumers lack credit (a slow worker
//! with a small prefetch) does not hold its publishers back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lapin::options::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};
use warren_integration::{api, client::*, raw::*, Broker};

const BODY: usize = 512;

fn connection_states(http_port: u16) -> Vec<String> {
    let conns = api(http_port, "/api/connections");
    conns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap_or("").to_string())
        .collect()
}

fn ready(http_port: u16, queue: &str) -> u64 {
    api(http_port, &format!("/api/queues/%2F/{queue}"))["messages_ready"]
        .as_u64()
        .unwrap_or(0)
}

/// basic.consume on channel 1, no-ack; consume-ok is left unread with the deliveries.
async fn raw_consume_no_ack(sock: &mut TcpStream, queue: &str) {
    let mut args = 0u16.to_be_bytes().to_vec();
    args.extend(shortstr(queue));
    args.extend(shortstr("slow-reader"));
    args.push(0b10); // no-ack
    args.extend_from_slice(&0u32.to_be_bytes());
    write_method(sock, 1, 60, 20, &args).await;
}

/// Publishes `n` messages as fast as the socket takes them.
async fn publish_flood(mut sock: TcpStream, queue: String, n: usize) -> TcpStream {
    let body = vec![b'x'; BODY];
    let mut one = Vec::new();
    {
        let mut args = 0u16.to_be_bytes().to_vec();
        args.extend(shortstr(""));
        args.extend(shortstr(&queue));
        args.push(0);
        one.extend(method_frame(1, 60, 40, &args));
        let mut header = 60u16.to_be_bytes().to_vec();
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(BODY as u64).to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        one.extend(frame_bytes(FRAME_HEADER, 1, &header));
        one.extend(frame_bytes(FRAME_BODY, 1, &body));
    }
    let batch: Vec<u8> = one.repeat(100);
    for _ in 0..n / 100 {
        sock.write_all(&batch).await.unwrap();
    }
    sock
}

#[tokio::test]
async fn a_publisher_outrunning_delivery_is_held_back_and_loses_nothing() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "flow-q", QueueDeclareOptions::default()).await;

    // A no-ack consumer whose socket nobody reads: the broker's deliveries back up.
    let mut consumer = raw_open(broker.port, false).await;
    raw_consume_no_ack(&mut consumer, "flow-q").await;

    let n = 80_000;
    let publisher = raw_open(broker.port, false).await;
    let flood = tokio::spawn(publish_flood(publisher, "flow-q".to_string(), n));

    // The publisher ends up in `flow`, with the queue's backlog bounded.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !connection_states(broker.http_port).contains(&"flow".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the publisher was never held back"
        );
        assert!(
            !flood.is_finished(),
            "all {n} messages went through unhindered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Held back means the backlog stays under the flow mark (8,192 ready, plus what was in
    // flight) when the publisher is seen in `flow` and a second later: an unhindered
    // publisher adds hundreds of thousands of messages a second. (The API's count may lag
    // the state by a sample, so the growth between the two is not compared.)
    let first = ready(broker.http_port, "flow-q");
    assert!(first < 12_000, "the backlog passed the flow mark: {first}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = ready(broker.http_port, "flow-q");
    assert!(
        second < 12_000,
        "the backlog stays near the flow mark: {first} then {second}"
    );
    assert!(!flood.is_finished(), "the publisher is still held back");

    // Reading the consumer's socket lets everything through, in full.
    let mut delivered = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered < n {
        assert!(
            Instant::now() < deadline,
            "only {delivered} of {n} delivered"
        );
        let frame = read_frame(&mut consumer).await;
        if frame.kind == FRAME_METHOD && frame.payload.get(..4) == Some(&[0, 60, 0, 60]) {
            delivered += 1;
        }
    }
    within("publisher done", flood).await.unwrap();
    let states = connection_states(broker.http_port);
    assert!(!states.contains(&"flow".to_string()), "{states:?}");
    assert_eq!(ready(broker.http_port, "flow-q"), 0);
}

#[tokio::test]
async fn consumers_without_credit_do_not_hold_publishers_back() {
    let broker = Broker::start();
    let conn = connect(&broker.amqp_url()).await;
    let ch = channel(&conn).await;
    declare_queue(&ch, "slow-worker", QueueDeclareOptions::default()).await;
    // A worker with prefetch 1 that never acks: the queue grows, as in RabbitMQ.
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let _worker = consume(&ch, "slow-worker", "w", false).await;
    let n = 30_000;
    let publisher = raw_open(broker.port, false).await;
    within(
        "publishing past the flow mark",
        publish_flood(publisher, "slow-worker".to_string(), n),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(broker.http_port, "slow-worker") < (n - 1) as u64 {
        assert!(Instant::now() < deadline, "messages missing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
