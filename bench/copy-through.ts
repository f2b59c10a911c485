// The ceiling for an exactly-once processor on kafkajs: read the input, produce the same bytes
// (key, value, headers, timestamp) to the same partition of an output topic, and commit the input
// offsets in the same transaction, one transaction per fetch, no processing and no state. It is
// built as the tracker's runtime is: a read_committed consumer with the tracker's fetch size, one
// transactional producer per input partition (transactional id per partition, idempotent, one
// request in flight), produce requests of at most 768 KiB, the offsets sent to the transaction.
// Run as a child process by the throughput benchmark, which times it by its group's committed
// offsets like the tracker. Prints {"event":"copy", records, transactions, ms, firstBatchMs}
// once it has copied EXPECTED records, then keeps running until stopped.
// Environment: TOPIC, OUTPUT, EXPECTED, GROUP, FETCH_MAX_BYTES_PER_PARTITION (default 8MiB, as the tracker's).
import '../src/kafkajs-patch'; // before kafkajs loads: its grouping, Encoder growth and Produce encoding
import { Kafka, logLevel, type Message, type Producer } from 'kafkajs';
import { parseBytes } from '../src/config';

const MAX_REQUEST_BYTES = 768 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const t0 = Date.now();
  const topic = process.env.TOPIC!;
  const output = process.env.OUTPUT!;
  const group = process.env.GROUP!;
  const expected = Number(process.env.EXPECTED ?? Infinity);
  const fetchBytes = parseBytes(process.env.FETCH_MAX_BYTES_PER_PARTITION ?? '8MiB');
  const kafka = new Kafka({ clientId: 'bench-copy', brokers: [process.env.KAFKA_BROKERS ?? '127.0.0.1:9092'], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({
    groupId: group, readUncommitted: false, maxBytesPerPartition: fetchBytes, maxBytes: Math.max(10_485_760, 2 * fetchBytes),
    maxWaitTimeInMs: 100, sessionTimeout: 30_000, rebalanceTimeout: 60_000, heartbeatInterval: 3_000,
  });
  const producers = new Map<number, Promise<Producer>>();
  const producerFor = (partition: number) => {
    let p = producers.get(partition);
    if (!p) {
      const producer = kafka.producer({
        transactionalId: `${group}-copy-${partition}`, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 60_000,
        retry: { initialRetryTime: 10, maxRetryTime: 1000, retries: 30 },
      });
      p = producer.connect().then(() => producer);
      producers.set(partition, p);
    }
    return p;
  };
  let count = 0;
  let transactions = 0;
  let first = 0;
  let reported = false;
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 1024,
    eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
      if (batch.messages.length === 0) return;
      if (first === 0) first = Date.now();
      const producer = await producerFor(batch.partition);
      const txn = await producer.transaction();
      try {
        let request: Message[] = [];
        let bytes = 0;
        const send = async () => {
          if (request.length === 0) return;
          await txn.send({ topic: output, messages: request });
          request = [];
          bytes = 0;
        };
        for (const m of batch.messages) {
          const size = 64 + (m.key?.length ?? 0) + (m.value?.length ?? 0);
          if (bytes > 0 && bytes + size > MAX_REQUEST_BYTES) await send();
          request.push({ key: m.key, value: m.value, headers: m.headers, timestamp: m.timestamp, partition: batch.partition });
          bytes += size;
        }
        await send();
        const next = String(Number(batch.lastOffset()) + 1);
        // As the tracker's task: CONCURRENT_TRANSACTIONS is retried for AddOffsetsToTxn too.
        for (let attempt = 0; ; attempt++) {
          try {
            await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic, partitions: [{ partition: batch.partition, offset: next }] }] });
            break;
          } catch (e) {
            if ((e as { type?: string }).type !== 'CONCURRENT_TRANSACTIONS' || attempt >= 50) throw e;
            await sleep(Math.min(10 * 2 ** attempt, 200));
          }
        }
        await txn.commit();
      } catch (e) {
        await txn.abort().catch(() => undefined);
        throw e;
      }
      transactions++;
      resolveOffset(batch.lastOffset());
      await heartbeat();
      count += batch.messages.length;
      if (!reported && count >= expected) {
        reported = true;
        console.log(JSON.stringify({ event: 'copy', records: count, transactions, ms: Date.now() - t0, firstBatchMs: first - t0 }));
      }
    },
  });
  const stop = async () => {
    await consumer.disconnect().catch(() => undefined);
    for (const p of producers.values()) await (await p).disconnect().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGTERM', () => { void stop(); });
  process.on('SIGINT', () => { void stop(); });
}

main().catch((e) => { console.error(e); process.exit(1); });
