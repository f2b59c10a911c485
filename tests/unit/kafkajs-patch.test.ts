// The linear replacement of kafkajs' grouping of a send's messages by partition (src/kafkajs-patch.ts):
// in place once the client module is loaded, and grouping exactly as kafkajs' own function does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import '../../src/kafka-client';
import { groupMessagesPerPartition, kafkajsPatched, setEncoderGrowth, uninitializedGrowth, zeroFillingGrowth } from '../../src/kafkajs-patch';

/** kafkajs' original function, loaded from its file without touching the module cache. */
function original(): typeof groupMessagesPerPartition {
  const file = path.join(path.dirname(require.resolve('kafkajs/package.json')), 'src/producer/groupMessagesPerPartition.js');
  const mod = { exports: {} as unknown };
  vm.runInThisContext(`(function (module) {${readFileSync(file, 'utf8')}\n})`)(mod);
  return mod.exports as typeof groupMessagesPerPartition;
}

test('kafkajs producer uses the linear grouping once the client module is loaded', () => {
  assert.equal(kafkajsPatched(), true);
  const file = path.join(path.dirname(require.resolve('kafkajs/package.json')), 'src/producer/groupMessagesPerPartition.js');
  assert.equal(require(file), groupMessagesPerPartition);
});

test('groups like kafkajs: same partitions, same order, nothing for a topic without metadata', () => {
  const kafkajs = original();
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let round = 0; round < 50; round++) {
    const messages = Array.from({ length: Math.floor(rnd() * 300) }, (_, i) => ({ key: `k${i}`, partition: Math.floor(rnd() * 7) }));
    const args = { topic: 't', partitionMetadata: [{}, {}], messages, partitioner: ({ message }: { message: unknown }) => (message as { partition: number }).partition };
    assert.deepEqual(groupMessagesPerPartition(args), kafkajs(args));
    assert.deepEqual(groupMessagesPerPartition({ ...args, partitionMetadata: [] }), kafkajs({ ...args, partitionMetadata: [] }));
  }
});

test('the Encoder grows without zero-filling and encodes record batches byte for byte as kafkajs does', async () => {
  const root = path.dirname(require.resolve('kafkajs/package.json'));
  const Encoder = require(path.join(root, 'src/protocol/encoder.js'));
  const { RecordBatch } = require(path.join(root, 'src/protocol/recordBatch/v0'));
  const Record = require(path.join(root, 'src/protocol/recordBatch/record/v0'));
  assert.equal(Encoder.prototype.ensureAvailable, uninitializedGrowth, 'in place once the patch module is loaded');
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const encode = async (sizes: number[]) => {
    const records = sizes.map((n, i) => Record({ offsetDelta: i, timestampDelta: i, key: Buffer.from(`k${i}`), value: Buffer.alloc(n, i + 1), headers: i % 3 ? {} : { h: 'v' } }));
    const b = await RecordBatch({ compression: 0, firstOffset: '0', firstTimestamp: 1, maxTimestamp: 2, producerId: 1, producerEpoch: 0, firstSequence: 0, transactional: true, records });
    return Buffer.from(b.buffer);
  };
  for (let round = 0; round < 20; round++) {
    const sizes = Array.from({ length: 1 + Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 20_000));
    const patched = await encode(sizes);
    const was = setEncoderGrowth(zeroFillingGrowth);
    try { assert.deepEqual(patched, await encode(sizes)); } finally { setEncoderGrowth(was); }
  }
});
