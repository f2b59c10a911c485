// Record formats without a registry: the .avsc files, JSON encoding of every kind, DLQ records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Type, type Schema } from 'avsc';
import { RECORD_KINDS, RecordCodec, loadSchemas } from '../../src/records/codec';
import { InvalidRecordError } from '../../src/records/validate';
import { DLQ_HEADERS, dlqErrorInfo, toDlqMessage } from '../../src/records/dlq';
import { topicNames } from '../../src/topics';
import { message, samples } from '../fixtures/records';

const topics = topicNames({ topicPrefix: 'env1.', appId: 'chatstats' });
const codec = new RecordCodec({ registryUrl: null, topics });

type Json = Record<string, unknown>;

test('schemas: one record per kind, namespace chatstats.v1, every record and field documented', () => {
  const schemas = loadSchemas();
  const visit = (s: unknown, where: string): void => {
    if (Array.isArray(s)) {
      assert.equal(s[0], 'null', `${where}: null comes first in a union`);
      s.forEach((b, i) => visit(b, `${where}|${i}`));
      return;
    }
    if (typeof s !== 'object' || s === null) return;
    const o = s as Json;
    if (o.type === 'record') {
      assert.equal(o.namespace, 'chatstats.v1', `${where}: namespace`);
      assert.ok(typeof o.doc === 'string' && o.doc.length > 10, `${where}: record doc`);
      for (const f of o.fields as Json[]) {
        assert.ok(typeof f.doc === 'string' && f.doc.length > 3, `${where}.${String(f.name)}: field doc`);
        if (Array.isArray(f.type)) assert.ok('default' in f && f.default === null, `${where}.${String(f.name)}: nullable defaults to null`);
        visit(f.type, `${where}.${String(f.name)}`);
      }
    } else if (o.type === 'array') {
      visit(o.items, `${where}[]`);
    }
  };
  for (const kind of RECORD_KINDS) {
    assert.equal(schemas[kind].name, kind);
    visit(schemas[kind], kind);
    Type.forSchema(schemas[kind] as unknown as Schema); // valid Avro
  }
  const fromMe = schemas.ChatMessage.fields.find((f) => f.name === 'is_from_me')!;
  assert.deepEqual([fromMe.type, fromMe.default], ['boolean', false]);
  const sentAt = schemas.ChatMessage.fields.find((f) => f.name === 'sent_at')!;
  assert.deepEqual(sentAt.type, { type: 'long', logicalType: 'timestamp-millis' });
});

test('schemas: ChatMessage nested in ConversationSealed and LateMessage is ChatMessage.avsc; the sealed one adds linked_message_id last', () => {
  const s = loadSchemas();
  const nestedSealed = (s.ConversationSealed.fields.find((f) => f.name === 'messages')!.type as { items: { fields: { name: string; default?: unknown }[] } }).items;
  const nestedLate = s.LateMessage.fields.find((f) => f.name === 'message')!.type;
  const linked = nestedSealed.fields.at(-1)!;
  assert.equal(linked.name, 'linked_message_id');
  assert.equal(linked.default, null, 'optional with a null default: BACKWARD-compatible');
  assert.deepEqual({ ...nestedSealed, fields: nestedSealed.fields.slice(0, -1) }, s.ChatMessage);
  assert.deepEqual(nestedLate, s.ChatMessage);
});

test('subjects follow TopicNameStrategy', () => {
  assert.equal(codec.subjectFor('ChatMessage'), 'env1.chat.messages-value');
  assert.equal(codec.subjectFor('ConversationSealed'), 'env1.conversation.sealed-value');
  assert.equal(codec.subjectFor('LateMessage'), 'env1.chat.messages.late-value');
  assert.equal(codec.subjectFor('ConversationReady'), 'env1.conversation.ready-value');
  assert.equal(codec.subjectFor('AnalysisCompleted'), 'env1.analysis.completed-value');
  assert.equal(codec.subjectFor('CommandResult'), 'env1.chatstats.command-results-value');
  assert.equal(codec.subjectFor('ChatCommand'), 'env1.chat.commands-value');
});

test('JSON: every kind round-trips; times are integer milliseconds', async () => {
  assert.equal(codec.format, 'json');
  for (const kind of RECORD_KINDS) {
    const buf = await codec.encode(kind, samples[kind]);
    assert.equal(buf[0], 0x7b, `${kind} is a JSON object`);
    assert.deepEqual(await codec.decode(kind, buf), samples[kind], kind);
  }
  const m = JSON.parse((await codec.encode('ChatMessage', message())).toString()) as Json;
  assert.equal(m.sent_at, message().sent_at);
  const sealed = JSON.parse((await codec.encode('ConversationSealed', samples.ConversationSealed)).toString()) as Json;
  assert.equal(typeof sealed.started_at, 'number');
});

test('JSON decode: ISO times, defaults, nested message validation with its path', async () => {
  const raw = JSON.parse(JSON.stringify(samples.ConversationSealed)) as Json;
  raw.started_at = new Date(samples.ConversationSealed.started_at).toISOString();
  delete raw.continues_conversation_id;
  const got = await codec.decode('ConversationSealed', Buffer.from(JSON.stringify(raw)));
  assert.deepEqual(got, samples.ConversationSealed);

  const bad = JSON.parse(JSON.stringify(samples.ConversationSealed)) as { messages: Json[] };
  delete bad.messages[1]!.chat_id;
  await assert.rejects(codec.decode('ConversationSealed', Buffer.from(JSON.stringify(bad))), (e: unknown) =>
    e instanceof InvalidRecordError && e.reason === 'field messages[1].chat_id is missing');
  await assert.rejects(codec.decode('ConversationSealed', Buffer.from(JSON.stringify({ ...samples.ConversationSealed, seal_reason: 'BORED' }))), (e: unknown) =>
    e instanceof InvalidRecordError && e.reason === 'field seal_reason must be one of NEXT_MESSAGE, GAP_TIMEOUT, FORCED, MAX_SIZE');
  await assert.rejects(codec.decode('CommandResult', Buffer.from(JSON.stringify({ ...samples.CommandResult, partition: 2.5 }))), (e: unknown) =>
    e instanceof InvalidRecordError && e.reason === 'field partition must be a 32-bit integer');
  await assert.rejects(codec.decode('LateMessage', Buffer.from(JSON.stringify({ ...samples.LateMessage, message: { ...message(), sent_at: 'later' } }))), (e: unknown) =>
    e instanceof InvalidRecordError && e.reason === 'field message.sent_at: not a time: "later"');
});

test('encode refuses what decode would refuse', async () => {
  await assert.rejects(codec.encode('ChatMessage', { ...message(), chat_id: '' }), InvalidRecordError);
  await assert.rejects(codec.encode('AnalysisCompleted', { ...samples.AnalysisCompleted, duration_ms: undefined as unknown as number }), InvalidRecordError);
});

test('JSON decode is fast (hot path)', () => {
  const buf = Buffer.from(JSON.stringify({ ...message(), sent_at: '2013-01-26T15:04:04.000Z' }));
  const n = 50_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) codec.decodeJson('ChatMessage', buf);
  const perSec = n / (Number(process.hrtime.bigint() - t0) / 1e9);
  assert.ok(perSec > 50_000, `${Math.round(perSec)} decodes/s`);
});

test('DLQ record: original key, value and headers, plus x-dlq-* headers', () => {
  const key = Buffer.from('chat-1');
  const value = Buffer.from([0x7b, 0xff]);
  const failedAt = Date.UTC(2025, 0, 2, 3, 4, 5, 6);
  const dlq = toDlqMessage(
    { key, value, headers: { traceparent: Buffer.from('00-abc'), 'x-dlq-reason': Buffer.from('old'), multi: ['a', 'b'] } },
    { reason: 'not JSON (invalid UTF-8)', sourceTopic: 'chat.messages', partition: 3, offset: '1234', failedAt },
  );
  assert.equal(dlq.key, key);
  assert.equal(dlq.value, value);
  assert.deepEqual(dlq.headers, {
    traceparent: Buffer.from('00-abc'),
    multi: ['a', 'b'],
    [DLQ_HEADERS.reason]: 'not JSON (invalid UTF-8)',
    [DLQ_HEADERS.errorClass]: 'InvalidRecordError',
    [DLQ_HEADERS.sourceTopic]: 'chat.messages',
    [DLQ_HEADERS.sourcePartition]: '3',
    [DLQ_HEADERS.sourceOffset]: '1234',
    [DLQ_HEADERS.failedAt]: '2025-01-02T03:04:05.006Z',
  });
  const nullKey = toDlqMessage({ key: null, value: null }, { reason: 'empty value', sourceTopic: 't', partition: 0, offset: 0, errorClass: 'TypeError' });
  assert.equal(nullKey.key, null);
  assert.equal(nullKey.value, null);
  assert.equal(nullKey.headers![DLQ_HEADERS.errorClass], 'TypeError');
  assert.deepEqual(dlqErrorInfo(new InvalidRecordError('field chat_id is missing')), { reason: 'field chat_id is missing', errorClass: 'InvalidRecordError' });
  assert.deepEqual(dlqErrorInfo(new TypeError('boom')), { reason: 'boom', errorClass: 'TypeError' });
});
