//! `message_stats` and queue depth totals shared by the overview, vhost, exchange and
//! queue answers.

use serde_json::{json, Map, Value};
use warren_server::{
    stats::{Stat, StatsSnapshot, STAT_COUNT},
    vhost::VHost,
};

use crate::convert::rate;

/// `message_stats` with `*_details.rate` for the given counters.
pub(super) fn message_stats(snap: &StatsSnapshot, keys: &[Stat], deliver_get: bool) -> Value {
    let mut m = Map::new();
    for s in keys {
        let name = warren_server::stats::STAT_NAMES[*s as usize];
        m.insert(name.to_string(), json!(snap.count(*s)));
        m.insert(format!("{name}_details"), rate(snap.rate(*s)));
    }
    if deliver_get {
        let (n, r) = snap.deliver_get();
        m.insert("deliver_get".into(), json!(n));
        m.insert("deliver_get_details".into(), rate(r));
    }
    Value::Object(m)
}

pub(super) const QUEUE_STATS: &[Stat] = &[
    Stat::Ack,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetEmpty,
    Stat::GetNoAck,
    Stat::Publish,
    Stat::Redeliver,
];

pub(super) const CHANNEL_STATS: &[Stat] = &[
    Stat::Ack,
    Stat::Confirm,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::DropUnroutable,
    Stat::Get,
    Stat::GetEmpty,
    Stat::GetNoAck,
    Stat::Publish,
    Stat::Redeliver,
    Stat::ReturnUnroutable,
];

pub(super) fn add_snap(total: &mut StatsSnapshot, s: &StatsSnapshot) {
    for i in 0..STAT_COUNT {
        total.counts[i] += s.counts[i];
        total.rates[i] += s.rates[i];
    }
}

/// Queue depth totals of a vhost with their rates of change.
#[derive(Default, Clone, Copy)]
pub(super) struct Depth {
    ready: u64,
    unacked: u64,
    ready_rate: f64,
    unacked_rate: f64,
}

impl Depth {
    pub(super) fn add(&mut self, o: &Depth) {
        self.ready += o.ready;
        self.unacked += o.unacked;
        self.ready_rate += o.ready_rate;
        self.unacked_rate += o.unacked_rate;
    }

    /// `messages`, `messages_ready`, `messages_unacknowledged` with their `_details`.
    pub(super) fn fields(&self, m: &mut Map<String, Value>) {
        for (k, n, r) in [
            (
                "messages",
                self.ready + self.unacked,
                self.ready_rate + self.unacked_rate,
            ),
            ("messages_ready", self.ready, self.ready_rate),
            ("messages_unacknowledged", self.unacked, self.unacked_rate),
        ] {
            m.insert(k.into(), json!(n));
            m.insert(format!("{k}_details"), rate(r));
        }
    }
}

/// Per-vhost totals: delivery-side counters summed over queues, publish-side from the
/// vhost's own counters.
pub(super) fn vhost_totals(vh: &VHost) -> (StatsSnapshot, Depth) {
    let mut snap = StatsSnapshot::default();
    let mut depth = Depth::default();
    for q in vh.queues() {
        add_snap(&mut snap, &q.stats.snapshot());
        let view = q.view();
        let (ready, unacked) = (view.ready, view.unacked);
        let (ready_rate, unacked_rate) = q.stats.depth_rates(ready, unacked);
        depth.add(&Depth {
            ready,
            unacked,
            ready_rate,
            unacked_rate,
        });
    }
    // Publish-side counters come from the channels (a publish counts once, however many
    // queues it reached).
    let own = vh.stats.snapshot();
    for s in [
        Stat::Publish,
        Stat::Confirm,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
    ] {
        snap.counts[s as usize] = own.count(s);
        snap.rates[s as usize] = own.rate(s);
    }
    (snap, depth)
}
