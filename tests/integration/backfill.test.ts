// Backfill by replaying conversation.sealed, end to end on the real broker, registry and
// PostgreSQL: the IRC sample goes through tracker, ETL and analysis with two passes disabled; the
// passes are then enabled (a new passes file) and backfilled with the `chatstats` command.
// - keywords: `--dry-run` predicts a count, the real backfill runs exactly that many, coverage
//   (from `stats --json`) goes from 0 % to 100 % of the qualifying conversations, and a second
//   backfill finds nothing left.
// - sentiment: a slow backfill (low --rate) is killed with SIGKILL half-way and started again; it
//   resumes from its committed position and finishes without running any conversation twice
//   (one completed row and one analysis.completed event per conversation; the runs of the two
//   invocations add up to the prediction exactly).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { randomBytes } from 'node:crypto';
import { Client, type Pool } from 'pg';
import { isolatedEnv, configOf, testKafka, waitFor, IRC_SAMPLE, REGISTRY_URL, ROOT, sleep } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { deleteTopics } from '../fixtures/kafka';
import { startApp, type App } from '../../src/app';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec, RECORD_KINDS, SchemaRegistryClient } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import { parseChatMessageJson } from '../../src/records/validate';
import { createPool } from '../../src/db/pool';
import { GroupOffsets } from '../../src/backfill/group-offsets';
import type { BackfillSummary } from '../../src/backfill/backfill';
import type { Stats } from '../../src/backfill/coverage';

process.env.LOG_LEVEL ??= 'warn';

const ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = `chatstats_test_backfill_${randomBytes(4).toString('hex')}`;
const DB_URL = (() => { const u = new URL(ADMIN_URL); u.pathname = `/${DB}`; return u.toString(); })();

const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-backfill-'));
const allPasses = JSON.parse(readFileSync(path.join(ROOT, 'config/passes.json'), 'utf8')) as { passes: { name: string; enabled: boolean }[] };
const DISABLED = ['keywords', 'sentiment'];
const disabledFile = path.join(dir, 'passes-live.json');
const enabledFile = path.join(dir, 'passes-enabled.json');
writeFileSync(disabledFile, JSON.stringify({ passes: allPasses.passes.map((p) => ({ ...p, enabled: DISABLED.includes(p.name) ? false : p.enabled })) }));
writeFileSync(enabledFile, JSON.stringify(allPasses));

const env = isolatedEnv('backfill', { SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms', DATABASE_URL: DB_URL, PASSES_FILE: disabledFile });
const cfg = configOf(env);
const topics = topicNames(cfg);
const kafka = testKafka();
const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
let pool: Pool;
let app: App | null = null;
const children = new Set<ReturnType<typeof spawn>>();

async function admin(sql: string): Promise<void> {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try { await c.query(sql); } finally { await c.end(); }
}

interface CliResult { code: number | null; stdout: string; stderr: string }

/** Runs `chatstats ...args` with the enabled passes file. */
function cli(args: string[], timeoutMs = 120_000, extra: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), ...args], {
      env: { ...process.env, ...env, PASSES_FILE: enabledFile, ...extra }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`chatstats ${args.join(' ')} took over ${timeoutMs}ms\n${stderr}`)); }, timeoutMs);
    proc.on('exit', (code) => { clearTimeout(timer); children.delete(proc); resolve({ code, stdout, stderr }); });
  });
}

async function cliJson<T>(args: string[], timeoutMs?: number): Promise<T> {
  const r = await cli([...args, '--json'], timeoutMs);
  assert.equal(r.code, 0, `chatstats ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

const coverage = (st: Stats, pass: string) => st.passes.find((p) => p.pass === pass)!;

/** analysis.completed events of a pass: how many, and over how many distinct conversations. */
async function completedEvents(pass: string): Promise<{ events: number; conversations: number }> {
  const recs = await readTopic(kafka, topics.completed);
  const ids: string[] = [];
  for (const r of recs) {
    const e = await codec.decode('AnalysisCompleted', r.value);
    if (e.pass_name === pass && e.status === 'completed') ids.push(e.conversation_id);
  }
  return { events: ids.length, conversations: new Set(ids).size };
}

before(async () => {
  await admin(`CREATE DATABASE ${DB}`);
  pool = createPool(DB_URL, { max: 4 });
  const a = kafka.admin();
  await a.connect();
  await ensureTopics(a, cfg);
  await a.disconnect();

  const producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  let batch = [];
  for await (const line of readline.createInterface({ input: createReadStream(IRC_SAMPLE) })) {
    if (!line.trim()) continue;
    batch.push(parseChatMessageJson(line));
    if (batch.length === 1000) { await producer.send(batch); batch = []; }
  }
  if (batch.length) await producer.send(batch);
  await producer.disconnect();

  app = await startApp(cfg, ['tracker', 'etl', 'analysis']);
  // The live passes (basic, language and the two LLM passes, skipped: no subscriptions) are
  // recorded for all 87 conversations.
  const live = allPasses.passes.filter((p) => p.enabled && !DISABLED.includes(p.name)).length;
  await waitFor('87 conversations loaded and analysed by the live passes', 180_000, async () => {
    const loaded = await count('SELECT count(*) AS n FROM conversations');
    const runs = await count(`SELECT count(*) AS n FROM analysis_runs WHERE status NOT IN ('pending', 'running')`);
    return loaded === 87 && runs === 87 * live ? true : undefined;
  }, 500);
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await app?.stop().catch(() => undefined);
  await pool?.end();
  await deleteTopics(kafka, env.TOPIC_PREFIX!).catch(() => undefined);
  const reg = new SchemaRegistryClient(REGISTRY_URL);
  for (const k of RECORD_KINDS) await reg.deleteSubject(codec.subjectFor(k), true).catch(() => undefined);
  await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => undefined);
});

test('the disabled passes were not run live', async () => {
  assert.equal(await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = ANY($1)`, [DISABLED]), 0);
  assert.equal(await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'basic' AND status = 'completed'`), 87);
});

test('backfill keywords: the dry run predicts the count, the backfill runs exactly that many, coverage 0 % → 100 %', async (t) => {
  const qualifying = await count('SELECT count(*) AS n FROM conversations WHERE message_count >= 3');
  assert.ok(qualifying > 0 && qualifying < 87, `some conversations qualify for keywords (>= 3 messages), not all: ${qualifying}`);

  const before = coverage(await cliJson<Stats>(['stats']), 'keywords');
  assert.deepEqual({ q: before.qualifying, c: before.completed, m: before.missing, pct: before.coverage_percent }, { q: qualifying, c: 0, m: qualifying, pct: 0 });

  const dry = await cliJson<BackfillSummary>(['backfill', 'keywords', '--dry-run']);
  assert.equal(dry.dry_run, true);
  assert.equal(dry.records, 87);
  assert.equal(dry.conversations, 87);
  assert.equal(dry.not_loaded, 0);
  assert.equal(dry.selected, qualifying, 'predicted count');
  assert.equal(dry.not_qualifying, 87 - qualifying);
  assert.equal(await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'keywords'`), 0, 'a dry run records nothing');

  const real = await cliJson<BackfillSummary>(['backfill', 'keywords', '--rate', 'unlimited']);
  assert.equal(real.dry_run, false);
  assert.equal(real.selected, dry.selected);
  assert.equal(real.completed + real.cached, dry.selected, 'runs exactly the predicted number');
  assert.equal(real.failed, 0);
  assert.equal(real.skips_recorded, 87 - qualifying);
  t.diagnostic(`keywords: ${qualifying} of 87 conversations qualify; dry run predicted ${dry.selected}; backfill ran ${real.completed + real.cached} in ${(real.elapsed_ms / 1000).toFixed(1)}s`);

  const afterStats = coverage(await cliJson<Stats>(['stats']), 'keywords');
  assert.equal(afterStats.completed, qualifying);
  assert.equal(afterStats.coverage_percent, 100);
  assert.equal(afterStats.missing, 0);
  assert.equal(await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'keywords' AND status = 'completed' AND attempts = 1`), qualifying);
  assert.deepEqual(await completedEvents('keywords'), { events: qualifying, conversations: qualifying });

  // Its position is at the end: nothing is read again, nothing left to run.
  const again = await cliJson<BackfillSummary>(['backfill', 'keywords']);
  assert.equal(again.resumed, true);
  assert.equal(again.records, 0);
  assert.equal(again.selected, 0);
  // Looking at everything again finds it all done.
  const full = await cliJson<BackfillSummary>(['backfill', 'keywords', '--dry-run', '--from-beginning']);
  assert.equal(full.already_completed, qualifying);
  assert.equal(full.selected, 0);
});

test('backfill sentiment killed half-way and started again finishes without running any conversation twice', async (t) => {
  const qualifying = await count('SELECT count(*) AS n FROM conversations WHERE message_count >= 2');
  const dry = await cliJson<BackfillSummary>(['backfill', 'sentiment', '--dry-run']);
  assert.equal(dry.selected, qualifying);
  const P = dry.selected;

  // A slow backfill (5 conversations/s), killed once about a third has completed.
  const rate = 5;
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'backfill', 'sentiment', '--rate', `${rate}/s`], {
    env: { ...process.env, ...env, PASSES_FILE: enabledFile, BACKFILL_PROGRESS_INTERVAL: '1s' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let progress = '';
  proc.stderr.on('data', (d) => { progress += d; });
  const exited = new Promise<NodeJS.Signals | null>((r) => proc.on('exit', (_code, sig) => r(sig)));
  const started = Date.now();
  await waitFor('a third of the sentiment runs', 60_000, async () =>
    (await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'sentiment' AND status = 'completed'`)) >= P / 3 ? true : undefined, 50);
  proc.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  children.delete(proc);
  const ranFor = (Date.now() - started) / 1000;
  const killedAt = await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'sentiment' AND status = 'completed'`);
  const inFlight = await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'sentiment' AND status = 'running'`);
  // Completed, event not marked delivered: killed between recording and sending (or marking).
  const owed = await count(`SELECT count(*) AS n FROM analysis_runs WHERE pass_name = 'sentiment' AND status = 'completed' AND emitted_at IS NULL`);
  t.diagnostic(`sentiment: predicted ${P}; killed after ${ranFor.toFixed(1)}s with ${killedAt} completed, ${inFlight} in flight, ${owed} event(s) owed`);
  assert.ok(killedAt < P, `killed before the end (${killedAt} of ${P})`);
  assert.match(progress, /sentiment v1 running .* conversations/, 'plain progress lines on a non-terminal stderr');
  // The rate limit held: at most one chunk ahead of rate × elapsed.
  assert.ok(killedAt <= rate * ranFor + rate, `${killedAt} runs in ${ranFor.toFixed(1)}s at ${rate}/s`);

  // The position was committed as it went.
  const offsets = new GroupOffsets(kafka, `${cfg.appId}-backfill-sentiment-v1`, topics.sealed);
  const committed = await offsets.fetch(Array.from({ length: cfg.topicPartitions }, (_, i) => i));
  await offsets.disconnect();
  assert.ok([...committed.values()].some((o) => o !== null && o > 0), `committed offsets: ${JSON.stringify([...committed])}`);

  const resumed = await cliJson<BackfillSummary>(['backfill', 'sentiment', '--rate', 'unlimited'], 150_000);
  assert.equal(resumed.resumed, true);
  assert.ok(resumed.records < 87, `resumed from the committed position: read ${resumed.records} of 87 records`);
  assert.equal(resumed.failed, 0);
  // Runs executed: those completed before the kill plus those of the second invocation = the prediction.
  assert.equal(killedAt + resumed.completed + resumed.cached, P, `${killedAt} before the kill + ${resumed.completed + resumed.cached} after = ${P}`);
  assert.equal(resumed.selected, P - killedAt);

  const rows = await pool.query<{ status: string; attempts: number; n: string }>(
    `SELECT status, attempts, count(*) AS n FROM analysis_runs WHERE pass_name = 'sentiment' GROUP BY 1, 2 ORDER BY 1, 2`);
  const completedRows = rows.rows.filter((r) => r.status === 'completed').reduce((n, r) => n + Number(r.n), 0);
  assert.equal(completedRows, P, 'one completed row per qualifying conversation');
  // Every run took one attempt, except one interrupted by the kill itself (started, never finished).
  const twice = rows.rows.filter((r) => r.status === 'completed' && r.attempts > 1).reduce((n, r) => n + Number(r.n), 0);
  assert.ok(twice <= inFlight, `${twice} runs with more than one attempt, ${inFlight} were in flight at the kill`);
  // One analysis.completed event per conversation; an event sent just before the kill but not yet
  // marked delivered is sent again (at least once), so at most `owed` more.
  const ev = await completedEvents('sentiment');
  assert.equal(ev.conversations, P, 'an analysis.completed event for every conversation');
  assert.ok(ev.events >= P && ev.events <= P + owed, `${ev.events} events for ${P} conversations, ${owed} owed at the kill`);
  assert.equal(resumed.events_owed, owed);
  t.diagnostic(`sentiment resumed: read ${resumed.records} records, ran ${resumed.completed + resumed.cached}, ${twice} run(s) with 2 attempts, ${ev.events} events`);

  const st = coverage(await cliJson<Stats>(['stats']), 'sentiment');
  assert.equal(st.coverage_percent, 100);
  assert.equal(st.completed, P);

  const all = await cliJson<{ passes: BackfillSummary[] }>(['backfill-all', '--dry-run']);
  assert.ok(all.passes.length >= 4);
  for (const s of all.passes) assert.equal(s.selected, 0, `${s.pass}: nothing left to run`);
  await sleep(0);
});
