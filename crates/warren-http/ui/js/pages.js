// warren management UI: the Overview, Connections, Channels, Exchanges and Queues pages.
'use strict';

const RATE_SERIES = [['publish', 'Publish'], ['confirm', 'Confirm'], ['deliver_get', 'Deliver'],
  ['redeliver', 'Redeliver'], ['ack', 'Ack']];
const DEPTH_SERIES = [['messages_ready', 'Ready'], ['messages_unacknowledged', 'Unacked'], ['messages', 'Total']];

function depthSample(o) {
  return { messages_ready: o.messages_ready || 0, messages_unacknowledged: o.messages_unacknowledged || 0, messages: o.messages || 0 };
}

function notFound(main, what) {
  replace(main, h('h1', null, what), h('p', { class: 'error' }, 'Not found (it may have been deleted).'));
}

// vhost part of list paths: all vhosts, or the one chosen in the header.
function scoped(kind) {
  const v = currentVhost();
  if (!v) return `/${kind}`;
  return kind === 'connections' || kind === 'channels' ? `/vhosts/${enc(v)}/${kind}` : `/${kind}/${enc(v)}`;
}

// ---- Overview ------------------------------------------------------------------------

route(/^#\/?$/, 'overview', (main) => {
  const totals = h('div', { class: 'totals', id: 'totals' });
  const charts = h('div', { class: 'charts' });
  const nodes = h('div', { id: 'nodes' });
  const listeners = h('div');
  const nodesPanel = section('Nodes', nodes);
  append(main, [h('h1', null, 'Overview'), section('Totals', totals), section('Charts', charts), nodesPanel,
    section('Ports and contexts', listeners), isAdmin() ? definitionsPanel() : null]);

  async function refresh() {
    const [ov, ns] = await Promise.all([apiGet('/overview'),
      isMonitor() ? apiGet('/nodes').catch(() => null) : Promise.resolve(null)]);
    const qt = ov.queue_totals || {};
    const ot = ov.object_totals || {};
    const box = (label, v, id) => h('div', { class: 'total', id }, h('span', { class: 'n' }, fmtNum(v || 0)), h('span', null, label));
    replace(totals, box('Connections', ot.connections, 'total-connections'), box('Channels', ot.channels, 'total-channels'),
      box('Exchanges', ot.exchanges, 'total-exchanges'), box('Queues', ot.queues, 'total-queues'),
      box('Consumers', ot.consumers, 'total-consumers'), box('Ready', qt.messages_ready, 'total-ready'),
      box('Unacked', qt.messages_unacknowledged, 'total-unacked'), box('Total messages', qt.messages, 'total-messages'));
    sample('overview:depth', depthSample(qt));
    sample('overview:rates', rateSample(ov.message_stats, RATE_SERIES.map((x) => x[0])));
    replace(charts, chart('Queued messages', 'overview:depth', DEPTH_SERIES, fmtNum),
      chart('Message rates', 'overview:rates', RATE_SERIES, fmtRate));
    nodesPanel.hidden = !ns;
    if (ns) {
      replace(nodes, simpleTable([
        { label: 'Name', cell: (n) => n.name },
        { label: 'Version', cell: () => `${ov.product_name || 'warren'} ${ov.product_version || ''} / RabbitMQ ${ov.rabbitmq_version}` },
        { label: 'Uptime', cell: (n) => fmtUptime(n.uptime) },
        { label: 'Memory', cell: (n) => meter(n.mem_used, n.mem_limit, fmtBytes, n.mem_alarm, 'limit') },
        { label: 'Disk free', cell: (n) => meter(n.disk_free, n.disk_free_limit, fmtBytes, n.disk_free_alarm, 'low watermark') },
        { label: 'File descriptors', cell: (n) => meter(n.fd_used, n.fd_total, fmtNum, false, 'available') },
        { label: 'Sockets', cell: (n) => fmtNum(n.sockets_used), num: true },
        { label: 'Cores', cell: (n) => fmtNum(n.processors), num: true },
      ], ns));
    }
    replace(listeners, simpleTable([
      { label: 'Protocol', cell: (l) => l.protocol },
      { label: 'Bound to', cell: (l) => l.ip_address },
      { label: 'Port', cell: (l) => String(l.port), num: true },
    ], ov.listeners || []));
  }
  return { refresh };
});

function meter(v, limit, fmt, alarm, word) {
  return h('span', { class: alarm ? 'alarm-text' : null }, fmt(v), limit ? h('span', { class: 'muted' }, ` (${word} ${fmt(limit)})`) : null,
    alarm ? h('strong', null, ' ALARM') : null);
}

function definitionsPanel() {
  const vh = h('select', { id: 'defs-vhost' }, h('option', { value: '' }, 'All'), W.vhosts.map((v) => h('option', { value: v }, v)));
  const file = h('input', { type: 'file', id: 'defs-file', accept: '.json,application/json' });
  const exportBtn = button('Download broker definitions', async () => {
    try {
      const v = vh.value;
      const defs = await apiGet(v ? `/definitions/${enc(v)}` : '/definitions');
      const stamp = new Date().toISOString().slice(0, 10);
      download(`warren_${v ? v.replace(/[^\w.-]/g, '_') + '_' : ''}${stamp}.json`, JSON.stringify(defs, null, 2));
    } catch (e) { failed(e); }
  }, { id: 'defs-export' });
  const importBtn = button('Upload broker definitions', async () => {
    const f = file.files[0];
    if (!f) { flash('Choose a definitions file first.', 'error'); return; }
    try {
      const text = await f.text();
      JSON.parse(text);
      const v = vh.value;
      await api('POST', v ? `/definitions/${enc(v)}` : '/definitions', text);
      flash(`Definitions from ${f.name} imported.`);
      await loadVhosts();
    } catch (e) { failed(e); }
  }, { id: 'defs-import' });
  return section('Export and import definitions',
    h('div', { class: 'row' }, h('label', { for: 'defs-vhost' }, 'Virtual host'), vh),
    h('div', { class: 'row' }, h('span'), exportBtn),
    h('div', { class: 'row' }, h('label', { for: 'defs-file' }, 'Definitions file'), file),
    h('div', { class: 'row' }, h('span'), importBtn));
}

// ---- Connections ---------------------------------------------------------------------

function clientName(c) {
  const p = c.client_properties || {};
  return [p.product, p.version].filter(Boolean).join(' ');
}

route(/^#\/connections\/?$/, 'connections', (main) => {
  const lv = listView({
    id: 'connections', path: () => scoped('connections'), empty: 'No connections.',
    cols: [
      { label: 'Name', sort: 'name', cell: (c) => [link(`#/connections/${enc(c.name)}`, c.name),
        c.client_properties && c.client_properties.connection_name ? h('div', { class: 'muted' }, c.client_properties.connection_name) : null] },
      { label: 'Virtual host', sort: 'vhost', cell: (c) => c.vhost },
      { label: 'User', sort: 'user', cell: (c) => c.user },
      { label: 'State', sort: 'state', cell: (c) => stateBadge(c.state) },
      { label: 'TLS', cell: (c) => (c.ssl ? 'yes' : '') },
      { label: 'Protocol', sort: 'protocol', cell: (c) => c.protocol },
      { label: 'Client', cell: clientName },
      { label: 'Channels', sort: 'channels', num: true, cell: (c) => fmtNum(c.channels) },
      { label: 'From client', sort: 'recv_oct_details.rate', num: true, cell: (c) => fmtBytes(get(c, 'recv_oct_details.rate') || 0) + '/s' },
      { label: 'To client', sort: 'send_oct_details.rate', num: true, cell: (c) => fmtBytes(get(c, 'send_oct_details.rate') || 0) + '/s' },
    ],
  });
  append(main, h('h1', null, 'Connections'), lv.el);
  return { refresh: lv.refresh };
});

function stateBadge(state) { return h('span', { class: 'state ' + (state || '') }, state || ''); }

route(/^#\/connections\/([^/]+)$/, 'connections', (main, [name]) => {
  const info = h('div');
  const props = h('div');
  const chans = h('div');
  const reasonForm = form('close-connection', [{ name: 'reason', label: 'Reason', value: 'Closed via management plugin' }],
    'Force close', async (v) => {
      if (!confirmAction(`Close connection ${name}?`)) return;
      await api('DELETE', `/connections/${enc(name)}`, undefined, { 'X-Reason': v.reason });
      flash(`Connection ${name} closed.`);
      location.hash = '#/connections';
    });
  append(main, h('h1', null, 'Connection ', h('span', { class: 'name' }, name)),
    h('div', { class: 'split' }, section('Details', info), section('Client properties', props)),
    section('Channels', chans), section('Close this connection', reasonForm));
  async function refresh() {
    let c;
    try { c = await apiGet(`/connections/${enc(name)}`); } catch (e) {
      if (e.status === 404) { notFound(main, `Connection ${name}`); return; }
      throw e;
    }
    replace(info, facts([['User', c.user], ['Virtual host', c.vhost], ['State', stateBadge(c.state)],
      ['Protocol', c.protocol], ['Client', `${c.peer_host}:${c.peer_port}`], ['Server', `${c.host}:${c.port}`],
      ['Connected at', fmtTime(c.connected_at)], ['Authentication', c.auth_mechanism], ['TLS', c.ssl ? 'yes' : 'no'],
      ['Heartbeat', c.timeout !== undefined ? `${c.timeout} s` : ''], ['Frame max', fmtNum(c.frame_max)],
      ['Channel max', fmtNum(c.channel_max)], ['Received', `${fmtBytes(c.recv_oct)} (${fmtBytes(get(c, 'recv_oct_details.rate') || 0)}/s)`],
      ['Sent', `${fmtBytes(c.send_oct)} (${fmtBytes(get(c, 'send_oct_details.rate') || 0)}/s)`]]));
    replace(props, kvTable(c.client_properties));
    const cs = await apiGet(`/connections/${enc(name)}/channels`).catch(() => []);
    replace(chans, channelTable(cs));
  }
  return { refresh };
});

function channelTable(cs) {
  return simpleTable([
    { label: 'Channel', cell: (c) => link(`#/channels/${enc(c.name)}`, c.name) },
    { label: 'State', cell: (c) => stateBadge(c.state) },
    { label: 'Mode', cell: channelMode },
    { label: 'Prefetch', num: true, cell: (c) => fmtNum(c.prefetch_count) },
    { label: 'Unacked', num: true, cell: (c) => fmtNum(c.messages_unacknowledged) },
    { label: 'Consumers', num: true, cell: (c) => fmtNum(c.consumer_count) },
  ], cs, 'No channels.');
}

function channelMode(c) {
  return [c.confirm ? h('abbr', { title: 'Confirm mode' }, 'C') : null, c.transactional ? h('abbr', { title: 'Transactional' }, 'T') : null];
}

// ---- Channels ------------------------------------------------------------------------

route(/^#\/channels\/?$/, 'channels', (main) => {
  const lv = listView({
    id: 'channels', path: () => scoped('channels'), empty: 'No channels.',
    cols: [
      { label: 'Channel', sort: 'name', cell: (c) => link(`#/channels/${enc(c.name)}`, c.name) },
      { label: 'Virtual host', sort: 'vhost', cell: (c) => c.vhost },
      { label: 'User', sort: 'user', cell: (c) => c.user },
      { label: 'Mode', cell: channelMode },
      { label: 'State', sort: 'state', cell: (c) => stateBadge(c.state) },
      { label: 'Unconfirmed', sort: 'messages_unconfirmed', num: true, cell: (c) => fmtNum(c.messages_unconfirmed) },
      { label: 'Prefetch', sort: 'prefetch_count', num: true, cell: (c) => fmtNum(c.prefetch_count) },
      { label: 'Unacked', sort: 'messages_unacknowledged', num: true, cell: (c) => fmtNum(c.messages_unacknowledged) },
      { label: 'Consumers', sort: 'consumer_count', num: true, cell: (c) => fmtNum(c.consumer_count) },
      { label: 'Publish', sort: 'message_stats.publish_details.rate', num: true, cell: (c) => fmtRate(rateOf(c, 'publish') || 0) },
      { label: 'Deliver', sort: 'message_stats.deliver_get_details.rate', num: true, cell: (c) => fmtRate(rateOf(c, 'deliver_get') || 0) },
      { label: 'Ack', sort: 'message_stats.ack_details.rate', num: true, cell: (c) => fmtRate(rateOf(c, 'ack') || 0) },
    ],
  });
  append(main, h('h1', null, 'Channels'), lv.el);
  return { refresh: lv.refresh };
});

route(/^#\/channels\/([^/]+)$/, 'channels', (main, [name]) => {
  const info = h('div');
  const consumers = h('div');
  const charts = h('div', { class: 'charts' });
  append(main, h('h1', null, 'Channel ', h('span', { class: 'name' }, name)), section('Details', info),
    section('Message rates', charts), section('Consumers', consumers));
  async function refresh() {
    let c;
    try { c = await apiGet(`/channels/${enc(name)}`); } catch (e) {
      if (e.status === 404) { notFound(main, `Channel ${name}`); return; }
      throw e;
    }
    const conn = get(c, 'connection_details.name');
    replace(info, facts([['Connection', conn ? link(`#/connections/${enc(conn)}`, conn) : ''], ['User', c.user],
      ['Virtual host', c.vhost], ['State', stateBadge(c.state)], ['Mode', channelMode(c)],
      ['Prefetch count', fmtNum(c.prefetch_count)], ['Global prefetch', fmtNum(c.global_prefetch_count)],
      ['Unacked', fmtNum(c.messages_unacknowledged)], ['Unconfirmed', fmtNum(c.messages_unconfirmed)],
      ['Uncommitted', fmtNum(c.messages_uncommitted)]]));
    const key = 'channel:' + name;
    sample(key, rateSample(c.message_stats, RATE_SERIES.map((x) => x[0])));
    replace(charts, chart('Message rates', key, RATE_SERIES, fmtRate));
    replace(consumers, consumerTable(c.consumer_details || [], true));
  }
  return { refresh };
});

function consumerTable(list, byQueue) {
  return simpleTable([
    byQueue ? { label: 'Queue', cell: (c) => link(`#/queues/${enc(get(c, 'queue.vhost'))}/${enc(get(c, 'queue.name'))}`, get(c, 'queue.name')) }
      : { label: 'Channel', cell: (c) => link(`#/channels/${enc(get(c, 'channel_details.name'))}`, get(c, 'channel_details.name') || '') },
    { label: 'Consumer tag', cell: (c) => c.consumer_tag },
    { label: 'Ack required', cell: (c) => (c.ack_required ? 'yes' : 'no') },
    { label: 'Exclusive', cell: (c) => (c.exclusive ? 'yes' : 'no') },
    { label: 'Prefetch', num: true, cell: (c) => fmtNum(c.prefetch_count) },
    { label: 'Active', cell: (c) => (c.active === false ? 'no' : 'yes') },
    { label: 'Arguments', cell: (c) => fmtArgs(c.arguments) },
  ], list, 'No consumers.');
}

// ---- Exchanges -----------------------------------------------------------------------

const urlExchange = (n) => (n === '' ? 'amq.default' : n);

function features(o, extra) {
  const f = [];
  if (o.durable) f.push(h('abbr', { title: 'durable' }, 'D'));
  if (o.auto_delete) f.push(h('abbr', { title: 'auto-delete' }, 'AD'));
  if (o.internal) f.push(h('abbr', { title: 'internal' }, 'I'));
  if (o.exclusive) f.push(h('abbr', { title: 'exclusive' }, 'Excl'));
  if (Object.keys(o.arguments || {}).length) f.push(h('abbr', { title: fmtArgs(o.arguments) }, 'Args'));
  if (o.policy) f.push(h('span', { class: 'policy', title: 'policy' }, o.policy));
  if (extra) f.push(extra);
  return f.map((x) => [x, ' ']);
}

route(/^#\/exchanges\/?$/, 'exchanges', (main) => {
  const lv = listView({
    id: 'exchanges', path: () => scoped('exchanges'), empty: 'No exchanges.',
    cols: [
      { label: 'Virtual host', sort: 'vhost', cell: (x) => x.vhost },
      { label: 'Name', sort: 'name', cell: (x) => link(`#/exchanges/${enc(x.vhost)}/${enc(urlExchange(x.name))}`, exchangeName(x.name)) },
      { label: 'Type', sort: 'type', cell: (x) => x.type },
      { label: 'Features', cell: (x) => features(x) },
      { label: 'Rate in', sort: 'message_stats.publish_in_details.rate', num: true, cell: (x) => fmtRate(rateOf(x, 'publish_in') || 0) },
      { label: 'Rate out', sort: 'message_stats.publish_out_details.rate', num: true, cell: (x) => fmtRate(rateOf(x, 'publish_out') || 0) },
    ],
  });
  const args = kvEditor('add-exchange-args', 'Arguments', [['alternate-exchange', 'string', 'Alternate exchange']]);
  const add = form('add-exchange', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions(), value: defaultVhost() },
    { name: 'name', label: 'Name', required: true },
    { name: 'type', label: 'Type', type: 'select', options: [['direct', 'direct'], ['fanout', 'fanout'], ['headers', 'headers'], ['topic', 'topic']] },
    { name: 'durable', label: 'Durability', type: 'select', options: [['true', 'Durable'], ['false', 'Transient']] },
    { name: 'auto_delete', label: 'Auto delete', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
    { name: 'internal', label: 'Internal', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
  ], 'Add exchange', async (v, f) => {
    await api('PUT', `/exchanges/${enc(v.vhost)}/${enc(v.name)}`, {
      type: v.type, durable: v.durable === 'true', auto_delete: v.auto_delete === 'true',
      internal: v.internal === 'true', arguments: args.value(),
    });
    flash(`Exchange ${v.name} added.`);
    f.elements.name.value = '';
    args.clear();
    await lv.refresh();
  }, args.el);
  append(main, h('h1', null, 'Exchanges'), lv.el, section('Add a new exchange', add));
  return { refresh: lv.refresh };
});

function bindingArgsCell(b) { return fmtArgs(b.arguments); }

async function unbind(b) {
  const kind = b.destination_type === 'queue' ? 'q' : 'e';
  await api('DELETE', `/bindings/${enc(b.vhost)}/e/${enc(b.source)}/${kind}/${enc(b.destination)}/${enc(b.properties_key)}`);
  flash('Binding removed.');
}

function bindForm(id, vhost, fixed, after) {
  // fixed: {source} (bind from this exchange) or {destination, destination_type} (to this queue/exchange).
  const args = kvEditor(`${id}-args`, 'Arguments', [['x-match', 'string', 'x-match', 'all']]);
  const fields = fixed.source !== undefined
    ? [{ name: 'dtype', label: 'To', type: 'select', options: [['q', 'Queue'], ['e', 'Exchange']] },
      { name: 'destination', label: 'Name', required: true }]
    : [{ name: 'source', label: 'From exchange', required: true }];
  fields.push({ name: 'routing_key', label: 'Routing key' });
  return form(id, fields, 'Bind', async (v, f) => {
    const src = fixed.source !== undefined ? fixed.source : v.source;
    const dtype = fixed.source !== undefined ? v.dtype : fixed.destination_type;
    const dst = fixed.source !== undefined ? v.destination : fixed.destination;
    await api('POST', `/bindings/${enc(vhost)}/e/${enc(src)}/${dtype}/${enc(dst)}`, { routing_key: v.routing_key, arguments: args.value() });
    flash('Binding added.');
    f.reset();
    args.clear();
    await after();
  }, args.el);
}

function bindingsTable(list, showSource, after) {
  return simpleTable([
    showSource
      ? { label: 'From', cell: (b) => (b.source === '' ? '(Default exchange binding)' : link(`#/exchanges/${enc(b.vhost)}/${enc(b.source)}`, b.source)) }
      : { label: 'To', cell: (b) => link(b.destination_type === 'queue' ? `#/queues/${enc(b.vhost)}/${enc(b.destination)}` : `#/exchanges/${enc(b.vhost)}/${enc(b.destination)}`, `${b.destination} (${b.destination_type})`) },
    { label: 'Routing key', cell: (b) => h('code', null, b.routing_key) },
    { label: 'Arguments', cell: bindingArgsCell },
    { label: '', cell: (b) => (b.source === '' ? '' : button('Unbind', async () => {
      try { await unbind(b); await after(); } catch (e) { failed(e); }
    }, { 'data-fk': `unbind:${b.source}:${b.destination}:${b.properties_key}` })) },
  ], list, 'No bindings.');
}

const PROPERTY_HELPERS = [['content_type', 'string', 'content_type', 'text/plain'], ['content_encoding'], ['priority', 'number'],
  ['correlation_id'], ['reply_to'], ['expiration', 'string', 'expiration', '60000'], ['message_id'],
  ['timestamp', 'number'], ['type'], ['user_id'], ['app_id']];

function publishForm(id, vhost, exchange, fixedKey) {
  const headers = kvEditor(`${id}-headers`, 'Headers');
  const props = kvEditor(`${id}-props`, 'Properties', PROPERTY_HELPERS);
  const fields = [];
  if (fixedKey === undefined) fields.push({ name: 'routing_key', label: 'Routing key' });
  fields.push({ name: 'delivery_mode', label: 'Delivery mode', type: 'select', options: [['1', '1 - Non-persistent'], ['2', '2 - Persistent']] },
    { name: 'payload', label: 'Payload', type: 'textarea', rows: 5 },
    { name: 'payload_encoding', label: 'Payload encoding', type: 'select', options: [['string', 'String'], ['base64', 'Base64']] });
  return form(id, fields, 'Publish message', async (v) => {
    const properties = Object.assign({ delivery_mode: Number(v.delivery_mode) }, props.value());
    const hv = headers.value();
    if (Object.keys(hv).length) properties.headers = hv;
    const r = await api('POST', `/exchanges/${enc(vhost)}/${enc(urlExchange(exchange))}/publish`, {
      properties, routing_key: fixedKey === undefined ? v.routing_key : fixedKey,
      payload: v.payload, payload_encoding: v.payload_encoding,
    });
    flash(r && r.routed ? 'Message published.' : 'Message published, but not routed.', r && r.routed ? 'ok' : 'warn');
  }, [headers.el, props.el]);
}

route(/^#\/exchanges\/([^/]+)\/([^/]+)$/, 'exchanges', (main, [vhost, urlName]) => {
  const name = urlName === 'amq.default' ? '' : urlName;
  const info = h('div');
  const charts = h('div', { class: 'charts' });
  const out = h('div');
  const inb = h('div');
  const reload = () => refresh();
  const del = h('div', null, form('delete-exchange', [{ name: 'if_unused', label: 'Only if unused', type: 'checkbox' }], 'Delete this exchange', async (v) => {
    if (!confirmAction(`Delete exchange ${name}?`)) return;
    await api('DELETE', `/exchanges/${enc(vhost)}/${enc(name)}${v.if_unused ? '?if-unused=true' : ''}`);
    flash(`Exchange ${name} deleted.`);
    location.hash = '#/exchanges';
  }));
  const builtin = name === '' || name.startsWith('amq.');
  append(main, h('h1', null, 'Exchange ', h('span', { class: 'name' }, exchangeName(name)), h('span', { class: 'muted' }, ` in ${vhost}`)),
    section('Details', info), section('Message rates', charts),
    section('Bindings from this exchange', out, name === '' ? null : [h('h3', null, 'Add binding from this exchange'),
      bindForm('bind-from-exchange', vhost, { source: name }, reload)]),
    section('Bindings to this exchange', inb),
    section('Publish message', publishForm('publish-exchange', vhost, name)),
    builtin ? null : section('Delete this exchange', del));
  async function refresh() {
    let x;
    try { x = await apiGet(`/exchanges/${enc(vhost)}/${enc(urlExchange(name))}`); } catch (e) {
      if (e.status === 404) { notFound(main, `Exchange ${name}`); return; }
      throw e;
    }
    replace(info, facts([['Type', x.type], ['Features', features(x)], ['Policy', x.policy], ['Arguments', kvTable(x.arguments)]]));
    const key = `exchange:${vhost}/${name}`;
    sample(key, rateSample(x.message_stats, ['publish_in', 'publish_out']));
    replace(charts, chart('Message rates', key, [['publish_in', 'In'], ['publish_out', 'Out']], fmtRate));
    if (name !== '') {
      const [src, dst] = await Promise.all([apiGet(`/exchanges/${enc(vhost)}/${enc(name)}/bindings/source`),
        apiGet(`/exchanges/${enc(vhost)}/${enc(name)}/bindings/destination`)]);
      replace(out, bindingsTable(src, false, reload));
      replace(inb, bindingsTable(dst, true, reload));
    } else {
      replace(out, h('p', { class: 'muted' }, 'The default exchange is implicitly bound to every queue, with a routing key equal to the queue name.'));
      replace(inb, h('p', { class: 'muted' }, 'No bindings.'));
    }
  }
  return { refresh };
});

// ---- Queues --------------------------------------------------------------------------

const QUEUE_COLUMNS = ['name', 'vhost', 'type', 'state', 'durable', 'auto_delete', 'exclusive', 'arguments', 'policy',
  'consumers', 'messages_ready', 'messages_unacknowledged', 'messages',
  'message_stats.publish_details.rate', 'message_stats.deliver_get_details.rate', 'message_stats.ack_details.rate'].join(',');

// The declared x-queue-type first: older servers answered `classic` for every queue.
function queueType(q) { return get(q, 'arguments.x-queue-type') || q.type || 'classic'; }

route(/^#\/queues\/?$/, 'queues', (main) => {
  const lv = listView({
    id: 'queues', path: () => scoped('queues'), empty: 'No queues.', columns: QUEUE_COLUMNS,
    cols: [
      { label: 'Virtual host', sort: 'vhost', cell: (q) => q.vhost },
      { label: 'Name', sort: 'name', cell: (q) => link(`#/queues/${enc(q.vhost)}/${enc(q.name)}`, q.name) },
      { label: 'Type', sort: 'type', cell: queueType },
      { label: 'Features', cell: (q) => features(q) },
      { label: 'State', sort: 'state', cell: (q) => stateBadge(q.state) },
      { label: 'Consumers', sort: 'consumers', num: true, cell: (q) => fmtNum(q.consumers) },
      { label: 'Ready', sort: 'messages_ready', num: true, cell: (q) => fmtNum(q.messages_ready) },
      { label: 'Unacked', sort: 'messages_unacknowledged', num: true, cell: (q) => fmtNum(q.messages_unacknowledged) },
      { label: 'Total', sort: 'messages', num: true, cell: (q) => fmtNum(q.messages) },
      { label: 'Incoming', sort: 'message_stats.publish_details.rate', num: true, cell: (q) => fmtRate(rateOf(q, 'publish') || 0) },
      { label: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', num: true, cell: (q) => fmtRate(rateOf(q, 'deliver_get') || 0) },
      { label: 'Ack', sort: 'message_stats.ack_details.rate', num: true, cell: (q) => fmtRate(rateOf(q, 'ack') || 0) },
    ],
  });
  append(main, h('h1', null, 'Queues'), lv.el, section('Add a new queue', addQueueForm(lv.refresh)));
  return { refresh: lv.refresh };
});

// RabbitMQ's argument helpers, with the queue types each applies to.
const QUEUE_ARGS = [
  ['x-message-ttl', 'number', 'Message TTL', 'cqs'], ['x-expires', 'number', 'Auto expire', 'cq'],
  ['x-max-length', 'number', 'Max length', 'cqs'], ['x-max-length-bytes', 'number', 'Max length bytes', 'cqs'],
  ['x-overflow', 'string', 'Overflow behaviour', 'cq', 'reject-publish'],
  ['x-dead-letter-exchange', 'string', 'Dead letter exchange', 'cq'], ['x-dead-letter-routing-key', 'string', 'Dead letter routing key', 'cq'],
  ['x-single-active-consumer', 'boolean', 'Single active consumer', 'cq', 'true'],
  ['x-max-priority', 'number', 'Maximum priority', 'c'], ['x-queue-mode', 'string', 'Lazy mode', 'c', 'lazy'],
  ['x-queue-master-locator', 'string', 'Master locator', 'c', 'client-local'],
  ['x-delivery-limit', 'number', 'Delivery limit', 'q'], ['x-quorum-initial-group-size', 'number', 'Initial cluster size', 'qs'],
  ['x-dead-letter-strategy', 'string', 'Dead letter strategy', 'q', 'at-least-once'],
  ['x-queue-leader-locator', 'string', 'Leader locator', 'qs', 'client-local'],
  ['x-max-age', 'string', 'Max time retention', 's', '7D'], ['x-stream-max-segment-size-bytes', 'number', 'Max segment size in bytes', 's'],
];

function addQueueForm(after) {
  let args = null;
  const argBox = h('div');
  const setType = (t) => {
    const letter = t[0];
    const old = args ? args.value : null;
    args = kvEditor('add-queue-args', 'Arguments', QUEUE_ARGS.filter((a) => a[3].includes(letter)).map(([k, ty, l, , v]) => [k, ty, l, v]));
    replace(argBox, args.el);
    // Keep nothing from another type: arguments differ between types.
    void old;
  };
  setType('classic');
  const f = form('add-queue', [
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostOptions(), value: defaultVhost() },
    { name: 'type', label: 'Type', type: 'select', options: [['classic', 'Classic'], ['quorum', 'Quorum'], ['stream', 'Stream']] },
    { name: 'name', label: 'Name', required: true },
    { name: 'durable', label: 'Durability', type: 'select', options: [['true', 'Durable'], ['false', 'Transient']] },
    { name: 'auto_delete', label: 'Auto delete', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
  ], 'Add queue', async (v, fm) => {
    const a = args.value();
    if (v.type !== 'classic') a['x-queue-type'] = v.type;
    const classic = v.type === 'classic';
    await api('PUT', `/queues/${enc(v.vhost)}/${enc(v.name)}`, {
      durable: classic ? v.durable === 'true' : true, auto_delete: classic ? v.auto_delete === 'true' : false, arguments: a,
    });
    flash(`Queue ${v.name} added.`);
    fm.elements.name.value = '';
    args.clear();
    await after();
  }, argBox);
  // Quorum queues and streams are always durable and never auto-deleted.
  f.elements.type.addEventListener('change', () => {
    const t = f.elements.type.value;
    f.elements.durable.disabled = t !== 'classic';
    f.elements.auto_delete.disabled = t !== 'classic';
    if (t !== 'classic') { f.elements.durable.value = 'true'; f.elements.auto_delete.value = 'false'; }
    setType(t);
  });
  return f;
}

function getMessagesForm(vhost, name) {
  const results = h('div', { id: 'get-results', 'aria-live': 'polite' });
  const f = form('get-messages', [
    { name: 'ackmode', label: 'Ack mode', type: 'select', options: [['ack_requeue_true', 'Nack message requeue true'],
      ['ack_requeue_false', 'Automatic ack'], ['reject_requeue_true', 'Reject requeue true'], ['reject_requeue_false', 'Reject requeue false']] },
    { name: 'encoding', label: 'Encoding', type: 'select', options: [['auto', 'Automatic string/base64'], ['base64', 'Base64']] },
    { name: 'count', label: 'Messages', type: 'number', value: 1 },
    { name: 'truncate', label: 'Truncate payload at (bytes)', type: 'number', value: 50000 },
  ], 'Get messages', async (v) => {
    const body = { count: Number(v.count) || 1, ackmode: v.ackmode, encoding: v.encoding };
    if (v.truncate !== '') body.truncate = Number(v.truncate);
    const msgs = await api('POST', `/queues/${enc(vhost)}/${enc(name)}/get`, body);
    replace(results, msgs.length ? msgs.map((m, i) => h('article', { class: 'message' },
      h('h3', null, `Message ${i + 1}`),
      h('p', { class: 'muted' }, `The server reported ${fmtNum(m.message_count)} messages remaining.`),
      facts([['Exchange', exchangeName(m.exchange)], ['Routing key', m.routing_key], ['Redelivered', m.redelivered ? 'yes' : 'no'],
        ['Properties', kvTable(m.properties)], ['Payload', `${fmtNum(m.payload_bytes)} bytes, encoding: ${m.payload_encoding}`]]),
      h('pre', { class: 'payload' }, m.payload)))
      : h('p', { class: 'muted' }, 'Queue is empty.'));
    await Promise.resolve(W.page && W.page.refresh && W.page.refresh()).catch(() => {});
  });
  return [f, results];
}

route(/^#\/queues\/([^/]+)\/([^/]+)$/, 'queues', (main, [vhost, name]) => {
  const info = h('div');
  const charts = h('div', { class: 'charts' });
  const consumers = h('div');
  const bindings = h('div');
  const reload = () => refresh();
  const purge = button('Purge messages', async () => {
    if (!confirmAction(`Purge all messages of ${name}?`)) return;
    try {
      await api('DELETE', `/queues/${enc(vhost)}/${enc(name)}/contents`);
      flash(`Queue ${name} purged.`);
      await refresh();
    } catch (e) { failed(e); }
  }, { id: 'purge-queue' });
  const del = form('delete-queue', [{ name: 'if_unused', label: 'Only if unused', type: 'checkbox' },
    { name: 'if_empty', label: 'Only if empty', type: 'checkbox' }], 'Delete queue', async (v) => {
    if (!confirmAction(`Delete queue ${name}?`)) return;
    const q = new URLSearchParams();
    if (v.if_unused) q.set('if-unused', 'true');
    if (v.if_empty) q.set('if-empty', 'true');
    await api('DELETE', `/queues/${enc(vhost)}/${enc(name)}${q.toString() ? '?' + q : ''}`);
    flash(`Queue ${name} deleted.`);
    location.hash = '#/queues';
  });
  append(main, h('h1', null, 'Queue ', h('span', { class: 'name', id: 'queue-name' }, name), h('span', { class: 'muted' }, ` in ${vhost}`)),
    section('Details', info), section('Charts', charts), section('Consumers', consumers),
    section('Bindings', bindings, h('h3', null, 'Add binding to this queue'),
      bindForm('bind-queue', vhost, { destination: name, destination_type: 'q' }, reload)),
    section('Publish message', h('p', { class: 'muted' }, 'Published to the default exchange with the queue name as routing key.'),
      publishForm('publish-queue', vhost, '', name)),
    section('Get messages', h('p', { class: 'muted' }, 'Getting messages is a destructive action with an ack mode that does not requeue.'),
      getMessagesForm(vhost, name)),
    section('Purge', purge), section('Delete', del));
  async function refresh() {
    let q;
    try { q = await apiGet(`/queues/${enc(vhost)}/${enc(name)}`); } catch (e) {
      if (e.status === 404) { notFound(main, `Queue ${name}`); return; }
      throw e;
    }
    replace(info, facts([['Type', queueType(q)], ['State', stateBadge(q.state)], ['Features', features(q)],
      ['Policy', q.policy || ''], ['Consumers', fmtNum(q.consumers)],
      ['Consumer capacity', q.consumer_utilisation !== undefined && q.consumer_utilisation !== null ? `${Math.round(q.consumer_utilisation * 100)}%` : ''],
      ['Ready', h('span', { id: 'queue-ready' }, fmtNum(q.messages_ready))], ['Unacked', fmtNum(q.messages_unacknowledged)],
      ['Total', h('span', { id: 'queue-total' }, fmtNum(q.messages))], ['Message bytes', fmtBytes(q.message_bytes)],
      ['Memory', fmtBytes(q.memory)], ['Exclusive owner', get(q, 'owner_pid_details.name') || ''],
      ['Arguments', kvTable(q.arguments)]]));
    const key = `queue:${vhost}/${name}`;
    sample(key + ':depth', depthSample(q));
    sample(key + ':rates', rateSample(q.message_stats, ['publish', 'deliver_get', 'redeliver', 'ack']));
    replace(charts, chart('Queued messages', key + ':depth', DEPTH_SERIES, fmtNum),
      chart('Message rates', key + ':rates', [['publish', 'Publish'], ['deliver_get', 'Deliver'], ['redeliver', 'Redeliver'], ['ack', 'Ack']], fmtRate));
    replace(consumers, consumerTable(q.consumer_details || [], false));
    const bs = await apiGet(`/queues/${enc(vhost)}/${enc(name)}/bindings`);
    replace(bindings, bindingsTable(bs, true, reload));
  }
  return { refresh };
});
