#![allow(clippy::unwrap_used, clippy::expect_used)]
use futures_lite::StreamExt;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use warren_integration::Broker;

#[tokio::test]
async fn dbg_close() {
    let broker = Broker::start();
    let conn = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let mut events = conn.events_listener();
    let ch = conn.create_channel().await.unwrap();
    let r = conn.close(200, "bye".into()).await;
    println!("close result {r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(Some(e)) = futures_lite::future::poll_once(events.next()).await {
        println!("event {e:?}");
    }
    println!("status {:?} ch {:?}", conn.status(), ch.status());
    for l in broker.log() {
        println!("LOG {l}");
    }
}
