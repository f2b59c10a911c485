// A consumer that kafkajs leaves stopped (a crash on an error it does not restart from) is run
// again by runSupervised, on the real broker: the record whose processing failed is read again
// from the committed offset and processed, and the restart is counted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { KafkaJSNonRetriableError, type Consumer } from 'kafkajs';
import { testKafka, waitFor } from '../support/harness';
import { runSupervised } from '../../src/runtime/consumer-supervisor';
import { registry } from '../../src/metrics';

process.env.LOG_LEVEL ??= 'warn';
const kafka = testKafka();
const topic = `supervisor-${Date.now().toString(36)}`;
const silent = { info() {}, warn() {}, debug() {}, error() {} } as never;
let consumer: Consumer | null = null;
let stopping = false;
after(async () => { stopping = true; await consumer?.disconnect(); });

const restarts = async () => (await registry.getSingleMetric('chatstats_consumer_restarts_total')?.get())?.values.find((v) => v.labels.role === 'test')?.value ?? 0;

test('a consumer stopped by a non-retriable error is run again and reads the failed record again', { timeout: 150_000 }, async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: [{ value: 'a' }, { value: 'b' }] });
  await producer.disconnect();

  consumer = kafka.consumer({ groupId: `${topic}-g`, maxWaitTimeInMs: 200 });
  const crashes: boolean[] = [];
  consumer.on(consumer.events.CRASH, (e) => { crashes.push(e.payload.restart); });
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen: string[] = [];
  let failed = false;
  await runSupervised(consumer, {
    autoCommit: false,
    eachMessage: async ({ message, partition }) => {
      const v = message.value!.toString();
      if (v === 'b' && !failed) { failed = true; throw new KafkaJSNonRetriableError('poison for this test'); }
      seen.push(v);
      await consumer!.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
    },
  }, { role: 'test', log: silent, stopping: () => stopping, initialMs: 500 });

  await waitFor('both records processed', 90_000, async () => (seen.includes('b') ? true : undefined), 100);
  assert.deepEqual(seen, ['a', 'b'], `a once (committed before the crash), b after the restart; crashes ${JSON.stringify(crashes)}`);
  assert.equal(crashes[0], false, 'kafkajs did not restart it itself');
  assert.equal(await restarts(), 1, 'one restart counted');
});
