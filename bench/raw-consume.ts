// The ceiling for a kafkajs consumer: a plain kafkajs consumer (read_committed, like the tracker)
// whose eachBatch only counts, on the tracker's input topic. Run as a child process by the
// throughput benchmark; prints one JSON line: {"event":"raw", records, ms, firstBatchMs}.
// Environment: TOPIC, EXPECTED (records to count), GROUP.
import { Kafka, logLevel } from 'kafkajs';

async function main(): Promise<void> {
  const t0 = Date.now();
  const topic = process.env.TOPIC!;
  const expected = Number(process.env.EXPECTED);
  const kafka = new Kafka({ clientId: 'bench-raw', brokers: [process.env.KAFKA_BROKERS ?? '127.0.0.1:9092'], logLevel: logLevel.NOTHING });
  // The tracker's consumer settings, so that the ceiling is the same client doing the same fetches.
  const consumer = kafka.consumer({
    groupId: process.env.GROUP!, readUncommitted: false, maxBytesPerPartition: 1_048_576, maxWaitTimeInMs: 100,
    sessionTimeout: 30_000, heartbeatInterval: 3_000,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let count = 0;
  let first = 0;
  let resolve!: () => void;
  const done = new Promise<void>((r) => { resolve = r; });
  await consumer.run({
    autoCommit: false,
    partitionsConsumedConcurrently: 6,
    eachBatch: async ({ batch }) => {
      if (first === 0) first = Date.now();
      count += batch.messages.length;
      if (count >= expected) resolve();
    },
  });
  await done;
  const ms = Date.now() - t0;
  console.log(JSON.stringify({ event: 'raw', records: count, ms, firstBatchMs: first - t0 }));
  await consumer.disconnect();
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
