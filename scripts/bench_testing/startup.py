"""Time from asking for a broker to a usable (opened) pika connection: warren's
WarrenBroker.start() (what the warren_broker fixture does), N runs; and the cost of one
amqp_vhost (create with permissions + delete)."""

import statistics
import sys
import time

import pika

from warren_broker import WarrenBroker

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
starts = []
for _ in range(runs):
    t = time.perf_counter()
    broker = WarrenBroker.start()
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    starts.append((time.perf_counter() - t) * 1000)
    conn.close()
    vh = []
    for i in range(200):
        t = time.perf_counter()
        broker.create_vhost(f"v{i}")
        broker.delete_vhost(f"v{i}")
        vh.append((time.perf_counter() - t) * 1000)
    broker.stop()
print(f"warren start -> open connection: median {statistics.median(starts):.1f} ms, "
      f"min {min(starts):.1f}, max {max(starts):.1f} ({runs} runs)")
print(f"amqp_vhost create+delete: median {statistics.median(vh):.2f} ms, "
      f"p90 {sorted(vh)[int(len(vh) * 0.9)]:.2f} ms (200 rounds)")
