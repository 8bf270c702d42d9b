"""The Celery app the worker runs: real tasks, a retrying task, the rpc:// backend."""
import os

from celery import Celery

HOST = os.environ.get("WARREN_AMQP_HOST", "127.0.0.1")
PORT = os.environ.get("WARREN_AMQP_PORT", "5672")
QUEUE = os.environ.get("CLIENTS_CELERY_QUEUE", "celery")
ATTEMPTS_DIR = os.environ.get("CLIENTS_CELERY_DIR", "/tmp")

app = Celery("celery_tasks", broker=f"amqp://guest:guest@{HOST}:{PORT}//", backend="rpc://")
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,            # manual ack after the task ran
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=300,
)


@app.task
def add(x, y):
    return x + y


@app.task(bind=True, max_retries=3, default_retry_delay=0.2)
def flaky(self, key, failures):
    """Fails `failures` times (counted in a file, across retries), then succeeds."""
    path = os.path.join(ATTEMPTS_DIR, f"flaky-{key}")
    n = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(n + 1))
    if n < failures:
        raise self.retry(exc=RuntimeError(f"attempt {n + 1} failed"))
    return {"attempts": n + 1, "retries": self.request.retries}


@app.task(bind=True, max_retries=1, default_retry_delay=0.1)
def always_fails(self):
    raise self.retry(exc=ValueError("boom"))
