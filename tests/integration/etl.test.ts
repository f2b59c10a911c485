// ETL against the real broker, registry and PostgreSQL: conversation.sealed (written
// transactionally, as the tracker does) → PostgreSQL → conversation.ready. Rows equal the records,
// none twice, across a stop mid-run, a failure between the PostgreSQL commit and the offset
// commit, poison records (DLQ) and a database that becomes unreachable and comes back.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client, type Pool } from 'pg';
import type { Kafka } from 'kafkajs';
import { loadConfig, type Config } from '../../src/config';
import { ensureTopics, topicNames } from '../../src/topics';
import { registry } from '../../src/metrics';
import { RecordCodec, RECORD_KINDS, SchemaRegistryClient } from '../../src/records/codec';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';
import { mkdtempSync, readdirSync, copyFileSync, writeFileSync, appendFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPool } from '../../src/db/pool';
import { defaultMigrationsDir, migrate } from '../../src/db/migrate';
import { contentHash } from '../../src/db/conversations';
import { startEtl, type EtlHandle, type EtlOptions } from '../../src/processors/etl';
import { REGISTRY_URL, deleteTopics, testKafka, uniquePrefix } from '../fixtures/kafka';
import { readTopic } from '../support/topic-reader';

process.env.LOG_LEVEL ??= 'error';

const ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = `chatstats_test_etl_${randomBytes(4).toString('hex')}`;
const DB_URL = (() => { const u = new URL(ADMIN_URL); u.pathname = `/${DB}`; return u.toString(); })();
const kafka: Kafka = testKafka('etl-test');
let pool: Pool;
const prefixes: string[] = [];
let stopLater: EtlHandle[] = [];
const codecs: RecordCodec[] = [];

async function admin(sql: string): Promise<void> {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try { await c.query(sql); } finally { await c.end(); }
}

before(async () => {
  await admin(`CREATE DATABASE ${DB}`);
  pool = createPool(DB_URL, { max: 4 });
});

after(async () => {
  for (const h of stopLater) await h.stop();
  stopLater = [];
  await pool?.end();
  await admin(`ALTER DATABASE ${DB} ALLOW_CONNECTIONS true`).catch(() => undefined);
  await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  for (const p of prefixes) await deleteTopics(kafka, p).catch(() => undefined);
  const reg = new SchemaRegistryClient(REGISTRY_URL);
  for (const c of codecs) {
    if (c.format === 'avro') for (const k of RECORD_KINDS) await reg.deleteSubject(c.subjectFor(k), true).catch(() => undefined);
  }
});

interface Env { cfg: Config; codec: RecordCodec; topics: ReturnType<typeof topicNames>; tag: string }

async function env(tag: string, avro: boolean): Promise<Env> {
  const prefix = uniquePrefix(`etl-${tag}`);
  prefixes.push(prefix);
  const vars: Record<string, string> = {
    TOPIC_PREFIX: prefix, APP_ID: `etltest-${randomBytes(3).toString('hex')}`, DATABASE_URL: DB_URL, TOPIC_PARTITIONS: '3',
  };
  if (avro) vars.SCHEMA_REGISTRY_URL = REGISTRY_URL;
  const cfg = loadConfig(vars);
  const a = kafka.admin();
  await a.connect();
  try { await ensureTopics(a, cfg); } finally { await a.disconnect(); }
  const topics = topicNames(cfg);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  await codec.init();
  codecs.push(codec);
  return { cfg, codec, topics, tag };
}

const T0 = Date.UTC(2024, 5, 1, 8, 0, 0);

function sealed(tag: string, i: number, over: Partial<ConversationSealed> = {}): ConversationSealed {
  const chat = `${tag}-chat-${i % 7}`;
  const n = 1 + (i % 5);
  const start = T0 + i * 3_600_000;
  const messages: ChatMessage[] = [];
  for (let k = 0; k < n; k++) {
    messages.push({
      message_id: `${tag}-c${i}-m${k}`, chat_id: chat, sender_id: `u${(i + k) % 3}`, sent_at: start + k * 45_000,
      text: k === 2 ? null : `message ${k} of conversation ${i} — ünïcödé ✓`, chat_type: i % 2 ? 'group' : 'direct',
      is_from_me: k % 2 === 1, reply_to_message_id: k > 0 ? `${tag}-c${i}-m${k - 1}` : null, account_id: `acc-${i % 4}`,
    });
  }
  return {
    conversation_id: `${tag}-conv-${i}`, chat_id: chat, chat_type: i % 2 ? 'group' : 'direct', account_id: `acc-${i % 4}`,
    started_at: start, ended_at: messages[n - 1]!.sent_at, message_count: n,
    participant_ids: [...new Set(messages.map((m) => m.sender_id))].sort(),
    first_message_id: messages[0]!.message_id, last_message_id: messages[n - 1]!.message_id,
    sealed_at: start + 10_000_000, seal_reason: i % 3 === 0 ? 'GAP_TIMEOUT' : 'NEXT_MESSAGE', gap_ms: 5_400_000,
    continues_conversation_id: i % 10 === 9 ? `${tag}-conv-${i - 1}` : null, messages, ...over,
  };
}

/** Writes records to conversation.sealed in one Kafka transaction (committed, or aborted). */
async function produceSealed(e: Env, values: (ConversationSealed | { key: string; raw: Buffer })[], abort = false): Promise<void> {
  const producer = kafka.producer({ transactionalId: `etl-test-${randomBytes(6).toString('hex')}`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const txn = await producer.transaction();
    const messages = await Promise.all(values.map(async (v) => 'raw' in v
      ? { key: v.key, value: v.raw }
      : { key: v.chat_id, value: await e.codec.encode('ConversationSealed', v) }));
    await txn.send({ topic: e.topics.sealed, messages });
    if (abort) await txn.abort(); else await txn.commit();
  } finally {
    await producer.disconnect();
  }
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

const convCount = (tag: string) => count('SELECT count(*) AS n FROM conversations WHERE conversation_id LIKE $1', [`${tag}-%`]);

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function metricSum(name: string): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.reduce((a, v) => a + v.value, 0);
}

/** conversation.ready, decoded, once its distinct conversation ids reach `expected`. */
async function readReady(e: Env, expected: number): Promise<{ ids: string[]; hashes: Map<string, string> }> {
  let ids: string[] = [];
  const hashes = new Map<string, string>();
  await waitFor(`${expected} conversations on conversation.ready`, async () => {
    const recs = await readTopic(kafka, e.topics.ready);
    ids = [];
    for (const r of recs) {
      const v = await e.codec.decode('ConversationReady', r.value);
      assert.equal(r.key?.toString(), v.conversation_id, 'keyed by conversation_id');
      ids.push(v.conversation_id);
      hashes.set(v.conversation_id, v.content_hash);
    }
    return new Set(ids).size >= expected;
  });
  return { ids, hashes };
}

/** The loaded conversation, in the shape of the sealed record, from PostgreSQL. */
async function loaded(id: string): Promise<Omit<ConversationSealed, 'sealed_at'> & { sealed_at: number; content_hash: string }> {
  const ms = (c: string) => `(extract(epoch FROM ${c}) * 1000)::bigint`;
  const { rows: [c] } = await pool.query(
    `SELECT *, ${ms('started_at')} AS s, ${ms('ended_at')} AS e, ${ms('sealed_at')} AS z FROM conversations WHERE conversation_id = $1`, [id]);
  const { rows: msgs } = await pool.query(
    `SELECT *, ${ms('sent_at')} AS t FROM messages WHERE conversation_id = $1 ORDER BY position`, [id]);
  return {
    conversation_id: c.conversation_id, chat_id: c.chat_id, chat_type: c.chat_type, account_id: c.account_id,
    started_at: Number(c.s), ended_at: Number(c.e), message_count: c.message_count, participant_ids: c.participant_ids,
    first_message_id: c.first_message_id, last_message_id: c.last_message_id, sealed_at: Number(c.z), seal_reason: c.seal_reason,
    gap_ms: Number(c.gap_ms), continues_conversation_id: c.continues_conversation_id, content_hash: c.content_hash,
    messages: msgs.map((m: any) => ({
      message_id: m.message_id, chat_id: m.chat_id, sender_id: m.sender_id, sent_at: Number(m.t), text: m.text,
      chat_type: null, is_from_me: m.is_from_me, reply_to_message_id: m.reply_to_message_id, account_id: m.account_id,
    })),
  };
}

function comparable(s: ConversationSealed): unknown {
  return { ...s, messages: s.messages.map((m) => ({ ...m, chat_type: null })) };
}

async function assertExactlyLoaded(records: ConversationSealed[], tag: string): Promise<void> {
  assert.equal(await convCount(tag), records.length, 'conversations loaded');
  const expectedMessages = records.reduce((a, r) => a + r.messages.length, 0);
  assert.equal(await count('SELECT count(*) AS n FROM messages WHERE message_id LIKE $1', [`${tag}-%`]), expectedMessages, 'messages loaded');
  for (const r of records) {
    const row = await loaded(r.conversation_id);
    const { content_hash, ...rest } = row;
    assert.deepEqual(rest, comparable(r), r.conversation_id);
    assert.equal(content_hash, contentHash(r.messages));
  }
}

async function etl(e: Env, opts: EtlOptions = {}): Promise<EtlHandle> {
  const h = await startEtl(e.cfg, { batchSize: 7, backoff: { initialMs: 100, maxMs: 1000 }, ...opts });
  stopLater.push(h);
  return h;
}

test('loads committed sealed conversations exactly (Avro), skips aborted ones, emits conversation.ready', async () => {
  const e = await env('main', true);
  const records = Array.from({ length: 40 }, (_, i) => sealed('main', i));
  await produceSealed(e, records.slice(0, 25));
  await produceSealed(e, [sealed('main', 999)], true); // aborted: a read_committed consumer never sees it
  await produceSealed(e, records.slice(25));
  const h = await etl(e);
  await waitFor('40 conversations in PostgreSQL', async () => (await convCount('main')) >= 40);
  const ready = await readReady(e, 40);
  await h.stop();
  await assertExactlyLoaded(records, 'main');
  assert.equal(await count(`SELECT count(*) AS n FROM conversations WHERE conversation_id = 'main-conv-999'`), 0, 'aborted record not loaded');
  assert.deepEqual([...new Set(ready.ids)].sort(), records.map((r) => r.conversation_id).sort());
  for (const r of records) assert.equal(ready.hashes.get(r.conversation_id), contentHash(r.messages));
  assert.equal(e.codec.format, 'avro');
  assert.ok(await h.ready() === false);
});

test('stop mid-run, then a failure between the PostgreSQL commit and the offset commit: still exact, none twice', async () => {
  const e = await env('restart', false);
  const records = Array.from({ length: 150 }, (_, i) => sealed('restart', i));
  await produceSealed(e, records);
  // First run: stopped after its third chunk.
  let chunks = 0;
  let first: EtlHandle | null = null;
  let stopping: Promise<void> | null = null;
  first = await etl(e, { batchSize: 5, partitionsConsumedConcurrently: 1, afterChunk: () => { if (++chunks === 3) stopping = first!.stop(); } });
  await waitFor('the first run to stop', async () => stopping !== null, 30_000);
  await stopping;
  const afterFirst = await convCount('restart');
  assert.ok(afterFirst >= 15 && afterFirst < 150, `stopped mid-run with ${afterFirst} loaded`);

  // Second run: the first chunk fails right after PostgreSQL committed (no output, no offset commit);
  // the consumer re-reads it and loads nothing twice.
  let failed = 0;
  await etl(e, {
    batchSize: 5,
    afterPgCommit: () => { if (failed++ === 0) throw new Error('simulated crash after the PostgreSQL commit'); },
  });
  await waitFor('150 conversations in PostgreSQL', async () => (await convCount('restart')) >= 150, 90_000);
  const ready = await readReady(e, 150);
  assert.ok(failed >= 2, 'the failed chunk was processed again');
  await assertExactlyLoaded(records, 'restart');
  assert.deepEqual([...new Set(ready.ids)].sort(), records.map((r) => r.conversation_id).sort());
  assert.equal(await count(`SELECT count(*) - count(DISTINCT message_id) AS n FROM messages WHERE message_id LIKE 'restart-%'`), 0);
});

test('poison records go to conversation.sealed.dlq with the reason; the rest loads', async () => {
  const e = await env('poison', false);
  const good = [sealed('poison', 1), sealed('poison', 2), sealed('poison', 3)];
  const mismatch = sealed('poison', 4);
  mismatch.message_count = 9;
  const nul = sealed('poison', 5);
  nul.messages[0]!.text = 'bad \u0000 byte';
  // Not poison: a conversation one of whose message ids was loaded with another conversation.
  // (Same chat, so same partition, after the conversation that has the message first.)
  const overlap = sealed('poison', 6, { chat_id: sealed('poison', 1).chat_id });
  for (const m of overlap.messages) m.chat_id = overlap.chat_id;
  overlap.messages[0]!.message_id = good[0]!.messages[0]!.message_id;
  overlap.first_message_id = overlap.messages[0]!.message_id;
  const dupBefore = await metricSum('chatstats_etl_duplicate_messages_total');
  const dlqBefore = await metricSum('chatstats_etl_dlq_total');
  await produceSealed(e, [
    good[0]!,
    { key: 'poison-chat-x', raw: Buffer.from('this is not a record') },
    { key: 'poison-chat-y', raw: Buffer.from(JSON.stringify({ conversation_id: 'poison-conv-nochat', started_at: 'yesterday' })) },
    good[1]!,
    mismatch,
    nul,
    good[2]!,
    overlap,
  ]);
  const h = await etl(e);
  await waitFor('the good conversations', async () => (await convCount('poison')) >= 4);
  let dlq: Awaited<ReturnType<typeof readTopic>> = [];
  await waitFor('4 DLQ records', async () => (dlq = await readTopic(kafka, e.topics.sealedDlq)).length >= 4);
  await h.stop();
  const dupLoaded = await loaded(overlap.conversation_id);
  assert.equal(dupLoaded.message_count, overlap.message_count);
  assert.deepEqual(dupLoaded.messages.map((m) => m.message_id), overlap.messages.slice(1).map((m) => m.message_id), 'the shared message stays with its first conversation');
  assert.equal(await metricSum('chatstats_etl_duplicate_messages_total') - dupBefore, 1);
  await pool.query('DELETE FROM conversations WHERE conversation_id = $1', [overlap.conversation_id]);
  await assertExactlyLoaded(good, 'poison');
  assert.equal(dlq.length, 4);
  const reasons = dlq.map((r) => String(r.headers?.['x-dlq-reason'])).sort();
  assert.equal(reasons.length, 4);
  assert.ok(reasons.some((r) => /^not JSON/.test(r)), reasons.join(' | '));
  assert.ok(reasons.some((r) => /chat_id|missing|not a time/.test(r)), reasons.join(' | '));
  assert.ok(reasons.some((r) => /message_count does not match messages/.test(r)), reasons.join(' | '));
  assert.ok(reasons.some((r) => /PostgreSQL refused the conversation/.test(r)), reasons.join(' | '));
  const raw = dlq.find((r) => r.key?.toString() === 'poison-chat-x')!;
  assert.equal(raw.value?.toString(), 'this is not a record', 'original bytes kept');
  assert.equal(String(raw.headers?.['x-dlq-source-topic']), e.topics.sealed);
  assert.equal(await metricSum('chatstats_etl_dlq_total') - dlqBefore, 4);
  const ready = await readReady(e, 4);
  assert.deepEqual([...new Set(ready.ids)].sort(), [...good, overlap].map((g) => g.conversation_id).sort());
});

test('PostgreSQL unreachable: the ETL backs off and retries; the records arrive once it is back', async () => {
  const e = await env('outage', false);
  const before = [sealed('outage', 1), sealed('outage', 2)];
  await produceSealed(e, before);
  const h = await etl(e);
  await waitFor('the first conversations', async () => (await convCount('outage')) >= 2);
  await waitFor('the ETL to be ready', () => h.ready());
  const errorsBefore = await metricSum('chatstats_etl_pg_errors_total');

  // The database refuses connections, and the open ones are cut.
  await admin(`ALTER DATABASE ${DB} ALLOW_CONNECTIONS false`);
  await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${DB}' AND pid <> pg_backend_pid()`);
  const during = Array.from({ length: 30 }, (_, i) => sealed('outage', 10 + i));
  await produceSealed(e, during);
  await waitFor('PostgreSQL errors to be counted', async () => (await metricSum('chatstats_etl_pg_errors_total')) >= errorsBefore + 2, 30_000);
  assert.equal(await h.ready(), false, 'not ready while PostgreSQL is unreachable');
  assert.equal(await metricSum('chatstats_etl_pg_available'), 0);

  await admin(`ALTER DATABASE ${DB} ALLOW_CONNECTIONS true`);
  await waitFor('all conversations after the outage', async () => (await convCount('outage')) >= 32, 60_000);
  await readReady(e, 32);
  await h.stop();
  await assertExactlyLoaded([...before, ...during], 'outage');
  assert.equal(await metricSum('chatstats_etl_pg_available'), 1);
});

test('migrations: concurrent starts apply each once, in order; a failing one applies nothing; an edited one is refused', async () => {
  const db = `chatstats_test_migrate_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE DATABASE ${db}`);
  const u = new URL(ADMIN_URL);
  u.pathname = `/${db}`;
  const pools = Array.from({ length: 6 }, () => createPool(u.toString(), { max: 2 }));
  const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
  try {
    const results = await Promise.all(pools.map((p) => migrate(p)));
    const files = readdirSync(defaultMigrationsDir()).filter((f) => f.endsWith('.sql')).sort();
    assert.equal(results.reduce((a, r) => a + r.applied.length, 0), files.length, 'each migration applied by exactly one start');
    const { rows } = await pools[0]!.query('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(rows.map((r) => r.version), files.map((f) => Number(f.slice(0, 3))));
    for (const t of ['conversations', 'messages', 'analysis_runs', 'analysis_cache', 'prompt_templates', 'subscriptions']) {
      const { rows: [r] } = await pools[0]!.query('SELECT to_regclass($1) AS t', [t]);
      assert.equal(r.t, t);
    }
    assert.equal((await migrate(pools[1]!)).applied.length, 0, 'a second run has nothing to do');

    for (const f of files) copyFileSync(join(defaultMigrationsDir(), f), join(dir, f));
    writeFileSync(join(dir, '900_bad.sql'), 'CREATE TABLE half_done (x int);\nCREATE TABLE broken (;');
    await assert.rejects(migrate(pools[0]!, { dir }), /migration 900_bad\.sql failed/);
    const { rows: [half] } = await pools[0]!.query(`SELECT to_regclass('half_done') AS t`);
    assert.equal(half.t, null, 'a failed migration leaves nothing behind');
    rmSync(join(dir, '900_bad.sql'));
    appendFileSync(join(dir, files[0]!), '\n-- edited\n');
    await assert.rejects(migrate(pools[0]!, { dir }), /was changed after it was applied/);
  } finally {
    for (const p of pools) await p.end();
    rmSync(dir, { recursive: true, force: true });
    await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  }
});
