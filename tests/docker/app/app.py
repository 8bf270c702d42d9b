"""The app of the compose test: connects to AMQP_URL, declares a durable queue, publishes
one persistent message with confirms, reads it back and prints RESULT lines."""
import os
import sys

import pika

url = os.environ["AMQP_URL"]
queue = os.environ.get("APP_QUEUE", "compose-app")
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare(queue, durable=True)
ch.basic_publish("", queue, b"from the app container",
                 pika.BasicProperties(delivery_mode=2), mandatory=True)
method, _props, body = ch.basic_get(queue, auto_ack=True)
print("RESULT got", body.decode() if body else None, flush=True)
# Leave one persistent message behind for the persistence check.
ch.basic_publish("", queue, b"kept", pika.BasicProperties(delivery_mode=2), mandatory=True)
print("RESULT server", conn._impl.server_properties.get("product", b"?"), flush=True)
conn.close()
sys.exit(0 if body == b"from the app container" else 1)
