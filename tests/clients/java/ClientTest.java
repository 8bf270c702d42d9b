// RabbitMQ Java client (Debian's librabbitmq-client-java): what tests/java/SpringStyleTest
// does not cover. Dead-lettering as Spring's listener container does it (reject with
// requeue=false, read x-death), and, with `recovery`, the client's automatic connection and
// topology recovery (on by default in the plain client) across a broker restart. Streams
// (x-queue-type stream read from offsets by independent consumers) and the delayed-message
// exchange (needs rabbitmq_delayed_message_exchange enabled, as tests/clients/run.sh does).
import com.rabbitmq.client.*;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.*;
import java.util.concurrent.*;

public class ClientTest {
    static final String HOST = env("WARREN_AMQP_HOST", "127.0.0.1");
    static final int PORT = Integer.parseInt(env("WARREN_AMQP_PORT", "5672"));
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static int passed = 0, failed = 0;

    static String env(String k, String d) {
        String v = System.getenv(k);
        return v == null || v.isEmpty() ? d : v;
    }

    static String name(String what) { return "clients.java." + RUN + "." + what; }

    static void expect(boolean c, String why) { if (!c) throw new AssertionError(why); }

    static void eq(String what, Object want, Object got) {
        expect(Objects.equals(want, got), what + ": expected <" + want + "> but got <" + got + ">");
    }

    interface Check { void run() throws Exception; }

    static void check(String label, Check c) {
        try {
            c.run();
            passed++;
            System.out.println("PASS " + label);
        } catch (Throwable t) {
            failed++;
            System.out.println("FAIL " + label + ": " + t);
            t.printStackTrace();
        }
    }

    static ConnectionFactory factory() {
        ConnectionFactory f = new ConnectionFactory();
        f.setHost(HOST);
        f.setPort(PORT);
        return f;
    }

    static String s(Object o) { return o == null ? null : o.toString(); }

    static void deadLetter() throws Exception {
        try (Connection c = factory().newConnection("ClientTest")) {
            Channel ch = c.createChannel();
            String dlx = name("dlx"), src = name("dl-src");
            ch.exchangeDeclare(dlx, BuiltinExchangeType.DIRECT, false, true, null);
            String dlq = ch.queueDeclare().getQueue();
            ch.queueBind(dlq, dlx, "dead");
            Map<String, Object> args = new HashMap<>();
            args.put("x-dead-letter-exchange", dlx);
            args.put("x-dead-letter-routing-key", "dead");
            ch.queueDeclare(src, false, true, true, args);
            ch.basicPublish("", src, new AMQP.BasicProperties.Builder().headers(Map.of("app", "x")).build(),
                    "doomed".getBytes(StandardCharsets.UTF_8));
            // Spring's container: consume with manual acks, reject without requeue on failure
            BlockingQueue<Long> tags = new LinkedBlockingQueue<>();
            ch.basicConsume(src, false, (tag, d) -> tags.add(d.getEnvelope().getDeliveryTag()), tag -> { });
            Long tag = tags.poll(5, TimeUnit.SECONDS);
            expect(tag != null, "message not delivered from the source queue");
            ch.basicReject(tag, false);
            GetResponse r = null;
            for (int i = 0; i < 100 && r == null; i++) {
                r = ch.basicGet(dlq, true);
                if (r == null) Thread.sleep(50);
            }
            expect(r != null, "nothing dead-lettered");
            eq("body", "doomed", new String(r.getBody(), StandardCharsets.UTF_8));
            Map<String, Object> h = r.getProps().getHeaders();
            expect(h != null, "no headers");
            Object xd = h.get("x-death");
            expect(xd instanceof List && ((List<?>) xd).size() == 1, "x-death: " + xd);
            @SuppressWarnings("unchecked")
            Map<String, Object> d = (Map<String, Object>) ((List<?>) xd).get(0);
            eq("x-death count", 1L, d.get("count"));
            eq("x-death reason", "rejected", s(d.get("reason")));
            eq("x-death queue", src, s(d.get("queue")));
            eq("x-death exchange", "", s(d.get("exchange")));
            eq("x-death routing-keys", List.of(src), ((List<?>) d.get("routing-keys")).stream().map(ClientTest::s).toList());
            expect(d.get("time") instanceof Date, "x-death time: " + d.get("time"));
            eq("x-first-death-queue", src, s(h.get("x-first-death-queue")));
            eq("x-first-death-reason", "rejected", s(h.get("x-first-death-reason")));
            eq("original header", "x", s(h.get("app")));
        }
    }

    static void stream() throws Exception {
        try (Connection c = factory().newConnection("ClientTest-stream")) {
            Channel ch = c.createChannel();
            String q = name("stream");
            ch.queueDeclare(q, true, false, false, Map.of("x-queue-type", "stream"));
            ch.confirmSelect();
            for (int i = 0; i < 10; i++) ch.basicPublish("", q, null, ("m" + i).getBytes(StandardCharsets.UTF_8));
            ch.waitForConfirmsOrDie(10_000);
            // Two consumers read the same stream independently, acks only move their credit.
            List<String> fromFirst = Collections.synchronizedList(new ArrayList<>());
            List<Object> offsets = Collections.synchronizedList(new ArrayList<>());
            BlockingQueue<String> fromFive = new LinkedBlockingQueue<>();
            Channel a = c.createChannel();
            a.basicQos(3);
            CountDownLatch all = new CountDownLatch(10);
            a.basicConsume(q, false, Map.of("x-stream-offset", "first"), (tag, d) -> {
                fromFirst.add(new String(d.getBody(), StandardCharsets.UTF_8));
                offsets.add(d.getProperties().getHeaders().get("x-stream-offset"));
                a.basicAck(d.getEnvelope().getDeliveryTag(), false);
                all.countDown();
            }, tag -> { });
            Channel b = c.createChannel();
            b.basicQos(100);
            b.basicConsume(q, false, Map.of("x-stream-offset", 5), (tag, d) -> {
                fromFive.add(new String(d.getBody(), StandardCharsets.UTF_8));
                b.basicAck(d.getEnvelope().getDeliveryTag(), false);
            }, tag -> { });
            expect(all.await(10, TimeUnit.SECONDS), "from first: only " + fromFirst);
            List<String> want = new ArrayList<>();
            List<Object> wantOffsets = new ArrayList<>();
            for (int i = 0; i < 10; i++) { want.add("m" + i); wantOffsets.add((long) i); }
            eq("bodies from first", want, fromFirst);
            eq("x-stream-offset headers", wantOffsets, offsets);
            List<String> five = new ArrayList<>();
            for (int i = 0; i < 5; i++) five.add(fromFive.poll(10, TimeUnit.SECONDS));
            eq("bodies from offset 5", want.subList(5, 10), five);
            // Stream consumers must ack manually: auto-ack closes the whole connection
            // with 540 NOT_IMPLEMENTED, as RabbitMQ 3.10 does.
            try (Connection other = factory().newConnection("ClientTest-stream-no-ack")) {
                Channel n = other.createChannel();
                n.basicQos(10);
                try {
                    n.basicConsume(q, true, (tag, d) -> { }, tag -> { });
                    throw new AssertionError("auto-ack consumer on a stream accepted");
                } catch (java.io.IOException e) {
                    ShutdownSignalException sig = (ShutdownSignalException) e.getCause();
                    expect(sig.isHardError(), "a connection error");
                    eq("auto-ack refusal code", 540, ((AMQP.Connection.Close) sig.getReason()).getReplyCode());
                }
            } catch (AlreadyClosedException closed) {
                // the broker closed it already
            }
            ch.queueDelete(q);
        }
    }

    static void delayed() throws Exception {
        try (Connection c = factory().newConnection("ClientTest-delayed")) {
            Channel ch = c.createChannel();
            String x = name("delayed"), q = ch.queueDeclare().getQueue();
            ch.exchangeDeclare(x, "x-delayed-message", false, true, Map.of("x-delayed-type", "direct"));
            ch.queueBind(q, x, "k");
            BlockingQueue<String> got = new LinkedBlockingQueue<>();
            Map<String, Long> at = new ConcurrentHashMap<>();
            List<Object> delays = Collections.synchronizedList(new ArrayList<>());
            ch.basicConsume(q, true, (tag, d) -> {
                String body = new String(d.getBody(), StandardCharsets.UTF_8);
                at.put(body, System.nanoTime());
                Map<String, Object> h = d.getProperties().getHeaders();
                delays.add(h == null ? null : h.get("x-delay"));
                got.add(body);
            }, tag -> { });
            long start = System.nanoTime();
            ch.basicPublish(x, "k", new AMQP.BasicProperties.Builder().headers(Map.of("x-delay", 800)).build(),
                    "late".getBytes(StandardCharsets.UTF_8));
            ch.basicPublish(x, "k", null, "now".getBytes(StandardCharsets.UTF_8));
            eq("first delivered", "now", got.poll(5, TimeUnit.SECONDS));
            eq("then the delayed one", "late", got.poll(5, TimeUnit.SECONDS));
            long heldMs = (at.get("late") - start) / 1_000_000;
            expect(heldMs >= 800, "held only " + heldMs + " ms");
            // The plugin hands the delay back negated.
            eq("x-delay on delivery", Arrays.asList(null, -800), delays);
            ch.exchangeDelete(x);
        }
    }

    static void recovery() throws Exception {
        ConnectionFactory f = factory();
        f.setAutomaticRecoveryEnabled(true);
        f.setTopologyRecoveryEnabled(true);
        f.setNetworkRecoveryInterval(500);
        Connection c = f.newConnection("ClientTest-recovery");
        CountDownLatch recovered = new CountDownLatch(1);
        ((Recoverable) c).addRecoveryListener(new RecoveryListener() {
            public void handleRecovery(Recoverable r) { recovered.countDown(); }
            public void handleRecoveryStarted(Recoverable r) { }
        });
        Channel ch = c.createChannel();
        String x = name("rec-x");
        ch.exchangeDeclare(x, BuiltinExchangeType.DIRECT, false);
        // a server-named exclusive queue: recovery must redeclare it and rebind under its new name
        String q = ch.queueDeclare().getQueue();
        ch.queueBind(q, x, "k");
        BlockingQueue<String> got = new LinkedBlockingQueue<>();
        ch.basicConsume(q, false, (tag, d) -> {
            got.add(new String(d.getBody(), StandardCharsets.UTF_8));
            ch.basicAck(d.getEnvelope().getDeliveryTag(), false);
        }, tag -> { });
        ch.basicPublish(x, "k", null, "before".getBytes(StandardCharsets.UTF_8));
        eq("before restart", "before", got.poll(5, TimeUnit.SECONDS));
        System.out.println("READY");
        System.out.flush();
        String file = System.getenv("WARREN_CLIENTS_RESTARTED_FILE");
        for (int i = 0; i < 600 && (file == null || !Files.exists(Paths.get(file))); i++) Thread.sleep(100);
        expect(recovered.await(30, TimeUnit.SECONDS), "connection not recovered within 30 s");
        String body = null;
        long deadline = System.currentTimeMillis() + 20_000;
        while (body == null && System.currentTimeMillis() < deadline) {
            try {
                ch.basicPublish(x, "k", null, "after".getBytes(StandardCharsets.UTF_8));
                body = got.poll(1, TimeUnit.SECONDS);
            } catch (Exception e) {
                System.err.println("  # not yet: " + e);
                Thread.sleep(500);
            }
        }
        eq("message through redeclared topology after restart", "after", body);
        ch.exchangeDelete(x);
        c.close();
    }

    public static void main(String[] argv) {
        if (argv.length == 1 && argv[0].equals("recovery")) {
            check("recovery", ClientTest::recovery);
        } else {
            check("dead-letter", ClientTest::deadLetter);
            check("stream", ClientTest::stream);
            check("delayed-message exchange", ClientTest::delayed);
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
