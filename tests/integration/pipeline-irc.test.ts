// The IRC sample end to end: tracker → ETL → analysis, all roles in one process on the real
// broker, registry and PostgreSQL, the LLM passes against a local chat-completions server.
// PostgreSQL ends up with exactly the conversations and messages the tracker sealed, and every
// enabled pass has completed on exactly the conversations that qualify for it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isolatedEnv, configOf, testKafka, waitFor, createTestDatabase, IRC_SAMPLE, REGISTRY_URL } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { startLlmServer } from '../support/llm-server';
import { startApp, type App } from '../../src/app';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import { parseChatMessageJson } from '../../src/records/validate';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { addSubscription } from '../../src/db/subscriptions';
import { loadPasses, disqualification } from '../../src/analysis/passes';
import type { ConversationSealed } from '../../src/records/types';

process.env.LOG_LEVEL ??= 'warn';
const kafka = testKafka();
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c().catch(() => undefined); });

/** Each IRC channel is one ChatStats account: mediawiki subscribes, rust's subscription lapsed. */
const accountOf = (chatId: string) => `acct-${chatId.replace(/^irc:/, '').replace(/\.\d+$/, '')}`;

test('IRC sample through tracker, ETL and analysis: PostgreSQL holds exactly what was sealed, passes ran where they qualify', async () => {
  const llm = await startLlmServer();
  cleanups.push(() => llm.close());
  llm.fallback = () => ({ kind: 'answer', content: { overall: 'neutral', score: 0, emotions: {}, summary: 'A technical chat.', topics: ['software'] } });

  const db = createTestDatabase('pipeline');
  const databaseUrl = db.url;
  const env = isolatedEnv('pipeline', {
    SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms', DATABASE_URL: databaseUrl,
    LLM_BASE_URL: llm.baseUrl, LLM_API_KEY: 'test-key', LLM_MODEL: 'test-model',
  });
  const cfg = configOf(env);
  const t = topicNames(cfg);
  const pool = createPool(databaseUrl);
  cleanups.push(async () => { await pool.end(); await db.drop(); });
  await migrate(pool);
  await addSubscription(pool, { account_id: 'acct-mediawiki', plan: 'pro', status: 'active' });
  await addSubscription(pool, { account_id: 'acct-rust', plan: 'pro', status: 'canceled' });

  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, cfg);
  await admin.disconnect();
  const codec = new RecordCodec({ registryUrl: REGISTRY_URL, topics: t });
  const producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  const input = readFileSync(IRC_SAMPLE, 'utf8').split('\n').filter(Boolean).map(parseChatMessageJson)
    .map((m) => ({ ...m, account_id: accountOf(m.chat_id) }));
  for (let i = 0; i < input.length; i += 2000) await producer.send(input.slice(i, i + 2000));
  await producer.disconnect();

  const app = await startApp(cfg, ['tracker', 'etl', 'analysis']);
  cleanups.push(() => app.stop());

  const sealed: ConversationSealed[] = await waitFor('87 sealed conversations', 90_000, async () => {
    const r = await readTopic(kafka, t.sealed);
    return r.length >= 87 ? Promise.all(r.map((x) => codec.decode('ConversationSealed', x.value))) : undefined;
  }, 500);
  const passes = loadPasses();
  const enabled = passes.filter((p) => p.enabled);
  // Done when every conversation is loaded and every enabled pass has a finished run on each of
  // them (completed, failed or skipped). A run gets its row only when a worker claims it, so "no
  // row pending" alone is not done: lower-priority passes may still wait in the queue.
  const finishedWanted = 87 * enabled.length;
  await waitFor('ETL and analysis to finish', 120_000, async () => {
    const { rows } = await pool.query<{ loaded: string; finished: string }>(
      `SELECT (SELECT count(*) FROM conversations) AS loaded,
              (SELECT count(*) FROM analysis_runs WHERE status IN ('completed','failed','skipped')) AS finished`);
    const r = rows[0]!;
    return Number(r.loaded) === 87 && Number(r.finished) === finishedWanted ? true : undefined;
  }, 500);

  // Conversations and messages: exactly what was sealed.
  const { rows: convs } = await pool.query<{ conversation_id: string; message_count: number; seal_reason: string; account_id: string }>(
    'SELECT conversation_id, message_count, seal_reason, account_id FROM conversations');
  assert.equal(convs.length, sealed.length);
  const byId = new Map(sealed.map((c) => [c.conversation_id, c]));
  for (const row of convs) {
    const c = byId.get(row.conversation_id);
    assert.ok(c, `unknown conversation ${row.conversation_id}`);
    assert.equal(row.message_count, c.message_count);
    assert.equal(row.seal_reason, c.seal_reason);
    assert.equal(row.account_id, accountOf(c.chat_id));
  }
  const { rows: msgs } = await pool.query<{ message_id: string; conversation_id: string }>('SELECT message_id, conversation_id FROM messages');
  assert.equal(msgs.length, 13_688);
  const want = new Map<string, string>();
  for (const c of sealed) for (const m of c.messages) want.set(m.message_id, c.conversation_id);
  for (const m of msgs) assert.equal(want.get(m.message_id), m.conversation_id);

  // Passes: completed exactly where they qualify; a disabled pass nowhere.
  const { rows: runs } = await pool.query<{ conversation_id: string; pass_name: string; status: string }>(
    'SELECT conversation_id, pass_name, status FROM analysis_runs');
  const completed = new Set(runs.filter((r) => r.status === 'completed').map((r) => `${r.conversation_id}/${r.pass_name}`));
  const active = new Set(['acct-mediawiki']);
  let expectedRuns = 0;
  for (const c of sealed) {
    for (const p of enabled) {
      const qualifies = disqualification(p, { message_count: c.message_count, account_id: accountOf(c.chat_id), subscriptionActive: active.has(accountOf(c.chat_id)) }) === null;
      if (qualifies) expectedRuns++;
      assert.equal(completed.has(`${c.conversation_id}/${p.name}`), qualifies, `${p.name} on ${c.chat_id} ${c.conversation_id} (${c.message_count} messages)`);
    }
  }
  assert.equal(completed.size, expectedRuns);
  for (const p of passes.filter((x) => !x.enabled)) assert.equal(runs.filter((r) => r.pass_name === p.name).length, 0, `disabled pass ${p.name} ran`);
  const llmPasses = enabled.filter((p) => p.analyzer === 'llm' && p.requires.subscription);
  assert.ok(llmPasses.length > 0);
  for (const p of llmPasses) {
    const on = runs.filter((r) => r.pass_name === p.name && r.status === 'completed').map((r) => byId.get(r.conversation_id)!.chat_id);
    assert.ok(on.length > 0, `${p.name} ran on some subscribed conversations`);
    assert.ok(on.every((chat) => accountOf(chat) === 'acct-mediawiki'), `${p.name} ran only for the subscribed account`);
  }
  assert.ok(llm.requests.length >= llmPasses.length, 'the LLM endpoint was called');
  console.log(`pipeline: 87 conversations, 13,688 messages in PostgreSQL; ${completed.size} pass runs completed; ${llm.requests.length} LLM calls`);
});
