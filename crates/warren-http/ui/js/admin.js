// warren management UI: the Admin tab (users, permissions, virtual hosts, policies, limits).
// administrator sees all of it; policymaker sees policies only, as in RabbitMQ.
'use strict';

const ADMIN_TABS = [
  { id: 'users', label: 'Users', show: isAdmin },
  { id: 'vhosts', label: 'Virtual hosts', show: isAdmin },
  { id: 'policies', label: 'Policies', show: isPolicymaker },
  { id: 'limits', label: 'Limits', show: isAdmin },
];

function adminNav(active) {
  return h('nav', { class: 'subnav', 'aria-label': 'Admin' }, h('ul', null, ADMIN_TABS.filter((t) => t.show()).map((t) =>
    h('li', null, h('a', { href: `#/admin/${t.id}`, id: `admin-${t.id}`, 'aria-current': t.id === active ? 'page' : null }, t.label)))));
}

function adminPage(main, active, title) {
  append(main, h('h1', null, title), adminNav(active));
}

route(/^#\/admin\/?$/, 'admin', () => {
  location.replace(isAdmin() ? '#/admin/users' : '#/admin/policies');
  return {};
});

const TAG_HELPERS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];

function tagsField(f) {
  const input = f.elements.tags;
  const box = h('p', { class: 'helpers' }, 'Set ', TAG_HELPERS.map((t) => [button(t, () => {
    const cur = input.value.split(',').map((x) => x.trim()).filter(Boolean);
    if (!cur.includes(t)) cur.push(t);
    input.value = cur.join(', ');
    input.focus();
  }, { class: 'chip' }), ' ']), button('none', () => { input.value = ''; input.focus(); }, { class: 'chip' }));
  input.closest('.row').after(box);
}

// ---- Users ---------------------------------------------------------------------------

route(/^#\/admin\/users\/?$/, 'admin', (main) => {
  adminPage(main, 'users', 'Users');
  const list = h('div', { id: 'users' });
  const add = form('add-user', [
    { name: 'name', label: 'Username', required: true },
    { name: 'password', label: 'Password', type: 'password' },
    { name: 'tags', label: 'Tags', hint: 'Comma-separated' },
  ], 'Add user', async (v, f) => {
    const body = { tags: v.tags };
    if (v.password) body.password = v.password; else body.password_hash = '';
    await api('PUT', `/users/${enc(v.name)}`, body);
    flash(`User ${v.name} added.`);
    f.reset();
    await refresh();
  });
  tagsField(add);
  append(main, section('All users', list), section('Add a user', add));
  async function refresh() {
    const [users, perms] = await Promise.all([apiGet('/users'), apiGet('/permissions').catch(() => [])]);
    const access = {};
    for (const p of perms) (access[p.user] = access[p.user] || []).push(p.vhost);
    replace(list, simpleTable([
      { label: 'Name', cell: (u) => link(`#/admin/users/${enc(u.name)}`, u.name) },
      { label: 'Tags', cell: (u) => parseTags(u.tags).join(', ') },
      { label: 'Can access virtual hosts', cell: (u) => (access[u.name] || []).sort().join(', ') || h('span', { class: 'muted' }, 'No access') },
      { label: 'Has password', cell: (u) => (u.password_hash ? 'yes' : 'no') },
    ], users.sort((a, b) => a.name.localeCompare(b.name)), 'No users.'));
  }
  return { refresh };
});

route(/^#\/admin\/users\/([^/]+)$/, 'admin', (main, [name]) => {
  adminPage(main, 'users', `User ${name}`);
  const info = h('div');
  const perms = h('div');
  const topic = h('div');
  const update = form('update-user', [
    { name: 'tags', label: 'Tags' },
    { name: 'password', label: 'New password', type: 'password', hint: 'Leave empty to keep the password' },
  ], 'Update user', async (v) => {
    const body = { tags: v.tags };
    if (v.password) body.password = v.password;
    await api('PUT', `/users/${enc(name)}`, body);
    flash(`User ${name} updated.`);
    await refresh();
  });
  tagsField(update);
  const setPerm = form('set-permission', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions(), value: defaultVhost() },
    { name: 'configure', label: 'Configure regexp', value: '.*' },
    { name: 'write', label: 'Write regexp', value: '.*' },
    { name: 'read', label: 'Read regexp', value: '.*' },
  ], 'Set permission', async (v) => {
    await api('PUT', `/permissions/${enc(v.vhost)}/${enc(name)}`, { configure: v.configure, write: v.write, read: v.read });
    flash(`Permission in ${v.vhost} set.`);
    await refresh();
  });
  const setTopic = form('set-topic-permission', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions(), value: defaultVhost() },
    { name: 'exchange', label: 'Exchange', value: 'amq.topic' },
    { name: 'write', label: 'Write regexp', value: '.*' },
    { name: 'read', label: 'Read regexp', value: '.*' },
  ], 'Set topic permission', async (v) => {
    await api('PUT', `/topic-permissions/${enc(v.vhost)}/${enc(name)}`, { exchange: v.exchange, write: v.write, read: v.read });
    flash(`Topic permission in ${v.vhost} set.`);
    await refresh();
  });
  const del = button('Delete this user', async () => {
    if (!confirmAction(`Delete user ${name}?`)) return;
    try {
      await api('DELETE', `/users/${enc(name)}`);
      flash(`User ${name} deleted.`);
      location.hash = '#/admin/users';
    } catch (e) { failed(e); }
  }, { id: 'delete-user' });
  append(main, section('Details', info), section('Permissions', perms, setPerm), section('Topic permissions', topic, setTopic),
    section('Update this user', update), section('Delete this user', del));
  let filled = false;
  async function refresh() {
    let u;
    try { u = await apiGet(`/users/${enc(name)}`); } catch (e) {
      if (e.status === 404) { notFound(main, `User ${name}`); return; }
      throw e;
    }
    const tags = parseTags(u.tags);
    replace(info, facts([['Tags', tags.join(', ') || '(none)'], ['Has password', u.password_hash ? 'yes' : 'no'],
      ['Hashing algorithm', u.hashing_algorithm]]));
    if (!filled) { update.elements.tags.value = tags.join(', '); filled = true; }
    const [ps, ts] = await Promise.all([apiGet(`/users/${enc(name)}/permissions`),
      apiGet(`/users/${enc(name)}/topic-permissions`).catch(() => null)]);
    replace(perms, simpleTable([
      { label: 'Virtual host', cell: (p) => p.vhost },
      { label: 'Configure', cell: (p) => h('code', null, p.configure) },
      { label: 'Write', cell: (p) => h('code', null, p.write) },
      { label: 'Read', cell: (p) => h('code', null, p.read) },
      { label: '', cell: (p) => button('Clear', async () => {
        try { await api('DELETE', `/permissions/${enc(p.vhost)}/${enc(name)}`); await refresh(); } catch (e) { failed(e); }
      }, { 'data-fk': 'clear-perm:' + p.vhost, 'aria-label': `Clear permission in ${p.vhost}` }) },
    ], ps, 'No permissions.'));
    replace(topic, ts === null ? h('p', { class: 'muted' }, 'Topic permissions are not available.') : simpleTable([
      { label: 'Virtual host', cell: (p) => p.vhost },
      { label: 'Exchange', cell: (p) => p.exchange },
      { label: 'Write', cell: (p) => h('code', null, p.write) },
      { label: 'Read', cell: (p) => h('code', null, p.read) },
      { label: '', cell: (p) => button('Clear', async () => {
        try { await api('DELETE', `/topic-permissions/${enc(p.vhost)}/${enc(name)}/${enc(p.exchange)}`); await refresh(); } catch (e) { failed(e); }
      }, { 'data-fk': `clear-topic:${p.vhost}:${p.exchange}`, 'aria-label': `Clear topic permission in ${p.vhost} for ${p.exchange}` }) },
    ], ts, 'No topic permissions.'));
  }
  return { refresh };
});

// ---- Virtual hosts -------------------------------------------------------------------

route(/^#\/admin\/vhosts\/?$/, 'admin', (main) => {
  adminPage(main, 'vhosts', 'Virtual hosts');
  const list = h('div', { id: 'vhosts' });
  const add = form('add-vhost', [
    { name: 'name', label: 'Name', required: true },
    { name: 'description', label: 'Description' },
    { name: 'tags', label: 'Tags', hint: 'Comma-separated' },
  ], 'Add virtual host', async (v, f) => {
    await api('PUT', `/vhosts/${enc(v.name)}`, { description: v.description, tags: v.tags });
    flash(`Virtual host ${v.name} added.`);
    f.reset();
    await loadVhosts();
    await refresh();
  });
  append(main, section('All virtual hosts', list), section('Add a virtual host', add));
  async function refresh() {
    const vs = await apiGet('/vhosts');
    replace(list, simpleTable([
      { label: 'Name', cell: (v) => v.name },
      { label: 'Description', cell: (v) => v.description || '' },
      { label: 'Tags', cell: (v) => parseTags(v.tags).join(', ') },
      { label: 'Ready', num: true, cell: (v) => fmtNum(v.messages_ready || 0) },
      { label: 'Unacked', num: true, cell: (v) => fmtNum(v.messages_unacknowledged || 0) },
      { label: 'Total', num: true, cell: (v) => fmtNum(v.messages || 0) },
      { label: '', cell: (v) => button('Delete', async () => {
        if (!confirmAction(`Delete virtual host ${v.name} and everything in it?`)) return;
        try { await api('DELETE', `/vhosts/${enc(v.name)}`); flash(`Virtual host ${v.name} deleted.`); await loadVhosts(); await refresh(); } catch (e) { failed(e); }
      }, { 'data-fk': 'del-vhost:' + v.name, 'aria-label': `Delete virtual host ${v.name}` }) },
    ], vs.sort((a, b) => a.name.localeCompare(b.name))));
  }
  return { refresh };
});

// ---- Policies ------------------------------------------------------------------------

const POLICY_HELPERS = [['message-ttl', 'number', 'Message TTL'], ['expires', 'number', 'Auto expire'],
  ['max-length', 'number', 'Max length'], ['max-length-bytes', 'number', 'Max length bytes'],
  ['overflow', 'string', 'Overflow behaviour', 'reject-publish'], ['dead-letter-exchange', 'string', 'Dead letter exchange'],
  ['dead-letter-routing-key', 'string', 'Dead letter routing key'], ['queue-mode', 'string', 'Lazy mode', 'lazy'],
  ['delivery-limit', 'number', 'Delivery limit'], ['alternate-exchange', 'string', 'Alternate exchange'],
  ['max-age', 'string', 'Max age', '7D']];

route(/^#\/admin\/policies\/?$/, 'admin', (main) => {
  adminPage(main, 'policies', 'Policies');
  const list = h('div', { id: 'policies' });
  const def = kvEditor('policy-definition', 'Definition', POLICY_HELPERS);
  const add = form('add-policy', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions(), value: defaultVhost() },
    { name: 'name', label: 'Name', required: true },
    { name: 'pattern', label: 'Pattern', required: true, placeholder: '^amq\\.' },
    { name: 'apply-to', label: 'Apply to', type: 'select', options: [['all', 'Exchanges and queues'], ['exchanges', 'Exchanges'], ['queues', 'Queues']] },
    { name: 'priority', label: 'Priority', type: 'number', value: 0 },
  ], 'Add / update policy', async (v, f) => {
    await api('PUT', `/policies/${enc(v.vhost)}/${enc(v.name)}`, {
      pattern: v.pattern, 'apply-to': v['apply-to'], priority: Number(v.priority) || 0, definition: def.value(),
    });
    flash(`Policy ${v.name} set.`);
    f.elements.name.value = '';
    def.clear();
    await refresh();
  }, def.el);
  append(main, section('User policies', list), section('Add / update a policy', add));
  async function refresh() {
    const v = currentVhost();
    const ps = await apiGet(v ? `/policies/${enc(v)}` : '/policies');
    replace(list, simpleTable([
      { label: 'Virtual host', cell: (p) => p.vhost },
      { label: 'Name', cell: (p) => p.name },
      { label: 'Pattern', cell: (p) => h('code', null, p.pattern) },
      { label: 'Apply to', cell: (p) => p['apply-to'] },
      { label: 'Definition', cell: (p) => kvTable(p.definition) },
      { label: 'Priority', num: true, cell: (p) => String(p.priority) },
      { label: '', cell: (p) => button('Delete', async () => {
        if (!confirmAction(`Delete policy ${p.name}?`)) return;
        try { await api('DELETE', `/policies/${enc(p.vhost)}/${enc(p.name)}`); await refresh(); } catch (e) { failed(e); }
      }, { 'data-fk': `del-policy:${p.vhost}:${p.name}`, 'aria-label': `Delete policy ${p.name}` }) },
    ], ps, 'No policies.'));
  }
  return { refresh };
});

// ---- Limits --------------------------------------------------------------------------

route(/^#\/admin\/limits\/?$/, 'admin', (main) => {
  adminPage(main, 'limits', 'Limits');
  const vl = h('div', { id: 'vhost-limits' });
  const ul = h('div', { id: 'user-limits' });
  const vform = form('set-vhost-limit', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions(), value: defaultVhost() },
    { name: 'limit', label: 'Limit', type: 'select', options: [['max-connections', 'max-connections'], ['max-queues', 'max-queues']] },
    { name: 'value', label: 'Value', type: 'number', required: true, hint: 'Negative means no limit' },
  ], 'Set / update limit', async (v) => {
    await api('PUT', `/vhost-limits/${enc(v.vhost)}/${enc(v.limit)}`, { value: Number(v.value) });
    flash('Virtual host limit set.');
    await refresh();
  });
  const uform = form('set-user-limit', [
    { name: 'user', label: 'User', required: true },
    { name: 'limit', label: 'Limit', type: 'select', options: [['max-connections', 'max-connections'], ['max-channels', 'max-channels']] },
    { name: 'value', label: 'Value', type: 'number', required: true, hint: 'Negative means no limit' },
  ], 'Set / update limit', async (v) => {
    await api('PUT', `/user-limits/${enc(v.user)}/${enc(v.limit)}`, { value: Number(v.value) });
    flash('User limit set.');
    await refresh();
  });
  const vpanel = section('Virtual host limits', vl, vform);
  const upanel = section('User limits', ul, uform);
  append(main, vpanel, upanel);
  const limitRows = (list, owner) => list.flatMap((l) => Object.entries(l.value || {}).map(([k, val]) => ({ owner: l[owner], limit: k, value: val })));
  async function refresh() {
    // Either endpoint may be missing on an older server: hide its panel then.
    const [vs, us] = await Promise.all([apiGet('/vhost-limits').catch((e) => (e.status === 404 ? null : Promise.reject(e))),
      apiGet('/user-limits').catch((e) => (e.status === 404 ? null : Promise.reject(e)))]);
    vpanel.hidden = vs === null;
    upanel.hidden = us === null;
    const table = (rows, who, path) => simpleTable([
      { label: who, cell: (r) => r.owner },
      { label: 'Limit', cell: (r) => r.limit },
      { label: 'Value', num: true, cell: (r) => String(r.value) },
      { label: '', cell: (r) => button('Clear', async () => {
        try { await api('DELETE', `/${path}/${enc(r.owner)}/${enc(r.limit)}`); await refresh(); } catch (e) { failed(e); }
      }, { 'data-fk': `clear-${path}:${r.owner}:${r.limit}`, 'aria-label': `Clear ${r.limit} of ${r.owner}` }) },
    ], rows, 'No limits.');
    if (vs) replace(vl, table(limitRows(vs, 'vhost'), 'Virtual host', 'vhost-limits'));
    if (us) replace(ul, table(limitRows(us, 'user'), 'User', 'user-limits'));
  }
  return { refresh };
});
