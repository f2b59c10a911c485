// Java-compatible partitioning: murmur2 and the partition of a key must be exactly the Java client's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Partitioners, type PartitionMetadata } from 'kafkajs';
import { javaCompatiblePartitioner, murmur2, partitionForKey, toPositive } from '../../src/records/partitioner';
import { IRC_COUNTS, IRC_FILE, JAVA_MURMUR2_IRC } from '../fixtures/records';

const utf8 = (s: string) => Buffer.from(s, 'utf8');

test('murmur2: the vectors of Kafka\'s UtilsTest.testMurmur2', () => {
  // apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
  assert.equal(murmur2(utf8('21')), -973932308);
  assert.equal(murmur2(utf8('foobar')), -790332482);
  assert.equal(murmur2(utf8('a-little-bit-long-string')), -985981536);
  assert.equal(murmur2(utf8('a-little-bit-longer-string')), -1486304829);
  assert.equal(murmur2(utf8('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8')), -58897971);
  assert.equal(murmur2(Buffer.from([0x61, 0x62, 0x63])), 479470107);
});

test('murmur2 and partitionForKey: values printed by the Java client', () => {
  // Utils.murmur2 and BuiltInPartitioner.partitionForKey(bytes, 6) of kafka-clients 4.1.1
  // (.infra/kafka/libs), run once from a single-file Java program; strings as UTF-8 bytes.
  const java: [string | Buffer, number, number][] = [
    ['', 275646681, 3],
    ['a', -1563381124, 4],
    ['abc', 479470107, 3],
    ['hello', 2132663229, 3],
    ['chat-1', 402106550, 2],
    ['21', -973932308, 0],
    ['foobar', -790332482, 0],
    ['a-little-bit-long-string', -985981536, 2],
    ['h\u00e9llo w\u00f6rld \u2713', -1290846696, 2],
    [Buffer.from([0xff, 0x80, 0x00, 0x01, 0x02]), -1813786316, 0],
  ];
  for (const [key, hash, p6] of java) {
    const bytes = typeof key === 'string' ? utf8(key) : key;
    assert.equal(murmur2(bytes), hash, `murmur2(${JSON.stringify(key)})`);
    assert.equal(partitionForKey(key, 6), toPositive(hash) % 6, `partition of ${JSON.stringify(key)}`);
    if (typeof key === 'string') assert.equal(partitionForKey(key, 6), p6, `partition of ${JSON.stringify(key)}`);
  }
  assert.equal(toPositive(-1), 0x7fffffff);
  assert.equal(toPositive(-0x80000000), 0);
});

test('each chat of the IRC sample lands where the Java default partitioner puts it', () => {
  const counts = new Map<string, number>();
  for (const line of readFileSync(IRC_FILE, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const id = (JSON.parse(line) as { chat_id: string }).chat_id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  assert.equal(counts.size, 12);
  assert.deepEqual(Object.fromEntries(counts), IRC_COUNTS);
  for (const id of counts.keys()) {
    const java = JAVA_MURMUR2_IRC[id];
    assert.ok(java, `no Java value for ${id}`);
    assert.equal(murmur2(utf8(id)), java.murmur2, `murmur2(${id})`);
    assert.equal(partitionForKey(id, 6), java.p6, `${id} over 6 partitions`);
    assert.equal(partitionForKey(id, 3), java.p3, `${id} over 3 partitions`);
    assert.equal(partitionForKey(id, 12), java.p12, `${id} over 12 partitions`);
  }
});

function metadata(n: number, down: number[] = []): PartitionMetadata[] {
  return Array.from({ length: n }, (_, i) => ({
    partitionErrorCode: 0, partitionId: i, leader: down.includes(i) ? -1 : 0, replicas: [0], isr: [0],
  }));
}

test('agrees with kafkajs\' DefaultPartitioner (documented as Java-compatible) on random keys', () => {
  const theirs = Partitioners.DefaultPartitioner();
  const ours = javaCompatiblePartitioner()();
  let seed = 12345;
  const rand = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed; };
  for (let i = 0; i < 3000; i++) {
    const len = rand() % 40;
    const key = Buffer.alloc(len);
    for (let j = 0; j < len; j++) key[j] = rand() & 0xff;
    for (const n of [1, 2, 6, 7, 12, 100]) {
      const args = { topic: 't', partitionMetadata: metadata(n), message: { key, value: null } };
      assert.equal(ours(args), theirs(args), `key ${key.toString('hex')} over ${n}`);
    }
    const s = `chat-${i}-${key.toString('base64')}`;
    assert.equal(partitionForKey(s, 6), theirs({ topic: 't', partitionMetadata: metadata(6), message: { key: s, value: null } }));
  }
});

test('kafkajs partitioner: explicit partition wins, a key ignores availability, no key goes round-robin over available', () => {
  const seen: [string, number][] = [];
  const p = javaCompatiblePartitioner({ onPartitionCount: (t, n) => seen.push([t, n]) })();
  const md = metadata(6, [2, 3]);
  assert.equal(p({ topic: 't', partitionMetadata: md, message: { key: 'chat-1', value: null, partition: 5 } }), 5);
  assert.equal(p({ topic: 't', partitionMetadata: md, message: { key: 'chat-1', value: null } }), 2, 'keyed: partition 2 even without leader, like Java');
  const hits = new Set<number>();
  for (let i = 0; i < 40; i++) hits.add(p({ topic: 't', partitionMetadata: md, message: { key: null, value: null } }));
  assert.deepEqual([...hits].sort(), [0, 1, 4, 5]);
  assert.deepEqual(seen[0], ['t', 6]);
});

test('partitionForKey refuses a bad partition count', () => {
  assert.throws(() => partitionForKey('a', 0), RangeError);
  assert.throws(() => partitionForKey('a', 1.5), RangeError);
});
