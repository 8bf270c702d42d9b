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

use amq_protocol::types::FieldTable;

use crate::{
    model::auth::{refused, Access, Resource},
    model::config::ServerConfig,
    model::handles::{ChannelShared, ConnHandle},
    model::timers::Timers,
    model::vhost::VHost,
    persist::{MetaOp, Persistence},
    util::error::AmqpResult,
};

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// RabbitMQ's `password_hash` (base64 of salt ++ SHA-256(salt ++ password)).
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
}

impl User {
    /// A user with `password` hashed the way RabbitMQ hashes it.
    pub fn with_password(name: &str, password: &str, tags: Vec<String>) -> Self {
        User {
            name: name.to_string(),
            password_hash: crate::model::auth::hash_password(password),
            hashing_algorithm: crate::model::auth::HASHING_ALGORITHM.to_string(),
            tags,
        }
    }
}

pub use crate::model::auth::Permission;

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
    permissions: RwLock<HashMap<(String, String), Arc<Permission>>>,
    /// Bumped on every user or permission change; connections re-read their permission then.
    permission_generation: AtomicU64,
    /// The open connections (the one registry), broker-wide counters, policies.
    pub admin: crate::model::registry::AdminState,
    pub reply_to: DashMap<String, ReplyTarget>,
    /// Queue TTL and `x-expires` deadlines; its task runs inside [`crate::serve`].
    pub timers: Arc<Timers>,
    /// Disk and memory alarms; sampled by a task inside [`crate::serve`].
    pub alarms: Arc<crate::model::alarm::Alarms>,
    /// Durable metadata log (attached by `crate::recovery::metadata::open`).
    pub persistence: Arc<Persistence>,
    next_id: AtomicU64,
}

impl Broker {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        Self::build(config, true)
    }

    /// A broker without the default user and vhost, for a boot that imports definitions:
    /// RabbitMQ 3.10 creates neither then (tests/fixtures/management/boot_definitions.json).
    pub fn new_blank(config: ServerConfig) -> Arc<Self> {
        Self::build(config, false)
    }

    fn build(config: ServerConfig, defaults: bool) -> Arc<Self> {
        let broker = Broker {
            vhosts: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            permissions: RwLock::new(HashMap::new()),
            permission_generation: AtomicU64::new(0),
            admin: crate::model::registry::AdminState::default(),
            reply_to: DashMap::new(),
            timers: Timers::new(),
            alarms: Arc::new(crate::model::alarm::Alarms::new(config.disk_free_limit)),
            persistence: Persistence::new(
                usize::try_from(config.memory_budget_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            ),
            next_id: AtomicU64::new(1),
            config,
        };
        broker
            .admin
            .policies
            .attach_persistence(broker.persistence.clone());
        if !defaults {
            return Arc::new(broker);
        }
        let vhost = broker.config.default_vhost.clone();
        let user = broker.config.default_user.clone();
        broker.add_vhost(&vhost);
        broker.put_user(User::with_password(
            &user,
            &broker.config.default_pass,
            vec!["administrator".into()],
        ));
        broker.set_permission(&user, &vhost, Permission::allow_all());
        Arc::new(broker)
    }

    /// A fresh id for a connection or a consumer.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        let mut created = false;
        let vhost = self
            .vhosts
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                created = true;
                Arc::new(VHost::new(
                    name,
                    self.timers.clone(),
                    self.persistence.clone(),
                ))
            })
            .clone();
        if created {
            self.persistence.record_logged(&[MetaOp::Vhost {
                name: name.to_string(),
            }]);
        }
        vhost
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    pub fn put_user(&self, user: User) {
        self.persistence.record_logged(&[MetaOp::User {
            name: user.name.clone(),
            password_hash: user.password_hash.clone(),
            hashing_algorithm: user.hashing_algorithm.clone(),
            tags: user.tags.clone(),
        }]);
        self.users.write().insert(user.name.clone(), user);
        self.permission_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn set_permission(&self, user: &str, vhost: &str, permission: Permission) {
        self.persistence.record_logged(&[MetaOp::Permission {
            user: user.to_string(),
            vhost: vhost.to_string(),
            configure: permission.configure.source.clone(),
            write: permission.write.source.clone(),
            read: permission.read.source.clone(),
        }]);
        self.permissions
            .write()
            .insert((user.to_string(), vhost.to_string()), Arc::new(permission));
        self.permission_generation.fetch_add(1, Ordering::AcqRel);
    }

    // ---- management (users, vhosts, permissions) --------------------------------

    pub fn permission_generation(&self) -> u64 {
        self.permission_generation.load(Ordering::Acquire)
    }

    pub fn permission(&self, user: &str, vhost: &str) -> Option<Arc<Permission>> {
        self.permissions
            .read()
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
    }

    /// Every (user, vhost, permission), sorted by vhost then user as RabbitMQ lists them.
    pub fn permissions(&self) -> Vec<(String, String, Arc<Permission>)> {
        let mut all: Vec<_> = self
            .permissions
            .read()
            .iter()
            .map(|((u, v), p)| (u.clone(), v.clone(), p.clone()))
            .collect();
        all.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        all
    }

    pub fn clear_permission(&self, user: &str, vhost: &str) -> bool {
        self.persistence.record_logged(&[MetaOp::ClearPermission {
            user: user.to_string(),
            vhost: vhost.to_string(),
        }]);
        let removed = self
            .permissions
            .write()
            .remove(&(user.to_string(), vhost.to_string()))
            .is_some();
        self.permission_generation.fetch_add(1, Ordering::AcqRel);
        removed
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }

    pub fn users(&self) -> Vec<User> {
        let mut all: Vec<User> = self.users.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Deletes a user and its permissions.
    pub fn delete_user(&self, name: &str) -> bool {
        self.persistence.record_logged(&[MetaOp::DeleteUser {
            name: name.to_string(),
        }]);
        let removed = self.users.write().remove(name).is_some();
        self.permissions.write().retain(|(u, _), _| u != name);
        self.permission_generation.fetch_add(1, Ordering::AcqRel);
        removed
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<Arc<VHost>> = self.vhosts.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Removes a vhost with everything in it, and the permissions for it.
    pub fn delete_vhost(&self, name: &str) -> Option<Arc<VHost>> {
        let removed = self.vhosts.write().remove(name)?;
        self.persistence.record_logged(&[MetaOp::DeleteVhost {
            name: name.to_string(),
        }]);
        // Its durable queues' messages go with it.
        for q in removed.topology.read().queues.values() {
            q.forget_stored();
        }
        self.permissions.write().retain(|(_, v), _| v != name);
        self.permission_generation.fetch_add(1, Ordering::AcqRel);
        Some(removed)
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
        if !crate::model::auth::verify_password(
            &found.password_hash,
            &found.hashing_algorithm,
            password,
        ) {
            return Err(AuthError::BadCredentials);
        }
        if self.config.loopback_users.iter().any(|u| u == user) && !peer.is_loopback() {
            return Err(AuthError::LoopbackOnly);
        }
        Ok(())
    }
}

/// Access checks (rules in auth.rs).
impl Broker {
    /// May `user` do `access` on `name` in `vhost`? Returns RabbitMQ's 403 otherwise.
    pub fn check_access(
        &self,
        user: &str,
        vhost: &str,
        access: Access,
        resource: Resource,
        name: &str,
    ) -> AmqpResult<()> {
        match self.permission(user, vhost) {
            Some(p) if p.allows(access, name) => Ok(()),
            _ => Err(refused(resource, name, vhost, user)),
        }
    }
}

/// Policies applied to queue arguments (rules in policy.rs).
impl Broker {
    /// A new queue's settings: its own arguments are validated (their errors are the
    /// client's), then merged with the policy that applies to it.
    pub fn queue_settings_with_policy(
        &self,
        vhost: &str,
        name: &str,
        arguments: &FieldTable,
    ) -> crate::util::error::AmqpResult<crate::model::args::QueueSettings> {
        let what = format!("queue '{name}' in vhost '{vhost}'");
        let own = crate::model::args::queue_settings(arguments, &what)?;
        let effective = self
            .admin
            .policies
            .effective_queue_args(vhost, name, arguments);
        Ok(crate::model::args::queue_settings(&effective, &what).unwrap_or(own))
    }

    /// The arguments a queue's features should obey: its own `x-` arguments merged with its
    /// effective policy (see [`PolicyStore::effective_queue_args`]). Policies can change at
    /// any time, so callers read this when they need the values, not once at declaration.
    pub fn effective_queue_args(&self, queue: &crate::model::queue::Queue) -> FieldTable {
        self.admin
            .policies
            .effective_queue_args(&queue.vhost, &queue.name, &queue.arguments)
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
