"""Time from asking Testcontainers for a broker to a usable (opened) pika connection:
RabbitMqContainer(image).start() (what a session fixture does), N runs; the stop that a
fixture's teardown does; and the cost of a vhost per test (create with permissions +
delete through the management API)."""

import statistics
import sys
import time

import pika

from tc_common import IMAGE, amqp_url, container, create_vhost, delete_vhost

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
starts, stops, vh = [], [], []
for _ in range(runs):
    t = time.perf_counter()
    c = container().start()
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url(c, "/")))
    starts.append(time.perf_counter() - t)
    conn.close()
    for i in range(20):
        t = time.perf_counter()
        create_vhost(c, f"v{i}")
        delete_vhost(c, f"v{i}")
        vh.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    c.stop()
    stops.append(time.perf_counter() - t)
print(f"{IMAGE}: start -> open connection: median {statistics.median(starts):.2f} s, "
      f"min {min(starts):.2f}, max {max(starts):.2f} ({runs} runs); "
      f"stop median {statistics.median(stops):.2f} s")
print(f"{IMAGE}: vhost create+delete: median {statistics.median(vh):.1f} ms, "
      f"p90 {sorted(vh)[int(len(vh) * 0.9)]:.1f} ms ({len(vh)} rounds)")
