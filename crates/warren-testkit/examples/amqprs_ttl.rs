//! The lapin_ttl example with amqprs: "orders not picked up in 30 s are dead-lettered",
//! run in milliseconds: `cargo run -p warren-testkit --example amqprs_ttl`.

use std::time::{Duration, Instant};

use amqprs::{
    callbacks::{DefaultChannelCallback, DefaultConnectionCallback},
    channel::{BasicPublishArguments, ConfirmSelectArguments, QueueDeclareArguments},
    connection::{Connection, OpenConnectionArguments},
    BasicProperties, FieldName, FieldTable, FieldValue,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let began = Instant::now();
    let broker = warren_testkit::Broker::start().await?;
    let vhost = broker.vhost().await?;
    // amqprs does not percent-decode the vhost of a URL: give it host, port and name.
    let conn = Connection::open(
        OpenConnectionArguments::new("127.0.0.1", broker.port(), "guest", "guest")
            .virtual_host(vhost.name()),
    )
    .await?;
    conn.register_callback(DefaultConnectionCallback).await?;
    println!("broker started and connected in {:?}", began.elapsed());
    let ch = conn.open_channel(None).await?;
    ch.register_callback(DefaultChannelCallback).await?;
    ch.confirm_select(ConfirmSelectArguments::default()).await?;
    let mut args = FieldTable::new();
    args.insert(FieldName::try_from("x-message-ttl")?, FieldValue::I(30_000));
    args.insert(
        FieldName::try_from("x-dead-letter-exchange")?,
        FieldValue::from(""),
    );
    args.insert(
        FieldName::try_from("x-dead-letter-routing-key")?,
        FieldValue::from("orders.expired"),
    );
    ch.queue_declare(QueueDeclareArguments::new("orders.expired"))
        .await?;
    ch.queue_declare(
        QueueDeclareArguments::new("orders")
            .arguments(args)
            .finish(),
    )
    .await?;
    broker.freeze(true)?;
    ch.basic_publish(
        BasicProperties::default(),
        b"order 1".to_vec(),
        BasicPublishArguments::new("", "orders"),
    )
    .await?;
    // amqprs reports confirms through a callback; the broker's own view is enough here.
    let queued = broker
        .wait_for_messages(vhost.name(), "orders", 1, Duration::from_secs(5))
        .await?;
    assert!(queued, "the order never reached its queue");
    broker.advance(Duration::from_secs(30))?;
    let expired = broker.peek(vhost.name(), "orders.expired", 10)?;
    println!(
        "after a 30 s advance: {} expired order(s); whole run {:?}",
        expired.len(),
        began.elapsed()
    );
    assert_eq!(expired, vec![b"order 1".to_vec()]);
    ch.close().await?;
    conn.close().await?;
    Ok(())
}
