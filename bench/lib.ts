// Shared by the benchmarks: isolated runs (topic prefix, application id, state directory), topic
// creation and deletion, a fast ordered producer, consumer-group progress, child processes and
// their memory, reading a topic as a read_committed consumer, and small statistics.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import '../src/kafkajs-patch'; // before kafkajs loads: its grouping, Encoder growth and Produce encoding
import { Kafka, logLevel, type Admin, type Message } from 'kafkajs';
import type { ChatMessage } from '../src/records/types';
import { javaCompatiblePartitioner } from '../src/records/partitioner';
import { PartitionReader, type RawRecord } from '../src/runtime/partition-reader';
import { encodeMessage } from './generator';

export const ROOT = path.resolve(__dirname, '../..');
export const BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
export const IRC_SAMPLE = path.join(ROOT, 'data/irc/irc-new-domains.messages.jsonl');
export const KS_JAR = path.join(ROOT, 'bench/kafka-streams-baseline/target/kafka-streams-baseline.jar');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function benchKafka(clientId = 'bench'): Kafka {
  return new Kafka({ clientId, brokers: [BROKERS], logLevel: logLevel.NOTHING });
}

export interface RunEnv {
  id: string;
  prefix: string;
  appId: string;
  stateDir: string;
  /** Environment for `chatstats run`. */
  env: Record<string, string>;
}

/** A fresh, isolated run: its own topic prefix, application id and state directory. */
export function newRun(name: string, extra: Record<string, string> = {}): RunEnv {
  const id = `bench-${name}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  const prefix = `${id}.`;
  const appId = `cs-${id}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), `chatstats-${name}-`));
  return {
    id, prefix, appId, stateDir,
    env: {
      KAFKA_BROKERS: BROKERS, TOPIC_PREFIX: prefix, APP_ID: appId, STATE_DIR: stateDir, METRICS_PORT: '0',
      LOG_LEVEL: 'warn', LOG_FORMAT: 'json', TOPIC_PARTITIONS: '6',
      // As the image runs it (Dockerfile): glibc keeps two malloc arenas, not one per thread.
      MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2', ...extra,
    },
  };
}

/** Creates topics (retention off: backlogs carry old event times). */
export async function createTopics(admin: Admin, names: string[], partitions = 6, config: Record<string, string> = {}): Promise<void> {
  const existing = new Set(await admin.listTopics());
  const missing = names.filter((n) => !existing.has(n));
  if (missing.length === 0) return;
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({
          topic, numPartitions: partitions,
          configEntries: Object.entries({ 'retention.ms': '-1', 'max.message.bytes': '8388608', ...config }).map(([name, value]) => ({ name, value })),
        })),
      });
      break;
    } catch (e) {
      // A loaded broker may answer UNKNOWN_TOPIC_OR_PARTITION while it waits for the new leaders.
      if (!(e as { retriable?: boolean }).retriable || attempt >= 5) throw e;
      await sleep(1000);
    }
  }
  for (let i = 0; i < 50; i++) {
    try {
      const md = await admin.fetchTopicMetadata({ topics: missing });
      if (md.topics.every((t) => t.partitions.length === partitions && t.partitions.every((p) => p.leader >= 0))) return;
    } catch { /* not yet */ }
    await sleep(100);
  }
}

/** Deletes every topic and consumer group whose name starts with one of the prefixes. */
export async function cleanup(admin: Admin, prefixes: string[]): Promise<number> {
  const match = (n: string) => prefixes.some((p) => n.startsWith(p));
  const topics = (await admin.listTopics()).filter(match);
  if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 }).catch(() => undefined);
  // A group whose member has just left may still refuse deletion for a moment: retry.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter(match);
      if (groups.length === 0) break;
      await admin.deleteGroups(groups);
      break;
    } catch {
      await sleep(1000);
    }
  }
  return topics.length;
}

export function removeDir(dir: string): void {
  try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
}

/**
 * Produces messages in the given order (key chat_id, murmur2 partitioning like the Java client,
 * record timestamp = sent_at so that timestamp-based peers see event time), one request at a time
 * so that each partition keeps the order. Returns the number of records and the rate.
 */
export async function produceAll(kafka: Kafka, topic: string, messages: Iterable<ChatMessage>,
  opts: { batch?: number; onProgress?: (n: number) => void } = {}): Promise<{ records: number; ms: number; bytes: number }> {
  const producer = kafka.producer({ allowAutoTopicCreation: false, maxInFlightRequests: 1, idempotent: false, createPartitioner: javaCompatiblePartitioner() });
  await producer.connect();
  const batchSize = opts.batch ?? 6000;
  const t0 = Date.now();
  let records = 0;
  let bytes = 0;
  let batch: Message[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await producer.send({ topic, messages: batch, acks: -1 });
    records += batch.length;
    batch = [];
    opts.onProgress?.(records);
  };
  try {
    for (const m of messages) {
      const value = encodeMessage(m);
      bytes += value.length;
      batch.push({ key: m.chat_id, value, timestamp: String(m.sent_at) });
      if (batch.length >= batchSize) await flush();
    }
    await flush();
  } finally {
    await producer.disconnect();
  }
  return { records, ms: Date.now() - t0, bytes };
}

/** Sum of a topic's end offsets (high watermarks). */
export async function topicEnd(admin: Admin, topic: string): Promise<number> {
  const offs = await admin.fetchTopicOffsets(topic);
  return offs.reduce((s, p) => s + Number(p.high), 0);
}

/** Waits until a topic's end has not moved for a second (at most `maxSeconds`); returns that end. */
export async function waitTopicSettled(admin: Admin, topic: string, maxSeconds = 60): Promise<number> {
  let end = -1;
  for (let i = 0; i < maxSeconds; i++) {
    await sleep(1000);
    const e = await topicEnd(admin, topic);
    if (e === end) break;
    end = e;
  }
  return end;
}

/** Sum of a group's committed offsets on a topic (unset partitions count 0). */
export async function groupCommitted(admin: Admin, groupId: string, topic: string): Promise<number> {
  const res = await admin.fetchOffsets({ groupId, topics: [topic] });
  let sum = 0;
  for (const p of res[0]?.partitions ?? []) {
    const o = Number(p.offset);
    if (o > 0) sum += o;
  }
  return sum;
}

export interface Progress {
  /** When the first committed offset was seen (ms since epoch), or null. */
  firstAt: number | null;
  /** Committed offsets at that first reading. */
  firstCommitted: number;
  /** When the committed offsets reached the end, or null on timeout. */
  doneAt: number | null;
  committed: number;
  end: number;
}

/**
 * Polls a consumer group's committed offsets until they reach the topic's end (every `everyMs`),
 * or until `timeoutMs`. `onTick` sees each reading (for memory sampling, progress lines).
 */
export async function waitForGroup(admin: Admin, groupId: string, topic: string, end: number,
  opts: { timeoutMs: number; everyMs?: number; onTick?: (committed: number) => void; failed?: () => string | null }): Promise<Progress> {
  const deadline = Date.now() + opts.timeoutMs;
  const out: Progress = { firstAt: null, firstCommitted: 0, doneAt: null, committed: 0, end };
  for (;;) {
    let committed = 0;
    try { committed = await groupCommitted(admin, groupId, topic); } catch { /* group not there yet */ }
    const now = Date.now();
    out.committed = committed;
    if (committed > 0 && out.firstAt === null) { out.firstAt = now; out.firstCommitted = committed; }
    opts.onTick?.(committed);
    if (committed >= end) { out.doneAt = now; return out; }
    const failure = opts.failed?.();
    if (failure) throw new Error(failure);
    if (now > deadline) return out;
    await sleep(opts.everyMs ?? 200);
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes

export interface Child {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  exitCode: () => number | null | undefined;
  /** Peak and last resident set size seen by sample() (MB). */
  mem: { peakRssMb: number; lastRssMb: number };
  sample(): void;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

export function spawnChild(cmd: string, args: string[], env: Record<string, string>, opts: { cwd?: string } = {}): Child {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd ?? ROOT });
  let out = '';
  const keep = (d: Buffer) => { out += d.toString(); if (out.length > 2_000_000) out = out.slice(-1_000_000); };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  let code: number | null | undefined;
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => { code = c; r(c); }));
  const mem = { peakRssMb: 0, lastRssMb: 0 };
  return {
    proc, exited, mem,
    output: () => out,
    exitCode: () => code,
    sample: () => {
      const rss = rssMb(proc.pid);
      if (rss !== null) { mem.lastRssMb = rss; if (rss > mem.peakRssMb) mem.peakRssMb = rss; }
    },
    stop: async (signal = 'SIGTERM', graceMs = 60_000) => {
      if (code !== undefined) return code;
      proc.kill(signal);
      const t = setTimeout(() => { if (code === undefined) proc.kill('SIGKILL'); }, graceMs);
      const c = await exited;
      clearTimeout(t);
      return c;
    },
  };
}

/** `chatstats run <role>` as a child process. */
export function spawnRole(role: string, env: Record<string, string>): Child {
  return spawnChild(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'run', role], env);
}

/** A compiled bench script (dist/bench/<name>.js) as a child process. */
export function spawnBenchScript(name: string, env: Record<string, string>, nodeArgs: string[] = []): Child {
  return spawnChild(process.execPath, [...nodeArgs, path.join(__dirname, `${name}.js`)], env);
}

export function rssMb(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** The last JSON line of a child's output that has `event` equal to `name`. */
export function lastEvent<T = Record<string, unknown>>(output: string, name: string): T | null {
  let found: T | null = null;
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const o = JSON.parse(line) as { event?: string };
      if (o.event === name) found = o as T;
    } catch { /* not ours */ }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Reading topics

/** Visits every committed record of a topic, partition by partition (read_committed). */
export async function scanTopic(kafka: Kafka, topic: string, visit: (r: RawRecord, partition: number) => void): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  let partitions: number[];
  try {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    partitions = md.topics[0]!.partitions.map((p) => p.partitionId);
  } finally {
    await admin.disconnect();
  }
  const reader = new PartitionReader(kafka);
  let n = 0;
  try {
    const begins = await reader.beginOffsets(topic, partitions);
    const ends = await reader.endOffsets(topic, partitions);
    for (const p of partitions) {
      n += await reader.read(topic, p, begins.get(p) ?? 0, ends.get(p) ?? 0, (records) => { for (const r of records) visit(r, p); });
    }
  } finally {
    await reader.disconnect();
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(n);
}

export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : 'n/a';
}

export function loadAverage(): string {
  return os.loadavg().map((x) => x.toFixed(2)).join(' ');
}

export function dirSizeMb(dir: string): number {
  // du is cheap and exact enough here.
  try {
    const { execFileSync } = require('node:child_process') as typeof import('node:child_process');
    const out = execFileSync('du', ['-sk', dir], { encoding: 'utf8' });
    return Number(out.split('\t')[0]) / 1024;
  } catch {
    return NaN;
  }
}
