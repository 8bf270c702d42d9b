"""AMQP over TLS with pika and openssl s_client, against a warren this module starts
itself (the shared broker of the suite listens in plaintext only): its own data
directory, ephemeral ports, certificates made here with the openssl CLI (an RSA CA, a
server key in PKCS#1 form, a client certificate). WARREN_BIN names the binary (default
target/debug/warren). What RabbitMQ 3.10.8 answers in the same set-up is recorded in
tests/fixtures/tls/rabbitmq-3.10.8.txt.
"""

import json
import os
import pathlib
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
import base64

import pika
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("WARREN_BIN") or str(ROOT / "target" / "debug" / "warren")

pytestmark = pytest.mark.skipif(
    not os.path.exists(BIN) or shutil.which("openssl") is None,
    reason="needs the warren binary (WARREN_BIN) and the openssl CLI",
)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """CA, server (PKCS#1 RSA key, SAN localhost) and client (v3, clientAuth)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "30", "-subj", "/O=Warren Test/CN=Warren Test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subj in (("server", "/O=Warren Test/CN=localhost"), ("client", "/O=Warren Test/OU=Clients/CN=client")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.p8", "-out", f"{name}.csr",
                "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "30", "-extfile", f"{name}.ext", cwd=d)
    # The server key as PKCS#1 (BEGIN RSA PRIVATE KEY), as older tooling writes it.
    openssl("rsa", "-in", "server.p8", "-out", "server.key", "-traditional", cwd=d)
    assert "BEGIN RSA PRIVATE KEY" in (d / "server.key").read_text()


@pytest.fixture(scope="module")
def tls_broker():
    d = pathlib.Path(tempfile.mkdtemp(prefix="warren-pytls-"))
    make_pki(d)
    (d / "rabbitmq.conf").write_text(
        "listeners.tcp.default = 127.0.0.1:0\n"
        "listeners.ssl.default = 127.0.0.1:0\n"
        f"ssl_options.cacertfile = {d / 'ca.pem'}\n"
        f"ssl_options.certfile = {d / 'server.pem'}\n"
        f"ssl_options.keyfile = {d / 'server.key'}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
        "auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = EXTERNAL\n"
        "ssl_cert_login_from = common_name\n"
    )
    (d / "enabled_plugins").write_text("[rabbitmq_auth_mechanism_ssl].\n")
    env = dict(os.environ, NO_COLOR="1", WARREN_RABBITMQ_ETC="off",
               RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
               RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"))
    proc = subprocess.Popen(
        [BIN, "--data-dir", str(d / "data"), "--http-listen", "127.0.0.1:0", "--prometheus-listen", "off"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ports, lines = {}, []

    def read():
        for line in proc.stdout:
            lines.append(line)
            for what in ("AMQPS", "HTTP"):
                marker = f"listening for {what} on "
                if marker in line:
                    ports[what] = int(line.rsplit(":", 1)[1])
    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + 20
    while time.time() < deadline and not any("Server startup complete" in l for l in lines):
        time.sleep(0.05)
    assert "AMQPS" in ports and "HTTP" in ports, "".join(lines)
    # The EXTERNAL user (its CN, per ssl_cert_login_from).
    for path, body in (("/api/users/client", {"password": "unused", "tags": ""}),
                       ("/api/permissions/%2F/client", {"configure": ".*", "write": ".*", "read": ".*"})):
        req = urllib.request.Request(f"http://127.0.0.1:{ports['HTTP']}{path}", method="PUT",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
        urllib.request.urlopen(req).read()
    yield {"dir": d, "port": ports["AMQPS"], "http": ports["HTTP"], "log": lines}
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(d, ignore_errors=True)


def context(b, cert=True, maximum=None):
    ctx = ssl.create_default_context(cafile=str(b["dir"] / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(b["dir"] / "client.pem"), str(b["dir"] / "client.p8"))
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def connect(b, credentials=None, **kw):
    params = pika.ConnectionParameters(
        "localhost", b["port"], credentials=credentials or pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(context(b, **kw), "localhost"), connection_attempts=1)
    return pika.BlockingConnection(params)


def test_pika_publishes_and_consumes_over_tls(tls_broker):
    conn = connect(tls_broker)
    ch = conn.channel()
    q = ch.queue_declare(f"tls-{uuid.uuid4()}", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"over tls")
    _, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"over tls"
    conn.close()


def test_pika_tls12(tls_broker):
    conn = connect(tls_broker, maximum=ssl.TLSVersion.TLSv1_2)
    assert conn.is_open
    conn.close()


def test_pika_external_login(tls_broker):
    conn = connect(tls_broker, credentials=pika.credentials.ExternalCredentials())
    assert conn.is_open
    conn.close()


def test_pika_without_client_certificate_is_refused(tls_broker):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(tls_broker, cert=False)


def s_client(b, *args):
    """openssl s_client sending AMQP's protocol header, then waiting a second for the
    answer before closing (at the end of its input s_client hangs up at once)."""
    feeder = subprocess.Popen(["sh", "-c", "printf 'AMQP\\000\\000\\011\\001'; sleep 1"],
                              stdout=subprocess.PIPE)
    try:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{b['port']}", "-servername", "localhost",
             "-CAfile", str(b["dir"] / "ca.pem"), *args],
            stdin=feeder.stdout, capture_output=True, timeout=20)
    finally:
        feeder.wait(timeout=5)


@pytest.mark.parametrize("version,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_openssl_s_client_versions(tls_broker, version, name):
    d = tls_broker["dir"]
    r = s_client(tls_broker, version, "-cert", str(d / "client.pem"), "-key", str(d / "client.p8"))
    out = r.stdout.decode(errors="replace")
    assert f"Protocol  : {name}" in out or f"New, {name}" in out, out
    assert "Verify return code: 0 (ok)" in out, out
    # The broker answered the protocol header with connection.start.
    assert b"PLAIN EXTERNAL" in r.stdout, out


def test_openssl_s_client_without_certificate_is_refused(tls_broker):
    r = s_client(tls_broker, "-tls1_3")
    assert b"PLAIN EXTERNAL" not in r.stdout
    assert b"alert" in r.stdout + r.stderr, (r.stdout + r.stderr).decode(errors="replace")
