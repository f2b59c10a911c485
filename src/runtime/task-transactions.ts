// A task's Kafka transactions (stream-task.ts runs them): each event that writes anything commits
// its outputs, its changelog records and, for a batch, its input offset in one transaction of the
// task's transactional producer. Sends go one topic-partition at a time (src/kafka-send.ts), in
// requests of bounded size; a transaction's partitions are added in one AddPartitionsToTxn
// request through kafkajs' transaction manager (src/kafkajs-patch.ts), and a transaction can be
// begun before its event is processed, with the partitions the task's last two events of the same
// kind both wrote added meanwhile, so that round trip overlaps the processing.
import type { Producer, Message, IHeaders } from 'kafkajs';
import type { OutputRecord } from './processor';
import { taskMetrics } from './runtime-metrics';
import { byPartition, type PartitionCounts, type PartitionMessages } from '../kafka-send';
import type { TransactionManager } from '../kafkajs-patch';

export type Trigger = 'tick' | 'batch' | 'timer';
/** What a commit is for: a batch's processing, or a punctuation and what triggered it. */
export type CommitKind = 'process' | Trigger;
type Transaction = Awaited<ReturnType<Producer['transaction']>>;

export class TaskFencedError extends Error {
  constructor(partition: number, cause: unknown) {
    super(`task ${partition} was fenced by a newer owner of its transactional id: ${(cause as Error)?.message}`);
    this.name = 'TaskFencedError';
  }
}

const FENCED = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED', 'INVALID_TXN_STATE']);

export function isFenced(e: unknown): boolean {
  const err = e as { type?: string; name?: string; originalError?: { type?: string } };
  return FENCED.has(err?.type ?? '') || FENCED.has(err?.originalError?.type ?? '');
}

/**
 * kafkajs writes all of a request's messages for one partition as a single record batch, and the
 * broker checks max.message.bytes against the whole batch. Split into requests of bounded size
 * (sent one after another, so per-partition order holds), as the Java client's batch.size does.
 */
const MAX_REQUEST_BYTES = 768 * 1024;
function* chunks(messages: Message[]): Generator<Message[]> {
  let current: Message[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = 64 + sizeOf(m.key) + sizeOf(m.value);
    if (bytes > 0 && bytes + size > MAX_REQUEST_BYTES) {
      yield current;
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += size;
  }
  if (current.length > 0) yield current;
}

function sizeOf(v: Buffer | string | null | undefined): number {
  return v == null ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : v.length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type TopicData = { topic: string; partitions: { partition: number }[] }[];

/** Topic-partitions as AddPartitionsToTxn lists them: by topic. */
function topicData(partitions: { topic: string; partition: number }[]): TopicData {
  const byTopic = new Map<string, { partition: number }[]>();
  for (const { topic, partition } of partitions) {
    let list = byTopic.get(topic);
    if (!list) byTopic.set(topic, (list = []));
    list.push({ partition });
  }
  return [...byTopic].map(([topic, list]) => ({ topic, partitions: list }));
}

/** Where a task's transactions write and whose offsets they commit. */
export interface TransactionSpec {
  partition: number;
  groupId: string;
  sourceTopic: string;
  changelogTopic: string;
  partitionCounts: PartitionCounts;
}

/** A transaction whose records and offsets are sent, not yet committed (TaskTransactions.send). */
export interface SentTransaction {
  txn: Transaction;
  /** The offset after the last record written to the task's own changelog partition (-1: none). */
  changelogEnd: number;
  /** It was begun early (beginEarly). */
  early: boolean;
}

/** When a commit passed each of its steps (performance.now() ms; NaN: not reached), for the seal timer's debug log. */
export interface CommitPhases { start: number; flushed: number; added: number; sent: number; committed: number; stored: number }

export class TaskTransactions {
  /**
   * A transaction begun before the event's processing, its likely partitions being added to it
   * meanwhile (beginEarly): the AddPartitionsToTxn round trip overlaps the processor's work
   * instead of following it.
   */
  private early: { txn: Transaction; adding: Promise<void> } | null = null;
  /** Per commit kind, the partitions (`topic␀partition`) its last two commits wrote, newest first. */
  private readonly written = new Map<CommitKind, [string[], string[]]>();

  constructor(
    private readonly producer: Producer,
    /** kafkajs' transaction manager of that producer (null: not reachable; kafkajs adds partitions itself). */
    private readonly txnManager: TransactionManager | null,
    private readonly spec: TransactionSpec,
  ) {}

  /**
   * Begins the event's transaction now and adds to it the partitions that the last two commits of
   * this kind both wrote (a timer punctuation that seals: the sealed topic's partition and the
   * changelog's), while the processor works. A prediction that misses costs only markers: a
   * partition added but not written gets its commit marker, an empty transaction is aborted.
   */
  async beginEarly(kind: CommitKind): Promise<void> {
    if (this.txnManager === null || this.early !== null) return;
    const seen = this.written.get(kind);
    if (seen === undefined) return;
    const [last, before] = seen;
    const likely = last.filter((k) => before.includes(k));
    if (likely.length === 0) return;
    const txn = await this.producer.transaction();
    const partitions = likely.map((k) => {
      const sep = k.lastIndexOf('\u0000');
      return { topic: k.slice(0, sep), partition: Number(k.slice(sep + 1)) };
    });
    this.early = { txn, adding: this.addToTransaction(topicData(partitions)) };
  }

  /** Aborts a transaction begun early that will not be committed (the event failed or wrote nothing). */
  async abandonEarly(): Promise<void> {
    const early = this.early;
    if (early === null) return;
    this.early = null;
    taskMetrics().earlyTransactions.inc({ result: 'abandoned' });
    await early.adding;
    try {
      await early.txn.abort();
    } catch (e) {
      // As a failed commit: the event fails and the thread replaces the task.
      if (isFenced(e)) throw new TaskFencedError(this.spec.partition, e);
      throw e;
    }
  }

  private noteWritten(kind: CommitKind, groups: PartitionMessages[]): void {
    const now = groups.map((g) => `${g.topic}\u0000${g.partition}`);
    this.written.set(kind, [now, this.written.get(kind)?.[0] ?? []]);
  }

  /** An event of this kind wrote nothing: no transaction (one begun early is aborted), and its prediction is emptied. */
  nothingToCommit(kind: CommitKind): Promise<void> {
    this.noteWritten(kind, []);
    return this.abandonEarly();
  }

  /**
   * Sends the event's outputs and changelog records and, for a batch, its input offset, in one
   * transaction (begun early or now), and commits it. Returns the offset after the last changelog
   * record written to the task's own changelog partition (-1: none). On failure the transaction is
   * aborted and the error thrown (a TaskFencedError when a newer owner fenced this producer).
   */
  async commit(outputs: OutputRecord[], changelog: Message[], nextOffset: number | null, kind: CommitKind, phases: CommitPhases): Promise<number> {
    const sent = await this.send(outputs, changelog, nextOffset, kind, phases);
    await this.finish(sent, phases);
    return sent.changelogEnd;
  }

  /**
   * The first half of commit(): everything but the commit itself. The transaction stays open,
   * its records invisible to read_committed consumers, until finish() commits it or abort() ends it
   * (a prepared punctuation, stream-task.ts). On failure it is aborted and the error thrown.
   */
  async send(outputs: OutputRecord[], changelog: Message[], nextOffset: number | null, kind: CommitKind, phases: CommitPhases): Promise<SentTransaction> {
    const early = this.early;
    this.early = null;
    const txn = early?.txn ?? await this.producer.transaction();
    const { changelogTopic, partition } = this.spec;
    try {
      if (early !== null) await early.adding;
      const byTopic = new Map<string, Message[]>();
      for (const o of outputs) {
        let list = byTopic.get(o.topic);
        if (!list) byTopic.set(o.topic, (list = []));
        list.push({ key: o.key, value: o.value, headers: o.headers as IHeaders | undefined, partition: o.partition });
      }
      if (changelog.length > 0) byTopic.set(changelogTopic, changelog);
      // One topic-partition per request, one after another: a send that spans brokers can be
      // written twice, or not at all, when one of them fails over (src/kafka-send.ts).
      const groups = await byPartition([...byTopic].map(([topic, messages]) => ({ topic, messages })), this.spec.partitionCounts);
      this.noteWritten(kind, groups);
      await this.addPartitions(groups);
      phases.added = performance.now();
      let changelogEnd = -1;
      for (const g of groups) {
        for (const chunk of chunks(g.messages)) {
          const meta = await txn.sendBatch({ topicMessages: [{ topic: g.topic, messages: chunk }] });
          if (g.topic !== changelogTopic || g.partition !== partition) continue;
          const m = meta.find((x) => x.topicName === changelogTopic && x.partition === partition);
          if (m?.baseOffset !== undefined) changelogEnd = Number(m.baseOffset) + chunk.length;
        }
      }
      if (nextOffset !== null) await this.sendOffsets(txn, nextOffset);
      phases.sent = performance.now();
      return { txn, changelogEnd, early: early !== null };
    } catch (e) {
      throw await this.failed(txn, e);
    }
  }

  /** Commits a transaction that send() left open. */
  async finish(sent: SentTransaction, phases: CommitPhases): Promise<void> {
    try {
      await sent.txn.commit();
      phases.committed = performance.now();
      if (sent.early) taskMetrics().earlyTransactions.inc({ result: 'committed' });
    } catch (e) {
      throw await this.failed(sent.txn, e);
    }
  }

  /** Aborts a transaction that send() left open (its event is to be done again). */
  async abort(sent: SentTransaction): Promise<void> {
    try {
      await sent.txn.abort();
    } catch (e) {
      if (isFenced(e)) throw new TaskFencedError(this.spec.partition, e);
      throw e;
    }
  }

  private async failed(txn: Transaction, e: unknown): Promise<unknown> {
    try { await txn.abort(); } catch { /* fenced or already ended */ }
    return isFenced(e) ? new TaskFencedError(this.spec.partition, e) : e;
  }

  /**
   * Adds every partition the transaction will write to it in one AddPartitionsToTxn request.
   * kafkajs would add each with its send: as many requests, and broker transaction-log appends, as
   * partitions. Best effort: on any failure the sends add their partitions themselves, as before
   * (kafkajs marks a partition added only when the broker said so).
   */
  private async addPartitions(groups: PartitionMessages[]): Promise<void> {
    // One partition alone: its send adds it (if it is not in already), no request saved.
    if (this.txnManager === null || groups.length < 2) return;
    await this.addToTransaction(topicData(groups));
  }

  /** AddPartitionsToTxn for those of the partitions not in the transaction yet (kafkajs skips the others); never throws. */
  private async addToTransaction(topics: TopicData): Promise<void> {
    if (this.txnManager === null) return;
    for (let attempt = 0; attempt < 6; attempt++) {
      try {
        await this.txnManager.addPartitionsToTransaction(topics);
        return;
      } catch (e) {
        // The previous commit's markers are still being written: retry soon; anything else is the sends' to meet.
        if ((e as { type?: string }).type !== 'CONCURRENT_TRANSACTIONS') return;
        await sleep(2 * 2 ** attempt);
      }
    }
  }

  // kafkajs retries CONCURRENT_TRANSACTIONS for AddPartitionsToTxn but not for AddOffsetsToTxn;
  // the broker answers it while the previous transaction's markers are still being written.
  private async sendOffsets(txn: Awaited<ReturnType<Producer['transaction']>>, offset: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await txn.sendOffsets({
          consumerGroupId: this.spec.groupId,
          topics: [{ topic: this.spec.sourceTopic, partitions: [{ partition: this.spec.partition, offset: String(offset) }] }],
        });
        return;
      } catch (e) {
        if ((e as { type?: string }).type !== 'CONCURRENT_TRANSACTIONS' || attempt >= 50) throw e;
        await sleep(Math.min(10 * 2 ** attempt, 200));
      }
    }
  }
}
