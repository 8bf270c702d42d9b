"""Shared bits of the Python client programs: settings, check reporting, names."""
import os
import sys
import time
import traceback
import uuid

HOST = os.environ.get("WARREN_AMQP_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_AMQP_PORT", "5672"))
RUN = uuid.uuid4().hex[:8]
RESTARTED_FILE = os.environ.get("WARREN_CLIENTS_RESTARTED_FILE", "")

results = {"passed": 0, "failed": 0}


def name(client, what):
    """A per-run name, so runs against a long-lived RabbitMQ never collide."""
    return f"clients.{client}.{RUN}.{what}"


def report(check, ok, why=""):
    if ok:
        results["passed"] += 1
        print(f"PASS {check}", flush=True)
    else:
        results["failed"] += 1
        print(f"FAIL {check}: {why}", flush=True)


def run_check(check, fn, *args):
    try:
        fn(*args)
        report(check, True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
        traceback.print_exc(file=sys.stderr)
        report(check, False, f"{type(e).__name__}: {e}")


async def run_check_async(check, coro_fn, *args):
    try:
        await coro_fn(*args)
        report(check, True)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        report(check, False, f"{type(e).__name__}: {e}")


def expect(cond, why):
    if not cond:
        raise AssertionError(why)


def eq(what, want, got):
    if want != got:
        raise AssertionError(f"{what}: expected {want!r}, got {got!r}")


def check_x_death(headers, queue, reason="rejected"):
    """x-death as RabbitMQ 3.10 writes it for one dead-lettering from `queue`."""
    expect(headers is not None, "dead-lettered message has no headers")
    deaths = headers.get("x-death")
    expect(isinstance(deaths, list) and len(deaths) == 1, f"x-death: {deaths!r}")
    d = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in deaths[0].items()}
    eq("x-death count", 1, d.get("count"))
    eq("x-death reason", reason, d.get("reason"))
    eq("x-death queue", queue, d.get("queue"))
    eq("x-death exchange", "", d.get("exchange"))
    keys = [k.decode() if isinstance(k, bytes) else k for k in d.get("routing-keys", [])]
    eq("x-death routing-keys", [queue], keys)
    expect("time" in d, "x-death has no time")
    fq = headers.get("x-first-death-queue")
    eq("x-first-death-queue", queue, fq.decode() if isinstance(fq, bytes) else fq)


def wait_restarted(timeout=60):
    """Block until the driver says the broker was restarted."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if RESTARTED_FILE and os.path.exists(RESTARTED_FILE):
            return True
        time.sleep(0.1)
    return False


def finish():
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    sys.exit(0 if results["failed"] == 0 else 1)
