// Backfill: run one analysis pass over the conversations already sealed, by replaying the retained
// conversation.sealed topic (SPEC sections 6 and 7).
//
// 1. Position. The backfill of pass P at version V keeps its position as the committed offsets of
//    the consumer group `${APP_ID}-backfill-P-vV` (a filtered backfill, --chat-id/--since/--until,
//    gets a group of its own, suffixed with a hash of the filters, so that it never moves the
//    position of the unfiltered one). It reads each partition from there (or from the beginning
//    with fromBeginning) up to the read_committed end the partition had when the backfill started:
//    what is sealed later is analysed live by the analysis role, which runs every enabled pass.
// 2. Scan. Records are decoded in offset order and checked against PostgreSQL in batches: not
//    loaded yet (the ETL is behind: counted and named, and left to the live path, which analyses
//    a conversation when the ETL loads it), already completed, not qualifying (recorded 'skipped'
//    as live processing does), or to run. --limit N stops the scan at the (N+1)th conversation to
//    run. The scan only reads, so a dry run is this phase alone and predicts exactly what a real
//    run started from the same position runs.
// 3. Run. The selected conversations go through the analysis machinery (runPass: claims in
//    analysis_runs, content cache, attempts, analysis.completed events) in small chunks paced by
//    the rate limit. After each chunk, each partition's offset is committed up to its first
//    conversation not yet recorded, so a backfill that is stopped or killed resumes there; and a
//    conversation completed before the kill is found completed (analysis_runs is the record), so
//    nothing runs twice.
// A PostgreSQL advisory lock keeps two backfills of the same group from running at once.
import { createHash } from 'node:crypto';
import type { Kafka, Producer } from 'kafkajs';
import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { logger } from '../log';
import { topicNames, type TopicNames } from '../topics';
import { RecordCodec } from '../records/codec';
import { InvalidRecordError } from '../records/validate';
import { javaCompatiblePartitioner, partitionForKey } from '../records/partitioner';
import type { AnalysisCompleted } from '../records/downstream-types';
import { PartitionReader, type RawRecord } from '../runtime/partition-reader';
import { activeAccounts } from '../db/subscriptions';
import { skipRun, type RunStatus } from '../db/analysis';
import { withPgRetry } from '../db/retry';
import { disqualification, type PassDefinition } from '../analysis/passes';
import { runPass, type RunPassSummary } from '../analysis/run-pass';
import type { Emit } from '../analysis/runner';
import { GroupOffsets } from './group-offsets';
import { RateLimiter } from './rate-limiter';
import { UnreachableError } from './connect';
import { chunkSizeFor } from './options';
import { silentProgress, type ProgressSink } from './progress';

export interface BackfillFilters {
  chatId: string | null;
  /** Conversations that started at or after this time (epoch ms). */
  since: number | null;
  /** Conversations that started before this time (epoch ms). */
  until: number | null;
}

export function hasFilters(f: BackfillFilters): boolean {
  return f.chatId !== null || f.since !== null || f.until !== null;
}

/** The consumer group holding the position of a backfill. */
export function backfillGroupId(appId: string, pass: Pick<PassDefinition, 'name' | 'prompt_version'>, f: BackfillFilters): string {
  const base = `${appId}-backfill-${pass.name}-v${pass.prompt_version}`;
  if (!hasFilters(f)) return base;
  const h = createHash('sha256').update(JSON.stringify([f.chatId, f.since, f.until])).digest('hex').slice(0, 10);
  return `${base}-f${h}`;
}

export function passesFilters(c: { chat_id: string; started_at: number }, f: BackfillFilters): boolean {
  if (f.chatId !== null && c.chat_id !== f.chatId) return false;
  if (f.since !== null && c.started_at < f.since) return false;
  if (f.until !== null && c.started_at >= f.until) return false;
  return true;
}

/** What the scan decides for one sealed conversation, from its row in PostgreSQL. */
export type Verdict =
  | { kind: 'not_loaded' }
  /** `owed`: its analysis.completed event was never delivered (a crash between recording and sending). */
  | { kind: 'completed'; owed: boolean }
  /** Does not qualify; `record` when no run row says so yet (a 'skipped' row is to be written). */
  | { kind: 'not_qualifying'; reason: string; record: boolean }
  | { kind: 'run'; status: RunStatus | null };

export interface ConversationState {
  loaded: boolean;
  message_count: number;
  account_id: string | null;
  status: RunStatus | null;
  /** The run's analysis.completed event is not delivered yet. */
  owed?: boolean;
}

export function verdict(pass: PassDefinition, c: ConversationState, activeAccountIds: ReadonlySet<string>): Verdict {
  if (!c.loaded) return { kind: 'not_loaded' };
  if (c.status === 'completed') return { kind: 'completed', owed: c.owed === true };
  const why = disqualification(pass, {
    message_count: c.message_count, account_id: c.account_id,
    subscriptionActive: c.account_id !== null && activeAccountIds.has(c.account_id),
  });
  if (why !== null) return { kind: 'not_qualifying', reason: why, record: c.status === null || c.status === 'pending' };
  return { kind: 'run', status: c.status };
}

/** One partition's share of the plan. */
export interface PartitionPlan {
  partition: number;
  /** First offset read. */
  from: number;
  /** Where the plan ends: the end offset, or (limit reached) the offset of the first run left out. */
  cutoff: number;
  /** In offset order; `emitOnly`: completed, only its owed analysis.completed event is to be sent. */
  runs: { id: string; offset: number; emitOnly?: boolean }[];
  skips: { id: string; offset: number; reason: string }[];
}

/** The offset to commit once the first `done` runs of the partition are recorded. */
export function commitTarget(plan: PartitionPlan, done: number): number {
  return done < plan.runs.length ? plan.runs[done]!.offset : plan.cutoff;
}

export interface BackfillSummary {
  pass: string;
  version: number;
  /** Enabled in the passes file: the analysis role runs it on conversations loaded later. */
  pass_enabled: boolean;
  group_id: string;
  topic: string;
  dry_run: boolean;
  rate_limit: number | null;
  /** Started from offsets committed by an earlier backfill of this group. */
  resumed: boolean;
  partitions: { partition: number; committed: number | null; from: number; to: number }[];
  /**
   * Offsets of conversation.sealed scanned: the records read plus the transaction markers between
   * them (the tracker writes in transactions; each commit leaves a marker that takes an offset).
   */
  offsets: number;
  /** Records read from conversation.sealed: considered + filtered_out + duplicates + undecodable + past_limit. */
  records: number;
  /** Records read beyond where --limit stopped the plan: not looked at, left for the next run. */
  past_limit: number;
  undecodable: number;
  /** Conversation ids seen a second time in the scan. */
  duplicates: number;
  filtered_out: number;
  /** Distinct sealed conversations considered (after the filters, up to the limit's cutoff). */
  conversations: number;
  not_loaded: number;
  /** The first few conversations not in PostgreSQL yet. */
  not_loaded_ids: string[];
  already_completed: number;
  /** Of those, completed runs whose analysis.completed event was never delivered: sent now. */
  events_owed: number;
  not_qualifying: number;
  /** Conversations selected to run (dry run: that would run). */
  selected: number;
  /**
   * Of those, claimed by another worker when scanned (the live analysis, another backfill, or one
   * that was killed): run here once that claim is released, or its lease expires (60 s).
   */
  claimed_elsewhere: number;
  limit: number | null;
  limit_reached: boolean;
  /** Real run: outcomes of the selected conversations. */
  completed: number;
  cached: number;
  failed: number;
  /** Found completed (by the live processor or another backfill) by the time their turn came. */
  already: number;
  /** Taken over by another processor while running (it records them). */
  lost: number;
  /** 'skipped' rows written for conversations that do not qualify. */
  skips_recorded: number;
  /** Stopped by a signal before the end; the position is committed. */
  interrupted: boolean;
  elapsed_ms: number;
}

/** Connections shared by the backfills of one command (backfill-all runs several). */
export interface BackfillContext {
  cfg: Config;
  kafka: Kafka;
  pool: Pool;
  codec: RecordCodec;
  topics: TopicNames;
  /** Partitions of conversation.sealed. */
  partitionCount: number;
  /** analysis.completed events of the runs; null in a dry run. */
  emit: Emit | null;
  close(): Promise<void>;
}

export async function openBackfillContext(cfg: Config, kafka: Kafka, pool: Pool, partitionCount: number, dryRun: boolean): Promise<BackfillContext> {
  const topics = topicNames(cfg);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  let producer: Producer | null = null;
  let emit: Emit | null = null;
  if (!dryRun) {
    await codec.init();
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
    await producer.connect();
    const p = producer;
    emit = async (event: AnalysisCompleted): Promise<void> => {
      await p.send({ topic: topics.completed, acks: -1, messages: [{ key: event.conversation_id, value: await codec.encode('AnalysisCompleted', event) }] });
    };
  }
  return {
    cfg, kafka, pool, codec, topics, partitionCount, emit,
    close: async () => { await producer?.disconnect().catch(() => undefined); },
  };
}

export interface BackfillOptions extends BackfillFilters {
  pass: PassDefinition;
  /** Every pass (runPass looks the pass up among them). */
  passes: readonly PassDefinition[];
  dryRun: boolean;
  limit: number | null;
  limiter: RateLimiter;
  concurrency: number;
  /** Ignore the committed position: read everything retained. */
  fromBeginning: boolean;
  allowDisabled: boolean;
  progress?: ProgressSink;
  /** Aborting stops after the chunk in progress (its position committed). */
  signal?: AbortSignal;
  /** Conversations checked against PostgreSQL per query. Default 500. */
  batchSize?: number;
  /** Largest chunk handed to runPass at once. Default 50. */
  maxChunk?: number;
  log?: Logger;
}

class StopScan extends Error {}

interface Candidate { id: string; offset: number }

export async function runBackfill(ctx: BackfillContext, o: BackfillOptions): Promise<BackfillSummary> {
  const started = Date.now();
  const log = o.log ?? logger('AnalysisPasses');
  const progress = o.progress ?? silentProgress;
  const pass = o.pass;
  if (!pass.enabled && !o.allowDisabled) {
    throw new Error(`analysis pass "${pass.name}" is disabled in the passes file: enable it first (live processing then runs it on new conversations), or pass --allow-disabled`);
  }
  const filters: BackfillFilters = { chatId: o.chatId, since: o.since, until: o.until };
  const groupId = backfillGroupId(ctx.cfg.appId, pass, filters);
  const topic = ctx.topics.sealed;
  const label = `${pass.name} v${pass.prompt_version}`;
  const s: BackfillSummary = {
    pass: pass.name, version: pass.prompt_version, pass_enabled: pass.enabled, group_id: groupId, topic, dry_run: o.dryRun, rate_limit: o.limiter.ratePerSec,
    resumed: false, partitions: [], offsets: 0, records: 0, past_limit: 0, undecodable: 0, duplicates: 0, filtered_out: 0, conversations: 0,
    not_loaded: 0, not_loaded_ids: [], already_completed: 0, events_owed: 0, not_qualifying: 0, selected: 0, claimed_elsewhere: 0, limit: o.limit, limit_reached: false,
    completed: 0, cached: 0, failed: 0, already: 0, lost: 0, skips_recorded: 0, interrupted: false, elapsed_ms: 0,
  };
  const pg = <T>(what: string, fn: () => Promise<T>): Promise<T> => withPgRetry(what, fn, { log, signal: o.signal });

  let lock: PoolClient | null = null;
  const reader = new PartitionReader(ctx.kafka, 500);
  const offsets = new GroupOffsets(ctx.kafka, groupId, topic);
  try {
    if (!o.dryRun) {
      lock = await ctx.pool.connect();
      const { rows } = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [`chatstats-backfill:${groupId}`]);
      if (rows[0]?.ok !== true) {
        lock.release();
        lock = null;
        throw new Error(`another backfill of pass ${label} is running (group ${groupId}); wait for it to finish or stop it`);
      }
    }

    // --- position -------------------------------------------------------------------------
    const partitions = o.chatId !== null ? [partitionForKey(o.chatId, ctx.partitionCount)] : Array.from({ length: ctx.partitionCount }, (_, i) => i);
    const [begins, ends, committed] = await Promise.all([
      reader.beginOffsets(topic, partitions), reader.endOffsets(topic, partitions), offsets.fetch(partitions),
    ]);
    for (const p of partitions) {
      const begin = begins.get(p) ?? 0;
      const end = ends.get(p) ?? 0;
      const c = committed.get(p) ?? null;
      let from = begin;
      if (!o.fromBeginning && c !== null) {
        if (c > end) log.warn({ partition: p, committed: c, end }, 'committed backfill position is past the end of the topic (topic recreated?); reading from the beginning');
        else from = Math.max(begin, c);
      }
      if (!o.fromBeginning && c !== null && c > begin) s.resumed = true;
      s.partitions.push({ partition: p, committed: c, from, to: end });
    }
    const toRead = s.partitions.reduce((n, p) => n + Math.max(0, p.to - p.from), 0);

    // --- scan -----------------------------------------------------------------------------
    const plans: PartitionPlan[] = [];
    const seen = new Set<string>();
    const batchSize = o.batchSize ?? 500;
    let stop = false;
    const classify = async (plan: PartitionPlan, batch: Candidate[]): Promise<void> => {
      if (batch.length === 0 || stop) return;
      const { rows } = await pg('check conversations', () => ctx.pool.query<{ id: string; loaded: boolean; message_count: number | null; account_id: string | null; status: RunStatus | null; owed: boolean }>(
        `SELECT i.id, c.conversation_id IS NOT NULL AS loaded, c.message_count, c.account_id, r.status, r.emitted_at IS NULL AS owed
         FROM unnest($1::text[]) AS i(id)
         LEFT JOIN conversations c ON c.conversation_id = i.id
         LEFT JOIN analysis_runs r ON r.conversation_id = i.id AND r.pass_name = $2 AND r.pass_version = $3`,
        [batch.map((b) => b.id), pass.name, pass.prompt_version]));
      const byId = new Map(rows.map((r) => [r.id, r]));
      const accounts = pass.requires.subscription
        ? [...new Set(rows.map((r) => r.account_id).filter((a): a is string => a !== null))] : [];
      const active = accounts.length > 0 ? await pg('read subscriptions', () => activeAccounts(ctx.pool, accounts)) : new Set<string>();
      for (const b of batch) {
        const r = byId.get(b.id)!;
        const v = verdict(pass, { loaded: r.loaded, message_count: r.message_count ?? 0, account_id: r.account_id, status: r.status, owed: r.owed }, active);
        if (v.kind === 'run' && o.limit !== null && s.selected >= o.limit) {
          plan.cutoff = b.offset;
          s.limit_reached = true;
          stop = true;
          return;
        }
        s.conversations++;
        switch (v.kind) {
          case 'not_loaded':
            s.not_loaded++;
            if (s.not_loaded_ids.length < 10) s.not_loaded_ids.push(b.id);
            break;
          case 'completed':
            s.already_completed++;
            if (v.owed) {
              s.events_owed++;
              plan.runs.push({ id: b.id, offset: b.offset, emitOnly: true });
            }
            break;
          case 'not_qualifying':
            s.not_qualifying++;
            if (v.record) plan.skips.push({ id: b.id, offset: b.offset, reason: v.reason });
            break;
          case 'run':
            s.selected++;
            if (v.status === 'running') s.claimed_elsewhere++;
            plan.runs.push({ id: b.id, offset: b.offset });
            break;
        }
      }
    };
    let read = 0;
    for (const range of s.partitions) {
      if (stop) break;
      const plan: PartitionPlan = { partition: range.partition, from: range.from, cutoff: range.to, runs: [], skips: [] };
      plans.push(plan);
      if (range.to <= range.from) continue;
      let batch: Candidate[] = [];
      let pos = range.from;
      const onRecords = async (records: RawRecord[]): Promise<void> => {
        for (const r of records) {
          s.records++;
          const offset = Number(r.offset);
          let c: { conversation_id: string; chat_id: string; started_at: number };
          try {
            c = await ctx.codec.decode('ConversationSealed', r.value);
          } catch (e) {
            if (!(e instanceof InvalidRecordError)) {
              throw new UnreachableError(`cannot decode ${topic} partition ${range.partition} offset ${offset}: ${(e as Error).message}${ctx.cfg.schemaRegistryUrl ? ` (is the schema registry at ${ctx.cfg.schemaRegistryUrl} reachable?)` : ''}`);
            }
            // Avro without a registry is a configuration problem, not a bad record: moving past it
            // would skip the whole topic.
            if (r.value?.[0] === 0 && ctx.codec.registry === null) {
              throw new UnreachableError(`${topic} holds Avro records (registry-framed): set SCHEMA_REGISTRY_URL to the schema registry they were written with`);
            }
            s.undecodable++;
            log.warn({ partition: range.partition, offset, err: e.message }, 'undecodable record on conversation.sealed skipped');
            continue;
          }
          if (!passesFilters(c, filters)) { s.filtered_out++; continue; }
          if (seen.has(c.conversation_id)) { s.duplicates++; continue; }
          seen.add(c.conversation_id);
          batch.push({ id: c.conversation_id, offset });
          if (batch.length >= batchSize) {
            await classify(plan, batch);
            batch = [];
            if (stop) {
              read += offset + 1 - pos;
              pos = offset + 1;
              throw new StopScan();
            }
          }
        }
        // Progress in offsets (transaction markers take offsets too), so that it ends at the total.
        const last = Number(records[records.length - 1]!.offset) + 1;
        read += last - pos;
        pos = last;
        progress.update({ phase: 'scan', label, done: Math.min(read, toRead), total: toRead, detail: `${s.records} records, to run ${s.selected}` });
      };
      try {
        await reader.read(topic, range.partition, range.from, range.to, onRecords);
        await classify(plan, batch);
        read += range.to - pos;
      } catch (e) {
        if (!(e instanceof StopScan)) throw e;
      }
    }
    s.offsets = stop ? Math.min(read, toRead) : toRead;
    s.past_limit = s.records - s.conversations - s.filtered_out - s.duplicates - s.undecodable;
    progress.update({ phase: 'scan', label, done: s.offsets, total: toRead, detail: `${s.records} records, to run ${s.selected}` });
    progress.end(!o.dryRun && s.claimed_elsewhere > 0
      ? `${s.claimed_elsewhere} of them are claimed by another worker (live analysis, another backfill, or one that was killed): they run here when that claim is released or its lease expires (60 s)`
      : undefined);

    if (o.dryRun) return s;

    // --- run ------------------------------------------------------------------------------
    for (const plan of plans) {
      for (const k of plan.skips) {
        await pg('record skip', () => skipRun(ctx.pool, { conversation_id: k.id, pass_name: pass.name, pass_version: pass.prompt_version }, k.reason));
        s.skips_recorded++;
      }
    }
    const position = new Map<number, number>(s.partitions.map((p) => [p.partition, p.committed ?? -1]));
    const commit = async (targets: Map<number, number>): Promise<void> => {
      const moved = new Map([...targets].filter(([p, o2]) => o2 > (position.get(p) ?? -1)));
      if (moved.size === 0) return;
      await offsets.commit(moved);
      for (const [p, o2] of moved) position.set(p, o2);
    };
    // Partitions with nothing to run are done already.
    await commit(new Map(plans.filter((p) => p.runs.length === 0).map((p) => [p.partition, p.cutoff])));

    const items = plans.flatMap((plan) => plan.runs.map((r) => ({ plan, ...r })));
    const toRun = items.filter((x) => !x.emitOnly).length;
    const done = new Map<number, number>(plans.map((p) => [p.partition, 0]));
    const chunk = chunkSizeFor(o.limiter.ratePerSec, o.maxChunk ?? 50);
    const detail = (): string => `completed ${s.completed + s.cached}${s.failed ? `, failed ${s.failed}` : ''}${s.already ? `, already done ${s.already}` : ''}`;
    let finished = 0;
    if (toRun > 0) progress.update({ phase: 'run', label, done: 0, total: toRun, detail: detail() });
    for (let i = 0; i < items.length; i += chunk) {
      if (o.signal?.aborted) { s.interrupted = true; break; }
      const part = items.slice(i, i + chunk);
      const runIds = part.filter((x) => !x.emitOnly).map((x) => x.id);
      const emitIds = part.filter((x) => x.emitOnly).map((x) => x.id);
      try {
        await o.limiter.take(runIds.length, o.signal);
      } catch {
        s.interrupted = true;
        break;
      }
      const common = { pool: ctx.pool, passes: o.passes, emit: ctx.emit, redo: ['failed', 'skipped'] as RunStatus[], allowDisabled: o.allowDisabled, log };
      if (runIds.length > 0) {
        const r: RunPassSummary = await runPass(pass.name, runIds, { ...common, concurrency: Math.min(o.concurrency, runIds.length), chunkSize: runIds.length });
        s.completed += r.completed;
        s.cached += r.cached;
        s.failed += r.failed;
        s.already += r.already;
        s.lost += r.lost;
        // Deleted from PostgreSQL between the scan and the run.
        s.not_loaded += r.missing;
        // No longer qualifying (a subscription ended between the scan and the run).
        s.skips_recorded += r.skipped;
      }
      // Completed runs whose event is owed: runPass finds them done and sends the event.
      if (emitIds.length > 0) await runPass(pass.name, emitIds, { ...common, concurrency: Math.min(o.concurrency, emitIds.length), chunkSize: emitIds.length });
      const touched = new Map<number, number>();
      for (const x of part) {
        const n = (done.get(x.plan.partition) ?? 0) + 1;
        done.set(x.plan.partition, n);
        touched.set(x.plan.partition, commitTarget(x.plan, n));
      }
      await commit(touched);
      finished += runIds.length;
      if (toRun > 0) progress.update({ phase: 'run', label, done: finished, total: toRun, detail: detail() });
    }
    progress.end();
    return s;
  } finally {
    s.elapsed_ms = Date.now() - started;
    await reader.disconnect().catch(() => undefined);
    await offsets.disconnect().catch(() => undefined);
    if (lock !== null) {
      await lock.query('SELECT pg_advisory_unlock(hashtext($1))', [`chatstats-backfill:${groupId}`]).catch(() => undefined);
      lock.release();
    }
  }
}
