// The analysis processor against the real broker and PostgreSQL (and the scripted LLM server):
// conversation.ready → qualifying passes by priority → analysis_runs + analysis.completed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client, type Pool } from 'pg';
import type { Kafka } from 'kafkajs';
import { loadConfig, type Config } from '../../src/config';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';
import type { ConversationReady } from '../../src/records/downstream-types';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { contentHash, loadConversations } from '../../src/db/conversations';
import { addSubscription } from '../../src/db/subscriptions';
import { upsertPromptTemplate } from '../../src/db/prompts';
import type { PassDefinition } from '../../src/analysis/passes';
import { runPass } from '../../src/analysis/run-pass';
import { startAnalysis, type AnalysisHandle, type AnalysisOptions } from '../../src/processors/analysis';
import { deleteTopics, testKafka, uniquePrefix } from '../fixtures/kafka';
import { readTopic } from '../support/topic-reader';
import { startLlmServer, type LlmServer } from '../support/llm-server';

process.env.LOG_LEVEL ??= 'error';

const ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = `chatstats_test_analysis_${randomBytes(4).toString('hex')}`;
const DB_URL = (() => { const u = new URL(ADMIN_URL); u.pathname = `/${DB}`; return u.toString(); })();
const kafka: Kafka = testKafka('analysis-test');
let pool: Pool;
let llm: LlmServer;
const prefixes: string[] = [];
const running: AnalysisHandle[] = [];

async function admin(sql: string): Promise<void> {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try { await c.query(sql); } finally { await c.end(); }
}

before(async () => {
  await admin(`CREATE DATABASE ${DB}`);
  pool = createPool(DB_URL, { max: 6 });
  await migrate(pool);
  llm = await startLlmServer();
  // Answers by prompt: FLAKY prompts get prose instead of JSON, the others the JSON they ask for.
  llm.fallback = (req) => {
    const system = String(req.body?.messages?.[0]?.content ?? '');
    if (system.includes('FLAKY')) return { kind: 'answer', content: 'I would rather not answer in JSON.' };
    return { kind: 'answer', content: { topic: 'plans', mood: 'good' } };
  };
  await upsertPromptTemplate(pool, {
    name: 'TestPrompt', version: 1, category: 'test', system_prompt: 'Answer in JSON.',
    template: '{{message_count}} messages:\n{{transcript}}', model_settings: { required_keys: ['topic', 'mood'] },
  });
  await upsertPromptTemplate(pool, {
    name: 'FlakyPrompt', version: 1, category: 'test', system_prompt: 'FLAKY', template: '{{transcript}}',
    model_settings: { required_keys: ['x'] },
  });
  const day = 86_400_000;
  await addSubscription(pool, { account_id: 'acc-paid', plan: 'pro', status: 'active' });
  await addSubscription(pool, { account_id: 'acc-expired', plan: 'pro', status: 'active', valid_from: new Date(Date.now() - 30 * day), valid_until: new Date(Date.now() - day) });
  await addSubscription(pool, { account_id: 'acc-canceled', plan: 'pro', status: 'canceled' });
});

after(async () => {
  for (const h of running.splice(0)) await h.stop();
  await llm?.close();
  await pool?.end();
  await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  for (const p of prefixes) await deleteTopics(kafka, p).catch(() => undefined);
});

interface Env { cfg: Config; codec: RecordCodec; topics: ReturnType<typeof topicNames>; groupId: string }

async function env(tag: string): Promise<Env> {
  const prefix = uniquePrefix(`analysis-${tag}`);
  prefixes.push(prefix);
  const appId = `antest-${randomBytes(3).toString('hex')}`;
  const cfg = loadConfig({
    TOPIC_PREFIX: prefix, APP_ID: appId, DATABASE_URL: DB_URL, TOPIC_PARTITIONS: '3',
    LLM_BASE_URL: llm.baseUrl, LLM_API_KEY: 'sk-test', LLM_MODEL: 'test-model',
  });
  const a = kafka.admin();
  await a.connect();
  try { await ensureTopics(a, cfg); } finally { await a.disconnect(); }
  const topics = topicNames(cfg);
  return { cfg, codec: new RecordCodec({ registryUrl: null, topics }), topics, groupId: `${appId}-analysis` };
}

const T0 = Date.UTC(2024, 6, 1, 9, 0, 0);
const TEXTS = [
  'Shall we plan the trip to the mountains this weekend?',
  'Yes, I love that idea, the weather looks wonderful',
  'Great, I will book the cabin and the train tickets',
  'Perfect, I am so happy we finally do this trip',
  'Bring warm clothes, the nights in the mountains are cold',
  'Sure, see you at the station on Saturday morning',
];

function conversation(id: string, account: string | null, n: number, start = T0): ConversationSealed {
  const messages: ChatMessage[] = Array.from({ length: n }, (_, k) => ({
    message_id: `${id}-m${k}`, chat_id: `chat-${id}`, sender_id: k % 2 ? 'bob' : 'alice', sent_at: start + k * 60_000,
    text: TEXTS[k % TEXTS.length]!, chat_type: 'direct', is_from_me: false, reply_to_message_id: null, account_id: account,
  }));
  return {
    conversation_id: id, chat_id: `chat-${id}`, chat_type: 'direct', account_id: account, started_at: start,
    ended_at: messages[n - 1]!.sent_at, message_count: n, participant_ids: [...new Set(messages.map((m) => m.sender_id))].sort(),
    first_message_id: messages[0]!.message_id, last_message_id: messages[n - 1]!.message_id, sealed_at: start + 9_000_000,
    seal_reason: 'NEXT_MESSAGE', gap_ms: 5_400_000, continues_conversation_id: null, messages,
  };
}

/** Loads the conversations into PostgreSQL and announces them on conversation.ready (as the ETL does). */
async function ready(e: Env, convs: ConversationSealed[]): Promise<void> {
  const outcomes = await loadConversations(pool, convs);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    await producer.send({
      topic: e.topics.ready, acks: -1,
      messages: await Promise.all(convs.map(async (c, i) => {
        const value: ConversationReady = {
          conversation_id: c.conversation_id, chat_id: c.chat_id, account_id: c.account_id, message_count: c.message_count,
          started_at: c.started_at, ended_at: c.ended_at, loaded_at: Date.now(),
          content_hash: outcomes[i]!.status === 'rejected' ? '' : outcomes[i]!.content_hash,
        };
        return { key: c.conversation_id, value: await e.codec.encode('ConversationReady', value) };
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

function pass(name: string, priority: number, analyzer: PassDefinition['analyzer'], over: Partial<PassDefinition> = {}): PassDefinition {
  return {
    name, prompt_name: analyzer === 'llm' ? 'TestPrompt' : `${name}Prompt`, prompt_version: 1, prompt_category: 'test', description: name,
    priority, enabled: true, analyzer, requires: { subscription: false, min_messages: 1 }, ...over,
  };
}

const PASSES: PassDefinition[] = [
  pass('basic', 100, 'basic'),
  pass('language', 60, 'language', { requires: { subscription: false, min_messages: 2 } }),
  pass('sentiment', 50, 'sentiment', { requires: { subscription: false, min_messages: 2 } }),
  pass('keywords', 40, 'keywords', { requires: { subscription: false, min_messages: 3 } }),
  pass('summary', 20, 'llm', { requires: { subscription: true, min_messages: 4 } }),
  pass('everything', 500, 'basic', { enabled: false }),
];

async function start(e: Env, opts: AnalysisOptions = {}): Promise<AnalysisHandle> {
  const h = await startAnalysis(e.cfg, {
    passes: PASSES, concurrency: 1, maxAttempts: 3, retryInitialMs: 50, retryMaxMs: 200,
    llm: { timeoutMs: 2000, maxRetries: 1, initialBackoffMs: 20, maxBackoffMs: 50 }, ...opts,
  });
  running.push(h);
  return h;
}

async function stop(h: AnalysisHandle): Promise<void> {
  await h.stop();
  running.splice(running.indexOf(h), 1);
}

interface Run { conversation_id: string; pass_name: string; pass_version: number; status: string; attempts: number; error: string | null; result: any; cached: boolean; started: string | null; duration_ms: number | null }

async function runs(ids: string[]): Promise<Run[]> {
  const { rows } = await pool.query<Run>(
    `SELECT conversation_id, pass_name, pass_version, status, attempts, error, result, cached, duration_ms,
            to_char(started_at, 'YYYY-MM-DD HH24:MI:SS.US') AS started
     FROM analysis_runs WHERE conversation_id = ANY($1) ORDER BY conversation_id, started_at NULLS LAST, pass_name`, [ids]);
  return rows;
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until every conversation has a finished row for each of `expected` passes. */
async function settled(ids: string[], expected: number): Promise<Run[]> {
  let rs: Run[] = [];
  await waitFor(`${expected} finished runs per conversation`, async () => {
    rs = await runs(ids);
    return ids.every((id) => rs.filter((r) => r.conversation_id === id && ['completed', 'failed', 'skipped'].includes(r.status)).length >= expected);
  });
  return rs;
}

async function completedEvents(e: Env): Promise<{ key: string; v: any }[]> {
  const recs = await readTopic(kafka, e.topics.completed);
  return Promise.all(recs.map(async (r) => ({ key: r.key!.toString(), v: await e.codec.decode('AnalysisCompleted', r.value) })));
}

async function committedAll(e: Env): Promise<boolean> {
  const a = kafka.admin();
  await a.connect();
  try {
    const ends = await a.fetchTopicOffsets(e.topics.ready);
    const [committed] = await a.fetchOffsets({ groupId: e.groupId, topics: [e.topics.ready] });
    return ends.every((p) => {
      const c = committed!.partitions.find((x) => x.partition === p.partition);
      return Number(p.high) === 0 || Number(c?.offset ?? -1) === Number(p.high);
    });
  } finally {
    await a.disconnect();
  }
}

test('qualifying conversations get every enabled pass, by priority; disabled and unqualified passes do not run', async () => {
  const e = await env('qualify');
  // Distinct start times: distinct content, so nothing here comes from the cache.
  const H = 3_600_000;
  const convs = [
    conversation('q-paid', 'acc-paid', 5, T0),
    conversation('q-free', 'acc-free', 5, T0 + H),
    conversation('q-expired', 'acc-expired', 5, T0 + 2 * H),
    conversation('q-canceled', 'acc-canceled', 5, T0 + 3 * H),
    conversation('q-noacct', null, 5, T0 + 4 * H),
    conversation('q-short', 'acc-paid', 2, T0 + 5 * H),
    conversation('q-one', 'acc-paid', 1, T0 + 6 * H),
  ];
  const ids = convs.map((c) => c.conversation_id);
  await ready(e, convs);
  llm.requests.length = 0;
  const h = await start(e);
  const rs = await settled(ids, 5);
  await waitFor('offsets committed', () => committedAll(e));
  const by = (id: string) => Object.fromEntries(rs.filter((r) => r.conversation_id === id).map((r) => [r.pass_name, r]));

  // Subscriber with enough messages: every enabled pass, completed, in priority order.
  const paid = by('q-paid');
  for (const p of ['basic', 'language', 'sentiment', 'keywords', 'summary']) {
    assert.equal(paid[p]?.status, 'completed', `q-paid ${p}: ${JSON.stringify(paid[p])}`);
    assert.equal(paid[p]!.attempts, 1);
    assert.equal(paid[p]!.pass_version, 1);
    assert.ok(paid[p]!.duration_ms !== null && paid[p]!.duration_ms >= 0);
  }
  const order = rs.filter((r) => r.conversation_id === 'q-paid' && r.status === 'completed').map((r) => r.pass_name);
  assert.deepEqual(order, ['basic', 'language', 'sentiment', 'keywords', 'summary'], 'started highest priority first');
  assert.equal(paid.basic!.result.message_count, 5);
  assert.deepEqual(paid.basic!.result.messages_per_participant, { alice: 3, bob: 2 });
  assert.equal(paid.language!.result.language, 'en');
  assert.equal(paid.sentiment!.result.label, 'positive');
  assert.ok(paid.keywords!.result.keywords.map((k: { term: string }) => k.term).includes('trip'));
  assert.deepEqual(paid.summary!.result.answer, { topic: 'plans', mood: 'good' });

  // No active subscription (none, expired, canceled, no account): the subscription-only pass is skipped.
  for (const id of ['q-free', 'q-expired', 'q-canceled', 'q-noacct']) {
    const r = by(id);
    for (const p of ['basic', 'language', 'sentiment', 'keywords']) {
      assert.equal(r[p]?.status, 'completed', `${id} ${p}`);
      assert.equal(r[p]!.cached, false, `${id} ${p}`);
    }
    assert.equal(r.summary?.status, 'skipped', id);
    assert.match(r.summary!.error!, /needs an active subscription/);
    assert.equal(r.summary!.result, null);
  }
  // Too few messages.
  const short = by('q-short');
  assert.equal(short.keywords?.status, 'skipped');
  assert.match(short.keywords!.error!, /at least 3 messages, has 2/);
  assert.equal(short.summary?.status, 'skipped');
  assert.equal(short.sentiment?.status, 'completed');
  const one = by('q-one');
  assert.deepEqual(Object.keys(one).sort(), ['basic', 'keywords', 'language', 'sentiment', 'summary']);
  assert.equal(one.basic!.status, 'completed');
  assert.equal(one.language!.status, 'skipped');

  // The disabled pass ran on none.
  assert.equal(rs.filter((r) => r.pass_name === 'everything').length, 0);
  // The LLM was asked once: for q-paid's summary.
  assert.equal(llm.requests.length, 1);

  // analysis.completed: one event per completed run, keyed by conversation_id, result as JSON.
  const completed = rs.filter((r) => r.status === 'completed');
  let events: { key: string; v: any }[] = [];
  await waitFor('analysis.completed events', async () => (events = await completedEvents(e)).length >= completed.length);
  assert.equal(events.length, completed.length);
  for (const r of completed) {
    const ev = events.find((x) => x.v.conversation_id === r.conversation_id && x.v.pass_name === r.pass_name);
    assert.ok(ev, `${r.conversation_id} ${r.pass_name}`);
    assert.equal(ev.key, r.conversation_id);
    assert.equal(ev.v.status, 'completed');
    assert.equal(ev.v.pass_version, 1);
    assert.deepEqual(JSON.parse(ev.v.result_json), r.result);
  }
  assert.equal(await h.ready(), true);
  await stop(h);

  // A redelivered ready record (at-least-once from the ETL) runs nothing again and emits nothing new.
  await ready(e, [convs[0]!]);
  const h2 = await start(e);
  await waitFor('the duplicate to be committed', () => committedAll(e));
  await stop(h2);
  const again = await runs(['q-paid']);
  assert.deepEqual(again.map((r) => [r.pass_name, r.status, r.attempts]), rs.filter((r) => r.conversation_id === 'q-paid').map((r) => [r.pass_name, r.status, r.attempts]));
  assert.equal((await completedEvents(e)).length, completed.length);

  // Backfill entry point: the account subscribes; runPass runs the skipped pass for it.
  await addSubscription(pool, { account_id: 'acc-free', plan: 'pro', status: 'trialing' });
  const dry = await runPass('summary', ['q-free', 'q-short', 'q-paid', 'missing-id'], { pool, passes: PASSES, dryRun: true });
  assert.deepEqual({ wouldRun: dry.wouldRun, skipped: dry.skipped, already: dry.already, missing: dry.missing }, { wouldRun: 1, skipped: 1, already: 1, missing: 1 });
  const s = await runPass('summary', ['q-free', 'q-short', 'q-paid'], {
    pool, passes: PASSES, llm: { baseUrl: llm.baseUrl, model: 'test-model', timeoutMs: 2000 },
  });
  assert.equal(s.completed, 1);
  assert.equal(s.skipped, 1);
  assert.equal(s.already, 1);
  const free = await runs(['q-free']);
  assert.equal(free.find((r) => r.pass_name === 'summary')!.status, 'completed');
  await assert.rejects(runPass('everything', ['q-free'], { pool, passes: PASSES }), /is disabled/);
});

test('the same pass version on the same content reuses the cached result', async () => {
  const e = await env('cache');
  const original = conversation('cache-a', 'acc-paid', 4, T0 + 7 * 86_400_000);
  // The same content under other ids (a re-import): same senders, times and texts.
  const copy = conversation('cache-b', 'acc-paid', 4, T0 + 7 * 86_400_000);
  assert.equal(contentHash(original.messages), contentHash(copy.messages));
  await ready(e, [original]);
  llm.requests.length = 0;
  const h = await start(e);
  await settled(['cache-a'], 5);
  assert.equal(llm.requests.length, 1);
  await ready(e, [copy]);
  const rs = await settled(['cache-b'], 5);
  await stop(h);
  const a = (await runs(['cache-a'])).filter((r) => r.status === 'completed');
  const b = rs.filter((r) => r.conversation_id === 'cache-b' && r.status === 'completed');
  assert.equal(b.length, 5);
  for (const r of b) {
    assert.equal(r.cached, true, r.pass_name);
    assert.deepEqual(r.result, a.find((x) => x.pass_name === r.pass_name)!.result, r.pass_name);
  }
  assert.ok(a.every((r) => !r.cached));
  assert.equal(llm.requests.length, 1, 'the LLM was not asked again for the copy');
  const { rows } = await pool.query(`SELECT pass_name, hits FROM analysis_cache WHERE content_hash = $1 ORDER BY pass_name`, [contentHash(original.messages)]);
  assert.deepEqual(rows.map((r) => [r.pass_name, Number(r.hits)]), [['basic', 1], ['keywords', 1], ['language', 1], ['sentiment', 1], ['summary', 1]]);
});

test('a pass that keeps failing is recorded failed after N attempts; the others complete', async () => {
  const e = await env('fail');
  const passes = [pass('basic', 100, 'basic'), pass('flaky', 30, 'llm', { prompt_name: 'FlakyPrompt' })];
  await ready(e, [conversation('fail-a', null, 3, T0 + 14 * 86_400_000)]);
  llm.requests.length = 0;
  const h = await start(e, { passes, maxAttempts: 3 });
  const rs = await settled(['fail-a'], 2);
  await waitFor('offsets committed', () => committedAll(e));
  await stop(h);
  const flaky = rs.find((r) => r.pass_name === 'flaky')!;
  assert.equal(flaky.status, 'failed');
  assert.equal(flaky.attempts, 3);
  assert.match(flaky.error!, /not the JSON object the prompt asks for/);
  assert.equal(flaky.result, null);
  assert.equal(llm.requests.length, 3, 'one request per attempt');
  assert.equal(rs.find((r) => r.pass_name === 'basic')!.status, 'completed');
  const events = await completedEvents(e);
  const failed = events.find((x) => x.v.pass_name === 'flaky');
  assert.ok(failed);
  assert.equal(failed.v.status, 'failed');
  assert.match(failed.v.error, /not the JSON object/);
  assert.equal(failed.v.result_json, null);
  // A failed run is not retried by redelivery; a backfill (runPass) tries it again from attempt 1.
  const s = await runPass('flaky', ['fail-a'], { pool, passes, maxAttempts: 2, retryInitialMs: 10, llm: { baseUrl: llm.baseUrl, model: 'm' } });
  assert.equal(s.failed, 1);
  assert.equal((await runs(['fail-a'])).find((r) => r.pass_name === 'flaky')!.attempts, 2);
});

test('offsets are committed only once every pass of the conversation is recorded; a stop mid-pass gives the run back', async () => {
  const e = await env('stop');
  const passes = [pass('basic', 100, 'basic'), pass('summary', 20, 'llm')];
  await ready(e, [conversation('stop-a', null, 3, T0 + 21 * 86_400_000)]);
  llm.requests.length = 0;
  llm.script({ kind: 'hang' });
  const h = await start(e, { passes, drainTimeoutMs: 300, llm: { timeoutMs: 30_000, maxRetries: 0 } });
  await waitFor('basic done and summary running', async () => {
    const rs = await runs(['stop-a']);
    return rs.some((r) => r.pass_name === 'basic' && r.status === 'completed') && rs.some((r) => r.pass_name === 'summary' && r.status === 'running');
  });
  await stop(h);
  let rs = await runs(['stop-a']);
  assert.equal(rs.find((r) => r.pass_name === 'summary')!.status, 'pending', 'the claim was given back');
  assert.equal(await committedAll(e), false, 'the record is not committed while a pass is unrecorded');

  const h2 = await start(e, { passes });
  rs = await settled(['stop-a'], 2);
  await waitFor('offsets committed', () => committedAll(e));
  await stop(h2);
  const summary = rs.find((r) => r.pass_name === 'summary')!;
  assert.equal(summary.status, 'completed');
  assert.equal(summary.attempts, 2, 'the interrupted attempt counts');
  assert.equal(rs.find((r) => r.pass_name === 'basic')!.attempts, 1, 'basic was not run again');
});
