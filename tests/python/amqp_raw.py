"""Tiny AMQP 0-9-1 frame encoder/decoder for raw-socket protocol tests.

Only the standard library is used (socket + struct).  It is deliberately
minimal: enough to perform the full client handshake (protocol header,
connection.start-ok with PLAIN guest/guest, tune-ok, connection.open) and then
send arbitrary (possibly malformed) frames and read what the broker answers.
"""

import socket
import struct
import time

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"

# (class_id, method_id) pairs used in the tests
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_SECURE = (10, 20)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_FLOW = (20, 20)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
EXCHANGE_DECLARE = (40, 10)
QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
BASIC_QOS = (60, 10)
BASIC_CONSUME = (60, 20)
BASIC_PUBLISH = (60, 40)
BASIC_DELIVER = (60, 60)
BASIC_GET = (60, 70)
BASIC_GET_OK = (60, 71)
BASIC_GET_EMPTY = (60, 72)
BASIC_ACK = (60, 80)
CONFIRM_SELECT = (85, 10)
TX_SELECT = (90, 10)


# --------------------------------------------------------------------------
# primitive encoders
# --------------------------------------------------------------------------

def octet(v):
    return struct.pack(">B", v)


def short(v):
    return struct.pack(">H", v)


def long_(v):
    return struct.pack(">I", v)


def longlong(v):
    return struct.pack(">Q", v)


def shortstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    assert len(s) < 256
    return struct.pack(">B", len(s)) + s


def longstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return struct.pack(">I", len(s)) + s


def bits(*flags):
    v = 0
    for i, f in enumerate(flags):
        if f:
            v |= 1 << i
    return struct.pack(">B", v)


def _field_value(v):
    if isinstance(v, bool):
        return b"t" + struct.pack(">B", 1 if v else 0)
    if isinstance(v, int):
        return b"l" + struct.pack(">q", v)
    if isinstance(v, (str, bytes)):
        return b"S" + longstr(v)
    if isinstance(v, dict):
        return b"F" + table(v)
    if v is None:
        return b"V"
    raise TypeError("unsupported table value %r" % (v,))


def table(d):
    body = b"".join(shortstr(k) + _field_value(v) for k, v in (d or {}).items())
    return long_(len(body)) + body


# --------------------------------------------------------------------------
# primitive decoders
# --------------------------------------------------------------------------

class Decoder:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("short read decoding AMQP payload")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def octet(self):
        return self._take(1)[0]

    def short(self):
        return struct.unpack(">H", self._take(2))[0]

    def long(self):
        return struct.unpack(">I", self._take(4))[0]

    def longlong(self):
        return struct.unpack(">Q", self._take(8))[0]

    def shortstr(self):
        n = self.octet()
        return self._take(n).decode("utf-8")

    def longstr(self):
        n = self.long()
        return self._take(n)

    def table(self):
        n = self.long()
        sub = Decoder(self._take(n))
        out = {}
        while sub.pos < len(sub.data):
            k = sub.shortstr()
            out[k] = sub.field_value()
        return out

    def array(self):
        n = self.long()
        sub = Decoder(self._take(n))
        out = []
        while sub.pos < len(sub.data):
            out.append(sub.field_value())
        return out

    def field_value(self):
        t = self._take(1)
        if t == b"t":
            return self.octet() != 0
        if t == b"b":
            return struct.unpack(">b", self._take(1))[0]
        if t == b"B":
            return self.octet()
        if t == b"s":
            return struct.unpack(">h", self._take(2))[0]
        if t == b"u":
            return self.short()
        if t == b"I":
            return struct.unpack(">i", self._take(4))[0]
        if t == b"i":
            return self.long()
        if t == b"l":
            return struct.unpack(">q", self._take(8))[0]
        if t == b"f":
            return struct.unpack(">f", self._take(4))[0]
        if t == b"d":
            return struct.unpack(">d", self._take(8))[0]
        if t == b"D":
            scale = self.octet()
            val = struct.unpack(">i", self._take(4))[0]
            return (scale, val)
        if t == b"S":
            return self.longstr()
        if t == b"x":
            return self.longstr()
        if t == b"A":
            return self.array()
        if t == b"T":
            return self.longlong()
        if t == b"F":
            return self.table()
        if t == b"V":
            return None
        raise ValueError("unknown field type %r" % t)


# --------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------

def frame(ftype, channel, payload, end=FRAME_END_BYTE):
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + end


def method_payload(class_method, args=b""):
    cid, mid = class_method
    return struct.pack(">HH", cid, mid) + args


def method_frame(channel, class_method, args=b""):
    return frame(FRAME_METHOD, channel, method_payload(class_method, args))


def content_header_frame(channel, body_size, class_id=60, flags=0, props=b""):
    payload = struct.pack(">HHQH", class_id, 0, body_size, flags) + props
    return frame(FRAME_HEADER, channel, payload)


def body_frame(channel, body):
    return frame(FRAME_BODY, channel, body)


def heartbeat_frame():
    return frame(FRAME_HEARTBEAT, 0, b"")


class Frame:
    def __init__(self, ftype, channel, payload):
        self.type = ftype
        self.channel = channel
        self.payload = payload
        self.class_method = None
        if ftype == FRAME_METHOD and len(payload) >= 4:
            self.class_method = struct.unpack(">HH", payload[:4])

    def args(self):
        """Decoder positioned after class/method ids."""
        return Decoder(self.payload, 4)

    def __repr__(self):
        return "Frame(type=%d, channel=%d, method=%r, payload=%r)" % (
            self.type, self.channel, self.class_method, self.payload[:64])


class Closed(Exception):
    """The peer closed the TCP connection."""


class CloseInfo:
    """Decoded connection.close / channel.close."""

    def __init__(self, kind, channel, reply_code, reply_text, class_id, method_id):
        self.kind = kind  # "connection" or "channel"
        self.channel = channel
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.class_id = class_id
        self.method_id = method_id

    def as_tuple(self):
        return (self.reply_code, self.reply_text, self.class_id, self.method_id)

    def __repr__(self):
        return "CloseInfo(%s ch=%d %r)" % (self.kind, self.channel, self.as_tuple())


def decode_close(fr):
    d = fr.args()
    code = d.short()
    text = d.shortstr()
    cid = d.short()
    mid = d.short()
    kind = "connection" if fr.class_method == CONNECTION_CLOSE else "channel"
    return CloseInfo(kind, fr.channel, code, text, cid, mid)


# --------------------------------------------------------------------------
# raw connection
# --------------------------------------------------------------------------

class RawConnection:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.start = None
        self.tune = None

    # -- low level -------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for data")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed("peer closed connection")
        self.buf += chunk

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_all_until_eof(self, timeout=None):
        """Read every byte until the peer closes; returns the bytes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                self._fill(deadline)
            except Closed:
                out, self.buf = self.buf, b""
                return out

    def read_frame(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < 7:
            self._fill(deadline)
        ftype, channel, size = struct.unpack(">BHI", self.buf[:7])
        while len(self.buf) < 7 + size + 1:
            self._fill(deadline)
        payload = self.buf[7:7 + size]
        end = self.buf[7 + size]
        self.buf = self.buf[8 + size:]
        if end != FRAME_END:
            raise ValueError("bad frame end 0x%02x from server" % end)
        return Frame(ftype, channel, payload)

    def read_method(self, timeout=None, skip_heartbeats=True):
        while True:
            fr = self.read_frame(timeout)
            if fr.type == FRAME_HEARTBEAT and skip_heartbeats:
                continue
            return fr

    def expect(self, class_method, timeout=None):
        fr = self.read_method(timeout)
        if fr.class_method != class_method:
            if fr.class_method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                raise AssertionError("expected %r, got %r" % (class_method, decode_close(fr)))
            raise AssertionError("expected %r, got %r" % (class_method, fr))
        return fr

    def send_method(self, channel, class_method, args=b""):
        self.send(method_frame(channel, class_method, args))

    def wait_for_close(self, timeout=None):
        """Read until connection.close/channel.close arrives (returned as
        CloseInfo) or the socket is closed (returns None).  Other frames are
        skipped."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                fr = self.read_frame(max(0.001, deadline - time.monotonic()))
            except Closed:
                return None
            if fr.class_method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                return decode_close(fr)

    def assert_eof(self, timeout=None):
        """After connection.close(-ok), the server closes the socket."""
        data = self.read_all_until_eof(timeout)
        return data

    # -- handshake -------------------------------------------------------

    def send_protocol_header(self, header=PROTOCOL_HEADER):
        self.send(header)

    def read_start(self):
        fr = self.expect(CONNECTION_START)
        d = fr.args()
        major = d.octet()
        minor = d.octet()
        props = d.table()
        mechanisms = d.longstr()
        locales = d.longstr()
        self.start = dict(version_major=major, version_minor=minor,
                          server_properties=props, mechanisms=mechanisms,
                          locales=locales, channel=fr.channel)
        return self.start

    def send_start_ok(self, user="guest", password="guest", mechanism="PLAIN",
                      client_properties=None):
        props = client_properties
        if props is None:
            props = {"product": "warren-raw-tests",
                     "capabilities": {"consumer_cancel_notify": True,
                                      "publisher_confirms": True,
                                      "basic.nack": True,
                                      "connection.blocked": True,
                                      "authentication_failure_close": True}}
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        self.send_method(0, CONNECTION_START_OK,
                         table(props) + shortstr(mechanism) + longstr(response)
                         + shortstr("en_US"))

    def read_tune(self):
        fr = self.expect(CONNECTION_TUNE)
        d = fr.args()
        self.tune = dict(channel_max=d.short(), frame_max=d.long(), heartbeat=d.short())
        return self.tune

    def send_tune_ok(self, channel_max=2047, frame_max=131072, heartbeat=0):
        self.send_method(0, CONNECTION_TUNE_OK,
                         short(channel_max) + long_(frame_max) + short(heartbeat))

    def send_open(self, vhost="/"):
        self.send_method(0, CONNECTION_OPEN, shortstr(vhost) + shortstr("") + bits(False))

    def handshake(self, channel_max=2047, frame_max=131072, heartbeat=0, vhost="/",
                  user="guest", password="guest"):
        self.send_protocol_header()
        self.read_start()
        self.send_start_ok(user, password)
        self.read_tune()
        self.send_tune_ok(channel_max, frame_max, heartbeat)
        self.send_open(vhost)
        self.expect(CONNECTION_OPEN_OK)
        return self

    # -- common methods --------------------------------------------------

    def open_channel(self, ch):
        self.send_method(ch, CHANNEL_OPEN, shortstr(""))
        return self.expect(CHANNEL_OPEN_OK)

    def send_close_ok(self):
        self.send_method(0, CONNECTION_CLOSE_OK)

    def send_connection_close(self, code=200, text="bye", class_id=0, method_id=0):
        self.send_method(0, CONNECTION_CLOSE,
                         short(code) + shortstr(text) + short(class_id) + short(method_id))

    def queue_declare(self, ch, name, durable=False, exclusive=False, auto_delete=False):
        self.send_method(ch, QUEUE_DECLARE,
                         short(0) + shortstr(name)
                         + bits(False, durable, exclusive, auto_delete, False)
                         + table({}))
        return self.expect(QUEUE_DECLARE_OK)

    def publish_frames(self, ch, exchange, routing_key, body, frame_max=None,
                       mandatory=False, immediate=False):
        out = method_frame(ch, BASIC_PUBLISH,
                           short(0) + shortstr(exchange) + shortstr(routing_key)
                           + bits(mandatory, immediate))
        out += content_header_frame(ch, len(body))
        if body:
            chunk = (frame_max - 8) if frame_max else len(body)
            for i in range(0, len(body), chunk):
                out += body_frame(ch, body[i:i + chunk])
        return out


def open_raw(host, port, timeout=5.0, **handshake_kw):
    return RawConnection(host, port, timeout).handshake(**handshake_kw)
