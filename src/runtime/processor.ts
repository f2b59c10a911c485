// The Processor API of the runtime, after Kafka Streams': a processor is created per task (one
// input partition), gets its context in init(), and is handed one event at a time by its task:
// a batch of input records, a punctuation, or a changelog slice during restore. It talks to the
// world only through the context: its store, the records it forwards, the changelog writes.
import type { IHeaders } from 'kafkajs';
import type { StateStore, StoreOp } from './state-store';
import type { RawRecord } from './partition-reader';

export interface InputRecord {
  topic: string;
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
  timestamp: number;
}

export interface OutputRecord {
  topic: string;
  key: string | Buffer | null;
  value: Buffer | null;
  headers?: IHeaders;
  /** Defaults to the key's partition (Java-compatible murmur2). */
  partition?: number;
}

export interface ProcessorContext {
  readonly partition: number;
  readonly store: StateStore;
  /** Queues a record for the task's current transaction. */
  forward(record: OutputRecord): void;
  /** Queues a changelog write and the local store writes that go with it, applied after commit. */
  logChange(key: string, value: Buffer | null, storeOps: StoreOp[]): void;
  /** Queues local-only store writes (derived indexes), applied after commit. */
  writeLocal(ops: StoreOp[]): void;
  /** True when the task had read everything that was in its input partition when last checked. */
  caughtUp(): boolean;
  /** When the task last became caught up (wall clock), or null while it is behind. */
  caughtUpSince(): number | null;
  /** The input partition's read position and end, as last known. */
  position(): { position: number; end: number };
}

export interface Processor {
  init(ctx: ProcessorContext): Promise<void>;
  /** Applies a slice of the changelog to the local store (restore). */
  restore(records: RawRecord[]): Promise<void>;
  /** Called once restore is done, before the first event. */
  restored(): Promise<void>;
  process(records: InputRecord[]): Promise<void>;
  /**
   * Seals (or otherwise acts on) what is due at wall-clock `now`. It may stop early, after a
   * bounded amount of work, with more already due: the runtime then punctuates again at once,
   * each time in its own transaction and after the input batches queued meanwhile.
   */
  punctuate(now: number): Promise<void>;
  /**
   * Optional: the wall-clock time (ms) from which punctuate() would seal something, or null when
   * nothing is pending; the runtime arms the task's seal timer for it (SEAL_TIMER=prepare or deadline).
   * Contract:
   *  - computed from committed state: the runtime calls it in the task's turn, after a commit
   *    whose store writes are applied, and once after restore; it must not depend on state that
   *    is only in the current (uncommitted) transaction, nor on whether the task is caught up
   *    (the runtime checks that);
   *  - a lower bound: punctuate(t) for any t >= the returned time, once caught up, seals
   *    something. Earlier is harmless but wastes a punctuation (the runtime then backs off to the
   *    PUNCTUATE_INTERVAL pace until the state changes); later delays seals to the next tick;
   *  - cheap (an index seek): it is called after every commit that wrote to the store.
   * Without it a processor is punctuated by the fixed tick and after each batch only.
   */
  nextDueAt?(): Promise<number | null>;
  /**
   * Optional (SEAL_TIMER=prepare): whether these input records, had they been processed before the
   * last event (a punctuation whose transaction is still open), could have changed what it did.
   * False lets the runtime commit that punctuation and process the records after it; true makes it
   * abort the punctuation (abort()) and process them first. When unsure, true.
   */
  conflicts?(records: InputRecord[]): boolean;
  /**
   * Optional (SEAL_TIMER=prepare): how much a punctuation at `at` would do, in units whose cost is
   * roughly constant (the tracker: chats due then, counted up to its seal bound). From committed
   * state, like nextDueAt; the runtime sizes a prepared punctuation's lead by it.
   */
  dueCount?(at: number): Promise<number>;
  /** Before commit: hand every dirty state to the context (logChange). */
  flush(): Promise<void>;
  /** Optional: the event's transaction committed and its store writes are applied. */
  committed?(): void;
  /** The transaction failed: forget everything not yet committed. */
  abort(): void;
  close(): Promise<void>;
}

export type ProcessorFactory = (partition: number) => Processor;
