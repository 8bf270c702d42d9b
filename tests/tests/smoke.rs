//! The broker starts, accepts a lapin connection and moves a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_lite::StreamExt;
use lapin::{options::*, types::FieldTable, BasicProperties, Connection, ConnectionProperties};
use warren_integration::Broker;

#[tokio::test]
async fn publish_and_consume_round_trip() {
    let broker = Broker::start();
    let conn = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    ch.basic_publish(
        "".into(),
        q.name().clone(),
        BasicPublishOptions::default(),
        b"hello",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), consumer.next())
        .await
        .expect("delivery in time")
        .expect("stream open")
        .expect("delivery ok");
    assert_eq!(delivery.data, b"hello");
    assert_eq!(delivery.routing_key.as_str(), q.name().as_str());
    assert!(!delivery.redelivered);
    delivery.ack(BasicAckOptions::default()).await.expect("ack");
    conn.close(200, "bye".into()).await.expect("close");
    assert!(broker
        .log()
        .iter()
        .any(|l| l.contains("Server startup complete")));
}
