// The ConversationTracker processor: one per input partition. It keeps each chat's state in the
// task's store (changelogged), runs the pure rules of src/sessionization on every message,
// punctuation and command, and forwards what they emit: sealed conversations, late messages, and
// invalid records to the DLQ with their reason.
//
// Store layout (one RocksDB per task): the chats' records as chat-state-layout.ts describes them
// (the changelog carries exactly these), plus local keys: the index of open chats by due time
// (due-index.ts), and
//   u␀<chat>                       a chat converted from a version-1 record whose conversion is
//                                  not logged yet (deleted with the commit that logs it)
//   m:open                         open conversation count (for the gauge)
// Loaded chats are cached (chat-cache.ts); changed ones are written at the task's commit, after
// which the cache is trimmed to its budget.
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Processor, ProcessorContext, InputRecord } from '../runtime/processor';
import type { RawRecord } from '../runtime/partition-reader';
import type { StoreOp } from '../runtime/state-store';
import {
  type ChatState, type Output, type PendingSeal, type RulesConfig, STATE_VERSION, isComplete, isThreadMode, nextDeadline, openConversations, step,
} from '../sessionization/rules';
import {
  type StoredChat, type RecordWrites, type PlacedMessages, type MetaRecord, assembleChat, completeSealFrom, convertV2, parseMeta, recordValue, everything, legacyMessagePrefix, messageKey, messagePrefix,
  metaKey, newStoredChat, parseKey, placed, prefixEnd, sealedMessages, sealedPrefix, structure, summaryKey, upgradeV1, writePlaced,
} from './chat-state-layout';
import type { ChatCommand, ChatMessage, CommandResult, ConversationSealed } from '../records/types';
import { toDlqMessage, dlqErrorInfo } from '../records/dlq';
import { DueIndex, indexedKey } from './due-index';
import { ChatCache, DEFAULT_CACHE_BYTES, cacheBudgets } from './chat-cache';
import { ChatReader, READ_CONCURRENCY } from './chat-reader';
import type { TopicNames } from '../topics';
import { registry, zeroed } from '../metrics';

export const COMMAND_HEADER = 'chatstats-command';
const DUE_CHUNK = 1000;
/** Chats whose deadlines a restore's rebuild reads per multi-get. */
const REBUILD_CHUNK = 1000;
/** The first byte of an open message's key (`n␀<chat>␀<id>`, chat-state-layout.ts). */
const MESSAGE_KIND = 0x6e;

/** What the tracker needs of the record formats. */
export interface TrackerCodec {
  decodeChatMessage(value: Buffer | null): Promise<ChatMessage>;
  encodeSealed(value: import('../records/types').ConversationSealed): Promise<Buffer>;
  encodeLate(value: import('../records/types').LateMessage): Promise<Buffer>;
  encodeCommandResult(value: CommandResult): Promise<Buffer>;
}

export interface TrackerDeps {
  rules: RulesConfig;
  topics: TopicNames;
  codec: TrackerCodec;
  log: Logger;
  /** Wall clock; tests may pin it. */
  now?: () => number;
  /**
   * Most chats sealed by wall clock per punctuation (PUNCTUATE_MAX_SEALS; 0: no bound). A burst of
   * due deadlines is sealed in chunks of this many chats, each its own transaction, with input batches
   * between them (the runtime punctuates again while something is due). check-sealing is not bounded.
   */
  maxSealsPerPunctuation?: number;
  /** Budget of the chat cache, in estimated heap bytes (default DEFAULT_CACHE_BYTES), split by cacheBudgets. */
  cacheBytes?: number;
  /** Instead of cacheBytes' split: the budgets of cached chats and of parked messages (tests). */
  cacheBudgets?: { chats: number; parked: number };
}

interface Entry extends StoredChat {
  /** The due time under which the chat is indexed in the store (null: not indexed). */
  indexed: number | null;
  open: number;
  /** Its heap estimate as counted in the cache's total. */
  heap: number;
}

const pendingUpgradeKey = (chatId: string) => `u\u0000${chatId}`;
let metrics: ReturnType<typeof createMetrics> | null = null;
function createMetrics() {
  return {
    // Labelled counters start at 0 for every known label value (zeroed): no gap after a restart.
    messages: zeroed(new Counter({ name: 'chatstats_tracker_messages_total', help: 'Input records processed', labelNames: ['result'], registers: [registry] }),
      ['accepted', 'late', 'duplicate', 'dlq'].map((result) => ({ result }))),
    duplicates: new Counter({ name: 'chatstats_tracker_duplicates_total', help: 'Messages ignored as duplicates', registers: [registry] }),
    late: new Counter({ name: 'chatstats_tracker_late_total', help: 'Late messages sent to the late topic', registers: [registry] }),
    dlq: new Counter({ name: 'chatstats_tracker_dlq_total', help: 'Input records sent to the DLQ', labelNames: ['reason'], registers: [registry] }),
    sealed: zeroed(new Counter({ name: 'chatstats_conversations_sealed_total', help: 'Conversations sealed', labelNames: ['reason'], registers: [registry] }),
      ['NEXT_MESSAGE', 'GAP_TIMEOUT', 'FORCED', 'MAX_SIZE'].map((reason) => ({ reason }))),
    open: new Gauge({ name: 'chatstats_open_conversations', help: 'Open conversations held by this instance', labelNames: ['partition'], registers: [registry] }),
    sealDelay: new Histogram({
      name: 'chatstats_seal_delay_seconds', help: 'Wall-clock seals: seconds from the deadline (ended_at + gap + grace), or from catching up if later, to sealed_at',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300], registers: [registry],
    }),
    // The cache's misses and what they cost: a load reads the chat's summaries and remembered
    // seals (and its open messages only in thread mode); a seal of a conversation loaded from its
    // summary reads its messages once.
    chatLoads: new Counter({ name: 'chatstats_tracker_chat_loads_total', help: 'Chats read from the store into the cache (cache misses)', registers: [registry] }),
    chatLoadRecords: new Counter({ name: 'chatstats_tracker_chat_load_records_total', help: 'Open-message, sealed-summary and window records read by chat loads', registers: [registry] }),
    parkedLoads: new Counter({ name: 'chatstats_tracker_parked_loads_total', help: 'Chat loads whose open messages came from the cache (parked when the chat was evicted), not from the store', registers: [registry] }),
    sealReadRecords: new Counter({ name: 'chatstats_tracker_seal_read_records_total', help: 'Open-message records read to seal conversations whose messages were not in memory', registers: [registry] }),
    commands: zeroed(new Counter({ name: 'chatstats_tracker_commands_total', help: 'Operator commands handled', labelNames: ['type'], registers: [registry] }),
      ['FORCE_SEAL', 'CHECK_SEALING'].map((type) => ({ type }))),
  };
}
function m() { return (metrics ??= createMetrics()); }

export class ConversationTracker implements Processor {
  private ctx!: ProcessorContext;
  /** Loaded chats. */
  private readonly cache: ChatCache<Entry>;
  private dirty = new Set<string>();
  /** The chats the last flush wrote: until the next event begins, its transaction may still be open. */
  private flushed = new Set<string>();
  /** This transaction's record writes, and the messages it placed (written at its end unless it sealed them). */
  private writes: RecordWrites = new Map();
  private readonly placedNow: PlacedMessages = new Map();
  /**
   * Chats converted from version-1 records, to be logged in the current layout. The conversion is
   * written to the store at once (restore, init), so it is also marked there (u␀<chat>): a task
   * closed cleanly before its first commit keeps the store, and the next one must still log it.
   */
  private readonly upgraded = new Set<string>();
  /** Chats whose conversion this event's flush logged: pending again if its transaction fails. */
  private readonly upgradesInFlight = new Set<string>();
  private openTotal = 0;
  /** openTotal as of the last committed transaction (an abort goes back to it). */
  private committedOpen = 0;
  /** Open chats by due time, in the store. */
  private due!: DueIndex;
  private reader!: ChatReader;
  /**
   * Per-message counts and the seals, added to the metrics once their transaction has committed
   * (committed()) rather than once per message; an aborted transaction's are dropped.
   */
  private readonly counts = { accepted: 0, late: 0, duplicate: 0 };
  private readonly sealedCounts: Record<ConversationSealed['seal_reason'], number> = { NEXT_MESSAGE: 0, GAP_TIMEOUT: 0, FORCED: 0, MAX_SIZE: 0 };
  private readonly sealDelays: number[] = [];
  private readonly now: () => number;

  constructor(private readonly deps: TrackerDeps) {
    this.now = deps.now ?? Date.now;
    const budget = deps.cacheBudgets ?? cacheBudgets(deps.cacheBytes ?? DEFAULT_CACHE_BYTES);
    this.cache = new ChatCache(budget.chats, budget.parked);
  }

  async init(ctx: ProcessorContext): Promise<void> {
    this.ctx = ctx;
    this.due = new DueIndex(ctx.store);
    this.reader = new ChatReader(ctx.store, (t) => isThreadMode(this.deps.rules, t));
    await this.upgradeStore();
    await ctx.store.scan('u\u0000', 'u\u0001', (k) => { this.upgraded.add(k.slice(2)); });
    const meta = await ctx.store.get('m:open');
    this.openTotal = this.committedOpen = meta ? Number(meta.toString()) || 0 : 0;
  }

  /**
   * A store kept from version 1 (`s:<chat>` entries, after a clean stop) is converted in place;
   * the converted chats are logged in the current layout at the first commit.
   */
  private async upgradeStore(): Promise<void> {
    const store = this.ctx.store;
    if ((await store.range('s:', 's;', 1)).length === 0) return;
    // Version 1's index entries: rebuilt for every converted chat when restore is done.
    await this.due.clear();
    for (;;) {
      const old = await store.range('s:', 's;', 1000);
      if (old.length === 0) return;
      const ops: StoreOp[] = [];
      for (const [key, value] of old) {
        const chat = key.slice(2);
        const sc = upgradeV1(chat, value);
        ops.push(...await this.replaceChat(chat, sc));
        ops.push({ type: 'del', key }, { type: 'put', key: pendingUpgradeKey(chat), value: Buffer.alloc(0) });
        this.upgraded.add(chat);
      }
      await store.write(ops);
      this.deps.log.info({ partition: this.ctx.partition, chats: old.length }, 'converted version-1 chat states in the store');
    }
  }

  // --- restore -------------------------------------------------------------------------------

  /** Restored chats whose index entry is rebuilt when restore is done. */
  private readonly restoredChats = new Set<string>();

  async restore(records: RawRecord[]): Promise<void> {
    // The records go to the store as they came, in order, one write batch per run between
    // version-1 records (RocksDB keeps the last write of a key). A message record (`n␀`, most of
    // them) is not parsed: the transaction that wrote or deleted it also rewrote its chat's summary
    // or chat record, which marks the chat for the rebuild.
    let from = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (r.key === null || (r.key[0] === MESSAGE_KIND && r.key[1] === 0 && r.key.indexOf(0, 2) > 2)) continue;
      const k = parseKey(r.key.toString());
      if (k.kind === 'v1') {
        // A version-1 record holds the whole chat; its tombstone was logged in the transaction
        // that logged the converted chat, whose records precede it: the conversion is logged, and
        // the tombstone removes nothing of the current layout.
        await this.ctx.store.applyRecords(records, from, i);
        from = i + 1;
        if (r.value === null) {
          await this.ctx.store.write([{ type: 'del', key: pendingUpgradeKey(k.chat) }]);
          this.upgraded.delete(k.chat);
        } else {
          await this.ctx.store.write([
            ...await this.replaceChat(k.chat, upgradeV1(k.chat, r.value)),
            { type: 'put', key: pendingUpgradeKey(k.chat), value: Buffer.alloc(0) },
          ]);
          this.upgraded.add(k.chat);
        }
      }
      this.restoredChats.add(k.chat);
    }
    await this.ctx.store.applyRecords(records, from);
  }

  async restored(): Promise<void> {
    const ops: StoreOp[] = [];
    // Each restored chat's deadline from its chat and summary records, read with its index entry
    // in one multi-get per REBUILD_CHUNK chats: the open messages and remembered seals are not
    // needed for it (a version-2 chat, which has no summary record, is read in full). After a
    // wipe every chat in the store was restored, so the same chat records give the open count.
    const counting = this.ctx.store.wiped;
    let open = 0;
    const chats = [...this.restoredChats];
    for (let from = 0; from < chats.length; from += REBUILD_CHUNK) {
      const part = chats.slice(from, from + REBUILD_CHUNK);
      const n = part.length;
      const got = await this.ctx.store.getMany([...part.map(metaKey), ...part.map(summaryKey), ...part.map(indexedKey)]);
      for (let i = 0; i < n; i++) {
        const chat = part[i]!;
        const meta = got[i] ?? null;
        const rec = meta === null ? null : parseMeta(meta);
        if (counting && rec !== null) open += rec.o.length;
        const due = await this.restoredDeadline(chat, rec, meta, got[n + i] ?? null);
        const before = got[2 * n + i];
        const was = before ? Number(before.toString()) : null;
        if (was !== due) this.due.move(ops, chat, was, due);
      }
      if (ops.length >= 10_000) await this.ctx.store.write(ops.splice(0));
    }
    if (this.restoredChats.size > 0) {
      this.restoredChats.clear();
      if (!counting) {
        // A restore onto a kept store: the open count from all the chat records (one small record per chat).
        await this.ctx.store.scan('c\u0000', 'c\u0001', (_k, v) => { open += parseMeta(v).o.length; });
      }
      this.openTotal = this.committedOpen = open;
      ops.push({ type: 'put', key: 'm:open', value: Buffer.from(String(open)) });
    }
    await this.ctx.store.write(ops);
    m().open.set({ partition: String(this.ctx.partition) }, this.openTotal);
  }

  /** A restored chat's due time (nextDeadline) from its chat and summary records. */
  private async restoredDeadline(chat: string, rec: MetaRecord | null, meta: Buffer | null, summary: Buffer | null): Promise<number | null> {
    if (rec === null || meta === null || rec.o.length === 0) return null;
    const sc = rec.v === STATE_VERSION
      ? assembleChat(chat, { meta: rec, summary, messages: null, sealed: [], window: [] })
      : await this.reader.read(chat, { meta, summary });
    return sc ? nextDeadline(sc.state, this.deps.rules) : null;
  }

  // --- events --------------------------------------------------------------------------------

  async process(records: InputRecord[]): Promise<void> {
    this.beginEvent(); // a new event: the last flush's transaction committed
    const now = this.now();
    // Decode everything first, so the states of all chats in the batch load in one read.
    const decoded: (ChatMessage | Error | ChatCommand)[] = new Array(records.length);
    const missing = new Set<string>();
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      try {
        if (r.headers[COMMAND_HEADER] !== undefined) {
          decoded[i] = parseCommand(r.value);
          continue;
        }
        const msg = await this.deps.codec.decodeChatMessage(r.value);
        if (r.key !== null && r.key.length > 0 && r.key.toString() !== msg.chat_id) {
          throw Object.assign(new Error(`record key "${r.key.toString()}" does not match chat_id "${msg.chat_id}": the chat would be split across partitions`), { name: 'InvalidRecordError' });
        }
        decoded[i] = msg;
        if (!this.cache.has(msg.chat_id)) missing.add(msg.chat_id);
      } catch (e) {
        // Bad data goes to the DLQ; anything else (the registry unreachable, say) fails the batch,
        // which is then retried, so no good record is dead-lettered for a passing outage.
        if ((e as Error)?.name !== 'InvalidRecordError') throw e;
        decoded[i] = e as Error;
      }
    }
    if (missing.size > 0) await this.load([...missing]);
    const stored = await this.storedOpenIds(decoded);

    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const d = decoded[i]!;
      if (d instanceof Error) {
        this.deadLetter(r, d);
      } else if ('command_id' in d) {
        await this.command(d, r, now);
      } else {
        const entry = this.entry(d.chat_id);
        let storedOpenId = false;
        if (stored !== null) {
          // Still open unless this transaction sealed it (a delete in its writes).
          const key = messageKey(d.chat_id, d.message_id);
          storedOpenId = stored.has(key) && this.writes.get(key) !== null;
        }
        const res = step(entry.state, { type: 'message', message: d, now, storedOpenId }, this.deps.rules);
        entry.state = res.state;
        this.dirty.add(d.chat_id);
        if (res.placedIn !== undefined) placed(entry, d, now, res.placedIn, this.placedNow);
        await this.emit(entry, res.outputs, r);
      }
    }
  }

  /**
   * For the messages of chats loaded from their summaries: which of their ids the store holds as
   * open messages (one multi-get for the batch). Null when no chat of the batch needs it.
   */
  private async storedOpenIds(decoded: (ChatMessage | Error | ChatCommand)[]): Promise<Set<string> | null> {
    let keys: string[] | null = null;
    for (const d of decoded) {
      if (d instanceof Error || 'command_id' in d) continue;
      const open = this.cache.get(d.chat_id)?.state.open;
      if (open === undefined || open.every(isComplete)) continue;
      (keys ??= []).push(messageKey(d.chat_id, d.message_id));
    }
    if (keys === null) return null;
    const values = await this.ctx.store.getMany(keys);
    const found = new Set<string>();
    for (let i = 0; i < keys.length; i++) if (values[i]) found.add(keys[i]!);
    return found;
  }

  async punctuate(now: number): Promise<void> {
    this.beginEvent();
    if (!this.ctx.caughtUp()) return;
    await this.sealDue(now, this.deps.maxSealsPerPunctuation || Infinity);
  }

  /**
   * Wall-clock ms from which a punctuation would seal something: the earliest time in the due
   * index (each chat is indexed under the first `now` at which a caught-up tick seals one of its
   * conversations: past the deadline and settled); null when no chat is open. From the store's
   * index, i.e. committed state, as the runtime's contract asks.
   */
  async nextDueAt(): Promise<number | null> {
    return this.due.first();
  }

  /** The chats a punctuation at `at` would step, up to its seal bound (an index read). */
  async dueCount(at: number): Promise<number> {
    if (this.due.nothingDueAt(at)) return 0;
    return (await this.due.dueAt(at, Math.min(this.deps.maxSealsPerPunctuation || DUE_CHUNK, DUE_CHUNK), null)).chats.length;
  }

  /** Seals, by wall clock, open conversations that are due at `now`: the first `limit` chats of the index. */
  private async sealDue(now: number, limit = Infinity): Promise<string[]> {
    const sealed: string[] = [];
    if (this.due.nothingDueAt(now)) return sealed;
    let cursor: string | null = null;
    for (let left = limit; left > 0;) {
      const want = Math.min(DUE_CHUNK, left);
      const due = await this.due.dueAt(now, want, cursor);
      const chats = due.chats;
      left -= chats.length;
      if (chats.length === 0) break;
      // They are about to be sealed: read with their messages, concurrently, rather than one
      // seal's read after another.
      await this.load(chats.filter((c) => !this.cache.has(c)), true);
      const ticked = chats.map((chat) => this.stepTick(chat, now));
      await this.completeAll(ticked);
      for (const t of ticked) sealed.push(...await this.emitTick(t));
      if (chats.length < want) break;
      cursor = due.cursor;
    }
    return sealed;
  }

  /** A caught-up tick for one loaded chat; the ids of what it sealed. */
  private async tick(chat: string, now: number): Promise<string[]> {
    return this.emitTick(this.stepTick(chat, now));
  }

  private stepTick(chat: string, now: number): { entry: Entry; outputs: Output[] } {
    const entry = this.entry(chat);
    const res = step(entry.state, { type: 'tick', now, caughtUp: true }, this.deps.rules);
    entry.state = res.state;
    this.dirty.add(chat);
    return { entry, outputs: res.outputs };
  }

  private async emitTick({ entry, outputs }: { entry: Entry; outputs: Output[] }): Promise<string[]> {
    await this.emit(entry, outputs, null);
    return outputs.flatMap((o) => (o.kind === 'sealed' ? [o.conversation.conversation_id] : []));
  }

  /**
   * Completes the pending seals of several chats' steps, READ_CONCURRENCY chats' reads at a time
   * (each chat's own seals one after another: spans of one chat are disjoint, so each reads its own).
   */
  private async completeAll(steps: { entry: Entry; outputs: Output[] }[]): Promise<void> {
    const work = steps.filter((t) => t.outputs.some((o) => o.kind === 'sealed' && o.pending !== undefined));
    for (let from = 0; from < work.length; from += READ_CONCURRENCY) {
      await Promise.all(work.slice(from, from + READ_CONCURRENCY).map(async ({ entry, outputs }) => {
        for (const o of outputs) if (o.kind === 'sealed' && o.pending !== undefined) await this.complete(entry, o);
      }));
    }
  }

  private async command(cmd: ChatCommand, r: InputRecord, now: number): Promise<void> {
    m().commands.inc({ type: cmd.type });
    const sealed: string[] = [];
    if (cmd.type === 'FORCE_SEAL' && cmd.chat_id !== null) {
      await this.load(this.cache.has(cmd.chat_id) ? [] : [cmd.chat_id]);
      const entry = this.entry(cmd.chat_id);
      const res = step(entry.state, { type: 'force', now }, this.deps.rules);
      entry.state = res.state;
      this.dirty.add(cmd.chat_id);
      for (const o of res.outputs) if (o.kind === 'sealed') sealed.push(o.conversation.conversation_id);
      await this.emit(entry, res.outputs, r);
    } else if (cmd.type === 'CHECK_SEALING') {
      // Punctuate now. Chats changed in this batch are not in the index yet: check them
      // directly, then the index for the rest.
      const { end } = this.ctx.position();
      if (r.offset + 1 >= end) {
        for (const chat of this.dirty) {
          const d = nextDeadline(this.entry(chat).state, this.deps.rules);
          if (d !== null && d <= now) sealed.push(...await this.tick(chat, now));
        }
        sealed.push(...await this.sealDue(now));
      }
    }
    const result: CommandResult = {
      command_id: cmd.command_id, type: cmd.type, partition: this.ctx.partition,
      sealed_conversation_ids: sealed, completed_at: now,
    };
    this.ctx.forward({
      topic: cmd.reply_topic ?? this.deps.topics.commandResults,
      key: cmd.command_id,
      value: await this.deps.codec.encodeCommandResult(result),
    });
  }

  private async emit(entry: Entry, outputs: Output[], source: InputRecord | null): Promise<void> {
    const { topics, codec } = this.deps;
    for (const o of outputs) {
      switch (o.kind) {
        case 'sealed': {
          if (o.pending !== undefined) await this.complete(entry, o);
          const c = o.conversation;
          sealedMessages(entry, c.messages, this.writes, this.placedNow);
          this.sealedCounts[c.seal_reason]++;
          if (c.seal_reason === 'GAP_TIMEOUT') {
            // From the deadline, or from when the partition caught up if that was later: a
            // replay of history seals at once and would otherwise report years of delay.
            // (Not the settle time: for live traffic it falls before the deadline, and imported
            // history that waits for it is not late in any sense a consumer cares about.)
            const deadline = c.ended_at + c.gap_ms + this.deps.rules.graceMs;
            const from = Math.max(deadline, this.ctx.caughtUpSince() ?? deadline);
            this.sealDelays.push(Math.max(0, c.sealed_at - from) / 1000);
          }
          this.ctx.forward({ topic: topics.sealed, key: c.chat_id, value: await codec.encodeSealed(c) });
          break;
        }
        case 'late':
          this.counts.late++;
          this.ctx.forward({ topic: topics.late, key: o.late.message.chat_id, value: await codec.encodeLate(o.late) });
          break;
        case 'duplicate':
          this.counts.duplicate++;
          break;
        case 'invalid':
          if (source) this.deadLetter(source, Object.assign(new Error(o.reason), { name: 'InvalidRecordError' }));
          break;
      }
    }
    // A command (force-seal) is counted by chatstats_tracker_commands_total, not as a message.
    if (source && source.headers[COMMAND_HEADER] === undefined && outputs.every((o) => o.kind === 'sealed')) this.counts.accepted++;
  }

  private deadLetter(r: InputRecord, err: Error): void {
    const info = dlqErrorInfo(err);
    m().dlq.inc({ reason: info.reason.split(':')[0]!.slice(0, 40) });
    m().messages.inc({ result: 'dlq' });
    this.ctx.forward({
      topic: this.deps.topics.messagesDlq,
      partition: r.partition,
      ...toDlqMessage(r, { ...info, sourceTopic: r.topic, partition: r.partition, offset: r.offset }),
    } as never);
  }

  // --- state ---------------------------------------------------------------------------------

  /** Gives a sealed conversation whose messages were not all in memory every message (completeSealFrom). */
  private async complete(entry: Entry, o: { conversation: ConversationSealed; pending?: PendingSeal }): Promise<void> {
    const rows = await this.reader.openMessages(o.conversation.chat_id);
    completeSealFrom(entry, o, rows, this.writes);
    m().sealReadRecords.inc(rows.length);
  }

  /** Loads chats into the cache (ChatReader.readMany: their open messages only where needed, or `withMessages`). */
  private async load(chats: string[], withMessages = false): Promise<void> {
    if (chats.length === 0) return;
    const parked = chats.map((c) => this.cache.takeParked(c));
    const read = await this.reader.readMany(chats, withMessages, parked);
    let records = 0;
    let fromParked = 0;
    for (let i = 0; i < chats.length; i++) {
      const chat = chats[i]!;
      const sc = read[i]!;
      // The records this chat's read returned: one per open message, remembered seal and window
      // entry (its open messages not, when they were parked: the reader takes those for a chat in gap mode's layout).
      const held = parked[i] !== undefined && sc !== null && sc.state.open.length > 0 && sc.legacyKeys === null && sc.state.window == null;
      if (held) fromParked++;
      if (sc) records += (held ? 0 : sc.seqOf.size) + sc.sealedList.length + sc.windowList.length;
      const indexed = sc ? nextDeadline(sc.state, this.deps.rules) : null;
      const entry: Entry = { ...(sc ?? newStoredChat(chat)), indexed, open: sc ? sc.state.open.length : 0, heap: 0 };
      this.cache.add(chat, entry);
      // A version-2 chat: this transaction logs it in the current layout.
      if (entry.legacyKeys !== null) { convertV2(entry, this.writes, this.placedNow); this.dirty.add(chat); }
    }
    m().chatLoads.inc(chats.length);
    m().chatLoadRecords.inc(records);
    if (fromParked > 0) m().parkedLoads.inc(fromParked);
  }

  /**
   * Store writes that replace whatever the store holds of `chat` by `sc` (a converted version-1
   * chat), with its index entry; `sc` is then cached as written.
   */
  private async replaceChat(chat: string, sc: StoredChat): Promise<StoreOp[]> {
    const ops: StoreOp[] = [];
    const store = this.ctx.store;
    for (const p of [messagePrefix(chat), legacyMessagePrefix(chat), sealedPrefix(chat)]) {
      await store.scan(p, prefixEnd(p), (k) => { ops.push({ type: 'del', key: k }); });
    }
    ops.push({ type: 'del', key: summaryKey(chat) });
    const writes: RecordWrites = new Map();
    everything(sc, writes);
    for (const [key, lazy] of writes) {
      if (parseKey(key).kind === 'v1') continue;
      const value = recordValue(lazy);
      ops.push(value === null ? { type: 'del', key } : { type: 'put', key, value });
    }
    this.cache.delete(chat);
    this.restoredChats.add(chat);
    return ops;
  }

  private entry(chat: string): Entry {
    const e = this.cache.get(chat);
    if (!e) throw new Error(`state of chat ${chat} not loaded`);
    return e;
  }

  /** The last event's transaction committed: its counts and seals go to the metrics. */
  committed(): void {
    const c = this.counts;
    const mm = m();
    if (c.accepted) mm.messages.inc({ result: 'accepted' }, c.accepted);
    if (c.late) { mm.messages.inc({ result: 'late' }, c.late); mm.late.inc(c.late); }
    if (c.duplicate) { mm.messages.inc({ result: 'duplicate' }, c.duplicate); mm.duplicates.inc(c.duplicate); }
    for (const reason of Object.keys(this.sealedCounts) as (keyof typeof this.sealedCounts)[]) {
      if (this.sealedCounts[reason] > 0) mm.sealed.inc({ reason }, this.sealedCounts[reason]);
    }
    for (const d of this.sealDelays) mm.sealDelay.observe(d);
    this.dropCounts();
  }

  private dropCounts(): void {
    const c = this.counts;
    c.accepted = c.late = c.duplicate = 0;
    const s = this.sealedCounts;
    s.NEXT_MESSAGE = s.GAP_TIMEOUT = s.FORCED = s.MAX_SIZE = 0;
    this.sealDelays.length = 0;
  }

  async flush(): Promise<void> {
    // Getting here again means the last flush's transaction committed (a failed one is aborted).
    this.upgradesInFlight.clear();
    if (this.upgraded.size > 0) {
      // Chats converted from version 1: log all their records and the old key's tombstone.
      await this.load([...this.upgraded].filter((c) => !this.cache.has(c)));
      for (const chat of this.upgraded) {
        everything(this.entry(chat), this.writes);
        this.dirty.add(chat);
        this.upgradesInFlight.add(chat);
      }
      this.upgraded.clear();
    }
    if (this.dirty.size === 0 && this.writes.size === 0) return;
    const local: StoreOp[] = [];
    writePlaced(this.placedNow, this.writes);
    for (const chat of this.dirty) {
      const e = this.entry(chat);
      structure(e, this.writes);
      const due = nextDeadline(e.state, this.deps.rules);
      if (e.indexed !== due) {
        this.due.move(local, chat, e.indexed, due);
        e.indexed = due;
      }
      const open = e.state.open.length;
      this.openTotal += open - e.open;
      e.open = open;
      this.cache.changed(chat, e);
    }
    for (const [key, lazy] of this.writes) {
      const k = parseKey(key);
      const value = recordValue(lazy);
      if (k.kind === 'v1') {
        this.ctx.logChange(key, null, [{ type: 'del', key: `s:${k.chat}` }, { type: 'del', key: pendingUpgradeKey(k.chat) }]);
      } else {
        this.ctx.logChange(key, value, [value === null ? { type: 'del', key } : { type: 'put', key, value }]);
      }
    }
    this.writes = new Map();
    this.placedNow.clear();
    // What this flush wrote stays known (conflicts()) until the next event; no allocation per flush.
    const wrote = this.dirty;
    this.dirty = this.flushed;
    this.dirty.clear();
    this.flushed = wrote;
    local.push({ type: 'put', key: 'm:open', value: Buffer.from(String(this.openTotal)) });
    this.ctx.writeLocal(local);
    m().open.set({ partition: String(this.ctx.partition) }, this.openTotal);
    // Keeps memory bounded; no chat holds an uncommitted change here.
    this.cache.trim();
  }

  abort(): void {
    this.dropCounts();
    this.openTotal = this.committedOpen;
    m().open.set({ partition: String(this.ctx.partition) }, this.openTotal);
    this.flushed.clear();
    // Cached chats may hold changes of the failed transaction: reload from the store.
    this.cache.clear();
    this.dirty.clear();
    this.writes = new Map();
    this.placedNow.clear();
    // Conversions the failed transaction was to log are pending again (their u␀ marks stay in the store).
    for (const chat of this.upgradesInFlight) this.upgraded.add(chat);
    this.upgradesInFlight.clear();
  }

  /** A new event begins: the last flush's transaction committed (a failed one was aborted). */
  private beginEvent(): void {
    this.upgradesInFlight.clear();
    this.flushed.clear();
    this.committedOpen = this.openTotal;
  }

  /**
   * Whether these input records, had they been processed before the event whose transaction is
   * open (a punctuation prepared ahead of its moment), could have changed what it did: a command,
   * a record with no key (its chat is known only from its value), or a record of a chat that event
   * changed. Chats are independent (SPEC section 2), so records of other chats commute with it.
   */
  conflicts(records: InputRecord[]): boolean {
    for (const r of records) {
      if (r.headers[COMMAND_HEADER] !== undefined || r.key === null || r.key.length === 0) return true;
      const chat = r.key.toString();
      if (this.flushed.has(chat) || this.dirty.has(chat)) return true;
    }
    return false;
  }

  async close(): Promise<void> {
    m().open.remove({ partition: String(this.ctx.partition) });
    this.cache.clear();
  }

  /** Open conversations of one chat, for status queries. */
  async describeChat(chat: string): Promise<{ state: ChatState | null; open: ReturnType<typeof openConversations> }> {
    const state = this.cache.get(chat)?.state ?? (await this.reader.read(chat))?.state ?? null;
    return { state, open: state ? openConversations(state, this.deps.rules) : [] };
  }

  /** The next `limit` deadlines of this partition. */
  async nextDeadlines(limit: number): Promise<{ chat_id: string; deadline: number }[]> {
    return this.due.next(limit);
  }

  get openConversationCount(): number { return this.openTotal; }
}

function parseCommand(value: Buffer | null): ChatCommand {
  if (!value) throw Object.assign(new Error('empty command'), { name: 'InvalidRecordError' });
  let c: any;
  try { c = JSON.parse(value.toString('utf8')); } catch { throw Object.assign(new Error('command is not JSON'), { name: 'InvalidRecordError' }); }
  if (typeof c?.command_id !== 'string' || (c.type !== 'FORCE_SEAL' && c.type !== 'CHECK_SEALING')) {
    throw Object.assign(new Error('command needs command_id and type FORCE_SEAL or CHECK_SEALING'), { name: 'InvalidRecordError' });
  }
  if (c.type === 'FORCE_SEAL' && typeof c.chat_id !== 'string') {
    throw Object.assign(new Error('FORCE_SEAL needs chat_id'), { name: 'InvalidRecordError' });
  }
  return {
    command_id: c.command_id, type: c.type, chat_id: c.chat_id ?? null,
    issued_at: Number(c.issued_at) || 0, reply_topic: typeof c.reply_topic === 'string' ? c.reply_topic : null,
  };
}
