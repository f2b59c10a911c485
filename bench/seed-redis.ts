// The seed's design (shared/seed-conversation-event-system.md), as the latency baseline: on each
// message the tracker records the chat's last-message time (`chat:last_msg:{chat_id}`) and
// schedules a sealing check in a Redis sorted set (`conversation:check_queue`, score = last
// message + gap); a periodic job (Celery beat, every 60 s in the seed) takes the due chats from
// the sorted set and seals those silent for the gap, emitting `conversation_sealed`.
//
// Here the messages come from the same Kafka topic as the tracker's (a plain consumer group), and
// the sealed events go to a Kafka topic (instead of Redis pub/sub) so that one downstream
// read_committed consumer times both designs the same way. Run as a child process.
// Environment: KAFKA_BROKERS, TOPIC, OUT_TOPIC, GROUP, GAP_MS, CHECK_MS, REDIS_URL, KEY_PREFIX.
import { Kafka, logLevel } from 'kafkajs';
import Redis from 'ioredis';

async function main(): Promise<void> {
  const gap = Number(process.env.GAP_MS);
  const checkMs = Number(process.env.CHECK_MS);
  const p = process.env.KEY_PREFIX ?? 'seed:';
  const queue = `${p}conversation:check_queue`;
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const kafka = new Kafka({ clientId: 'bench-seed', brokers: [process.env.KAFKA_BROKERS ?? '127.0.0.1:9092'], logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const consumer = kafka.consumer({ groupId: process.env.GROUP!, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic: process.env.TOPIC!, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const tx = redis.pipeline();
      for (const m of batch.messages) {
        const msg = JSON.parse(m.value!.toString('utf8')) as { chat_id: string; sent_at: number };
        const c = msg.chat_id;
        // Last message time, first message time and count of the open conversation.
        tx.eval(
          `local last = tonumber(redis.call('GET', KEYS[1]) or '0')
           if tonumber(ARGV[1]) > last then redis.call('SET', KEYS[1], ARGV[1]) end
           redis.call('SETNX', KEYS[2], ARGV[1])
           redis.call('INCR', KEYS[3])
           local l = math.max(last, tonumber(ARGV[1]))
           redis.call('ZADD', KEYS[4], l + tonumber(ARGV[2]), ARGV[3])
           return 1`,
          4, `${p}chat:last_msg:${c}`, `${p}chat:first_msg:${c}`, `${p}chat:count:${c}`, queue, String(msg.sent_at), String(gap), c,
        );
      }
      await tx.exec();
    },
  });

  // The beat: every CHECK_MS, seal the chats whose last message is at least `gap` old.
  let checking = false;
  const check = async () => {
    if (checking) return;
    checking = true;
    try {
      const now = Date.now();
      const due = await redis.zrangebyscore(queue, '-inf', now);
      const out = [];
      for (const c of due) {
        const [last, first, count] = await redis.mget(`${p}chat:last_msg:${c}`, `${p}chat:first_msg:${c}`, `${p}chat:count:${c}`);
        if (last === null) { await redis.zrem(queue, c); continue; }
        if (now - Number(last) >= gap) {
          await redis.multi().zrem(queue, c).del(`${p}chat:last_msg:${c}`, `${p}chat:first_msg:${c}`, `${p}chat:count:${c}`).exec();
          out.push({ key: c, value: JSON.stringify({ chat_id: c, started_at: Number(first), ended_at: Number(last), message_count: Number(count), sealed_at: now, gap_ms: gap }) });
        } else {
          await redis.zadd(queue, Number(last) + gap, c);
        }
      }
      if (out.length > 0) await producer.send({ topic: process.env.OUT_TOPIC!, messages: out, acks: -1 });
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => { void check(); }, checkMs);
  console.log(JSON.stringify({ event: 'running' }));
  const stop = async () => {
    clearInterval(timer);
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    const keys = await redis.keys(`${p}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    process.exit(0);
  };
  process.on('SIGTERM', () => { void stop(); });
  process.on('SIGINT', () => { void stop(); });
}

main().catch((e) => { console.error(e); process.exit(1); });
