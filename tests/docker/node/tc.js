const { RabbitMQContainer } = require("@testcontainers/rabbitmq");
const amqp = require("amqplib");
(async () => {
  const c = await new RabbitMQContainer(process.env.WARREN_IMAGE || "warren:dev").start();
  try {
    const conn = await amqp.connect(c.getAmqpUrl());
    const ch = await conn.createChannel();
    await ch.assertQueue("tc-node");
    ch.sendToQueue("tc-node", Buffer.from("from node testcontainers"));
    let m = null;
    for (let i = 0; i < 50 && !m; i++) { m = await ch.get("tc-node", { noAck: true }); if (!m) await new Promise(r => setTimeout(r, 20)); }
    if (!m || m.content.toString() !== "from node testcontainers") throw new Error("no message: " + m);
    await conn.close();
    console.log("RESULT ok");
  } finally {
    await c.stop();
  }
})().catch(e => { console.error(e); process.exit(1); });
