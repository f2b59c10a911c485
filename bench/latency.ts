// Live latencies, time scaled down: the conversation gap is 3 s instead of 90 min (a seal's delay
// past its deadline does not depend on the gap's length, only on how the deadline is noticed).
//
// sealDelay: the seed's design (Redis sorted set + a periodic check, seed-redis.ts) and three
//   trackers (`chatstats run tracker`): the seal timer (SEAL_TIMER=deadline, the default, with the
//   production tick of 1 s as its upper bound), and the old fixed tick (SEAL_TIMER=tick) at 1 s
//   and at 250 ms, consume the same traffic at the same time; a downstream read_committed consumer
//   receives every design's sealed events. Delay = time received - (ended_at + gap). Two phases
//   on the same processes: live traffic (deadlines at random moments), then a variant in which
//   every chat's last message has the same sent_at, so that all deadlines coincide.
// endToEnd: `chatstats run all` (tracker, ETL into a fresh PostgreSQL database, analysis) on live
//   traffic: from a conversation's last message being produced to its analysis.completed events.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import type { ChatMessage } from '../src/records/types';
import { topicNames } from '../src/topics';
import { encodeMessage, Rng } from './generator';
import { javaCompatiblePartitioner } from '../src/records/partitioner';
import {
  benchKafka, cleanup, createTopics, newRun, quantile, removeDir, sleep, spawnBenchScript, spawnChild, spawnRole, type Child,
} from './lib';
import { freePort } from './throughput';

export const GAP_MS = 3000;
/**
 * The settle time of rule 2 scaled as the gap is (1 minute against 90: 33 ms against 3 s). Unscaled,
 * min(CONVERSATION_SETTLE, gap + grace) would be the whole 3 s gap, counted from the processing time
 * a conversation's last message arrived instead of its sent_at: the delay would then measure how
 * late messages arrive, which the 90-minute gap of production hides (see BENCHMARKS.md).
 */
export const SETTLE_MS = Math.round((GAP_MS * 60_000) / 5_400_000);

export interface DelayStats {
  n: number; expected: number; p50: number; p99: number; max: number; min: number;
  /** Sealed events received more than once for the same conversation (chat, started_at), at distinct offsets. */
  duplicates?: number;
  /** Chats whose conversation was never received. */
  missing?: number;
  /** Chats received as more than one conversation (the traffic means one per chat). */
  split?: number;
}

function stats(xs: number[], expected: number): DelayStats {
  return { n: xs.length, expected, p50: quantile(xs, 0.5), p99: quantile(xs, 0.99), max: Math.max(...xs), min: Math.min(...xs) };
}

/** Per chat, per conversation (its started_at): the delay of every receipt. */
type Receipts = Map<string, Map<number, number[]>>;

/**
 * Delay stats over the expected chats: each chat's last conversation, its first receipt; with
 * duplicates (a conversation received twice), missing chats and split ones counted.
 */
function statsByChat(received: Receipts, chats: string[]): DelayStats {
  const first: number[] = [];
  let duplicates = 0;
  let missing = 0;
  let split = 0;
  for (const c of chats) {
    const convs = received.get(c);
    if (!convs || convs.size === 0) { missing++; continue; }
    if (convs.size > 1) split++;
    const last = Math.max(...convs.keys());
    first.push(convs.get(last)![0]!);
    for (const d of convs.values()) duplicates += d.length - 1;
  }
  return { ...stats(first, chats.length), duplicates, missing, split };
}

/**
 * Live traffic: `chats` chats, each starting at a random moment of the first `seconds`, sends a
 * burst of 1 to 8 messages 0 to 400 ms apart (sent_at = now), then stays silent: one conversation
 * each, whose deadline falls at a random phase of every periodic check.
 */
async function liveTraffic(kafka: ReturnType<typeof benchKafka>, topics: string[], chats: number, seconds: number, seed: number,
  onLast: (chat: string, producedAt: number) => void): Promise<number> {
  const rng = new Rng(seed);
  interface Plan { at: number; chat: string; i: number; last: boolean }
  const plan: Plan[] = [];
  for (let c = 0; c < chats; c++) {
    const chat = `live-${seed}-${c}`;
    let at = rng.next() * seconds * 1000;
    const n = rng.int(1, 8);
    for (let i = 0; i < n; i++) {
      plan.push({ at, chat, i, last: i === n - 1 });
      at += rng.next() * 400;
    }
  }
  plan.sort((a, b) => a.at - b.at);
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
  await producer.connect();
  const t0 = Date.now();
  let sent = 0;
  for (let k = 0; k < plan.length;) {
    const wait = t0 + plan[k]!.at - Date.now();
    if (wait > 0) await sleep(wait);
    const now = Date.now();
    const due: Plan[] = [];
    while (k < plan.length && t0 + plan[k]!.at <= now) due.push(plan[k++]!);
    const msgs: ChatMessage[] = due.map((p) => ({
      message_id: `${p.chat}:${p.i}`, chat_id: p.chat, sender_id: `u${p.i % 2}`, sent_at: Date.now(), text: `live message ${p.i}`,
      chat_type: 'direct', is_from_me: p.i % 2 === 0, reply_to_message_id: null, account_id: null,
    }));
    const records = msgs.map((m) => ({ key: m.chat_id, value: encodeMessage(m) }));
    // One request for every topic: each tracker sees the same messages at the same time.
    await producer.sendBatch({ acks: -1, topicMessages: topics.map((topic) => ({ topic, messages: records })) });
    const producedAt = Date.now();
    for (const p of due) if (p.last) onLast(p.chat, producedAt);
    sent += msgs.length;
  }
  await producer.disconnect();
  return sent;
}

/**
 * Coinciding deadlines: every chat sends 0 to 7 messages at random moments of the `leadMs` before
 * T (sent_at = now), then its last message with sent_at = T exactly, all chats' last messages in
 * one request: every chat has one conversation, and all their deadlines are T + gap.
 */
export async function coincidingTraffic(kafka: ReturnType<typeof benchKafka>, topics: string[], chatIds: string[], leadMs: number, seed: number): Promise<number> {
  const rng = new Rng(seed);
  const plan: { at: number; chat: string; i: number }[] = [];
  const lastIndex = new Map<string, number>();
  for (const chat of chatIds) {
    const n = rng.int(1, 8);
    for (let i = 0; i < n - 1; i++) plan.push({ at: rng.next() * leadMs, chat, i });
    lastIndex.set(chat, n - 1);
  }
  plan.sort((a, b) => a.at - b.at);
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
  await producer.connect();
  const send = async (msgs: ChatMessage[]) => {
    const records = msgs.map((m) => ({ key: m.chat_id, value: encodeMessage(m) }));
    await producer.sendBatch({ acks: -1, topicMessages: topics.map((topic) => ({ topic, messages: records })) });
  };
  const message = (chat: string, i: number, sentAt: number): ChatMessage => ({
    message_id: `${chat}:${i}`, chat_id: chat, sender_id: `u${i % 2}`, sent_at: sentAt, text: `message ${i}`,
    chat_type: 'direct', is_from_me: i % 2 === 0, reply_to_message_id: null, account_id: null,
  });
  const t0 = Date.now();
  // T is fixed in advance, so every chat's messages lie within leadMs (< gap) of its last one
  // even if producing falls behind on a loaded machine: one conversation per chat.
  const T = t0 + leadMs;
  for (let k = 0; k < plan.length;) {
    const wait = t0 + plan[k]!.at - Date.now();
    if (wait > 0) await sleep(wait);
    const due: typeof plan = [];
    while (k < plan.length && t0 + plan[k]!.at <= Date.now()) due.push(plan[k++]!);
    await send(due.map((p) => message(p.chat, p.i, Math.min(Date.now(), T - 1))));
  }
  const wait = T - Date.now();
  if (wait > 0) await sleep(wait);
  await send(chatIds.map((chat) => message(chat, lastIndex.get(chat)!, T)));
  await producer.disconnect();
  return T;
}

export async function waitReady(port: number, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode() !== undefined) throw new Error(`process exited: ${child.output().slice(-2000)}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.ok) return;
    } catch { /* not up */ }
    if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms: ${child.output().slice(-2000)}`);
    await sleep(250);
  }
}

/**
 * `chatstats run tracker`, ready. On a loaded broker a tracker may exit at start-up because a topic
 * it has just created is not hosted yet ("This server does not host this topic-partition"):
 * start it again, up to three times. `bin`: another checkout's bin/chatstats.js (an A/B of builds).
 */
export async function startTracker(env: Record<string, string>, bin?: string): Promise<{ child: Child; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = bin === undefined ? spawnRole('tracker', { ...env, METRICS_PORT: String(port) })
      : spawnChild(process.execPath, [bin, 'run', 'tracker'], { ...env, METRICS_PORT: String(port) });
    try {
      await waitReady(port, child, 120_000);
      return { child, port };
    } catch (e) {
      await child.stop('SIGTERM', 10_000).catch(() => undefined);
      if (attempt >= 3) throw e;
      await sleep(2000);
    }
  }
}

export interface TrackerDelay {
  label: string;
  sealTimer: 'deadline' | 'tick' | 'prepare';
  tickMs: number;
  /** Received downstream - (ended_at + gap). */
  received: DelayStats;
  /** sealed_at - (ended_at + gap): the tracker's own part. */
  sealed: DelayStats;
  /** Conversations sealed more than one tick past their deadline (a tick skipped: not caught up). */
  sealedAfterOneTick: number;
  /** The tracker's punctuations by trigger and result over the whole run (both phases), from its metrics. */
  punctuations?: Record<string, number>;
}

export interface SealDelayPhase {
  chats: number;
  trackers: TrackerDelay[];
  seed: DelayStats;
}

export interface SealDelayResult {
  chats: number;
  trafficSeconds: number;
  seedCheckMs: number;
  /** Live traffic: deadlines at random moments. */
  trackers: TrackerDelay[];
  seed: DelayStats;
  /** Every chat's deadline at the same millisecond. */
  coincide: SealDelayPhase | null;
}

/**
 * The trackers that run side by side: the seal timer, the old fixed tick at 1 s and 250 ms (all with
 * the settle time scaled, SETTLE_MS), and the seal timer without the settle time of rule 2
 * (CONVERSATION_SETTLE=0, rule 2 as it was before sessionization v2), which shows what the settle
 * time costs live traffic; and the seal timer with its punctuations prepared ahead of the deadline
 * and committed at it (SEAL_TIMER=prepare).
 */
export const ALL_TRACKERS: { label: string; sealTimer: 'deadline' | 'tick' | 'prepare'; tickMs: number; settle?: string }[] = [
  { label: 'seal timer (deadline), tick 1 s', sealTimer: 'deadline', tickMs: 1000 },
  { label: 'fixed tick 1 s', sealTimer: 'tick', tickMs: 1000 },
  { label: 'fixed tick 250 ms', sealTimer: 'tick', tickMs: 250 },
  { label: 'seal timer, no settle time (before v2)', sealTimer: 'deadline', tickMs: 1000, settle: '0ms' },
  { label: 'seal timer, prepared ahead (prepare), tick 1 s', sealTimer: 'prepare', tickMs: 1000 },
];

/** A tracker's name in this benchmark (its run's and its log file's). */
const trackerName = (t: (typeof ALL_TRACKERS)[number]) => `latency-${t.sealTimer}-${t.tickMs}${t.settle === undefined ? '' : '-nosettle'}`;

export async function runSealDelay(opts: {
  chats: number; seconds: number; seedCheckMs: number; coincide?: boolean; log: (s: string) => void;
  /** Which of TRACKERS run (indices); all when absent. */
  only?: number[];
}): Promise<SealDelayResult> {
  const TRACKERS = opts.only === undefined ? ALL_TRACKERS : opts.only.map((i) => ALL_TRACKERS[i]!);
  const kafka = benchKafka('bench-latency');
  const admin = kafka.admin();
  await admin.connect();
  const runs = TRACKERS.map((t) => newRun(trackerName(t), {
    CONVERSATION_GAP: `${GAP_MS}ms`, PUNCTUATE_INTERVAL: `${t.tickMs}ms`, SEAL_TIMER: t.sealTimer,
    CONVERSATION_SETTLE: t.settle ?? `${SETTLE_MS}ms`,
  }));
  const topics = runs.map((run) => topicNames({ topicPrefix: run.prefix, appId: run.appId }));
  const seedOut = `${runs[0]!.prefix}seed.sealed`;
  const children: Child[] = [];
  const consumer = kafka.consumer({ groupId: `${runs[0]!.prefix}downstream`, readUncommitted: false, maxWaitTimeInMs: 50 });
  try {
    for (const t of topics) await createTopics(admin, [t.messages], 6, { 'retention.ms': String(86_400_000) });
    await createTopics(admin, [seedOut], 6, { 'retention.ms': String(86_400_000) });
    const ports: number[] = [];
    for (const run of runs) {
      // BENCH_TRACKER_LOG_LEVEL=debug and BENCH_TRACKER_LOG_DIR keep the trackers' logs (the seal
      // timer logs each punctuation at debug: how late it woke, the end request, the punctuation).
      const started = await startTracker({ ...run.env, ...(process.env.BENCH_TRACKER_LOG_LEVEL ? { LOG_LEVEL: process.env.BENCH_TRACKER_LOG_LEVEL } : {}) });
      children.push(started.child);
      ports.push(started.port);
    }
    const punctuations = async (port: number): Promise<Record<string, number>> => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/^chatstats_punctuations_total\{trigger="(\w+)",result="(\w+)"\} (\S+)$/gm)) out[`${m[1]} ${m[2]}`] = Number(m[3]);
      // SEAL_TIMER=prepare: how many prepared punctuations committed at their moment, how many were aborted.
      for (const m of text.matchAll(/^chatstats_prepared_punctuations_total\{result="(\w+)"\} (\S+)$/gm)) out[`prepared ${m[1]}`] = Number(m[2]);
      return out;
    };
    const seed = spawnBenchScript('seed-redis', {
      KAFKA_BROKERS: runs[0]!.env.KAFKA_BROKERS!, TOPIC: topics[0]!.messages, OUT_TOPIC: seedOut, GROUP: `${runs[0]!.prefix}seed`,
      GAP_MS: String(GAP_MS), CHECK_MS: String(opts.seedCheckMs), KEY_PREFIX: `${runs[0]!.id}:`,
    });
    children.push(seed);
    await sleep(3000); // the seed's consumer joins its group

    // Per design (trackers, then the seed), per chat: every receipt's delay, and sealed_at's.
    const designs = TRACKERS.length + 1;
    const received = Array.from({ length: designs }, (): Receipts => new Map());
    const sealed = Array.from({ length: designs }, (): Receipts => new Map());
    // A record delivered twice to the consumer (a rebalance of its group) is one record: count
    // each (partition, offset) once, so that duplicates are distinct sealed events only.
    const seen = new Set<string>();
    const sealedTopics = [...topics.map((t) => t.sealed), seedOut];
    await consumer.connect();
    await consumer.subscribe({ topics: sealedTopics, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        const now = Date.now();
        const id = `${topic}/${partition}/${message.offset}`;
        if (seen.has(id)) return;
        seen.add(id);
        const c = JSON.parse(message.value!.toString('utf8')) as { chat_id: string; started_at: number; ended_at: number; gap_ms: number; sealed_at: number };
        const deadline = c.ended_at + c.gap_ms;
        const i = sealedTopics.indexOf(topic);
        const push = (m: Receipts, v: number) => {
          let convs = m.get(c.chat_id);
          if (!convs) m.set(c.chat_id, (convs = new Map()));
          const l = convs.get(c.started_at);
          if (l) l.push(v); else convs.set(c.started_at, [v]);
        };
        push(received[i]!, now - deadline);
        push(sealed[i]!, c.sealed_at - deadline);
      },
    });
    const waitAll = async (chatIds: string[], deadline: number) => {
      while (Date.now() < deadline && received.some((r) => chatIds.some((c) => !r.has(c)))) await sleep(250);
      await sleep(1000); // a late duplicate would show up now
    };
    const phase = (chatIds: string[]): SealDelayPhase => ({
      chats: chatIds.length,
      trackers: TRACKERS.map((t, i) => {
        const s = statsByChat(sealed[i]!, chatIds);
        return {
          ...t, received: statsByChat(received[i]!, chatIds), sealed: s,
          sealedAfterOneTick: chatIds.filter((c) => {
            const convs = sealed[i]!.get(c);
            return convs !== undefined && convs.get(Math.max(...convs.keys()))![0]! > t.tickMs;
          }).length,
        };
      }),
      seed: statsByChat(received[TRACKERS.length]!, chatIds),
    });

    opts.log(`[latency] live traffic: ${opts.chats} chats over ${opts.seconds} s, gap ${GAP_MS} ms, settle ${SETTLE_MS} ms unless said; ${TRACKERS.map((t) => t.label).join(', ')}; seed check every ${opts.seedCheckMs / 1000} s`);
    const live = Array.from({ length: opts.chats }, (_, c) => `live-11-${c}`);
    await liveTraffic(kafka, topics.map((t) => t.messages), opts.chats, opts.seconds, 11, () => undefined);
    await waitAll(live, Date.now() + GAP_MS + opts.seedCheckMs * 2 + 30_000);
    const livePhase = phase(live);

    let coincide: SealDelayPhase | null = null;
    if (opts.coincide !== false) {
      const chatIds = Array.from({ length: opts.chats }, (_, c) => `coincide-${c}`);
      opts.log(`[latency] coinciding deadlines: ${chatIds.length} chats, every last message at the same millisecond`);
      const T = await coincidingTraffic(kafka, topics.map((t) => t.messages), chatIds, GAP_MS - 500, 13);
      await waitAll(chatIds, T + GAP_MS + opts.seedCheckMs * 2 + 30_000);
      coincide = phase(chatIds);
    }
    for (let i = 0; i < TRACKERS.length; i++) {
      livePhase.trackers[i]!.punctuations = await punctuations(ports[i]!).catch(() => ({}));
    }
    return {
      chats: opts.chats, trafficSeconds: opts.seconds, seedCheckMs: opts.seedCheckMs,
      trackers: livePhase.trackers, seed: livePhase.seed, coincide,
    };
  } finally {
    await consumer.disconnect().catch(() => undefined);
    for (const c of children) await c.stop('SIGTERM', 20_000).catch(() => undefined);
    if (process.env.BENCH_TRACKER_LOG_DIR) {
      children.forEach((c, i) => {
        if (i < TRACKERS.length) writeFileSync(path.join(process.env.BENCH_TRACKER_LOG_DIR!, `${trackerName(TRACKERS[i]!)}.log`), c.output());
      });
    }
    await cleanup(admin, runs.flatMap((run) => [run.prefix, run.appId])).catch(() => 0);
    await admin.disconnect();
    for (const run of runs) removeDir(run.stateDir);
  }
}

// ---------------------------------------------------------------------------------------------

export interface EndToEndResult {
  conversations: number;
  passes: string[];
  /** Last message produced -> first analysis.completed of its conversation (ms). */
  firstPass: DelayStats;
  /** Last message produced -> the last analysis.completed of its conversation (ms; passes whose requirements a conversation does not meet send none). */
  allPasses: DelayStats;
  gapMs: number;
}

export async function runEndToEnd(opts: { chats: number; seconds: number; log: (s: string) => void }): Promise<EndToEndResult> {
  const kafka = benchKafka('bench-e2e');
  const admin = kafka.admin();
  await admin.connect();
  const dbName = `chatstats_bench_${Date.now().toString(36)}`;
  const dbUrl = `postgres://postgres@127.0.0.1:5432/${dbName}`;
  const run = newRun('e2e', { CONVERSATION_GAP: `${GAP_MS}ms`, PUNCTUATE_INTERVAL: '1s', DATABASE_URL: dbUrl });
  const topics = topicNames({ topicPrefix: run.prefix, appId: run.appId });
  const children: Child[] = [];
  const consumer = kafka.consumer({ groupId: `${run.prefix}downstream`, readUncommitted: false, maxWaitTimeInMs: 50 });
  const pgAdmin = new Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  await pgAdmin.connect();
  try {
    await pgAdmin.query(`CREATE DATABASE "${dbName}"`);
    await createTopics(admin, [topics.messages], 6, { 'retention.ms': String(86_400_000) });
    const port = await freePort();
    const app = spawnRole('all', { ...run.env, METRICS_PORT: String(port) });
    children.push(app);
    await waitReady(port, app, 180_000);

    const lastProduced = new Map<string, number>();
    const byChat = new Map<string, { first: number; last: number; passes: Set<string> }>();
    const passes = new Set<string>();
    await consumer.connect();
    await consumer.subscribe({ topics: [topics.completed], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const now = Date.now();
        const e = JSON.parse(message.value!.toString('utf8')) as { chat_id: string; pass_name: string; status: string };
        passes.add(e.pass_name);
        let s = byChat.get(e.chat_id);
        if (!s) byChat.set(e.chat_id, (s = { first: now, last: now, passes: new Set() }));
        s.last = now;
        s.passes.add(e.pass_name);
      },
    });
    opts.log(`[e2e] live traffic: ${opts.chats} chats over ${opts.seconds} s through tracker, ETL (PostgreSQL) and analysis`);
    await liveTraffic(kafka, [topics.messages], opts.chats, opts.seconds, 23, (chat, at) => lastProduced.set(chat, at));
    const deadline = Date.now() + GAP_MS + 60_000;
    let stable = 0;
    let lastCount = -1;
    while (Date.now() < deadline) {
      await sleep(500);
      const events = [...byChat.values()].reduce((n, s) => n + s.passes.size, 0);
      if (byChat.size >= opts.chats && events === lastCount) { if (++stable >= 6) break; } else stable = 0;
      lastCount = events;
    }
    const first: number[] = [];
    const all: number[] = [];
    for (const [chat, s] of byChat) {
      const t = lastProduced.get(chat);
      if (t === undefined) continue;
      first.push(s.first - t);
      all.push(s.last - t);
    }
    return { conversations: byChat.size, passes: [...passes].sort(), firstPass: stats(first, opts.chats), allPasses: stats(all, opts.chats), gapMs: GAP_MS };
  } finally {
    await consumer.disconnect().catch(() => undefined);
    for (const c of children) await c.stop('SIGTERM', 30_000).catch(() => undefined);
    await cleanup(admin, [run.prefix, run.appId]).catch(() => 0);
    await admin.disconnect();
    removeDir(run.stateDir);
    await pgAdmin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => undefined);
    await pgAdmin.end();
  }
}
