//! A test of "orders not picked up in 30 s are dead-lettered", run in milliseconds:
//! `cargo run -p warren-testkit --example lapin_ttl`.

use std::time::{Duration, Instant};

use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, Connection, ConnectionProperties,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let began = Instant::now();
    let broker = warren_testkit::Broker::start().await?;
    let vhost = broker.vhost().await?;
    let conn = Connection::connect(vhost.amqp_url(), ConnectionProperties::default()).await?;
    println!("broker started and connected in {:?}", began.elapsed());
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(30_000));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from("orders.expired")),
    );
    ch.queue_declare(
        "orders.expired".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare("orders".into(), QueueDeclareOptions::default(), args)
        .await?;
    broker.freeze(true)?;
    ch.basic_publish(
        "".into(),
        "orders".into(),
        BasicPublishOptions::default(),
        b"order 1",
        BasicProperties::default(),
    )
    .await?
    .await?;
    broker.advance(Duration::from_secs(30))?;
    let expired = broker.peek(vhost.name(), "orders.expired", 10)?;
    println!(
        "after a 30 s advance: {} expired order(s); whole run {:?}",
        expired.len(),
        began.elapsed()
    );
    assert_eq!(expired, vec![b"order 1".to_vec()]);
    conn.close(200, "done".into()).await?;
    Ok(())
}
