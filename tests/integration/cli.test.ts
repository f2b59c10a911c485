// The operator CLI as a user runs it (`bin/chatstats.js` as a child process) against a running
// system (tracker, ETL and analysis started in this process) on the real broker, registry and
// PostgreSQL:
// - force-seal on a chat with an open conversation prints its id; the conversation appears once on
//   conversation.sealed with reason FORCED; the chat's next message opens a continuation that names
//   it in continues_conversation_id.
// - each command's --json output parses, holds what its table shows, and uses one style: snake_case
//   keys (stats, missing, list-passes, conversations, tracker-status whole and --chat-id,
//   check-sealing, force-seal, backfill --dry-run, backfill-all --dry-run, migrate --status);
// - force-seal of a chat with nothing open counts no message; conversations --chat-id lists the
//   sealed conversations with their passes and the open one; stats counts late and dead-lettered
//   records; backfill's summary accounts for every record it read.
// - unreachable Kafka or PostgreSQL and invalid settings exit non-zero with one clear line.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, type Pool } from 'pg';
import { isolatedEnv, configOf, testKafka, waitFor, REGISTRY_URL, ROOT } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { deleteTopics } from '../fixtures/kafka';
import { startApp, type App } from '../../src/app';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec, RECORD_KINDS, SchemaRegistryClient } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { addSubscription } from '../../src/db/subscriptions';
import type { BackfillSummary } from '../../src/backfill/backfill';
import type { MissingReport, Stats } from '../../src/backfill/coverage';
import type { ChatConversations } from '../../src/cli/conversations';
import type { StreamFigures } from '../../src/cli/kafka-figures';
import { registry } from '../../src/metrics';

process.env.LOG_LEVEL ??= 'warn';

const ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = `chatstats_test_cli_${randomBytes(4).toString('hex')}`;
const DB_URL = (() => { const u = new URL(ADMIN_URL); u.pathname = `/${DB}`; return u.toString(); })();

// Live analysis runs without `keywords`; the CLI sees every pass enabled, so keywords is missing.
const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-cli-'));
const allPasses = JSON.parse(readFileSync(path.join(ROOT, 'config/passes.json'), 'utf8')) as { passes: { name: string; enabled: boolean }[] };
const liveFile = path.join(dir, 'passes-live.json');
const cliFile = path.join(dir, 'passes-cli.json');
writeFileSync(liveFile, JSON.stringify({ passes: allPasses.passes.map((p) => ({ ...p, enabled: p.name === 'keywords' ? false : p.enabled })) }));
writeFileSync(cliFile, JSON.stringify(allPasses));

const env = isolatedEnv('cli', { SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms', DATABASE_URL: DB_URL, PASSES_FILE: liveFile });
const cfg = configOf(env);
const topics = topicNames(cfg);
const kafka = testKafka();
const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
const tag = randomBytes(3).toString('hex');
const LIVE_CHAT = `live-${tag}`;
let pool: Pool;
let app: App | null = null;
let producer: ChatMessageProducer;
const children = new Set<ReturnType<typeof spawn>>();

interface CliResult { code: number | null; stdout: string; stderr: string }

function cli(args: string[], extra: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), ...args], {
      env: { ...process.env, ...env, PASSES_FILE: cliFile, ...extra }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`chatstats ${args.join(' ')} took over ${timeoutMs}ms\n${stderr}`)); }, timeoutMs);
    const t0 = Date.now();
    proc.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(proc);
      if (process.env.CLI_TEST_TIMINGS) console.error(`[${new Date(t0).toISOString().slice(17, 23)} → ${new Date().toISOString().slice(17, 23)}] chatstats ${args.join(" ")}: ${Date.now() - t0} ms`);
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  assert.equal(r.code, 0, `chatstats ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Objects whose keys are data (seal reasons, pass names, partition numbers), not field names. */
const DATA_KEYED = new Set(['by_seal_reason', 'by_pass', 'partitions', 'skip_reasons']);
const jsonStyle: string[] = [];

/** Every field name in a --json output is snake_case (issue 14: one JSON style, documented in the README). */
function snakeCaseKeys(v: unknown, where: string, out: string[]): void {
  if (Array.isArray(v)) { v.forEach((x, i) => snakeCaseKeys(x, `${where}[${i}]`, out)); return; }
  if (v === null || typeof v !== 'object') return;
  const dataKeyed = DATA_KEYED.has(where.split('.').at(-1)!) && !Array.isArray(v);
  for (const [k, x] of Object.entries(v)) {
    if (!dataKeyed && !/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(k)) out.push(`${where}.${k}`);
    snakeCaseKeys(x, `${where}.${k}`, out);
  }
}

async function json<T>(args: string[]): Promise<T> {
  const v = JSON.parse(await ok([...args, '--json'])) as T;
  snakeCaseKeys(v, `chatstats ${args.join(' ')} --json`, jsonStyle);
  return v;
}

/**
 * The tables in a command's output: a header line followed by a line of dashes (printTable), or,
 * with `headerStart`, the line starting with it (upper-case single-word headers, list-passes).
 * Cells are cut at the column positions, so empty cells and cells with spaces are kept.
 */
function tables(out: string, headerStart?: string): Record<string, string>[][] {
  const lines = out.split('\n');
  const found: Record<string, string>[][] = [];
  for (let i = 0; i < lines.length; i++) {
    const dashes = lines[i + 1] !== undefined && /^-+( +-+)*$/.test(lines[i + 1]!);
    const byHeader = headerStart !== undefined && lines[i]!.startsWith(headerStart);
    if (!dashes && !byHeader) continue;
    const ref = dashes ? lines[i + 1]! : lines[i]!;
    const starts: number[] = [];
    for (const m of ref.matchAll(dashes ? /-+/g : /\S+/g)) starts.push(m.index!);
    const cut = (line: string) => starts.map((s, k) => line.slice(s, k + 1 < starts.length ? starts[k + 1] : undefined).trim());
    const names = cut(lines[i]!);
    const rows: Record<string, string>[] = [];
    let j = i + (dashes ? 2 : 1);
    for (; j < lines.length && lines[j]!.trim() !== ''; j++) {
      const cells = cut(lines[j]!);
      rows.push(Object.fromEntries(names.map((n, k) => [n, cells[k] ?? ''])));
    }
    found.push(rows);
    i = j;
  }
  return found;
}

const T0 = Date.UTC(2024, 2, 1, 9, 0, 0);
const HOUR = 3_600_000;

function msg(chat: string, id: string, sentAt: number, sender: string, text: string, account: string | null = null): ChatMessage {
  return { message_id: id, chat_id: chat, sender_id: sender, sent_at: sentAt, text, chat_type: 'group', is_from_me: false, reply_to_message_id: null, account_id: account };
}

/** Three chats of the past, two conversations each, of 1 to 6 messages; hist-a has a subscription. */
function history(): ChatMessage[] {
  const out: ChatMessage[] = [];
  const words = ['good morning everyone', 'the release is ready for testing', 'great work, thanks a lot', 'I found a bug in the parser', 'terrible latency today', 'shipping it now'];
  ['a', 'b', 'c'].forEach((c, ci) => {
    const chat = `hist-${c}-${tag}`;
    for (let conv = 0; conv < 2; conv++) {
      const n = 1 + ci * 2 + conv;
      const start = T0 + ci * 24 * HOUR + conv * 5 * HOUR;
      for (let k = 0; k < n; k++) {
        out.push(msg(chat, `${chat}-${conv}-${k}`, start + k * 60_000, `u${k % 3}`, words[(k + conv) % words.length]!, c === 'a' ? `acct-${tag}` : null));
      }
    }
  });
  return out;
}

async function sealedOf(chat: string): Promise<ConversationSealed[]> {
  const out: ConversationSealed[] = [];
  for (const r of await readTopic(kafka, topics.sealed)) {
    if (r.key?.toString() !== chat) continue;
    out.push(await codec.decode('ConversationSealed', r.value));
  }
  return out;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

before(async () => {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  await c.query(`CREATE DATABASE ${DB}`);
  await c.end();
  pool = createPool(DB_URL, { max: 4 });
  await migrate(pool);
  await addSubscription(pool, { account_id: `acct-${tag}`, plan: 'pro', status: 'active' });
  const a = kafka.admin();
  await a.connect();
  await ensureTopics(a, cfg);
  await a.disconnect();
  producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  await producer.send(history());
  app = await startApp(cfg, ['tracker', 'etl', 'analysis']);
});

after(async () => {
  for (const ch of children) ch.kill('SIGKILL');
  await producer?.disconnect().catch(() => undefined);
  await app?.stop().catch(() => undefined);
  await pool?.end();
  await deleteTopics(kafka, env.TOPIC_PREFIX!).catch(() => undefined);
  const reg = new SchemaRegistryClient(REGISTRY_URL);
  for (const k of RECORD_KINDS) await reg.deleteSubject(codec.subjectFor(k), true).catch(() => undefined);
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => undefined);
  await c.end();
});

test('force-seal prints the id of the open conversation, sealed once with FORCED; the next message opens a continuation', async (t) => {
  const now = Date.now();
  const ms = () => `${((Date.now() - now) / 1000).toFixed(1)}s`;
  await producer.send([msg(LIVE_CHAT, `${LIVE_CHAT}-1`, now - 2000, 'alice', 'hello?'), msg(LIVE_CHAT, `${LIVE_CHAT}-2`, now - 1000, 'bob', 'hi alice')]);
  // tracker-status --chat-id sees the open conversation (two messages).
  const status = await waitFor('the open conversation in tracker-status', 30_000, async () => {
    const r = await cli(['tracker-status', '--chat-id', LIVE_CHAT, '--json']);
    const s = JSON.parse(r.stdout) as { open?: { message_count: number }[] };
    return s.open?.length === 1 && s.open[0]!.message_count === 2 ? s : undefined;
  }, 300);
  assert.equal((status as { known: boolean }).known, true);
  t.diagnostic(`open conversation seen by tracker-status after ${ms()}`);

  const out = await ok(['force-seal', LIVE_CHAT]);
  const first = out.trim();
  assert.match(first, /^\S+$/, `force-seal prints the id alone: ${out}`);
  t.diagnostic(`force-seal printed ${first} after ${ms()}`);

  const sealed1 = await waitFor('the forced conversation on conversation.sealed', 30_000, async () => {
    const s = await sealedOf(LIVE_CHAT);
    return s.length >= 1 ? s : undefined;
  });
  assert.equal(sealed1.length, 1, 'sealed once');
  assert.equal(sealed1[0]!.conversation_id, first);
  assert.equal(sealed1[0]!.seal_reason, 'FORCED');
  assert.equal(sealed1[0]!.message_count, 2);
  assert.equal(sealed1[0]!.continues_conversation_id, null);

  // The chat goes on: its next message (within the gap) opens a continuation of the sealed one.
  await producer.send([msg(LIVE_CHAT, `${LIVE_CHAT}-3`, Date.now(), 'alice', 'one more thing')]);
  await waitFor('the continuation in tracker-status', 30_000, async () => {
    const r = await cli(['tracker-status', '--chat-id', LIVE_CHAT, '--json']);
    const s = JSON.parse(r.stdout) as { open?: { continues_conversation_id: string | null }[] };
    return s.open?.length === 1 && s.open[0]!.continues_conversation_id === first ? true : undefined;
  }, 300);
  // conversations --chat-id: the sealed one from PostgreSQL (once the ETL has loaded it) and the open continuation.
  const conv = await waitFor('the forced conversation in PostgreSQL', 30_000, async () => {
    const c = await json<ChatConversations>(['conversations', '--chat-id', LIVE_CHAT]);
    return c.sealed.length === 1 && c.open.length === 1 ? c : undefined;
  }, 300);
  assert.equal(conv.sealed[0]!.conversation_id, first);
  assert.equal(conv.sealed[0]!.seal_reason, 'FORCED');
  assert.equal(conv.sealed[0]!.message_count, 2);
  assert.deepEqual(conv.sealed[0]!.passes.map((p) => p.pass).sort(), allPasses.passes.filter((p) => p.enabled).map((p) => p.name).sort(), 'a status for every enabled pass');
  assert.equal(conv.sealed[0]!.passes.find((p) => p.pass === 'basic')!.status, 'completed');
  assert.ok(conv.sealed[0]!.passes.every((p) => ['completed', 'failed', 'skipped', 'pending', 'running', 'none'].includes(p.status)));
  assert.equal(conv.open[0]!.message_count, 1);
  assert.equal(conv.open[0]!.continues_conversation_id, first);
  assert.deepEqual(conv.tracker.error, null);
  const convOut = await ok(['conversations', '--chat-id', LIVE_CHAT]);
  assert.match(convOut, new RegExp(`chat ${LIVE_CHAT}: 1 sealed conversation\\(s\\) in PostgreSQL, 1 open in the tracker`));
  const [convRows] = tables(convOut);
  assert.deepEqual(convRows!.map((r) => [r.state, r.conversation_id, r['sealed by']]), [['sealed', first, 'FORCED'], ['open', '', `seals at ${conv.open[0]!.deadline_at}`]]);

  const forced = await json<{ chat_id: string; sealed_conversation_ids: string[] }>(['force-seal', LIVE_CHAT]);
  assert.equal(forced.sealed_conversation_ids.length, 1);
  const second = forced.sealed_conversation_ids[0]!;
  assert.notEqual(second, first);

  const sealed2 = await waitFor('the continuation on conversation.sealed', 30_000, async () => {
    const s = await sealedOf(LIVE_CHAT);
    return s.length >= 2 ? s : undefined;
  });
  assert.deepEqual(sealed2.map((c) => c.conversation_id), [first, second], 'each sealed once, in order');
  assert.equal(sealed2[1]!.seal_reason, 'FORCED');
  assert.equal(sealed2[1]!.continues_conversation_id, first);
  assert.deepEqual(sealed2[1]!.messages.map((m) => m.message_id), [`${LIVE_CHAT}-3`]);
  // Nothing was late.
  assert.equal((await readTopic(kafka, topics.late)).filter((r) => r.key?.toString() === LIVE_CHAT).length, 0);

  t.diagnostic(`continuation ${second} sealed after ${ms()}`);
  // Nothing open any more: a third force-seal says so, and tracker-status --chat-id says it in words.
  const none = await json<{ sealed_conversation_ids: string[] }>(['force-seal', LIVE_CHAT]);
  assert.deepEqual(none.sealed_conversation_ids, []);
  const quiet = await ok(['tracker-status', '--chat-id', LIVE_CHAT]);
  assert.match(quiet, /nothing open: every conversation of this chat is sealed/);
  assert.match(quiet, new RegExp(`recently sealed[\\s\\S]*${first}[\\s\\S]*${second}`));

  // A force-seal of a chat the tracker never saw seals nothing and counts no message (issue 14,
  // item 2: it counted one "accepted"); it is counted as a command.
  const counts = async () => Object.fromEntries(((await registry.getSingleMetric('chatstats_tracker_messages_total')!.get()).values)
    .map((v) => [String(v.labels.result), v.value]));
  const commands = async () => (await registry.getSingleMetric('chatstats_tracker_commands_total')!.get()).values.find((v) => v.labels.type === 'FORCE_SEAL')?.value ?? 0;
  const before = await counts();
  const commandsBefore = await commands();
  const nothing = await json<{ sealed_conversation_ids: string[] }>(['force-seal', `nosuchchat-${tag}`]);
  assert.deepEqual(nothing.sealed_conversation_ids, []);
  assert.deepEqual(await counts(), before, 'chatstats_tracker_messages_total unchanged by a command');
  assert.equal(await commands(), commandsBefore + 1);
});

test('every command\'s --json output holds what its table shows', async () => {
  // 6 conversations of the past and the 2 forced ones, loaded and analysed by the live passes.
  await waitFor('8 conversations loaded and analysed', 90_000, async () => {
    const loaded = await count('SELECT count(*) AS n FROM conversations');
    const busy = await count(`SELECT count(*) AS n FROM analysis_runs WHERE status IN ('pending', 'running')`);
    const basic = await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'basic' AND status = 'completed'`);
    return loaded === 8 && basic === 8 && busy === 0 ? true : undefined;
  }, 300);

  // stats
  const st = await json<Stats & StreamFigures>(['stats']);
  assert.equal(st.conversations, 8);
  // Counted on their topics: nothing was late or dead-lettered; no duplicates since the tracker started.
  assert.deepEqual([st.late_messages, st.dlq_messages, st.dlq_sealed, st.dlq_ready, st.duplicates_since_start, st.kafka_error], [0, 0, 0, 0, 0, null]);
  assert.equal(st.messages, 1 + 2 + 3 + 4 + 5 + 6 + 2 + 1);
  assert.equal(st.chats, 4);
  assert.equal(st.by_seal_reason.FORCED, 2);
  const [totals, reasons, cov] = tables(await ok(['stats']));
  const kv = Object.fromEntries(totals!.map((r) => [r.what, r.value]));
  assert.deepEqual(kv, {
    conversations: String(st.conversations), messages: String(st.messages), chats: String(st.chats),
    'first started': st.first_started_at ?? '-', 'last ended': st.last_ended_at ?? '-',
    'late messages': '0', 'duplicates dropped (since the running trackers started)': '0', 'dead-lettered chat messages': '0',
    'dead-lettered sealed conversations (ETL)': '0', 'dead-lettered ready conversations (analysis)': '0',
  });
  assert.deepEqual(Object.fromEntries(reasons!.map((r) => [r['seal reason'], Number(r.conversations)])), st.by_seal_reason);
  assert.equal(cov!.length, st.passes.length);
  for (const [i, p] of st.passes.entries()) {
    const row = cov![i]!;
    assert.deepEqual(row, {
      pass: p.pass, version: String(p.version), enabled: p.enabled ? 'yes' : 'no', qualifying: String(p.qualifying),
      completed: String(p.completed), failed: String(p.failed), skipped: String(p.skipped), 'in progress': String(p.in_progress),
      missing: String(p.missing), 'not qualifying': String(p.not_qualifying),
      coverage: p.coverage_percent === null ? '-' : `${p.coverage_percent.toFixed(1)}%`,
    });
  }
  const kw = st.passes.find((p) => p.pass === 'keywords')!;
  assert.equal(kw.qualifying, 4, 'conversations of 3 or more messages: 3, 4, 5 and 6');
  assert.deepEqual([kw.completed, kw.missing, kw.coverage_percent], [0, 4, 0]);
  assert.equal(st.passes.find((p) => p.pass === 'basic')!.coverage_percent, 100);
  // The LLM passes qualify only in hist-a (subscribed; >= 4 messages: none there) → nothing qualifies.
  assert.equal(st.passes.find((p) => p.pass === 'summary')!.qualifying, 0);

  // stats --chat-id
  const chatSt = await json<Stats>(['stats', '--chat-id', LIVE_CHAT]);
  assert.deepEqual([chatSt.conversations, chatSt.messages, chatSt.chats, chatSt.by_seal_reason], [2, 3, 1, { FORCED: 2 }]);

  // missing (a limit below the total)
  const miss = await json<MissingReport>(['missing', '--limit', '3']);
  assert.equal(miss.total, 4);
  assert.equal(miss.by_pass.keywords, 4);
  assert.equal(miss.rows.length, 3);
  const missOut = await ok(['missing', '--limit', '3']);
  const [missRows, byPass] = tables(missOut);
  assert.deepEqual(missRows!.map((r) => [r.conversation_id, r.chat_id, r.started_at, r.messages, r.pass, r.version, r.status]),
    miss.rows.map((r) => [r.conversation_id, r.chat_id, r.started_at, String(r.messages), r.pass, String(r.version), r.status]));
  assert.deepEqual(Object.fromEntries(byPass!.map((r) => [r.pass, Number(r.missing)])), miss.by_pass);
  assert.match(missOut, new RegExp(`${miss.total} missing run\\(s\\) over ${miss.conversations} conversation\\(s\\) \\(3 listed`));
  const missChat = await json<MissingReport>(['missing', '--chat-id', `hist-c-${tag}`, '--pass', 'keywords']);
  assert.deepEqual(missChat.rows.map((r) => r.messages), [5, 6]);

  // list-passes (its own table format: upper-case headers, no dashes)
  const passes = await json<{ name: string; priority: number; enabled: boolean; analyzer: string; prompt_name: string; prompt_version: number; prompt_category: string }[]>(['list-passes']);
  const lp = tables(await ok(['list-passes']), 'PASS')[0]!;
  assert.deepEqual(lp.map((r) => [r.PASS, r.PRIORITY, r.ENABLED, r.ANALYZER, r.PROMPT, r.VERSION, r.CATEGORY]),
    passes.map((p) => [p.name, String(p.priority), p.enabled ? 'yes' : 'no', p.analyzer, p.prompt_name, String(p.prompt_version), p.prompt_category]));

  // tracker-status (the system is quiet, so two calls see the same positions)
  const ts = await json<{ running: boolean; partitions: { partition: number; instance: string; state: string; position: number; committed_offset: number | null; end: number; lag: number; caught_up: boolean; open_conversations: number | null }[] }>(['tracker-status']);
  assert.equal(ts.running, true);
  assert.equal(ts.partitions.length, cfg.topicPartitions);
  // Quiet and caught up: the committed offsets are the ends.
  assert.deepEqual(ts.partitions.map((p) => p.committed_offset ?? 0), ts.partitions.map((p) => p.end));
  const tsOut = await ok(['tracker-status']);
  const tsRows = tables(tsOut)[0]!;
  assert.deepEqual(tsRows.map((r) => [r.partition, r.instance, r.state, r.position, r.committed, r.end, r.lag, r['caught up'], r['open conv.']]),
    ts.partitions.map((p) => [String(p.partition), p.instance, p.state, String(p.position), String(p.committed_offset ?? '-'), String(p.end), String(p.lag), p.caught_up ? 'yes' : 'no', String(p.open_conversations ?? '')]));
  assert.match(tsOut, /open conversation\(s\) as of the last committed transactions; committed input offsets \d+ of \d+/);
  const chatTs = await json<{ partition: number; open: unknown[]; owner: string }>(['tracker-status', '--chat-id', LIVE_CHAT]);
  const chatOut = await ok(['tracker-status', '--chat-id', LIVE_CHAT]);
  assert.match(chatOut, new RegExp(`chat ${LIVE_CHAT}: partition ${chatTs.partition}, owner ${chatTs.owner.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const chatTables = tables(chatOut);
  if (chatTs.open.length > 0) assert.equal(chatTables[0]!.length, chatTs.open.length);
  else assert.match(chatOut, /nothing open/);
  assert.deepEqual(chatTables.at(-1)!.map((r) => r.conversation_id), (chatTs as unknown as { recently_sealed: { conversation_id: string }[] }).recently_sealed.map((r) => r.conversation_id));

  // backfill --dry-run
  const dry = await json<BackfillSummary>(['backfill', 'keywords', '--dry-run']);
  assert.deepEqual([dry.records, dry.conversations, dry.selected, dry.not_qualifying, dry.already_completed, dry.not_loaded], [8, 8, 4, 4, 0, 0]);
  const bfOut = await ok(['backfill', 'keywords', '--dry-run']);
  const bf = Object.fromEntries(tables(bfOut)[0]!.map((r) => [r.what, Number(r.count)]));
  assert.deepEqual(bf, {
    'offsets scanned': dry.offsets, 'records read': dry.records, 'filtered out': dry.filtered_out, duplicates: dry.duplicates, undecodable: dry.undecodable,
    'past the limit (next run)': dry.past_limit, 'conversations considered': dry.conversations, 'not loaded in PostgreSQL': dry.not_loaded,
    'already completed': dry.already_completed, 'of which events owed': dry.events_owed, 'not qualifying': dry.not_qualifying, 'would run': dry.selected,
    'of which claimed elsewhere': dry.claimed_elsewhere,
  });
  assert.match(bfOut, new RegExp(`group ${dry.group_id}`));
  // A filtered dry run: one chat (its partition only), and a time window.
  const dryChat = await json<BackfillSummary>(['backfill', 'keywords', '--dry-run', '--chat-id', `hist-c-${tag}`]);
  assert.equal(dryChat.selected, 2);
  assert.equal(dryChat.partitions.length, 1);
  assert.notEqual(dryChat.group_id, dry.group_id);
  const dryWindow = await json<BackfillSummary>(['backfill', 'keywords', '--dry-run', '--since', new Date(T0 + 24 * HOUR).toISOString(), '--until', new Date(T0 + 48 * HOUR).toISOString()]);
  assert.equal(dryWindow.selected, 2, 'hist-b: conversations of 3 and 4 messages');
  const dryLimit = await json<BackfillSummary>(['backfill', 'keywords', '--dry-run', '--limit', '2']);
  assert.deepEqual([dryLimit.selected, dryLimit.limit_reached], [2, true]);
  // Every record read is accounted for (issue 14, item 6), with and without a limit; the scan's
  // progress counts offsets (records and transaction markers) and says how many records they held.
  for (const x of [dry, dryChat, dryWindow, dryLimit]) {
    assert.equal(x.records, x.conversations + x.filtered_out + x.duplicates + x.undecodable + x.past_limit, JSON.stringify(x));
    assert.ok(x.offsets >= x.records, `offsets ${x.offsets} >= records ${x.records}`);
  }
  assert.equal(dry.past_limit, 0);
  assert.ok(dryLimit.past_limit > 0, 'the limit left records for the next run');
  const progressRun = await cli(['backfill', 'keywords', '--dry-run']);
  const lastScan = progressRun.stderr.trim().split('\n').filter((l) => l.includes(' scanning ')).at(-1)!;
  assert.match(lastScan, new RegExp(`scanning ${dry.offsets}/${dry.offsets} offsets 100%.*  ${dry.records} records, to run ${dry.selected}$`), lastScan);

  // backfill-all --dry-run
  const all = await json<{ passes: BackfillSummary[] }>(['backfill-all', '--dry-run']);
  const allRows = tables(await ok(['backfill-all', '--dry-run']))[0]!;
  assert.deepEqual(allRows.map((r) => [r.pass, r.version, r.considered, r['already completed'], r['not qualifying'], r['not loaded'], r['would run']]),
    all.passes.map((s) => [s.pass, String(s.version), String(s.conversations), String(s.already_completed), String(s.not_qualifying), String(s.not_loaded), String(s.selected)]));
  assert.equal(all.passes.find((s) => s.pass === 'keywords')!.selected, 4);
  assert.equal(all.passes.find((s) => s.pass === 'basic')!.selected, 0);

  // check-sealing and migrate --status
  const checked = await json<{ running: boolean; sealed_conversation_ids: string[]; partitions: unknown[] }>(['check-sealing']);
  assert.equal(checked.running, true);
  assert.equal(checked.partitions.length, cfg.topicPartitions);
  await json(['migrate', '--status']);
  // With no tracker (another APP_ID): the JSON commands still print JSON, and exit 3.
  for (const args of [['check-sealing'], ['force-seal', LIVE_CHAT], ['tracker-status'], ['tracker-status', '--chat-id', LIVE_CHAT]]) {
    const r = await cli([...args, '--json'], { APP_ID: `nobody-${tag}` });
    assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
    const v = JSON.parse(r.stdout) as { running: boolean };
    assert.equal(v.running, false, `${args.join(' ')} --json says running: false`);
    snakeCaseKeys(v, `chatstats ${args.join(' ')} --json (no tracker)`, jsonStyle);
  }
  assert.deepEqual(jsonStyle, [], 'every --json field name is snake_case');
});

test('unreachable Kafka or PostgreSQL and invalid settings: non-zero exit and one clear line', async () => {
  const pg = await cli(['stats'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' });
  assert.equal(pg.code, 1);
  assert.match(pg.stderr, /^chatstats: cannot reach PostgreSQL at postgres@127\.0\.0\.1:1\/nowhere \(DATABASE_URL\): .*ECONNREFUSED/m);
  const pgBackfill = await cli(['backfill', 'keywords', '--dry-run'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' });
  assert.equal(pgBackfill.code, 1);
  assert.match(pgBackfill.stderr, /cannot reach PostgreSQL/);
  const started = Date.now();
  const k = await cli(['backfill', 'keywords', '--dry-run'], { KAFKA_BROKERS: '127.0.0.1:1' });
  assert.equal(k.code, 1);
  assert.match(k.stderr, /^chatstats: cannot reach Kafka at 127\.0\.0\.1:1 \(KAFKA_BROKERS\)/m);
  assert.ok(Date.now() - started < 15_000, 'fails within seconds');
  const topic = await cli(['backfill', 'keywords', '--dry-run'], { TOPIC_PREFIX: `absent-${tag}.` });
  assert.equal(topic.code, 1);
  assert.match(topic.stderr, /conversation\.sealed.* do(es)? not exist/);
  // The topics hold Avro: without the registry a backfill stops rather than pass over every record.
  const noRegistry = await cli(['backfill', 'keywords', '--dry-run'], { SCHEMA_REGISTRY_URL: '' });
  assert.equal(noRegistry.code, 1);
  assert.match(noRegistry.stderr, /holds Avro records .*set SCHEMA_REGISTRY_URL/);
  const rate = await cli(['backfill', 'keywords', '--dry-run'], { BACKFILL_RATE: 'fast' });
  assert.equal(rate.code, 2);
  assert.match(rate.stderr, /invalid configuration: BACKFILL_RATE/);
  const pass = await cli(['backfill', 'nope', '--dry-run']);
  assert.equal(pass.code, 1);
  assert.match(pass.stderr, /no analysis pass named "nope"/);
  const disabled = await cli(['backfill', 'keywords', '--dry-run'], { PASSES_FILE: liveFile });
  assert.equal(disabled.code, 1);
  assert.match(disabled.stderr, /is disabled/);
});
