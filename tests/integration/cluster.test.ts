// The system on a three-node Kafka cluster (KRaft, every node broker and controller; every topic
// replicated 3 with min.insync.replicas 2, the internal ones too), started by this file on ports
// and in a directory of its own (infra/cluster.sh), so the rest of the suite keeps its single
// broker. Four scenarios, each ending with a read_committed check of the outputs:
//
//   1. a backlog through the tracker (with ETL and analysis running) while the broker leading
//      most input partitions is SIGKILLed, and restarted 20 s later;
//   2. live traffic while the controller quorum's leader is SIGKILLed, and restarted;
//   3. three tracker instances in one group: a rolling restart (SIGTERM one at a time) under live
//      traffic, then a SIGKILL of one instance during a rebalance;
//   4. the ETL and analysis processes of scenario 1 went on through it and finished the work.
//
// The checks hold whatever the sessionization rules decide: every conversation is sealed once
// (no conversation_id twice, no message in two conversations), every input message is in a sealed
// conversation or the late topic, nothing in the DLQ; the chats of the generated backlog (all of
// whose messages are in the topic before the tracker reaches them, so wall-clock seals come only
// after) are exactly what the pure rules make of the input topic as it was written (a fresh
// replay); and PostgreSQL holds exactly the sealed conversations and their messages.
//
// Live traffic: new chats at a steady rate (chat_type `live`, gap 3 s), each a burst of 1-6
// messages with sent_at = now, then silence; the tracker seals each by wall clock about 3 s later.
// A watcher reads conversation.sealed read_committed as it is written and records when each
// conversation became visible. From that, for each failure: the time to the first new
// conversation_sealed (sealed after the failure) anywhere and on each partition the failure
// touched, and the seal delay (visible - (ended_at + gap)) of the live conversations whose
// deadline fell in the disruption, against the minutes before it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Admin, Kafka } from 'kafkajs';
import { ConfigResourceTypes } from 'kafkajs';
import type { Pool } from 'pg';
import { isolatedEnv, configOf, spawnRole, waitFor, sleep, createTestDatabase, REGISTRY_URL, ROOT, type ChildRole } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { generateBacklog, expectedOutcome, conversationKey, lateKey, Rng } from '../support/backlog';
import { LocalCluster, partitionLeaders, waitFullIsr } from '../support/cluster';
import { assignedOf, logLines, problemsOf, restoresOf } from '../support/role-logs';
import { ensureTopics, topicNames, topicSpecs, type TopicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import { partitionForKey } from '../../src/records/partitioner';
import { PartitionReader } from '../../src/runtime/partition-reader';
import { rulesConfigFrom } from '../../src/sessionization/rules';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { loadPasses, disqualification } from '../../src/analysis/passes';
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import type { Config } from '../../src/config';

process.env.LOG_LEVEL ??= 'warn';

const BACKLOG = Number(process.env.CLUSTER_BACKLOG ?? 30_000);
const BACKLOG_CHATS = Number(process.env.CLUSTER_BACKLOG_CHATS ?? 80);
const LIVE_RATE = Number(process.env.CLUSTER_LIVE_RATE ?? 12); // new live chats per second
const SEED = Number(process.env.CLUSTER_SEED ?? 20_261_201);
const LIVE_GAP_MS = 3000;

let cluster: LocalCluster;
let kafka: Kafka;
let admin: Admin;
const children: ChildRole[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
/** The figures of every scenario, printed together at the end. */
const figures: string[] = [];
let failed = false;

before(async () => {
  cluster = await LocalCluster.create('cluster-test');
  const t0 = Date.now();
  const out = await cluster.up();
  figures.push(`cluster: ${cluster.nodes} nodes on ${cluster.brokers.join(',')} up in ${Date.now() - t0} ms`);
  console.log(out.trim());
  kafka = cluster.kafka();
  admin = kafka.admin();
  await admin.connect();
});

after(async () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => Promise.race([c.exited, sleep(5000)])));
  for (const f of cleanups.reverse()) await f().catch(() => undefined);
  await admin?.disconnect().catch(() => undefined);
  if (process.env.CLUSTER_KEEP && failed) console.log(`cluster kept for inspection (CLUSTER_KEEP): ${cluster.home}, brokers ${cluster.brokers.join(',')}`);
  else await cluster?.down();
  console.log('\n=== cluster figures ===');
  for (const f of figures) console.log(f);
});

// --- a scenario's environment ---------------------------------------------------------------

interface Scenario {
  name: string;
  env: Record<string, string>;
  cfg: Config;
  topics: TopicNames;
  groupId: string;
  codec: RecordCodec;
  pool: Pool;
  partitions: number[];
  procs: Map<string, ChildRole>;
  timeline: string[];
  t0: number;
  /** Chats of the generated backlog (the rest is live traffic). */
  backlogChats: Set<string>;
  /** Input end offsets once the backlog was written (before live traffic). */
  backlogEnds: Map<number, number>;
}

function note(s: Scenario, line: string): void {
  const entry = `+${((Date.now() - s.t0) / 1000).toFixed(1)}s ${line}`;
  s.timeline.push(entry);
  console.log(`[${s.name}] ${entry}`);
}

async function scenario(name: string, extra: Record<string, string> = {}): Promise<Scenario> {
  const db = createTestDatabase(name.replace(/\W/g, ''));
  const env = isolatedEnv(name, {
    KAFKA_BROKERS: cluster.brokers.join(','), TOPIC_REPLICATION_FACTOR: '3', TOPIC_MIN_INSYNC_REPLICAS: '2',
    SCHEMA_REGISTRY_URL: REGISTRY_URL, DATABASE_URL: db.url, LOG_LEVEL: 'info',
    CONVERSATION_GAP: '90m', CONVERSATION_GAP_BY_TYPE: `live=${LIVE_GAP_MS}ms`, CONVERSATION_SETTLE: '2s',
    ...extra,
  });
  const cfg = configOf(env);
  const pool = createPool(db.url);
  cleanups.push(async () => { await pool.end(); await db.drop(); });
  cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
  await migrate(pool);
  const topics = topicNames(cfg);
  await ensureTopics(admin, cfg);
  await assertReplicated(cfg);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  await codec.init();
  return {
    name, env, cfg, topics, groupId: `${cfg.appId}-tracker`, codec, pool,
    partitions: Array.from({ length: cfg.topicPartitions }, (_, p) => p),
    procs: new Map(), timeline: [], t0: Date.now(), backlogChats: new Set(), backlogEnds: new Map(),
  };
}

/** Every topic of the scenario has 3 replicas and min.insync.replicas 2. */
async function assertReplicated(cfg: Config): Promise<void> {
  const names = topicSpecs(cfg).map((t) => t.topic);
  const md = await admin.fetchTopicMetadata({ topics: names });
  for (const t of md.topics) for (const p of t.partitions) assert.equal(p.replicas.length, 3, `${t.name}/${p.partitionId} replicas`);
  const described = await admin.describeConfigs({
    includeSynonyms: false, resources: names.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['min.insync.replicas'] })),
  });
  for (const r of described.resources) assert.equal(r.configEntries[0]?.configValue, '2', `${r.resourceName} min.insync.replicas`);
}

function spawn(s: Scenario, label: string, role: string, extra: Record<string, string> = {}): ChildRole {
  const child = spawnRole(role, s.env, extra);
  children.push(child);
  s.procs.set(label, child);
  return child;
}

async function stopClean(child: ChildRole, timeoutMs = 30_000): Promise<number | null> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return child.proc.exitCode;
  child.kill('SIGTERM');
  const code = await Promise.race([child.exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
  if (code === 'timeout') { child.kill('SIGKILL'); await child.exited; return null; }
  return code;
}

/** Writes a generated backlog (keyed by chat, in order) and notes where each partition ended. */
async function produceBacklog(s: Scenario, seed: number, messages: number, chats: number): Promise<number> {
  const backlog = generateBacklog({ seed, chats, messages, gapMs: s.cfg.gapMs });
  for (const c of backlog.chatIds) s.backlogChats.add(c);
  const producer = new ChatMessageProducer({ kafka, codec: s.codec, topic: s.topics.messages });
  await producer.connect();
  const t0 = Date.now();
  try {
    for (let i = 0; i < backlog.messages.length; i += 2000) await producer.send(backlog.messages.slice(i, i + 2000));
  } finally {
    await producer.disconnect();
  }
  const reader = new PartitionReader(kafka);
  try { s.backlogEnds = await reader.endOffsets(s.topics.messages, s.partitions); } finally { await reader.disconnect(); }
  note(s, `backlog: ${backlog.messages.length} records (${backlog.stats.duplicateDeliveries} duplicate deliveries) in ${chats} chats written in ${Date.now() - t0} ms (acks=all, replication 3)`);
  return backlog.messages.length;
}

// --- live traffic ------------------------------------------------------------------------------

class LiveTraffic {
  produced = 0;
  failed = 0;
  chats = 0;
  private readonly rng: Rng;
  private readonly producer: ChatMessageProducer;
  private timer: NodeJS.Timeout | null = null;
  private due: { at: number; chat: string; i: number }[] = [];
  /** Messages whose time has come, waiting for the send in flight to finish. */
  private outbox: ChatMessage[] = [];
  private sender: Promise<void> = Promise.resolve();
  private running = false;
  private owed = 0;
  private last = 0;
  private creating = true;

  constructor(private readonly s: Scenario, seed: number, private readonly rate = LIVE_RATE) {
    this.rng = new Rng(seed);
    // Retries that outlast a leader election (the broker is fenced after 9 s without heartbeats).
    this.producer = new ChatMessageProducer({
      kafka, codec: s.codec, topic: s.topics.messages,
      producerConfig: { retry: { retries: 12, initialRetryTime: 200, maxRetryTime: 5000 } },
    });
  }

  async start(): Promise<void> {
    await this.producer.connect();
    this.last = Date.now();
    this.running = true;
    this.timer = setInterval(() => this.tick(), 50);
    this.sender = this.send();
  }

  private tick(): void {
    const now = Date.now();
    if (this.creating) {
      this.owed += ((now - this.last) / 1000) * this.rate;
      while (this.owed >= 1) {
        this.owed -= 1;
        const chat = `live-${this.s.name}-${this.chats++}`;
        let at = now;
        for (let i = 0, n = this.rng.int(1, 6); i < n; i++) {
          this.due.push({ at, chat, i });
          at += Math.floor(this.rng.next() * 400);
        }
      }
    }
    this.last = now;
    const ready = this.due.filter((d) => d.at <= now).sort((a, b) => a.at - b.at);
    if (ready.length === 0) return;
    this.due = this.due.filter((d) => d.at > now);
    // sent_at is the moment the message is due: a stalled send makes it arrive late, as a phone's would.
    for (const d of ready) {
      this.outbox.push({
        message_id: `${d.chat}:${d.i}`, chat_id: d.chat, sender_id: `u${d.i % 2}`, sent_at: now, text: `live message ${d.i} of ${d.chat}`,
        chat_type: 'live', is_from_me: d.i % 2 === 0, reply_to_message_id: null, account_id: null,
      });
    }
  }

  /** One send in flight at a time, with whatever is due by then: a slow send does not pile up a queue. */
  private async send(): Promise<void> {
    while (this.running || this.outbox.length > 0) {
      if (this.outbox.length === 0) { await sleep(20); continue; }
      const batch = this.outbox;
      this.outbox = [];
      try { this.produced += (await this.producer.send(batch)).sent; } catch { this.failed += batch.length; }
    }
  }

  /** Stops opening chats, sends what the open ones still owe, and waits for every send. */
  async stop(): Promise<void> {
    this.creating = false;
    await waitFor('live traffic drained', 30_000, async () => (this.due.length === 0 ? true : undefined), 50);
    if (this.timer) clearInterval(this.timer);
    this.running = false;
    await this.sender;
    await this.producer.disconnect();
  }
}

// --- watching conversation.sealed --------------------------------------------------------------

interface Seen { c: ConversationSealed; partition: number; visibleAt: number }

/** Reads conversation.sealed read_committed as it grows (no consumer group: no coordinator to lose). */
class SealWatcher {
  readonly seen: Seen[] = [];
  errors = 0;
  private readonly pos = new Map<number, number>();
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly s: Scenario) {}

  start(): void { this.loop = this.run(); }

  async stop(): Promise<void> { this.stopped = true; await this.loop; }

  private async run(): Promise<void> {
    const topic = this.s.topics.sealed;
    let reader = new PartitionReader(kafka, 100, 5000);
    while (!this.stopped) {
      try {
        const ends = await reader.endOffsets(topic, this.s.partitions);
        for (const p of this.s.partitions) {
          const from = this.pos.get(p) ?? 0;
          const to = ends.get(p) ?? 0;
          if (to <= from) continue;
          await reader.read(topic, p, from, to, async (records) => {
            const at = Date.now();
            for (const r of records) {
              this.seen.push({ c: await this.s.codec.decode('ConversationSealed', r.value), partition: p, visibleAt: at });
              this.pos.set(p, Number(r.offset) + 1);
            }
          });
          this.pos.set(p, Math.max(this.pos.get(p) ?? 0, to));
        }
      } catch {
        // A dead leader or stale metadata: start over with a fresh connection.
        this.errors++;
        await reader.disconnect().catch(() => undefined);
        reader = new PartitionReader(kafka, 100, 5000);
      }
      await sleep(100);
    }
    await reader.disconnect().catch(() => undefined);
  }
}

// --- progress of the tracker group ------------------------------------------------------------

/** Polls the group's committed input offsets; notes when each partition passed its backlog. */
class Progress {
  committed = new Map<number, number>();
  /** When the committed offset of a partition first reached the end of its backlog. */
  readonly backlogDoneAt = new Map<number, number>();
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly s: Scenario) {}

  start(): void { this.loop = this.run(); }

  async stop(): Promise<void> { this.stopped = true; await this.loop; }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const res = await admin.fetchOffsets({ groupId: this.s.groupId, topics: [this.s.topics.messages] });
        const now = Date.now();
        for (const p of res[0]!.partitions) {
          const o = Number(p.offset);
          if (o < 0) continue;
          this.committed.set(p.partition, o);
          if (!this.backlogDoneAt.has(p.partition) && o >= (this.s.backlogEnds.get(p.partition) ?? 0)) this.backlogDoneAt.set(p.partition, now);
        }
      } catch { /* the coordinator is moving: next time */ }
      await sleep(200);
    }
  }

  /** Backlog records committed (each partition counted up to its backlog's end). */
  backlogCommitted(): number {
    let n = 0;
    for (const [p, end] of this.s.backlogEnds) n += Math.min(this.committed.get(p) ?? 0, end);
    return n;
  }
}

// --- figures ----------------------------------------------------------------------------------

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

const secs = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'n/a');

function delays(xs: number[]): string {
  if (xs.length === 0) return 'no live conversation';
  return `p50 ${secs(quantile(xs, 0.5))}, p99 ${secs(quantile(xs, 0.99))}, max ${secs(Math.max(...xs))} (n=${xs.length})`;
}

interface Disruption { what: string; at: number; partitions?: number[] }

/**
 * For a failure at `d.at`: the first conversation sealed after it (by sealed_at) to become
 * visible, anywhere and on each partition of `d.partitions`; and the seal delay of the live
 * conversations whose deadline fell between the failure and `until`, against `baselineFrom`..the
 * failure. `from` optionally moves each deadline to when the partition caught up with the backlog
 * (the tracker's own chatstats_seal_delay_seconds counts from there: no wall-clock seal before).
 */
function disruptionFigures(seen: Seen[], d: Disruption, until: number, baselineFrom: number, from?: (x: Seen) => number) {
  const after = seen.filter((x) => x.c.sealed_at > d.at);
  const first = after.length ? Math.min(...after.map((x) => x.visibleAt)) - d.at : Infinity;
  const firstSealedAt = after.length ? Math.min(...after.map((x) => x.c.sealed_at)) - d.at : Infinity;
  const perPartition = (d.partitions ?? []).map((p) => {
    const xs = after.filter((x) => x.partition === p);
    // The longest stretch without a conversation of this partition becoming visible, from the
    // failure to `until` (live traffic seals a few per second on each partition).
    const times = seen.filter((x) => x.partition === p && x.visibleAt > d.at && x.visibleAt <= until).map((x) => x.visibleAt).sort((a, b) => a - b);
    let prev = d.at;
    let pause = 0;
    for (const t of [...times, until]) { pause = Math.max(pause, t - prev); prev = t; }
    return [p, xs.length ? Math.min(...xs.map((x) => x.visibleAt)) - d.at : Infinity, pause] as const;
  });
  const live = seen.filter((x) => x.c.chat_type === 'live' && x.c.seal_reason === 'GAP_TIMEOUT');
  const deadline = (x: Seen) => x.c.ended_at + x.c.gap_ms;
  const delay = (x: Seen) => x.visibleAt - Math.max(deadline(x), from ? from(x) : -Infinity);
  const during = live.filter((x) => deadline(x) >= d.at && deadline(x) <= until).map(delay);
  const before = live.filter((x) => deadline(x) >= baselineFrom && deadline(x) < d.at).map(delay);
  return {
    first, firstSealedAt, perPartition, during, before,
    text: `${d.what}: first new conversation_sealed visible after ${secs(first)} (sealed_at +${secs(firstSealedAt)})`
      + (perPartition.length ? `; on the partitions it touched, first new seal / longest pause: ${perPartition.map(([p, ms, pause]) => `p${p} ${secs(ms)} / ${secs(pause)}`).join(', ')}` : '')
      + `; seal delay of live conversations due in the next ${secs(until - d.at)}: ${delays(during)}; before: ${delays(before)}`,
  };
}

// --- final checks -----------------------------------------------------------------------------

function count<T>(xs: T[], key: (x: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) { const k = key(x); m.set(k, (m.get(k) ?? 0) + 1); }
  return m;
}

interface Outputs {
  input: ChatMessage[]; sealed: ConversationSealed[]; late: LateMessage[]; dlq: number;
  sealedRecords: { c: ConversationSealed; partition: number; offset: string }[];
}

async function readOutputs(s: Scenario): Promise<Outputs> {
  const input = await Promise.all((await readTopic(kafka, s.topics.messages)).map((r) => s.codec.decodeChatMessage(r.value)));
  const sealedRecords = await Promise.all((await readTopic(kafka, s.topics.sealed)).map(async (r) => ({
    c: await s.codec.decode('ConversationSealed', r.value), partition: r.partition, offset: r.offset,
  })));
  const sealed = sealedRecords.map((r) => r.c);
  const late = await Promise.all((await readTopic(kafka, s.topics.late)).map((r) => s.codec.decode('LateMessage', r.value)));
  const dlq = (await readTopic(kafka, s.topics.messagesDlq)).length;
  return { input, sealed, late, dlq, sealedRecords };
}

/**
 * Once the traffic has stopped: waits until the group committed the whole input and every input
 * message is in a sealed conversation or in the late topic (at most `timeoutMs`), then reads the
 * outputs read_committed.
 */
async function awaitCompletion(s: Scenario, watcher: SealWatcher, timeoutMs: number): Promise<Outputs> {
  const reader = new PartitionReader(kafka);
  const ends = await reader.endOffsets(s.topics.messages, s.partitions).finally(() => reader.disconnect());
  await waitFor('the whole input committed', timeoutMs, async () => {
    const res = await admin.fetchOffsets({ groupId: s.groupId, topics: [s.topics.messages] });
    return res[0]!.partitions.every((p) => Number(p.offset) >= (ends.get(p.partition) ?? 0)) ? true : undefined;
  }, 500);
  // The input is final (the traffic has stopped): read it once; follow the sealed topic through
  // the watcher and read the (small) late topic until every message is somewhere.
  const ids = new Set((await Promise.all((await readTopic(kafka, s.topics.messages)).map((r) => s.codec.decodeChatMessage(r.value)))).map((m) => m.message_id));
  try {
    await waitFor('every input message sealed or late', 120_000, async () => {
      const placed = new Set<string>();
      for (const x of watcher.seen) for (const m of x.c.messages) placed.add(m.message_id);
      for (const r of await readTopic(kafka, s.topics.late)) placed.add((await s.codec.decode('LateMessage', r.value)).message.message_id);
      for (const id of ids) if (!placed.has(id)) return undefined;
      return true;
    }, 1000);
  } catch (e) {
    console.log(`[${s.name}] ${(e as Error).message}`); // the assertions say what is missing
  }
  await sleep(1500); // anything still in flight would show now
  return readOutputs(s);
}

/** Every conversation once, every message placed once, the backlog's chats as a fresh replay makes them. */
function assertExactlyOnce(s: Scenario, o: Outputs): { conversations: number; backlog: number; live: number; late: number } {
  // Each conversation once.
  const twice = [...count(o.sealed, (c) => c.conversation_id)].filter(([, n]) => n > 1);
  if (twice.length > 0) {
    for (const [id] of twice.slice(0, 8)) {
      const copies = o.sealedRecords.filter((r) => r.c.conversation_id === id);
      console.log(`[${s.name}] sealed twice: ${id} chat ${copies[0]!.c.chat_id} (${s.backlogChats.has(copies[0]!.c.chat_id) ? 'backlog' : 'live'}): `
        + copies.map((r) => `p${r.partition}@${r.offset} sealed_at ${new Date(r.c.sealed_at).toISOString()} ${r.c.seal_reason} ${r.c.message_count} msgs`).join(' | '));
    }
    const byPartition = count(o.sealedRecords.filter((r) => twice.some(([id]) => id === r.c.conversation_id)), (r) => `p${r.partition}`);
    console.log(`[${s.name}] copies by partition: ${JSON.stringify([...byPartition])}`);
  }
  assert.deepEqual(twice.slice(0, 5), [], `conversations sealed more than once: ${twice.length}`);
  // No message in two conversations; every input message somewhere.
  const inConversations = count(o.sealed.flatMap((c) => c.messages), (m) => m.message_id);
  const inTwo = [...inConversations].filter(([, n]) => n > 1);
  assert.deepEqual(inTwo.slice(0, 5), [], `messages in more than one sealed conversation: ${inTwo.length}`);
  const lateIds = new Set(o.late.map((l) => l.message.message_id));
  const lost = [...new Set(o.input.map((m) => m.message_id))].filter((id) => !inConversations.has(id) && !lateIds.has(id));
  assert.deepEqual(lost.slice(0, 5), [], `input messages neither sealed nor late: ${lost.length}`);
  assert.equal(o.dlq, 0, 'nothing in the DLQ');

  // Live chats: no duplicate deliveries, so each record is in exactly one place.
  const isLive = (chat: string) => !s.backlogChats.has(chat);
  const liveInput = o.input.filter((m) => isLive(m.chat_id)).length;
  const liveSealed = o.sealed.filter((c) => isLive(c.chat_id));
  const livePlaced = liveSealed.reduce((n, c) => n + c.message_count, 0) + o.late.filter((l) => isLive(l.message.chat_id)).length;
  assert.equal(livePlaced, liveInput, 'every live message once, in a conversation or late');

  // Backlog chats: exactly what the rules make of the input topic, in its order (a fresh replay).
  const backlogInput = o.input.filter((m) => !isLive(m.chat_id));
  const expected = expectedOutcome(backlogInput, rulesConfigFrom(s.cfg));
  const want = count(expected.conversations, conversationKey);
  const got = count(o.sealed.filter((c) => !isLive(c.chat_id)), conversationKey);
  const diff: string[] = [];
  for (const [k, n] of want) if (got.get(k) !== n) diff.push(`expected x${n}, got x${got.get(k) ?? 0}: ${k.slice(0, 160)}`);
  for (const [k, n] of got) if (!want.has(k)) diff.push(`unexpected x${n}: ${k.slice(0, 160)}`);
  assert.deepEqual(diff.slice(0, 5), [], `backlog chats against a replay of the input (${diff.length} differences)`);
  const wantLate = count(expected.late, lateKey);
  const gotLate = count(o.late.filter((l) => !isLive(l.message.chat_id)), lateKey);
  const lateDiff = [...new Set([...wantLate.keys(), ...gotLate.keys()])].filter((k) => wantLate.get(k) !== gotLate.get(k));
  assert.deepEqual(lateDiff.slice(0, 5), [], `backlog late messages against a replay (${lateDiff.length} differences)`);
  return { conversations: o.sealed.length, backlog: expected.conversations.length, live: liveSealed.length, late: o.late.length };
}

/** PostgreSQL (loaded by the ETL) holds exactly the sealed conversations and their messages. */
async function assertEtl(s: Scenario, sealed: ConversationSealed[], timeoutMs = 180_000): Promise<void> {
  await waitFor(`the ETL to load ${sealed.length} conversations`, timeoutMs, async () => {
    const { rows } = await s.pool.query<{ n: string }>('SELECT count(*) AS n FROM conversations');
    return Number(rows[0]!.n) >= sealed.length ? true : undefined;
  }, 500);
  const { rows } = await s.pool.query<{ conversation_id: string; message_count: number }>('SELECT conversation_id, message_count FROM conversations');
  assert.equal(rows.length, sealed.length, 'ETL rows = sealed conversations');
  const byId = new Map(sealed.map((c) => [c.conversation_id, c]));
  for (const r of rows) assert.equal(r.message_count, byId.get(r.conversation_id)?.message_count, `conversation ${r.conversation_id}`);
  const { rows: m } = await s.pool.query<{ n: string; ids: string }>('SELECT count(*) AS n, count(DISTINCT message_id) AS ids FROM messages');
  const want = sealed.reduce((n, c) => n + c.message_count, 0);
  assert.equal(Number(m[0]!.n), want, 'ETL message rows = messages of the sealed conversations');
  assert.equal(Number(m[0]!.ids), want);
}

function diagnose(s: Scenario): void {
  failed = true;
  if (process.env.CLUSTER_KEEP) {
    const dir = path.join(cluster.home, `logs-${s.name}`);
    mkdirSync(dir, { recursive: true });
    for (const [label, child] of s.procs) writeFileSync(path.join(dir, `${label}.log`), child.output());
    console.log(`[${s.name}] full process logs in ${dir}; topic prefix ${s.cfg.topicPrefix}`);
  }
  for (const t of s.timeline) console.log(`[${s.name}] ${t}`);
  for (const [label, child] of s.procs) {
    const lines = child.output().trim().split('\n');
    console.log(`[${s.name}] ${label} (exit ${child.proc.exitCode ?? child.proc.signalCode ?? 'running'}), last lines of ${lines.length}:`);
    for (const l of lines.slice(-20)) console.log(`[${s.name}]   ${l.slice(0, 500)}`);
  }
}

/** Warnings and errors the processes logged, by kind, most frequent first. */
function warningsSummary(s: Scenario): string {
  const problems = [...s.procs].flatMap(([label, c]) => problemsOf(c).map((p) => `${label}: ${p.replace(/\d+/g, 'N')}`));
  const byKind = count(problems, (p) => p);
  return [...byKind].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([p, n]) => `x${n} ${p}`).join(' | ') || 'none';
}

/** Which node leads the most partitions of a topic, with the counts per node. */
async function busiestLeader(topic: string): Promise<{ node: number; counts: Map<number, number> }> {
  const leaders = await partitionLeaders(admin, topic);
  const counts = new Map<number, number>();
  for (const l of leaders.values()) counts.set(l, (counts.get(l) ?? 0) + 1);
  const node = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
  return { node, counts };
}

async function groupCoordinator(groupId: string): Promise<number | null> {
  try {
    const sym = Object.getOwnPropertySymbols(kafka).find((x) => x.description === 'private:Kafka:createCluster');
    const c = (kafka as any)[sym!]({});
    await c.connect();
    try { return (await c.findGroupCoordinator({ groupId })).nodeId as number; } finally { await c.disconnect(); }
  } catch {
    return null;
  }
}

// --- 1 and 4: a partition leader SIGKILLed mid-backlog, ETL and analysis running -------------

interface Run1 { s: Scenario; etl: ChildRole; analysis: ChildRole; sealed: ConversationSealed[]; lastSealVisible: number }
let run1: Run1 | null = null;

test('1. the broker leading most input partitions SIGKILLed mid-backlog and restarted 20 s later: every conversation sealed exactly once', { timeout: 900_000 }, async () => {
  // Small fetches: many transactions, so the kill lands in the middle of the work. Two of the
  // passes (the analysis pipeline is the same for each; fewer runs keep the test short).
  const passesFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'chatstats-passes-')), 'passes.json');
  const all = JSON.parse(readFileSync(path.join(ROOT, 'config/passes.json'), 'utf8')) as { passes: { name: string }[] };
  writeFileSync(passesFile, JSON.stringify({ passes: all.passes.filter((p) => p.name === 'basic' || p.name === 'keywords') }));
  cleanups.push(() => rm(path.dirname(passesFile), { recursive: true, force: true }));
  const s = await scenario('cl1', { FETCH_MAX_BYTES_PER_PARTITION: '256KiB', PASSES_FILE: passesFile });
  try {
    const total = await produceBacklog(s, SEED, BACKLOG, BACKLOG_CHATS);
    const watcher = new SealWatcher(s);
    const progress = new Progress(s);
    const live = new LiveTraffic(s, SEED ^ 0x11);
    watcher.start();
    progress.start();
    cleanups.push(() => watcher.stop(), () => progress.stop());
    await live.start();
    const started = Date.now();
    const tracker = spawn(s, 'tracker', 'tracker');
    const etl = spawn(s, 'etl', 'etl');
    const analysis = spawn(s, 'analysis', 'analysis');
    note(s, 'tracker, ETL and analysis started; live traffic on');

    // Mid-backlog: once a quarter of it is committed.
    await waitFor('a quarter of the backlog committed', 300_000, async () => {
      if (tracker.proc.exitCode !== null) throw new Error(`tracker exited: ${problemsOf(tracker).slice(-3).join(' | ')}`);
      return progress.backlogCommitted() >= total / 4 ? true : undefined;
    }, 50);
    const { node: victim, counts } = await busiestLeader(s.topics.messages);
    const led = [...(await partitionLeaders(admin, s.topics.messages))].filter(([, l]) => l === victim).map(([p]) => p);
    const quorum = cluster.quorumLeader();
    const coordinator = await groupCoordinator(s.groupId);
    const killAt = Date.now();
    await cluster.killNode(victim);
    const atKill = progress.backlogCommitted();
    note(s, `node ${victim} SIGKILLed with ${atKill} of ${total} backlog records committed (${((Date.now() - started) / 1000).toFixed(1)} s after the start); `
      + `input leaders per node ${JSON.stringify([...counts])}; quorum leader ${quorum?.leader}; tracker group coordinator ${coordinator}`);
    assert.ok(atKill < total, 'the kill landed mid-backlog');

    await waitFor('a conversation sealed after the kill', 120_000, async () => (watcher.seen.some((x) => x.c.sealed_at > killAt) ? true : undefined), 100);
    note(s, `first conversation sealed after the kill visible ${((Math.min(...watcher.seen.filter((x) => x.c.sealed_at > killAt).map((x) => x.visibleAt)) - killAt) / 1000).toFixed(1)} s after it; `
      + `${progress.backlogCommitted()} backlog records committed; leaders per node now ${JSON.stringify([...(await busiestLeader(s.topics.messages)).counts])}`);

    // The node comes back 20 s after the kill, whether or not the backlog is done by then.
    const restartAt = killAt + 20_000;
    if (Date.now() < restartAt) await sleep(restartAt - Date.now());
    const t = Date.now();
    await cluster.startNode(victim);
    const started2 = Date.now() - t;
    const isr = await waitFullIsr(admin, 180_000);
    note(s, `node ${victim} restarted ${((t - killAt) / 1000).toFixed(1)} s after the kill: up in ${started2} ms, every replica back in sync ${isr} ms later; `
      + `${progress.backlogCommitted()} of ${total} backlog records committed`);
    await waitFor('the backlog committed', 300_000, async () => {
      if (tracker.proc.exitCode !== null) throw new Error(`tracker exited: ${problemsOf(tracker).slice(-3).join(' | ')}`);
      return progress.backlogCommitted() >= total ? true : undefined;
    }, 200);
    note(s, `backlog committed ${((Date.now() - killAt) / 1000).toFixed(1)} s after the kill`);
    await sleep(5000);
    await live.stop();
    note(s, `live traffic stopped: ${live.chats} chats, ${live.produced} messages acknowledged, ${live.failed} failed sends`);

    const o = await awaitCompletion(s, watcher, 300_000);
    const n = assertExactlyOnce(s, o);
    await assertEtl(s, o.sealed);
    await watcher.stop();
    await progress.stop();
    assert.equal(tracker.proc.exitCode, null, 'the tracker rode it out without exiting');

    const firstSealed = (p: number) => progress.backlogDoneAt.get(p) ?? Infinity;
    const f = disruptionFigures(watcher.seen, { what: `kill -9 of node ${victim} (leader of ${counts.get(victim)} of ${s.partitions.length} input partitions)`, at: killAt,
      partitions: led }, restartAt + 10_000, started);
    const fromCatchUp = disruptionFigures(watcher.seen, { what: 'same, counted from the later of deadline and catch-up', at: killAt }, restartAt + 10_000, started,
      (x) => firstSealed(x.partition));
    figures.push(`test 1: ${f.text}`);
    figures.push(`test 1: seal delay counted as the tracker's metric does (from the deadline or the partition's catch-up with the backlog, if later): during ${delays(fromCatchUp.during)}`);
    figures.push(`test 1: ${total} backlog records + ${live.produced} live; ${n.conversations} conversations sealed once (${n.backlog} backlog, as a replay gives; ${n.live} live), ${n.late} late; `
      + `PostgreSQL rows equal; logged: ${warningsSummary(s)}`);
    for (const x of figures.slice(-3)) console.log(`[${s.name}] ${x}`);
    run1 = { s, etl, analysis, sealed: o.sealed, lastSealVisible: Math.max(...watcher.seen.map((x) => x.visibleAt)) };
    await stopClean(tracker);
  } catch (e) {
    diagnose(s);
    throw e;
  }
});

test('4. ETL and analysis ran on through test 1: every sealed conversation loaded once and analysed by every pass it qualifies for', { timeout: 600_000 }, async () => {
  assert.ok(run1, 'test 1 completed');
  const { s, etl, analysis, sealed } = run1;
  try {
    assert.equal(etl.proc.exitCode, null, 'the ETL never exited');
    assert.equal(analysis.proc.exitCode, null, 'the analysis never exited');
    const passes = loadPasses(s.env.PASSES_FILE).filter((p) => p.enabled);
    // No subscriptions: the LLM passes are skipped where they require one.
    const qualifying = new Map(sealed.map((c) => [c.conversation_id,
      passes.filter((p) => disqualification(p, { message_count: c.message_count, account_id: c.account_id ?? null, subscriptionActive: false }) === null).map((p) => p.name)]));
    const wantRuns = [...qualifying.values()].reduce((n, ps) => n + ps.length, 0);
    const t0 = Date.now();
    let lastNote = Date.now();
    await waitFor(`analysis of ${sealed.length} conversations (${wantRuns} pass runs)`, 400_000, async () => {
      if (analysis.proc.exitCode !== null) throw new Error('analysis exited');
      const { rows } = await s.pool.query<{ done: string; busy: string }>(
        `SELECT count(*) FILTER (WHERE status = 'completed') AS done, count(*) FILTER (WHERE status IN ('pending', 'running')) AS busy FROM analysis_runs`);
      if (Date.now() - lastNote > 15_000) { lastNote = Date.now(); note(s, `analysis: ${rows[0]!.done} of ${wantRuns} pass runs completed, ${rows[0]!.busy} pending or running`); }
      return Number(rows[0]!.done) >= wantRuns && Number(rows[0]!.busy) === 0 ? true : undefined;
    }, 1000);
    const { rows } = await s.pool.query<{ conversation_id: string; pass_name: string; status: string }>(
      `SELECT conversation_id, pass_name, status FROM analysis_runs WHERE status = 'completed'`);
    const got = count(rows, (r) => `${r.conversation_id}/${r.pass_name}`);
    const missing: string[] = [];
    for (const [id, ps] of qualifying) for (const p of ps) if (got.get(`${id}/${p}`) !== 1) missing.push(`${id}/${p}`);
    assert.deepEqual(missing.slice(0, 5), [], `qualifying pass runs not completed exactly once: ${missing.length}`);
    assert.equal(rows.length, wantRuns, 'no completed run where the pass does not qualify');
    // Downstream topics: at least one conversation.ready per conversation, one analysis.completed per run.
    const ready = new Set((await readTopic(kafka, s.topics.ready)).map((r) => r.key?.toString()));
    assert.equal([...qualifying.keys()].filter((id) => !ready.has(id)).length, 0, 'conversation.ready for every conversation');
    const completed = (await readTopic(kafka, s.topics.completed)).length;
    assert.ok(completed >= wantRuns, `analysis.completed: ${completed} events for ${wantRuns} runs`);
    const { rows: lastLoad } = await s.pool.query<{ ms: string }>(`SELECT extract(epoch FROM max(loaded_at)) * 1000 AS ms FROM conversations`).catch(() => ({ rows: [{ ms: 'NaN' }] }));
    figures.push(`test 4: ETL and analysis up throughout; ${sealed.length} conversations loaded${Number.isFinite(Number(lastLoad[0]!.ms)) ? ` (the last within ${secs(Math.max(0, Number(lastLoad[0]!.ms) - run1.lastSealVisible))} of the last seal becoming visible)` : ''}, `
      + `${wantRuns} pass runs completed once each (analysis done ${secs(Date.now() - t0)} after test 1 ended), ${completed} analysis.completed events; `
      + `ETL warnings: ${problemsOf(etl).length}, analysis warnings: ${problemsOf(analysis).length}`);
    console.log(`[${s.name}] ${figures.at(-1)}`);
    assert.equal(await stopClean(etl), 0, 'ETL stops cleanly');
    assert.equal(await stopClean(analysis), 0, 'analysis stops cleanly');
  } catch (e) {
    diagnose(s);
    throw e;
  }
});

// --- 2: the controller quorum's leader SIGKILLed under live traffic --------------------------

test('2. the controller quorum leader SIGKILLed under live traffic and restarted: every conversation sealed exactly once', { timeout: 900_000 }, async () => {
  await waitFullIsr(admin, 60_000);
  const s = await scenario('cl2');
  try {
    const watcher = new SealWatcher(s);
    const live = new LiveTraffic(s, SEED ^ 0x22);
    watcher.start();
    cleanups.push(() => watcher.stop());
    await live.start();
    const tracker = spawn(s, 'tracker', 'tracker');
    const etl = spawn(s, 'etl', 'etl');
    // Steady: every partition seals live conversations.
    await waitFor('live conversations sealing on every partition', 120_000, async () =>
      (s.partitions.every((p) => watcher.seen.filter((x) => x.partition === p).length >= 3) ? true : undefined), 200);
    const steadyAt = Date.now();
    await sleep(10_000);
    const before = cluster.quorumLeader();
    assert.ok(before, 'a quorum leader');
    const victim = before.leader;
    const { counts } = await busiestLeader(s.topics.messages);
    const killAt = Date.now();
    await cluster.killNode(victim);
    note(s, `quorum leader node ${victim} (epoch ${before.epoch}, leader of ${counts.get(victim) ?? 0} input partitions) SIGKILLed`);
    const elected = await waitFor('a new quorum leader', 60_000, async () => {
      const q = cluster.quorumLeader();
      return q && q.leader !== victim && q.epoch > before.epoch ? q : undefined;
    }, 20);
    const electedMs = Date.now() - killAt;
    note(s, `node ${elected.leader} leads the quorum (epoch ${elected.epoch}) ${electedMs} ms after the kill`);
    await waitFor('a conversation sealed after the kill', 120_000, async () => (watcher.seen.some((x) => x.c.sealed_at > killAt) ? true : undefined), 100);
    const restartAt = killAt + 15_000;
    if (Date.now() < restartAt) await sleep(restartAt - Date.now());
    await cluster.startNode(victim);
    const isr = await waitFullIsr(admin, 120_000);
    note(s, `node ${victim} restarted; every replica in sync ${isr} ms later; quorum leader now ${cluster.quorumLeader()?.leader}`);
    await sleep(5000);
    await live.stop();
    note(s, `live traffic stopped: ${live.chats} chats, ${live.produced} messages acknowledged, ${live.failed} failed sends`);

    const o = await awaitCompletion(s, watcher, 300_000);
    const n = assertExactlyOnce(s, o);
    await assertEtl(s, o.sealed);
    await watcher.stop();
    assert.equal(tracker.proc.exitCode, null, 'the tracker rode it out without exiting');
    const f = disruptionFigures(watcher.seen, { what: `kill -9 of the quorum leader, node ${victim}`, at: killAt, partitions: s.partitions }, restartAt + 10_000, steadyAt);
    figures.push(`test 2: new quorum leader after ${electedMs} ms; ${f.text}`);
    figures.push(`test 2: ${live.produced} live messages; ${n.conversations} conversations sealed once, ${n.late} late; PostgreSQL rows equal; logged: ${warningsSummary(s)}`);
    for (const x of figures.slice(-2)) console.log(`[${s.name}] ${x}`);
    assert.equal(await stopClean(tracker), 0);
    assert.equal(await stopClean(etl), 0);
  } catch (e) {
    diagnose(s);
    throw e;
  }
});

// --- 3: three instances, rolling restart, then a SIGKILL during a rebalance -----------------

test('3. three trackers in one group: rolling restart under live traffic, then a SIGKILL during a rebalance: every conversation sealed exactly once', { timeout: 1_200_000 }, async () => {
  await waitFullIsr(admin, 60_000);
  const s = await scenario('cl3');
  try {
    // A backlog first, so that the moving partitions have state to restore.
    await produceBacklog(s, SEED + 3, Math.round(BACKLOG / 3), BACKLOG_CHATS);
    const watcher = new SealWatcher(s);
    const progress = new Progress(s);
    const live = new LiveTraffic(s, SEED ^ 0x33);
    watcher.start();
    progress.start();
    cleanups.push(() => watcher.stop(), () => progress.stop());
    await live.start();
    const dirs = [1, 2, 3].map((i) => `${s.env.STATE_DIR}-${i}`);
    cleanups.push(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
    const instance = (i: number, gen: number) => spawn(s, `T${i + 1}${"'".repeat(gen)}`, 'tracker', { STATE_DIR: dirs[i]! });
    const etl = spawn(s, 'etl', 'etl');
    const current: ChildRole[] = [instance(0, 0), instance(1, 0), instance(2, 0)];
    const gens = [0, 0, 0];
    const all = s.partitions.length;
    /** Every current instance owns partitions, together all of them, each one restored since its last assignment. */
    const balanced = (members: ChildRole[]) => {
      const sets = members.map((c) => assignedOf(c) ?? []);
      if (sets.some((x) => x.length === 0) || sets.reduce((n, x) => n + x.length, 0) !== all) return false;
      return members.every((c, k) => {
        const lines = logLines(c);
        const lastAssign = lines.map((l) => l.msg).lastIndexOf('partitions assigned');
        const restored = new Set(lines.slice(lastAssign).filter((l) => l.msg === 'task restored').map((l) => Number(l.partition)));
        return sets[k]!.every((p) => restored.has(p) || restoresOf('', c).some((r) => r.partition === p));
      });
    };
    const alive = () => { for (const c of current) if (c.proc.exitCode !== null) throw new Error(`a tracker exited: ${problemsOf(c).slice(-3).join(' | ')}`); };
    await waitFor('three instances sharing the partitions', 120_000, async () => { alive(); return balanced(current) ? true : undefined; }, 100);
    await waitFor('the backlog committed', 120_000, async () => { alive(); return progress.backlogCommitted() >= [...s.backlogEnds.values()].reduce((a, b) => a + b, 0) ? true : undefined; }, 200);
    note(s, `three instances: ${current.map((c) => JSON.stringify(assignedOf(c))).join(' ')}; backlog committed`);
    await sleep(4000);
    const events: ReturnType<typeof disruptionFigures>[] = [];
    let baselineFrom = Date.now() - 4000;

    for (let i = 0; i < 3; i++) {
      const old = current[i]!;
      const owned = assignedOf(old) ?? [];
      const stopAt = Date.now();
      old.kill('SIGTERM');
      const code = await Promise.race([old.exited, sleep(30_000).then(() => 'timeout' as const)]);
      assert.equal(code, 0, `T${i + 1} exits 0 on SIGTERM`);
      const others = current.filter((c) => c !== old);
      await waitFor(`the other two take over T${i + 1}'s partitions`, 90_000, async () => { for (const c of others) if (c.proc.exitCode !== null) throw new Error('a tracker exited'); return balanced(others) ? true : undefined; }, 50);
      const movedAt = Date.now();
      note(s, `T${i + 1} stopped by SIGTERM (owned ${JSON.stringify(owned)}): its partitions taken over ${secs(movedAt - stopAt)} after it; the others own ${others.map((c) => JSON.stringify(assignedOf(c))).join(' ')}`);
      await sleep(2000);
      gens[i]!++;
      const next = instance(i, gens[i]!);
      current[i] = next;
      const joinAt = Date.now();
      await waitFor(`T${i + 1} back in the group`, 90_000, async () => { alive(); return balanced(current) ? true : undefined; }, 50);
      note(s, `T${i + 1} restarted: balanced again after ${secs(Date.now() - joinAt)} (process start included): ${current.map((c) => JSON.stringify(assignedOf(c))).join(' ')}`);
      await sleep(3000);
      events.push(disruptionFigures(watcher.seen, { what: `SIGTERM of T${i + 1}`, at: stopAt, partitions: owned }, joinAt, baselineFrom));
      events.push(disruptionFigures(watcher.seen, { what: `T${i + 1} rejoining`, at: joinAt, partitions: s.partitions }, joinAt + 10_000, baselineFrom));
    }

    // A rebalance (a fourth instance joins), and one instance SIGKILLed while it is under way.
    const extraDir = `${s.env.STATE_DIR}-4`;
    cleanups.push(() => rm(extraDir, { recursive: true, force: true }));
    const victim = current[1]!;
    const victimOwned = assignedOf(victim) ?? [];
    const fourth = spawn(s, 'T4', 'tracker', { STATE_DIR: extraDir });
    const state = await waitFor('the group rebalancing', 60_000, async () => {
      const g = (await admin.describeGroups([s.groupId])).groups[0];
      return g && g.state !== 'Stable' ? g.state : undefined;
    }, 10);
    const killAt = Date.now();
    victim.kill('SIGKILL');
    await victim.exited;
    note(s, `T4 joined; group ${state}: T2 (owned ${JSON.stringify(victimOwned)}) SIGKILLed`);
    current[1] = fourth;
    const survivors = current;
    await waitFor('the group without T2, every partition restored', 180_000, async () => {
      for (const c of survivors) if (c.proc.exitCode !== null) throw new Error('a tracker exited');
      return balanced(survivors) ? true : undefined;
    }, 100);
    const recovered = Date.now();
    note(s, `balanced again without T2 ${secs(recovered - killAt)} after the kill: ${survivors.map((c) => JSON.stringify(assignedOf(c))).join(' ')}`);
    await sleep(5000);
    baselineFrom = Math.max(baselineFrom, killAt - 20_000);
    const kill = disruptionFigures(watcher.seen, { what: `kill -9 of T2 during a rebalance (group ${state})`, at: killAt, partitions: s.partitions }, recovered + 3000, baselineFrom);
    await live.stop();
    note(s, `live traffic stopped: ${live.chats} chats, ${live.produced} messages acknowledged, ${live.failed} failed sends`);

    const o = await awaitCompletion(s, watcher, 300_000);
    const n = assertExactlyOnce(s, o);
    await assertEtl(s, o.sealed);
    await watcher.stop();
    await progress.stop();

    for (const e of events) figures.push(`test 3: ${e.text}`);
    figures.push(`test 3: ${kill.text}`);
    const restores = [...s.procs].flatMap(([label, c]) => restoresOf(label, c));
    figures.push(`test 3: ${restores.length} task restores, ${restores.filter((r) => r.wiped).length} after a wipe, slowest ${Math.max(...restores.map((r) => r.ms))} ms, `
      + `largest ${Math.max(...restores.map((r) => r.records))} changelog records; ${n.conversations} conversations sealed once (${n.backlog} backlog as a replay gives, ${n.live} live), ${n.late} late; `
      + `PostgreSQL rows equal; logged: ${warningsSummary(s)}`);
    for (const x of figures.filter((f) => f.startsWith('test 3'))) console.log(`[${s.name}] ${x}`);
    for (const c of survivors) assert.equal(await stopClean(c), 0);
    assert.equal(await stopClean(etl), 0);
  } catch (e) {
    diagnose(s);
    throw e;
  }
});
