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
use parking_lot::{Mutex, RwLock};

use amq_protocol::types::FieldTable;

use crate::{
    model::auth::{refused, Access, Resource, TopicPermission, TopicPermissions},
    model::config::ServerConfig,
    model::handles::{ChannelShared, ConnHandle},
    model::timers::Timers,
    model::vhost::VHost,
    persist::{MetaOp, Persistence},
    util::error::AmqpResult,
};

/// The record of `user` as it is now.
fn user_op(user: &User) -> MetaOp {
    MetaOp::User {
        name: user.name.clone(),
        password_hash: user.password_hash.clone(),
        hashing_algorithm: user.hashing_algorithm.clone(),
        tags: user.tags.clone(),
    }
}

/// The record of `user`'s permission in `vhost`.
fn permission_op(user: &str, vhost: &str, permission: &Permission) -> MetaOp {
    MetaOp::Permission {
        user: user.to_string(),
        vhost: vhost.to_string(),
        configure: permission.configure.source.clone(),
        write: permission.write.source.clone(),
        read: permission.read.source.clone(),
    }
}

/// The record of `user`'s topic permission in `vhost`.
fn topic_permission_op(user: &str, vhost: &str, tp: &TopicPermission) -> MetaOp {
    MetaOp::TopicPermission {
        user: user.to_string(),
        vhost: vhost.to_string(),
        exchange: tp.exchange.clone(),
        write: tp.write.source.clone(),
        read: tp.read.source.clone(),
    }
}

/// The records that restore `user`'s topic permissions in `vhost` to `set`.
fn topic_permission_ops(user: &str, vhost: &str, set: &TopicPermissions) -> Vec<MetaOp> {
    set.values()
        .map(|tp| topic_permission_op(user, vhost, tp))
        .collect()
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// RabbitMQ's `password_hash` (base64 of salt ++ SHA-256(salt ++ password)).
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
}

impl User {
    /// A user with `password` hashed the way RabbitMQ hashes it (SHA-256, random salt).
    pub fn with_password(
        name: &str,
        password: &str,
        tags: Vec<String>,
    ) -> Result<Self, crate::model::auth::SaltError> {
        Ok(User {
            name: name.to_string(),
            password_hash: crate::model::auth::hash_password(password)?,
            hashing_algorithm: crate::model::auth::HASHING_ALGORITHM.to_string(),
            tags,
        })
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
    /// Topic permissions by (user, vhost); a set is replaced whole, never edited in place,
    /// so connections can keep the `Arc` they cached.
    topic_permissions: RwLock<HashMap<(String, String), Arc<TopicPermissions>>>,
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
    /// Serializes changes to vhosts, users and permissions: each is checked, recorded and
    /// applied while this is held, so the log lists them in the order memory took them.
    /// It is held across the log write; the maps' own locks are not, so readers
    /// (authentication, access checks) never wait for the disk.
    pub(crate) meta_writes: Mutex<()>,
    /// Vhost and user limits (`model::limits`); changed under `meta_writes`.
    pub(crate) limits: RwLock<crate::model::limits::LimitTables>,
    /// Global parameters and operator policies (`model::params`); changed under
    /// `meta_writes`.
    pub(crate) params: RwLock<crate::model::params::ParamTables>,
    /// Held from a connection's or channel's limit check until it is registered.
    pub(crate) limits_gate: Mutex<()>,
    next_id: AtomicU64,
    /// The optional plugins enabled now (`model::plugins`).
    pub(crate) plugins: RwLock<Vec<String>>,
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
            topic_permissions: RwLock::new(HashMap::new()),
            permission_generation: AtomicU64::new(0),
            admin: crate::model::registry::AdminState::default(),
            reply_to: DashMap::new(),
            timers: Timers::with_clock(if config.test_clock {
                crate::util::clock::Clock::test()
            } else {
                crate::util::clock::Clock::real()
            }),
            alarms: Arc::new(crate::model::alarm::Alarms::new(config.disk_free_limit)),
            persistence: Persistence::new(
                usize::try_from(config.memory_budget_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            ),
            meta_writes: Mutex::new(()),
            limits: RwLock::new(Default::default()),
            params: RwLock::new(Default::default()),
            limits_gate: Mutex::new(()),
            next_id: AtomicU64::new(1),
            plugins: RwLock::new(config.plugins.clone()),
            config,
        };
        broker
            .admin
            .policies
            .attach_persistence(broker.persistence.clone());
        if defaults {
            broker.create_defaults();
        }
        Arc::new(broker)
    }

    /// The default vhost, user and the user's permission there, in memory only: a broker
    /// being built has no log attached, so there is nothing to record. They reach the
    /// log with the snapshot `crate::recovery::metadata::open` writes.
    fn create_defaults(&self) {
        let vhost = self.config.default_vhost.clone();
        self.vhosts.write().insert(
            vhost.clone(),
            VHost::new(
                &vhost,
                self.timers.clone(),
                self.persistence.clone(),
                self.admin.events.clone(),
            ),
        );
        // Without a random source there is no salt: the user is left out rather than
        // given a guessable hash; one can be added through the API or warren ctl.
        let user = match User::with_password(
            &self.config.default_user,
            &self.config.default_pass,
            self.config.default_user_tags.clone(),
        ) {
            Ok(user) => user,
            Err(e) => {
                tracing::error!(user = %self.config.default_user, error = %e, "default user not created");
                return;
            }
        };
        let [configure, write, read] = &self.config.default_permissions;
        let permission = if [configure, write, read].iter().all(|p| *p == ".*") {
            Permission::allow_all()
        } else {
            match Permission::new(configure, write, read) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(user = %user.name, error = %e, "default permissions not granted");
                    self.users.write().insert(user.name.clone(), user);
                    return;
                }
            }
        };
        self.permissions
            .write()
            .insert((user.name.clone(), vhost), Arc::new(permission));
        self.users.write().insert(user.name.clone(), user);
    }

    /// Forgets the defaults [`Broker::new`] created, before a data directory's recorded
    /// metadata is replayed: what it recorded is the whole truth (its snapshot holds the
    /// defaults when they exist). Memory only: no log is attached yet.
    pub(crate) fn drop_defaults(&self) {
        let (user, vhost) = (&self.config.default_user, &self.config.default_vhost);
        self.permissions
            .write()
            .remove(&(user.clone(), vhost.clone()));
        self.users.write().remove(user);
        self.vhosts.write().remove(vhost);
        self.permissions_changed();
    }

    /// Users or permissions changed: connections re-read their permissions.
    fn permissions_changed(&self) {
        self.permission_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A fresh id for a connection or a consumer.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The vhost `name`, created if it does not exist. A new vhost is recorded before it
    /// exists; when the record fails there is no such vhost and the error (541) is
    /// returned.
    pub fn add_vhost(&self, name: &str) -> AmqpResult<Arc<VHost>> {
        self.vhost_or_create(name).map(|(vhost, _)| vhost)
    }

    /// [`Broker::add_vhost`], saying whether the vhost was created.
    pub fn create_vhost(&self, name: &str) -> AmqpResult<bool> {
        self.vhost_or_create(name).map(|(_, created)| created)
    }

    fn vhost_or_create(&self, name: &str) -> AmqpResult<(Arc<VHost>, bool)> {
        if let Some(vhost) = self.vhost(name) {
            return Ok((vhost, false));
        }
        let _serial = self.meta_writes.lock();
        // Another change may have created it while this one waited.
        if let Some(vhost) = self.vhost(name) {
            return Ok((vhost, false));
        }
        self.persistence.record_or_undo(
            &[MetaOp::Vhost {
                name: name.to_string(),
            }],
            &[MetaOp::DeleteVhost {
                name: name.to_string(),
            }],
        )?;
        let vhost = VHost::new(
            name,
            self.timers.clone(),
            self.persistence.clone(),
            self.admin.events.clone(),
        );
        self.vhosts.write().insert(name.to_string(), vhost.clone());
        self.vhost_created_events(&vhost);
        Ok((vhost, true))
    }

    /// What RabbitMQ 3.10.8 emits for a new vhost: its default exchanges created, then
    /// `vhost.created`.
    fn vhost_created_events(&self, vhost: &VHost) {
        let events = &self.admin.events;
        if !events.enabled() {
            return;
        }
        let default = crate::model::vhost::ExchangeMeta {
            kind: warren_router::ExchangeKind::Direct,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
        };
        crate::model::ops::exchanges::exchange_created_event(vhost, "", &default);
        // RabbitMQ's order (rabbit_vhost:add), then any others.
        const ORDER: [&str; 6] = [
            "amq.direct",
            "amq.topic",
            "amq.match",
            "amq.headers",
            "amq.fanout",
            "amq.rabbitmq.trace",
        ];
        let mut names: Vec<String> = vhost
            .topology
            .read()
            .exchanges
            .keys()
            .map(|x| x.to_string())
            .collect();
        names.sort_by_key(|n| {
            (
                ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
                n.clone(),
            )
        });
        for x in names {
            if let Some(meta) = vhost.exchange_meta(&x) {
                crate::model::ops::exchanges::exchange_created_event(vhost, &x, &meta);
            }
        }
        let node = crate::model::events::node_name();
        events.emit("vhost.created", |h| {
            h.str("tags", "")
                .str("description", "")
                .str("user_who_performed_action", crate::model::events::actor())
                .value(
                    "cluster_state",
                    warren_codec::Value::Table(warren_codec::Table(vec![(
                        bytes::Bytes::from(node.clone().into_bytes()),
                        warren_codec::Value::long_str("running"),
                    )])),
                )
                .bool("tracing", false)
                .str("metadata", "#{description => <<>>,tags => <<>>}")
                .str("default_queue_type", "undefined")
                .str("name", &*vhost.name);
        });
    }

    /// `user.created`, `user.password.changed` / `.cleared`, `user.tags.set`.
    fn user_events(&self, previous: Option<&User>, user: &User) {
        let events = &self.admin.events;
        if !events.enabled() {
            return;
        }
        let who = crate::model::events::actor();
        let plain = |key: &'static str| {
            events.emit(key, |h| {
                h.str("user_who_performed_action", &who)
                    .str("name", &user.name);
            });
        };
        let Some(previous) = previous else {
            plain("user.created");
            return;
        };
        if previous.password_hash != user.password_hash {
            plain(if user.password_hash.is_empty() {
                "user.password.cleared"
            } else {
                "user.password.changed"
            });
        }
        if previous.tags != user.tags {
            events.emit("user.tags.set", |h| {
                h.str("user_who_performed_action", &who)
                    .strs("tags", &user.tags)
                    .str("name", &user.name);
            });
        }
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Adds or replaces a user; true when it is new. The change is recorded first: when
    /// the record fails the user stays as it was and the error (541) is returned.
    pub fn put_user(&self, user: User) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let previous = self.user(&user.name);
        let undo = match &previous {
            Some(p) => user_op(p),
            None => MetaOp::DeleteUser {
                name: user.name.clone(),
            },
        };
        self.persistence
            .record_or_undo(&[user_op(&user)], &[undo])?;
        self.user_events(previous.as_ref(), &user);
        self.users.write().insert(user.name.clone(), user);
        self.permissions_changed();
        Ok(previous.is_none())
    }

    /// Sets `user`'s permission in `vhost`; true when it had none. Recorded first: when
    /// the record fails the permission stays as it was and the error (541) is returned.
    pub fn set_permission(
        &self,
        user: &str,
        vhost: &str,
        permission: Permission,
    ) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let previous = self.permission(user, vhost);
        let undo = match &previous {
            Some(p) => permission_op(user, vhost, p),
            None => MetaOp::ClearPermission {
                user: user.to_string(),
                vhost: vhost.to_string(),
            },
        };
        self.persistence
            .record_or_undo(&[permission_op(user, vhost, &permission)], &[undo])?;
        self.admin.events.emit("permission.created", |h| {
            h.str("user_who_performed_action", crate::model::events::actor())
                .str("read", &permission.read.source)
                .str("write", &permission.write.source)
                .str("configure", &permission.configure.source)
                .str("vhost", vhost)
                .str("user", user);
        });
        self.permissions
            .write()
            .insert((user.to_string(), vhost.to_string()), Arc::new(permission));
        self.permissions_changed();
        Ok(previous.is_none())
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

    /// Removes `user`'s permission in `vhost`; false when there was none (nothing is
    /// recorded then). Recorded first: when the record fails the permission stays and
    /// the error (541) is returned.
    pub fn clear_permission(&self, user: &str, vhost: &str) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let Some(previous) = self.permission(user, vhost) else {
            return Ok(false);
        };
        self.persistence.record_or_undo(
            &[MetaOp::ClearPermission {
                user: user.to_string(),
                vhost: vhost.to_string(),
            }],
            &[permission_op(user, vhost, &previous)],
        )?;
        self.permissions
            .write()
            .remove(&(user.to_string(), vhost.to_string()));
        self.permissions_changed();
        self.admin.events.emit("permission.deleted", |h| {
            h.str("user_who_performed_action", crate::model::events::actor())
                .str("vhost", vhost)
                .str("user", user);
        });
        Ok(true)
    }

    /// `user`'s topic permissions in `vhost`, if it has any.
    pub fn topic_permissions_of(&self, user: &str, vhost: &str) -> Option<Arc<TopicPermissions>> {
        self.topic_permissions
            .read()
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
    }

    /// Every (user, vhost, topic permission), sorted by vhost, user, then exchange.
    pub fn topic_permissions(&self) -> Vec<(String, String, TopicPermission)> {
        let mut all: Vec<_> = self
            .topic_permissions
            .read()
            .iter()
            .flat_map(|((u, v), set)| {
                set.values()
                    .map(|tp| (u.clone(), v.clone(), tp.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| (&a.1, &a.0, &a.2.exchange).cmp(&(&b.1, &b.0, &b.2.exchange)));
        all
    }

    /// Sets `user`'s topic permission in `vhost` for its exchange; true when it had none
    /// for that exchange. Recorded first: when the record fails nothing changes and the
    /// error (541) is returned.
    pub fn set_topic_permission(
        &self,
        user: &str,
        vhost: &str,
        permission: TopicPermission,
    ) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let mut set = self
            .topic_permissions_of(user, vhost)
            .map(|s| (*s).clone())
            .unwrap_or_default();
        let undo = match set.get(&permission.exchange) {
            Some(p) => topic_permission_op(user, vhost, p),
            None => MetaOp::ClearTopicPermission {
                user: user.to_string(),
                vhost: vhost.to_string(),
                exchange: Some(permission.exchange.clone()),
            },
        };
        self.persistence
            .record_or_undo(&[topic_permission_op(user, vhost, &permission)], &[undo])?;
        self.admin.events.emit("topic.permission.created", |h| {
            h.str("user_who_performed_action", crate::model::events::actor())
                .str("read", &permission.read.source)
                .str("write", &permission.write.source)
                .str("exchange", &permission.exchange)
                .str("vhost", vhost)
                .str("user", user);
        });
        let is_new = set
            .insert(permission.exchange.clone(), permission)
            .is_none();
        self.topic_permissions
            .write()
            .insert((user.to_string(), vhost.to_string()), Arc::new(set));
        self.permissions_changed();
        Ok(is_new)
    }

    /// Clears `user`'s topic permission in `vhost` for `exchange`, or all of them with
    /// `None`; false when there was none (nothing is recorded then). Recorded first.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let Some(previous) = self.topic_permissions_of(user, vhost) else {
            return Ok(false);
        };
        let mut kept = (*previous).clone();
        match exchange {
            Some(x) => kept.retain(|name, _| name != x),
            None => kept.clear(),
        }
        if kept.len() == previous.len() {
            return Ok(false);
        }
        self.persistence.record_or_undo(
            &[MetaOp::ClearTopicPermission {
                user: user.to_string(),
                vhost: vhost.to_string(),
                exchange: exchange.map(str::to_string),
            }],
            &topic_permission_ops(user, vhost, &previous),
        )?;
        let key = (user.to_string(), vhost.to_string());
        if kept.is_empty() {
            self.topic_permissions.write().remove(&key);
        } else {
            self.topic_permissions.write().insert(key, Arc::new(kept));
        }
        self.permissions_changed();
        self.admin.events.emit("topic.permission.deleted", |h| {
            h.str("user_who_performed_action", crate::model::events::actor())
                .str("vhost", vhost)
                .str("user", user);
        });
        Ok(true)
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }

    pub fn users(&self) -> Vec<User> {
        let mut all: Vec<User> = self.users.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Deletes a user and its permissions; false when there was no such user. Recorded
    /// first: when the record fails the user and its permissions stay and the error
    /// (541) is returned.
    pub fn delete_user(&self, name: &str) -> AmqpResult<bool> {
        let _serial = self.meta_writes.lock();
        let user = self.user(name);
        let mut undo: Vec<MetaOp> = user.iter().map(user_op).collect();
        undo.extend(
            self.permissions()
                .iter()
                .filter(|(u, _, _)| u == name)
                .map(|(u, v, p)| permission_op(u, v, p)),
        );
        for ((u, v), set) in self.topic_permissions.read().iter() {
            if u == name {
                undo.extend(topic_permission_ops(u, v, set));
            }
        }
        if let Some(limits) = self.limits.read().users.get(name) {
            undo.push(crate::model::limits::user_limits_op(name, limits));
        }
        if undo.is_empty() {
            return Ok(false);
        }
        self.persistence.record_or_undo(
            &[MetaOp::DeleteUser {
                name: name.to_string(),
            }],
            &undo,
        )?;
        self.users.write().remove(name);
        self.permissions.write().retain(|(u, _), _| u != name);
        self.topic_permissions.write().retain(|(u, _), _| u != name);
        self.limits.write().users.remove(name);
        self.permissions_changed();
        if user.is_some() {
            self.admin.events.emit("user.deleted", |h| {
                h.str("user_who_performed_action", crate::model::events::actor())
                    .str("name", name);
            });
        }
        Ok(user.is_some())
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<Arc<VHost>> = self.vhosts.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Removes a vhost with everything in it, the permissions for it and its policies;
    /// `None` when there is no such vhost. Recorded first: when the record fails the
    /// vhost stays, whole, and the error (541) is returned.
    ///
    /// Unlike the other changes this one records no undo: should the failed line have
    /// reached the file before its sync failed, the vhost is gone after a restart, since
    /// restoring it would mean recording its whole topology again.
    pub fn delete_vhost(&self, name: &str) -> AmqpResult<Option<Arc<VHost>>> {
        let _serial = self.meta_writes.lock();
        if self.vhost(name).is_none() {
            return Ok(None);
        }
        self.persistence.record_or_undo(
            &[MetaOp::DeleteVhost {
                name: name.to_string(),
            }],
            &[],
        )?;
        let Some(removed) = self.vhosts.write().remove(name) else {
            return Ok(None);
        };
        if self.admin.events.enabled() {
            let exchanges: Vec<String> = removed
                .topology
                .read()
                .exchanges
                .keys()
                .map(|x| x.to_string())
                .collect();
            for x in std::iter::once(String::new()).chain(exchanges) {
                crate::model::ops::bindings::exchange_deleted_events(&removed, &x);
            }
            let who = crate::model::events::actor();
            self.admin.events.emit("vhost.deleted", |h| {
                h.str("user_who_performed_action", &who).str("name", name);
            });
            self.admin.events.emit("vhost.down", |h| {
                h.str("user_who_performed_action", "rmq-internal")
                    .str("node", crate::model::events::node_name())
                    .str("name", name);
            });
        }
        // Its durable queues' messages go with it.
        for q in removed.topology.read().queues.values() {
            q.forget_stored();
        }
        self.permissions.write().retain(|(_, v), _| v != name);
        self.topic_permissions.write().retain(|(_, v), _| v != name);
        self.limits.write().vhosts.remove(name);
        // Its policies too, here rather than in the management operation, so a replayed
        // deletion drops them as well.
        self.admin.policies.remove_vhost(name);
        self.params
            .write()
            .operator_policies
            .retain(|(v, _), _| v != name);
        self.permissions_changed();
        Ok(Some(removed))
    }

    pub fn has_vhost_access(&self, user: &str, vhost: &str) -> bool {
        self.permissions
            .read()
            .contains_key(&(user.to_string(), vhost.to_string()))
    }

    /// Checks a username and password from `peer`, RabbitMQ-style.
    /// EXTERNAL (certificate) login: the user must exist; no password is checked, the
    /// loopback rule still applies (as RabbitMQ's internal backend does it).
    pub fn authenticate_external(&self, user: &str, peer: IpAddr) -> Result<(), AuthError> {
        if !self.users.read().contains_key(user) {
            return Err(AuthError::BadCredentials);
        }
        if self.config.loopback_users.iter().any(|u| u == user) && !peer.is_loopback() {
            return Err(AuthError::LoopbackOnly);
        }
        Ok(())
    }

    pub fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<(), AuthError> {
        let users = self.users.read();
        let Some(found) = users.get(user) else {
            return Err(AuthError::BadCredentials);
        };
        if crate::model::auth::HashingAlgorithm::from_name(&found.hashing_algorithm).is_none() {
            tracing::warn!(
                user,
                hashing_algorithm = %found.hashing_algorithm,
                "login refused: the user's password hashing algorithm is unknown"
            );
            return Err(AuthError::BadCredentials);
        }
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

    /// A 541 INTERNAL_ERROR that keeps the I/O error as its cause.
    fn failed<T>(r: AmqpResult<T>) -> bool {
        matches!(r, Err(e) if e.code == crate::util::error::ReplyCode::InternalError && e.cause.is_some())
    }

    #[test]
    fn a_change_whose_record_fails_changes_nothing() {
        let b = Broker::new(ServerConfig::default());
        let dir = std::env::temp_dir().join(format!(
            "warren-broker-failing-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        let log = crate::persist::MetaLog::failing(&dir).expect("log");
        assert!(b.persistence.attach_log(log).is_ok());
        let lo: IpAddr = [127, 0, 0, 1].into();
        let generation = b.permission_generation();

        // Users.
        assert!(failed(
            b.put_user(User::with_password("new", "pw", vec![]).unwrap())
        ));
        assert!(b.user("new").is_none(), "not added");
        assert!(failed(b.put_user(
            User::with_password("guest", "other", vec![]).unwrap()
        )));
        assert_eq!(b.authenticate("guest", "guest", lo), Ok(()), "not replaced");
        assert!(failed(b.delete_user("guest")));
        assert!(b.user("guest").is_some(), "not deleted");
        assert!(b.has_vhost_access("guest", "/"), "nor its permissions");
        assert_eq!(b.delete_user("nobody"), Ok(false), "nothing to record");

        // Permissions.
        let narrow = Permission::new("^x", "^x", "^x").expect("patterns");
        assert!(failed(b.set_permission("guest", "/", narrow.clone())));
        let kept = b.permission("guest", "/").expect("still there");
        assert_eq!(kept.configure.source, ".*", "not replaced");
        b.vhosts.write().insert(
            "other".into(),
            VHost::new(
                "other",
                b.timers.clone(),
                b.persistence.clone(),
                b.admin.events.clone(),
            ),
        );
        assert!(failed(b.set_permission("guest", "other", narrow)));
        assert!(!b.has_vhost_access("guest", "other"), "not added");
        assert!(failed(b.clear_permission("guest", "/")));
        assert!(b.has_vhost_access("guest", "/"), "not cleared");
        assert_eq!(b.clear_permission("guest", "other"), Ok(false));

        // Vhosts.
        assert!(failed(b.add_vhost("v")));
        assert!(failed(b.create_vhost("v")));
        assert!(b.vhost("v").is_none(), "not added");
        assert_eq!(b.create_vhost("/"), Ok(false), "exists: nothing to record");
        assert!(failed(b.delete_vhost("/")));
        assert!(b.vhost("/").is_some(), "not deleted");
        assert!(b.has_vhost_access("guest", "/"), "nor its permissions");
        assert!(matches!(b.delete_vhost("nope"), Ok(None)));

        assert_eq!(b.permission_generation(), generation);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
