// The Fetch response's record decoding that kafkajs' consumer gets (src/runtime/fetch-messages.ts)
// against kafkajs' own decodeMessages, on the same bytes: every field of every record, batch
// contexts included; transactional and control batches; log-append time; a partial last batch;
// a compressed batch; and kafkajs' Batch (read committed) over the records, which must keep the
// same ones.
import '../../src/kafkajs-patch';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessages } from '../../src/runtime/fetch-messages';
import { fetchDecodingPatched, kafkajsDecodeMessages } from '../../src/kafkajs-patch';
import { batch, Compression, VARIED_RECORDS } from '../support/record-batch-bytes';

/* eslint-disable @typescript-eslint/no-require-imports */
const Decoder = require('kafkajs/src/protocol/decoder');
const Batch = require('kafkajs/src/consumer/batch');
/* eslint-enable @typescript-eslint/no-require-imports */

const b = (s: string) => Buffer.from(s);

/** A partition's records field as a Fetch response carries it (int32 size, then the batches), with bytes after it. */
function field(data: Buffer): Buffer {
  const size = Buffer.alloc(4);
  size.writeInt32BE(data.length);
  return Buffer.concat([size, data, b('next partition')]);
}

/** Both decoders on the same field; each must leave the response's decoder at the same place. */
async function both(data: Buffer): Promise<{ ours: unknown[]; theirs: unknown[] }> {
  const d1 = new Decoder(field(data));
  const d2 = new Decoder(field(data));
  const ours = await decodeMessages(d1);
  const theirs = await kafkajsDecodeMessages()(d2);
  assert.equal(d1.offset, d2.offset, 'the response decoder moved past the field');
  return { ours, theirs };
}

test('kafkajs consumers get this decoder', () => {
  assert.ok(fetchDecodingPatched());
  assert.notEqual(kafkajsDecodeMessages(), decodeMessages);
});

test('every field of every record, as kafkajs decodes them', async () => {
  const data = Buffer.concat([
    await batch(100, VARIED_RECORDS, { firstTimestamp: 1_764_000_000_123 }),
    await batch(105, [{ key: b('next'), value: b(''), timestampDelta: 2 ** 40 }], { producerId: 42, transactional: true }),
    await batch(106, [], { producerId: 42, control: 'commit' }),
    await batch(107, [{ key: b('appended'), value: b('log time'), timestampDelta: 7 }], { logAppendTime: true, firstTimestamp: 1_764_000_000_000 }),
  ]);
  const { ours, theirs } = await both(data);
  assert.equal(ours.length, 8);
  assert.deepEqual(ours, theirs);
});

test('a partial last batch is left out; a field with no complete batch gives no records', async () => {
  const first = await batch(0, [{ key: b('a'), value: b('1') }, { key: b('b'), value: b('2') }]);
  const second = await batch(2, [{ key: b('c'), value: Buffer.alloc(1000) }]);
  const cut = await both(Buffer.concat([first, second.subarray(0, second.length - 10)]));
  assert.deepEqual(cut.ours, cut.theirs);
  assert.equal(cut.ours.length, 2);
  const none = await both(second.subarray(0, 40));
  assert.deepEqual(none.ours, []);
  assert.deepEqual(none.theirs, []);
});

test('a compressed batch is decoded by kafkajs, between uncompressed ones', async () => {
  const data = Buffer.concat([
    await batch(0, [{ key: b('p'), value: b('plain') }]),
    await batch(1, [{ key: b('g1'), value: b('zipped') }, { key: b('g2'), value: b('zipped') }], { compression: Compression.GZIP }),
    await batch(3, [{ key: b('q'), value: b('plain again') }]),
  ]);
  const { ours, theirs } = await both(data);
  assert.deepEqual(ours, theirs);
  assert.deepEqual(ours.map((m) => (m as { offset: string }).offset), ['0', '1', '2', '3']);
});

test("kafkajs' Batch keeps the same records: from the fetch offset, committed, no markers", async () => {
  const data = Buffer.concat([
    await batch(0, [{ key: b('x0'), value: b('aborted') }, { key: b('x1'), value: b('aborted') }], { producerId: 7, transactional: true }),
    await batch(2, [], { producerId: 7, control: 'abort' }),
    await batch(3, [{ key: b('y3'), value: b('committed') }, { key: b('y4'), value: b('committed') }], { producerId: 8, transactional: true }),
    await batch(5, [], { producerId: 8, control: 'commit' }),
    await batch(6, [{ key: b('plain'), value: b('not transactional') }]),
  ]);
  const { ours, theirs } = await both(data);
  const kept = (messages: unknown[], fetchOffset: string) =>
    new Batch('t', fetchOffset, { partition: 0, highWatermark: '7', abortedTransactions: [{ producerId: '7', firstOffset: '0' }], messages })
      .messages.map((m: { offset: string }) => m.offset);
  assert.deepEqual(kept(ours, '0'), ['3', '4', '6']);
  assert.deepEqual(kept(ours, '0'), kept(theirs, '0'));
  assert.deepEqual(kept(ours, '4'), ['4', '6']);
});
