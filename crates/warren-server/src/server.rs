//! The accept loop and graceful shutdown.

use std::sync::Arc;

use tokio::{net::TcpListener, sync::watch};
use tracing::{info, warn};

use crate::{model::broker::Broker, session::connection};

/// Tells every task to stop. Dropping or signalling it starts a graceful shutdown.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Shutdown { tx: Arc::new(tx) }
    }
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// An AMQP listening socket: plaintext, or TLS with its (reloadable) configuration.
pub struct AmqpListener {
    pub listener: TcpListener,
    pub tls: Option<Arc<warren_tls::TlsServer>>,
}

/// Accepts AMQP connections until `shutdown` fires, then closes every client connection
/// with 320 CONNECTION_FORCED and waits (briefly) for them to finish.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: Shutdown) {
    serve_listeners(
        vec![AmqpListener {
            listener,
            tls: None,
        }],
        broker,
        shutdown,
    )
    .await
}

/// [`serve`] over several listeners (RabbitMQ's `listeners.tcp.*` and
/// `listeners.ssl.*`), all sharing one broker and one shutdown.
pub async fn serve_listeners(
    listeners: Vec<AmqpListener>,
    broker: Arc<Broker>,
    shutdown: Shutdown,
) {
    let mut stop = shutdown.subscribe();
    let mut tasks = tokio::task::JoinSet::new();
    let timers = tokio::spawn(broker.timers.clone().run());
    let alarms = tokio::spawn(crate::model::alarm::monitor(broker.clone()));
    // The enabled plugins take effect now that recovery is done (the event exchange).
    broker.apply_plugins();
    let events = broker
        .admin
        .events
        .take_receiver()
        .map(|rx| tokio::spawn(crate::model::events::run(broker.clone(), rx)));
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = tokio::task::JoinSet::new();
    for l in listeners {
        acceptors.spawn(accept_loop(l, accepted_tx.clone()));
    }
    // Kept open: with no listener at all the loop waits for the shutdown signal.
    let _keep_open = accepted_tx;
    loop {
        tokio::select! {
            accepted = accepted_rx.recv() => match accepted {
                Some((stream, peer, tls)) => match tls {
                    None => { tasks.spawn(connection::run(stream, peer, broker.clone())); }
                    Some(tls) => { tasks.spawn(connection::run_tls(stream, peer, broker.clone(), tls)); }
                },
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    acceptors.abort_all();
    info!(
        connections = broker.admin.connections.len(),
        "closing client connections"
    );
    for conn in broker.admin.connections.iter() {
        let _ = conn
            .handle
            .inbox
            .send(crate::model::handles::ConnEvent::ForceClose {
                code: 320,
                text: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
                    .into(),
            });
    }
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut deadline => { tasks.abort_all(); break }
        }
    }
    timers.abort();
    alarms.abort();
    if let Some(events) = events {
        events.abort();
    }
}

type Accepted = (
    tokio::net::TcpStream,
    std::net::SocketAddr,
    Option<Arc<warren_tls::TlsServer>>,
);

/// Accepts on one listener and hands each socket (with the listener's TLS settings) to
/// the serving loop.
async fn accept_loop(l: AmqpListener, out: tokio::sync::mpsc::Sender<Accepted>) {
    loop {
        match l.listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                // RabbitMQ's default tcp_listen_options include {linger, {true, 0}}: a
                // connection the broker closes (or loses when it dies) is reset, so a
                // client's next write fails at once instead of vanishing.
                let _ = stream.set_zero_linger();
                if out.send((stream, peer, l.tls.clone())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
