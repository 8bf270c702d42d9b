// Spring-AMQP-style compatibility test for warren (an AMQP 0-9-1 broker that must
// behave like RabbitMQ 3.x).
//
// Uses only the plain RabbitMQ Java client, but drives it the way Spring AMQP's
// CachingConnectionFactory, RabbitAdmin, RabbitTemplate and
// SimpleMessageListenerContainer do.  Every expected value below was verified
// against RabbitMQ 3.10.
//
// Environment: WARREN_AMQP_HOST (default 127.0.0.1), WARREN_AMQP_PORT (default 5672).
// Output: one "PASS name" / "FAIL name: reason" line per check on stdout, then
// "N passed, M failed".  Exit code 0 only when M == 0.  Diagnostics go to stderr.

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.BuiltinExchangeType;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.ConfirmListener;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.DefaultConsumer;
import com.rabbitmq.client.Envelope;
import com.rabbitmq.client.GetResponse;
import com.rabbitmq.client.LongString;
import com.rabbitmq.client.Method;
import com.rabbitmq.client.ReturnListener;
import com.rabbitmq.client.ShutdownSignalException;

import java.io.IOException;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Date;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.UUID;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;

public class SpringStyleTest {

    // ------------------------------------------------------------------ config

    static final String HOST = envOr("WARREN_AMQP_HOST", "127.0.0.1");
    static final int PORT = Integer.parseInt(envOr("WARREN_AMQP_PORT", "5672"));
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static final String PREFIX = "warren.java." + RUN + ".";

    static final long OVERALL_BUDGET_MS = 55_000;
    static final long PER_CHECK_MS = 15_000;

    static final List<Connection> OPEN = new CopyOnWriteArrayList<>();
    static final List<String> QUEUES = new CopyOnWriteArrayList<>();
    static final List<String> EXCHANGES = new CopyOnWriteArrayList<>();

    static String envOr(String k, String d) {
        String v = System.getenv(k);
        return v == null || v.isEmpty() ? d : v;
    }

    static void info(String s) {
        System.err.println("  # " + s);
    }

    // ------------------------------------------------------------------ helpers

    interface Action {
        void run() throws Exception;
    }

    static ConnectionFactory factory() {
        // Defaults (guest/guest, vhost "/", requested heartbeat 60, channel max 2047,
        // frame max 0) as Spring's CachingConnectionFactory leaves them; Spring
        // disables the client's own automatic recovery.
        ConnectionFactory f = new ConnectionFactory();
        f.setHost(HOST);
        f.setPort(PORT);
        f.setAutomaticRecoveryEnabled(false);
        f.setTopologyRecoveryEnabled(false);
        f.setConnectionTimeout(5000);
        f.setHandshakeTimeout(5000);
        f.setShutdownTimeout(2000);
        f.setChannelRpcTimeout(8000);
        return f;
    }

    static Connection conn(String name) throws Exception {
        Connection c = factory().newConnection("SpringStyleTest#" + name);
        OPEN.add(c);
        return c;
    }

    static String q(String suffix) {
        String n = PREFIX + suffix;
        QUEUES.add(n);
        return n;
    }

    static String x(String suffix) {
        String n = PREFIX + "x." + suffix;
        EXCHANGES.add(n);
        return n;
    }

    static void check(boolean cond, String msg) {
        if (!cond) throw new AssertionError(msg);
    }

    static void eq(String what, Object expected, Object actual) {
        if (expected == null ? actual != null : !expected.equals(actual)) {
            throw new AssertionError(what + ": expected <" + expected + "> but got <" + actual + ">");
        }
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String s(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    static boolean waitFor(BooleanSupplier cond, long timeoutMs) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (System.nanoTime() < end) {
            if (cond.getAsBoolean()) return true;
            Thread.sleep(10);
        }
        return cond.getAsBoolean();
    }

    static void await(CountDownLatch l, long ms, String what) throws InterruptedException {
        if (!l.await(ms, TimeUnit.MILLISECONDS)) throw new AssertionError("timed out waiting for " + what);
    }

    static AMQP.BasicProperties springProps(String correlationId) {
        // What Spring's SimpleMessageConverter/DefaultMessagePropertiesConverter puts
        // on a String message: text/plain, UTF-8, persistent, priority 0.
        Map<String, Object> headers = new HashMap<>();
        headers.put("spring_returned_message_correlation", correlationId);
        return new AMQP.BasicProperties.Builder()
                .contentType("text/plain")
                .contentEncoding("UTF-8")
                .headers(headers)
                .deliveryMode(2)
                .priority(0)
                .correlationId(correlationId)
                .build();
    }

    /** Runs {@code a}, which must make the broker close the channel (not the connection). */
    static AMQP.Channel.Close expectChannelClose(Action a) throws Exception {
        ShutdownSignalException sse = null;
        try {
            a.run();
        } catch (ShutdownSignalException e) {
            sse = e;
        } catch (IOException e) {
            if (e.getCause() instanceof ShutdownSignalException) {
                sse = (ShutdownSignalException) e.getCause();
            } else {
                throw e;
            }
        }
        if (sse == null) throw new AssertionError("expected the broker to close the channel, but the operation succeeded");
        return channelClose(sse);
    }

    static AMQP.Channel.Close channelClose(ShutdownSignalException sse) {
        Method m = sse.getReason();
        if (sse.isHardError() || !(m instanceof AMQP.Channel.Close)) {
            throw new AssertionError("expected channel.close, got " + (sse.isHardError() ? "connection-level " : "") + m);
        }
        return (AMQP.Channel.Close) m;
    }

    static void assertClose(AMQP.Channel.Close c, int code, String text, int classId, int methodId) {
        info("channel.close " + c.getReplyCode() + " '" + c.getReplyText() + "' class=" + c.getClassId() + " method=" + c.getMethodId());
        eq("reply code", code, c.getReplyCode());
        eq("reply text", text, c.getReplyText());
        eq("class id", classId, c.getClassId());
        eq("method id", methodId, c.getMethodId());
    }

    /** Publishes with confirms on a fresh channel and waits, so routing has happened. */
    static void publishConfirmed(Connection c, String exchange, String rk, String... bodies) throws Exception {
        Channel ch = c.createChannel();
        ch.confirmSelect();
        for (String body : bodies) ch.basicPublish(exchange, rk, springProps(UUID.randomUUID().toString()), b(body));
        ch.waitForConfirmsOrDie(5000);
        ch.close();
    }

    static List<String> drain(Channel ch, String queue) throws IOException {
        List<String> out = new ArrayList<>();
        GetResponse r;
        while ((r = ch.basicGet(queue, true)) != null) out.add(s(r.getBody()));
        return out;
    }

    static Object norm(Object o) {
        if (o instanceof LongString || o instanceof String) return "str:" + o;
        if (o instanceof byte[]) return "bytes" + Arrays.toString((byte[]) o);
        if (o instanceof Map) {
            Map<String, Object> m = new java.util.TreeMap<>();
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) m.put(e.getKey().toString(), norm(e.getValue()));
            return m;
        }
        if (o instanceof List) {
            List<Object> l = new ArrayList<>();
            for (Object e : (List<?>) o) l.add(norm(e));
            return l;
        }
        if (o == null) return null;
        return o.getClass().getSimpleName() + ":" + o;
    }

    // ------------------------------------------------------------------ checks

    /** Spring Boot's RabbitHealthIndicator reads server property "version";
     *  Spring's PublisherCallbackChannel relies on the advertised capabilities. */
    static void connectionServerProperties() throws Exception {
        ConnectionFactory f = factory(); // guest/guest, vhost "/"
        eq("default username", "guest", f.getUsername());
        Connection c = f.newConnection("SpringStyleTest#props");
        OPEN.add(c);
        Map<String, Object> props = c.getServerProperties();
        info("server properties keys: " + new java.util.TreeSet<>(props.keySet()));
        Object caps = props.get("capabilities");
        check(caps instanceof Map, "server property 'capabilities' missing or not a table: " + caps);
        @SuppressWarnings("unchecked")
        Map<String, Object> cap = (Map<String, Object>) caps;
        info("capabilities: " + new java.util.TreeMap<>(cap));
        for (String k : new String[] {"publisher_confirms", "basic.nack", "consumer_cancel_notify",
                "exchange_exchange_bindings", "per_consumer_qos", "direct_reply_to",
                "authentication_failure_close"}) {
            eq("capability " + k, Boolean.TRUE, cap.get(k));
        }
        Object version = props.get("version");
        check(version instanceof LongString && version.toString().length() > 0,
                "server property 'version' missing or not a non-empty longstr: " + version);
        info("product=" + props.get("product") + " version=" + version);
        // Negotiated tuning with client defaults (RabbitMQ: channel_max 2047, frame_max 131072, heartbeat 60).
        eq("negotiated channel max", 2047, c.getChannelMax());
        eq("negotiated frame max", 131072, c.getFrameMax());
        eq("negotiated heartbeat", 60, c.getHeartbeat());
        check(c.isOpen(), "connection not open");
        c.close(3000);
    }

    /** RabbitAdmin.declareQueue: durable queue with arguments; redeclare equivalence. */
    static void adminQueueDeclare() throws Exception {
        Connection c = conn("admin-queue");
        String name = q("admin.q");
        Map<String, Object> args = new HashMap<>();
        args.put("x-message-ttl", 60000);
        args.put("x-max-length", 10000);
        Channel ch = c.createChannel();
        AMQP.Queue.DeclareOk ok = ch.queueDeclare(name, true, false, false, args);
        eq("declare-ok queue", name, ok.getQueue());
        eq("declare-ok message count", 0, ok.getMessageCount());
        eq("declare-ok consumer count", 0, ok.getConsumerCount());
        // Redeclare with identical arguments (every RabbitAdmin on every app start does this).
        ok = ch.queueDeclare(name, true, false, false, new HashMap<>(args));
        eq("redeclare-ok queue", name, ok.getQueue());
        ok = ch.queueDeclarePassive(name);
        eq("passive declare-ok queue", name, ok.getQueue());

        // Different x-message-ttl -> 406 on the channel.
        Map<String, Object> args2 = new HashMap<>(args);
        args2.put("x-message-ttl", 30000);
        final Channel ch1 = ch;
        AMQP.Channel.Close cl = expectChannelClose(() -> ch1.queueDeclare(name, true, false, false, args2));
        assertClose(cl, 406, "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '" + name
                + "' in vhost '/': received '30000' but current is '60000'", 50, 10);
        check(!ch1.isOpen(), "channel should be closed after 406");
        check(c.isOpen(), "connection should stay open after 406");

        // Different durable flag.
        final Channel ch2 = c.createChannel();
        cl = expectChannelClose(() -> ch2.queueDeclare(name, false, false, false, args));
        assertClose(cl, 406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '" + name
                + "' in vhost '/': received 'false' but current is 'true'", 50, 10);

        // Argument missing on redeclare.
        final Channel ch3 = c.createChannel();
        Map<String, Object> args3 = new HashMap<>(args);
        args3.remove("x-message-ttl");
        cl = expectChannelClose(() -> ch3.queueDeclare(name, true, false, false, args3));
        assertClose(cl, 406, "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '" + name
                + "' in vhost '/': received none but current is the value '60000' of type 'signedint'", 50, 10);

        // Spring's AnonymousQueue-style server-named exclusive queue.
        Channel ch4 = c.createChannel();
        AMQP.Queue.DeclareOk anon = ch4.queueDeclare();
        check(anon.getQueue().startsWith("amq.gen-"), "server-named queue should start with amq.gen-: " + anon.getQueue());
        Connection other = conn("admin-queue-other");
        final Channel och = other.createChannel();
        cl = expectChannelClose(() -> och.queueDeclarePassive(anon.getQueue()));
        assertClose(cl, 405, "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '" + anon.getQueue()
                + "' in vhost '/'. It could be originally declared on another connection or the exclusive property"
                + " value does not match that of the original declaration.", 50, 10);
        check(other.isOpen(), "other connection should stay open");
        other.close(3000);
        c.close(3000);
    }

    /** RabbitAdmin.declareExchange / declareBinding (queue and exchange-to-exchange). */
    static void adminExchangesAndBindings() throws Exception {
        Connection c = conn("admin-exchanges");
        Channel ch = c.createChannel();
        String topic = x("topic"), direct = x("direct"), fanout = x("fanout"), e2 = x("e2e.dest");
        // RabbitAdmin: exchangeDeclare(name, type, durable, autoDelete, internal, args)
        ch.exchangeDeclare(topic, BuiltinExchangeType.TOPIC, true, false, false, null);
        ch.exchangeDeclare(direct, "direct", true, false, false, new HashMap<>());
        ch.exchangeDeclare(fanout, "fanout", true, false, false, null);
        ch.exchangeDeclare(e2, "fanout", true, false, false, null);
        ch.exchangeDeclare(topic, "topic", true, false, false, null); // redeclare OK
        ch.exchangeDeclarePassive(direct);

        String qTopic = q("bind.topic"), qDirect = q("bind.direct"), qFanout = q("bind.fanout"), qE2e = q("bind.e2e");
        for (String n : new String[] {qTopic, qDirect, qFanout, qE2e}) ch.queueDeclare(n, true, false, false, null);
        ch.queueBind(qTopic, topic, "order.*.created");
        ch.queueBind(qDirect, direct, "rk1");
        ch.queueBind(qFanout, fanout, "ignored");
        ch.queueBind(qE2e, e2, "");
        ch.exchangeBind(e2, topic, "order.#"); // destination, source, key
        ch.queueBind(qTopic, topic, "order.*.created"); // duplicate binding is a no-op

        publishConfirmed(c, topic, "order.eu.created", "t1");
        publishConfirmed(c, topic, "order.x", "t2");
        publishConfirmed(c, topic, "other.eu.created", "t3");
        publishConfirmed(c, direct, "rk1", "d1");
        publishConfirmed(c, direct, "rk2", "d2");
        publishConfirmed(c, fanout, "anything", "f1");

        GetResponse g = ch.basicGet(qE2e, false);
        check(g != null, "e2e-routed message missing");
        eq("e2e envelope exchange (the exchange published to)", topic, g.getEnvelope().getExchange());
        eq("e2e envelope routing key", "order.eu.created", g.getEnvelope().getRoutingKey());
        eq("e2e message count (remaining)", 1, g.getMessageCount());
        eq("e2e redelivered", false, g.getEnvelope().isRedeliver());
        eq("e2e delivery tag", 1L, g.getEnvelope().getDeliveryTag());
        ch.basicAck(g.getEnvelope().getDeliveryTag(), false);
        eq("e2e remaining", Arrays.asList("t2"), drain(ch, qE2e));
        eq("topic queue", Arrays.asList("t1"), drain(ch, qTopic));
        eq("direct queue", Arrays.asList("d1"), drain(ch, qDirect));
        eq("fanout queue", Arrays.asList("f1"), drain(ch, qFanout));

        // RabbitAdmin.removeBinding
        ch.exchangeUnbind(e2, topic, "order.#");
        ch.queueUnbind(qDirect, direct, "rk1");
        publishConfirmed(c, topic, "order.eu.created", "t4");
        publishConfirmed(c, direct, "rk1", "d3");
        eq("topic queue after unbind", Arrays.asList("t4"), drain(ch, qTopic));
        eq("e2e queue after exchange unbind", Collections.emptyList(), drain(ch, qE2e));
        eq("direct queue after unbind", Collections.emptyList(), drain(ch, qDirect));

        // Redeclare with a different type -> 406.
        final Channel ch1 = ch;
        AMQP.Channel.Close cl = expectChannelClose(() -> ch1.exchangeDeclare(topic, "direct", true, false, false, null));
        assertClose(cl, 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '" + topic
                + "' in vhost '/': received 'direct' but current is 'topic'", 40, 10);
        // Passive declare of a missing exchange -> 404.
        final Channel ch2 = c.createChannel();
        String missing = PREFIX + "x.missing";
        cl = expectChannelClose(() -> ch2.exchangeDeclarePassive(missing));
        assertClose(cl, 404, "NOT_FOUND - no exchange '" + missing + "' in vhost '/'", 40, 10);
        check(c.isOpen(), "connection should stay open");
        c.close(3000);
    }

    /** RabbitTemplate with publisher confirms + CorrelationData (PublisherCallbackChannelImpl). */
    static void templateConfirms1000() throws Exception {
        final int n = 1000;
        Connection c = conn("template-confirms");
        Channel admin = c.createChannel();
        String queue = q("confirms");
        admin.queueDeclare(queue, true, false, false, null);

        Channel ch = c.createChannel();
        ch.confirmSelect();
        eq("first publish seq no", 1L, ch.getNextPublishSeqNo());
        final ConcurrentSkipListMap<Long, String> pending = new ConcurrentSkipListMap<>();
        final Map<String, AtomicInteger> acks = new ConcurrentHashMap<>();
        final Map<String, AtomicInteger> nacks = new ConcurrentHashMap<>();
        final List<String> errors = new CopyOnWriteArrayList<>();
        final AtomicInteger returns = new AtomicInteger();
        final AtomicInteger multipleAcks = new AtomicInteger();
        final CountDownLatch done = new CountDownLatch(n);
        ch.addReturnListener((replyCode, replyText, exchange, routingKey, props, body) -> returns.incrementAndGet());
        ch.addConfirmListener(new ConfirmListener() {
            void handle(long tag, boolean multiple, boolean ack) {
                if (multiple) multipleAcks.incrementAndGet();
                if (!pending.containsKey(tag)) errors.add((ack ? "ack" : "nack") + " for unknown/already confirmed seq " + tag);
                NavigableMap<Long, String> hit = multiple ? pending.headMap(tag, true) : pending.subMap(tag, true, tag, true);
                for (Map.Entry<Long, String> e : new ArrayList<>(hit.entrySet())) {
                    if (pending.remove(e.getKey()) != null) {
                        (ack ? acks : nacks).computeIfAbsent(e.getValue(), k -> new AtomicInteger()).incrementAndGet();
                        done.countDown();
                    }
                }
            }

            public void handleAck(long tag, boolean multiple) {
                handle(tag, multiple, true);
            }

            public void handleNack(long tag, boolean multiple) {
                handle(tag, multiple, false);
            }
        });
        for (int i = 0; i < n; i++) {
            String corr = "corr-" + i;
            pending.put(ch.getNextPublishSeqNo(), corr);
            ch.basicPublish("", queue, true, springProps(corr), b("payload-" + i));
        }
        eq("next seq no after " + n + " publishes", (long) n + 1, ch.getNextPublishSeqNo());
        await(done, 10_000, "all " + n + " confirms (" + done.getCount() + " outstanding)");
        check(errors.isEmpty(), "confirm errors: " + errors);
        check(nacks.isEmpty(), "unexpected nacks: " + nacks.keySet());
        eq("acked correlations", n, acks.size());
        for (int i = 0; i < n; i++) {
            AtomicInteger a = acks.get("corr-" + i);
            check(a != null && a.get() == 1, "correlation corr-" + i + " acked " + (a == null ? 0 : a.get()) + " times");
        }
        Thread.sleep(200); // let any stray extra confirm/return arrive
        check(errors.isEmpty(), "confirm errors: " + errors);
        eq("returns for routable publishes", 0, returns.get());
        info("confirms: " + multipleAcks.get() + " of the ack frames had multiple=true");
        eq("queue depth after confirms", 1000, admin.queueDeclarePassive(queue).getMessageCount());
        admin.queuePurge(queue);
        c.close(3000);
    }

    /** RabbitTemplate mandatory=true + ReturnCallback, in confirm mode. */
    static void mandatoryReturn() throws Exception {
        Connection c = conn("mandatory");
        Channel ch = c.createChannel();
        String ex = x("mandatory");
        ch.exchangeDeclare(ex, "direct", true, false, false, null);
        String rk = "no.such.binding." + RUN;
        ch.confirmSelect();
        final List<String> events = new CopyOnWriteArrayList<>();
        final AtomicReference<Object[]> ret = new AtomicReference<>();
        final CountDownLatch acked = new CountDownLatch(1);
        ch.addReturnListener(new ReturnListener() {
            public void handleReturn(int replyCode, String replyText, String exchange, String routingKey,
                                     AMQP.BasicProperties props, byte[] body) {
                events.add("return");
                ret.set(new Object[] {replyCode, replyText, exchange, routingKey, props, body});
            }
        });
        ch.addConfirmListener(new ConfirmListener() {
            public void handleAck(long tag, boolean multiple) {
                events.add("ack:" + tag + ":" + multiple);
                acked.countDown();
            }

            public void handleNack(long tag, boolean multiple) {
                events.add("nack:" + tag + ":" + multiple);
                acked.countDown();
            }
        });
        long seq = ch.getNextPublishSeqNo();
        ch.basicPublish(ex, rk, true, springProps("corr-return"), b("unroutable"));
        await(acked, 5000, "confirm of the unroutable publish");
        Thread.sleep(100);
        eq("event order", Arrays.asList("return", "ack:" + seq + ":false"), new ArrayList<>(events));
        Object[] r = ret.get();
        eq("reply code", 312, r[0]);
        eq("reply text", "NO_ROUTE", r[1]);
        eq("return exchange", ex, r[2]);
        eq("return routing key", rk, r[3]);
        AMQP.BasicProperties p = (AMQP.BasicProperties) r[4];
        eq("returned correlation id", "corr-return", p.getCorrelationId());
        eq("returned spring_returned_message_correlation header", "corr-return",
                String.valueOf(p.getHeaders().get("spring_returned_message_correlation")));
        eq("returned body", "unroutable", s((byte[]) r[5]));

        // Default exchange, no such queue: same thing.
        events.clear();
        final CountDownLatch acked2 = new CountDownLatch(1);
        ch.addConfirmListener(new ConfirmListener() {
            public void handleAck(long tag, boolean multiple) { acked2.countDown(); }
            public void handleNack(long tag, boolean multiple) { acked2.countDown(); }
        });
        long seq2 = ch.getNextPublishSeqNo();
        String noQueue = PREFIX + "no-such-queue";
        ch.basicPublish("", noQueue, true, springProps("corr-return-2"), b("unroutable2"));
        await(acked2, 5000, "confirm of the second unroutable publish");
        Thread.sleep(100);
        eq("event order (default exchange)", Arrays.asList("return", "ack:" + seq2 + ":false"), new ArrayList<>(events));
        r = ret.get();
        eq("reply code", 312, r[0]);
        eq("reply text", "NO_ROUTE", r[1]);
        eq("return exchange", "", r[2]);
        eq("return routing key", noQueue, r[3]);
        c.close(3000);
    }

    /** Headers and properties Spring sets must round-trip unchanged (types included). */
    static void messagePropertiesRoundTrip() throws Exception {
        Connection c = conn("props");
        Channel ch = c.createChannel();
        String queue = q("props");
        ch.queueDeclare(queue, true, false, false, null);
        Map<String, Object> nested = new LinkedHashMap<>();
        nested.put("inner", "v");
        nested.put("n", 7);
        Map<String, Object> headers = new LinkedHashMap<>();
        headers.put("__TypeId__", "com.example.OrderCreated");
        headers.put("spring_listener_return_correlation", UUID.randomUUID().toString());
        headers.put("x-int", 42);
        headers.put("x-long", 1234567890123L);
        headers.put("x-bool", true);
        headers.put("x-double", 1.5d);
        headers.put("x-decimal", new BigDecimal("12.34"));
        headers.put("x-bytes", new byte[] {1, 2, 3});
        headers.put("x-time", new Date(1700000000000L));
        headers.put("x-list", Arrays.asList("a", 1, false));
        headers.put("x-table", nested);
        Date ts = new Date(1700000001000L);
        AMQP.BasicProperties sent = new AMQP.BasicProperties.Builder()
                .contentType("application/json").contentEncoding("UTF-8").headers(headers)
                .deliveryMode(2).priority(0).correlationId("corr-props").replyTo("some.reply.queue")
                .expiration("600000").messageId("msg-1").timestamp(ts).type("order.created")
                .userId("guest").appId("spring-style-test").build();
        ch.confirmSelect();
        ch.basicPublish("", queue, sent, b("{\"id\":1}"));
        ch.waitForConfirmsOrDie(5000);
        final BlockingQueue<Object[]> got = new ArrayBlockingQueue<>(4);
        ch.basicConsume(queue, false, "props-consumer", false, false, null, new DefaultConsumer(ch) {
            public void handleDelivery(String tag, Envelope env, AMQP.BasicProperties props, byte[] body) {
                got.add(new Object[] {env, props, body});
            }
        });
        Object[] d = got.poll(5, TimeUnit.SECONDS);
        check(d != null, "message not delivered");
        AMQP.BasicProperties p = (AMQP.BasicProperties) d[1];
        eq("body", "{\"id\":1}", s((byte[]) d[2]));
        eq("contentType", "application/json", p.getContentType());
        eq("contentEncoding", "UTF-8", p.getContentEncoding());
        eq("deliveryMode", 2, p.getDeliveryMode());
        eq("priority", 0, p.getPriority());
        eq("correlationId", "corr-props", p.getCorrelationId());
        eq("replyTo", "some.reply.queue", p.getReplyTo());
        eq("expiration", "600000", p.getExpiration());
        eq("messageId", "msg-1", p.getMessageId());
        eq("timestamp", ts, p.getTimestamp());
        eq("type", "order.created", p.getType());
        eq("userId", "guest", p.getUserId());
        eq("appId", "spring-style-test", p.getAppId());
        eq("clusterId", null, p.getClusterId());
        eq("headers", norm(headers), norm(p.getHeaders()));
        ch.basicAck(((Envelope) d[0]).getDeliveryTag(), false);

        // user-id must match the authenticated user.
        final Channel ch2 = c.createChannel();
        final CountDownLatch closed = new CountDownLatch(1);
        final AtomicReference<ShutdownSignalException> why = new AtomicReference<>();
        ch2.addShutdownListener(e -> { why.set(e); closed.countDown(); });
        ch2.basicPublish("", queue, new AMQP.BasicProperties.Builder().userId("mallory").build(), b("x"));
        await(closed, 5000, "channel close after user_id mismatch");
        assertClose(channelClose(why.get()), 406,
                "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'", 60, 40);
        check(c.isOpen(), "connection should stay open");
        c.close(3000);
    }

    /** SimpleMessageListenerContainer: prefetch 250, manual ack, batched multiple acks. */
    static void listenerContainerConsume() throws Exception {
        final int n = 1000;
        Connection c = conn("listener");
        Channel admin = c.createChannel();
        String ex = x("listener");
        String queue = q("listener");
        admin.exchangeDeclare(ex, "direct", true, false, false, null);
        admin.queueDeclare(queue, true, false, false, null);
        admin.queueBind(queue, ex, "listener.key");

        Channel pub = c.createChannel();
        pub.confirmSelect();
        for (int i = 0; i < n; i++) pub.basicPublish(ex, "listener.key", springProps("c" + i), b("msg-" + i));
        pub.waitForConfirmsOrDie(10_000);

        Channel ch = c.createChannel();
        ch.basicQos(250);
        final String tag = "spring-listener-" + RUN;
        final List<String> errors = new CopyOnWriteArrayList<>();
        final AtomicInteger received = new AtomicInteger();
        final CountDownLatch all = new CountDownLatch(n);
        final CountDownLatch consumeOk = new CountDownLatch(1);
        final Channel fch = ch;
        String returned = ch.basicConsume(queue, false, tag, false, false, new HashMap<>(), new DefaultConsumer(ch) {
            public void handleConsumeOk(String consumerTag) {
                if (!tag.equals(consumerTag)) errors.add("consumeOk tag " + consumerTag);
                consumeOk.countDown();
            }

            public void handleDelivery(String consumerTag, Envelope env, AMQP.BasicProperties props, byte[] body) throws IOException {
                int i = received.getAndIncrement();
                if (!tag.equals(consumerTag)) errors.add("delivery #" + i + " consumer tag " + consumerTag);
                if (!("msg-" + i).equals(s(body))) errors.add("delivery #" + i + " body " + s(body));
                if (env.getDeliveryTag() != i + 1) errors.add("delivery #" + i + " delivery tag " + env.getDeliveryTag());
                if (env.isRedeliver()) errors.add("delivery #" + i + " redelivered");
                if (!ex.equals(env.getExchange()) || !"listener.key".equals(env.getRoutingKey()))
                    errors.add("delivery #" + i + " envelope " + env);
                if (!("c" + i).equals(props.getCorrelationId())) errors.add("delivery #" + i + " correlation " + props.getCorrelationId());
                if ((i + 1) % 50 == 0) fch.basicAck(env.getDeliveryTag(), true); // Spring's txSize/batch ack
                all.countDown();
            }
        });
        eq("basicConsume returned tag", tag, returned);
        await(consumeOk, 5000, "handleConsumeOk");
        await(all, 15_000, "all " + n + " deliveries (got " + received.get() + ")");
        Thread.sleep(100);
        check(errors.isEmpty(), errors.size() + " errors, first: " + (errors.isEmpty() ? "" : errors.get(0)));
        eq("deliveries", n, received.get());
        ch.basicCancel(tag); // synchronous: acks sent before it have been processed
        AMQP.Queue.DeclareOk ok = ch.queueDeclarePassive(queue);
        eq("queue depth after acking everything", 0, ok.getMessageCount());
        eq("consumers after cancel", 0, ok.getConsumerCount());
        c.close(3000);
    }

    /** basicQos(250): with no acks, exactly 250 deliveries are outstanding. */
    static void prefetchLimit() throws Exception {
        Connection c = conn("prefetch");
        Channel admin = c.createChannel();
        String queue = q("prefetch");
        admin.queueDeclare(queue, true, false, false, null);
        Channel pub = c.createChannel();
        pub.confirmSelect();
        for (int i = 0; i < 1000; i++) pub.basicPublish("", queue, springProps("p" + i), b("p-" + i));
        pub.waitForConfirmsOrDie(10_000);

        Channel ch = c.createChannel();
        ch.basicQos(250);
        final AtomicInteger count = new AtomicInteger();
        final AtomicReference<Long> lastTag = new AtomicReference<>(0L);
        ch.basicConsume(queue, false, "prefetch-" + RUN, new DefaultConsumer(ch) {
            public void handleDelivery(String consumerTag, Envelope env, AMQP.BasicProperties props, byte[] body) {
                count.incrementAndGet();
                lastTag.set(env.getDeliveryTag());
            }
        });
        check(waitFor(() -> count.get() >= 250, 5000), "only " + count.get() + " deliveries within 5 s");
        Thread.sleep(700);
        eq("deliveries with prefetch 250 and no acks", 250, count.get());
        AMQP.Queue.DeclareOk ok = admin.queueDeclarePassive(queue);
        eq("ready messages", 750, ok.getMessageCount());
        eq("consumer count", 1, ok.getConsumerCount());
        // Ack the first 50 (multiple) -> exactly 50 more.
        ch.basicAck(50, true);
        check(waitFor(() -> count.get() >= 300, 5000), "after acking 50: " + count.get() + " deliveries");
        Thread.sleep(500);
        eq("deliveries after multiple-ack of 50", 300, count.get());
        eq("last delivery tag", 300L, lastTag.get());
        // Closing the channel requeues the 250 unacked.
        ch.close();
        check(waitFor(() -> {
            try {
                return admin.queueDeclarePassive(queue).getMessageCount() == 950;
            } catch (IOException e) {
                return false;
            }
        }, 3000), "ready messages after channel close: " + admin.queueDeclarePassive(queue).getMessageCount());
        admin.queuePurge(queue);
        c.close(3000);
    }

    /** Container stop -> basicCancel -> handleCancelOk; queue deleted -> handleCancel. */
    static void consumerCancel() throws Exception {
        Connection c = conn("cancel");
        Channel ch = c.createChannel();
        String q1 = q("cancel.client"), q2 = q("cancel.server");
        ch.queueDeclare(q1, true, false, false, null);
        ch.queueDeclare(q2, false, false, false, null);
        final BlockingQueue<String> events = new LinkedBlockingQueue<>();
        DefaultConsumer consumer1 = new DefaultConsumer(ch) {
            public void handleCancelOk(String t) { events.add("cancelOk:" + t); }
            public void handleCancel(String t) { events.add("cancel:" + t); }
        };
        String t1 = "spring-cancel-" + RUN;
        eq("consume tag", t1, ch.basicConsume(q1, false, t1, consumer1));
        ch.basicCancel(t1);
        eq("first event", "cancelOk:" + t1, events.poll(5, TimeUnit.SECONDS));

        // Server-generated tag + server-initiated cancel (queue deleted elsewhere).
        DefaultConsumer consumer2 = new DefaultConsumer(ch) {
            public void handleCancelOk(String t) { events.add("cancelOk:" + t); }
            public void handleCancel(String t) { events.add("cancel:" + t); }
        };
        String t2 = ch.basicConsume(q2, false, consumer2);
        check(t2.startsWith("amq.ctag-"), "server-generated consumer tag should start with amq.ctag-: " + t2);
        Connection other = conn("cancel-other");
        Channel och = other.createChannel();
        eq("queue.delete-ok message count", 0, och.queueDelete(q2).getMessageCount());
        eq("server cancel event", "cancel:" + t2, events.poll(5, TimeUnit.SECONDS));
        Thread.sleep(100);
        eq("no further events", null, events.poll());
        check(ch.isOpen(), "channel should stay open after server-initiated cancel");
        ch.basicQos(10); // channel still usable
        other.close(3000);
        c.close(3000);
    }

    /** Listener throws -> basicReject/basicNack with requeue -> redelivered=true. */
    static void rejectNackRequeue() throws Exception {
        Connection c = conn("reject");
        Channel ch = c.createChannel();
        String queue = q("reject");
        ch.queueDeclare(queue, true, false, false, null);
        publishConfirmed(c, "", queue, "m1");
        final BlockingQueue<Envelope> got = new LinkedBlockingQueue<>();
        ch.basicQos(1);
        ch.basicConsume(queue, false, "reject-" + RUN, new DefaultConsumer(ch) {
            public void handleDelivery(String t, Envelope env, AMQP.BasicProperties p, byte[] body) {
                got.add(env);
            }
        });
        Envelope e1 = got.poll(5, TimeUnit.SECONDS);
        check(e1 != null, "first delivery missing");
        eq("first delivery redelivered", false, e1.isRedeliver());
        eq("first delivery tag", 1L, e1.getDeliveryTag());
        ch.basicReject(e1.getDeliveryTag(), true);
        Envelope e2 = got.poll(5, TimeUnit.SECONDS);
        check(e2 != null, "redelivery after basicReject(requeue=true) missing");
        eq("redelivered after reject", true, e2.isRedeliver());
        eq("delivery tag after reject", 2L, e2.getDeliveryTag());
        ch.basicNack(e2.getDeliveryTag(), false, true);
        Envelope e3 = got.poll(5, TimeUnit.SECONDS);
        check(e3 != null, "redelivery after basicNack(requeue=true) missing");
        eq("redelivered after nack", true, e3.isRedeliver());
        eq("delivery tag after nack", 3L, e3.getDeliveryTag());
        // Spring's default for a rejected message with defaultRequeueRejected=false: nack without requeue -> dropped.
        ch.basicNack(e3.getDeliveryTag(), false, false);
        Thread.sleep(300);
        eq("no more deliveries after nack(requeue=false)", null, got.poll());
        eq("queue depth", 0, ch.queueDeclarePassive(queue).getMessageCount());

        // basicGet (RabbitTemplate.receive) sees the redelivered flag too.
        Channel g = c.createChannel();
        ch.basicCancel("reject-" + RUN);
        publishConfirmed(c, "", queue, "m2");
        GetResponse r1 = g.basicGet(queue, false);
        check(r1 != null, "basicGet returned nothing");
        eq("get redelivered", false, r1.getEnvelope().isRedeliver());
        g.basicReject(r1.getEnvelope().getDeliveryTag(), true);
        GetResponse r2 = g.basicGet(queue, false);
        check(r2 != null, "basicGet after reject returned nothing");
        eq("get body", "m2", s(r2.getBody()));
        eq("get redelivered after reject", true, r2.getEnvelope().isRedeliver());
        g.basicAck(r2.getEnvelope().getDeliveryTag(), false);
        eq("queue empty", null, g.basicGet(queue, true));
        c.close(3000);
    }

    /** RabbitTemplate.sendAndReceive with direct reply-to. */
    static void directReplyTo() throws Exception {
        Connection server = conn("rpc-server");
        Connection client = conn("rpc-client");
        Channel sch = server.createChannel();
        String requests = q("rpc.requests");
        sch.queueDeclare(requests, false, false, true, null);
        final List<String> seenReplyTo = new CopyOnWriteArrayList<>();
        final Channel fsch = sch;
        sch.basicConsume(requests, false, "responder-" + RUN, new DefaultConsumer(sch) {
            public void handleDelivery(String t, Envelope env, AMQP.BasicProperties p, byte[] body) throws IOException {
                seenReplyTo.add(p.getReplyTo());
                AMQP.BasicProperties reply = new AMQP.BasicProperties.Builder()
                        .correlationId(p.getCorrelationId()).contentType("text/plain").build();
                fsch.basicPublish("", p.getReplyTo(), reply, b("reply:" + s(body)));
                fsch.basicAck(env.getDeliveryTag(), false);
            }
        });

        Channel cch = client.createChannel();
        final BlockingQueue<Object[]> replies = new LinkedBlockingQueue<>();
        String replyTag = cch.basicConsume("amq.rabbitmq.reply-to", true, new DefaultConsumer(cch) {
            public void handleDelivery(String t, Envelope env, AMQP.BasicProperties p, byte[] body) {
                replies.add(new Object[] {t, env, p, s(body)});
            }
        });
        check(replyTag.startsWith("amq.ctag-"), "reply consumer tag: " + replyTag);
        for (int i = 0; i < 5; i++) {
            String corr = UUID.randomUUID().toString();
            AMQP.BasicProperties req = new AMQP.BasicProperties.Builder()
                    .replyTo("amq.rabbitmq.reply-to").correlationId(corr).contentType("text/plain").build();
            cch.basicPublish("", requests, req, b("req-" + i));
            Object[] r = replies.poll(5, TimeUnit.SECONDS);
            check(r != null, "reply " + i + " not received");
            Envelope env = (Envelope) r[1];
            AMQP.BasicProperties rp = (AMQP.BasicProperties) r[2];
            eq("reply consumer tag", replyTag, r[0]);
            eq("reply correlation id", corr, rp.getCorrelationId());
            eq("reply body", "reply:req-" + i, r[3]);
            String rt = seenReplyTo.get(i);
            check(rt != null && rt.startsWith("amq.rabbitmq.reply-to.") && rt.length() > "amq.rabbitmq.reply-to.".length(),
                    "responder saw replyTo '" + rt + "'");
            eq("reply envelope exchange", "", env.getExchange());
            eq("reply envelope routing key", rt, env.getRoutingKey());
            eq("reply redelivered", false, env.isRedeliver());
            if (i == 0) info("direct reply-to address: " + rt);
        }
        eq("same reply-to address per channel", 1, new java.util.HashSet<>(seenReplyTo).size());

        // Publishing with reply-to without the reply consumer on that channel -> 406.
        final Channel bad = client.createChannel();
        final CountDownLatch closed = new CountDownLatch(1);
        final AtomicReference<ShutdownSignalException> why = new AtomicReference<>();
        bad.addShutdownListener(e -> { why.set(e); closed.countDown(); });
        bad.basicPublish("", requests, new AMQP.BasicProperties.Builder().replyTo("amq.rabbitmq.reply-to").build(), b("x"));
        await(closed, 5000, "channel close after reply-to publish without consumer");
        assertClose(channelClose(why.get()), 406, "PRECONDITION_FAILED - fast reply consumer does not exist", 60, 40);
        // The reply consumer must be no-ack.
        final Channel bad2 = client.createChannel();
        AMQP.Channel.Close cl = expectChannelClose(() -> bad2.basicConsume("amq.rabbitmq.reply-to", false, new DefaultConsumer(bad2)));
        assertClose(cl, 406, "PRECONDITION_FAILED - reply consumer cannot acknowledge", 60, 20);
        check(client.isOpen(), "client connection should stay open");
        client.close(3000);
        server.close(3000);
    }

    /** Channel-level errors close only that channel (CachingConnectionFactory relies on this). */
    static void channelErrorIsolation() throws Exception {
        Connection c = conn("channel-errors");
        final Channel ch = c.createChannel();
        int num = ch.getChannelNumber();
        String missingQ = PREFIX + "xyz-missing";
        AMQP.Channel.Close cl = expectChannelClose(() -> ch.queueDeclarePassive(missingQ));
        assertClose(cl, 404, "NOT_FOUND - no queue '" + missingQ + "' in vhost '/'", 50, 10);
        check(!ch.isOpen(), "channel should be closed");
        check(c.isOpen(), "connection should stay open");

        // Reuse of the same channel number after the close handshake.
        Channel again = c.createChannel(num);
        check(again != null, "could not reopen channel number " + num);
        String queue = q("channel-errors");
        again.queueDeclare(queue, false, false, true, null);

        // Async error: publish to a missing exchange.
        final Channel pc = c.createChannel();
        final CountDownLatch closed = new CountDownLatch(1);
        final AtomicReference<ShutdownSignalException> why = new AtomicReference<>();
        pc.addShutdownListener(e -> { why.set(e); closed.countDown(); });
        String missingX = PREFIX + "x.xyz-missing";
        pc.basicPublish(missingX, "rk", springProps("c"), b("lost"));
        await(closed, 5000, "channel close after publish to missing exchange");
        assertClose(channelClose(why.get()), 404, "NOT_FOUND - no exchange '" + missingX + "' in vhost '/'", 60, 40);

        // Unknown delivery tag (e.g. double ack) -> 406.
        final Channel ac = c.createChannel();
        final CountDownLatch closed2 = new CountDownLatch(1);
        final AtomicReference<ShutdownSignalException> why2 = new AtomicReference<>();
        ac.addShutdownListener(e -> { why2.set(e); closed2.countDown(); });
        ac.basicAck(42, false);
        await(closed2, 5000, "channel close after unknown delivery tag");
        assertClose(channelClose(why2.get()), 406, "PRECONDITION_FAILED - unknown delivery tag 42", 60, 80);

        Thread.sleep(200);
        check(c.isOpen(), "connection should stay open after channel errors");
        check(again.isOpen(), "unrelated channel should stay open");
        Channel fresh = c.createChannel();
        fresh.confirmSelect();
        fresh.basicPublish("", queue, springProps("ok"), b("still-works"));
        fresh.waitForConfirmsOrDie(5000);
        GetResponse r = fresh.basicGet(queue, true);
        check(r != null && "still-works".equals(s(r.getBody())), "new channel could not publish/get");
        c.close(3000);
    }

    /** channelTransacted=true: txSelect/txCommit/txRollback. */
    static void transactions() throws Exception {
        Connection c = conn("tx");
        Channel admin = c.createChannel();
        String queue = q("tx");
        admin.queueDeclare(queue, true, false, false, null);
        final Channel ch = c.createChannel();
        ch.txSelect();
        ch.basicPublish("", queue, springProps("tx1"), b("rolled-back"));
        ch.txRollback();
        ch.basicPublish("", queue, springProps("tx2"), b("committed"));
        ch.txCommit();
        eq("messages after commit", Arrays.asList("committed"), drain(admin, queue));
        AMQP.Channel.Close cl = expectChannelClose(ch::confirmSelect);
        assertClose(cl, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode", 85, 10);
        final Channel cc = c.createChannel();
        cc.confirmSelect();
        cl = expectChannelClose(cc::txSelect);
        assertClose(cl, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode", 90, 10);
        c.close(3000);
    }

    // ------------------------------------------------------------------ runner

    static final class Named {
        final String name;
        final Action action;

        Named(String name, Action action) {
            this.name = name;
            this.action = action;
        }
    }

    public static void main(String[] args) throws Exception {
        List<Named> checks = new ArrayList<>();
        checks.add(new Named("connection_server_properties", SpringStyleTest::connectionServerProperties));
        checks.add(new Named("admin_queue_declare_equivalence", SpringStyleTest::adminQueueDeclare));
        checks.add(new Named("admin_exchanges_and_bindings", SpringStyleTest::adminExchangesAndBindings));
        checks.add(new Named("template_publisher_confirms_1000", SpringStyleTest::templateConfirms1000));
        checks.add(new Named("template_mandatory_return", SpringStyleTest::mandatoryReturn));
        checks.add(new Named("message_properties_roundtrip", SpringStyleTest::messagePropertiesRoundTrip));
        checks.add(new Named("listener_container_consume_1000", SpringStyleTest::listenerContainerConsume));
        checks.add(new Named("listener_prefetch_250", SpringStyleTest::prefetchLimit));
        checks.add(new Named("consumer_cancel_notifications", SpringStyleTest::consumerCancel));
        checks.add(new Named("reject_nack_requeue_redelivered", SpringStyleTest::rejectNackRequeue));
        checks.add(new Named("direct_reply_to_send_and_receive", SpringStyleTest::directReplyTo));
        checks.add(new Named("channel_error_isolation", SpringStyleTest::channelErrorIsolation));
        checks.add(new Named("transactions", SpringStyleTest::transactions));

        System.err.println("SpringStyleTest against " + HOST + ":" + PORT + " (run " + RUN + ")");
        long deadline = System.currentTimeMillis() + OVERALL_BUDGET_MS;
        ExecutorService exec = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "check");
            t.setDaemon(true);
            return t;
        });
        int passed = 0, failed = 0;
        for (Named c : checks) {
            long left = deadline - System.currentTimeMillis();
            String failure = null;
            if (left <= 1000) {
                failure = "skipped: overall time budget exhausted";
            } else {
                Future<?> f = exec.submit(() -> {
                    c.action.run();
                    return null;
                });
                try {
                    f.get(Math.min(PER_CHECK_MS, left), TimeUnit.MILLISECONDS);
                } catch (TimeoutException e) {
                    f.cancel(true);
                    failure = "timed out after " + Math.min(PER_CHECK_MS, left) + " ms";
                } catch (java.util.concurrent.ExecutionException e) {
                    Throwable t = e.getCause();
                    failure = describe(t);
                    if (!(t instanceof AssertionError)) t.printStackTrace();
                }
            }
            // Abort whatever the check left open.
            for (Connection conn : OPEN) {
                try {
                    conn.abort(1000);
                } catch (Throwable ignored) {
                }
            }
            OPEN.clear();
            if (failure == null) {
                passed++;
                System.out.println("PASS " + c.name);
            } else {
                failed++;
                System.out.println("FAIL " + c.name + ": " + failure.replace('\n', ' '));
            }
            System.out.flush();
        }
        cleanup();
        System.out.println(passed + " passed, " + failed + " failed");
        System.out.flush();
        System.exit(failed == 0 ? 0 : 1);
    }

    static String describe(Throwable t) {
        if (t instanceof AssertionError) return t.getMessage();
        StringBuilder sb = new StringBuilder(t.toString());
        Throwable cause = t.getCause();
        while (cause != null && cause != t) {
            sb.append(" / caused by ").append(cause);
            t = cause;
            cause = cause.getCause();
        }
        return sb.toString();
    }

    static void cleanup() {
        Connection c = null;
        try {
            c = factory().newConnection("SpringStyleTest#cleanup");
            Channel ch = c.createChannel();
            for (String queue : QUEUES) {
                try {
                    if (!ch.isOpen()) ch = c.createChannel();
                    ch.queueDelete(queue);
                } catch (Exception e) {
                    // ignore: already gone
                }
            }
            for (String ex : EXCHANGES) {
                try {
                    if (!ch.isOpen()) ch = c.createChannel();
                    ch.exchangeDelete(ex);
                } catch (Exception e) {
                    // ignore
                }
            }
        } catch (Exception e) {
            info("cleanup failed: " + e);
        } finally {
            if (c != null) {
                try {
                    c.abort(2000);
                } catch (Throwable ignored) {
                }
            }
        }
    }
}
