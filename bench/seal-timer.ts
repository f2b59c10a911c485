// The seal timer under load (issue 13), against `chatstats run tracker` processes on the broker:
//
// burst: one tracker (6 partitions) holds N chats whose deadlines fall in the same millisecond
//   (one message each, the same sent_at). While they come due, probe messages on other chats
//   arrive at a steady rate. Measured: when a read_committed consumer receives the first and the
//   last of the N sealed events (past the deadline), none missing or duplicated, the number of
//   punctuations that sealed (from the tracker's metrics), and the input lag: the age of the
//   oldest probe not yet committed by the tracker (its group's committed offsets, polled every
//   50 ms), before the burst and during it. Variants, one after the other (each alone on the
//   machine): the seal timer with PUNCTUATE_MAX_SEALS 1000 (the default, chunks of 1,000 chats,
//   each its own transaction) and with no bound (one transaction per partition for the burst).
// idle: trackers holding N open chats (deadlines 90 min ahead) and no traffic, side by side: the
//   seal timer, the old fixed tick at 1 s and at 250 ms. Measured: CPU time of each process
//   (/proc/<pid>/stat) over the same window.
import { readFileSync } from 'node:fs';
import type { Kafka, Admin } from 'kafkajs';
import type { ChatMessage } from '../src/records/types';
import { topicNames } from '../src/topics';
import { javaCompatiblePartitioner } from '../src/records/partitioner';
import { encodeMessage } from './generator';
import type { SealTimerMode } from '../src/runtime/deadline-timer';
import {
  benchKafka, cleanup, createTopics, newRun, quantile, removeDir, sleep, topicEnd, groupCommitted, type Child, type RunEnv,
} from './lib';
import { startTracker } from './latency';

const message = (chat: string, i: number, sentAt: number): ChatMessage => ({
  message_id: `${chat}:${i}`, chat_id: chat, sender_id: 'u1', sent_at: sentAt, text: 'a typical short message of a few words',
  chat_type: 'direct', is_from_me: false, reply_to_message_id: null, account_id: null,
});

/** Produces one message for each of `chats` chats (`prefix`0..n-1), sent_at from `sentAt`, to every topic. */
async function populate(kafka: Kafka, topics: string[], prefix: string, chats: number, sentAt: (i: number) => number): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
  await producer.connect();
  try {
    for (let i = 0; i < chats; i += 5000) {
      const records: { key: string; value: Buffer }[] = [];
      for (let j = i; j < Math.min(chats, i + 5000); j++) {
        const m = message(`${prefix}${j}`, 0, sentAt(j));
        records.push({ key: m.chat_id, value: encodeMessage(m) });
      }
      for (let attempt = 0; ; attempt++) {
        try {
          await producer.sendBatch({ acks: -1, topicMessages: topics.map((topic) => ({ topic, messages: records })) });
          break;
        } catch (e) {
          // New topics on a loaded broker: metadata may lag a little behind their creation.
          if (attempt >= 10) throw e;
          await sleep(500);
        }
      }
    }
  } finally {
    await producer.disconnect();
  }
}

async function waitCaughtUp(admin: Admin, groupId: string, topic: string, timeoutMs: number): Promise<boolean> {
  const end = await topicEnd(admin, topic);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try { if ((await groupCommitted(admin, groupId, topic)) >= end) return true; } catch { /* not yet */ }
    await sleep(200);
  }
  return false;
}

/** A Prometheus counter's samples from a tracker's /metrics, by label set. */
async function counter(port: number, name: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^[^{\s]+(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out[m[1] ?? ''] = Number(m[2]);
  }
  return out;
}

function cpuMs(pid: number | undefined): number {
  // utime + stime, in clock ticks (100 per second on Linux).
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

// ---------------------------------------------------------------------------------------------

export interface LagStats { samples: number; p50: number; p99: number; max: number }

export interface BurstResult {
  variant: string;
  sealTimer: SealTimerMode;
  maxSeals: number;
  chats: number;
  gapMs: number;
  /** The tracker had committed all N messages before their deadline. */
  readyBeforeDeadline: boolean;
  /** Receipt at the read_committed consumer - deadline (ms). */
  firstSealMs: number;
  lastSealMs: number;
  received: number;
  duplicates: number;
  missing: number;
  /** Punctuations that sealed, by trigger, during the run (tracker metrics). */
  sealingPunctuations: Record<string, number>;
  probesPerSecond: number;
  /** Age of the oldest uncommitted probe (ms): in the 5 s before the deadline, and from the deadline to the last seal. */
  inputLagBefore: LagStats;
  inputLagDuring: LagStats;
}

function lagStats(xs: number[]): LagStats {
  return { samples: xs.length, p50: quantile(xs, 0.5), p99: quantile(xs, 0.99), max: xs.length ? Math.max(...xs) : NaN };
}

export async function runBurst(opts: {
  chats: number; gapMs: number; probesPerSecond: number; variants: { variant: string; sealTimer: SealTimerMode; maxSeals: number }[]; log: (s: string) => void;
  trackerEnv?: Record<string, string>; keepOutput?: (output: string) => void;
}): Promise<BurstResult[]> {
  const out: BurstResult[] = [];
  for (const v of opts.variants) {
    opts.log(`[burst] ${opts.chats.toLocaleString('en-US')} coinciding deadlines, ${v.variant}`);
    out.push(await burstOnce({ ...opts, ...v }));
    opts.log(`[burst] ${v.variant}: last sealed ${out[out.length - 1]!.lastSealMs} ms past the deadline; input lag during p99 ${out[out.length - 1]!.inputLagDuring.p99} ms`);
  }
  return out;
}

async function burstOnce(opts: {
  chats: number; gapMs: number; probesPerSecond: number; variant: string; sealTimer: SealTimerMode; maxSeals: number;
  trackerEnv?: Record<string, string>; keepOutput?: (output: string) => void;
}): Promise<BurstResult> {
  const kafka = benchKafka('bench-burst');
  const admin = kafka.admin();
  await admin.connect();
  const run = newRun(`burst-${opts.sealTimer}-${opts.maxSeals}`, {
    CONVERSATION_GAP: `${opts.gapMs}ms`, PUNCTUATE_INTERVAL: '1s', SEAL_TIMER: opts.sealTimer, PUNCTUATE_MAX_SEALS: String(opts.maxSeals),
    ...(opts.trackerEnv ?? {}),
  });
  const topics = topicNames({ topicPrefix: run.prefix, appId: run.appId });
  const groupId = `${run.appId}-tracker`;
  let tracker: Child | null = null;
  const consumer = kafka.consumer({ groupId: `${run.prefix}downstream`, readUncommitted: false, maxWaitTimeInMs: 50 });
  let stopProbes = false;
  try {
    await createTopics(admin, [topics.messages], 6, { 'retention.ms': String(86_400_000) });
    const started = await startTracker(run.env);
    tracker = started.child;
    const port = started.port;

    // Sealed events, by chat; the consumer has joined its group before the burst starts.
    const receipts = new Map<string, number[]>();
    const seen = new Set<string>();
    const joined = new Promise<void>((r) => consumer.on(consumer.events.GROUP_JOIN, () => r()));
    await consumer.connect();
    await consumer.subscribe({ topics: [topics.sealed], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        const now = Date.now();
        for (const m of batch.messages) {
          // A redelivery (a rebalance of the consumer's group) is not a second sealed event.
          const id = `${batch.partition}/${m.offset}`;
          if (seen.has(id)) continue;
          seen.add(id);
          const chat = m.key!.toString();
          if (!chat.startsWith('burst-')) continue;
          const l = receipts.get(chat);
          if (l) l.push(now); else receipts.set(chat, [now]);
        }
      },
    });
    await joined;

    const T = Date.now();
    const deadline = T + opts.gapMs;
    await populate(kafka, [topics.messages], 'burst-', opts.chats, () => T);
    const readyBeforeDeadline = await waitCaughtUp(admin, groupId, topics.messages, deadline - Date.now() - 1000);

    // Probes from 5 s before the deadline; offsets remembered per partition with their send time.
    const sentAt = new Map<number, { offset: number; at: number }[]>();
    const probeStart = Math.max(Date.now(), deadline - 5000);
    await sleep(probeStart - Date.now());
    const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
    await producer.connect();
    const probes = (async () => {
      const every = 1000 / opts.probesPerSecond;
      for (let k = 0; !stopProbes; k++) {
        const wait = probeStart + k * every - Date.now();
        if (wait > 0) await sleep(wait);
        const m = message(`probe-${k % 5000}`, k, Date.now());
        const at = Date.now();
        const [meta] = await producer.send({ topic: topics.messages, acks: -1, messages: [{ key: m.chat_id, value: encodeMessage(m) }] });
        const list = sentAt.get(meta!.partition) ?? [];
        list.push({ offset: Number(meta!.baseOffset), at });
        sentAt.set(meta!.partition, list);
      }
    })();

    // Input lag: poll the tracker group's committed offsets.
    const before: number[] = [];
    const during: { t: number; lag: number }[] = [];
    const maxEnd = deadline + 300_000;
    let lastSeal = 0;
    for (;;) {
      const now = Date.now();
      let lag = 0;
      try {
        const res = await admin.fetchOffsets({ groupId, topics: [topics.messages] });
        for (const p of res[0]?.partitions ?? []) {
          const committed = Number(p.offset);
          const oldest = (sentAt.get(p.partition) ?? []).find((x) => x.offset >= committed);
          if (oldest) lag = Math.max(lag, now - oldest.at);
        }
      } catch { /* skip a sample */ }
      if (now < deadline) before.push(lag); else during.push({ t: now, lag });
      if (receipts.size >= opts.chats) { lastSeal = Math.max(...[...receipts.values()].map((l) => l[0]!)); break; }
      if (now > maxEnd) break;
      await sleep(50);
    }
    stopProbes = true;
    await probes;
    await producer.disconnect();
    await sleep(1500); // late duplicates would show up now
    const firsts = [...receipts.values()].map((l) => l[0]!);
    const duplicates = [...receipts.values()].reduce((n, l) => n + l.length - 1, 0);
    const metrics = await counter(port, 'chatstats_punctuations_total');
    const sealingPunctuations: Record<string, number> = {};
    for (const [labels, n] of Object.entries(metrics)) {
      const m = /trigger="(\w+)",result="sealed"/.exec(labels);
      if (m) sealingPunctuations[m[1]!] = n;
    }
    // The samples from the deadline to the last seal's receipt.
    const duringWindow = during.filter((x) => lastSeal === 0 || x.t <= lastSeal + 50).map((x) => x.lag);
    return {
      variant: opts.variant, sealTimer: opts.sealTimer, maxSeals: opts.maxSeals, chats: opts.chats, gapMs: opts.gapMs, readyBeforeDeadline,
      firstSealMs: firsts.length ? Math.min(...firsts) - deadline : NaN,
      lastSealMs: firsts.length ? Math.max(...firsts) - deadline : NaN,
      received: receipts.size, duplicates, missing: opts.chats - receipts.size,
      sealingPunctuations, probesPerSecond: opts.probesPerSecond,
      inputLagBefore: lagStats(before), inputLagDuring: lagStats(duringWindow),
    };
  } finally {
    stopProbes = true;
    await consumer.disconnect().catch(() => undefined);
    await tracker?.stop('SIGTERM', 30_000).catch(() => undefined);
    if (tracker) opts.keepOutput?.(tracker.output());
    await cleanup(admin, [run.prefix, run.appId]).catch(() => 0);
    await admin.disconnect();
    removeDir(run.stateDir);
  }
}

// ---------------------------------------------------------------------------------------------

export interface IdleResult {
  chats: number;
  seconds: number;
  trackers: { label: string; sealTimer: SealTimerMode; tickMs: number; cpuMs: number; cpuPercent: number; windowsMs: number[]; rssMb: number }[];
}

const IDLE: { label: string; sealTimer: SealTimerMode; tickMs: number }[] = [
  { label: 'seal timer, prepared ahead (prepare), tick 1 s', sealTimer: 'prepare', tickMs: 1000 },
  { label: 'seal timer (deadline), tick 1 s', sealTimer: 'deadline', tickMs: 1000 },
  { label: 'fixed tick 1 s', sealTimer: 'tick', tickMs: 1000 },
  { label: 'fixed tick 250 ms', sealTimer: 'tick', tickMs: 250 },
];

export async function runIdle(opts: { chats: number; seconds: number; log: (s: string) => void }): Promise<IdleResult> {
  const kafka = benchKafka('bench-idle');
  const admin = kafka.admin();
  await admin.connect();
  const runs: RunEnv[] = IDLE.map((t) => newRun(`idle-${t.sealTimer}${t.tickMs}`, { PUNCTUATE_INTERVAL: `${t.tickMs}ms`, SEAL_TIMER: t.sealTimer }));
  const topics = runs.map((r) => topicNames({ topicPrefix: r.prefix, appId: r.appId }));
  const children: Child[] = [];
  try {
    for (const t of topics) await createTopics(admin, [t.messages], 6, { 'retention.ms': String(86_400_000) });
    opts.log(`[idle] ${opts.chats.toLocaleString('en-US')} open chats (gap 90 min) in each of ${IDLE.map((t) => t.label).join(', ')}`);
    const now = Date.now();
    await populate(kafka, topics.map((t) => t.messages), 'idle-', opts.chats, (i) => now - (i % 1000));
    for (const run of runs) children.push((await startTracker(run.env)).child);
    for (let i = 0; i < runs.length; i++) {
      if (!(await waitCaughtUp(admin, `${runs[i]!.appId}-tracker`, topics[i]!.messages, 300_000))) throw new Error(`${IDLE[i]!.label} did not catch up`);
    }
    await sleep(5000); // compactions and the first caught-up ticks settle
    // Three windows one after the other: the other work on a shared machine moves single readings.
    const windows: number[][] = [];
    let wall = 0;
    for (let w = 0; w < 3; w++) {
      const start = children.map((c) => cpuMs(c.proc.pid));
      const t0 = Date.now();
      await sleep((opts.seconds * 1000) / 3);
      wall += Date.now() - t0;
      windows.push(children.map((c, i) => cpuMs(c.proc.pid) - start[i]!));
    }
    for (const c of children) c.sample();
    return {
      chats: opts.chats, seconds: wall / 1000,
      trackers: IDLE.map((t, i) => {
        const ms = windows.reduce((sum, w) => sum + w[i]!, 0);
        return { ...t, cpuMs: ms, cpuPercent: (100 * ms) / wall, windowsMs: windows.map((w) => w[i]!), rssMb: children[i]!.mem.lastRssMb };
      }),
    };
  } finally {
    for (const c of children) await c.stop('SIGTERM', 30_000).catch(() => undefined);
    await cleanup(admin, runs.flatMap((r) => [r.prefix, r.appId])).catch(() => 0);
    await admin.disconnect();
    for (const r of runs) removeDir(r.stateDir);
  }
}
