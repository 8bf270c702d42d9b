// RabbitMQ Java client (Debian's librabbitmq-client-java) over TLS: the server verified
// against the test CA (TLS 1.3 and 1.2, host name checked), a client certificate on a
// verify_peer listener (PKCS#12 key store), and the refusals: a client trusting another
// CA, and a client certificate from a CA the broker does not trust. Needs
// WARREN_AMQPS_PORT and WARREN_TLS_DIR (ca.pem, client.p12, other-ca.pem, stranger.p12),
// which tests/clients/run.sh sets up.
import com.rabbitmq.client.*;

import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.*;
import javax.net.ssl.*;

public class TlsTest {
    static final String HOST = env("WARREN_AMQP_HOST", "127.0.0.1");
    static final int PORT = Integer.parseInt(env("WARREN_AMQPS_PORT", "0"));
    static final String DIR = env("WARREN_TLS_DIR", "");
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static int passed = 0, failed = 0;

    static String env(String k, String d) {
        String v = System.getenv(k);
        return v == null || v.isEmpty() ? d : v;
    }

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

    static String file(String f) { return Paths.get(DIR, f).toString(); }

    /** Trust managers for the certificates of a PEM file. */
    static TrustManager[] trust(String pem) throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(file(pem))) {
            int i = 0;
            for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                ks.setCertificateEntry("ca" + i++, c);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        return tmf.getTrustManagers();
    }

    /**
     * Key managers for a PKCS#12 file written by openssl (password changeit) that always
     * present its certificate: the JDK's own would send none when the certificate's
     * issuer is not among the CAs the server names, and a refusal would go untested.
     */
    static KeyManager[] identity(String p12) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(file(p12))) {
            ks.load(in, "changeit".toCharArray());
        }
        String alias = ks.aliases().nextElement();
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, "changeit".toCharArray());
        X509KeyManager km = (X509KeyManager) kmf.getKeyManagers()[0];
        return new KeyManager[] {new X509ExtendedKeyManager() {
            public String chooseClientAlias(String[] t, java.security.Principal[] i, java.net.Socket s) { return alias; }
            public String chooseEngineClientAlias(String[] t, java.security.Principal[] i, SSLEngine e) { return alias; }
            public String[] getClientAliases(String t, java.security.Principal[] i) { return new String[] {alias}; }
            public java.security.cert.X509Certificate[] getCertificateChain(String a) { return km.getCertificateChain(a); }
            public java.security.PrivateKey getPrivateKey(String a) { return km.getPrivateKey(a); }
            public String[] getServerAliases(String t, java.security.Principal[] i) { return null; }
            public String chooseServerAlias(String t, java.security.Principal[] i, java.net.Socket s) { return null; }
        }};
    }

    static final List<String> negotiated = new ArrayList<>();

    static ConnectionFactory factory(String protocol, String ca, String p12) throws Exception {
        SSLContext ctx = SSLContext.getInstance(protocol);
        ctx.init(p12 == null ? null : identity(p12), trust(ca), null);
        ConnectionFactory f = new ConnectionFactory();
        f.setHost(HOST);
        f.setPort(PORT);
        f.setConnectionTimeout(10000);
        f.setHandshakeTimeout(10000);
        f.useSslProtocol(ctx);
        // Client 5.0 has no enableHostnameVerification(): ask the JDK for it (the server
        // certificate carries IP:127.0.0.1 and DNS:localhost), and remember what the
        // handshake negotiated.
        f.setSocketConfigurator(socket -> {
            if (socket instanceof SSLSocket) {
                SSLSocket s = (SSLSocket) socket;
                SSLParameters p = s.getSSLParameters();
                p.setEndpointIdentificationAlgorithm("HTTPS");
                p.setProtocols(new String[] {protocol});
                s.setSSLParameters(p);
                s.addHandshakeCompletedListener(e -> {
                    synchronized (negotiated) { negotiated.add(e.getSession().getProtocol()); }
                });
            }
            socket.setTcpNoDelay(true);
        });
        return f;
    }

    /** A publish and a get over the connection. */
    static void roundTrip(Connection c, String what) throws Exception {
        Channel ch = c.createChannel();
        String q = ch.queueDeclare("clients.java-tls." + RUN + "." + what, false, true, true, null).getQueue();
        String body = "over tls: " + what;
        ch.basicPublish("", q, null, body.getBytes(StandardCharsets.UTF_8));
        GetResponse r = null;
        for (int i = 0; i < 100 && r == null; i++) {
            r = ch.basicGet(q, true);
            if (r == null) Thread.sleep(20);
        }
        expect(r != null, "no message came back");
        eq("body", body, new String(r.getBody(), StandardCharsets.UTF_8));
        ch.close();
    }

    /** The connection must fail: handshake refused, or closed before connection.start. */
    static void refused(ConnectionFactory f, String what) throws Exception {
        Connection c;
        try {
            c = f.newConnection("TlsTest-" + what);
        } catch (java.io.IOException | java.util.concurrent.TimeoutException e) {
            return;
        }
        c.close();
        throw new AssertionError(what + ": the connection was accepted");
    }

    public static void main(String[] argv) {
        if (PORT == 0 || DIR.isEmpty()) {
            System.out.println("FAIL setup: WARREN_AMQPS_PORT and WARREN_TLS_DIR must be set");
            System.exit(1);
        }
        for (String v : new String[] {"TLSv1.3", "TLSv1.2"}) {
            check("amqps, server verified by the CA (" + v + ")", () -> {
                synchronized (negotiated) { negotiated.clear(); }
                try (Connection c = factory(v, "ca.pem", null).newConnection("TlsTest")) {
                    roundTrip(c, "server-" + v);
                }
                synchronized (negotiated) { eq("negotiated", List.of(v), negotiated); }
            });
        }
        check("amqps, client certificate on a verify_peer listener", () -> {
            try (Connection c = factory("TLSv1.3", "ca.pem", "client.p12").newConnection("TlsTest")) {
                roundTrip(c, "client-cert");
            }
        });
        check("amqps, a server certificate from another CA is refused",
                () -> refused(factory("TLSv1.3", "other-ca.pem", null), "other CA"));
        check("amqps, a client certificate from an untrusted CA is refused",
                () -> refused(factory("TLSv1.3", "ca.pem", "stranger.p12"), "stranger"));
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
