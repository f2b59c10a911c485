// Runs a topology on kafkajs: one consumer in the topology's group, one task per assigned input
// partition, a fixed punctuation tick (PUNCTUATE_INTERVAL: the upper bound between checks, and how
// tasks learn their partitions' ends) and, per task, a seal timer armed for the processor's next
// due time (SEAL_TIMER=prepare, the default, prepares each punctuation ahead of that time and commits
// it then; `deadline` punctuates at that time; `tick` keeps the fixed tick alone, for comparison).
// kafkajs calls eachBatch concurrently across partitions and in order within one; the task's
// mailbox does the rest.
import type { Admin, Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import { PartitionReader } from './partition-reader';
import { LEAD_MAX_MS, LEAD_MIN_MS, StreamTask, TaskFencedError } from './stream-task';
import type { Topology } from './topology-spec';
import type { InputRecord } from './processor';
import { taskMetrics } from './runtime-metrics';
import { COALESCE_MS, type SealTimerMode } from './deadline-timer';
import { PartitionCounts } from '../kafka-send';
import { runSupervised } from './consumer-supervisor';
import { StoreLeases } from './store-leases';

export interface StreamThreadOptions {
  punctuateIntervalMs: number;
  stateDir: string;
  fetchMaxBytesPerPartition?: number;
  /** Bytes fetched per request across partitions (FETCH_MAX_BYTES): what the process holds of its input at once. */
  fetchMaxBytes?: number;
  appId: string;
  /** 'deadline' (default): a timer per task at its next due time; 'tick': the fixed tick only. */
  sealTimer?: SealTimerMode;
  /** Coalescing window of the seal timer (default COALESCE_MS, see deadline-timer.ts). */
  sealCoalesceMs?: number;
  /** SEAL_TIMER=prepare: bounds of the lead (SEAL_LEAD_MIN, SEAL_LEAD_MAX; see stream-task.ts). */
  sealLeadMinMs?: number;
  sealLeadMaxMs?: number;
  /**
   * Waits until no other task holds the partition's store, and holds it; the returned function
   * gives it back (store-leases.ts). Default: leases of this thread's tasks; with several stream
   * threads in one process (STREAM_THREADS), the process's.
   */
  storeLease?: (partition: number) => Promise<() => void>;
}

export interface PartitionStatus {
  partition: number;
  state: 'restoring' | 'running' | 'closed';
  position: number;
  end: number;
  lag: number;
  caughtUp: boolean;
  restoreMs: number;
  /** Of restoreMs: the rebuild after the changelog was read (the tracker's deadline index). */
  restoreRebuildMs: number;
  restoredRecords: number;
  /** Wall-clock ms from which a punctuation would seal something (the next deadline), or null. */
  nextDueAt: number | null;
  /** The seal timer: its mode and when it will punctuate (null: not armed). */
  sealTimer: { mode: string; armedAt: number | null };
}

export class StreamThread {
  private consumer: Consumer | null = null;
  private admin: Admin | null = null;
  private readonly reader: PartitionReader;
  private readonly partitionCounts = new PartitionCounts(async () => this.admin!);
  private readonly tasks = new Map<number, StreamTask>();
  /** Holds each partition's store for one task at a time: a task opens it once the last one has closed. */
  private readonly storeLease: (partition: number) => Promise<() => void>;
  /** The store leases of the tasks, given back once a task has closed. */
  private readonly leases = new Map<StreamTask, Promise<() => void>>();
  private reconciling: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private joined = false;
  private stopping = false;
  readonly groupId: string;

  constructor(
    private readonly kafka: Kafka,
    private readonly topology: Topology,
    private readonly opts: StreamThreadOptions,
    private readonly log: Logger,
  ) {
    this.reader = new PartitionReader(kafka, undefined, undefined, {
      maxBytes: this.fetchMaxBytes(), maxBytesPerPartition: this.fetchMaxBytesPerPartition(),
    });
    this.groupId = `${opts.appId}-${topology.name}`;
    const own = new StoreLeases();
    this.storeLease = opts.storeLease ?? ((partition) => own.lease(partition));
  }

  private fetchMaxBytesPerPartition(): number { return this.opts.fetchMaxBytesPerPartition ?? 1_048_576; }
  private fetchMaxBytes(): number { return this.opts.fetchMaxBytes ?? Math.max(10_485_760, 2 * (this.opts.fetchMaxBytesPerPartition ?? 0)); }

  async start(): Promise<void> {
    const { topology } = this;
    this.admin = this.kafka.admin();
    await this.admin.connect();
    await this.reader.connect();
    const consumer = (this.consumer = this.kafka.consumer({
      groupId: this.groupId,
      readUncommitted: false,
      sessionTimeout: 30_000,
      rebalanceTimeout: 60_000,
      heartbeatInterval: 3_000,
      maxBytesPerPartition: this.fetchMaxBytesPerPartition(),
      maxBytes: this.fetchMaxBytes(),
      maxWaitTimeInMs: 100,
    }));
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.joined = true;
      const assigned = e.payload.memberAssignment[topology.source] ?? [];
      this.reconciling = this.reconciling.then(() => this.reconcile(assigned))
        .catch((err) => this.log.error({ err }, 'reassignment failed'));
    });
    // Batches of only transaction markers or aborted records never reach eachBatch.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      if (e.payload.batchSize !== 0 || e.payload.topic !== topology.source) return;
      const task = this.tasks.get(e.payload.partition);
      if (task && !task.isClosed) task.skipTo(Number(e.payload.lastOffset) + 1);
    });
    consumer.on(consumer.events.CRASH, (e) => {
      this.joined = false;
      this.log.error({ err: e.payload.error, restart: e.payload.restart }, 'consumer crashed');
    });
    await consumer.connect();
    await consumer.subscribe({ topic: topology.source, fromBeginning: true });
    await runSupervised(consumer, {
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1024,
      eachBatch: (payload) => this.onBatch(payload),
    }, { role: 'tracker', log: this.log, stopping: () => this.stopping });
    this.timer = setInterval(() => { void this.tick(); }, this.opts.punctuateIntervalMs);
  }

  private async reconcile(assigned: number[]): Promise<void> {
    const keep = new Set(assigned);
    const closing: Promise<void>[] = [];
    for (const [p, task] of this.tasks) {
      if (!keep.has(p)) closing.push(this.retire(task, true));
    }
    await Promise.all(closing);
    for (const p of assigned) this.taskFor(p);
    this.log.info({ assigned }, 'partitions assigned');
    this.publishTaskStates();
  }

  /** chatstats_tasks{state}: the tasks by the state tracker-status shows (restoring, running). */
  private publishTaskStates(): void {
    let restoring = 0;
    let running = 0;
    for (const t of this.tasks.values()) {
      if (t.isClosed) continue;
      if (t.isRestored) running++;
      else restoring++;
    }
    const g = taskMetrics().tasks;
    g.set({ state: 'restoring' }, restoring);
    g.set({ state: 'running' }, running);
  }

  /** Takes a task out of service and closes it; a later task of its partition waits for its lease. */
  private retire(task: StreamTask, clean: boolean): Promise<void> {
    if (this.tasks.get(task.partition) === task) this.tasks.delete(task.partition);
    this.publishTaskStates();
    return this.closeTask(task, clean);
  }

  /** Closes a task, then gives back its store's lease. */
  private async closeTask(task: StreamTask, clean: boolean): Promise<void> {
    await task.close(clean).catch((err) => this.log.warn({ err, partition: task.partition }, 'task close failed'));
    await this.giveBack(task);
  }

  /** Gives back a closed task's store lease. */
  private async giveBack(task: StreamTask): Promise<void> {
    const lease = this.leases.get(task);
    if (!lease) return;
    this.leases.delete(task);
    (await lease)();
  }

  private taskFor(partition: number): StreamTask {
    let task = this.tasks.get(partition);
    if (!task) {
      const lease = this.storeLease(partition);
      task = new StreamTask(partition, {
        appId: this.opts.appId,
        groupId: this.groupId,
        sourceTopic: this.topology.source,
        changelogTopic: this.topology.store.changelog,
        storeName: this.topology.store.name,
        stateDir: this.opts.stateDir,
        partitionCounts: this.partitionCounts,
        createPartitioner: this.topology.createPartitioner,
      }, this.kafka, this.reader, this.topology.processor(partition), this.log.child({ partition }),
      () => this.committedOffset(partition), lease.then(() => undefined), {
        mode: this.opts.sealTimer ?? 'deadline',
        coalesceMs: this.opts.sealCoalesceMs ?? COALESCE_MS,
        maxDelayMs: this.opts.punctuateIntervalMs,
        leadMinMs: this.opts.sealLeadMinMs ?? LEAD_MIN_MS,
        leadMaxMs: this.opts.sealLeadMaxMs ?? LEAD_MAX_MS,
        onError: (err) => this.punctuationFailed(created, err),
      });
      const created = task;
      this.leases.set(task, lease);
      this.tasks.set(partition, task);
      task.ready.then(() => this.publishTaskStates(), () => undefined);
      task.ready.catch((err) => {
        this.log.error({ err, partition }, 'task failed to start');
        void this.retire(task!, false);
      });
    }
    return task;
  }

  private async committedOffset(partition: number): Promise<number | null> {
    const res = await this.admin!.fetchOffsets({ groupId: this.groupId, topics: [this.topology.source] });
    const o = res[0]?.partitions.find((x) => x.partition === partition)?.offset;
    return o === undefined || Number(o) < 0 ? null : Number(o);
  }

  private async onBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (batch.messages.length === 0) return;
    const task = this.taskFor(batch.partition);
    // Restore can take long: keep the group membership alive while waiting for it.
    await whileHeartbeating(task.ready, heartbeat);
    if (!isRunning() || isStale() || task.isClosed) return;
    const records: InputRecord[] = batch.messages.map((m) => ({
      topic: batch.topic,
      partition: batch.partition,
      offset: Number(m.offset),
      key: m.key,
      value: m.value,
      headers: m.headers ?? {},
      timestamp: Number(m.timestamp),
    }));
    try {
      const done = await whileHeartbeating(task.processBatch(records, Number(batch.lastOffset()) + 1, Number(batch.highWatermark)), heartbeat);
      if (done) resolveOffset(batch.lastOffset());
    } catch (e) {
      // Fenced: another instance owns the partition now. Any other failure: the producer may be
      // in an unknown state. Either way the task goes (its store stays valid: it holds committed
      // writes only) and kafkajs retries the batch; a retry here makes a fresh task.
      this.log.warn({ partition: batch.partition, err: e }, e instanceof TaskFencedError ? e.message : 'batch failed; the task is recreated');
      await this.retire(task, true);
      throw e;
    }
  }

  /** Punctuates every running task, with the input partitions' ends read once for all. */
  async tick(): Promise<void> {
    if (this.ticking || this.stopping) return;
    this.ticking = true;
    try {
      const running = [...this.tasks.values()].filter((t) => !t.isClosed);
      if (running.length === 0) return;
      let ends: Map<number, number>;
      try {
        ends = await this.reader.endOffsets(this.topology.source, running.map((t) => t.partition));
      } catch (err) {
        this.log.warn({ err }, 'cannot read partition ends; punctuating without wall-clock seals');
        ends = new Map();
      }
      const now = Date.now();
      const m = taskMetrics();
      await Promise.all(running.map(async (t) => {
        try {
          await t.ready;
          await t.punctuate(now, ends.get(t.partition));
          const end = ends.get(t.partition);
          // A task closed meanwhile has removed its partition's series: its next owner publishes them.
          if (end !== undefined && !t.isClosed) {
            m.lag.set({ group: this.groupId, topic: this.topology.source, partition: String(t.partition) }, Math.max(0, end - t.position));
            m.caughtUp.set({ partition: String(t.partition) }, t.position >= end ? 1 : 0);
          }
        } catch (err) {
          await this.punctuationFailed(t, err);
        }
      }));
    } finally {
      this.ticking = false;
    }
  }

  /** As for a failed batch: a fresh task (new producer) takes over the partition. */
  private async punctuationFailed(t: StreamTask, err: unknown): Promise<void> {
    if (this.tasks.get(t.partition) !== t) return;
    this.log.warn({ err, partition: t.partition }, 'punctuation failed; the task is recreated');
    await this.retire(t, true);
    if (!this.stopping) this.taskFor(t.partition);
  }

  /** Runs a function in a partition's task turn; null when this instance does not own it. */
  async inPartition<T>(partition: number, fn: (task: StreamTask) => Promise<T>): Promise<T | null> {
    const task = this.tasks.get(partition);
    if (!task || task.isClosed) return null;
    await task.ready;
    return task.inTurn(() => fn(task));
  }

  async status(): Promise<PartitionStatus[]> {
    const tasks = [...this.tasks.values()];
    const ends = tasks.length > 0 ? await this.reader.endOffsets(this.topology.source, tasks.map((t) => t.partition)) : new Map();
    const out: PartitionStatus[] = [];
    for (const t of tasks) {
      const restored = t.isRestored;
      const end = ends.get(t.partition) ?? -1;
      out.push({
        partition: t.partition,
        state: t.isClosed ? 'closed' : restored ? 'running' : 'restoring',
        position: t.position,
        end,
        lag: Math.max(0, end - t.position),
        caughtUp: t.position >= 0 && t.position >= end,
        restoreMs: t.restoreMs,
        restoreRebuildMs: t.restoreRebuildMs,
        restoredRecords: t.restoredRecords,
        nextDueAt: t.nextDueAt,
        sealTimer: { mode: t.timerMode, armedAt: t.timerArmedAt },
      });
    }
    return out.sort((a, b) => a.partition - b.partition);
  }

  /** Joined the group and every assigned task restored. */
  async isReady(): Promise<boolean> {
    if (!this.joined || this.stopping) return false;
    const flags = await Promise.all([...this.tasks.values()].map((t) =>
      Promise.race([t.ready.then(() => true, () => false), new Promise<boolean>((r) => setImmediate(() => r(false)))])));
    return flags.every(Boolean);
  }

  get partitions(): number[] {
    return [...this.tasks.keys()].sort((a, b) => a - b);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    // Stopping the consumer waits for in-flight batches; then each task closes cleanly.
    await this.consumer?.stop().catch(() => undefined);
    await Promise.all([...this.tasks.values()].map((t) => this.closeTask(t, true)));
    this.tasks.clear();
    this.publishTaskStates();
    await this.consumer?.disconnect().catch(() => undefined);
    await this.reader.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}

async function whileHeartbeating<T>(work: Promise<T>, heartbeat: () => Promise<void>): Promise<T> {
  let done = false;
  const beat = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 1000));
      if (!done) await heartbeat().catch(() => undefined);
    }
  })();
  try {
    return await work;
  } finally {
    done = true;
    void beat;
  }
}
