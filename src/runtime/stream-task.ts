// A task is the actor that owns one input partition: its processor, its store, and its
// transactional producer. Every event (a batch, a punctuation, close) goes through one mailbox,
// so the processor sees one event at a time and never needs a lock.
//
// Exactly once: each event's outputs, changelog writes and (for batches) the input offsets
// commit in one Kafka transaction (task-transactions.ts); the store is written only after that commit. The
// transactional id is per input partition (Kafka Streams' first EOS mode): whoever owns the
// partition next calls initTransactions with the same id, which aborts our open transaction and
// fences this producer, so a zombie cannot commit after a rebalance.
//
// Punctuations come from three places: the thread's fixed tick (PUNCTUATE_INTERVAL, every task),
// a batch that reads the partition to its end, and the task's seal timer (deadline-timer.ts),
// armed for the processor's next due time (SEAL_TIMER=prepare or deadline). A timer punctuation reads the
// partition's end first, in the task's turn, so that the caught-up rule is as exact as the tick's.
//
// SEAL_TIMER=prepare (the default): the timer wakes ahead of its moment by about what its work is
// expected to take (sizeLead), the processor punctuates as of the moment, and its records are sent into a transaction
// left open. The task then waits for the moment, holding its mailbox, and commits, so that at the
// deadline only the commit remains to be done. At the moment it reads the partition's end, as a
// timer punctuation does: if the partition holds records the task has not processed, the
// punctuation stands only when they are all in batches already handed to the task and the
// processor says none of them could have changed it (conflicts(): for the tracker, none is of a
// chat the punctuation changed, and none is a command); otherwise it is aborted, its effects
// forgotten, and the batch that catches the task up punctuates, as when a timer finds a task behind.
import type { Kafka, Producer, Message } from 'kafkajs';
import type { Logger } from 'pino';
import type { Processor, ProcessorContext, InputRecord, OutputRecord } from './processor';
import { StateStore, type StoreOp } from './state-store';
import type { PartitionReader } from './partition-reader';
import { taskMetrics } from './runtime-metrics';
import { DeadlineTimer, type LastPunctuation, type TimerPolicy } from './deadline-timer';
import type { PartitionCounts } from '../kafka-send';
import { takeTransactionManager } from '../kafkajs-patch';
import { TaskTransactions, type CommitKind, type CommitPhases, type SentTransaction, type Trigger } from './task-transactions';

/**
 * Bounds of a prepared punctuation's lead (SEAL_LEAD_MIN, SEAL_LEAD_MAX). The timer first wakes
 * the maximum ahead of its moment, asks the processor how much is due then (dueCount), and sizes
 * the lead: the minimum plus twice the work expected, at the larger of the costs per unit due of
 * the task's last two prepared punctuations (wall clock: under load, its own work and the other
 * tasks' at the same moment), at most the maximum, which bounds how long the mailbox is held
 * (input waits meanwhile). Twice, because a lead too short delays the seals by what it lacks,
 * while one too long only holds the task's input a little longer.
 */
export const LEAD_MIN_MS = 5;
export const LEAD_MAX_MS = 250;
/** Expected work per unit due before any prepared punctuation was measured (ms; 100 chats due in each of 6 tasks took 60-120 ms). */
const FIRST_PREPARE_MS_PER_UNIT = 1;
const LEAD_FACTOR = 2;

/** An event's flushed work, sent into its transaction (or nothing to send), not yet committed. */
interface Staged {
  sent: SentTransaction | null;
  ops: StoreOp[];
  kind: CommitKind;
  produced: boolean;
}

export { TaskFencedError } from './task-transactions';

export interface TaskSpec {
  appId: string;
  groupId: string;
  sourceTopic: string;
  changelogTopic: string;
  storeName: string;
  stateDir: string;
  /** Partition counts of the output topics: each send goes to one topic-partition (src/kafka-send.ts). */
  partitionCounts: PartitionCounts;
  createPartitioner?: Parameters<Kafka['producer']>[0] extends infer P ? P extends { createPartitioner?: infer C } ? C : never : never;
}

export interface TaskTimerOptions extends TimerPolicy {
  /** SEAL_TIMER=prepare: bounds of the lead. */
  leadMinMs?: number;
  leadMaxMs?: number;
  /** A timer punctuation failed: the thread replaces the task, as for a failed tick. */
  onError(err: unknown): void;
}

export class StreamTask {
  private mailbox: Promise<unknown> = Promise.resolve();
  private producer: Producer | null = null;
  /** The transactions of that producer (after start). */
  private txns: TaskTransactions | null = null;
  private store: StateStore | null = null;
  private outputs: OutputRecord[] = [];
  private changelog: Message[] = [];
  private storeOps: StoreOp[] = [];
  private pos = -1;
  private end = -1;
  private closed = false;
  private caughtUpAt: number | null = null;
  private readonly timer: DeadlineTimer | null = null;
  private readonly lead = { minMs: LEAD_MIN_MS, maxMs: LEAD_MAX_MS };
  /** The processor's next due time as of the last commit (null: nothing pending, or unknown). */
  private nextDue: number | null = null;
  /** The last punctuation that ran caught up (the only kind that can seal by wall clock). */
  private lastPunctuation: LastPunctuation | null = null;
  /** When the last commit passed each of its steps, for the seal timer's debug log. */
  private readonly lastCommitPhases: CommitPhases = { start: NaN, flushed: NaN, added: NaN, sent: NaN, committed: NaN, stored: NaN };
  /** The changelog offset up to which the store reflects the changelog (-1: not restored). */
  private storeChangelogEnd = -1;
  /** Batches (and skips) handed to the task by the consumer, not yet taken from the mailbox. */
  private readonly arrived: { records: InputRecord[]; next: number }[] = [];
  /** SEAL_TIMER=prepare: the lead sized for a moment, from the work due at it. */
  private sized: { at: number; due: number; leadMs: number } | null = null;
  /** The last prepared punctuation: how long it took to send its records (ms), and how much was due. */
  private lastPrepare: { ms: number; due: number; afterMoment?: Record<string, number> } = { ms: 0, due: 0 };
  /** Cost per unit due of the last two prepared punctuations (ms; 0: none yet). */
  private readonly prepareCost = [0, 0];
  /** The lead for a moment: as sized for it, else the longest (the wake at which it is sized). */
  private readonly leadFor = (at: number): number => (this.sized !== null && this.sized.at === at ? this.sized.leadMs : this.lead.maxMs);
  readonly ready: Promise<void>;
  /** Restored and processing (tracker-status: running); false while restoring or after a failed start. */
  private restoredFlag = false;
  restoredRecords = 0;
  restoreMs = 0;
  /** Of restoreMs: the processor's rebuild after the changelog was read (its `restored()`). */
  restoreRebuildMs = 0;

  constructor(
    readonly partition: number,
    private readonly spec: TaskSpec,
    private readonly kafka: Kafka,
    private readonly reader: PartitionReader,
    private readonly processor: Processor,
    private readonly log: Logger,
    /** Reads the group's committed input offset (null: none yet). Called after fencing. */
    committedOffset: () => Promise<number | null>,
    /** Resolves once the partition's store is this task's to open (the last task of the partition has closed it). */
    storeFree: Promise<void> = Promise.resolve(),
    /** The seal timer; none: punctuated by the tick and after batches only. */
    timerOptions: TaskTimerOptions | null = null,
  ) {
    if (timerOptions) this.lead = { minMs: timerOptions.leadMinMs ?? LEAD_MIN_MS, maxMs: timerOptions.leadMaxMs ?? LEAD_MAX_MS };
    if (timerOptions && processor.nextDueAt) {
      this.timer = new DeadlineTimer(timerOptions, (at) => {
        this.timerPunctuate(at).catch((err) => timerOptions.onError(err));
      });
    }
    this.ready = this.enqueue(async () => {
      await storeFree;
      return this.start(committedOffset);
    });
    this.ready.catch(() => undefined);
  }

  get isClosed(): boolean { return this.closed; }
  get isRestored(): boolean { return this.restoredFlag; }

  private isCaughtUp(): boolean {
    return this.pos >= 0 && this.end >= 0 && this.pos >= this.end;
  }

  /** Notes when the task catches up, so seal delays are measured from then, not from history. */
  private trackCaughtUp(now: number): void {
    if (!this.isCaughtUp()) this.caughtUpAt = null;
    else if (this.caughtUpAt === null) this.caughtUpAt = now;
  }
  /** The task's processor, for read-only status queries run through inTurn(). */
  get processorInstance(): Processor { return this.processor; }
  get position(): number { return this.pos; }
  /** The processor's next due time (wall-clock ms) as of the last commit, or null. */
  get nextDueAt(): number | null { return this.nextDue; }
  /** When the seal timer will punctuate (wall-clock ms), or null when it is not armed. */
  get timerArmedAt(): number | null { return this.timer?.armedAt ?? null; }
  get timerMode(): string { return this.timer?.mode ?? 'none'; }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.mailbox.then(fn, fn);
    this.mailbox = run.catch(() => undefined);
    return run;
  }

  private async start(committedOffset: () => Promise<number | null>): Promise<void> {
    const started = Date.now();
    const { spec, partition } = this;
    const transactionalId = `${spec.appId}-${spec.storeName}-${spec.sourceTopic}-${partition}`;
    this.producer = this.kafka.producer({
      transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 60_000,
      // The broker answers CONCURRENT_TRANSACTIONS while the previous commit's markers are being
      // written (a few ms); kafkajs' default 300 ms first retry would stall every transaction.
      retry: { initialRetryTime: 10, maxRetryTime: 1000, retries: 30 },
      createPartitioner: spec.createPartitioner,
    });
    await this.producer.connect();
    // initTransactions: fences any previous owner and aborts its open transaction, so that the
    // changelog's committed end is final before we read up to it.
    const initializing = this.producer.transaction();
    const txnManager = takeTransactionManager(transactionalId); // created by that call, synchronously
    const init = await initializing;
    await init.abort();
    this.txns = new TaskTransactions(this.producer, txnManager, {
      partition, groupId: spec.groupId, sourceTopic: spec.sourceTopic, changelogTopic: spec.changelogTopic, partitionCounts: spec.partitionCounts,
    });

    this.store = await StateStore.open(spec.stateDir, spec.storeName, partition);
    const ctx: ProcessorContext = {
      partition,
      store: this.store,
      forward: (r) => { this.outputs.push(r); },
      logChange: (key, value, ops) => {
        this.changelog.push({ key, value, partition });
        for (const op of ops) this.storeOps.push(op);
      },
      writeLocal: (ops) => { for (const op of ops) this.storeOps.push(op); },
      caughtUp: () => this.isCaughtUp(),
      caughtUpSince: () => this.caughtUpAt,
      position: () => ({ position: this.pos, end: this.end }),
    };
    await this.processor.init(ctx);

    const end = (await this.reader.endOffsets(spec.changelogTopic, [partition])).get(partition) ?? 0;
    const from = Math.min(this.store.restoreFrom, end);
    this.restoredRecords = await this.reader.read(spec.changelogTopic, partition, from, end,
      (records) => this.processor.restore(records));
    this.storeChangelogEnd = end;
    const rebuilding = Date.now();
    await this.processor.restored();
    this.restoreRebuildMs = Date.now() - rebuilding;

    // Read only now: initTransactions above waited for the previous owner's last transaction to
    // complete, so this offset is final. kafkajs read the group's offsets when it joined, possibly
    // before that commit; records below `pos` are skipped as already processed (kafkajs has no
    // KIP-447 require_stable offset fetch).
    const committed = await committedOffset();
    this.pos = committed ?? (await this.reader.beginOffsets(spec.sourceTopic, [partition])).get(partition) ?? 0;
    this.restoreMs = Date.now() - started;
    this.restoredFlag = true;
    const m = taskMetrics();
    m.restoreSeconds.observe({ store: spec.storeName }, this.restoreMs / 1000);
    m.restoreRecords.inc({ store: spec.storeName }, this.restoredRecords);
    this.log.info({ wiped: this.store.wiped, from, end, records: this.restoredRecords, ms: this.restoreMs, rebuildMs: this.restoreRebuildMs, position: this.pos },
      'task restored');
    await this.refreshDue(true);
  }

  /** Processes one fetched batch and commits it with its input offset, exactly once. */
  processBatch(records: InputRecord[], nextOffset: number, highWatermark: number): Promise<boolean> {
    const arrival = { records, next: nextOffset };
    this.arrived.push(arrival);
    return this.enqueue(async () => {
      this.taken(arrival);
      if (this.closed) return false;
      if (records[0]!.offset < this.pos) {
        records = records.filter((r) => r.offset >= this.pos);
        if (records.length === 0) return true;
      }
      // On failure nothing of this batch is committed, and kafkajs fetches it again.
      await this.runEvent('process', () => this.processor.process(records));
      // Past the batch's last offset, which may be a transaction marker rather than a record.
      const next = Math.max(nextOffset, records[records.length - 1]!.offset + 1);
      let stored = (await this.commit(next, 'process')).stored;
      this.pos = next;
      if (highWatermark > this.end) this.end = highWatermark;
      const now = Date.now();
      this.trackCaughtUp(now);
      // This batch read the partition to the end it had when fetched: punctuate now rather than
      // at the next tick, which under steady traffic may find a batch in flight and skip.
      if (this.isCaughtUp()) stored = (await this.punctuateNow(now, 'batch')) || stored;
      await this.refreshDue(stored);
      return true;
    });
  }

  /**
   * The consumer read [.., next) and found nothing to process (transaction markers, aborted
   * records): the position moves on, so that a partition written by transactional producers can
   * count as caught up. Queued behind the batches before it.
   */
  skipTo(next: number): void {
    const arrival = { records: [], next };
    this.arrived.push(arrival);
    void this.enqueue(async () => {
      this.taken(arrival);
      if (next > this.pos) this.pos = next;
      this.rearm();
    });
  }

  private taken(arrival: { records: InputRecord[]; next: number }): void {
    const i = this.arrived.indexOf(arrival); // the first, but for a batch skipped by a failed start
    if (i >= 0) this.arrived.splice(i, 1);
  }

  /** A punctuation. `end` is the input partition's committed end, read just before. */
  punctuate(now: number, end: number | undefined): Promise<void> {
    return this.enqueue(async () => {
      if (this.closed) return;
      if (end !== undefined) this.end = end;
      this.trackCaughtUp(now);
      const stored = await this.punctuateNow(now, 'tick');
      await this.refreshDue(stored);
      taskMetrics().storeBytes.set({ store: this.spec.storeName, partition: String(this.partition) }, this.store?.approximateSizeBytes() ?? 0);
    });
  }

  /** Punctuates and commits; true when the commit wrote to the store. */
  private async punctuateNow(now: number, trigger: Trigger): Promise<boolean> {
    const t0 = process.hrtime.bigint();
    const caughtUp = this.isCaughtUp();
    await this.runEvent(caughtUp ? trigger : null, () => this.processor.punctuate(now));
    const { produced, stored } = await this.commit(null, trigger);
    const m = taskMetrics();
    m.punctuateSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    m.punctuations.inc({ trigger, result: !caughtUp ? 'behind' : produced ? 'sealed' : 'nothing' });
    if (caughtUp) this.lastPunctuation = { at: now, sealed: produced };
    return stored;
  }

  /**
   * A punctuation of the seal timer: in the task's turn, read the partition's end (so "caught up"
   * means it has read everything that was in the partition at this moment, as at a tick), then
   * punctuate if caught up. Behind, the batch that catches up punctuates instead.
   */
  private timerPunctuate(at: number): Promise<void> {
    const firedAt = Date.now();
    return this.enqueue(async () => {
      try {
        if (this.closed) return;
        if (this.preparing() && this.sized?.at !== at && at > Date.now() && !(await this.sizeLead(at))) return;
        const turnAt = Date.now();
        let end: number | undefined;
        try {
          end = (await this.reader.endOffsets(this.spec.sourceTopic, [this.partition])).get(this.partition);
        } catch (err) {
          // Not knowing the end, nothing may seal by wall clock. Count it as a punctuation that
          // sealed nothing, so that the timer retries at the tick's pace rather than at once.
          this.log.debug({ err }, 'seal timer cannot read the partition end; the tick will retry');
          this.lastPunctuation = { at: Date.now(), sealed: false };
          return;
        }
        if (end !== undefined) this.end = end;
        const now = Date.now();
        this.trackCaughtUp(now);
        if (!this.isCaughtUp()) {
          taskMetrics().punctuations.inc({ trigger: 'timer', result: 'behind' });
          return;
        }
        const t0 = performance.now();
        const prepared = this.preparing() && now < at;
        const stored = prepared ? await this.preparedPunctuation(at) : await this.punctuateNow(now, 'timer');
        if (this.log.isLevelEnabled('debug')) {
          // Where the punctuation's time went: the processor's punctuate, its flush, adding the
          // transaction's partitions, the sends, the commit, the store write (ms; null: not reached).
          const p = this.lastCommitPhases;
          const ms = (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? null : Math.round(b - a));
          this.log.debug({
            due: this.nextDue, at, prepared, leadMs: prepared ? at - firedAt : 0, prepareMs: prepared ? Math.round(this.lastPrepare.ms) : null, dueAtMoment: prepared ? this.lastPrepare.due : null, afterMoment: prepared ? this.lastPrepare.afterMoment : null, firedAt, waitedMs: turnAt - firedAt, endMs: now - turnAt, punctuateMs: Date.now() - now, sealed: this.lastPunctuation?.sealed,
            steps: {
              punctuate: ms(t0, p.start), flush: ms(p.start, p.flushed), add: ms(p.flushed, p.added), send: ms(p.added, p.sent),
              commit: ms(p.sent, p.committed), store: ms(Number.isNaN(p.committed) ? p.flushed : p.committed, p.stored),
            },
          }, 'seal timer punctuated');
        }
        await this.refreshDue(stored);
      } finally {
        // Plan from what is known now (behind: no timer; the batch that catches up punctuates).
        this.rearm();
        this.timer?.done();
      }
    });
  }

  /** Asks the processor for its next due time when the store changed (or always), and re-arms. */
  private async refreshDue(storeChanged: boolean): Promise<void> {
    if (storeChanged && this.processor.nextDueAt && !this.closed) {
      this.nextDue = await this.processor.nextDueAt();
      const labels = { partition: String(this.partition) };
      if (this.nextDue === null) taskMetrics().nextDue.remove(labels);
      else taskMetrics().nextDue.set(labels, this.nextDue / 1000);
    }
    this.rearm();
  }

  private rearm(): void {
    if (this.timer === null) return;
    this.timer.update({ due: this.nextDue, caughtUp: this.isCaughtUp(), last: this.lastPunctuation, leadMs: this.preparing() ? this.leadFor : 0 });
  }

  private preparing(): boolean {
    return this.timer?.mode === 'prepare' && this.processor.conflicts !== undefined && this.processor.dueCount !== undefined;
  }

  /**
   * The first wake for a moment, SEAL_LEAD_MAX ahead of it: sizes the lead from what is due then.
   * True when the moment is within that lead already (prepare now); false: the timer re-arms.
   */
  private async sizeLead(at: number): Promise<boolean> {
    const due = await this.processor.dueCount!(at);
    const perUnit = Math.max(this.prepareCost[0]!, this.prepareCost[1]!) || FIRST_PREPARE_MS_PER_UNIT;
    this.sized = { at, due, leadMs: Math.min(this.lead.maxMs, this.lead.minMs + Math.ceil(LEAD_FACTOR * perUnit * due)) };
    return at - Date.now() <= this.sized.leadMs;
  }

  /**
   * SEAL_TIMER=prepare: the punctuation of moment `at`, done ahead of it (see the header). True
   * when its commit wrote to the store.
   */
  private async preparedPunctuation(at: number): Promise<boolean> {
    const t0 = process.hrtime.bigint();
    const started = performance.now();
    await this.runEvent('timer', () => this.processor.punctuate(at));
    const staged = await this.stage(null, 'timer');
    this.lastPrepare = { ms: performance.now() - started, due: this.sized?.at === at ? this.sized.due : 0 };
    if (this.lastPrepare.due > 0) {
      this.prepareCost[1] = this.prepareCost[0]!;
      this.prepareCost[0] = this.lastPrepare.ms / this.lastPrepare.due;
    }
    const wait = at - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // Closed uncleanly meanwhile (the process is going down): leave the transaction open, for the
    // next owner's initTransactions to abort; the store was not written.
    if (this.closed) return false;
    const woke = performance.now();
    const wokeLate = Date.now() - at;
    let end: number | undefined;
    try {
      end = (await this.reader.endOffsets(this.spec.sourceTopic, [this.partition])).get(this.partition);
    } catch (err) {
      this.log.debug({ err }, 'prepared punctuation cannot read the partition end; aborted');
    }
    const m = taskMetrics();
    if (end === undefined || !this.unchangedBy(end)) {
      await this.dropStaged(staged);
      if (end !== undefined && end > this.end) this.end = end;
      this.trackCaughtUp(Date.now());
      m.preparedPunctuations.inc({ result: 'aborted' });
      if (end === undefined) this.lastPunctuation = { at: Date.now(), sealed: false };
      return false;
    }
    if (end > this.end) this.end = end;
    const endRead = performance.now();
    const { produced, stored } = await this.complete(staged);
    const p = this.lastCommitPhases;
    // For the seal timer's debug log: after the moment, ms to read the end, to commit, to write the store.
    if (this.log.isLevelEnabled('debug')) this.lastPrepare.afterMoment = { woke: wokeLate, end: Math.round(endRead - woke), commit: Math.round(p.committed - endRead), store: Math.round(p.stored - p.committed) };
    m.punctuateSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    m.punctuations.inc({ trigger: 'timer', result: produced ? 'sealed' : 'nothing' });
    m.preparedPunctuations.inc({ result: 'committed' });
    this.lastPunctuation = { at, sealed: produced };
    return stored;
  }

  /**
   * At a prepared punctuation's moment, with the partition ending at `end`: whether a punctuation
   * then would have done the same, i.e. every record not yet processed is in a batch already
   * handed to the task, and none of them conflicts with the punctuation.
   */
  private unchangedBy(end: number): boolean {
    if (this.pos >= end) return true;
    let covered = this.pos;
    for (const a of this.arrived) if (a.next > covered) covered = a.next;
    if (covered < end) return false;
    for (const a of this.arrived) if (a.records.length > 0 && this.processor.conflicts!(a.records)) return false;
    return true;
  }

  /**
   * Runs the processor on an event, its transaction begun early (for `early`: the kind of event
   * whose partitions to add; null: none). If the processor fails, the event's effects are
   * forgotten and its transaction abandoned before the error goes on.
   */
  private async runEvent(early: CommitKind | null, run: () => Promise<void>): Promise<void> {
    if (early !== null) await this.txns!.beginEarly(early);
    try {
      await run();
    } catch (e) {
      await this.discardPending();
      throw e;
    }
  }

  private async discardPending(): Promise<void> {
    this.processor.abort();
    this.outputs = [];
    this.changelog = [];
    this.storeOps = [];
    // The event's own error is the one to report.
    await this.txns?.abandonEarly().catch(() => undefined);
  }

  /** Commits the pending event. `produced`: records went to Kafka; `stored`: the store was written. */
  private async commit(nextOffset: number | null, kind: CommitKind): Promise<{ produced: boolean; stored: boolean }> {
    return this.complete(await this.stage(nextOffset, kind));
  }

  /** The first half of a commit: the processor's flush, and the sends into the event's transaction. */
  private async stage(nextOffset: number | null, kind: CommitKind): Promise<Staged> {
    const phases = this.lastCommitPhases;
    phases.flushed = phases.added = phases.sent = phases.committed = phases.stored = NaN;
    phases.start = performance.now();
    await this.processor.flush();
    phases.flushed = performance.now();
    const outputs = this.outputs;
    const changelog = this.changelog;
    const ops = this.storeOps;
    this.outputs = [];
    this.changelog = [];
    this.storeOps = [];
    const produced = outputs.length > 0 || changelog.length > 0;
    if (!produced && nextOffset === null) return { sent: null, ops, kind, produced };
    try {
      return { sent: await this.txns!.send(outputs, changelog, nextOffset, kind, phases), ops, kind, produced };
    } catch (e) {
      this.processor.abort();
      throw e;
    }
  }

  /** The second half: commit the transaction (if anything was sent), then write the store. */
  private async complete(staged: Staged): Promise<{ produced: boolean; stored: boolean }> {
    const result = { produced: staged.produced, stored: staged.ops.length > 0 };
    if (staged.sent === null) {
      await this.txns!.nothingToCommit(staged.kind);
      await this.store!.write(staged.ops);
      this.processor.committed?.();
      return result;
    }
    try {
      await this.txns!.finish(staged.sent, this.lastCommitPhases);
    } catch (e) {
      this.processor.abort();
      throw e;
    }
    if (staged.sent.changelogEnd > this.storeChangelogEnd) this.storeChangelogEnd = staged.sent.changelogEnd;
    await this.store!.write(staged.ops);
    this.lastCommitPhases.stored = performance.now();
    this.processor.committed?.();
    return result;
  }

  /** A staged event that is not to be committed: its transaction aborted, its effects forgotten. */
  private async dropStaged(staged: Staged): Promise<void> {
    this.processor.abort();
    if (staged.sent === null) await this.txns!.nothingToCommit(staged.kind);
    else await this.txns!.abort(staged.sent);
  }

  /** Runs `fn` in the task's turn (for status queries that must see a consistent state). */
  inTurn<T>(fn: () => Promise<T>): Promise<T> {
    return this.enqueue(fn);
  }

  /**
   * Closes the task. Clean: after the queued events, checkpoint the store at the changelog offset
   * it reflects. Unclean (the process is going down hard): no checkpoint, so the next owner on
   * this disk wipes and restores. A failed or fenced transaction leaves the store clean, since
   * the store is written only after a commit.
   */
  close(clean: boolean): Promise<void> {
    this.timer?.cancel();
    const run = async () => {
      if (this.closed) return;
      this.closed = true;
      // The partition's series go with the task: its next owner, in this process (another stream
      // thread, whose series are summed with these) or in another, publishes its own.
      const m = taskMetrics();
      const partition = String(this.partition);
      m.nextDue.remove({ partition });
      m.caughtUp.remove({ partition });
      m.lag.remove({ group: this.spec.groupId, topic: this.spec.sourceTopic, partition });
      m.storeBytes.remove({ store: this.spec.storeName, partition });
      // Not the changelog's end: by now a new owner may have written to it. What this store
      // holds is exactly the changelog up to the restore target plus our own committed writes.
      const checkpoint = clean && this.store && this.storeChangelogEnd >= 0 ? this.storeChangelogEnd : null;
      try { await this.processor.close(); } catch (e) { this.log.warn({ err: e }, 'processor close failed'); }
      if (this.store) await this.store.close(checkpoint);
      if (this.producer) await this.producer.disconnect().catch(() => undefined);
      this.log.info({ clean: checkpoint !== null }, 'task closed');
    };
    // A clean close waits its turn; an unclean one must not wait behind a stuck event.
    return clean ? this.enqueue(run) : run();
  }
}
