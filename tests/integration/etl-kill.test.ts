// The ETL as a process, SIGKILLed in the middle of its batches and started again: PostgreSQL ends
// with exactly the sealed conversations and their messages, none twice, none missing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isolatedEnv, configOf, testKafka, spawnRole, waitFor, createTestDatabase, type ChildRole } from '../support/harness';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { createPool } from '../../src/db/pool';
import { conversationId } from '../../src/sessionization/rules';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';

process.env.LOG_LEVEL ??= 'warn';
const kafka = testKafka();
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c().catch(() => undefined); });

function conversation(i: number): ConversationSealed {
  const chat = `etl-chat-${i % 97}`;
  const start = Date.UTC(2024, 0, 1) + i * 3_600_000;
  const messages: ChatMessage[] = Array.from({ length: 3 + (i % 7) }, (_, k) => ({
    message_id: `${chat}:${i}:${k}`, chat_id: chat, sender_id: `u${k % 3}`, sent_at: start + k * 60_000,
    text: `message ${k} of conversation ${i} ${'lorem ipsum '.repeat(10)}`, chat_type: 'group', is_from_me: false,
    reply_to_message_id: null, account_id: null,
  }));
  return {
    conversation_id: conversationId(chat, start, messages[0]!.message_id), chat_id: chat, chat_type: 'group', account_id: null,
    started_at: start, ended_at: messages.at(-1)!.sent_at, message_count: messages.length,
    participant_ids: [...new Set(messages.map((m) => m.sender_id))], first_message_id: messages[0]!.message_id,
    last_message_id: messages.at(-1)!.message_id, sealed_at: Date.now(), seal_reason: 'NEXT_MESSAGE', gap_ms: 5_400_000,
    continues_conversation_id: null, messages,
  };
}

test('ETL SIGKILLed mid-run and restarted: rows equal the sealed events, none twice', { timeout: 240_000 }, async () => {
  const db = createTestDatabase('etlkill');
  const env = isolatedEnv('etl-kill', { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
  const cfg = configOf(env);
  const t = topicNames(cfg);
  const pool = createPool(db.url);
  cleanups.push(async () => { await pool.end(); await db.drop(); });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, cfg);
  await admin.disconnect();

  // Written as the tracker writes them: transactionally, keyed by chat.
  const codec = new RecordCodec({ registryUrl: null, topics: t });
  const total = 6000;
  const producer = kafka.producer({ transactionalId: `${cfg.appId}-test-sealed`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const all: ConversationSealed[] = [];
  for (let i = 0; i < total; i += 500) {
    const txn = await producer.transaction();
    const batch = Array.from({ length: Math.min(500, total - i) }, (_, k) => conversation(i + k));
    all.push(...batch);
    await txn.send({ topic: t.sealed, messages: batch.map((c) => ({ key: c.chat_id, value: codec.encodeJson('ConversationSealed', c) })) });
    await txn.commit();
  }
  await producer.disconnect();
  const wantMessages = all.reduce((s, c) => s + c.message_count, 0);

  const count = async () => Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM conversations').catch(() => ({ rows: [{ n: '0' }] }))).rows[0]!.n);
  const kills: number[] = [];
  let role: ChildRole | null = null;
  cleanups.push(async () => { role?.kill('SIGKILL'); });
  for (let round = 0; round < 3; round++) {
    role = spawnRole('etl', env);
    const before = await count();
    // Kill once it has loaded something more, while more remain.
    const seen = await waitFor('the ETL to make progress', 60_000, async () => {
      const n = await count();
      return n > before ? n : undefined;
    }, 50);
    if (seen >= total) break;
    role.kill('SIGKILL');
    await role.exited;
    kills.push(await count());
  }
  role = spawnRole('etl', env);
  await waitFor('every conversation loaded', 120_000, async () => ((await count()) === total ? true : undefined), 250);
  role.kill('SIGTERM');
  assert.equal(await role.exited, 0);

  const { rows: convs } = await pool.query<{ conversation_id: string; message_count: number }>('SELECT conversation_id, message_count FROM conversations');
  assert.equal(convs.length, total);
  const byId = new Map(all.map((c) => [c.conversation_id, c]));
  for (const r of convs) assert.equal(r.message_count, byId.get(r.conversation_id)?.message_count);
  const { rows: msgs } = await pool.query<{ n: string; distinct_ids: string }>('SELECT count(*) AS n, count(DISTINCT message_id) AS distinct_ids FROM messages');
  assert.equal(Number(msgs[0]!.n), wantMessages);
  assert.equal(Number(msgs[0]!.distinct_ids), wantMessages);
  console.log(`etl-kill: ${total} conversations, ${wantMessages} messages; SIGKILLed with ${kills.join(' / ')} loaded; all loaded once after the restart`);
  assert.ok(kills.length >= 1, 'at least one kill landed mid-run');
});
