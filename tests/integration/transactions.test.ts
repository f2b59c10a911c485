// A task adds all of a transaction's partitions in one AddPartitionsToTxn request, where kafkajs
// adds them send by send (src/kafkajs-patch.ts gives it kafkajs' transaction manager): against the
// real broker, the requests kafkajs sends for a transaction over three partitions with and without
// that, and what a read_committed consumer then reads.
import '../../src/kafkajs-patch'; // before kafkajs loads
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { takeTransactionManager, transactionManagerPatched } from '../../src/kafkajs-patch';
import { deleteTopics, readTopic, testKafka, uniquePrefix } from '../fixtures/kafka';

const kafka = testKafka();
const prefix = uniquePrefix('txn');
after(() => deleteTopics(kafka, prefix));

test('one AddPartitionsToTxn request for a transaction\'s partitions, and what it wrote is committed', { timeout: 120_000 }, async () => {
  assert.equal(transactionManagerPatched(), true);
  const topic = `${prefix}out`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3 }] });
  await admin.disconnect();
  const id = `${prefix}tx`;
  const producer = kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const requests: string[] = [];
  producer.on(producer.events.REQUEST, (e) => { requests.push(e.payload.apiName); });
  const count = (name: string) => requests.filter((n) => n === name).length;
  try {
    const first = producer.transaction();
    const manager = takeTransactionManager(id);
    assert.ok(manager, 'the manager of the transaction just begun');
    const txn = await first;
    const before = count('AddPartitionsToTxn');
    await manager.addPartitionsToTransaction([{ topic, partitions: [0, 1, 2].map((partition) => ({ partition })) }]);
    for (const p of [0, 1, 2]) await txn.sendBatch({ topicMessages: [{ topic, messages: [{ key: `a${p}`, value: `a${p}`, partition: p }] }] });
    await txn.commit();
    assert.equal(count('AddPartitionsToTxn') - before, 1, 'added together');
    assert.equal(count('Produce'), 3);

    // The same without adding first: kafkajs adds each partition with its send.
    const second = await producer.transaction();
    const before2 = count('AddPartitionsToTxn');
    for (const p of [0, 1, 2]) await second.sendBatch({ topicMessages: [{ topic, messages: [{ key: `b${p}`, value: `b${p}`, partition: p }] }] });
    await second.commit();
    assert.ok(count('AddPartitionsToTxn') - before2 >= 3, 'one per send (more when the broker answered CONCURRENT_TRANSACTIONS)');
  } finally {
    await producer.disconnect();
  }
  const read = await readTopic(kafka, topic, 6);
  assert.deepEqual(read.map((r) => `${r.partition}:${r.value!.toString()}`).sort(), ['0:a0', '0:b0', '1:a1', '1:b1', '2:a2', '2:b2']);
});
