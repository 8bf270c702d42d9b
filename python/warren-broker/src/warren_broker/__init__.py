"""warren for test suites: start a throwaway AMQP 0-9-1 broker, control its clock.

``pip install warren-broker`` installs the ``warren`` executable and a pytest plugin
(see :mod:`warren_broker.pytest_plugin`). This module holds what the plugin uses and
what other test runners can use directly::

    from warren_broker import WarrenBroker

    with WarrenBroker.start() as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ...
        broker.advance(seconds=30)  # TTLs of 30 s have run out now
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Optional

__all__ = ["WarrenBroker", "WarrenError", "find_warren", "__version__"]

__version__ = "0.1.0"


class WarrenError(RuntimeError):
    """The broker could not be started, or answered an API call with an error."""


def find_warren(explicit: Optional[str] = None) -> str:
    """The warren executable: ``explicit``, ``$WARREN_BIN``, the one this package
    installed next to the Python interpreter's scripts, or ``warren`` on ``PATH``."""
    candidates = [explicit, os.environ.get("WARREN_BIN")]
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.append(os.path.join(scripts, "warren"))
    candidates.append(os.path.join(os.path.dirname(sys.executable), "warren"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which("warren")
    if found:
        return found
    raise WarrenError(
        "no warren executable: install warren-broker, or give --warren-bin / WARREN_BIN"
    )


def _scratch_root() -> Optional[str]:
    """Where a throwaway broker keeps its data: a memory filesystem when there is one
    (every metadata change is synced to disk, which costs milliseconds on a real disk
    and nothing there), else the usual temporary directory."""
    explicit = os.environ.get("WARREN_BROKER_TMPDIR")
    if explicit:
        return explicit
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return None


def _port_of(line: str, what: str) -> Optional[int]:
    marker = f"listening for {what} on "
    if marker not in line:
        return None
    addr = line.split(marker, 1)[1].strip().split()[0]
    try:
        return int(addr.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


class WarrenBroker:
    """A warren broker: one this object started (and stops), or an external one.

    ``amqp_url`` is the default vhost's URL; ``url_for(vhost)`` any other's. The clock
    methods need a broker started with ``--test-clock`` (the default of :meth:`start`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        http_port: int,
        user: str = "guest",
        password: str = "guest",
        process: Optional[subprocess.Popen] = None,
        data_dir: Optional[str] = None,
        log_path: Optional[str] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.http_port = http_port
        self.user = user
        self.password = password
        self._process = process
        self._data_dir = data_dir
        self.log_path = log_path
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._local = threading.local()

    # -- starting and stopping --------------------------------------------------------

    @classmethod
    def start(
        cls,
        warren_bin: Optional[str] = None,
        test_clock: bool = True,
        timeout: float = 30.0,
        extra_args: tuple = (),
    ) -> "WarrenBroker":
        """Starts warren on free ports of 127.0.0.1 with a temporary data directory
        and waits until it accepts connections."""
        binary = find_warren(warren_bin)
        data_dir = tempfile.mkdtemp(prefix="warren-broker-", dir=_scratch_root())
        log_path = os.path.join(data_dir, "warren.log")
        args = [
            binary,
            "--listen", "127.0.0.1:0",
            "--http-listen", "127.0.0.1:0",
            "--prometheus-listen", "off",
            "--data-dir", os.path.join(data_dir, "data"),
        ]
        if test_clock:
            args.append("--test-clock")
        args.extend(extra_args)
        env = dict(os.environ)
        env.update({"NO_COLOR": "1", "WARREN_LOG": "info", "WARREN_RABBITMQ_ETC": "off"})
        # Settings meant for another broker must not leak into this one.
        for k in ("RABBITMQ_CONFIG_FILE", "RABBITMQ_CONFIG_FILES", "WARREN_CONFIG",
                  "RABBITMQ_NODE_PORT", "RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS",
                  "RABBITMQ_DEFAULT_VHOST", "WARREN_LISTEN", "WARREN_HTTP_LISTEN"):
            env.pop(k, None)
        log = open(log_path, "wb")
        try:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        finally:
            log.close()
        amqp = http = None
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            text = Path(log_path).read_text(errors="replace")
            for line in text.splitlines():
                amqp = amqp or _port_of(line, "AMQP")
                http = http or _port_of(line, "HTTP")
            if amqp and http and "Server startup complete" in text:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                shutil.rmtree(data_dir, ignore_errors=True)
                raise WarrenError(f"warren did not start ({' '.join(args)}):\n{text}")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return cls("127.0.0.1", amqp, http, process=process, data_dir=data_dir, log_path=log_path)

    @classmethod
    def external(
        cls, host: str = "127.0.0.1", port: int = 5672, http_port: int = 15672,
        user: str = "guest", password: str = "guest",
    ) -> "WarrenBroker":
        """A broker started elsewhere (warren, or RabbitMQ without the clock methods)."""
        return cls(host, port, http_port, user=user, password=password)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops a broker this object started (SIGTERM, then SIGKILL) and removes its
        data directory; nothing for an external one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._data_dir:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> "WarrenBroker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------

    def url_for(self, vhost: str = "/") -> str:
        """The AMQP URL of ``vhost`` (percent-encoded as the URI spec wants)."""
        quoted = urllib.parse.quote(vhost, safe="")
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{quoted}"

    @property
    def amqp_url(self) -> str:
        return self.url_for("/")

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    # -- the management API --------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, ok: tuple = (200, 201, 204)) -> Any:
        """One management API request over a kept-alive connection; the JSON answer."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.http_port, timeout=330)
                self._local.conn = conn
            try:
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        data = json.loads(raw) if raw else None
        if resp.status not in ok:
            raise WarrenError(f"{method} {path}: {resp.status} {data}")
        return data

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def create_vhost(self, name: str) -> None:
        """Creates ``name`` with full permissions for this broker's user."""
        self.api("PUT", f"/api/vhosts/{self._q(name)}")
        self.api(
            "PUT",
            f"/api/permissions/{self._q(name)}/{self._q(self.user)}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self, name: str) -> None:
        self.api("DELETE", f"/api/vhosts/{self._q(name)}", ok=(204, 404))

    def reset_vhost(self, vhost: str = "/") -> dict:
        """Empties a vhost: its queues, exchanges (not the default ones), bindings and
        policies go; it stays, with its permissions. Returns what was removed."""
        return self.api("POST", f"/api/warren/vhosts/{self._q(vhost)}/reset")

    def wait_for_messages(
        self, queue: str, count: int = 1, timeout: float = 5.0, vhost: str = "/"
    ) -> dict:
        """Returns as soon as ``queue`` holds at least ``count`` messages (ready plus
        unacknowledged), with its depth; raises TimeoutError after ``timeout`` s."""
        path = (
            f"/api/warren/queues/{self._q(vhost)}/{self._q(queue)}/wait"
            f"?count={int(count)}&timeout_ms={int(timeout * 1000)}"
        )
        answer = self.api("GET", path, ok=(200, 408))
        if answer.get("error") == "timeout":
            raise TimeoutError(answer.get("reason", "timeout"))
        return answer

    def peek(self, queue: str, count: int = 1, vhost: str = "/") -> list:
        """Up to ``count`` ready messages of ``queue`` (as the management API's get shows
        them: ``payload``, ``properties``, ``redelivered`` ...) left in the queue
        unchanged."""
        path = f"/api/warren/queues/{self._q(vhost)}/{self._q(queue)}/peek?count={int(count)}"
        return self.api("GET", path)

    # -- the test clock ------------------------------------------------------------------

    def clock(self) -> dict:
        """``{"now_ms", "offset_ms", "frozen"}`` of the test clock."""
        return self.api("GET", "/api/warren/clock")

    def advance(self, seconds: float = 0.0, ms: Optional[int] = None) -> dict:
        """Moves the clock forward; when it returns, every TTL, x-expires and
        dead-lettering that came due has happened."""
        step = int(ms) if ms is not None else int(round(seconds * 1000))
        return self.api("POST", "/api/warren/clock", {"advance_ms": step})

    def freeze(self, frozen: bool = True) -> dict:
        """Stops the clock (TTLs no longer run out by themselves), or with ``False``
        lets it run on from where it stands."""
        return self.api("POST", "/api/warren/clock", {"freeze": bool(frozen)})

    def unfreeze(self) -> dict:
        return self.freeze(False)
