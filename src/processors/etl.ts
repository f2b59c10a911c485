// ETL: conversation.sealed → PostgreSQL → conversation.ready.
//
// Reads conversation.sealed as a read_committed consumer (only committed transactions of the
// tracker), in chunks of `batchSize` records per partition. Each chunk is written to PostgreSQL in
// one transaction (conversations and their messages; ON CONFLICT DO NOTHING on conversation_id and
// message_id, so a replay loads nothing twice), then conversation.ready is produced for each of its
// conversations (keyed by conversation_id), and only then are the input offsets committed. A crash
// anywhere in between replays the chunk: PostgreSQL stays exact, conversation.ready is at least once
// (the analysis side skips runs already recorded).
//
// PostgreSQL down: the chunk is retried with capped exponential backoff (heartbeating the group
// meanwhile), logged and counted, until it succeeds or the processor stops; nothing is skipped.
// A record that cannot be decoded or fails validation, or whose values PostgreSQL refuses, goes to
// conversation.sealed.dlq (original bytes + reason headers) and the rest of the chunk loads.
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Message, Producer } from 'kafkajs';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Config } from '../config';
import { logger } from '../log';
import { registry, zeroed } from '../metrics';
import { topicNames, type TopicNames } from '../topics';
import { kafkaFromConfig } from '../kafka-client';
import { RecordCodec } from '../records/codec';
import { toDlqMessage, dlqErrorInfo } from '../records/dlq';
import { InvalidRecordError } from '../records/validate';
import { javaCompatiblePartitioner } from '../records/partitioner';
import type { ConversationSealed } from '../records/types';
import type { ConversationReady } from '../records/downstream-types';
import { createPool, errorSummary } from '../db/pool';
import { migrate } from '../db/migrate';
import { loadConversations, type LoadOutcome } from '../db/conversations';
import { backoffDelay, isTransientPgError, sleep } from '../db/errors';
import { withPgRetry } from '../db/retry';
import { startGroupLag } from '../runtime/group-lag';
import { runSupervised } from '../runtime/consumer-supervisor';
import { byPartition, PartitionCounts, sendEachPartition } from '../kafka-send';

const metrics = {
  conversations: zeroed(new Counter({
    name: 'chatstats_etl_conversations_loaded_total',
    help: 'Sealed conversations written to PostgreSQL (result: inserted, or existing when already loaded)',
    labelNames: ['result'] as const,
    registers: [registry],
  }), [{ result: 'inserted' }, { result: 'existing' }]),
  messages: new Counter({
    name: 'chatstats_etl_messages_loaded_total',
    help: 'Messages of newly inserted conversations written to PostgreSQL',
    registers: [registry],
  }),
  batchDuration: new Histogram({
    name: 'chatstats_etl_batch_duration_seconds',
    help: 'Time to load one chunk of conversation.sealed: decode, PostgreSQL (with retries), produce, commit',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  }),
  pgErrors: new Counter({
    name: 'chatstats_etl_pg_errors_total',
    help: 'Failed PostgreSQL attempts to load a chunk (each retried after a backoff)',
    registers: [registry],
  }),
  pgAvailable: new Gauge({
    name: 'chatstats_etl_pg_available',
    help: '1 when the last PostgreSQL write of the ETL succeeded, 0 while it is retrying',
    registers: [registry],
  }),
  dlq: zeroed(new Counter({
    name: 'chatstats_etl_dlq_total',
    help: 'conversation.sealed records sent to the DLQ (reason: invalid record, or rejected by PostgreSQL)',
    labelNames: ['reason'] as const,
    registers: [registry],
  }), [{ reason: 'invalid' }, { reason: 'rejected' }]),
  duplicateMessages: new Counter({
    name: 'chatstats_etl_duplicate_messages_total',
    help: 'Messages of a newly loaded conversation whose message_id was already loaded with another conversation (not loaded again)',
    registers: [registry],
  }),
  ready: new Counter({
    name: 'chatstats_etl_ready_emitted_total',
    help: 'conversation.ready records produced',
    registers: [registry],
  }),
};

export interface EtlChunkInfo {
  topic: string;
  partition: number;
  firstOffset: string;
  lastOffset: string;
  loaded: number;
  dlq: number;
}

export interface EtlOptions {
  pool?: Pool;
  kafka?: Kafka;
  codec?: RecordCodec;
  /** Default `${APP_ID}-etl`. */
  groupId?: string;
  /** Where a new consumer group starts: default true (all retained sealed conversations). */
  fromBeginning?: boolean;
  /** Records per PostgreSQL transaction. Default 200. */
  batchSize?: number;
  /** Partitions processed in parallel. Default 3. */
  partitionsConsumedConcurrently?: number;
  /** Backoff while PostgreSQL is unavailable. Default 500 ms doubling to 30 s. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Apply database migrations at start. Default true. */
  migrate?: boolean;
  log?: Logger;
  /** For tests: called after a chunk's PostgreSQL commit and before anything is produced or committed. */
  afterPgCommit?: (info: EtlChunkInfo) => void | Promise<void>;
  /** For tests and progress: called after a chunk's offsets are committed. */
  afterChunk?: (info: EtlChunkInfo) => void;
}

export interface EtlHandle {
  /** Finishes the chunk in progress (or abandons a PostgreSQL retry wait), commits, leaves the group. */
  stop(): Promise<void>;
  /** True while the consumer is in its group and PostgreSQL was reachable last time it was used. */
  ready(): Promise<boolean>;
}

/** Checks what the schema cannot: the conversation is non-empty and consistent. */
export function checkSealed(c: ConversationSealed): void {
  if (c.conversation_id === '') throw new InvalidRecordError('empty conversation_id');
  if (c.chat_id === '') throw new InvalidRecordError('empty chat_id');
  if (c.messages.length === 0) throw new InvalidRecordError('conversation without messages');
  if (c.message_count !== c.messages.length) {
    throw new InvalidRecordError('message_count does not match messages', `message_count ${c.message_count}, ${c.messages.length} messages`);
  }
  if (c.ended_at < c.started_at) throw new InvalidRecordError('ended_at before started_at');
  const ids = new Set<string>();
  for (const m of c.messages) {
    if (ids.has(m.message_id)) throw new InvalidRecordError('duplicate message_id in conversation', m.message_id);
    ids.add(m.message_id);
  }
}

interface Decoded { msg: KafkaMessage; sealed: ConversationSealed }
interface Poison { msg: KafkaMessage; err: Error; reason: 'invalid' | 'rejected' }

class Etl {
  private stopping = false;
  private readonly abort = new AbortController();
  private pgOk = true;
  private inGroup = false;
  private readonly batchSize: number;

  constructor(
    private readonly topics: TopicNames,
    private readonly pool: Pool,
    private readonly codec: RecordCodec,
    private readonly consumer: Consumer,
    private readonly producer: Producer,
    private readonly log: Logger,
    private readonly opts: EtlOptions,
    /** conversation.ready is keyed by conversation_id: its sends are split by partition (src/kafka-send.ts). */
    private readonly partitionCounts: PartitionCounts,
  ) {
    this.batchSize = opts.batchSize ?? 200;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${this.batchSize}`);
  }

  async start(fromBeginning: boolean): Promise<void> {
    const { GROUP_JOIN, CRASH, STOP } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, (e) => {
      this.inGroup = true;
      this.log.info({ assignment: e.payload.memberAssignment }, 'ETL joined its consumer group');
    });
    this.consumer.on(CRASH, (e) => {
      this.inGroup = false;
      this.log.error({ err: errorSummary(e.payload.error), restart: e.payload.restart }, 'ETL consumer crashed');
    });
    this.consumer.on(STOP, () => { this.inGroup = false; });
    await this.consumer.subscribe({ topic: this.topics.sealed, fromBeginning });
    await runSupervised(this.consumer, {
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.opts.partitionsConsumedConcurrently ?? 3,
      eachBatch: (payload) => this.eachBatch(payload),
    }, { role: 'etl', log: this.log, stopping: () => this.stopping });
  }

  ready(): boolean { return this.inGroup && this.pgOk && !this.stopping; }

  private cancelled(p: EachBatchPayload): boolean {
    return this.stopping || !p.isRunning() || p.isStale();
  }

  private async eachBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    for (let i = 0; i < batch.messages.length; i += this.batchSize) {
      if (this.cancelled(p)) return;
      const chunk = batch.messages.slice(i, i + this.batchSize);
      const end = metrics.batchDuration.startTimer();
      const done = await this.processChunk(p, chunk);
      if (!done) return;
      end();
    }
  }

  /** Decodes with retries for failures that are not the record's fault (schema registry down). */
  private async decode(p: EachBatchPayload, chunk: KafkaMessage[]): Promise<{ good: Decoded[]; poison: Poison[] } | null> {
    for (let attempt = 0; ; attempt++) {
      const good: Decoded[] = [];
      const poison: Poison[] = [];
      try {
        for (const msg of chunk) {
          try {
            const sealed = await this.codec.decodeSealed(msg.value);
            checkSealed(sealed);
            good.push({ msg, sealed });
          } catch (e) {
            if (!(e instanceof InvalidRecordError)) throw e;
            poison.push({ msg, err: e, reason: 'invalid' });
          }
        }
        return { good, poison };
      } catch (e) {
        const delay = backoffDelay(attempt, 500, 30_000);
        this.log.warn({ err: errorSummary(e), retryInMs: delay }, 'cannot decode conversation.sealed records (schema registry?); retrying');
        if (!(await this.wait(p, delay))) return null;
      }
    }
  }

  /** Sleeps while heartbeating; false when the processor stops or the partition is taken away. */
  private async wait(p: EachBatchPayload, ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (this.cancelled(p)) return false;
      try { await sleep(Math.min(1000, until - Date.now()), this.abort.signal); } catch { return false; }
      await p.heartbeat();
    }
    return !this.cancelled(p);
  }

  /** One chunk: decode, PostgreSQL, produce, commit. False when abandoned (not committed). */
  private async processChunk(p: EachBatchPayload, chunk: KafkaMessage[]): Promise<boolean> {
    const { topic, partition } = p.batch;
    const decoded = await this.decode(p, chunk);
    if (decoded === null) return false;
    const { good, poison } = decoded;

    let outcomes: LoadOutcome[] = [];
    if (good.length > 0) {
      for (let attempt = 0; ; attempt++) {
        try {
          outcomes = await loadConversations(this.pool, good.map((g) => g.sealed));
          if (!this.pgOk) this.log.info({ topic, partition }, 'PostgreSQL reachable again; loading resumes');
          this.pgOk = true;
          metrics.pgAvailable.set(1);
          break;
        } catch (e) {
          metrics.pgErrors.inc();
          this.pgOk = false;
          metrics.pgAvailable.set(0);
          const delay = backoffDelay(attempt, this.opts.backoff?.initialMs ?? 500, this.opts.backoff?.maxMs ?? 30_000);
          const fields = { err: errorSummary(e), transient: isTransientPgError(e), topic, partition, firstOffset: chunk[0]!.offset, attempt: attempt + 1, retryInMs: delay };
          if (isTransientPgError(e)) this.log.warn(fields, 'PostgreSQL unavailable; retrying the same chunk');
          else this.log.error(fields, 'loading into PostgreSQL failed; retrying the same chunk');
          if (!(await this.wait(p, delay))) return false;
        }
      }
    }

    const info: EtlChunkInfo = {
      topic, partition, firstOffset: chunk[0]!.offset, lastOffset: chunk[chunk.length - 1]!.offset,
      loaded: outcomes.filter((o) => o.status !== 'rejected').length, dlq: poison.length,
    };
    await this.opts.afterPgCommit?.(info);

    const now = Date.now();
    const ready: Message[] = [];
    let inserted = 0;
    let existing = 0;
    let messages = 0;
    outcomes.forEach((o, idx) => {
      const { msg, sealed } = good[idx]!;
      if (o.status === 'rejected') {
        poison.push({ msg, err: o.error, reason: 'rejected' });
        return;
      }
      if (o.status === 'inserted') {
        inserted++;
        messages += o.messages;
        if (o.duplicateMessages > 0) {
          metrics.duplicateMessages.inc(o.duplicateMessages);
          this.log.warn({ conversation_id: o.conversation_id, duplicateMessages: o.duplicateMessages },
            'message ids of this conversation were already loaded with another conversation; they stay there');
        }
      } else existing++;
      const value: ConversationReady = {
        conversation_id: sealed.conversation_id, chat_id: sealed.chat_id, account_id: sealed.account_id,
        message_count: sealed.messages.length, started_at: sealed.started_at, ended_at: sealed.ended_at,
        loaded_at: now, content_hash: o.content_hash,
      };
      ready.push({ key: sealed.conversation_id, value: this.codec.encodeSync('ConversationReady', value) });
    });
    info.dlq = poison.length;
    info.loaded = ready.length;
    const dlq: Message[] = poison.map(({ msg, err, reason }) => {
      const e = dlqErrorInfo(err);
      if (reason === 'rejected') e.reason = `PostgreSQL refused the conversation: ${e.reason}`;
      this.log.warn({ topic, partition, offset: msg.offset, reason: e.reason }, 'conversation.sealed record sent to the DLQ');
      return toDlqMessage(msg, { reason: e.reason, errorClass: e.errorClass, sourceTopic: topic, partition, offset: msg.offset });
    });
    const topicMessages = [];
    if (ready.length > 0) topicMessages.push({ topic: this.topics.ready, messages: ready });
    if (dlq.length > 0) topicMessages.push({ topic: this.topics.sealedDlq, messages: dlq });
    if (topicMessages.length > 0) {
      const groups = await byPartition(topicMessages, this.partitionCounts);
      await sendEachPartition((tm) => this.producer.sendBatch({ topicMessages: tm, acks: -1 }), groups);
    }
    for (const { reason } of poison) metrics.dlq.inc({ reason });
    metrics.ready.inc(ready.length);
    metrics.conversations.inc({ result: 'inserted' }, inserted);
    metrics.conversations.inc({ result: 'existing' }, existing);
    metrics.messages.inc(messages);

    const last = chunk[chunk.length - 1]!.offset;
    await p.commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset: (BigInt(last) + 1n).toString() }] }] });
    p.resolveOffset(last);
    await p.heartbeat();
    this.log.debug({ ...info, inserted, existing }, 'chunk loaded');
    this.opts.afterChunk?.(info);
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
  }
}

export async function startEtl(cfg: Config, opts: EtlOptions = {}): Promise<EtlHandle> {
  const log = opts.log ?? logger('ETL');
  const topics = topicNames(cfg);
  const ownPool = opts.pool === undefined;
  const pool = opts.pool ?? createPool(cfg.databaseUrl, { log, applicationName: 'chatstats-etl' });
  const codec = opts.codec ?? new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  const kafka = opts.kafka ?? kafkaFromConfig(cfg, `${cfg.appId}-etl`);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
  const groupId = opts.groupId ?? `${cfg.appId}-etl`;
  // A short long-poll: an idle consumer's stop() waits for its fetch in flight (kafkajs' default 5 s).
  const consumer = kafka.consumer({ groupId, readUncommitted: false, allowAutoTopicCreation: false, maxWaitTimeInMs: 500 });
  const admin = kafka.admin();
  let adminConnected: Promise<void> | null = null;
  const partitionCounts = new PartitionCounts(async () => { await (adminConnected ??= admin.connect()); return admin; });
  const startAbort = new AbortController();
  try {
    await codec.init();
    if (opts.migrate !== false) {
      const r = await withPgRetry('migrate', () => migrate(pool), { log, signal: startAbort.signal, initialMs: opts.backoff?.initialMs, maxMs: opts.backoff?.maxMs, onRetry: () => metrics.pgErrors.inc() });
      if (r.applied.length > 0) log.info({ applied: r.applied.map((m) => m.file) }, 'database migrated');
    }
    await producer.connect();
    await consumer.connect();
    const etl = new Etl(topics, pool, codec, consumer, producer, log, opts, partitionCounts);
    await etl.start(opts.fromBeginning ?? true);
    metrics.pgAvailable.set(1);
    const lag = startGroupLag(kafka, groupId, topics.sealed, { log });
    log.info({ topic: topics.sealed, groupId }, 'ETL started');
    let stopped: Promise<void> | null = null;
    return {
      ready: async () => etl.ready(),
      stop: () => {
        stopped ??= (async () => {
          await Promise.all([etl.stop(), lag.stop()]);
          await consumer.disconnect().catch((err) => log.warn({ err: errorSummary(err) }, 'consumer disconnect failed'));
          await producer.disconnect().catch((err) => log.warn({ err: errorSummary(err) }, 'producer disconnect failed'));
          await admin.disconnect().catch(() => undefined);
          if (ownPool) await pool.end().catch(() => undefined);
          log.info('ETL stopped');
        })();
        return stopped;
      },
    };
  } catch (e) {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    if (ownPool) await pool.end().catch(() => undefined);
    throw e;
  }
}
