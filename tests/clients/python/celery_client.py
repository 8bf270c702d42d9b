"""A Celery worker (subprocess, prefork pool) running real tasks over warren, results via rpc://.

`celery_client.py recovery`: start the worker, run a task, print READY; after the broker
restart check that both the worker and the client reconnected (the worker redeclares its
queues) and that a new task runs end to end.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

from common import RUN, eq, expect, finish, report, run_check, wait_restarted

QUEUE = f"clients.celery.{RUN}"
tmp = tempfile.mkdtemp()
print(f"  # celery worker log: {tmp}/worker.log", file=sys.stderr, flush=True)
os.environ["CLIENTS_CELERY_QUEUE"] = QUEUE
os.environ["CLIENTS_CELERY_DIR"] = tmp

from celery_tasks import add, always_fails, app, flaky  # noqa: E402 - needs the env above

worker = subprocess.Popen(
    [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--loglevel=INFO",
     "--concurrency=2", "-Q", QUEUE, "-n", f"w-{RUN}@localhost"],
    stdout=open(os.path.join(tmp, "worker.log"), "w"), stderr=subprocess.STDOUT)


def worker_log_tail():
    with open(os.path.join(tmp, "worker.log")) as f:
        return "".join(f.readlines()[-30:])


def tasks():
    eq("add", 5, add.delay(2, 3).get(timeout=30))
    results = [add.delay(i, i) for i in range(10)]
    eq("ten adds", [2 * i for i in range(10)], [r.get(timeout=10) for r in results])


def retries():
    r = flaky.delay(RUN, 2)
    eq("flaky result", {"attempts": 3, "retries": 2}, r.get(timeout=20))
    r = always_fails.delay()
    try:
        r.get(timeout=20)
        raise AssertionError("always_fails succeeded")
    except ValueError as e:
        eq("error after retries", "boom", str(e))
    eq("state", "FAILURE", r.state)


def recovery():
    eq("before restart", 3, add.delay(1, 2).get(timeout=30))
    print("READY", flush=True)
    expect(wait_restarted(), "no restart")
    deadline = time.time() + 40
    last = None
    while time.time() < deadline:
        try:
            eq("task after restart", 42, add.delay(40, 2).get(timeout=10))
            return
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
            print(f"  # not yet: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            time.sleep(1)
    raise AssertionError(f"no task ran after the restart: {last}")


try:
    if sys.argv[1:] == ["recovery"]:
        run_check("celery-recovery", recovery)
    else:
        run_check("celery-tasks-rpc-backend", tasks)
        run_check("celery-retries", retries)
finally:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
    if __import__("common").results["failed"]:
        print("worker log tail:\n" + worker_log_tail(), file=sys.stderr)
    try:
        with app.connection_for_write() as c:
            c.default_channel.queue_delete(QUEUE)
    except Exception:  # noqa: BLE001 - cleanup only
        pass
finish()
