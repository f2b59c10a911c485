// The partition reader's record-batch decoder against kafkajs' own, on batches kafkajs encodes:
// records from the fetch offset on, keys, values, nulls, headers, timestamps; read committed
// (aborted transactions and control batches dropped); a partial last batch; a compressed batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecordBatches } from '../../src/runtime/record-batches';
import type { RawRecord } from '../../src/runtime/partition-reader';
import { batch, Compression, VARIED_RECORDS } from '../support/record-batch-bytes';

/* eslint-disable @typescript-eslint/no-require-imports */
const RecordBatchDecoder = require('kafkajs/src/protocol/recordBatch/v0/decoder');
const Decoder = require('kafkajs/src/protocol/decoder');
/* eslint-enable @typescript-eslint/no-require-imports */

/** What kafkajs decodes from the same bytes, batch by batch (no transaction filtering). */
async function kafkajsRecords(data: Buffer): Promise<RawRecord[]> {
  const d = new Decoder(data);
  const out: RawRecord[] = [];
  while (d.canReadBytes(61)) {
    const b = await RecordBatchDecoder(d) as { records: (RawRecord & { isControlRecord: boolean })[] };
    for (const r of b.records) if (!r.isControlRecord) out.push({ key: r.key, value: r.value, offset: r.offset, timestamp: r.timestamp, headers: r.headers });
  }
  return out;
}

/** A record's fields as a plain object (kafkajs' records are plain; ours compute offset and timestamp). */
const plain = (r: RawRecord): RawRecord => ({ key: r.key, value: r.value, offset: r.offset, timestamp: r.timestamp, headers: r.headers });

const noCompressed = async (): Promise<RawRecord[]> => { throw new Error('no compressed batch expected'); };
const b = (s: string) => Buffer.from(s);

test('records from the fetch offset on, as kafkajs decodes them', async () => {
  const data = Buffer.concat([
    await batch(100, VARIED_RECORDS, { firstTimestamp: 1_764_000_000_123 }),
    await batch(105, [{ key: b('next'), value: b(''), timestampDelta: 2 ** 40 }]),
  ]);
  const all = await kafkajsRecords(data);
  const got = await decodeRecordBatches(data, 100, [], noCompressed);
  assert.deepEqual(got.records.map(plain), all);
  assert.equal(got.nextOffset, 106);
  assert.deepEqual(got.records[3]!.headers, { one: b('x'), two: [b('y'), b('z')] });
  assert.equal(got.records[2]!.value, null);
  assert.equal(got.records[1]!.key, null);

  const from = await decodeRecordBatches(data, 102, [], noCompressed);
  assert.deepEqual(from.records.map((r) => r.offset), ['102', '103', '104', '105']);
  assert.deepEqual(from.records.map(plain), all.slice(2));
});

test('read committed: an aborted transaction and every control batch are dropped', async () => {
  const data = Buffer.concat([
    await batch(0, [{ key: b('x0'), value: b('aborted') }, { key: b('x1'), value: b('aborted') }, { key: b('x2'), value: b('aborted') }], { producerId: 7, transactional: true }),
    await batch(3, [], { producerId: 7, control: 'abort' }),
    await batch(4, [{ key: b('y4'), value: b('committed') }, { key: b('y5'), value: b('committed') }], { producerId: 8, transactional: true }),
    await batch(6, [], { producerId: 8, control: 'commit' }),
    await batch(7, [{ key: b('x7'), value: b('committed later') }, { key: b('x8'), value: b('committed later') }], { producerId: 7, transactional: true }),
    await batch(9, [], { producerId: 7, control: 'commit' }),
    await batch(10, [{ key: b('plain'), value: b('not transactional') }], { producerId: 7 }),
  ]);
  const got = await decodeRecordBatches(data, 0, [{ producerId: 7n, firstOffset: 0 }], noCompressed);
  assert.deepEqual(got.records.map((r) => r.offset), ['4', '5', '7', '8', '10']);
  assert.equal(got.nextOffset, 11);
  // Without the aborted list (read uncommitted), only the markers go.
  const all = await decodeRecordBatches(data, 0, [], noCompressed);
  assert.deepEqual(all.records.map((r) => r.offset), ['0', '1', '2', '4', '5', '7', '8', '10']);
  // A fetch that starts on a marker: nothing but the offset after it.
  const commit = await batch(9, [], { producerId: 7, control: 'commit' });
  const at = data.indexOf(commit);
  const marker = await decodeRecordBatches(data.subarray(at, at + commit.length), 9, [], noCompressed);
  assert.deepEqual(marker, { records: [], nextOffset: 10 });
});

test('a partial last batch is left for the next fetch; nothing complete means no progress', async () => {
  const first = await batch(0, [{ key: b('a'), value: b('1') }, { key: b('b'), value: b('2') }]);
  const second = await batch(2, [{ key: b('c'), value: Buffer.alloc(1000) }]);
  const data = Buffer.concat([first, second.subarray(0, second.length - 10)]);
  const got = await decodeRecordBatches(data, 0, [], noCompressed);
  assert.deepEqual(got.records.map((r) => r.offset), ['0', '1']);
  assert.equal(got.nextOffset, 2);
  const none = await decodeRecordBatches(second.subarray(0, 40), 2, [], noCompressed);
  assert.deepEqual(none, { records: [], nextOffset: 2 });
  assert.deepEqual(await decodeRecordBatches(Buffer.alloc(0), 5, [], noCompressed), { records: [], nextOffset: 5 });
});

test('a compressed batch goes to the fallback decoder, from the fetch offset on', async () => {
  const data = await batch(20, [{ key: b('g1'), value: b('zipped') }, { key: b('g2'), value: b('zipped') }], { compression: Compression.GZIP });
  let calls = 0;
  const got = await decodeRecordBatches(data, 21, [], async (bytes) => { calls++; return kafkajsRecords(bytes); });
  assert.equal(calls, 1);
  assert.deepEqual(got.records.map((r) => [r.offset, r.key?.toString()]), [['21', 'g2']]);
  assert.equal(got.nextOffset, 22);
});
