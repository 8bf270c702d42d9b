//! The broker model shared by every connection: vhosts, users and permissions, live
//! connections and direct reply-to consumers.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use dashmap::DashMap;
use parking_lot::RwLock;

use crate::{
    config::ServerConfig,
    persist::Persistence,
    queue::{ChannelShared, ConnHandle},
    timers::Timers,
    vhost::VHost,
};

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub tags: Vec<String>,
}

/// configure / write / read patterns of a user in a vhost (enforced by a later step;
/// here their presence grants access to the vhost).
#[derive(Debug, Clone)]
pub struct Permission {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// A consumer of `amq.rabbitmq.reply-to`, reachable by its token.
#[derive(Debug, Clone)]
pub struct ReplyTarget {
    pub conn: Arc<ConnHandle>,
    pub channel: u16,
    pub consumer_tag: Arc<str>,
    pub shared: Arc<ChannelShared>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong password.
    BadCredentials,
    /// A loopback-only user connecting from elsewhere.
    LoopbackOnly,
}

pub struct Broker {
    pub config: ServerConfig,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    users: RwLock<HashMap<String, User>>,
    permissions: RwLock<HashMap<(String, String), Permission>>,
    pub connections: DashMap<u64, Arc<ConnHandle>>,
    pub reply_to: DashMap<String, ReplyTarget>,
    /// Queue TTL and `x-expires` deadlines; its task runs inside [`crate::serve`].
    pub timers: Arc<Timers>,
    /// Durable metadata log (attached by [`crate::persist::open`]).
    pub persistence: Arc<Persistence>,
    next_id: AtomicU64,
}

impl Broker {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        let broker = Broker {
            vhosts: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            permissions: RwLock::new(HashMap::new()),
            connections: DashMap::new(),
            reply_to: DashMap::new(),
            timers: Timers::new(),
            persistence: Persistence::new(
                usize::try_from(config.memory_budget_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            ),
            next_id: AtomicU64::new(1),
            config,
        };
        let vhost = broker.config.default_vhost.clone();
        let user = broker.config.default_user.clone();
        broker.add_vhost(&vhost);
        broker.put_user(User {
            name: user.clone(),
            password: broker.config.default_pass.clone(),
            tags: vec!["administrator".into()],
        });
        broker.set_permission(
            &user,
            &vhost,
            Permission {
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            },
        );
        Arc::new(broker)
    }

    /// A fresh id for a connection or a consumer.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        self.vhosts
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(VHost::new(
                    name,
                    self.timers.clone(),
                    self.persistence.clone(),
                ))
            })
            .clone()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Every vhost, sorted by name.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<_> = self.vhosts.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn remove_vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.write().remove(name)
    }

    pub fn put_user(&self, user: User) {
        self.users.write().insert(user.name.clone(), user);
    }

    pub fn set_permission(&self, user: &str, vhost: &str, permission: Permission) {
        self.permissions
            .write()
            .insert((user.to_string(), vhost.to_string()), permission);
    }

    pub fn has_vhost_access(&self, user: &str, vhost: &str) -> bool {
        self.permissions
            .read()
            .contains_key(&(user.to_string(), vhost.to_string()))
    }

    /// Checks a username and password from `peer`, RabbitMQ-style.
    pub fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<(), AuthError> {
        let users = self.users.read();
        let Some(found) = users.get(user) else {
            return Err(AuthError::BadCredentials);
        };
        if found.password != password {
            return Err(AuthError::BadCredentials);
        }
        if self.config.loopback_users.iter().any(|u| u == user) && !peer.is_loopback() {
            return Err(AuthError::LoopbackOnly);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_user_is_loopback_only() {
        let b = Broker::new(ServerConfig::default());
        let lo: IpAddr = [127, 0, 0, 1].into();
        let remote: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(b.authenticate("guest", "guest", lo), Ok(()));
        assert_eq!(
            b.authenticate("guest", "guest", remote),
            Err(AuthError::LoopbackOnly)
        );
        assert_eq!(
            b.authenticate("guest", "nope", lo),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            b.authenticate("nobody", "guest", lo),
            Err(AuthError::BadCredentials)
        );
        assert!(b.vhost("/").is_some());
        assert!(b.has_vhost_access("guest", "/"));
        assert!(!b.has_vhost_access("guest", "other"));
    }
}
