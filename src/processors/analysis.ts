// Analysis: conversation.ready → analysis passes → analysis_runs + analysis.completed.
//
// For each ready conversation: load it from PostgreSQL, work out the enabled passes it qualifies
// for (min_messages; an active subscription of its account_id where required; the others are
// recorded 'skipped' with the reason), and submit those to a PassScheduler: one priority queue for
// all conversations (pass priority desc, then arrival), run by `concurrency` workers, each run
// claimed, cached by content, retried with backoff and recorded failed after maxAttempts (see
// analysis/runner.ts). An input record's offset is committed only when every pass of its
// conversation is recorded, and only up to the first record of its partition that is not finished
// (offsets are committed in order), so a crash replays what was not recorded and nothing else runs
// twice (recorded runs are skipped). Intake is bounded: at most maxInFlightConversations at a time.
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Producer } from 'kafkajs';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { ConfigError, parseDuration, type Config } from '../config';
import { logger } from '../log';
import { registry, zeroed, combinations } from '../metrics';
import { topicNames, type TopicNames } from '../topics';
import { kafkaFromConfig } from '../kafka-client';
import { RecordCodec } from '../records/codec';
import { dlqErrorInfo, toDlqMessage } from '../records/dlq';
import { InvalidRecordError } from '../records/validate';
import { javaCompatiblePartitioner } from '../records/partitioner';
import type { AnalysisCompleted } from '../records/downstream-types';
import { createPool, errorSummary } from '../db/pool';
import { migrate } from '../db/migrate';
import { fetchConversation } from '../db/conversations';
import { hasActiveSubscription } from '../db/subscriptions';
import { skipRun } from '../db/analysis';
import { backoffDelay, sleep } from '../db/errors';
import { withPgRetry } from '../db/retry';
import { startGroupLag } from '../runtime/group-lag';
import { runSupervised } from '../runtime/consumer-supervisor';
import type { AnalyzerRegistry } from '../analysis/analyzer';
import { createAnalyzers, llmOptionsFromConfig } from '../analysis/analyzers';
import type { LlmOptions } from '../analysis/llm';
import { loadPasses, planPasses, type PassDefinition } from '../analysis/passes';
import { metrics as runMetrics, PassRunner, StoppedError } from '../analysis/runner';
import { PassScheduler } from '../analysis/scheduler';

const metrics = {
  conversations: zeroed(new Counter({
    name: 'chatstats_analysis_conversations_total',
    help: 'conversation.ready records whose passes are all recorded (result: analysed, dlq)',
    labelNames: ['result'] as const,
    registers: [registry],
  }), [{ result: 'analysed' }, { result: 'dlq' }]),
  inFlight: new Gauge({
    name: 'chatstats_analysis_conversations_in_flight',
    help: 'Conversations taken from conversation.ready whose passes are not all recorded yet',
    registers: [registry],
  }),
  commits: new Counter({
    name: 'chatstats_analysis_offset_commits_total',
    help: 'Offset commits of the analysis consumer',
    registers: [registry],
  }),
};

export interface AnalysisOptions {
  pool?: Pool;
  kafka?: Kafka;
  codec?: RecordCodec;
  /** Default: loadPasses(PASSES_FILE or config/passes.json). */
  passes?: PassDefinition[];
  /** Default: the built-in analyzers and the LLM one configured from LLM_* (and `llm`). */
  analyzers?: AnalyzerRegistry;
  /** Overrides of the LLM client settings (timeouts, retries). */
  llm?: Partial<LlmOptions>;
  /** Default `${APP_ID}-analysis`. */
  groupId?: string;
  fromBeginning?: boolean;
  /** Pass runs at once. Default ANALYSIS_CONCURRENCY or 4. */
  concurrency?: number;
  /** Attempts before a run is recorded failed. Default ANALYSIS_MAX_ATTEMPTS or 3. */
  maxAttempts?: number;
  /** Backoff between attempts. Default 1 s doubling to 30 s (ANALYSIS_RETRY_BACKOFF sets the first). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Longest single attempt. Default ANALYSIS_ATTEMPT_TIMEOUT or 5m. */
  attemptTimeoutMs?: number;
  /** Claim lease. Default 60 s. */
  leaseMs?: number;
  /** Conversations taken in before intake waits. Default 64. */
  maxInFlightConversations?: number;
  /** Backoff while PostgreSQL is unavailable. */
  pgBackoff?: { initialMs?: number; maxMs?: number };
  /** Time runs in progress get to finish at stop before they are aborted. Default 30 s. */
  drainTimeoutMs?: number;
  migrate?: boolean;
  log?: Logger;
}

export interface AnalysisHandle {
  stop(): Promise<void>;
  ready(): Promise<boolean>;
}

function envInt(name: string, def: number, min: number): number {
  const v = process.env[name]?.trim();
  if (!v) return def;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new ConfigError(name, `must be an integer of at least ${min}, got "${v}"`);
  return Number(v);
}

function envDuration(name: string, def: string): number {
  const v = process.env[name]?.trim() || def;
  try { return parseDuration(v); } catch (e) { throw new ConfigError(name, (e as Error).message); }
}

/** Per-partition order of intake; the committable offset is the first one not finished. */
class OffsetTrack {
  private readonly entries: { offset: bigint; done: boolean }[] = [];
  private committed: bigint | null = null;
  alive = true;

  add(offset: string): { done(): void } {
    const e = { offset: BigInt(offset), done: false };
    this.entries.push(e);
    return { done: () => { e.done = true; } };
  }

  /** Records taken in and not yet committable (finished ones behind an unfinished one included). */
  get window(): number { return this.entries.length; }

  /** The offset to commit (next to read) if it moved since the last commit, else null. */
  next(): bigint | null {
    while (this.entries.length > 1 && this.entries[0]!.done) this.entries.shift();
    const head = this.entries[0];
    if (head === undefined) return null;
    const target = head.done ? head.offset + 1n : head.offset;
    if (this.committed !== null && target <= this.committed) return null;
    return target;
  }

  committedAt(o: bigint): void { this.committed = o; }
}

class AnalysisProcessor {
  private stopping = false;
  private readonly abort = new AbortController();
  private tracks = new Map<string, OffsetTrack>();
  private inFlight = 0;
  private readonly waiters: (() => void)[] = [];
  private readonly handlers = new Set<Promise<void>>();
  private commitTimer: NodeJS.Timeout | null = null;
  private commitChain: Promise<void> = Promise.resolve();
  private inGroup = false;
  private readonly maxInFlight: number;
  private readonly maxWindow: number;

  constructor(
    private readonly topics: TopicNames,
    private readonly pool: Pool,
    private readonly codec: RecordCodec,
    private readonly consumer: Consumer,
    private readonly producer: Producer,
    private readonly passes: PassDefinition[],
    private readonly scheduler: PassScheduler,
    private readonly log: Logger,
    private readonly opts: AnalysisOptions,
  ) {
    this.maxInFlight = opts.maxInFlightConversations ?? 64;
    this.maxWindow = Math.max(1000, this.maxInFlight * 20);
  }

  async start(fromBeginning: boolean): Promise<void> {
    const { GROUP_JOIN, CRASH, STOP } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, (e) => {
      // The group restarts reading at the committed offsets: what was in flight is read again,
      // so the old bookkeeping goes (its runs still finish and are found recorded).
      for (const t of this.tracks.values()) t.alive = false;
      this.tracks = new Map();
      this.inGroup = true;
      this.log.info({ assignment: e.payload.memberAssignment }, 'analysis joined its consumer group');
    });
    this.consumer.on(CRASH, (e) => { this.inGroup = false; this.log.error({ err: errorSummary(e.payload.error), restart: e.payload.restart }, 'analysis consumer crashed'); });
    this.consumer.on(STOP, () => { this.inGroup = false; });
    await this.consumer.subscribe({ topic: this.topics.ready, fromBeginning });
    await runSupervised(this.consumer, {
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 4,
      eachBatch: (p) => this.eachBatch(p),
    }, { role: 'analysis', log: this.log, stopping: () => this.stopping });
  }

  ready(): boolean { return this.inGroup && !this.stopping; }

  private async eachBatch(p: EachBatchPayload): Promise<void> {
    const { topic, partition } = p.batch;
    const key = `${topic}:${partition}`;
    for (const msg of p.batch.messages) {
      // Bounded intake: conversations in flight, and how far a partition may run ahead of its
      // oldest unfinished record (what a crash would make it read again).
      while (!this.stopping && (this.inFlight >= this.maxInFlight || (this.tracks.get(key)?.window ?? 0) >= this.maxWindow)) {
        await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 1000).unref(); });
        if (!p.isRunning() || p.isStale()) return;
        await p.heartbeat();
      }
      if (this.stopping || !p.isRunning() || p.isStale()) return;
      let track = this.tracks.get(key);
      if (track === undefined) { track = new OffsetTrack(); this.tracks.set(key, track); }
      const entry = track.add(msg.offset);
      p.resolveOffset(msg.offset);
      this.inFlight++;
      metrics.inFlight.set(this.inFlight);
      const t = track;
      const h = this.handle(topic, partition, msg)
        .then((finished) => {
          if (finished && t.alive) { entry.done(); this.scheduleCommit(); }
        })
        .finally(() => {
          this.inFlight--;
          metrics.inFlight.set(this.inFlight);
          this.handlers.delete(h);
          this.waiters.shift()?.();
        });
      this.handlers.add(h);
    }
    await p.heartbeat();
  }

  /** Records every pass of one ready record; false when abandoned (stopping). Never throws. */
  private async handle(topic: string, partition: number, msg: KafkaMessage): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.process(topic, partition, msg);
        return true;
      } catch (e) {
        if (this.stopping || e instanceof StoppedError) return false;
        const delay = backoffDelay(attempt, 1000, 30_000);
        this.log.error({ err: errorSummary(e), topic, partition, offset: msg.offset, retryInMs: delay }, 'conversation.ready record could not be processed; retrying');
        try { await sleep(delay, this.abort.signal); } catch { return false; }
      }
    }
  }

  private pg<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return withPgRetry(what, fn, {
      signal: this.abort.signal, log: this.log, initialMs: this.opts.pgBackoff?.initialMs, maxMs: this.opts.pgBackoff?.maxMs,
      onRetry: () => runMetrics.pgErrors.inc(),
    });
  }

  private async toDlq(topic: string, partition: number, msg: KafkaMessage, err: Error): Promise<void> {
    const e = dlqErrorInfo(err);
    this.log.warn({ topic, partition, offset: msg.offset, reason: e.reason }, 'conversation.ready record sent to the DLQ');
    await this.producer.send({
      topic: this.topics.readyDlq,
      acks: -1,
      messages: [toDlqMessage(msg, { reason: e.reason, errorClass: e.errorClass, sourceTopic: topic, partition, offset: msg.offset })],
    });
    metrics.conversations.inc({ result: 'dlq' });
  }

  private async process(topic: string, partition: number, msg: KafkaMessage): Promise<void> {
    let conversationId: string;
    try {
      const ready = await this.codec.decodeReady(msg.value);
      conversationId = ready.conversation_id;
    } catch (e) {
      if (e instanceof InvalidRecordError) { await this.toDlq(topic, partition, msg, e); return; }
      throw e;
    }
    const conv = await this.pg('load conversation', () => fetchConversation(this.pool, conversationId));
    if (conv === null) {
      await this.toDlq(topic, partition, msg, new InvalidRecordError('conversation not found in PostgreSQL', conversationId));
      return;
    }
    const needsSub = this.passes.some((p) => p.enabled && p.requires.subscription);
    const subscriptionActive = needsSub && conv.account_id !== null
      ? await this.pg('read subscription', () => hasActiveSubscription(this.pool, conv.account_id)) : false;
    const plan = planPasses(this.passes, { message_count: conv.messages.length, account_id: conv.account_id, subscriptionActive });
    for (const s of plan.skip) {
      await this.pg('record skip', () => skipRun(this.pool, { conversation_id: conv.conversation_id, pass_name: s.pass.name, pass_version: s.pass.prompt_version }, s.reason));
      runMetrics.runs.inc({ pass: s.pass.name, outcome: 'skipped' });
    }
    // Submitted highest priority first; the scheduler orders them against other conversations' runs.
    const outcomes = await Promise.all(plan.run.map((pass) => this.scheduler.submit(conv, pass)));
    const lost = outcomes.filter((o) => o.kind === 'lost').length;
    if (lost > 0) this.log.warn({ conversation_id: conv.conversation_id, lost }, 'runs taken over by another processor while running; it records them');
    metrics.conversations.inc({ result: 'analysed' });
  }

  private scheduleCommit(): void {
    if (this.commitTimer !== null) return;
    this.commitTimer = setTimeout(() => {
      this.commitTimer = null;
      this.commitChain = this.commitChain.then(() => this.commitNow()).catch(() => undefined);
    }, 100);
  }

  /** Commits, per partition, up to the first record not finished. */
  async commitNow(): Promise<void> {
    const byTopic: { topic: string; partition: number; offset: string }[] = [];
    const marks: [OffsetTrack, bigint][] = [];
    for (const [key, track] of this.tracks) {
      const next = track.next();
      if (next === null) continue;
      const i = key.lastIndexOf(':');
      byTopic.push({ topic: key.slice(0, i), partition: Number(key.slice(i + 1)), offset: next.toString() });
      marks.push([track, next]);
    }
    if (byTopic.length === 0) return;
    try {
      await this.consumer.commitOffsets(byTopic);
      for (const [t, o] of marks) t.committedAt(o);
      metrics.commits.inc();
    } catch (e) {
      this.log.warn({ err: errorSummary(e) }, 'offset commit failed (rebalance?); the records are read again and found recorded');
    }
  }

  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    this.consumer.pause([{ topic: this.topics.ready }]);
    for (const w of this.waiters.splice(0)) w();
    // Waiting runs are abandoned, runs in progress finish (up to drainMs), then handlers settle.
    await this.scheduler.stop(drainMs);
    this.abort.abort();
    await Promise.all([...this.handlers]);
    if (this.commitTimer !== null) { clearTimeout(this.commitTimer); this.commitTimer = null; }
    await this.commitChain;
    await this.commitNow();
  }
}

export async function startAnalysis(cfg: Config, opts: AnalysisOptions = {}): Promise<AnalysisHandle> {
  const log = opts.log ?? logger('AnalysisPasses');
  const topics = topicNames(cfg);
  const passes = opts.passes ?? loadPasses(cfg.passesFile);
  // Every enabled pass has its series from the start (0), so rate() and alerts see no gap.
  const names = passes.filter((p) => p.enabled).map((p) => p.name);
  zeroed(runMetrics.runs, combinations({ pass: names, outcome: ['completed', 'cached', 'failed', 'skipped'] }));
  zeroed(runMetrics.attemptErrors, combinations({ pass: names, retryable: ['true', 'false'] }));
  const concurrency = opts.concurrency ?? envInt('ANALYSIS_CONCURRENCY', 4, 1);
  const maxAttempts = opts.maxAttempts ?? envInt('ANALYSIS_MAX_ATTEMPTS', 3, 1);
  const attemptTimeoutMs = opts.attemptTimeoutMs ?? envDuration('ANALYSIS_ATTEMPT_TIMEOUT', '5m');
  const retryInitialMs = opts.retryInitialMs ?? envDuration('ANALYSIS_RETRY_BACKOFF', '1s');
  const ownPool = opts.pool === undefined;
  const pool = opts.pool ?? createPool(cfg.databaseUrl, { log, applicationName: 'chatstats-analysis', max: Math.max(10, concurrency + 4) });
  const codec = opts.codec ?? new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  const kafka = opts.kafka ?? kafkaFromConfig(cfg, `${cfg.appId}-analysis`);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
  const groupId = opts.groupId ?? `${cfg.appId}-analysis`;
  // A short long-poll: an idle consumer's stop() waits for its fetch in flight (kafkajs' default 5 s).
  const consumer = kafka.consumer({ groupId, readUncommitted: false, allowAutoTopicCreation: false, maxWaitTimeInMs: 500 });
  let scheduler: PassScheduler | null = null;
  try {
    await codec.init();
    if (opts.migrate !== false) {
      await withPgRetry('migrate', () => migrate(pool), { log, initialMs: opts.pgBackoff?.initialMs, maxMs: opts.pgBackoff?.maxMs });
    }
    const llmDefaults: Partial<LlmOptions> = { timeoutMs: envDuration('LLM_TIMEOUT', '60s') };
    const llm = llmOptionsFromConfig(cfg, { ...llmDefaults, ...opts.llm });
    const analyzers = opts.analyzers ?? createAnalyzers({ pool, llm });
    await producer.connect();
    const emit = async (event: AnalysisCompleted): Promise<void> => {
      await producer.send({ topic: topics.completed, acks: -1, messages: [{ key: event.conversation_id, value: await codec.encode('AnalysisCompleted', event) }] });
    };
    const runner = new PassRunner({
      pool, analyzers, emit, maxAttempts, attemptTimeoutMs, retryInitialMs, retryMaxMs: opts.retryMaxMs,
      leaseMs: opts.leaseMs, log, pgBackoff: opts.pgBackoff,
    });
    scheduler = new PassScheduler(runner, { concurrency, log, onUnexpected: 'retry' });
    await consumer.connect();
    const proc = new AnalysisProcessor(topics, pool, codec, consumer, producer, passes, scheduler, log, opts);
    await proc.start(opts.fromBeginning ?? true);
    const enabled = passes.filter((p) => p.enabled).map((p) => `${p.name}@${p.prompt_version}`);
    const llmPasses = passes.filter((p) => p.enabled && p.analyzer === 'llm').map((p) => p.name);
    if (llm === null && opts.analyzers === undefined && llmPasses.length > 0) {
      log.warn({ passes: llmPasses }, 'LLM_BASE_URL is not set: these enabled passes are recorded skipped; set it and run `chatstats backfill PASS` for them, or disable them');
    }
    const lag = startGroupLag(kafka, groupId, topics.ready, { log });
    log.info({ topic: topics.ready, groupId, concurrency, maxAttempts, passes: enabled, llm: llm !== null }, 'analysis started');
    let stopped: Promise<void> | null = null;
    return {
      ready: async () => proc.ready(),
      stop: () => {
        stopped ??= (async () => {
          await Promise.all([proc.stop(opts.drainTimeoutMs ?? 30_000), lag.stop()]);
          await consumer.disconnect().catch((err) => log.warn({ err: errorSummary(err) }, 'consumer disconnect failed'));
          await producer.disconnect().catch((err) => log.warn({ err: errorSummary(err) }, 'producer disconnect failed'));
          if (ownPool) await pool.end().catch(() => undefined);
          log.info('analysis stopped');
        })();
        return stopped;
      },
    };
  } catch (e) {
    await scheduler?.stop(0).catch(() => undefined);
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    if (ownPool) await pool.end().catch(() => undefined);
    throw e;
  }
}

export { runPass } from '../analysis/run-pass';
