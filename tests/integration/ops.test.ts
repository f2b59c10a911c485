// Operations (SPEC section 8) on the real broker, with `chatstats run tracker` child processes:
//   (a) /readyz answers 503 while a SIGKILLed tracker's stores are wiped and restored from the
//       changelog on restart, then 200, and the restored state is all there;
//   (b) /metrics after the IRC replay exposes the tracker's, the runtime's and the process metrics
//       (under their stock names) with the values data/irc/README.md states, every labelled counter
//       from the start (at 0), and task states as tracker-status names them; the logs are JSON
//       lines with a component;
//   (c) SIGTERM in the middle of a backlog: exit code 0 within seconds, and after a restart every
//       conversation is sealed exactly once, as the pure rules predict.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import type { Kafka } from 'kafkajs';
import { isolatedEnv, configOf, testKafka, spawnRole, waitFor, sleep, ROOT, IRC_SAMPLE, REGISTRY_URL, type ChildRole } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { generateBacklog, expectedOutcome, conversationKey, lateKey } from '../support/backlog';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import { rulesConfigFrom } from '../../src/sessionization/rules';
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import { IRC_EXPECTED as IRC } from '../support/irc-expected';

process.env.LOG_LEVEL ??= 'warn';

const kafka = testKafka();
const children: ChildRole[] = [];
const cleanups: (() => Promise<void>)[] = [];

after(async () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => Promise.race([c.exited, sleep(5000)])));
  for (const f of cleanups) await f().catch(() => undefined);
});

// --- helpers ---------------------------------------------------------------------------------

/** A port free right now (the child binds it a moment later: METRICS_PORT is then known). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

interface Env extends Record<string, string> { METRICS_PORT: string; STATE_DIR: string; TOPIC_PREFIX: string }

async function opsEnv(name: string, extra: Record<string, string> = {}): Promise<Env> {
  const env = isolatedEnv(name, {
    SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms', LOG_LEVEL: 'info', LOG_FORMAT: 'json',
    METRICS_PORT: String(await freePort()), ...extra,
  }) as Env;
  cleanups.push(async () => {
    await rm(env.STATE_DIR, { recursive: true, force: true });
    const admin = kafka.admin();
    await admin.connect();
    try {
      const mine = (await admin.listTopics()).filter((t) => t.startsWith(env.TOPIC_PREFIX));
      if (mine.length) await admin.deleteTopics({ topics: mine });
    } finally { await admin.disconnect(); }
  });
  return env;
}

/** A tracker child whose standard error is kept apart (for the log format check). */
function spawnTracker(env: Env): ChildRole & { stderr: () => string } {
  const child = spawnRole('tracker', env);
  let err = '';
  child.proc.stderr!.on('data', (d) => { err += d; });
  children.push(child);
  return Object.assign(child, { stderr: () => err });
}

interface LogLine { msg?: string; level?: number; component?: string; [k: string]: unknown }
function logLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try { out.push(JSON.parse(line) as LogLine); } catch { /* a line cut by SIGKILL */ }
  }
  return out;
}
const restoresOf = (child: ChildRole) => logLines(child.output()).filter((l) => l.msg === 'task restored')
  .map((l) => ({ partition: Number(l.partition), wiped: Boolean(l.wiped), records: Number(l.records), ms: Number(l.ms), time: Number(l.time) }));
const tail = (child: ChildRole, n = 15) => child.output().trim().split('\n').slice(-n).map((l) => `    ${l.slice(0, 400)}`).join('\n');

type Sample = { labels: Record<string, string>; value: number };
type Metrics = Map<string, Sample[]>;

/** Parses the Prometheus text format (what /metrics serves). */
function parseMetrics(text: string): Metrics {
  const out: Metrics = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    const list = out.get(m[1]!) ?? [];
    list.push({ labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
    out.set(m[1]!, list);
  }
  return out;
}
const sum = (m: Metrics, name: string, where: Record<string, string> = {}) =>
  (m.get(name) ?? []).filter((s) => Object.entries(where).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
const byLabel = (m: Metrics, name: string, label: string) =>
  Object.fromEntries((m.get(name) ?? []).map((s) => [s.labels[label] ?? '', s.value]));

async function http(port: string, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(3000) });
  return { status: res.status, body: await res.text() };
}
const metricsOf = async (env: Env) => parseMetrics((await http(env.METRICS_PORT, '/metrics')).body);

async function committed(groupId: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const res = await admin.fetchOffsets({ groupId, topics: [topic] });
    return res[0]!.partitions.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
  } finally { await admin.disconnect(); }
}

/**
 * Removes a SIGKILLed tracker from its group at once, as its session expiring would after 30 s
 * (the dead process has no say either way); the restart then joins without waiting.
 */
async function evict(kafkaClient: Kafka, groupId: string): Promise<number> {
  const admin = kafkaClient.admin();
  await admin.connect();
  let members: { memberId: string }[];
  try { members = (await admin.describeGroups([groupId])).groups[0]?.members ?? []; } finally { await admin.disconnect(); }
  if (members.length === 0) return 0;
  const sym = Object.getOwnPropertySymbols(kafkaClient).find((s) => s.description === 'private:Kafka:createCluster');
  if (!sym) throw new Error('kafkajs internals changed: cannot create a cluster');
  const cluster = (kafkaClient as any)[sym]({}); // eslint-disable-line @typescript-eslint/no-explicit-any
  await cluster.connect();
  try {
    const coordinator = await cluster.findGroupCoordinator({ groupId });
    for (const m of members) await coordinator.leaveGroup({ groupId, memberId: m.memberId });
  } finally { await cluster.disconnect(); }
  return members.length;
}

async function produce(env: Env, messages: ChatMessage[]): Promise<number> {
  const cfg = configOf(env);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics: topicNames(cfg) });
  const producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  try {
    const sends = [];
    for (let i = 0; i < messages.length; i += 2000) sends.push(producer.send(messages.slice(i, i + 2000)));
    return (await Promise.all(sends)).reduce((s, r) => s + r.sent, 0);
  } finally { await producer.disconnect(); }
}

async function provision(env: Env): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, configOf(env));
    // A loaded KRaft broker may still answer "does not host this topic-partition" for a moment.
    await waitFor('the input topic served', 30_000, async () => {
      const offsets = await admin.fetchTopicOffsets(topicNames(configOf(env)).messages);
      return offsets.length === configOf(env).topicPartitions ? true : undefined;
    }, 100);
  } finally { await admin.disconnect(); }
}

const exitedWithin = (child: ChildRole, ms: number) => Promise.race([child.exited.then(() => true), sleep(ms).then(() => false)]);

// --- (a) readiness across a restore ----------------------------------------------------------

const CHATS = Number(process.env.OPS_READY_CHATS ?? 20_000);

test('/readyz is 503 while a SIGKILLed tracker restores its stores from the changelog, then 200', { timeout: 240_000 }, async () => {
  const env = await opsEnv('ops-ready', { CONVERSATION_GAP: '24h' });
  const cfg = configOf(env);
  const groupId = `${cfg.appId}-tracker`;
  await provision(env);
  // One open conversation per chat: event times a few minutes ago, the gap a day.
  const now = Date.now();
  const messages: ChatMessage[] = Array.from({ length: CHATS }, (_, i) => ({
    message_id: `ready-${i}`, chat_id: `ops:chat-${i}`, sender_id: `ops:user-${i % 97}`, sent_at: now - 300_000 + (i % 1000),
    text: `hello from chat ${i}, a message long enough to give the store some weight`, chat_type: 'group', is_from_me: false,
    reply_to_message_id: null, account_id: 'acct-1',
  }));
  assert.equal(await produce(env, messages), CHATS);

  const first = spawnTracker(env);
  const t0 = Date.now();
  await waitFor(`${CHATS} records committed and open`, 120_000, async () => {
    if (first.proc.exitCode !== null) throw new Error(`tracker exited with ${first.proc.exitCode}:\n${tail(first)}`);
    if (await committed(groupId, topicNames(cfg).messages) < CHATS) return undefined;
    return sum(await metricsOf(env), 'chatstats_open_conversations') === CHATS ? true : undefined;
  }, 250);
  const loaded = Date.now() - t0;
  first.kill('SIGKILL');
  await first.exited;
  const evicted = await evict(kafka, groupId);

  // Restart and watch /readyz (and which tasks are restoring) from the moment the port answers.
  const second = spawnTracker(env);
  const spawned = Date.now();
  const seen: { at: number; status: number; restoring: number | null }[] = []; // at: epoch ms, as the logs' `time`
  let listeningAt: number | null = null;
  let firstReadyAt: number | null = null;
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (second.proc.exitCode !== null) throw new Error(`tracker exited with ${second.proc.exitCode}:\n${tail(second)}`);
    let status: number;
    try { status = (await http(env.METRICS_PORT, '/readyz')).status; } catch { await sleep(10); continue; } // not listening yet
    listeningAt ??= Date.now();
    const at = Date.now();
    let restoring: number | null = null;
    if (status !== 200 && seen.length % 4 === 0) {
      try {
        const s = await http(env.METRICS_PORT, '/v1/tracker/status');
        if (s.status === 200) restoring = (JSON.parse(s.body) as { partitions: { state: string }[] }).partitions.filter((p) => p.state === 'restoring').length;
      } catch { /* routes appear once the role has started */ }
    }
    seen.push({ at, status, restoring });
    if (status === 200) {
      firstReadyAt ??= Date.now();
      if (seen.filter((s) => s.status === 200).length >= 5) break;
    }
    await sleep(20);
  }
  assert.ok(listeningAt !== null && firstReadyAt !== null, `ready within 120 s (${seen.length} polls):\n${tail(second)}`);
  const firstOk = seen.findIndex((s) => s.status === 200);
  const before = seen.slice(0, firstOk);
  const notReady = before.filter((s) => s.status === 503).length;
  const whileRestoring = before.filter((s) => s.status === 503 && (s.restoring ?? 0) > 0).length;
  assert.ok(notReady >= 1, 'observed 503 before ready');
  assert.ok(before.every((s) => s.status === 503), `only 503 before ready: ${[...new Set(before.map((s) => s.status))]}`);
  assert.ok(seen.slice(firstOk).every((s) => s.status === 200), 'ready stays ready');
  assert.equal((await http(env.METRICS_PORT, '/healthz')).status, 200);

  // Every task was wiped (no checkpoint after SIGKILL) and restored the whole changelog.
  const restores = restoresOf(second);
  assert.equal(restores.length, cfg.topicPartitions, 'every partition restored');
  assert.ok(restores.every((r) => r.wiped), 'wiped after the unclean stop');
  const records = restores.reduce((s, r) => s + r.records, 0);
  assert.ok(records >= CHATS, `restored ${records} changelog records for ${CHATS} chats`);
  const m = await metricsOf(env);
  assert.equal(sum(m, 'chatstats_open_conversations'), CHATS, 'every open conversation is back');
  assert.equal(sum(m, 'chatstats_restore_records_total'), records);
  assert.equal(sum(m, 'chatstats_restore_duration_seconds_count'), cfg.topicPartitions);
  const restoreMs = Math.max(...restores.map((r) => r.ms));
  // Ready only once every store is restored; not ready while the restores ran.
  const assignedAt = Number(logLines(second.output()).find((l) => l.msg === 'partitions assigned')?.time);
  const restoredAt = Math.max(...restores.map((r) => r.time));
  assert.ok(firstReadyAt! >= restoredAt, `ready (${firstReadyAt}) after the last store restored (${restoredAt})`);
  const duringRestore = before.filter((s) => s.at >= assignedAt && s.at <= restoredAt);
  if (restoredAt - assignedAt >= 500) assert.ok(duringRestore.length >= 1, `polled during the ${restoredAt - assignedAt} ms of restores`);
  assert.ok(duringRestore.every((s) => s.status === 503));
  console.log(`[ops-ready] ${CHATS} open conversations loaded in ${loaded} ms; SIGKILL, ${evicted} member(s) evicted; restart: listening after ${listeningAt! - spawned} ms, `
    + `ready after ${firstReadyAt! - spawned} ms; ${notReady} polls answered 503, ${duringRestore.length} of them in the ${restoredAt - assignedAt} ms from assignment to the last restore `
    + `(${whileRestoring} sampled while /v1/tracker/status showed restoring tasks); `
    + `restored ${records} records (wiped), slowest partition ${restoreMs} ms, restore_duration_seconds_sum ${sum(m, 'chatstats_restore_duration_seconds_sum').toFixed(3)}; `
    + `store_size_bytes ${sum(m, 'chatstats_store_size_bytes')}`);

  second.kill('SIGTERM');
  assert.ok(await exitedWithin(second, 15_000), 'stops on SIGTERM');
});

// --- (b) /metrics after the IRC replay, and the log format -----------------------------------

test(`/metrics after the IRC replay: ${IRC.conversations} conversations, ${IRC.late} late, caught up; JSON logs with a component`, { timeout: 240_000 }, async () => {
  const env = await opsEnv('ops-irc');
  const cfg = configOf(env);
  // The CLI, as an operator would: `chatstats produce FILE`.
  const produced = await new Promise<{ sent: number; invalid: number }>((resolve, reject) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'produce', IRC_SAMPLE, '--json', '--no-progress'],
      { env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => err ? reject(new Error(`produce: ${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as { sent: number; invalid: number }));
  });
  assert.equal(produced.sent, 14_018);
  assert.equal(produced.invalid, 0);

  const tracker = spawnTracker(env);
  const t0 = Date.now();
  // The first answer of /metrics: the labelled counters are there at 0 before they count anything
  // (rate() and alerts see 0 rather than no series, also after a restart).
  const first = await waitFor('/metrics', 60_000, async () => {
    if (tracker.proc.exitCode !== null) throw new Error(`tracker exited with ${tracker.proc.exitCode}:\n${tail(tracker)}`);
    const m = await metricsOf(env).catch(() => undefined);
    return m && m.has('chatstats_tracker_messages_total') ? m : undefined;
  }, 50);
  assert.deepEqual(Object.keys(byLabel(first, 'chatstats_tracker_messages_total', 'result')).sort(), ['accepted', 'dlq', 'duplicate', 'late']);
  assert.deepEqual(Object.keys(byLabel(first, 'chatstats_conversations_sealed_total', 'reason')).sort(), ['FORCED', 'GAP_TIMEOUT', 'MAX_SIZE', 'NEXT_MESSAGE']);
  assert.deepEqual(byLabel(first, 'chatstats_tracker_commands_total', 'type'), { FORCE_SEAL: 0, CHECK_SEALING: 0 });
  const m = await waitFor(`${IRC.conversations} sealed, ${IRC.late} late, nothing open, no lag`, 150_000, async () => {
    if (tracker.proc.exitCode !== null) throw new Error(`tracker exited with ${tracker.proc.exitCode}:\n${tail(tracker)}`);
    const m = await metricsOf(env);
    const lags = m.get('chatstats_consumer_lag') ?? [];
    const done = sum(m, 'chatstats_conversations_sealed_total') >= IRC.conversations && sum(m, 'chatstats_tracker_late_total') >= IRC.late
      && sum(m, 'chatstats_open_conversations') === 0 && lags.length === cfg.topicPartitions && lags.every((s) => s.value === 0);
    return done ? m : undefined;
  }, 500);
  const elapsed = Date.now() - t0;
  await sleep(1000); // a few more punctuations: nothing changes once done
  const again = await metricsOf(env);

  for (const x of [m, again]) {
    assert.equal(sum(x, 'chatstats_conversations_sealed_total'), IRC.conversations);
    assert.equal(sum(x, 'chatstats_tracker_late_total'), IRC.late);
    assert.equal(sum(x, 'chatstats_open_conversations'), 0);
  }
  const results = byLabel(again, 'chatstats_tracker_messages_total', 'result');
  assert.equal(sum(again, 'chatstats_tracker_messages_total'), IRC.input, `every input record counted once: ${JSON.stringify(results)}`);
  assert.equal(results.late, IRC.late);
  assert.equal(results.accepted, IRC.messages);
  assert.deepEqual([results.duplicate, results.dlq], [0, 0]);
  const reasons = byLabel(again, 'chatstats_conversations_sealed_total', 'reason');
  assert.deepEqual(reasons, { ...IRC.reasons, FORCED: 0, MAX_SIZE: 0 });
  assert.equal(sum(again, 'chatstats_tracker_dlq_total'), 0);
  assert.equal(sum(again, 'chatstats_seal_delay_seconds_count'), IRC.reasons.GAP_TIMEOUT, 'one seal delay per wall-clock seal');
  // History seals as soon as the partition catches up: delays count from then, not from 2013.
  assert.ok(sum(again, 'chatstats_seal_delay_seconds_sum') < IRC.reasons.GAP_TIMEOUT * 5, `seal delay sum ${sum(again, 'chatstats_seal_delay_seconds_sum')} s`);
  assert.equal((again.get('chatstats_consumer_lag') ?? []).length, cfg.topicPartitions);
  assert.ok((again.get('chatstats_consumer_lag') ?? []).every((s) => s.value === 0 && s.labels.topic === topicNames(cfg).messages && s.labels.group === `${cfg.appId}-tracker`));
  // Task states as tracker-status names them.
  assert.deepEqual(byLabel(again, 'chatstats_tasks', 'state'), { restoring: 0, running: cfg.topicPartitions });
  assert.ok((again.get('chatstats_partition_caught_up') ?? []).every((s) => s.value === 1));
  assert.equal(sum(again, 'chatstats_restore_duration_seconds_count'), cfg.topicPartitions, 'one restore per task');
  assert.ok(sum(again, 'chatstats_punctuation_duration_seconds_count') > 0);
  const stores = again.get('chatstats_store_size_bytes') ?? [];
  assert.equal(stores.length, cfg.topicPartitions);
  // Live data in SST files plus memtables: every partition of the IRC replay holds some state.
  assert.ok(stores.every((s) => Number.isFinite(s.value) && s.value > 0), `store sizes ${stores.map((s) => s.value)}`);
  // Node's default metrics under their stock names, as stock Node.js dashboards query them.
  const processMetrics = [...again.keys()].filter((n) => n.startsWith('process_') || n.startsWith('nodejs_'));
  const rss = processMetrics.find((n) => n === 'process_resident_memory_bytes');
  const cpu = processMetrics.find((n) => n === 'process_cpu_seconds_total');
  assert.ok(rss && sum(again, rss) > 0, `resident memory among ${processMetrics.slice(0, 5).join(', ')}`);
  assert.ok(cpu && sum(again, cpu) > 0);
  assert.ok(processMetrics.includes('nodejs_eventloop_lag_p99_seconds'));
  assert.deepEqual([...again.keys()].filter((n) => /^chatstats_(process|nodejs)_/.test(n)), [], 'no chatstats_ prefix on the default metrics');
  const h = await http(env.METRICS_PORT, '/metrics');
  assert.match(h.body, /^# TYPE chatstats_seal_delay_seconds histogram$/m);
  assert.equal((await http(env.METRICS_PORT, '/healthz')).status, 200);
  assert.equal((await http(env.METRICS_PORT, '/readyz')).status, 200);

  // Logs: standard error is JSON lines, each with a component (LOG_FORMAT=json).
  tracker.kill('SIGTERM');
  const code = await tracker.exited;
  assert.equal(code, 0);
  const lines = tracker.stderr().split('\n').filter((l) => l.trim() !== '');
  assert.ok(lines.length > 0, 'the tracker logged');
  const bad = lines.filter((l) => { try { return typeof (JSON.parse(l) as LogLine).component !== 'string'; } catch { return true; } });
  assert.deepEqual(bad.slice(0, 5), [], 'every stderr line is JSON with a component');
  const components = new Set(lines.map((l) => (JSON.parse(l) as LogLine).component));
  assert.ok(components.has('ConversationTracker') && components.has('LiveSync'), [...components].join(', '));
  console.log(`[ops-irc] caught up and sealed in ${elapsed} ms; messages by result ${JSON.stringify(results)}; sealed by reason ${JSON.stringify(reasons)}; `
    + `late ${sum(again, 'chatstats_tracker_late_total')}; store sizes ${stores.map((s) => `p${s.labels.partition}=${s.value}`).join(' ')}; `
    + `restore ${sum(again, 'chatstats_restore_duration_seconds_sum').toFixed(3)} s over ${sum(again, 'chatstats_restore_duration_seconds_count')} tasks; `
    + `${sum(again, 'chatstats_punctuation_duration_seconds_count')} punctuations, mean ${(1000 * sum(again, 'chatstats_punctuation_duration_seconds_sum') / sum(again, 'chatstats_punctuation_duration_seconds_count')).toFixed(2)} ms; `
    + `seal delay sum ${sum(again, 'chatstats_seal_delay_seconds_sum').toFixed(0)} s over ${sum(again, 'chatstats_seal_delay_seconds_count')}; `
    + `${rss} ${(sum(again, rss!) / 1e6).toFixed(0)} MB; ${lines.length} log lines from components ${[...components].join(', ')}`);
});

// --- (c) SIGTERM mid-run ---------------------------------------------------------------------

const BACKLOG = Number(process.env.OPS_SIGTERM_MESSAGES ?? 60_000);

test('SIGTERM in the middle of a backlog: exit 0 within seconds; after a restart every conversation exactly once', { timeout: 300_000 }, async () => {
  // Small fetches, so the signal lands while transactions are still being committed.
  const env = await opsEnv('ops-sigterm', { FETCH_MAX_BYTES_PER_PARTITION: '256KiB' });
  const cfg = configOf(env);
  const topics = topicNames(cfg);
  const groupId = `${cfg.appId}-tracker`;
  await provision(env);
  const backlog = generateBacklog({ seed: 7_2024, chats: 300, messages: BACKLOG, gapMs: cfg.gapMs });
  const expected = expectedOutcome(backlog.messages, rulesConfigFrom(cfg));
  const total = await produce(env, backlog.messages);
  assert.equal(total, backlog.messages.length);

  const first = spawnTracker(env);
  const spawned = Date.now();
  // During processing: as soon as the tracker counts processed records (its first batches are
  // in flight; they complete or abort as a whole, the rest of the backlog waits for the restart).
  const processing = await waitFor('the tracker processing', 120_000, async () => {
    if (first.proc.exitCode !== null) throw new Error(`tracker exited with ${first.proc.exitCode}:\n${tail(first)}`);
    const n = sum(await metricsOf(env).catch(() => new Map() as Metrics), 'chatstats_tracker_messages_total');
    return n > 0 ? n : undefined;
  }, 25);
  const atSignal = await committed(groupId, topics.messages);
  const signalled = Date.now();
  first.kill('SIGTERM');
  const stopped = await exitedWithin(first, 20_000);
  const exitMs = Date.now() - signalled;
  assert.ok(stopped, `exited within 20 s of SIGTERM:\n${tail(first)}`);
  const code = await first.exited;
  const atExit = await committed(groupId, topics.messages);
  const closed = logLines(first.output()).filter((l) => l.msg === 'task closed');
  console.log(`[ops-sigterm] ${total} records (${backlog.stats.duplicateDeliveries} duplicate deliveries) in 300 chats; SIGTERM ${signalled - spawned} ms after start `
    + `with ${processing} records processed and ${atSignal} committed; exit code ${code} after ${exitMs} ms with ${atExit} committed; ${closed.filter((l) => l.clean).length}/${closed.length} tasks closed cleanly`);
  assert.equal(code, 0, `exit code after SIGTERM:\n${tail(first)}`);
  assert.ok(exitMs < 10_000, `SIGTERM to exit took ${exitMs} ms`);
  assert.ok(atExit < total, `stopped mid-way (${atExit} of ${total} committed)`);
  assert.equal(closed.length, cfg.topicPartitions);
  assert.ok(closed.every((l) => l.clean), 'every task checkpointed its store');

  const second = spawnTracker(env);
  const restarted = Date.now();
  await waitFor('the whole backlog committed', 180_000, async () => {
    if (second.proc.exitCode !== null) throw new Error(`tracker exited with ${second.proc.exitCode}:\n${tail(second)}`);
    return (await committed(groupId, topics.messages)) >= total ? true : undefined;
  }, 250);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  const outputs = async () => ({
    sealed: await Promise.all((await readTopic(kafka, topics.sealed)).map((r) => codec.decode('ConversationSealed', r.value))) as ConversationSealed[],
    late: await Promise.all((await readTopic(kafka, topics.late)).map((r) => codec.decode('LateMessage', r.value))) as LateMessage[],
    dlq: (await readTopic(kafka, topics.messagesDlq)).length,
  });
  await waitFor(`${expected.conversations.length} conversations sealed`, 120_000, async () => {
    const o = await outputs();
    return o.sealed.length >= expected.conversations.length && o.late.length >= expected.late.length ? true : undefined;
  }, 1000);
  await sleep(1500); // nothing more may arrive
  const got = await outputs();
  const doneMs = Date.now() - restarted;

  const ids = new Map<string, number>();
  for (const c of got.sealed) ids.set(c.conversation_id, (ids.get(c.conversation_id) ?? 0) + 1);
  const doubled = [...ids].filter(([, n]) => n > 1).map(([id]) => id);
  assert.deepEqual(doubled.slice(0, 5), [], `${doubled.length} conversations sealed more than once`);
  const want = new Set(expected.conversations.map(conversationKey));
  const have = new Set(got.sealed.map(conversationKey));
  const missing = [...want].filter((k) => !have.has(k));
  const extra = [...have].filter((k) => !want.has(k));
  assert.equal(missing.length + extra.length, 0, `vs the rules: ${missing.length} missing, ${extra.length} unexpected, e.g. ${(missing[0] ?? extra[0] ?? '').slice(0, 300)}`);
  assert.equal(got.sealed.length, expected.conversations.length);
  assert.deepEqual(got.late.map(lateKey).sort(), expected.late.map(lateKey).sort(), 'late messages as the rules say');
  assert.equal(got.dlq, 0);
  const placed = got.sealed.reduce((s, c) => s + c.message_count, 0) + got.late.length;
  assert.equal(placed + expected.duplicates, total, 'every record in one conversation or the late topic, duplicates aside');
  // The restart kept the checkpointed stores and restored only the changelog tail.
  const restores = restoresOf(second);
  assert.equal(restores.length, cfg.topicPartitions);
  assert.ok(restores.every((r) => !r.wiped), 'no store wiped after the clean stop');
  console.log(`[ops-sigterm] restart: ${restores.reduce((s, r) => s + r.records, 0)} changelog records restored (no wipe), everything sealed after ${doneMs} ms: `
    + `${got.sealed.length} conversations ${JSON.stringify(expected.reasons)}, ${got.late.length} late, ${expected.duplicates} duplicates, each conversation once`);

  second.kill('SIGTERM');
  assert.equal(await second.exited, 0);
});
