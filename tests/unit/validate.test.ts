// Validation of ChatMessage input: each malformed case is refused with its reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidRecordError, parseChatMessageJson, parseIsoTime, parseTime, validateChatMessage } from '../../src/records/validate';
import { RecordCodec } from '../../src/records/codec';
import { topicNames } from '../../src/topics';
import { message } from '../fixtures/records';

const codec = new RecordCodec({ registryUrl: null, topics: topicNames({ topicPrefix: '', appId: 'chatstats' }) });

/** Asserts that fn throws (or rejects with) an InvalidRecordError with this reason. */
async function rejects(fn: () => unknown, reason: string | RegExp): Promise<InvalidRecordError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof InvalidRecordError, `expected InvalidRecordError, got ${String(err)}`);
  if (typeof reason === 'string') assert.equal(err.reason, reason);
  else assert.match(err.reason, reason);
  return err;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const without = (k: string) => { const o: Record<string, unknown> = { ...message() }; delete o[k]; return o; };

test('a complete message is accepted as it is', async () => {
  const m = message();
  assert.deepEqual(validateChatMessage(m), m);
  assert.deepEqual(await codec.decodeChatMessage(json(m)), m);
});

test('defaults: is_from_me false, nullable fields null; unknown fields dropped', () => {
  const got = validateChatMessage({ message_id: 'a', chat_id: 'c', sender_id: 's', sent_at: 5, extra: { x: 1 } });
  assert.deepEqual(got, {
    message_id: 'a', chat_id: 'c', sender_id: 's', sent_at: 5,
    text: null, chat_type: null, is_from_me: false, reply_to_message_id: null, account_id: null,
  });
  assert.deepEqual(Object.keys(got), ['message_id', 'chat_id', 'sender_id', 'sent_at', 'text', 'chat_type', 'is_from_me', 'reply_to_message_id', 'account_id']);
});

test('sent_at: integer epoch ms or ISO-8601 with a zone', () => {
  const at = (v: unknown) => validateChatMessage({ ...message(), sent_at: v }).sent_at;
  assert.equal(at(1_359_212_644_000), 1_359_212_644_000);
  assert.equal(at(0), 0);
  assert.equal(at('2013-01-26T15:04:04.000Z'), Date.UTC(2013, 0, 26, 15, 4, 4));
  assert.equal(at('2013-01-26T15:04:04Z'), Date.UTC(2013, 0, 26, 15, 4, 4));
  assert.equal(at('2013-01-26T16:04:04+01:00'), Date.UTC(2013, 0, 26, 15, 4, 4));
  assert.equal(at('2013-01-26T10:04:04.5-0500'), Date.UTC(2013, 0, 26, 15, 4, 4, 500));
  assert.equal(at('2013-01-26T15:04:04.123456789Z'), Date.UTC(2013, 0, 26, 15, 4, 4, 123));
  assert.equal(at('2013-01-26 15:04Z'), Date.UTC(2013, 0, 26, 15, 4));
  assert.equal(at('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
  assert.equal(parseIsoTime('2023-02-29T00:00:00Z'), null, 'no 29 February in 2023');
  assert.equal(parseTime(1.5), null);
  assert.equal(parseTime(Number.MAX_SAFE_INTEGER + 2), null);
  assert.equal(parseTime(true), null);
});

test('not JSON', async () => {
  await rejects(() => codec.decodeChatMessage(Buffer.from('{"message_id": "a", ')), 'not JSON');
  await rejects(() => codec.decodeChatMessage(Buffer.from('hello')), 'not JSON');
  await rejects(() => codec.decodeChatMessage(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), 'not JSON');
  await rejects(() => parseChatMessageJson('{oops}'), 'not JSON');
});

test('a JSON array, or another non-object, is not a message', async () => {
  await rejects(() => codec.decodeChatMessage(Buffer.from('[{"chat_id":"c"}]')), 'not a JSON object (got array)');
  await rejects(() => codec.decodeChatMessage(Buffer.from('"text"')), 'not a JSON object (got string)');
  await rejects(() => codec.decodeChatMessage(Buffer.from('42')), 'not a JSON object (got number)');
  await rejects(() => codec.decodeChatMessage(Buffer.from('null')), 'not a JSON object (got null)');
  await rejects(() => validateChatMessage([]), 'not a JSON object (got array)');
});

test('missing chat_id (and the other required fields)', async () => {
  await rejects(() => codec.decodeChatMessage(json(without('chat_id'))), 'field chat_id is missing');
  await rejects(() => validateChatMessage(without('message_id')), 'field message_id is missing');
  await rejects(() => validateChatMessage(without('sender_id')), 'field sender_id is missing');
  await rejects(() => validateChatMessage(without('sent_at')), 'field sent_at is missing');
});

test('wrong field types', async () => {
  await rejects(() => codec.decodeChatMessage(json({ ...message(), chat_id: 42 })), 'field chat_id must be a string');
  await rejects(() => codec.decodeChatMessage(json({ ...message(), chat_id: null })), 'field chat_id must be a string');
  await rejects(() => codec.decodeChatMessage(json({ ...message(), chat_id: '' })), 'field chat_id must not be empty');
  await rejects(() => codec.decodeChatMessage(json({ ...message(), message_id: '' })), 'field message_id must not be empty');
  await rejects(() => codec.decodeChatMessage(json({ ...message(), sender_id: ['x'] })), 'field sender_id must be a string');
  const e = await rejects(() => codec.decodeChatMessage(json({ ...message(), is_from_me: 'yes' })), 'field is_from_me must be a boolean');
  assert.equal(e.message, 'field is_from_me must be a boolean (got string)');
  await rejects(() => validateChatMessage({ ...message(), is_from_me: null }), 'field is_from_me must be a boolean');
  await rejects(() => validateChatMessage({ ...message(), text: 5 }), 'field text must be a string or null');
  await rejects(() => validateChatMessage({ ...message(), account_id: {} }), 'field account_id must be a string or null');
});

test('unparseable sent_at', async () => {
  await rejects(() => codec.decodeChatMessage(json({ ...message(), sent_at: 'abc' })), 'field sent_at: not a time: "abc"');
  await rejects(() => validateChatMessage({ ...message(), sent_at: '2013-01-26T15:04:04' }), 'field sent_at: not a time: "2013-01-26T15:04:04"');
  await rejects(() => validateChatMessage({ ...message(), sent_at: '2013-13-01T00:00:00Z' }), /^field sent_at: not a time: /);
  await rejects(() => validateChatMessage({ ...message(), sent_at: '2013-01-26T24:00:00Z' }), /^field sent_at: not a time: /);
  await rejects(() => validateChatMessage({ ...message(), sent_at: '1359212644000' }), /^field sent_at: not a time: /);
  await rejects(() => validateChatMessage({ ...message(), sent_at: 1.5 }), 'field sent_at: not a time: 1.5');
  await rejects(() => validateChatMessage({ ...message(), sent_at: null }), 'field sent_at: not a time: null');
  await rejects(() => validateChatMessage({ ...message(), sent_at: 'x'.repeat(500) }), /^field sent_at: not a time: "x+\.\.\.$/);
});

test('empty value', async () => {
  await rejects(() => codec.decodeChatMessage(null), 'empty value');
  await rejects(() => codec.decodeChatMessage(Buffer.alloc(0)), 'empty value');
});

test('oversize record (default limit 64 KiB, configurable)', async () => {
  const big = json({ ...message(), text: 'x'.repeat(70_000) });
  await rejects(() => codec.decodeChatMessage(big), `oversize record: ${big.length} bytes > 65536`);
  const small = new RecordCodec({ registryUrl: null, topics: topicNames({ topicPrefix: '', appId: 'chatstats' }), maxBytes: { ChatMessage: 100 } });
  const m = json(message());
  await rejects(() => small.decodeChatMessage(m), `oversize record: ${m.length} bytes > 100`);
  await rejects(() => small.encode('ChatMessage', message()), /^oversize record: \d+ bytes > 100$/);
});

test('Avro framing without a registry, and a truncated header', async () => {
  const avro = Buffer.from([0, 0, 0, 0, 7, 2, 0x61]);
  const e = await rejects(() => codec.decodeChatMessage(avro), /schema id 7/);
  assert.match(e.reason, /no schema registry/);
  await rejects(() => codec.decodeChatMessage(Buffer.from([0, 0, 1])), 'truncated Avro record');
});

test('leading whitespace before a JSON object is tolerated', async () => {
  assert.deepEqual(await codec.decodeChatMessage(Buffer.from(` \n${JSON.stringify(message())}`)), message());
});
