// Exactly once across crashes (SPEC section 2): a generated backlog of realistic chat traffic
// goes through tracker child processes that are SIGKILLed mid-run and restarted, alone (a) and as
// two instances of one consumer group whose partitions move between them (b). A read_committed
// reader of the output topics must then see every conversation the pure rules predict exactly
// once, with identical message lists, and every late message exactly once.
//
// (a) produces the backlog first and then starts, kills and restarts one tracker on one state
// directory. (b) starts both trackers on empty topics and then produces the backlog in one upstream
// transaction, so that it becomes readable at once and both instances work on it from the start.
// Either way every input record is in the topic before any tracker has caught up with it, so
// wall-clock seals come only at the end, as in `expectedOutcome`.
//
// After a SIGKILL the dead consumer would stay in the group until its session times out (30 s);
// to keep the test short it is removed at once with a LeaveGroup on its behalf. For the broker
// that is the same as the session expiring early: the dead process has no say in either case,
// and its open transaction is still there for the next owner of its partitions to abort.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import type { Kafka } from 'kafkajs';
import { isolatedEnv, configOf, testKafka, spawnRole, waitFor, sleep, REGISTRY_URL, type ChildRole } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { logLines, endpointOf, restoresOf, problemsOf, assignedOf, type Restore } from '../support/role-logs';
import { generateBacklog, expectedOutcome, conversationKey, lateKey, Rng, type Backlog, type ExpectedOutcome } from '../support/backlog';
import { ensureTopics, topicNames, type TopicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import { JavaCompatiblePartitioner, partitionForKey } from '../../src/records/partitioner';
import { PartitionReader } from '../../src/runtime/partition-reader';
import { rulesConfigFrom } from '../../src/sessionization/rules';
import { threadLinkerFor } from '../../src/boundaries/linker';
import type { ConversationSealed, LateMessage } from '../../src/records/types';

process.env.LOG_LEVEL ??= 'warn';

// 50k messages take about a second to process on a 2-core machine: three times that leaves the
// kills room to land mid-run.
const MESSAGES = Number(process.env.EOS_MESSAGES ?? 150_000);
const CHATS = Number(process.env.EOS_CHATS ?? 300);
const SEED = Number(process.env.EOS_SEED ?? 20_240_611);

const kafka = testKafka();
const children: ChildRole[] = [];
const cleanups: (() => Promise<void>)[] = [];

after(async () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => Promise.race([c.exited, sleep(5000)])));
  for (const f of cleanups.reverse()) await f().catch(() => undefined);
});

// --- helpers ---------------------------------------------------------------------------------

interface Run {
  name: string;
  env: Record<string, string>;
  cfg: ReturnType<typeof configOf>;
  topics: TopicNames;
  groupId: string;
  codec: RecordCodec;
  backlog: Backlog;
  expected: ExpectedOutcome;
  partitions: number[];
  /** Input records per partition: all of them are processed once the group's committed offset reaches this. */
  doneAt: Map<number, number>;
  /** Input records (messages and duplicate deliveries). */
  total: number;
}

/** An isolated environment with its topics, a generated backlog and what the rules make of it. */
async function prepare(name: string, seed: number, messages: number, extraEnv: Record<string, string> = {}): Promise<Run> {
  // 512 KiB fetches: many transactions per partition, so the kills land between commits.
  const env = isolatedEnv(name, {
    SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms', CONVERSATION_GAP: '90m', LOG_LEVEL: 'info',
    FETCH_MAX_BYTES_PER_PARTITION: '512KiB', ...extraEnv,
  });
  cleanups.push(async () => {
    for (const dir of [env.STATE_DIR!, `${env.STATE_DIR}-b`]) await rm(dir, { recursive: true, force: true });
  });
  const cfg = configOf(env);
  const topics = topicNames(cfg);
  await ensureTopics(await admin(), cfg);

  const t0 = Date.now();
  const backlog = generateBacklog({ seed, chats: CHATS, messages, gapMs: cfg.gapMs });
  const expected = expectedOutcome(backlog.messages, rulesConfigFrom(cfg, threadLinkerFor(cfg.modeByType)));
  const partitions = Array.from({ length: cfg.topicPartitions }, (_, p) => p);
  const doneAt = new Map(partitions.map((p) => [p, 0]));
  for (const m of backlog.messages) {
    const p = partitionForKey(m.chat_id, cfg.topicPartitions);
    doneAt.set(p, doneAt.get(p)! + 1);
  }
  const { stats } = backlog;
  console.log(`[${name}] backlog: ${stats.messages} messages + ${stats.duplicateDeliveries} duplicate deliveries = ${backlog.messages.length} records `
    + `in ${CHATS} chats over ${partitions.length} partitions (seed ${seed}); reordered ${stats.reordered}, delayed past the gap ${stats.delayedPastGap}, `
    + `pauses of exactly the gap ${stats.pausesExactlyGap}, gap-1ms ${stats.pausesGapMinus1}, gap+1ms ${stats.pausesGapPlus1}`);
  console.log(`[${name}] expected: ${expected.conversations.length} conversations ${JSON.stringify(expected.reasons)}, `
    + `largest ${Math.max(...expected.conversations.map((c) => c.message_count))} messages, ${expected.late.length} late, ${expected.duplicates} duplicates `
    + `(generated and run through the rules in ${Date.now() - t0} ms)`);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  await codec.init();
  return {
    name, env, cfg, topics, groupId: `${cfg.appId}-tracker`, codec, backlog, expected, partitions, doneAt, total: backlog.messages.length,
  };
}

/**
 * Produces the backlog keyed by chat_id, in order: with ChatMessageProducer (idempotent), or in a
 * single transaction, so that read_committed consumers see nothing until all of it appears at once.
 */
async function produce(run: Run, mode: 'plain' | 'one transaction'): Promise<void> {
  const t0 = Date.now();
  const producer = new ChatMessageProducer({ kafka, codec: run.codec });
  await producer.connect();
  try {
    if (mode === 'plain') {
      const sends = [];
      for (let i = 0; i < run.total; i += 2000) sends.push(producer.send(run.backlog.messages.slice(i, i + 2000)));
      assert.equal((await Promise.all(sends)).reduce((s, r) => s + r.sent, 0), run.total);
    } else {
      const records = run.backlog.messages.map((m) => producer.prepare(m));
      const tp = kafka.producer({
        transactionalId: `${run.cfg.appId}-upstream`, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 120_000,
        createPartitioner: JavaCompatiblePartitioner,
      });
      await tp.connect();
      try {
        const txn = await tp.transaction();
        for (let i = 0; i < records.length; i += 2000) await txn.send({ topic: run.topics.messages, messages: records.slice(i, i + 2000), acks: -1 });
        await txn.commit();
      } finally {
        await tp.disconnect();
      }
    }
  } finally {
    await producer.disconnect();
  }
  const reader = new PartitionReader(kafka);
  const ends = await reader.endOffsets(run.topics.messages, run.partitions).catch(() => null);
  await reader.disconnect();
  console.log(`[${run.name}] produced ${run.total} records (${mode}) in ${Date.now() - t0} ms; partition ends ${ends ? JSON.stringify([...ends]) : '?'}`);
}

let sharedAdmin: ReturnType<Kafka['admin']> | null = null;
async function admin() {
  if (!sharedAdmin) {
    const a = kafka.admin();
    await a.connect();
    sharedAdmin = a;
    cleanups.push(async () => { await a.disconnect(); });
  }
  return sharedAdmin;
}

/** The group's committed input offsets, per partition (absent: none yet). */
async function committedByPartition(run: Run): Promise<Map<number, number>> {
  const res = await (await admin()).fetchOffsets({ groupId: run.groupId, topics: [run.topics.messages] });
  return new Map(res[0]!.partitions.filter((p) => Number(p.offset) >= 0).map((p) => [p.partition, Number(p.offset)]));
}

/** Input records the group has committed (sum over partitions; a transaction marker past the last record is not counted). */
async function committed(run: Run): Promise<number> {
  let n = 0;
  for (const [p, v] of await committedByPartition(run)) n += Math.min(v, run.doneAt.get(p) ?? 0);
  return n;
}

/** Removes members from the group as their session timing out would (see the header). */
async function evict(kafkaClient: Kafka, groupId: string, which: (m: { memberId: string; clientId: string }) => boolean): Promise<string[]> {
  const members: { memberId: string; clientId: string }[] = (await (await admin()).describeGroups([groupId])).groups[0]?.members ?? [];
  const gone = members.filter(which);
  if (gone.length === 0) return [];
  const sym = Object.getOwnPropertySymbols(kafkaClient).find((s) => s.description === 'private:Kafka:createCluster');
  if (!sym) throw new Error('kafkajs internals changed: cannot create a cluster');
  const cluster = (kafkaClient as any)[sym]({});
  await cluster.connect();
  try {
    const coordinator = await cluster.findGroupCoordinator({ groupId });
    for (const m of gone) await coordinator.leaveGroup({ groupId, memberId: m.memberId });
  } finally {
    await cluster.disconnect();
  }
  return gone.map((m) => m.clientId);
}

function spawnTracker(label: string, env: Record<string, string>, log: Map<string, ChildRole>): ChildRole {
  const child = spawnRole('tracker', env);
  children.push(child);
  log.set(label, child);
  return child;
}

async function killHard(child: ChildRole): Promise<void> {
  child.kill('SIGKILL');
  await child.exited;
}

async function stopClean(child: ChildRole): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.kill('SIGTERM');
  const done = await Promise.race([child.exited.then(() => true), sleep(15_000).then(() => false)]);
  if (!done) await killHard(child);
}

/** Waits until progress is at least `target` records and more than `from`; returns it. */
async function progressPast(run: Run, what: string, target: number, from: number, timeoutMs: number, alive: ChildRole[]): Promise<number> {
  return waitFor(what, timeoutMs, async () => {
    for (const c of alive) {
      if (c.proc.exitCode !== null) throw new Error(`tracker exited with ${c.proc.exitCode}: ${problemsOf(c).slice(-5).join(' | ')}`);
    }
    const n = await committed(run);
    return n >= target && n > from ? n : undefined;
  }, 50);
}

/** Decoded outputs as a read_committed consumer sees them. */
async function outputs(run: Run): Promise<{ sealed: ConversationSealed[]; late: LateMessage[]; dlq: number }> {
  const sealed = await Promise.all((await readTopic(kafka, run.topics.sealed)).map((r) => run.codec.decode('ConversationSealed', r.value)));
  const late = await Promise.all((await readTopic(kafka, run.topics.late)).map((r) => run.codec.decode('LateMessage', r.value)));
  const dlq = (await readTopic(kafka, run.topics.messagesDlq)).length;
  return { sealed, late, dlq };
}

/** Waits until all input is committed and every expected conversation has been sealed, then settles. */
async function awaitCompletion(run: Run, alive: ChildRole[], timeoutMs: number) {
  await progressPast(run, 'all input committed', run.total, -1, timeoutMs, alive);
  const ids = new Set(run.expected.conversations.map((c) => c.conversation_id));
  const lateWanted = run.expected.late.length;
  try {
    await waitFor('every expected conversation sealed', 30_000, async () => {
      const o = await outputs(run);
      const seen = new Set(o.sealed.map((c) => c.conversation_id));
      for (const id of ids) if (!seen.has(id)) return undefined;
      return o.late.length >= lateWanted ? true : undefined;
    }, 1000);
  } catch (e) {
    // The assertions say what is missing.
    console.log(`[${run.name}] ${(e as Error).message}`);
  }
  // Nothing more may arrive: give in-flight punctuations time to show up if they would.
  await sleep(1500);
  return outputs(run);
}

function count<T>(xs: T[], key: (x: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) { const k = key(x); m.set(k, (m.get(k) ?? 0) + 1); }
  return m;
}

/** The exactly-once assertions, with the differences spelled out when they fail. */
function assertExactlyOnce(run: Run, got: { sealed: ConversationSealed[]; late: LateMessage[]; dlq: number }): void {
  const { expected } = run;
  const expById = new Map(expected.conversations.map((c) => [c.conversation_id, c]));
  assert.equal(expById.size, expected.conversations.length, 'expected conversation ids are unique');
  const gotById = count(got.sealed, (c) => c.conversation_id);
  const duplicated = [...gotById].filter(([, n]) => n > 1);
  const missing = [...expById.keys()].filter((id) => !gotById.has(id));
  const unexpected = [...gotById.keys()].filter((id) => !expById.has(id));
  const differing = got.sealed.filter((c) => expById.has(c.conversation_id) && conversationKey(c) !== conversationKey(expById.get(c.conversation_id)!));
  const describe = (id: string) => {
    const c = expById.get(id) ?? got.sealed.find((x) => x.conversation_id === id)!;
    return `${id} (chat ${c.chat_id}, ${c.message_count} messages, ${new Date(c.started_at).toISOString()}..${new Date(c.ended_at).toISOString()}, ${c.seal_reason})`;
  };
  const report = [
    duplicated.length ? `sealed more than once: ${duplicated.length}, e.g. ${duplicated.slice(0, 5).map(([id, n]) => `${describe(id)} x${n}`).join('; ')}` : '',
    missing.length ? `missing: ${missing.length}, e.g. ${missing.slice(0, 5).map(describe).join('; ')}` : '',
    unexpected.length ? `unexpected: ${unexpected.length}, e.g. ${unexpected.slice(0, 5).map(describe).join('; ')}` : '',
    differing.length ? `different content: ${differing.length}, e.g. ${differing.slice(0, 3).map((c) => describe(c.conversation_id)).join('; ')}` : '',
  ].filter(Boolean).join('\n');
  assert.equal(report, '', `sealed topic vs the rules:\n${report}`);
  assert.equal(got.sealed.length, expected.conversations.length);

  const expLate = count(expected.late, lateKey);
  const gotLate = count(got.late, lateKey);
  const lateDiff: string[] = [];
  for (const [k, n] of expLate) if (gotLate.get(k) !== n) lateDiff.push(`expected x${n}, got x${gotLate.get(k) ?? 0}: ${k.slice(0, 200)}`);
  for (const [k, n] of gotLate) if (!expLate.has(k)) lateDiff.push(`unexpected x${n}: ${k.slice(0, 200)}`);
  assert.deepEqual(lateDiff.slice(0, 10), [], `late topic vs the rules (${lateDiff.length} differences)`);
  assert.equal(got.late.length, expected.late.length);
  assert.equal(got.dlq, 0, 'nothing in the DLQ');

  // Every delivered message is in exactly one place: one conversation, or the late topic
  // (duplicates excepted, which are counted, not forwarded).
  const placed = got.sealed.reduce((s, c) => s + c.message_count, 0) + got.late.length;
  assert.equal(placed + expected.duplicates, run.total);
}

/** On failure: what happened so far, where each partition stands, and what the trackers logged. */
function diagnostics(name: string, procs: Map<string, ChildRole>, timeline: string[]) {
  return async (run: Run) => {
    for (const c of procs.values()) if (c.proc.exitCode === null && c.proc.signalCode === null) c.kill('SIGKILL');
    for (const t of timeline) console.log(`[${name}] ${t}`);
    try {
      const c = await committedByPartition(run);
      console.log(`[${name}] committed/records per partition: ${[...run.doneAt].map(([p, e]) => `p${p} ${c.get(p) ?? '-'}/${e}`).join(', ')}`);
    } catch (e) { console.log(`[${name}] cannot read offsets: ${(e as Error).message}`); }
    for (const [label, child] of procs) {
      const lines = child.output().trim().split('\n');
      console.log(`[${name}] ${label} (exit ${child.proc.exitCode ?? child.proc.signalCode ?? 'running'}), last lines of ${lines.length}:`);
      for (const l of lines.slice(-25)) console.log(`[${name}]   ${l.slice(0, 600)}`);
    }
  };
}

function summarizeRestores(name: string, restores: Restore[]): void {
  const wiped = restores.filter((r) => r.wiped);
  const records = restores.reduce((s, r) => s + r.records, 0);
  const maxMs = Math.max(0, ...restores.map((r) => r.ms));
  const maxRecords = Math.max(0, ...restores.map((r) => r.records));
  console.log(`[${name}] 'task restored' lines: ${restores.length} (${wiped.length} after a wipe), ${records} changelog records in all, `
    + `largest ${maxRecords} records, slowest ${maxMs} ms`);
  for (const r of restores) {
    console.log(`[${name}]   ${r.run} p${r.partition}: wiped=${r.wiped} records=${r.records} ms=${r.ms} position=${r.position}`);
  }
}

// --- scenarios -------------------------------------------------------------------------------

/**
 * Waits for a commit past the current progress on `partitions` (default: any), made while the
 * given children run; once the whole input is committed, for the children to have restored
 * their tasks instead (the kill then lands in the sealing phase). Then a seeded jitter.
 */
async function nextCommitThenJitter(run: Run, rng: Rng, alive: ChildRole[], maxJitterMs: number, partitions?: number[]) {
  const base = await committedByPartition(run);
  const from = [...base].reduce((s, [p, n]) => s + Math.min(n, run.doneAt.get(p) ?? 0), 0);
  const at = await waitFor(`a commit past ${from}`, 60_000, async () => {
    for (const c of alive) {
      if (c.proc.exitCode !== null) throw new Error(`tracker exited with ${c.proc.exitCode}: ${problemsOf(c).slice(-5).join(' | ')}`);
    }
    const now = await committedByPartition(run);
    const total = [...now].reduce((s, [p, n]) => s + Math.min(n, run.doneAt.get(p) ?? 0), 0);
    if ((partitions ?? run.partitions).some((p) => (now.get(p) ?? 0) > (base.get(p) ?? 0))) return total;
    if (total >= run.total && alive.every((c) => restoresOf('', c).length >= (assignedOf(c)?.length ?? Infinity))) return total;
    return undefined;
  }, 25);
  const jitter = Math.floor(rng.next() * maxJitterMs);
  await sleep(jitter);
  return { from, at, jitter };
}

/** SIGKILLs a child and records how much of the input was committed when it died. */
async function killAndReport(run: Run, child: ChildRole, label: string, timeline: string[], detail: string): Promise<void> {
  await killHard(child);
  const at = await committed(run);
  timeline.push(`${label} SIGKILLed with ${at} of ${run.total} records committed${at >= run.total ? ' (sealing phase)' : ''}; ${detail}`);
}

function report(name: string, run: Run, procs: Map<string, ChildRole>, timeline: string[], kills: number, elapsed: string, got: Awaited<ReturnType<typeof outputs>>): Restore[] {
  for (const t of timeline) console.log(`[${name}] ${t}`);
  console.log(`[${name}] ${run.total} records, ${got.sealed.length} conversations sealed (${got.sealed.reduce((s, c) => s + c.message_count, 0)} messages), `
    + `${got.late.length} late, ${kills} kills, ${elapsed}`);
  const restores = [...procs].flatMap(([label, c]) => restoresOf(label, c));
  summarizeRestores(name, restores);
  // A transaction the dead process left open is aborted when the next owner initializes the same
  // transactional id; until then the broker answers CONCURRENT_TRANSACTIONS, which kafkajs logs.
  const aborting = [...procs].map(([label, c]) => [label, logLines(c).filter((l) => String(l.msg).startsWith('Response InitProducerId')).length] as const);
  console.log(`[${name}] InitProducerId answered CONCURRENT_TRANSACTIONS (open transactions of a killed owner being aborted), per start: `
    + aborting.map(([label, n]) => `${label} ${n}`).join(', '));
  const problems = [...procs].flatMap(([label, c]) => problemsOf(c).map((p) => `${label}: ${p}`))
    .filter((p) => !p.includes('Limiting retries for the idempotent producer'));
  const distinct = count(problems, (p) => p.replace(/^\S+: /, '').replace(/\d+/g, 'N'));
  if (problems.length) {
    console.log(`[${name}] warnings/errors logged by the trackers: ${problems.length}, by kind:`);
    for (const [p, n] of distinct) console.log(`[${name}]   x${n} ${p}`);
  }
  return restores;
}

/**
 * Starts, SIGKILLs and restarts one tracker `kills` times on the run's backlog, then leaves the
 * last start running until everything is sealed and stops it cleanly.
 */
async function killedAgainAndAgain(name: string, run: Run, rng: Rng, kills: number) {
  const procs = new Map<string, ChildRole>();
  const timeline: string[] = [];
  const diagnose = diagnostics(name, procs, timeline);
  const started = Date.now();
  try {
    for (let k = 1; k <= kills; k++) {
      const label = `run${k}`;
      const child = spawnTracker(label, run.env, procs);
      const spawnedAt = Date.now();
      // Kill once this run has committed something of its own, at a seeded point of a later
      // transaction (processing, sending, committing) or of a restore-free stretch.
      const { from, at, jitter } = await nextCommitThenJitter(run, rng, [child], 300);
      await killAndReport(run, child, label, timeline, `up ${Date.now() - spawnedAt} ms, started at ${from}, own first commit seen at ${at}, +${jitter} ms`);
      // Every member: a process on several stream threads is one member per thread.
      await evict(kafka, run.groupId, () => true);
    }
    const last = spawnTracker(`run${kills + 1}`, run.env, procs);
    const got = await awaitCompletion(run, [last], 90_000);
    const elapsed = Date.now() - started;
    timeline.push(`run${kills + 1} left running until everything was sealed`);
    await stopClean(last);
    const restores = report(name, run, procs, timeline, kills, `${elapsed} ms from the first start to everything sealed`, got);
    return { got, restores, last };
  } catch (e) {
    await diagnose(run);
    throw e;
  }
}

// --- (a) one instance, SIGKILLed again and again ---------------------------------------------

test('a backlog through a tracker SIGKILLed 4 times mid-run: every conversation sealed exactly once', { timeout: 150_000 }, async () => {
  const name = 'eos-a';
  const run = await prepare(name, SEED, MESSAGES);
  await produce(run, 'plain');
  const kills = 4;
  const { got, restores } = await killedAgainAndAgain(name, run, new Rng(SEED ^ 0xa11ce), kills);

  assertExactlyOnce(run, got);
  // Every restart after a SIGKILL found its stores without a checkpoint: wiped and restored.
  assert.ok(restores.every((r) => r.wiped), 'every start after an unclean stop wiped its stores');
  assert.equal(restores.filter((r) => r.run === `run${kills + 1}`).length, run.partitions.length, 'the last run restored every task');
  // Whether every partition had written to its changelog before the last kill depends on how the
  // fetches interleaved: at least one must have been replayed; the rest is reported.
  const lastRun = restores.filter((r) => r.run === `run${kills + 1}`);
  assert.ok(lastRun.some((r) => r.records > 0), 'the last run replayed the changelog');
  console.log(`[${name}] the last run replayed ${lastRun.map((r) => `p${r.partition}: ${r.records}`).join(', ')} changelog records`);
  cleanups.push(() => deleteTopics(run));
});

// --- (a') one instance on two stream threads, SIGKILLed again and again -----------------------

test('a backlog through a tracker on 2 stream threads, SIGKILLed twice mid-run: every conversation sealed exactly once', { timeout: 150_000 }, async () => {
  const name = 'eos-threads';
  const run = await prepare(name, SEED + 3, MESSAGES, { STREAM_THREADS: '2' });
  await produce(run, 'plain');
  const kills = 2;
  const { got, restores, last } = await killedAgainAndAgain(name, run, new Rng((SEED + 3) ^ 0x7e4d), kills);

  assertExactlyOnce(run, got);
  // The last run's two threads shared the partitions, and between them restored every task.
  const assigned = logLines(last).filter((l) => l.msg === 'partitions assigned');
  const threads = new Set(assigned.filter((l) => (l.assigned as number[]).length > 0).map((l) => l.thread));
  assert.deepEqual([...threads].sort(), [0, 1], 'both stream threads were assigned partitions');
  const restoredParts = new Set(restores.filter((r) => r.run === `run${kills + 1}`).map((r) => r.partition));
  assert.deepEqual([...restoredParts].sort((a, b) => a - b), run.partitions, 'the last run restored every task');
  assert.equal(problemsOf(last).filter((p) => p.includes('task close failed')).length, 0, 'no task of one thread closed over another\'s store');
  cleanups.push(() => deleteTopics(run));
});

// --- (b) two instances, partitions moving between them ---------------------------------------

test('two trackers in one group, one SIGKILLed and restarted, then the other: every conversation sealed exactly once', { timeout: 150_000 }, async () => {
  const name = 'eos-b';
  const run = await prepare(name, SEED + 1, MESSAGES);
  const rng = new Rng((SEED + 1) ^ 0xb0b);
  const envA = run.env;
  const envB = { ...run.env, STATE_DIR: `${run.env.STATE_DIR}-b` };
  const procs = new Map<string, ChildRole>();
  const timeline: string[] = [];
  const diagnose = diagnostics(name, procs, timeline);
  const started = Date.now();
  const all = run.partitions.length;
  let got: Awaited<ReturnType<typeof outputs>>;
  let elapsed: number;
  let visible = 0;
  let heldAtKill: number[] = [];
  try {
    // Both instances join the group and restore their (empty) tasks before there is anything to
    // read; then the backlog appears at once (one upstream transaction), so both work from the start.
    const a1 = spawnTracker('A1', envA, procs);
    const b1 = spawnTracker('B1', envB, procs);
    // Whether an instance has restored every partition it was assigned.
    const restored = (c: ChildRole, ps: number[]) => ps.every((p) => restoresOf('', c).some((r) => r.partition === p));
    await waitFor('A1 and B1 share the partitions, restored', 60_000, async () => {
      const a = assignedOf(a1);
      const b = assignedOf(b1);
      if (!a || !b || a.length === 0 || b.length === 0 || a.length + b.length !== all) return undefined;
      return restored(a1, a) && restored(b1, b) ? true : undefined;
    }, 50);
    timeline.push(`A1 ${JSON.stringify(assignedOf(a1))} and B1 ${JSON.stringify(assignedOf(b1))} share the partitions ${Date.now() - started} ms after the start`);
    await produce(run, 'one transaction');
    visible = Date.now();
    timeline.push(`the backlog became visible ${visible - started} ms after the start`);

    // A1 is killed at a seeded moment after its first commit.
    const mine = assignedOf(a1)!;
    const k1 = await nextCommitThenJitter(run, rng, [a1, b1], 300, mine);
    timeline.push(`first commit on A1's partitions ${Date.now() - visible - k1.jitter} ms after the backlog became visible`);
    const endpointA = endpointOf(a1);
    // What A1 holds at the moment of the kill: these stores are left without a checkpoint.
    heldAtKill = assignedOf(a1) ?? mine;
    await killAndReport(run, a1, 'A1', timeline, `a commit ${k1.from}..${k1.at} on ${JSON.stringify(mine)} seen, +${k1.jitter} ms; A1 held ${JSON.stringify(heldAtKill)}`);
    const evictedA = await evict(kafka, run.groupId, (m) => endpointA !== undefined && m.clientId.endsWith(`@${endpointA}`));
    assert.equal(evictedA.length, 1, `A1's member (${endpointA}) evicted`);

    // B1 takes every partition over, restores A1's from the changelog, and goes on.
    await waitFor('B1 owns every partition', 60_000, async () => (assignedOf(b1)?.length === all ? true : undefined), 25);
    timeline.push(`B1 owns all ${all} partitions ${Date.now() - visible} ms after the backlog became visible`);
    const b = await nextCommitThenJitter(run, rng, [b1], 300, mine);
    timeline.push(`B1 committed on A1's former partitions (${b.from}..${b.at}); A2 starts +${b.jitter} ms later`);

    // A comes back on its old (unclean) state directory; partitions move back to it.
    const a2 = spawnTracker('A2', envA, procs);
    await waitFor('A2 owns partitions', 60_000, async () => ((assignedOf(a2)?.length ?? 0) > 0 ? true : undefined), 25);
    timeline.push(`A2 took ${JSON.stringify(assignedOf(a2))} back ${Date.now() - visible} ms after the backlog became visible; B1 keeps ${JSON.stringify(assignedOf(b1))}`);

    // Then B1 is killed in turn, and A2 has everything.
    const k2 = await nextCommitThenJitter(run, rng, [a2, b1], 300);
    const endpointB = endpointOf(b1);
    await killAndReport(run, b1, 'B1', timeline, `a commit ${k2.from}..${k2.at} seen, +${k2.jitter} ms`);
    const evictedB = await evict(kafka, run.groupId, (m) => endpointB !== undefined && m.clientId.endsWith(`@${endpointB}`));
    assert.equal(evictedB.length, 1, `B1's member (${endpointB}) evicted`);

    got = await awaitCompletion(run, [a2], 90_000);
    elapsed = Date.now() - visible;
    // B1 may have finished A1's old partitions before its kill, so the output can be complete
    // before the group hands them to A2: wait for that hand-over (it must come, B1 was evicted),
    // so that A2 opens every store A1 left without a checkpoint.
    await waitFor('A2 owns and has restored every partition', 60_000, async () => {
      const held = assignedOf(a2);
      return held?.length === all && restored(a2, held) ? true : undefined;
    }, 25);
    timeline.push(`A2 owns ${JSON.stringify(assignedOf(a2))} at the end`);
    await stopClean(a2);
  } catch (e) {
    await diagnose(run);
    throw e;
  }
  const restores = report(name, run, procs, timeline, 2, `${elapsed} ms from the backlog becoming visible to everything sealed`, got);

  assertExactlyOnce(run, got);
  assert.ok(restores.some((r) => r.run === 'B1' && r.records > 0), 'B1 restored a partition A1 had worked on');
  // A2 runs on A1's state directory and owns every partition at the end, so it opens each store
  // A1 left without a checkpoint; the first time it does, it must wipe it and restore the
  // changelog (an unclean store is never trusted). Which other partitions A2 got first (stores A1
  // had closed cleanly in an earlier rebalance, kept and restored from their checkpoint) depends on
  // the group's assignment: reported, not asserted.
  const a2 = restores.filter((r) => r.run === 'A2');
  const firstOpen = new Map<number, Restore>();
  for (const r of a2) if (!firstOpen.has(r.partition)) firstOpen.set(r.partition, r);
  assert.ok(heldAtKill.length > 0, 'A1 held partitions when it was killed');
  for (const p of heldAtKill) {
    const r = firstOpen.get(p);
    assert.ok(r, `A2 opened partition ${p}, which A1 held when it was killed`);
    assert.ok(r.wiped, `A2 wiped the store of partition ${p} that A1 left uncheckpointed`);
  }
  assert.ok(heldAtKill.some((p) => firstOpen.get(p)!.records > 0), 'A2 restored from the changelog what A1 had committed');
  console.log(`[${name}] A2 first opened ${[...firstOpen.values()].map((r) => `p${r.partition} (${heldAtKill.includes(r.partition) ? 'held by A1 at its kill' : 'closed cleanly by A1 earlier'}, wiped=${r.wiped})`).join(', ')}`);
  cleanups.push(() => deleteTopics(run));
});

// --- (c) thread mode: group chats split into threads by the model, SIGKILLed mid-run ----------

test('thread mode: a group-chat backlog through a tracker SIGKILLed twice mid-run: the threads the rules give, each sealed exactly once, links included', { timeout: 150_000 }, async () => {
  const name = 'eos-c';
  const run = await prepare(name, SEED + 2, Math.round(MESSAGES / 3), { CONVERSATION_MODE_BY_TYPE: 'group=threads,channel=threads' });
  const threaded = run.expected.conversations.filter((c) => c.chat_type === 'group' || c.chat_type === 'channel');
  const linked = threaded.reduce((n, c) => n + c.messages.filter((m) => m.linked_message_id).length, 0);
  assert.ok(threaded.length > 0 && linked > 0, 'the backlog has chats in thread mode, and the model links messages in them');
  console.log(`[${name}] ${threaded.length} of ${run.expected.conversations.length} conversations are threads of group or channel chats; ${linked} messages linked by the model`);
  await produce(run, 'plain');
  const rng = new Rng((SEED + 2) ^ 0xc0de);
  const procs = new Map<string, ChildRole>();
  const timeline: string[] = [];
  const diagnose = diagnostics(name, procs, timeline);
  let got: Awaited<ReturnType<typeof outputs>>;
  try {
    for (let k = 1; k <= 2; k++) {
      const child = spawnTracker(`run${k}`, run.env, procs);
      const { from, at, jitter } = await nextCommitThenJitter(run, rng, [child], 300);
      await killAndReport(run, child, `run${k}`, timeline, `started at ${from}, own first commit seen at ${at}, +${jitter} ms`);
      await evict(kafka, run.groupId, () => true);
    }
    const last = spawnTracker('run3', run.env, procs);
    got = await awaitCompletion(run, [last], 90_000);
    await stopClean(last);
  } catch (e) {
    await diagnose(run);
    throw e;
  }
  report(name, run, procs, timeline, 2, 'thread mode', got);
  assertExactlyOnce(run, got);
  // Replay determinism down to the links: every message's link as the pure rules chose it.
  const links = (cs: ConversationSealed[]) => new Map(cs.flatMap((c) => c.messages.map((m) => [m.message_id, m.linked_message_id ?? null] as const)));
  const want = links(run.expected.conversations);
  const have = links(got.sealed);
  const differ = [...want].filter(([id, l]) => have.get(id) !== l);
  assert.deepEqual(differ.slice(0, 5), [], `${differ.length} messages linked differently from the rules`);
  cleanups.push(() => deleteTopics(run));
});

async function deleteTopics(run: Run): Promise<void> {
  const a = await admin();
  const prefix = run.cfg.topicPrefix;
  const mine = (await a.listTopics()).filter((t) => t.startsWith(prefix));
  if (mine.length) await a.deleteTopics({ topics: mine });
}
