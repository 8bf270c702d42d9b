//! The testkit through amqprs (the second Rust client): the amqprs_ttl example's test
//! with the dead letter read back by the client, and per-test vhosts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use amqprs::{
    callbacks::{DefaultChannelCallback, DefaultConnectionCallback},
    channel::{
        BasicGetArguments, BasicPublishArguments, Channel, ConfirmSelectArguments,
        QueueDeclareArguments,
    },
    connection::{Connection, OpenConnectionArguments},
    BasicProperties, FieldName, FieldTable, FieldValue,
};
use warren_testkit::Broker;

/// amqprs does not percent-decode a URL's vhost, so it gets host, port and name.
async fn open(broker: &Broker, vhost: &str) -> (Connection, Channel) {
    let conn = Connection::open(
        OpenConnectionArguments::new("127.0.0.1", broker.port(), "guest", "guest")
            .virtual_host(vhost),
    )
    .await
    .expect("connect");
    conn.register_callback(DefaultConnectionCallback)
        .await
        .unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    ch.register_callback(DefaultChannelCallback).await.unwrap();
    (conn, ch)
}

fn field(name: &str) -> FieldName {
    FieldName::try_from(name).unwrap()
}

#[tokio::test]
async fn a_30_second_ttl_dead_letters_on_advance_through_amqprs() {
    let began = Instant::now();
    let broker = Broker::start().await.unwrap();
    let vhost = broker.vhost().await.unwrap();
    let (conn, ch) = open(&broker, vhost.name()).await;
    println!("start to open amqprs connection: {:?}", began.elapsed());
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .unwrap();
    let mut args = FieldTable::new();
    args.insert(field("x-message-ttl"), FieldValue::I(30_000));
    args.insert(field("x-dead-letter-exchange"), FieldValue::from(""));
    args.insert(
        field("x-dead-letter-routing-key"),
        FieldValue::from("orders.expired"),
    );
    ch.queue_declare(QueueDeclareArguments::new("orders.expired"))
        .await
        .unwrap();
    ch.queue_declare(
        QueueDeclareArguments::new("orders")
            .arguments(args)
            .finish(),
    )
    .await
    .unwrap();
    broker.freeze(true).unwrap();
    ch.basic_publish(
        BasicProperties::default(),
        b"order 1".to_vec(),
        BasicPublishArguments::new("", "orders"),
    )
    .await
    .unwrap();
    assert!(broker
        .wait_for_messages(vhost.name(), "orders", 1, Duration::from_secs(5))
        .await
        .unwrap());

    // 29 s: still waiting; 30 s: dead-lettered before advance returns.
    broker.advance(Duration::from_secs(29)).unwrap();
    assert_eq!(broker.queue_depth(vhost.name(), "orders").unwrap(), 1);
    assert!(broker
        .peek(vhost.name(), "orders.expired", 10)
        .unwrap()
        .is_empty());
    broker.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(broker.queue_depth(vhost.name(), "orders").unwrap(), 0);

    let mut get = BasicGetArguments::new("orders.expired");
    get.no_ack(true);
    let (_, props, body) = ch.basic_get(get).await.unwrap().expect("a dead letter");
    assert_eq!(body, b"order 1");
    let headers = props.headers().expect("x-death headers");
    let deaths = match headers.get(&field("x-death")) {
        Some(FieldValue::A(deaths)) => Vec::<FieldValue>::from(deaths.clone()),
        other => panic!("x-death: {other:?}"),
    };
    let first = match deaths.first() {
        Some(FieldValue::F(t)) => t.clone(),
        other => panic!("x-death[0]: {other:?}"),
    };
    assert_eq!(
        first.get(&field("reason")),
        Some(&FieldValue::from("expired"))
    );
    assert_eq!(
        first.get(&field("queue")),
        Some(&FieldValue::from("orders"))
    );
    println!("whole test {:?}", began.elapsed());
    ch.close().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn amqprs_clients_in_two_vhosts_do_not_see_each_others_queues() {
    let broker = Broker::start().await.unwrap();
    let (a, b) = (broker.vhost().await.unwrap(), broker.vhost().await.unwrap());
    let (conn_a, ch_a) = open(&broker, a.name()).await;
    ch_a.queue_declare(QueueDeclareArguments::new("jobs"))
        .await
        .unwrap();
    ch_a.basic_publish(
        BasicProperties::default(),
        b"job".to_vec(),
        BasicPublishArguments::new("", "jobs"),
    )
    .await
    .unwrap();
    assert!(broker
        .wait_for_messages(a.name(), "jobs", 1, Duration::from_secs(5))
        .await
        .unwrap());

    let (_conn_b, ch_b) = open(&broker, b.name()).await;
    let passive = ch_b
        .queue_declare(QueueDeclareArguments::new("jobs").passive(true).finish())
        .await;
    assert!(passive.is_err(), "vhost b sees a's queue: {passive:?}");
    assert_eq!(
        broker.peek(a.name(), "jobs", 10).unwrap(),
        vec![b"job".to_vec()]
    );
    conn_a.close().await.unwrap();
}
