// The ConversationTracker processor: one per input partition. It keeps each chat's state in the
// task's store (changelogged), runs the pure rules of src/sessionization on every message,
// punctuation and command, and forwards what they emit: sealed conversations, late messages, and
// invalid records to the DLQ with their reason.
//
// Store layout (one RocksDB per task):
//   s:<chat_id>                    the chat's encoded state (the changelog carries exactly these)
//   d:<deadline, 15 digits>:<chat> index of open chats by their next wall-clock deadline, so a
//                                  punctuation reads only what is due
//   m:open                         open conversation count (local, for the gauge)
// Decoded states are cached; dirty ones are written at the task's commit, after which the cache
// holds at most CACHE_LIMIT clean states (state lives on disk, not in memory).
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Processor, ProcessorContext, InputRecord } from '../runtime/processor';
import type { RawRecord } from '../runtime/partition-reader';
import type { StoreOp } from '../runtime/state-store';
import {
  type ChatState, type Output, type RulesConfig,
  decodeState, emptyChatState, encodeState, nextDeadline, openConversations, step,
} from '../sessionization/rules';
import type { ChatCommand, ChatMessage, CommandResult } from '../records/types';
import { toDlqMessage, dlqErrorInfo } from '../records/dlq';
import type { TopicNames } from '../topics';
import { registry, zeroed } from '../metrics';

export const COMMAND_HEADER = 'chatstats-command';
const CACHE_LIMIT = 10_000;
const DUE_CHUNK = 1000;

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
}

interface Entry {
  state: ChatState;
  /** The deadline under which the chat is indexed in the store (null: not indexed). */
  indexed: number | null;
  open: number;
}

const pad = (n: number) => String(Math.max(0, Math.floor(n))).padStart(15, '0');
const indexKey = (deadline: number, chatId: string) => `d:${pad(deadline)}:${chatId}`;

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
    commands: zeroed(new Counter({ name: 'chatstats_tracker_commands_total', help: 'Operator commands handled', labelNames: ['type'], registers: [registry] }),
      ['FORCE_SEAL', 'CHECK_SEALING'].map((type) => ({ type }))),
  };
}
function m() { return (metrics ??= createMetrics()); }

export class ConversationTracker implements Processor {
  private ctx!: ProcessorContext;
  private readonly cache = new Map<string, Entry>();
  private readonly dirty = new Set<string>();
  private openTotal = 0;
  /** Per-message counts, added to the counters once per commit rather than once per message. */
  private readonly counts = { accepted: 0, late: 0, duplicate: 0 };
  private readonly now: () => number;

  constructor(private readonly deps: TrackerDeps) {
    this.now = deps.now ?? Date.now;
  }

  async init(ctx: ProcessorContext): Promise<void> {
    this.ctx = ctx;
    const meta = await ctx.store.get('m:open');
    this.openTotal = meta ? Number(meta.toString()) || 0 : 0;
  }

  // --- restore -------------------------------------------------------------------------------

  async restore(records: RawRecord[]): Promise<void> {
    // Last value per chat within the slice, in order; the store's current value gives the index
    // entry to replace.
    const latest = new Map<string, Buffer | null>();
    for (const r of records) {
      if (r.key === null) continue;
      latest.set(r.key.toString(), r.value);
    }
    const chats = [...latest.keys()];
    const old = await this.ctx.store.getMany(chats.map((c) => `s:${c}`));
    const ops: StoreOp[] = [];
    chats.forEach((chat, i) => {
      const before = old[i];
      if (before) {
        const s = decodeState(before);
        const d = nextDeadline(s, this.deps.rules);
        if (d !== null) ops.push({ type: 'del', key: indexKey(d, chat) });
        this.openTotal -= openConversations(s, this.deps.rules).length;
      }
      const value = latest.get(chat)!;
      if (value === null) {
        ops.push({ type: 'del', key: `s:${chat}` });
      } else {
        const s = decodeState(value);
        const d = nextDeadline(s, this.deps.rules);
        ops.push({ type: 'put', key: `s:${chat}`, value });
        if (d !== null) ops.push({ type: 'put', key: indexKey(d, chat), value: Buffer.alloc(0) });
        this.openTotal += openConversations(s, this.deps.rules).length;
      }
    });
    ops.push({ type: 'put', key: 'm:open', value: Buffer.from(String(this.openTotal)) });
    await this.ctx.store.write(ops);
  }

  async restored(): Promise<void> {
    m().open.set({ partition: String(this.ctx.partition) }, this.openTotal);
  }

  // --- events --------------------------------------------------------------------------------

  async process(records: InputRecord[]): Promise<void> {
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

    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const d = decoded[i]!;
      if (d instanceof Error) {
        this.deadLetter(r, d);
      } else if ('command_id' in d) {
        await this.command(d, r, now);
      } else {
        const entry = this.entry(d.chat_id);
        const res = step(entry.state, { type: 'message', message: d, now }, this.deps.rules);
        entry.state = res.state;
        this.dirty.add(d.chat_id);
        await this.emit(res.outputs, r);
      }
    }
  }

  async punctuate(now: number): Promise<void> {
    if (!this.ctx.caughtUp()) return;
    await this.sealDue(now);
  }

  /** Seals, by wall clock, every open conversation whose deadline is before `now`. */
  private async sealDue(now: number): Promise<string[]> {
    const sealed: string[] = [];
    let from = 'd:';
    const to = `d:${pad(now)}`;
    for (;;) {
      const due = await this.ctx.store.range(from, to, DUE_CHUNK);
      if (due.length === 0) break;
      const chats = due.map(([k]) => k.slice(18));
      await this.load(chats.filter((c) => !this.cache.has(c)));
      for (const chat of chats) {
        const entry = this.entry(chat);
        const res = step(entry.state, { type: 'tick', now, caughtUp: true }, this.deps.rules);
        entry.state = res.state;
        this.dirty.add(chat);
        for (const o of res.outputs) if (o.kind === 'sealed') sealed.push(o.conversation.conversation_id);
        await this.emit(res.outputs, null);
      }
      if (due.length < DUE_CHUNK) break;
      from = `${due[due.length - 1]![0]}\u0000`;
    }
    return sealed;
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
      await this.emit(res.outputs, r);
    } else if (cmd.type === 'CHECK_SEALING') {
      // Punctuate now. Dirty states of this batch are not in the index yet: flush them first
      // into the cache's view by checking them directly, then the index for the rest.
      const { end } = this.ctx.position();
      if (r.offset + 1 >= end) {
        for (const chat of this.dirty) {
          const entry = this.entry(chat);
          const d = nextDeadline(entry.state, this.deps.rules);
          if (d !== null && d < now) {
            const res = step(entry.state, { type: 'tick', now, caughtUp: true }, this.deps.rules);
            entry.state = res.state;
            for (const o of res.outputs) if (o.kind === 'sealed') sealed.push(o.conversation.conversation_id);
            await this.emit(res.outputs, null);
          }
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

  private async emit(outputs: Output[], source: InputRecord | null): Promise<void> {
    const { topics, codec } = this.deps;
    for (const o of outputs) {
      switch (o.kind) {
        case 'sealed': {
          const c = o.conversation;
          m().sealed.inc({ reason: c.seal_reason });
          if (c.seal_reason === 'GAP_TIMEOUT') {
            // From the deadline, or from when the partition caught up if that was later: a
            // replay of history seals at once and would otherwise report years of delay.
            const deadline = c.ended_at + c.gap_ms + this.deps.rules.graceMs;
            const from = Math.max(deadline, this.ctx.caughtUpSince() ?? deadline);
            m().sealDelay.observe(Math.max(0, c.sealed_at - from) / 1000);
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

  private async load(chats: string[]): Promise<void> {
    if (chats.length === 0) return;
    const values = await this.ctx.store.getMany(chats.map((c) => `s:${c}`));
    chats.forEach((chat, i) => {
      const v = values[i];
      const state = v ? decodeState(v) : emptyChatState(chat);
      const open = v ? openConversations(state, this.deps.rules).length : 0;
      this.cache.set(chat, { state, indexed: v ? nextDeadline(state, this.deps.rules) : null, open });
    });
  }

  private entry(chat: string): Entry {
    const e = this.cache.get(chat);
    if (!e) throw new Error(`state of chat ${chat} not loaded`);
    return e;
  }

  private publishCounts(): void {
    const c = this.counts;
    const mm = m();
    if (c.accepted) mm.messages.inc({ result: 'accepted' }, c.accepted);
    if (c.late) { mm.messages.inc({ result: 'late' }, c.late); mm.late.inc(c.late); }
    if (c.duplicate) { mm.messages.inc({ result: 'duplicate' }, c.duplicate); mm.duplicates.inc(c.duplicate); }
    c.accepted = c.late = c.duplicate = 0;
  }

  async flush(): Promise<void> {
    this.publishCounts();
    if (this.dirty.size === 0) return;
    for (const chat of this.dirty) {
      const e = this.entry(chat);
      const value = encodeState(e.state);
      const deadline = nextDeadline(e.state, this.deps.rules);
      const ops: StoreOp[] = [{ type: 'put', key: `s:${chat}`, value }];
      if (e.indexed !== deadline) {
        if (e.indexed !== null) ops.push({ type: 'del', key: indexKey(e.indexed, chat) });
        if (deadline !== null) ops.push({ type: 'put', key: indexKey(deadline, chat), value: Buffer.alloc(0) });
        e.indexed = deadline;
      }
      const open = openConversations(e.state, this.deps.rules).length;
      this.openTotal += open - e.open;
      e.open = open;
      this.ctx.logChange(chat, value, ops);
    }
    this.dirty.clear();
    this.ctx.writeLocal([{ type: 'put', key: 'm:open', value: Buffer.from(String(this.openTotal)) }]);
    m().open.set({ partition: String(this.ctx.partition) }, this.openTotal);
    // Keep memory bounded: drop the oldest clean states.
    if (this.cache.size > CACHE_LIMIT) {
      let excess = this.cache.size - CACHE_LIMIT;
      for (const key of this.cache.keys()) {
        if (excess-- <= 0) break;
        this.cache.delete(key);
      }
    }
  }

  abort(): void {
    this.counts.accepted = this.counts.late = this.counts.duplicate = 0;
    // States in the cache may hold changes of the failed transaction: reload from the store.
    this.cache.clear();
    this.dirty.clear();
  }

  async close(): Promise<void> {
    m().open.remove({ partition: String(this.ctx.partition) });
    this.cache.clear();
  }

  /** Open conversations of one chat, for status queries. */
  async describeChat(chat: string): Promise<{ state: ChatState | null; open: ReturnType<typeof openConversations> }> {
    if (!this.cache.has(chat)) {
      const v = await this.ctx.store.get(`s:${chat}`);
      if (!v) return { state: null, open: [] };
      const state = decodeState(v);
      return { state, open: openConversations(state, this.deps.rules) };
    }
    const state = this.entry(chat).state;
    return { state, open: openConversations(state, this.deps.rules) };
  }

  /** The next `limit` deadlines of this partition. */
  async nextDeadlines(limit: number): Promise<{ chat_id: string; deadline: number }[]> {
    const rows = await this.ctx.store.range('d:', 'd;', limit);
    return rows.map(([k]) => ({ chat_id: k.slice(18), deadline: Number(k.slice(2, 17)) }));
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
