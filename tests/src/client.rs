//! lapin helpers shared by the test files: every step is bounded by [`WAIT`] so that a
//! broker that does not answer fails the test instead of hanging it.

use std::{future::Future, time::Duration};

use futures_lite::StreamExt;
use lapin::{
    message::{BasicGetMessage, Delivery},
    options::*,
    types::FieldTable,
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, ErrorKind,
    Event, ExchangeKind,
};

/// Longest a single step may wait on the broker.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for something that must not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// Awaits `fut`, failing the test instead of hanging if the broker does not answer.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Reply code and text of an AMQP protocol error (channel.close or connection.close).
pub fn amqp_error(err: &lapin::Error) -> (u16, String) {
    match err.kind() {
        ErrorKind::ProtocolError(e) => (e.get_id(), e.get_message().to_string()),
        other => panic!("expected an AMQP protocol error, got {other:?} ({err})"),
    }
}

pub fn expected(code: u16, text: &str) -> (u16, String) {
    (code, text.to_string())
}

/// Opens a lapin connection to `url` (for a `Broker`, its `amqp_url()`).
pub async fn connect(url: &str) -> Connection {
    within(
        "connection",
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .expect("connect")
}

pub async fn channel(conn: &Connection) -> Channel {
    within("channel.open", conn.create_channel())
        .await
        .expect("channel.open")
}

/// A channel in publisher-confirm mode, so that `publish` returns only once the broker has
/// routed (and enqueued) the message.
pub async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = channel(conn).await;
    within(
        "confirm.select",
        ch.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .expect("confirm.select");
    ch
}

pub async fn declare_queue(ch: &Channel, name: &str, options: QueueDeclareOptions) -> lapin::Queue {
    within(
        "queue.declare",
        ch.queue_declare(name.into(), options, FieldTable::default()),
    )
    .await
    .expect("queue.declare")
}

/// Declares a server-named exclusive queue and returns its name.
pub async fn exclusive_queue(ch: &Channel) -> String {
    declare_queue(
        ch,
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await
    .name()
    .to_string()
}

pub async fn passive_queue(ch: &Channel, name: &str) -> lapin::Result<lapin::Queue> {
    within(
        "passive queue.declare",
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

/// Publishes and, on a confirm channel, waits for the broker's confirmation.
pub async fn publish_with(
    ch: &Channel,
    exchange: &str,
    key: &str,
    options: BasicPublishOptions,
    body: &[u8],
    props: BasicProperties,
) -> Confirmation {
    let confirm = within(
        "basic.publish",
        ch.basic_publish(exchange.into(), key.into(), options, body, props),
    )
    .await
    .expect("basic.publish");
    within("publisher confirm", confirm)
        .await
        .expect("publisher confirm")
}

pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    let confirmation = publish_with(
        ch,
        exchange,
        key,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await;
    assert!(
        matches!(
            confirmation,
            Confirmation::Ack(None) | Confirmation::NotRequested
        ),
        "unexpected confirmation {confirmation:?}"
    );
}

pub async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(
        "basic.get",
        ch.basic_get(queue.into(), BasicGetOptions { no_ack }),
    )
    .await
    .expect("basic.get")
}

/// basic.get (auto-ack) until get-empty; returns the bodies as strings.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = get(ch, queue, true).await {
        out.push(String::from_utf8(m.delivery.data).unwrap());
        assert!(out.len() <= 100_000, "queue {queue} never empties");
    }
    out
}

/// A synchronous round trip on `ch`: every command sent before it has been processed.
pub async fn sync(ch: &Channel) -> lapin::Result<()> {
    within(
        "exchange.declare passive",
        ch.exchange_declare(
            "amq.direct".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

pub async fn consume(ch: &Channel, queue: &str, tag: &str, no_ack: bool) -> Consumer {
    within(
        "basic.consume",
        ch.basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume")
}

pub async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    within("delivery", consumer.next())
        .await
        .expect("consumer stream ended")
        .expect("delivery")
}

/// Asserts that nothing arrives on `consumer` for a short while.
pub async fn assert_no_delivery(consumer: &mut Consumer) {
    if let Ok(item) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!("unexpected delivery: {item:?}");
    }
}

pub fn body_str(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// The channel error a method without a reply (basic.publish, ...) caused, if any: a round
/// trip on the channel tells; when the broker's channel.close beats it, lapin answers the
/// round trip with the channel's state, and the error is read from `events` (the
/// connection's `events_listener()`, taken before the method was sent).
pub async fn channel_error_after(
    events: &mut (impl futures_lite::Stream<Item = Event> + Unpin),
    ch: &Channel,
) -> Option<(u16, String)> {
    match sync(ch).await {
        Ok(()) => None,
        Err(e) if matches!(e.kind(), ErrorKind::ProtocolError(_)) => {
            // lapin also emits the close as an event: take it here, or a listener made
            // for the next check could receive it late and take it for its own.
            let _ = next_error_event(events).await;
            Some(amqp_error(&e))
        }
        Err(_) => Some(amqp_error(&next_error_event(events).await)),
    }
}

/// The error of the next channel or connection error event.
pub async fn next_error_event(
    events: &mut (impl futures_lite::Stream<Item = Event> + Unpin),
) -> lapin::Error {
    within("error event", async {
        loop {
            match events.next().await {
                Some(Event::Error(err)) => break err,
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    })
    .await
}
