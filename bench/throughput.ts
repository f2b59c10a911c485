// Throughput on a backlog, side by side in one run, and whether the systems agree:
//   raw      a plain kafkajs consumer that only counts (the ceiling for a kafkajs consumer),
//   copy     an exactly-once copy on kafkajs (bench/copy-through.ts): the same bytes to an output
//            topic with the offsets, one transaction per fetch, no processing (the ceiling for an
//            exactly-once processor on kafkajs),
//   tracker  ours: `chatstats run tracker`, one instance, exactly-once (always),
//   ks       Kafka Streams 4.1.1: session windows, emit on window close, RocksDB, exactly_once_v2,
//   flow     @kafkats/flow: session windows (reduce), exactly_once, in-memory store.
// Each runs as its own child process on the same input topic; the time is from spawning it to its
// consumer group's committed offsets reaching the end of the input (the raw consumer, which
// commits nothing, reports its own time). The raw consumer runs before and after the others.
// Then the restore of the tracker's store from its changelog, into an empty state directory.
// With `threads`, the tracker (STREAM_THREADS) and Kafka Streams (THREADS) run again per thread
// count after their one-thread runs, each from nothing on the same input.
import net from 'node:net';
import type { Admin, Kafka } from 'kafkajs';
import type { ChatMessage } from '../src/records/types';
import { topicNames } from '../src/topics';
import {
  benchKafka, cleanup, createTopics, dirSizeMb, groupCommitted, KS_JAR, lastEvent, newRun, produceAll, removeDir,
  scanTopic, sleep, spawnBenchScript, spawnChild, spawnRole, topicEnd, waitForGroup, waitTopicSettled, type Child, type RunEnv,
} from './lib';

export interface Dataset {
  name: string;
  describe: string;
  gapMs: number;
  messages: () => Iterable<ChatMessage>;
}

export interface SystemRun {
  system: string;
  /** Records counted or committed. */
  records: number;
  /** From spawn to caught up (ms); null when it did not finish within its budget. */
  ms: number | null;
  /** From the first committed offset (or first batch) to caught up (ms). */
  steadyMs: number | null;
  rate: number;
  steadyRate: number;
  peakRssMb: number;
  note?: string;
  /** Transactions committed (copy-through). */
  transactions?: number;
}

export interface Agreement {
  other: string;
  /** Our NEXT_MESSAGE conversations. */
  ours: number;
  /** ... found in the other's output with the same chat, bounds and set of message ids. */
  identical: number;
  /** ... of which the other counts more messages (duplicate deliveries counted twice). */
  identicalCountDiffers: number;
  /** ... same chat and bounds, other message ids (duplicates counted twice, dropped records). */
  sameBoundsOtherIds: number;
  /** ... not found with the same bounds. */
  missing: number;
  /** ... of which the other has a session of the chat overlapping ours (other boundaries). */
  missingOverlapped: number;
  /** Sessions of the other that match none of ours (any seal reason), by chat and bounds. */
  extra: number;
  /** Sessions the other emitted. */
  otherSessions: number;
  /** Examples of differences, for the explanation. */
  examples: string[];
}

export interface RestoreRun {
  changelogRecords: number;
  /** Bytes of the changelog's values (the chats' states, rewritten once per transaction that changes them). */
  changelogMb: number;
  storeMb: number;
  restoreMs: number;
  /** Of restoreMs (the slowest partition's): its rebuild after the changelog was read. */
  rebuildMs: number;
  restoredRecords: number;
  readyMs: number;
}

export interface ThroughputResult {
  dataset: string;
  describe: string;
  records: number;
  produce: { ms: number; mb: number };
  runs: SystemRun[];
  sealed: { total: number; byReason: Record<string, number>; late: number };
  agreements: Agreement[];
  restore: RestoreRun | null;
  ksDropped: number | null;
}

export interface ThroughputOptions {
  ks: boolean;
  /** The exactly-once copy-through (default true). */
  copy?: boolean;
  flow: boolean;
  /** Budget of each system (ms). */
  budgetMs: number;
  flowBudgetMs: number;
  restore: boolean;
  compare: boolean;
  log: (line: string) => void;
  /**
   * Thread counts above 1 to run the tracker (STREAM_THREADS) and, with `ks`, Kafka Streams
   * (THREADS) with too, each after the one-thread runs (default none). Not with `compare`: these
   * trackers write into the same sealed topic as the first.
   */
  threads?: number[];
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** A partition in `GET /v1/tracker/status` (snake_case, as the API answers). */
interface StatusPartition { partition: number; state: string; position: number; end: number; caught_up: boolean; restore_ms: number; restore_rebuild_ms: number; restored_records: number }

function rateOf(records: number, ms: number | null): number {
  return ms === null || ms <= 0 ? NaN : (records * 1000) / ms;
}

async function timeSystem(admin: Admin, system: string, child: Child, group: string, topic: string, end: number, budgetMs: number,
  log: (s: string) => void): Promise<SystemRun> {
  const t0 = Date.now();
  let lastLog = t0;
  const p = await waitForGroup(admin, group, topic, end, {
    timeoutMs: budgetMs,
    everyMs: 200,
    onTick: (c) => {
      child.sample();
      if (Date.now() - lastLog > 15_000) { lastLog = Date.now(); log(`  ${system}: ${c}/${end} committed`); }
    },
    failed: () => (child.exitCode() !== undefined ? `${system} exited with ${child.exitCode()}: ${child.output().slice(-2000)}` : null),
  });
  const ms = p.doneAt === null ? null : p.doneAt - t0;
  const steadyMs = p.doneAt === null || p.firstAt === null ? null : p.doneAt - p.firstAt;
  const run: SystemRun = {
    system, records: p.committed, ms, steadyMs, rate: rateOf(end, ms), steadyRate: rateOf(end - p.firstCommitted, steadyMs), peakRssMb: child.mem.peakRssMb,
  };
  if (p.doneAt === null) {
    // Not finished: the rate so far, from the first commit.
    const elapsed = Date.now() - (p.firstAt ?? t0);
    run.rate = (p.committed * 1000) / (Date.now() - t0);
    run.steadyRate = (p.committed * 1000) / Math.max(1, elapsed);
    run.note = `did not catch up within ${Math.round(budgetMs / 1000)} s: ${p.committed.toLocaleString('en-US')} of ${end.toLocaleString('en-US')} records committed`;
  }
  return run;
}

async function rawConsume(run: RunEnv, topic: string, end: number, tag: string): Promise<SystemRun> {
  const child = spawnBenchScript('raw-consume', { TOPIC: topic, EXPECTED: String(end), GROUP: `${run.prefix}raw-${tag}` });
  const timer = setInterval(() => child.sample(), 200);
  const code = await child.exited;
  clearInterval(timer);
  const r = lastEvent<{ records: number; ms: number; firstBatchMs: number }>(child.output(), 'raw');
  if (code !== 0 || r === null) throw new Error(`raw consumer failed: ${child.output().slice(-2000)}`);
  return {
    system: `raw kafkajs (${tag})`, records: r.records, ms: r.ms, steadyMs: r.ms - r.firstBatchMs,
    rate: rateOf(r.records, r.ms), steadyRate: rateOf(r.records, r.ms - r.firstBatchMs), peakRssMb: child.mem.peakRssMb,
  };
}

// ---------------------------------------------------------------------------------------------
// Outputs, as comparable sessions

interface Session { chat: string; start: number; end: number; ids: string[]; reason?: string }
const boundsKey = (s: Session) => `${s.chat}\u0000${s.start}\u0000${s.end}`;
const idSetKey = (ids: string[]) => [...new Set(ids)].sort().join('\n');

async function ourSessions(kafka: Kafka, topic: string): Promise<Session[]> {
  const out: Session[] = [];
  await scanTopic(kafka, topic, (r) => {
    const c = JSON.parse(r.value!.toString('utf8')) as { chat_id: string; started_at: number; ended_at: number; seal_reason: string; messages: { message_id: string }[] };
    out.push({ chat: c.chat_id, start: c.started_at, end: c.ended_at, ids: c.messages.map((m) => m.message_id), reason: c.seal_reason });
  });
  return out;
}

async function ksSessions(kafka: Kafka, topic: string): Promise<Session[]> {
  const out: Session[] = [];
  await scanTopic(kafka, topic, (r) => {
    const s = JSON.parse(r.value!.toString('utf8')) as { chat_id: string; start: number; end: number; message_ids: string[] };
    out.push({ chat: s.chat_id, start: s.start, end: s.end, ids: s.message_ids });
  });
  return out;
}

/** Final sessions of @kafkats/flow: the last value per windowed key, tombstones removing. */
async function flowSessions(kafka: Kafka, topic: string): Promise<Session[]> {
  const last = new Map<string, Session | null>();
  await scanTopic(kafka, topic, (r) => {
    const k = r.key!;
    const chat = k.subarray(0, k.length - 16).toString('utf8');
    const start = Number(k.readBigInt64BE(k.length - 16));
    const end = Number(k.readBigInt64BE(k.length - 8));
    const s: Session = { chat, start, end, ids: r.value === null ? [] : r.value.toString('utf8').split('\n') };
    last.set(boundsKey(s), r.value === null ? null : s);
  });
  return [...last.values()].filter((s): s is Session => s !== null);
}

function agree(other: string, ours: Session[], theirs: Session[]): Agreement {
  const next = ours.filter((s) => s.reason === 'NEXT_MESSAGE');
  const byBounds = new Map<string, Session>();
  for (const s of theirs) byBounds.set(boundsKey(s), s);
  const oursByBounds = new Set(ours.map(boundsKey));
  const byChat = new Map<string, Session[]>();
  for (const t of theirs) {
    let list = byChat.get(t.chat);
    if (!list) byChat.set(t.chat, (list = []));
    list.push(t);
  }
  const a: Agreement = {
    other, ours: next.length, identical: 0, identicalCountDiffers: 0, sameBoundsOtherIds: 0, missing: 0, missingOverlapped: 0,
    extra: 0, otherSessions: theirs.length, examples: [],
  };
  for (const s of next) {
    const t = byBounds.get(boundsKey(s));
    if (t === undefined) {
      a.missing++;
      if ((byChat.get(s.chat) ?? []).some((x) => x.start <= s.end && x.end >= s.start)) a.missingOverlapped++;
      if (a.examples.length < 6) a.examples.push(`missing: ${s.chat} [${s.start}..${s.end}] ${s.ids.length} msgs`);
    } else if (idSetKey(t.ids) === idSetKey(s.ids)) {
      a.identical++;
      if (t.ids.length !== s.ids.length) a.identicalCountDiffers++;
    } else {
      a.sameBoundsOtherIds++;
      if (a.examples.length < 6) a.examples.push(`ids differ: ${s.chat} [${s.start}..${s.end}] ours ${s.ids.length} (${new Set(s.ids).size} distinct), ${other} ${t.ids.length} (${new Set(t.ids).size} distinct)`);
    }
  }
  for (const t of theirs) if (!oursByBounds.has(boundsKey(t))) a.extra++;
  return a;
}

// ---------------------------------------------------------------------------------------------
// The timed runs of the tracker and Kafka Streams, one per thread count

/** What the timed runs of one dataset share. */
interface RunContext {
  ds: Dataset;
  opts: ThroughputOptions;
  admin: Admin;
  run: RunEnv;
  topics: ReturnType<typeof topicNames>;
  end: number;
  /** Stopped (SIGKILL) and removed at the end, whatever happens. */
  children: Child[];
  dirs: string[];
}

/** The `system` of the tracker's and Kafka Streams' runs at a thread count. */
export const trackerSystem = (threads: number) => (threads === 1 ? 'tracker' : `tracker, ${threads} stream threads`);
export const ksSystem = (threads: number) => (threads === 1 ? 'Kafka Streams' : `Kafka Streams, ${threads} threads`);

/** Kafka Streams' application id, output topic and state directory for a thread count. */
function ksNames(run: RunEnv, threads: number): { appId: string; output: string; stateDir: string } {
  const tag = threads === 1 ? 'ks' : `ks-t${threads}`;
  return { appId: `${run.prefix}${tag}`, output: `${run.prefix}${tag}.sessions`, stateDir: `${run.stateDir}-${tag}` };
}

/** Spawns the tracker with `threads` stream threads and times it to caught up; stopped once its sealed output settled. */
async function timeTracker(c: RunContext, threads: number): Promise<SystemRun> {
  // Another thread count starts from nothing as the first did: its own application id (so its own
  // group and changelog) and state directory. STREAM_THREADS is set even for 1 so that an
  // inherited one does not change the one-thread row.
  const env: Record<string, string> = { ...c.run.env, STREAM_THREADS: String(threads), METRICS_PORT: String(await freePort()) };
  if (threads > 1) {
    env.APP_ID = `${c.run.appId}-t${threads}`;
    env.STATE_DIR = `${c.run.stateDir}-t${threads}`;
    c.dirs.push(env.STATE_DIR);
  }
  const system = trackerSystem(threads);
  const tracker = spawnRole('tracker', env);
  c.children.push(tracker);
  const r = await timeSystem(c.admin, system, tracker, `${env.APP_ID}-tracker`, c.topics.messages, c.end, c.opts.budgetMs, c.opts.log);
  c.opts.log(`[${c.ds.name}] ${system}: ${Math.round(r.rate)} records/s${r.note ? ` (${r.note})` : ''}`);
  // The chats' last conversations seal by wall clock once caught up: wait for the sealed topic to settle.
  await waitTopicSettled(c.admin, c.topics.sealed);
  await tracker.stop('SIGTERM');
  return r;
}

/** Spawns Kafka Streams with `threads` stream threads and times it to caught up; `dropped` is its count of records behind the close time. */
async function timeKafkaStreams(c: RunContext, threads: number): Promise<{ run: SystemRun; dropped: number | null }> {
  const names = ksNames(c.run, threads);
  c.dirs.push(names.stateDir);
  const ks = spawnChild('java', [
    '-Xmx2g', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
    // One line per record dropped behind the close time: counted in the metric instead.
    '-Dorg.slf4j.simpleLogger.log.org.apache.kafka.streams.kstream.internals=error', '-jar', KS_JAR,
  ], {
    BOOTSTRAP: c.run.env.KAFKA_BROKERS!, APPLICATION_ID: names.appId, INPUT: c.topics.messages, OUTPUT: names.output,
    // THREADS even for 1: an inherited one would change the one-thread row.
    STATE_DIR: names.stateDir, GAP_MS: String(c.ds.gapMs), GRACE_MS: '0', THREADS: String(threads),
  });
  c.children.push(ks);
  const label = threads === 1 ? 'kafka-streams' : `kafka-streams, ${threads} threads`;
  const r = await timeSystem(c.admin, label, ks, names.appId, c.topics.messages, c.end, c.opts.budgetMs, c.opts.log);
  const system = ksSystem(threads);
  c.opts.log(`[${c.ds.name}] ${system}: ${Math.round(r.rate)} records/s${r.note ? ` (${r.note})` : ''}`);
  await ks.stop('SIGTERM');
  const closed = lastEvent<{ dropped: number }>(ks.output(), 'closed');
  return { run: { ...r, system }, dropped: closed?.dropped ?? null };
}

/** The thread counts above 1 of `opts.threads`, each once, in their order. */
function moreThreads(opts: ThroughputOptions): number[] {
  return [...new Set(opts.threads ?? [])].filter((n) => n > 1);
}

// ---------------------------------------------------------------------------------------------

export async function runThroughput(ds: Dataset, opts: ThroughputOptions): Promise<ThroughputResult> {
  const { log } = opts;
  const threads = moreThreads(opts);
  if (threads.length > 0 && opts.compare) throw new Error('throughput: `threads` with `compare` would count the sessions of every tracker run');
  const kafka = benchKafka(`bench-${ds.name}`);
  const admin = kafka.admin();
  await admin.connect();
  const gapEnv = { CONVERSATION_GAP: `${ds.gapMs}ms`, PUNCTUATE_INTERVAL: '1s' };
  const run = newRun(ds.name, gapEnv);
  const topics = topicNames({ topicPrefix: run.prefix, appId: run.appId });
  const flowOut = `${run.prefix}flow.sessions`;
  const copyOut = `${run.prefix}copy.out`;
  const dirs: string[] = [run.stateDir];
  const children: Child[] = [];
  try {
    const ksOuts = opts.ks ? [1, ...threads].map((n) => ksNames(run, n).output) : [];
    await createTopics(admin, [topics.messages, ...ksOuts, flowOut, ...(opts.copy === false ? [] : [copyOut])]);
    log(`[${ds.name}] producing ${ds.describe}`);
    const produced = await produceAll(kafka, topics.messages, ds.messages());
    const end = await topicEnd(admin, topics.messages);
    log(`[${ds.name}] ${end.toLocaleString('en-US')} records (${(produced.bytes / 1e6).toFixed(0)} MB) produced in ${(produced.ms / 1000).toFixed(1)} s`);
    const result: ThroughputResult = {
      dataset: ds.name, describe: ds.describe, records: end, produce: { ms: produced.ms, mb: produced.bytes / 1e6 },
      runs: [], sealed: { total: 0, byReason: {}, late: 0 }, agreements: [], restore: null, ksDropped: null,
    };
    const ctx: RunContext = { ds, opts, admin, run, topics, end, children, dirs };

    result.runs.push(await rawConsume(run, topics.messages, end, 'before'));
    log(`[${ds.name}] raw kafkajs: ${Math.round(result.runs[0]!.rate)} records/s`);

    if (opts.copy !== false) {
      const group = `${run.prefix}copy`;
      const copy = spawnBenchScript('copy-through', { KAFKA_BROKERS: run.env.KAFKA_BROKERS!, TOPIC: topics.messages, OUTPUT: copyOut, GROUP: group, EXPECTED: String(end) });
      children.push(copy);
      const r = await timeSystem(admin, 'copy-through', copy, group, topics.messages, end, opts.budgetMs, log);
      await copy.stop('SIGTERM', 10_000);
      const ev = lastEvent<{ transactions: number }>(copy.output(), 'copy');
      result.runs.push({ ...r, system: 'copy-through', note: r.note ?? (ev ? undefined : 'no report'), transactions: ev?.transactions });
      log(`[${ds.name}] copy-through: ${Math.round(r.rate)} records/s${r.note ? ` (${r.note})` : ''}`);
    }

    // Ours.
    result.runs.push(await timeTracker(ctx, 1));

    if (opts.ks) {
      const ks = await timeKafkaStreams(ctx, 1);
      result.runs.push(ks.run);
      result.ksDropped = ks.dropped;
    }

    // Each further thread count as a pair, the tracker then Kafka Streams, so that the two run
    // under about the same conditions of the machine.
    for (const n of threads) {
      result.runs.push(await timeTracker(ctx, n));
      if (opts.ks) result.runs.push((await timeKafkaStreams(ctx, n)).run);
    }

    if (opts.flow) {
      const flowDir = `${run.stateDir}-flow`;
      dirs.push(flowDir);
      const fl = spawnBenchScript('flow-peer', {
        BOOTSTRAP: run.env.KAFKA_BROKERS!, APPLICATION_ID: `${run.prefix}flow`, INPUT: topics.messages, OUTPUT: flowOut,
        STATE_DIR: flowDir, GAP_MS: String(ds.gapMs),
      }, ['--max-old-space-size=4096']);
      children.push(fl);
      const r = await timeSystem(admin, 'flow', fl, `${run.prefix}flow`, topics.messages, end, opts.flowBudgetMs, log);
      result.runs.push({ ...r, system: '@kafkats/flow' });
      log(`[${ds.name}] @kafkats/flow: ${Math.round(r.rate)} records/s${r.note ? ` (${r.note})` : ''}`);
      await fl.stop('SIGTERM', 20_000);
    }

    result.runs.push(await rawConsume(run, topics.messages, end, 'after'));
    log(`[${ds.name}] raw kafkajs again: ${Math.round(result.runs.at(-1)!.rate)} records/s`);

    if (opts.compare) {
      const ours = await ourSessions(kafka, topics.sealed);
      result.sealed.total = ours.length;
      for (const s of ours) result.sealed.byReason[s.reason!] = (result.sealed.byReason[s.reason!] ?? 0) + 1;
      result.sealed.late = await scanTopic(kafka, topics.late, () => undefined);
      const ksRun = result.runs.find((r) => r.system === 'Kafka Streams');
      if (opts.ks && ksRun && ksRun.ms !== null) result.agreements.push(agree('Kafka Streams', ours, await ksSessions(kafka, ksNames(run, 1).output)));
      const flowRun = result.runs.find((r) => r.system === '@kafkats/flow');
      if (opts.flow && flowRun && flowRun.ms !== null) result.agreements.push(agree('@kafkats/flow', ours, await flowSessions(kafka, flowOut)));
    }

    if (opts.restore) {
      // The store as the tracker left it (clean stop), then a second instance with an empty state
      // directory: it restores every partition from the changelog before processing.
      const storeMb = dirSizeMb(run.stateDir);
      let changelogBytes = 0;
      const changelogRecords = await scanTopic(kafka, topics.trackerChangelog, (r) => { changelogBytes += r.value?.length ?? 0; });
      const freshDir = `${run.stateDir}-restore`;
      dirs.push(freshDir);
      const port2 = await freePort();
      const t0 = Date.now();
      const again = spawnRole('tracker', { ...run.env, STATE_DIR: freshDir, METRICS_PORT: String(port2) });
      children.push(again);
      let status: StatusPartition[] = [];
      for (let i = 0; i < 600; i++) {
        await sleep(250);
        if (again.exitCode() !== undefined) throw new Error(`restoring tracker exited: ${again.output().slice(-2000)}`);
        try {
          const s = await getJson<{ partitions: StatusPartition[] }>(`http://127.0.0.1:${port2}/v1/tracker/status`);
          if (s.partitions.length === 6 && s.partitions.every((p) => p.state === 'running')) { status = s.partitions; break; }
        } catch { /* not up yet */ }
      }
      const readyMs = Date.now() - t0;
      await again.stop('SIGTERM');
      if (status.length > 0) {
        result.restore = {
          changelogRecords, storeMb, changelogMb: changelogBytes / 1e6,
          restoreMs: Math.max(...status.map((p) => p.restore_ms)),
          rebuildMs: status.reduce((a, p) => (p.restore_ms > a.restore_ms ? p : a)).restore_rebuild_ms,
          restoredRecords: status.reduce((s, p) => s + p.restored_records, 0),
          readyMs,
        };
      }
    }
    return result;
  } finally {
    for (const c of children) await c.stop('SIGKILL').catch(() => undefined);
    await cleanup(admin, [run.prefix, run.appId]).catch(() => 0);
    await admin.disconnect();
    for (const d of dirs) removeDir(d);
  }
}

export { groupCommitted };
