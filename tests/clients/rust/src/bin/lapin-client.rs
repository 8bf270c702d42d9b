//! lapin (no TLS, tokio), used the way Rust services use it.
//! `lapin-client recovery`: lapin's automatic connection and topology recovery
//! (`enable_auto_recover`) across a broker restart.
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use warren_client_checks::*;

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

async fn publish(
    ch: &Channel,
    x: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> CheckResult {
    e(
        "basic.publish",
        ch.basic_publish(
            x.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await,
    )?;
    Ok(())
}

async fn get(
    ch: &Channel,
    q: &str,
    no_ack: bool,
) -> Result<Option<lapin::message::BasicGetMessage>, String> {
    e(
        "basic.get",
        ch.basic_get(q.into(), BasicGetOptions { no_ack }).await,
    )
}

async fn temp_queue(ch: &Channel) -> Result<String, String> {
    let q = e(
        "queue.declare",
        ch.queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
    )?;
    Ok(q.name().to_string())
}

async fn declare(r: &Report, ch: &Channel) -> CheckResult {
    let (ae, x, hx) = (r.name("ae"), r.name("topic"), r.name("headers"));
    let ad = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    e(
        "exchange.declare",
        ch.exchange_declare(
            ae.as_str().into(),
            ExchangeKind::Fanout,
            ad,
            FieldTable::default(),
        )
        .await,
    )?;
    e(
        "exchange.declare",
        ch.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Topic,
            ad,
            table(&[("alternate-exchange", s(&ae))]),
        )
        .await,
    )?;
    let args = table(&[
        ("x-message-ttl", AMQPValue::LongInt(60000)),
        ("x-max-length", AMQPValue::LongInt(100)),
    ]);
    let q = r.name("q");
    e(
        "queue.declare",
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            args.clone(),
        )
        .await,
    )?;
    e(
        "queue.bind",
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "a.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    let qa = temp_queue(ch).await?;
    expect(
        qa.starts_with("amq.gen-"),
        format!("server-named queue {qa}"),
    )?;
    e(
        "queue.bind",
        ch.queue_bind(
            qa.as_str().into(),
            ae.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    e(
        "exchange.declare",
        ch.exchange_declare(
            hx.as_str().into(),
            ExchangeKind::Headers,
            ad,
            FieldTable::default(),
        )
        .await,
    )?;
    let qh = temp_queue(ch).await?;
    e(
        "queue.bind",
        ch.queue_bind(
            qh.as_str().into(),
            hx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            table(&[("x-match", s("all")), ("kind", s("order"))]),
        )
        .await,
    )?;
    publish(ch, &x, "a.b", b"routed", BasicProperties::default()).await?;
    publish(ch, &x, "zz", b"to-ae", BasicProperties::default()).await?;
    publish(
        ch,
        &hx,
        "",
        b"h",
        BasicProperties::default().with_headers(table(&[("kind", s("order"))])),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = |m: Option<lapin::message::BasicGetMessage>| {
        m.map(|m| String::from_utf8_lossy(&m.delivery.data).to_string())
    };
    eq(
        "routed",
        Some("routed".to_string()),
        body(get(ch, &q, true).await?),
    )?;
    eq(
        "alternate",
        Some("to-ae".to_string()),
        body(get(ch, &qa, true).await?),
    )?;
    eq(
        "headers",
        Some("h".to_string()),
        body(get(ch, &qh, true).await?),
    )?;
    let p = e(
        "passive",
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
    )?;
    eq("passive count", 0, p.message_count())
}

async fn confirms_mandatory(r: &Report, conn: &Connection) -> CheckResult {
    let ch = e("channel", conn.create_channel().await)?;
    e(
        "confirm.select",
        ch.confirm_select(ConfirmSelectOptions::default()).await,
    )?;
    let q = temp_queue(&ch).await?;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let c = e(
        "publish",
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            mandatory,
            b"ok",
            BasicProperties::default(),
        )
        .await,
    )?;
    let c = within("confirm", c).await?;
    expect(
        matches!(c, Ok(Confirmation::Ack(None))),
        format!("routable: {c:?}"),
    )?;
    let c = e(
        "publish",
        ch.basic_publish(
            "".into(),
            r.name("nowhere").as_str().into(),
            mandatory,
            b"lost",
            BasicProperties::default(),
        )
        .await,
    )?;
    match within("confirm", c).await? {
        Ok(Confirmation::Ack(Some(ret))) => eq(
            "return",
            (312, "NO_ROUTE".to_string(), b"lost".to_vec()),
            (
                ret.reply_code,
                ret.reply_text.to_string(),
                ret.delivery.data.clone(),
            ),
        ),
        other => Err(format!("unroutable mandatory: {other:?}")),
    }
}

async fn prefetch_ack(conn: &Connection) -> CheckResult {
    let ch = e("channel", conn.create_channel().await)?;
    e(
        "basic.qos",
        ch.basic_qos(2, BasicQosOptions::default()).await,
    )?;
    let q = temp_queue(&ch).await?;
    let mut consumer = e(
        "basic.consume",
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    for i in 0..5 {
        publish(
            &ch,
            "",
            &q,
            i.to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    let mut held = Vec::new();
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
    {
        held.push(e("delivery", d)?);
    }
    eq("unacked deliveries with prefetch 2", 2, held.len())?;
    let mut bodies = Vec::new();
    loop {
        for d in held.drain(..) {
            bodies.push(String::from_utf8_lossy(&d.data).to_string());
            e("ack", d.ack(BasicAckOptions::default()).await)?;
        }
        if bodies.len() == 5 {
            break;
        }
        let d = within("delivery", consumer.next())
            .await?
            .ok_or("consumer ended")?;
        held.push(e("delivery", d)?);
    }
    eq(
        "bodies",
        vec!["0", "1", "2", "3", "4"],
        bodies.iter().map(String::as_str).collect(),
    )
}

async fn nack_requeue(ch: &Channel) -> CheckResult {
    let q = temp_queue(ch).await?;
    publish(ch, "", &q, b"again", BasicProperties::default()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = get(ch, &q, false).await?.ok_or("message missing")?;
    expect(
        !m.delivery.redelivered,
        "first delivery flagged redelivered",
    )?;
    e(
        "nack",
        m.delivery
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await,
    )?;
    let m2 = get(ch, &q, false)
        .await?
        .ok_or("requeued message missing")?;
    expect(
        m2.delivery.redelivered,
        "redelivered flag not set after nack requeue",
    )?;
    e("ack", m2.delivery.ack(BasicAckOptions::default()).await)?;
    Ok(())
}

async fn dead_letter(r: &Report, ch: &Channel) -> CheckResult {
    let (dlx, src) = (r.name("dlx"), r.name("dl-src"));
    e(
        "exchange.declare",
        ch.exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
    )?;
    let dlq = temp_queue(ch).await?;
    e(
        "queue.bind",
        ch.queue_bind(
            dlq.as_str().into(),
            dlx.as_str().into(),
            "dead".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    let args = table(&[
        ("x-dead-letter-exchange", s(&dlx)),
        ("x-dead-letter-routing-key", s("dead")),
    ]);
    e(
        "queue.declare",
        ch.queue_declare(
            src.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            args,
        )
        .await,
    )?;
    publish(ch, "", &src, b"doomed", BasicProperties::default()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = get(ch, &src, false)
        .await?
        .ok_or("message not in source queue")?;
    e(
        "reject",
        m.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await,
    )?;
    let mut got = None;
    for _ in 0..100 {
        got = get(ch, &dlq, true).await?;
        if got.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = got.ok_or("nothing dead-lettered")?;
    let headers = got
        .delivery
        .properties
        .headers()
        .clone()
        .ok_or("no headers")?;
    let h = headers.inner();
    let deaths = match h.get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        other => return Err(format!("x-death: {other:?}")),
    };
    eq("x-death entries", 1, deaths.len())?;
    let AMQPValue::FieldTable(d) = &deaths[0] else {
        return Err(format!("x-death[0]: {:?}", deaths[0]));
    };
    let d = d.inner();
    let text = |k: &str| match d.get(k) {
        Some(AMQPValue::LongString(v)) => Some(v.to_string()),
        Some(AMQPValue::ShortString(v)) => Some(v.to_string()),
        _ => None,
    };
    eq(
        "x-death count",
        Some(&AMQPValue::LongLongInt(1)),
        d.get("count"),
    )?;
    eq(
        "x-death reason",
        Some("rejected".to_string()),
        text("reason"),
    )?;
    eq("x-death queue", Some(src.clone()), text("queue"))?;
    eq("x-death exchange", Some(String::new()), text("exchange"))?;
    eq(
        "x-death routing-keys",
        Some(&AMQPValue::FieldArray(vec![s(&src)].into())),
        d.get("routing-keys"),
    )?;
    expect(
        matches!(d.get("time"), Some(AMQPValue::Timestamp(_))),
        format!("x-death time: {:?}", d.get("time")),
    )?;
    eq(
        "x-first-death-queue",
        Some(&s(&src)),
        h.get("x-first-death-queue"),
    )
}

async fn rpc(r: &Report, conn: &Connection, ch: &Channel) -> CheckResult {
    let sch = e("channel", conn.create_channel().await)?;
    let rq = r.name("rpc");
    e(
        "queue.declare",
        sch.queue_declare(
            rq.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
    )?;
    let mut requests = e(
        "consume",
        sch.basic_consume(
            rq.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    let server = tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let (Some(reply_to), Some(cid)) = (
                d.properties.reply_to().clone(),
                d.properties.correlation_id().clone(),
            ) else {
                continue;
            };
            let mut body = b"re:".to_vec();
            body.extend_from_slice(&d.data);
            let _ = sch
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_correlation_id(cid),
                )
                .await;
            let _ = d.ack(BasicAckOptions::default()).await;
        }
    });
    let reply = temp_queue(ch).await?;
    let mut replies = e(
        "consume",
        ch.basic_consume(
            reply.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
    )?;
    for i in 0..3 {
        let props = BasicProperties::default()
            .with_reply_to(reply.as_str().into())
            .with_correlation_id(format!("c{i}").into());
        publish(ch, "", &rq, i.to_string().as_bytes(), props).await?;
    }
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 3 {
        let d = e(
            "reply",
            within("reply", replies.next())
                .await?
                .ok_or("reply consumer ended")?,
        )?;
        got.insert(
            d.properties
                .correlation_id()
                .clone()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            String::from_utf8_lossy(&d.data).to_string(),
        );
    }
    server.abort();
    let want: std::collections::BTreeMap<String, String> = (0..3)
        .map(|i| (format!("c{i}"), format!("re:{i}")))
        .collect();
    eq("replies", want, got)
}

async fn recovery(r: &Report) -> CheckResult {
    let props = ConnectionProperties::default()
        .enable_auto_recover()
        .configure_backoff(|b| {
            b.with_max_times(60)
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(1))
        });
    let conn = e("connect", Connection::connect(&url(), props).await)?;
    let ch = e("channel", conn.create_channel().await)?;
    let (x, q) = (r.name("rec-x"), r.name("rec-q"));
    e(
        "exchange.declare",
        ch.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    e(
        "queue.declare",
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    e(
        "queue.bind",
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
    )?;
    let mut consumer = e(
        "consume",
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
    )?;
    publish(&ch, &x, "k", b"before", BasicProperties::default()).await?;
    let d = e(
        "delivery",
        within("delivery", consumer.next())
            .await?
            .ok_or("consumer ended")?,
    )?;
    eq("before restart", b"before".to_vec(), d.data)?;
    println!("READY");
    expect(wait_restarted().await, "no restart")?;
    // lapin lets publishes through while it is still replaying the topology: one sent to
    // the exchange before its redeclaration closes the channel with 404 (on RabbitMQ
    // too). So first wait, through the default exchange (which drops rather than fails),
    // until the queue and consumer are back; then check the exchange and binding.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let mut back = false;
    while !back && tokio::time::Instant::now() < deadline {
        let sent = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b"probe",
                BasicProperties::default(),
            )
            .await;
        if let Err(err) = sent {
            last = err.to_string();
            eprintln!("  # not yet: {err}");
            if ch.wait_for_recovery(err).await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(1), consumer.next()).await {
            Ok(Some(Ok(d))) if d.data == b"probe" => back = true,
            Ok(Some(Ok(d))) => last = format!("unexpected delivery {:?}", d.data),
            Ok(Some(Err(err))) => {
                last = err.to_string();
                eprintln!("  # consumer: {err}");
                let _ = ch.wait_for_recovery(err).await;
            }
            Ok(None) => return Err("consumer stream ended instead of recovering".into()),
            Err(_) => last = "no delivery within 1 s".into(),
        }
    }
    expect(back, format!("queue and consumer not recovered: {last}"))?;
    publish(&ch, &x, "k", b"after", BasicProperties::default()).await?;
    let d = e(
        "delivery",
        within(
            "delivery through the redeclared exchange and binding",
            consumer.next(),
        )
        .await?
        .ok_or("consumer ended")?,
    )?;
    eq("after restart", b"after".to_vec(), d.data)?;
    let _ = ch
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut r = Report::new("lapin");
    if std::env::args().nth(1).as_deref() == Some("recovery") {
        let res = recovery(&r).await;
        r.check("recovery", async { res }).await;
        r.finish();
    }
    let conn = match Connection::connect(&url(), ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(err) => {
            r.check("connect", async { Err(err.to_string()) }).await;
            r.finish();
        }
    };
    let ch = conn.create_channel().await;
    r.check("connect", async { e("channel", ch.as_ref().map(|_| ())) })
        .await;
    let Ok(ch) = ch else { r.finish() };
    let res = declare(&r, &ch).await;
    r.check("declare", async { res }).await;
    let res = confirms_mandatory(&r, &conn).await;
    r.check("confirm-mandatory", async { res }).await;
    let res = prefetch_ack(&conn).await;
    r.check("prefetch-ack", async { res }).await;
    let res = nack_requeue(&ch).await;
    r.check("nack-requeue", async { res }).await;
    let res = dead_letter(&r, &ch).await;
    r.check("dead-letter", async { res }).await;
    let res = rpc(&r, &conn, &ch).await;
    r.check("rpc", async { res }).await;
    let _ = conn.close(200, "bye".into()).await;
    r.finish();
}
