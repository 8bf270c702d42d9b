# Bunny (Debian's ruby-bunny), used the way Ruby applications (and Sneakers/Hutch) use it.
# `ruby bunny_client.rb recovery`: Bunny's automatic recovery (on by default) across a
# broker restart: reconnect, redeclare the transient exchange/queue/binding, re-consume.
require 'bunny'
require 'securerandom'

HOST = ENV.fetch('WARREN_AMQP_HOST', '127.0.0.1')
PORT = Integer(ENV.fetch('WARREN_AMQP_PORT', '5672'))
RUN = SecureRandom.hex(4)
$stdout.sync = true
C = 'bunny'
$passed = 0
$failed = 0

class CheckFailed < StandardError; end

def name(what) = "clients.#{C}.#{RUN}.#{what}"
def expect(cond, why) = (raise CheckFailed, why unless cond)
def eq(what, want, got) = expect(want == got, "#{what}: expected #{want.inspect}, got #{got.inspect}")

def check(label)
  yield
  $passed += 1
  puts "PASS #{label}"
rescue StandardError => e
  $failed += 1
  puts "FAIL #{label}: #{e.class}: #{e.message}"
  warn e.backtrace.first(5).join("\n")
end

def wait_for(secs = 5)
  deadline = Time.now + secs
  sleep 0.02 until yield || Time.now > deadline
end

def finish
  puts "#{$passed} passed, #{$failed} failed"
  exit($failed.zero? ? 0 : 1)
end

def new_conn(**opts)
  Bunny.new(host: HOST, port: PORT, logger: Logger.new(nil), **opts).tap(&:start)
end

if ARGV == ['recovery']
  check('recovery') do
    conn = new_conn(network_recovery_interval: 0.5, automatically_recover: true)
    recovered = false
    conn.after_recovery_completed { recovered = true }
    ch = conn.create_channel
    x = ch.direct(name('rec-x'), durable: false)
    q = ch.queue(name('rec-q'), durable: false)
    q.bind(x, routing_key: 'k')
    got = Queue.new
    q.subscribe(manual_ack: true) do |di, _p, body|
      got << body
      ch.ack(di.delivery_tag)
    end
    x.publish('before', routing_key: 'k')
    eq('before restart', 'before', Timeout.timeout(5) { got.pop })
    puts 'READY'
    $stdout.flush
    f = ENV['WARREN_CLIENTS_RESTARTED_FILE']
    wait_for(60) { f && File.exist?(f) }
    body = nil
    deadline = Time.now + 30
    while body.nil? && Time.now < deadline
      begin
        x.publish('after', routing_key: 'k')
        body = Timeout.timeout(1) { got.pop }
      rescue StandardError => e
        warn "  # not yet: #{e.class}: #{e.message}"
        sleep 0.5
      end
    end
    eq('message through redeclared topology after restart', 'after', body)
    expect(recovered, 'after_recovery_completed never ran')
    q.delete
    x.delete
    conn.close
  end
  finish
end

conn = nil
ch = nil
check('connect') do
  conn = new_conn
  ch = conn.create_channel
  expect(conn.server_properties['capabilities'], 'no capabilities')
end
finish unless ch

check('declare') do
  ae = ch.fanout(name('ae'), auto_delete: true)
  x = ch.topic(name('topic'), auto_delete: true, arguments: { 'alternate-exchange' => ae.name })
  q = ch.queue(name('q'), auto_delete: true, arguments: { 'x-message-ttl' => 60_000, 'x-max-length' => 100 })
  q.bind(x, routing_key: 'a.*')
  qa = ch.queue('', exclusive: true)
  expect(qa.name.start_with?('amq.gen-'), "server-named queue #{qa.name}")
  qa.bind(ae)
  hx = ch.headers(name('headers'), auto_delete: true)
  qh = ch.queue('', exclusive: true).bind(hx, arguments: { 'x-match' => 'all', 'kind' => 'order' })
  x.publish('routed', routing_key: 'a.b')
  x.publish('to-ae', routing_key: 'zz')
  hx.publish('h', headers: { 'kind' => 'order' })
  sleep 0.1
  eq('routed', 'routed', q.pop(manual_ack: false)[2])
  eq('alternate', 'to-ae', qa.pop[2])
  eq('headers', 'h', qh.pop[2])
  eq('passive count', 0, ch.queue_declare(q.name, passive: true).message_count)
end

check('confirm-mandatory') do
  c2 = conn.create_channel
  c2.confirm_select
  returns = []
  x = c2.default_exchange
  x.on_return { |ri, _p, body| returns << [ri.reply_code, ri.reply_text, body] }
  q = c2.queue('', exclusive: true)
  x.publish('ok', routing_key: q.name, mandatory: true)
  x.publish('lost', routing_key: name('nowhere'), mandatory: true)
  expect(c2.wait_for_confirms, "nacked: #{c2.nacked_set.to_a}")
  wait_for { returns.size == 1 }
  eq('returns', [[312, 'NO_ROUTE', 'lost']], returns)
  c2.close
end

check('prefetch-ack') do
  c2 = conn.create_channel
  c2.prefetch(2)
  q = c2.queue('', exclusive: true)
  got = []
  q.subscribe(manual_ack: true) { |di, _p, body| got << [di, body] }
  5.times { |i| c2.default_exchange.publish(i.to_s, routing_key: q.name) }
  sleep 0.5
  eq('unacked deliveries with prefetch 2', 2, got.size)
  acked = 0
  wait_for do
    while acked < got.size
      c2.ack(got[acked][0].delivery_tag)
      acked += 1
    end
    acked == 5
  end
  eq('bodies', %w[0 1 2 3 4], got.map(&:last))
  c2.close
end

check('nack-requeue') do
  q = ch.queue('', exclusive: true)
  ch.default_exchange.publish('again', routing_key: q.name)
  sleep 0.1
  di, = q.pop(manual_ack: true)
  expect(!di.redelivered?, 'first delivery flagged redelivered')
  ch.nack(di.delivery_tag, false, true)
  di2, _, body = q.pop(manual_ack: true)
  expect(di2&.redelivered?, 'redelivered flag not set after nack requeue')
  eq('body', 'again', body)
  ch.ack(di2.delivery_tag)
end

check('dead-letter') do
  dlx = ch.direct(name('dlx'), auto_delete: true)
  dlq = ch.queue('', exclusive: true).bind(dlx, routing_key: 'dead')
  src = ch.queue(name('dl-src'), exclusive: true,
                 arguments: { 'x-dead-letter-exchange' => dlx.name, 'x-dead-letter-routing-key' => 'dead' })
  ch.default_exchange.publish('doomed', routing_key: src.name)
  sleep 0.1
  di, = src.pop(manual_ack: true)
  expect(di, 'message not in source queue')
  ch.reject(di.delivery_tag, false)
  got = nil
  wait_for { (got = dlq.pop)[0] }
  expect(got && got[0], 'nothing dead-lettered')
  h = got[1].headers
  deaths = h['x-death']
  expect(deaths.is_a?(Array) && deaths.size == 1, "x-death: #{deaths.inspect}")
  d = deaths[0]
  eq('x-death', [1, 'rejected', src.name, '', [src.name]],
     [d['count'], d['reason'], d['queue'], d['exchange'], d['routing-keys']])
  expect(d['time'].is_a?(Time), "x-death time: #{d['time'].inspect}")
  eq('x-first-death-queue', src.name, h['x-first-death-queue'])
end

check('rpc') do
  sch = conn.create_channel
  rq = sch.queue(name('rpc'), auto_delete: true)
  rq.subscribe(manual_ack: true) do |di, props, body|
    sch.default_exchange.publish(body.reverse, routing_key: props.reply_to, correlation_id: props.correlation_id)
    sch.ack(di.delivery_tag)
  end
  reply = ch.queue('', exclusive: true)
  replies = {}
  reply.subscribe { |_di, props, body| replies[props.correlation_id] = body }
  %w[abc xyz].each_with_index do |b, i|
    ch.default_exchange.publish(b, routing_key: rq.name, reply_to: reply.name, correlation_id: "id#{i}")
  end
  wait_for { replies.size == 2 }
  eq('replies', { 'id0' => 'cba', 'id1' => 'zyx' }, replies)
  sch.close
end

conn.close
finish
