// Sends split by topic-partition (src/kafka-send.ts): where each message goes, and that a failed
// send is reported only once every other partition's send has finished.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Admin, Message, RecordMetadata, TopicMessages } from 'kafkajs';
import { byPartition, PartitionCounts, sendEachPartition } from '../../src/kafka-send';
import { partitionForKey } from '../../src/records/partitioner';

function counts(partitions: Record<string, number>): { counts: PartitionCounts; lookups: string[] } {
  const lookups: string[] = [];
  const admin = {
    fetchTopicMetadata: async ({ topics }: { topics: string[] }) => {
      lookups.push(...topics);
      return { topics: topics.map((name) => ({ name, partitions: Array.from({ length: partitions[name] ?? 0 }, (_, i) => ({ partitionId: i })) })) };
    },
  } as unknown as Admin;
  return { counts: new PartitionCounts(async () => admin), lookups };
}

test('byPartition: an explicit partition wins, a key goes where the Java client puts it, keyless round-robin; order kept', async () => {
  const { counts: c, lookups } = counts({ a: 6, b: 1 });
  const keyed: Message[] = Array.from({ length: 50 }, (_, i) => ({ key: `chat-${i % 7}`, value: `v${i}` }));
  const groups = await byPartition([
    { topic: 'a', messages: [...keyed, { key: 'x', value: 'pinned', partition: 5 }] },
    { topic: 'b', messages: [{ key: null, value: 'k1' }, { key: null, value: 'k2' }] },
    { topic: 'a', messages: Array.from({ length: 12 }, (_, i) => ({ key: null, value: `free${i}` })) },
  ], c);
  for (const g of groups) for (const m of g.messages) assert.equal(m.partition, g.partition);
  const a = groups.filter((g) => g.topic === 'a');
  for (const m of keyed) {
    const g = a.find((x) => x.messages.some((y) => y.value === m.value))!;
    assert.equal(g.partition, partitionForKey(m.key as string, 6), `${m.key}`);
  }
  assert.ok(a.find((g) => g.partition === 5)!.messages.some((m) => m.value === 'pinned'));
  // Per partition, the order given.
  for (const g of a) {
    const idx = g.messages.filter((m) => String(m.value).startsWith('v')).map((m) => Number(String(m.value).slice(1)));
    assert.deepEqual(idx, [...idx].sort((x, y) => x - y));
  }
  // Keyless messages spread over the partitions (12 over 6: each gets two).
  const free = a.map((g) => g.messages.filter((m) => String(m.value).startsWith('free')).length);
  assert.deepEqual(free, a.map(() => 2));
  assert.deepEqual(groups.filter((g) => g.topic === 'b').map((g) => [g.partition, g.messages.length]), [[0, 2]]);
  assert.deepEqual(lookups.sort(), ['a', 'b'], 'one metadata lookup per topic');
  await byPartition([{ topic: 'a', messages: [{ key: 'k', value: 'again' }] }], c);
  assert.equal(lookups.length, 2, 'counts are kept');
});

test('sendEachPartition: one send per topic-partition; a failure is thrown only after every send has finished', async () => {
  const calls: TopicMessages[][] = [];
  let slowDone = false;
  const send = async (tm: TopicMessages[]): Promise<RecordMetadata[]> => {
    calls.push(tm);
    const p = tm[0]!.messages[0]!.partition!;
    if (p === 0) throw new Error('NOT_LEADER_OR_FOLLOWER');
    await new Promise((r) => setTimeout(r, 50));
    slowDone = true;
    return [{ topicName: tm[0]!.topic, partition: p, errorCode: 0, baseOffset: '0' }];
  };
  const groups = [
    { topic: 't', partition: 0, messages: [{ key: 'a', value: '1', partition: 0 }] },
    { topic: 't', partition: 1, messages: [{ key: 'b', value: '2', partition: 1 }] },
  ];
  await assert.rejects(sendEachPartition(send, groups), (e: Error) => {
    assert.equal(e.message, 'NOT_LEADER_OR_FOLLOWER');
    assert.ok(slowDone, 'the other partition\'s send had finished');
    return true;
  });
  assert.equal(calls.length, 2);
  for (const c of calls) assert.equal(c.length, 1, 'one topic per send');
  const ok = await sendEachPartition(async (tm) => [{ topicName: tm[0]!.topic, partition: tm[0]!.messages[0]!.partition!, errorCode: 0 }], groups);
  assert.deepEqual(ok.map((r) => r.partition).sort(), [0, 1]);
});
