// The Produce request encoder (src/runtime/produce-request.ts) writes the bytes kafkajs' own
// encoder writes, for the messages kafkajs' producer hands it: keys and values as strings, buffers
// or null, headers with several values, timestamps given or not, transactional or not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/kafka-client';
import { kafkajsProduceRequest, produceRequest, produceRequestPatched } from '../../src/kafkajs-patch';
import type { ProduceMessage, ProduceRequestArgs } from '../../src/runtime/produce-request';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Long = require('kafkajs/src/utils/long') as { fromValue(v: string | number): { toString(): string } };

/** The request body each encoder writes, with Date.now() pinned (records without a timestamp get it). */
async function bodies(args: ProduceRequestArgs & { compression?: number }, now = 1_764_700_000_123): Promise<[Buffer, Buffer]> {
  const real = Date.now;
  Date.now = () => now;
  try {
    const body = async (f: typeof produceRequest) => ((await f(args).encode()) as { buffer: Buffer }).buffer;
    return [await body(produceRequest), await body(kafkajsProduceRequest())];
  } finally {
    Date.now = real;
  }
}

function rng(seed: number): () => number {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

function randomMessage(rnd: () => number, i: number): ProduceMessage {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const text = (n: number) => Array.from({ length: n }, (_, j) => pick(['a', 'é', '会', 'z', '\u0000', `${j}`])).join('');
  const m: ProduceMessage = {
    key: pick([null, `chat-${i}`, Buffer.from(text(Math.floor(rnd() * 40))), text(3)]),
    value: pick([null, Buffer.alloc(Math.floor(rnd() * 3000), i), text(Math.floor(rnd() * 200)), Buffer.alloc(0)]),
  };
  if (rnd() < 0.3) {
    m.headers = { 'chatstats-command': '1', ...(rnd() < 0.5 ? { multi: ['x', Buffer.from('yz')] } : {}), [text(4)]: Buffer.from(text(70)) };
  }
  if (rnd() < 0.4) m.timestamp = pick([String(1_764_700_000_000 + Math.floor(rnd() * 1e6)), 1_600_000_000_000 + i, '999999999999']);
  return m;
}

test('kafkajs producer encodes Produce requests with produce-request.ts once the client module is loaded', () => {
  assert.equal(produceRequestPatched(), true);
});

test('writes the bytes kafkajs writes: random topics, partitions, keys, values, headers and timestamps', async () => {
  const rnd = rng(7);
  for (let round = 0; round < 60; round++) {
    const topics = Array.from({ length: 1 + Math.floor(rnd() * 3) }, (_, t) => ({
      topic: `t${t}.chat.sealed-${'ü'.repeat(t)}`,
      partitions: Array.from({ length: 1 + Math.floor(rnd() * 4) }, (_, p) => ({
        partition: p * 3,
        ...(rnd() < 0.8 ? { firstSequence: Math.floor(rnd() * 2 ** 31) } : {}),
        messages: Array.from({ length: 1 + Math.floor(rnd() * 150) }, (_, i) => randomMessage(rnd, i)),
      })),
    }));
    const transactional = rnd() < 0.7;
    const args: ProduceRequestArgs = {
      acks: transactional ? -1 : [0, 1, -1][round % 3]!, timeout: 30_000,
      ...(transactional ? { transactionalId: `app-store-topic-${round}` } : {}),
      ...(rnd() < 0.9 ? { producerId: Long.fromValue(String(Math.floor(rnd() * 2 ** 50))), producerEpoch: Math.floor(rnd() * 30_000) } : {}),
      topicData: topics,
    };
    const [ours, theirs] = await bodies(args);
    assert.equal(ours.length, theirs.length, `round ${round}: length`);
    assert.ok(ours.equals(theirs), `round ${round}: bytes differ at ${ours.findIndex((b, i) => b !== theirs[i])}`);
  }
});

test('a large record (varint lengths of three bytes and more) and a negative timestamp delta', async () => {
  const args: ProduceRequestArgs = {
    acks: -1, timeout: 5000, transactionalId: 'tx', producerId: Long.fromValue('123456789012'), producerEpoch: 3,
    topicData: [{ topic: 'big', partitions: [{ partition: 0, firstSequence: 41, messages: [
      { key: 'k', value: Buffer.alloc(3_000_000, 1), timestamp: '1764700000500' },
      { key: 'k', value: 'v', timestamp: '1764700000000' },
      { key: null, value: null },
    ] }] }],
  };
  const [ours, theirs] = await bodies(args);
  assert.ok(ours.equals(theirs));
});

test('compressed sends keep kafkajs\' encoder', async () => {
  const args = {
    acks: -1, timeout: 5000, compression: 1, // gzip
    topicData: [{ topic: 'z', partitions: [{ partition: 1, messages: [{ key: 'a', value: 'b'.repeat(500) }] }] }],
  };
  const [ours, theirs] = await bodies(args);
  assert.ok(ours.equals(theirs));
  assert.equal(produceRequest(args).encode.toString(), kafkajsProduceRequest()(args).encode.toString());
});
