//! amqprs (no TLS), used the way Rust services use it: builder arguments, a
//! ChannelCallback for confirms and returns, basic_consume_rx consumers. amqprs has no
//! automatic recovery (applications reopen connections themselves): no restart test.
use std::{collections::BTreeMap, time::Duration};

use amqprs::{
    callbacks::{ChannelCallback, DefaultConnectionCallback},
    channel::*,
    connection::{Connection, OpenConnectionArguments},
    Ack, BasicProperties, Cancel, CloseChannel, FieldName, FieldTable, FieldValue, Nack, Return,
};
use async_trait::async_trait;
use tokio::sync::mpsc;
use warren_client_checks::*;

/// What the broker sent asynchronously on a channel.
#[derive(Debug, PartialEq)]
enum Event {
    Ack(u64, bool),
    Nack(u64),
    Return(u16, String, Vec<u8>),
}

struct Events(mpsc::UnboundedSender<Event>);

#[async_trait]
impl ChannelCallback for Events {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        eprintln!("  # channel closed by the broker: {close}");
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let _ = self.0.send(Event::Ack(ack.delivery_tag(), ack.mutiple()));
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        let _ = self.0.send(Event::Nack(nack.delivery_tag()));
    }
    async fn publish_return(
        &mut self,
        _: &Channel,
        ret: Return,
        _: BasicProperties,
        content: Vec<u8>,
    ) {
        let _ = self.0.send(Event::Return(
            ret.reply_code(),
            ret.reply_text().clone(),
            content,
        ));
    }
}

fn table(pairs: &[(&str, FieldValue)]) -> Result<FieldTable, String> {
    let mut t = FieldTable::new();
    for (k, v) in pairs {
        t.insert(e("field name", FieldName::try_from(*k))?, v.clone());
    }
    Ok(t)
}

async fn publish(
    ch: &Channel,
    x: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
    mandatory: bool,
) -> CheckResult {
    let mut args = BasicPublishArguments::new(x, key);
    args.mandatory(mandatory);
    e(
        "basic.publish",
        ch.basic_publish(props, body.to_vec(), args).await,
    )
}

async fn temp_queue(ch: &Channel) -> Result<String, String> {
    let q = e(
        "queue.declare",
        ch.queue_declare(QueueDeclareArguments::exclusive_server_named())
            .await,
    )?;
    Ok(q.ok_or("no declare-ok")?.0)
}

async fn get(ch: &Channel, q: &str, no_ack: bool) -> Result<Option<GetMessage>, String> {
    let mut args = BasicGetArguments::new(q);
    args.no_ack(no_ack);
    e("basic.get", ch.basic_get(args).await)
}

async fn bind(ch: &Channel, q: &str, x: &str, key: &str, args: FieldTable) -> CheckResult {
    e(
        "queue.bind",
        ch.queue_bind(QueueBindArguments::new(q, x, key).arguments(args).finish())
            .await,
    )
}

async fn declare(r: &Report, ch: &Channel) -> CheckResult {
    let (ae, x) = (r.name("ae"), r.name("topic"));
    e(
        "exchange.declare",
        ch.exchange_declare(
            ExchangeDeclareArguments::new(&ae, "fanout")
                .auto_delete(true)
                .finish(),
        )
        .await,
    )?;
    let xargs = table(&[("alternate-exchange", FieldValue::from(ae.as_str()))])?;
    e(
        "exchange.declare",
        ch.exchange_declare(
            ExchangeDeclareArguments::new(&x, "topic")
                .auto_delete(true)
                .arguments(xargs)
                .finish(),
        )
        .await,
    )?;
    let q = r.name("q");
    let qargs = table(&[
        ("x-message-ttl", FieldValue::I(60000)),
        ("x-max-length", FieldValue::I(100)),
    ])?;
    e(
        "queue.declare",
        ch.queue_declare(
            QueueDeclareArguments::new(&q)
                .auto_delete(true)
                .arguments(qargs)
                .finish(),
        )
        .await,
    )?;
    bind(ch, &q, &x, "a.*", FieldTable::new()).await?;
    let qa = temp_queue(ch).await?;
    expect(
        qa.starts_with("amq.gen-"),
        format!("server-named queue {qa}"),
    )?;
    bind(ch, &qa, &ae, "", FieldTable::new()).await?;
    publish(ch, &x, "a.b", b"routed", BasicProperties::default(), false).await?;
    publish(ch, &x, "zz", b"to-ae", BasicProperties::default(), false).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    eq(
        "routed",
        Some(b"routed".to_vec()),
        get(ch, &q, true).await?.map(|m| m.2),
    )?;
    eq(
        "alternate",
        Some(b"to-ae".to_vec()),
        get(ch, &qa, true).await?.map(|m| m.2),
    )?;
    let p = e(
        "passive",
        ch.queue_declare(QueueDeclareArguments::new(&q).passive(true).finish())
            .await,
    )?;
    eq("passive count", Some(0), p.map(|p| p.1))
}

async fn confirms_mandatory(r: &Report, conn: &Connection) -> CheckResult {
    let ch = e("channel", conn.open_channel(None).await)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    e("callback", ch.register_callback(Events(tx)).await)?;
    e(
        "confirm.select",
        ch.confirm_select(ConfirmSelectArguments::default()).await,
    )?;
    let q = temp_queue(&ch).await?;
    publish(&ch, "", &q, b"ok", BasicProperties::default(), true).await?;
    publish(
        &ch,
        "",
        &r.name("nowhere"),
        b"lost",
        BasicProperties::default(),
        true,
    )
    .await?;
    let mut events = Vec::new();
    let mut confirmed = 0;
    while confirmed < 2 {
        let ev = within("confirm", rx.recv()).await?.ok_or("callback gone")?;
        match ev {
            // one ack may confirm several tags (multiple)
            Event::Ack(tag, true) => confirmed = tag,
            Event::Ack(_, false) => confirmed += 1,
            _ => {}
        }
        events.push(ev);
    }
    let returns: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Return(..)))
        .collect();
    eq(
        "returns",
        vec![&Event::Return(312, "NO_ROUTE".into(), b"lost".to_vec())],
        returns,
    )?;
    expect(
        !events.iter().any(|e| matches!(e, Event::Nack(_))),
        format!("nacks: {events:?}"),
    )
}

async fn prefetch_ack(conn: &Connection) -> CheckResult {
    let ch = e("channel", conn.open_channel(None).await)?;
    e(
        "basic.qos",
        ch.basic_qos(BasicQosArguments::new(0, 2, false)).await,
    )?;
    let q = temp_queue(&ch).await?;
    let (_, mut rx) = e(
        "consume",
        ch.basic_consume_rx(BasicConsumeArguments::new(&q, "").manual_ack(true).finish())
            .await,
    )?;
    for i in 0..5 {
        publish(
            &ch,
            "",
            &q,
            i.to_string().as_bytes(),
            BasicProperties::default(),
            false,
        )
        .await?;
    }
    let mut held = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        held.push(m);
    }
    eq("unacked deliveries with prefetch 2", 2, held.len())?;
    let mut bodies = Vec::new();
    loop {
        for m in held.drain(..) {
            let tag = m.deliver.as_ref().ok_or("no deliver")?.delivery_tag();
            bodies.push(String::from_utf8_lossy(&m.content.unwrap_or_default()).to_string());
            e(
                "ack",
                ch.basic_ack(BasicAckArguments::new(tag, false)).await,
            )?;
        }
        if bodies.len() == 5 {
            break;
        }
        held.push(
            within("delivery", rx.recv())
                .await?
                .ok_or("consumer ended")?,
        );
    }
    eq(
        "bodies",
        vec!["0", "1", "2", "3", "4"],
        bodies.iter().map(String::as_str).collect(),
    )
}

async fn nack_requeue(ch: &Channel) -> CheckResult {
    let q = temp_queue(ch).await?;
    publish(ch, "", &q, b"again", BasicProperties::default(), false).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ok, _, _) = get(ch, &q, false).await?.ok_or("message missing")?;
    expect(!ok.redelivered(), "first delivery flagged redelivered")?;
    e(
        "nack",
        ch.basic_nack(BasicNackArguments::new(ok.delivery_tag(), false, true))
            .await,
    )?;
    let (ok2, _, body) = get(ch, &q, false)
        .await?
        .ok_or("requeued message missing")?;
    expect(
        ok2.redelivered(),
        "redelivered flag not set after nack requeue",
    )?;
    eq("body", b"again".to_vec(), body)?;
    e(
        "ack",
        ch.basic_ack(BasicAckArguments::new(ok2.delivery_tag(), false))
            .await,
    )
}

fn text(v: Option<&FieldValue>) -> Option<String> {
    match v {
        Some(FieldValue::S(s)) => Some(s.to_string()),
        _ => None,
    }
}

async fn dead_letter(r: &Report, ch: &Channel) -> CheckResult {
    let (dlx, src) = (r.name("dlx"), r.name("dl-src"));
    e(
        "exchange.declare",
        ch.exchange_declare(
            ExchangeDeclareArguments::new(&dlx, "direct")
                .auto_delete(true)
                .finish(),
        )
        .await,
    )?;
    let dlq = temp_queue(ch).await?;
    bind(ch, &dlq, &dlx, "dead", FieldTable::new()).await?;
    let args = table(&[
        ("x-dead-letter-exchange", FieldValue::from(dlx.as_str())),
        ("x-dead-letter-routing-key", FieldValue::from("dead")),
    ])?;
    e(
        "queue.declare",
        ch.queue_declare(
            QueueDeclareArguments::new(&src)
                .exclusive(true)
                .arguments(args)
                .finish(),
        )
        .await,
    )?;
    publish(ch, "", &src, b"doomed", BasicProperties::default(), false).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ok, _, _) = get(ch, &src, false)
        .await?
        .ok_or("message not in source queue")?;
    e(
        "reject",
        ch.basic_reject(BasicRejectArguments::new(ok.delivery_tag(), false))
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
    let (_, props, _) = got.ok_or("nothing dead-lettered")?;
    let h = props.headers().ok_or("no headers")?.as_ref();
    let key = |k: &str| FieldName::try_from(k).map_err(|err| err.to_string());
    let deaths: Vec<FieldValue> = match h.get(&key("x-death")?) {
        Some(FieldValue::A(a)) => a.clone().into(),
        other => return Err(format!("x-death: {other:?}")),
    };
    eq("x-death entries", 1, deaths.len())?;
    let FieldValue::F(d) = &deaths[0] else {
        return Err(format!("x-death[0]: {:?}", deaths[0]));
    };
    let d = d.as_ref();
    eq(
        "x-death count",
        Some(&FieldValue::l(1)),
        d.get(&key("count")?),
    )?;
    eq(
        "x-death reason",
        Some("rejected".to_string()),
        text(d.get(&key("reason")?)),
    )?;
    eq(
        "x-death queue",
        Some(src.clone()),
        text(d.get(&key("queue")?)),
    )?;
    eq(
        "x-death exchange",
        Some(String::new()),
        text(d.get(&key("exchange")?)),
    )?;
    let keys: Option<Vec<String>> = match d.get(&key("routing-keys")?) {
        Some(FieldValue::A(a)) => Some(
            Vec::<FieldValue>::from(a.clone())
                .iter()
                .filter_map(|v| text(Some(v)))
                .collect(),
        ),
        _ => None,
    };
    eq("x-death routing-keys", Some(vec![src.clone()]), keys)?;
    expect(
        matches!(d.get(&key("time")?), Some(FieldValue::T(_))),
        "x-death has no timestamp",
    )?;
    eq(
        "x-first-death-queue",
        Some(src),
        text(h.get(&key("x-first-death-queue")?)),
    )
}

async fn rpc(r: &Report, conn: &Connection, ch: &Channel) -> CheckResult {
    let sch = e("channel", conn.open_channel(None).await)?;
    let rq = r.name("rpc");
    e(
        "queue.declare",
        sch.queue_declare(QueueDeclareArguments::new(&rq).auto_delete(true).finish())
            .await,
    )?;
    let (_, mut requests) = e(
        "consume",
        sch.basic_consume_rx(
            BasicConsumeArguments::new(&rq, "")
                .manual_ack(true)
                .finish(),
        )
        .await,
    )?;
    let server = tokio::spawn(async move {
        while let Some(m) = requests.recv().await {
            let (Some(d), Some(p), Some(body)) = (m.deliver, m.basic_properties, m.content) else {
                continue;
            };
            let (Some(reply_to), Some(cid)) = (p.reply_to(), p.correlation_id()) else {
                continue;
            };
            let mut out = b"re:".to_vec();
            out.extend_from_slice(&body);
            let props = BasicProperties::default().with_correlation_id(cid).finish();
            let _ = sch
                .basic_publish(props, out, BasicPublishArguments::new("", reply_to))
                .await;
            let _ = sch
                .basic_ack(BasicAckArguments::new(d.delivery_tag(), false))
                .await;
        }
    });
    let reply = temp_queue(ch).await?;
    let (_, mut replies) = e(
        "consume",
        ch.basic_consume_rx(
            BasicConsumeArguments::new(&reply, "")
                .manual_ack(false)
                .finish(),
        )
        .await,
    )?;
    for i in 0..3 {
        let props = BasicProperties::default()
            .with_reply_to(&reply)
            .with_correlation_id(&format!("c{i}"))
            .finish();
        publish(ch, "", &rq, i.to_string().as_bytes(), props, false).await?;
    }
    let mut got = BTreeMap::new();
    while got.len() < 3 {
        let m = within("reply", replies.recv())
            .await?
            .ok_or("reply consumer ended")?;
        let cid = m
            .basic_properties
            .as_ref()
            .and_then(|p| p.correlation_id().cloned())
            .unwrap_or_default();
        got.insert(
            cid,
            String::from_utf8_lossy(&m.content.unwrap_or_default()).to_string(),
        );
    }
    server.abort();
    let want: BTreeMap<String, String> = (0..3)
        .map(|i| (format!("c{i}"), format!("re:{i}")))
        .collect();
    eq("replies", want, got)
}

#[tokio::main]
async fn main() {
    let mut r = Report::new("amqprs");
    let port: u16 = port().parse().unwrap_or(5672);
    let conn = match Connection::open(&OpenConnectionArguments::new(
        &host(),
        port,
        "guest",
        "guest",
    ))
    .await
    {
        Ok(c) => c,
        Err(err) => {
            r.check("connect", async { Err(err.to_string()) }).await;
            r.finish();
        }
    };
    let _ = conn.register_callback(DefaultConnectionCallback).await;
    let ch = conn.open_channel(None).await;
    let caps = !conn.server_properties().product().is_empty();
    r.check("connect", async {
        e("channel", ch.as_ref().map(|_| ()))?;
        expect(caps, "no server product")
    })
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
    let _ = conn.close().await;
    r.finish();
}
