// Bad input through the real tracker: every malformed record lands in the DLQ with its reason,
// original bytes and source coordinates, while the good records around it (written by a JSON
// producer and an Avro producer alike) are sessionized as usual.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isolatedEnv, configOf, testKafka, waitFor, REGISTRY_URL } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { startApp, type App } from '../../src/app';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { DLQ_HEADERS } from '../../src/records/dlq';
import { JavaCompatiblePartitioner } from '../../src/records/partitioner';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';

process.env.LOG_LEVEL ??= 'warn';
const kafka = testKafka();
const apps: App[] = [];
after(async () => { for (const a of apps) await a.stop().catch(() => undefined); });

test('malformed records go to the DLQ with their reason; the good ones around them are processed', async () => {
  const cfg = configOf(isolatedEnv('dlq', { SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '100ms' }));
  const t = topicNames(cfg);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, cfg);
  await admin.disconnect();
  const avro = new RecordCodec({ registryUrl: REGISTRY_URL, topics: t });
  const json = new RecordCodec({ registryUrl: null, topics: t });
  await avro.init();

  const chat = 'dlq-chat';
  const base = Date.now() - 4 * 3_600_000;
  const good = (i: number): ChatMessage => ({
    message_id: `good-${i}`, chat_id: chat, sender_id: `u${i % 2}`, sent_at: base + i * 60_000, text: `fine ${i}`,
    chat_type: null, is_from_me: false, reply_to_message_id: null, account_id: null,
  });
  const raw = (o: unknown) => Buffer.from(JSON.stringify(o));
  const bad: { value: Buffer | null; reason: RegExp }[] = [
    { value: Buffer.from('this is not json'), reason: /not JSON/ },
    { value: raw([good(100)]), reason: /array/ },
    { value: raw({ ...good(101), is_from_me: 'yes' }), reason: /is_from_me/ },
    { value: raw({ ...good(102), chat_id: undefined }), reason: /chat_id/ },
    { value: raw({ ...good(103), sent_at: 'yesterday-ish' }), reason: /sent_at/ },
    { value: raw({ ...good(104), sent_at: Date.now() + 86_400_000 }), reason: /future|skew/i },
    { value: Buffer.alloc(0), reason: /empty/ },
    { value: Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0x01]), Buffer.from('xyz')]), reason: /schema id/ },
    { value: raw({ ...good(105), text: 'x'.repeat(70 * 1024) }), reason: /oversize/ },
  ];

  // good(0) JSON, bad, good(1) Avro, bad, good(2) JSON, ... all keyed by the chat.
  const messages = [];
  let g = 0;
  const nextGood = async () => {
    const m = good(g);
    const value = g % 2 === 0 ? json.encodeJson('ChatMessage', m) : await avro.encode('ChatMessage', m);
    g++;
    return { key: chat, value };
  };
  for (const b of bad) {
    messages.push(await nextGood());
    messages.push({ key: chat, value: b.value, headers: { 'x-origin': 'test' } });
  }
  messages.push(await nextGood());
  const producer = kafka.producer({ idempotent: true, createPartitioner: JavaCompatiblePartitioner });
  await producer.connect();
  await producer.send({ topic: t.messages, messages });
  await producer.disconnect();

  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  const dlq = await waitFor('DLQ records', 60_000, async () => {
    const r = await readTopic(kafka, t.messagesDlq);
    return r.length >= bad.length ? r : undefined;
  });
  const sealed = await waitFor('the good conversation', 60_000, async () => {
    const r = await readTopic(kafka, t.sealed);
    return r.length >= 1 ? r : undefined;
  });

  assert.equal(dlq.length, bad.length);
  dlq.sort((a, b) => Number(a.headers![DLQ_HEADERS.sourceOffset]) - Number(b.headers![DLQ_HEADERS.sourceOffset]));
  const h = (r: (typeof dlq)[number], name: string) => String(r.headers![name]);
  bad.forEach((b, i) => {
    const r = dlq[i]!;
    assert.match(h(r, DLQ_HEADERS.reason), b.reason, `case ${i}: ${h(r, DLQ_HEADERS.reason)}`);
    assert.deepEqual(r.value ?? Buffer.alloc(0), b.value, `case ${i}: original bytes kept`);
    assert.equal(r.key?.toString(), chat);
    assert.equal(h(r, DLQ_HEADERS.sourceTopic), t.messages);
    assert.equal(Number(h(r, DLQ_HEADERS.sourceOffset)), 2 * i + 1);
    assert.equal(h(r, 'x-origin'), 'test', 'original headers kept');
  });

  assert.equal(sealed.length, 1);
  const conv: ConversationSealed = await avro.decode('ConversationSealed', sealed[0]!.value);
  assert.deepEqual(conv.messages.map((m) => m.message_id), Array.from({ length: g }, (_, i) => `good-${i}`));
  assert.equal(conv.seal_reason, 'GAP_TIMEOUT');
});
