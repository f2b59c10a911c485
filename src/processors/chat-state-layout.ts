// How the tracker keeps a chat's state (src/sessionization/rules.ts' ChatState) in its task's
// store and changelog: one record per thing that changes independently, so that a message is
// written once while its conversation is open, a transaction writes only what it changed, and a
// chat can be loaded without reading its open messages back.
//
//   c␀<chat>          the chat's structure: type, reaches, the open conversations' starts and
//                     continuations, the sequence numbers of its remembered sealed conversations.
//                     Rewritten only when that structure changes (a conversation opens, merges,
//                     moves its start or is sealed), not when a message joins.
//   o␀<chat>          the open conversations' summaries, in the chat record's order: end, message
//                     count, bytes, arrival time, first message id; with the chat's clock and next
//                     arrival sequence number. Small; rewritten when a message joins. With the chat
//                     record it is all the rules need until a seal (sessionization/rules.ts,
//                     OpenConversation).
//   n␀<chat>␀<id>     one open message, keyed by its message_id, with its arrival sequence number
//                     and time. Written once; deleted (a tombstone in the changelog) when its
//                     conversation is sealed. Keyed by id so that a re-sent message of a chat
//                     loaded from its summaries is found by a point read (a duplicate).
//   h␀<chat>␀<seq>    one remembered sealed conversation: span, gap, reason and message ids.
//                     Written at the seal; deleted when the chat forgets it (SEALED_HISTORY).
//   w␀<chat>␀<seq>    thread mode only: one entry of the thread model's window (what the model
//                     reads of a recent message). Written once; deleted when it leaves the window.
//
// (␀ is U+0000.) The changelog's keys are the store's keys, so compaction keeps the changelog at
// the size of the open state plus the remembered summaries. In gap mode, which open conversation a
// message belongs to is not stored: open conversations' spans are disjoint and sorted, so a
// message belongs to the one whose span holds its sent_at (merges cost no write). In thread mode
// threads interleave: each thread has a tag (a number of the chat's, in the chat record) and each
// message record names its thread's tag and its link. A chat in thread mode, or of no known type
// yet, is always loaded with its messages (the thread model links by message id).
//
// Earlier versions, read and converted when met:
// - version 2 (chat record `v: 2`, no summary record, open messages as `m␀<chat>␀<seq>`): such a
//   chat is read with its messages, and the transaction that loaded it logs it in this layout
//   (its messages under their ids, tombstones for the old keys, the summary, the chat record).
// - version 1 logged the whole encoded ChatState under the bare chat id (and kept it under
//   `s:<chat>` in the store): such records are converted (see `upgradeV1`) and logged in this
//   layout with a tombstone for the old key, so that compaction eventually removes them.
import type { ChatMessage, ConversationSealed, SealReason } from '../records/types';
import {
  type ChatState, type OpenConversation, type PendingSeal, type SealedSummary, STATE_VERSION, completeSeal, decodeState, emptyChatState, messageBytes, upgradeV2,
} from '../sessionization/rules';

const SEP = '\u0000';
const SEQ_WIDTH = 10;

export const metaKey = (chat: string) => `c${SEP}${chat}`;
export const summaryKey = (chat: string) => `o${SEP}${chat}`;
export const messagePrefix = (chat: string) => `n${SEP}${chat}${SEP}`;
export const messageKey = (chat: string, messageId: string) => `${messagePrefix(chat)}${messageId}`;
/** Version 2's open-message records (`m␀<chat>␀<seq>`), read to convert them. */
export const legacyMessagePrefix = (chat: string) => `m${SEP}${chat}${SEP}`;
export const sealedPrefix = (chat: string) => `h${SEP}${chat}${SEP}`;
export const windowPrefix = (chat: string) => `w${SEP}${chat}${SEP}`;
const seqString = (seq: number) => seq.toString(36).padStart(SEQ_WIDTH, '0');
export const sealedKey = (chat: string, seq: number) => `${sealedPrefix(chat)}${seqString(seq)}`;
export const windowKey = (chat: string, seq: number) => `${windowPrefix(chat)}${seqString(seq)}`;
/** The exclusive upper bound of a prefix ending in the separator. */
export const prefixEnd = (prefix: string) => `${prefix.slice(0, -1)}\u0001`;
export const seqOfKey = (key: string) => parseInt(key.slice(key.length - SEQ_WIDTH), 36);

export type LayoutKey =
  | { kind: 'meta' | 'summary' | 'message' | 'legacyMessage' | 'sealed' | 'window'; chat: string }
  | { kind: 'v1'; chat: string };

/** What a changelog or store key is, and which chat it belongs to. */
export function parseKey(key: string): LayoutKey {
  if (key.length > 2 && key[1] === SEP) {
    const kind = key[0];
    if (kind === 'c') return { kind: 'meta', chat: key.slice(2) };
    if (kind === 'o') return { kind: 'summary', chat: key.slice(2) };
    // The chat up to the next separator (a chat id holding U+0000 would be cut short here; the
    // chat's own record, written in the same transaction, names it in full).
    if (kind === 'n' && key.indexOf(SEP, 2) > 2) return { kind: 'message', chat: key.slice(2, key.indexOf(SEP, 2)) };
    if ((kind === 'm' || kind === 'h' || kind === 'w') && key.length > 3 + SEQ_WIDTH && key[key.length - SEQ_WIDTH - 1] === SEP) {
      return { kind: kind === 'm' ? 'legacyMessage' : kind === 'h' ? 'sealed' : 'window', chat: key.slice(2, key.length - SEQ_WIDTH - 1) };
    }
  }
  return { kind: 'v1', chat: key };
}

// --- record encodings ----------------------------------------------------------------------------

/** The chat record: compact JSON, field names of one letter. */
export interface MetaRecord {
  v: number;
  /** chat type */
  t: string | null;
  /** version 2 only: largest sent_at placed when the record was last written (now in the summary record) */
  k?: number | null;
  /** sealed reach, forgotten reach */
  r: number | null;
  f: number | null;
  /** open conversations: [startedAt, continuesConversationId] in started_at order, with the thread's tag in thread mode */
  o: ([number, string | null] | [number, string | null, number])[];
  /** sequence numbers of the remembered sealed conversations, oldest first; next sealed seq */
  h: number[];
  n: number;
  /** thread mode: the window's fields but its entries, and the next thread tag */
  W?: Record<string, unknown>;
  g?: number;
}

/** The chat record; comparing encodings tells whether the structure changed. */
export function encodeMeta(sc: StoredChat): string {
  const state = sc.state;
  const thread = state.window !== undefined && state.window !== null;
  const o: MetaRecord['o'] = new Array(state.open.length);
  for (let i = 0; i < state.open.length; i++) {
    const c = state.open[i]!;
    o[i] = thread ? [c.startedAt, c.continuesConversationId, sc.tagOf.get(c)!] : [c.startedAt, c.continuesConversationId];
  }
  const rec: MetaRecord = {
    v: STATE_VERSION, t: state.chatType, r: state.sealedReach, f: state.forgottenReach, o, h: sc.sealedSeqs, n: sc.nextSealedSeq,
  };
  if (thread) {
    const { entries: _entries, ...header } = state.window!;
    rec.W = header;
    rec.g = sc.nextTag;
  }
  return JSON.stringify(rec);
}

/** The summary record: [next arrival seq, clock, then per open conversation: end, count, bytes, arrival time, first message id]. */
export function encodeSummary(sc: StoredChat): string {
  const a: unknown[] = [sc.nextSeq, sc.state.clock];
  for (const c of sc.state.open) a.push(c.endedAt, c.count, c.bytes, c.arrivedAt, c.firstMessageId);
  return JSON.stringify(a);
}

/**
 * A message record: the ChatMessage without its chat_id (it is in the key), its arrival time and
 * sequence number, and in thread mode its link and its thread's tag.
 */
export function encodeMessage(m: ChatMessage, arrivedAt: number, seq: number, tag?: number): Buffer {
  const a: unknown[] = [m.message_id, m.sender_id, m.sent_at, m.text, m.chat_type, m.is_from_me ? 1 : 0, m.reply_to_message_id, m.account_id, arrivedAt, seq];
  if (tag !== undefined) a.push(m.linked_message_id ?? null, tag);
  return Buffer.from(JSON.stringify(a), 'utf8');
}

export interface DecodedMessage { m: ChatMessage; arrivedAt: number; seq: number; tag: number | undefined }

/** A message record of this layout, or (with its key) of version 2, whose sequence number is in the key. */
export function decodeMessage(chat: string, buf: Buffer, legacyKey?: string): DecodedMessage {
  const a = JSON.parse(buf.toString('utf8')) as unknown[];
  const m: ChatMessage = {
    message_id: a[0] as string, chat_id: chat, sender_id: a[1] as string, sent_at: a[2] as number, text: a[3] as string | null,
    chat_type: a[4] as string | null, is_from_me: a[5] === 1, reply_to_message_id: a[6] as string | null, account_id: a[7] as string | null,
  };
  // Version 2: [..., arrivedAt, link?, tag?]; this layout: [..., arrivedAt, seq, link?, tag?].
  const extra = legacyKey === undefined ? 10 : 9;
  const link = a[extra];
  if (a.length > extra && link !== null && link !== undefined) m.linked_message_id = link as string;
  const seq = legacyKey === undefined ? a[9] as number : seqOfKey(legacyKey);
  return { m, arrivedAt: a[8] as number, seq, tag: a[extra + 1] as number | undefined };
}

export function encodeSealed(x: SealedSummary): Buffer {
  return Buffer.from(JSON.stringify([x.conversationId, x.startedAt, x.endedAt, x.sealReason, x.gapMs, x.messageIds]), 'utf8');
}

function decodeSealed(buf: Buffer): SealedSummary {
  const a = JSON.parse(buf.toString('utf8')) as [string, number, number, SealReason, number, string[]];
  return { conversationId: a[0], startedAt: a[1], endedAt: a[2], sealReason: a[3], gapMs: a[4], messageIds: a[5] };
}

// --- a chat in memory, with what ties it to its records --------------------------------------------

/** A chat's state and the bookkeeping that turns its changes into record writes. */
export interface StoredChat {
  state: ChatState;
  /** Arrival sequence number of each open message held in memory. */
  seqOf: Map<ChatMessage, number>;
  nextSeq: number;
  /** The remembered sealed conversations as last written, and their sequence numbers. */
  sealedList: SealedSummary[];
  sealedSeqs: number[];
  nextSealedSeq: number;
  /** The chat record and the summary record as last written (null: none). */
  meta: string | null;
  summary: string | null;
  /** Thread mode: each open thread's tag, the next tag, and the window entries as last written with their sequence numbers. */
  tagOf: Map<OpenConversation, number>;
  nextTag: number;
  windowList: object[];
  windowSeqs: number[];
  nextWindowSeq: number;
  /** Read from version-2 records: their keys, to be logged again in this layout (`convertV2`). */
  legacyKeys: string[] | null;
}

export function newStoredChat(chat: string): StoredChat {
  return {
    state: emptyChatState(chat), seqOf: new Map(), nextSeq: 0, sealedList: [], sealedSeqs: [], nextSealedSeq: 0, meta: null, summary: null,
    tagOf: new Map(), nextTag: 0, windowList: [], windowSeqs: [], nextWindowSeq: 0, legacyKeys: null,
  };
}

/** A chat's records as read from the store; `messages` null when the open messages were not read. */
export interface ChatRecords {
  meta: Buffer | MetaRecord | null | undefined;
  summary?: Buffer | null;
  /** This layout's message records (`n␀`), or version 2's (`m␀`) for a version-2 chat record. */
  messages: [string, Buffer][] | null;
  /** Instead of `messages`: the open messages as this layout's records hold them, already decoded (a cache's parked messages). */
  held?: { messages: ChatMessage[]; seqs: number[] };
  sealed: [string, Buffer][];
  window?: [string, Buffer][];
}

/** Whether a chat must be read with its open messages: thread mode (or possibly), and version 2. */
export function needsMessages(rec: MetaRecord, isThreadType: (t: string | null) => boolean): boolean {
  return rec.v !== STATE_VERSION || rec.W !== undefined || rec.t === null || isThreadType(rec.t);
}

/** A chat from its records, each list in key order. Null when the chat has no chat record. */
export function assembleChat(chat: string, r: ChatRecords): StoredChat | null {
  if (!r.meta) return null;
  const rec = Buffer.isBuffer(r.meta) ? parseMeta(r.meta) : r.meta;
  if (rec.v !== STATE_VERSION && rec.v !== 2) throw new Error(`chat record of ${chat} has version ${String(rec.v)} (expected ${STATE_VERSION}, or 2 to convert)`);
  const legacy = rec.v === 2;
  if (legacy && r.messages === null) throw new Error(`chat ${chat}: a version-2 chat record is read with its messages`);
  const sc = newStoredChat(chat);
  const state = sc.state;
  state.chatType = rec.t;
  state.sealedReach = rec.r;
  state.forgottenReach = rec.f;
  const thread = rec.W !== undefined;
  const byTag = new Map<number, OpenConversation>();
  const open: OpenConversation[] = rec.o.map((o) => {
    const c: OpenConversation = { startedAt: o[0], endedAt: o[0], count: 0, bytes: 0, firstMessageId: '', continuesConversationId: o[1], arrivedAt: 0, messages: [] };
    if (thread) { sc.tagOf.set(c, o[2]!); byTag.set(o[2]!, c); }
    return c;
  });
  if (!legacy) {
    const sum = r.summary ? JSON.parse(r.summary.toString('utf8')) as unknown[] : null;
    if (sum === null ? open.length > 0 : sum.length !== 2 + 5 * open.length) {
      throw new Error(`chat ${chat}: summary record does not match the ${open.length} open conversations of its chat record`);
    }
    if (sum !== null) {
      sc.nextSeq = sum[0] as number;
      state.clock = sum[1] as number | null;
      for (let i = 0; i < open.length; i++) {
        const c = open[i]!;
        const j = 2 + 5 * i;
        c.endedAt = sum[j] as number; c.count = sum[j + 1] as number; c.bytes = sum[j + 2] as number;
        c.arrivedAt = sum[j + 3] as number; c.firstMessageId = sum[j + 4] as string;
      }
    }
  } else {
    state.clock = rec.k ?? null;
  }
  if (r.held !== undefined && (legacy || thread)) throw new Error(`chat ${chat}: decoded messages are given only for a chat in gap mode's layout`);
  if (r.messages !== null || r.held !== undefined) {
    // Messages by (sent_at, seq): seq is the arrival order, which breaks sent_at ties.
    const items = r.held !== undefined
      ? r.held.messages.map((m, i): DecodedMessage => ({ m, arrivedAt: 0, seq: r.held!.seqs[i]!, tag: undefined }))
      : r.messages!.map(([k, v]) => decodeMessage(chat, v, legacy ? k : undefined));
    items.sort((a, b) => a.m.sent_at - b.m.sent_at || a.seq - b.seq);
    let ci = 0;
    for (const it of items) {
      let c: OpenConversation | undefined;
      if (thread) {
        c = it.tag === undefined ? undefined : byTag.get(it.tag);
        if (c === undefined) throw new Error(`chat ${chat}: open message ${it.m.message_id} names no open thread (tag ${String(it.tag)})`);
      } else {
        while (ci + 1 < open.length && open[ci + 1]!.startedAt <= it.m.sent_at) ci++;
        c = open[ci];
        if (c === undefined || it.m.sent_at < c.startedAt) {
          throw new Error(`chat ${chat}: open message ${it.m.message_id} at ${it.m.sent_at} lies before every open conversation`);
        }
      }
      c.messages.push(it.m);
      sc.seqOf.set(it.m, it.seq);
      if (legacy) {
        // Version 2 kept no summaries: they come from the messages.
        if (it.m.sent_at > c.endedAt) c.endedAt = it.m.sent_at;
        c.bytes += messageBytes(it.m);
        if (it.arrivedAt > c.arrivedAt) c.arrivedAt = it.arrivedAt;
        if (it.seq >= sc.nextSeq) sc.nextSeq = it.seq + 1;
        if (state.clock === null || it.m.sent_at > state.clock) state.clock = it.m.sent_at;
      }
    }
    if (legacy) {
      for (const c of open) c.count = c.messages.length;
      state.open = open;
      state.v = 2;
      upgradeV2(state);
      sc.legacyKeys = r.messages!.map(([k]) => k);
    }
    for (const c of open) {
      if (c.messages.length === 0) throw new Error(`chat ${chat}: open conversation at ${c.startedAt} has no messages`);
      if (c.messages.length !== c.count || c.messages[0]!.message_id !== c.firstMessageId) {
        throw new Error(`chat ${chat}: open conversation at ${c.startedAt} has ${c.messages.length} message records, its summary says ${c.count} starting with ${c.firstMessageId}`);
      }
    }
  }
  state.open = open;
  sc.sealedSeqs = r.sealed.map(([k]) => seqOfKey(k));
  state.sealed = r.sealed.map(([, v]) => decodeSealed(v));
  sc.sealedList = state.sealed.slice();
  sc.nextSealedSeq = rec.n;
  if (thread) {
    const entries = (r.window ?? []).map(([, v]) => JSON.parse(v.toString('utf8')) as object);
    state.window = { ...rec.W, entries };
    sc.windowList = entries.slice();
    sc.windowSeqs = (r.window ?? []).map(([k]) => seqOfKey(k));
    sc.nextWindowSeq = sc.windowSeqs.length > 0 ? sc.windowSeqs[sc.windowSeqs.length - 1]! + 1 : 0;
    sc.nextTag = rec.g ?? 0;
  }
  if (!legacy) {
    sc.meta = encodeMeta(sc);
    sc.summary = encodeSummary(sc);
  }
  return sc;
}

/** The chat record's fields (assembleChat checks its version). */
export function parseMeta(meta: Buffer): MetaRecord {
  return JSON.parse(meta.toString('utf8')) as MetaRecord;
}

/** A chat from its version-1 record, not yet written in this layout (`meta` null). */
export function upgradeV1(chat: string, value: Buffer): StoredChat {
  const state = decodeState(value); // converts version 1
  if (state.chatId !== chat) throw new Error(`version-1 record under key ${chat} holds chat ${state.chatId}`);
  const sc = newStoredChat(chat);
  sc.state = state;
  return sc;
}

// --- what changed ----------------------------------------------------------------------------------

/**
 * Record writes of one transaction: key → value, null for a delete. A placed message's value is
 * encoded only when the transaction is written (`recordValue`): on a backlog most messages are
 * placed and sealed within one transaction and never encoded at all.
 */
export type RecordWrites = Map<string, Buffer | null | PendingMessage>;

/** A message record not encoded yet. */
export class PendingMessage {
  constructor(readonly m: ChatMessage, readonly arrivedAt: number, readonly seq: number, readonly tag: number | undefined) {}
}

export function recordValue(v: Buffer | null | PendingMessage): Buffer | null {
  return v instanceof PendingMessage ? encodeMessage(v.m, v.arrivedAt, v.seq, v.tag) : v;
}

/**
 * The open messages a transaction placed, by identity, not yet in its writes: `writePlaced` puts
 * them there at its end, but for those it sealed first, which are never written (on a backlog,
 * most of them). Keyed by the message object, so that placing and sealing one builds no key.
 */
export type PlacedMessages = Map<ChatMessage, PendingMessage>;

/**
 * A message the rules placed. Called right after the step that placed it, before any later step
 * of the same transaction.
 */
export function placed(sc: StoredChat, m: ChatMessage, arrivedAt: number, into: OpenConversation, placedNow: PlacedMessages): void {
  const seq = sc.nextSeq++;
  sc.seqOf.set(m, seq);
  placedNow.set(m, new PendingMessage(m, arrivedAt, seq, threadTag(sc, into)));
}

/**
 * The records of the messages a transaction placed and left open, at its end, before `structure`
 * (which may log some again with their thread's tag). A record replaces any delete of its key
 * this transaction made: the message of a conversation sealed earlier in it, re-sent since.
 */
export function writePlaced(placedNow: PlacedMessages, writes: RecordWrites): void {
  for (const [m, pending] of placedNow) writes.set(messageKey(m.chat_id, m.message_id), pending);
  placedNow.clear();
}

/** The tag of an open thread (a new one gets the next); undefined in gap mode. */
function threadTag(sc: StoredChat, c: OpenConversation): number | undefined {
  if (sc.state.window === undefined || sc.state.window === null) return undefined;
  let tag = sc.tagOf.get(c);
  if (tag === undefined) { tag = sc.nextTag++; sc.tagOf.set(c, tag); }
  return tag;
}

/**
 * Completes a pending sealed output (rules.ts, PendingSeal) of a chat loaded from its summaries:
 * every message of the conversation is the held ones and the chat's open-message records `rows`
 * (read from the store) within its span, since open conversations' spans are disjoint, but for
 * records this transaction deleted (conversations it sealed before). Ordered by sent_at, ties by
 * arrival sequence.
 */
export function completeSealFrom(sc: StoredChat, o: { conversation: ConversationSealed; pending?: PendingSeal }, rows: [string, Buffer][], writes: RecordWrites): void {
  if (o.pending === undefined) return;
  const c = o.conversation;
  const held = o.pending.held;
  const items: { m: ChatMessage; seq: number }[] = new Array(held.length);
  const heldIds = new Set<string>();
  for (let i = 0; i < held.length; i++) {
    // No seq: placed by the very step that sealed it (MAX_SIZE), so the last to arrive.
    items[i] = { m: held[i]!, seq: sc.seqOf.get(held[i]!) ?? Number.MAX_SAFE_INTEGER };
    heldIds.add(held[i]!.message_id);
  }
  for (const [k, v] of rows) {
    if (writes.get(k) === null) continue;
    const r = decodeMessage(c.chat_id, v);
    if (r.m.sent_at < c.started_at || r.m.sent_at > c.ended_at || heldIds.has(r.m.message_id)) continue;
    sc.seqOf.set(r.m, r.seq); // so that the seal deletes its record
    items.push(r);
  }
  items.sort((a, b) => a.m.sent_at - b.m.sent_at || a.seq - b.seq);
  completeSeal(sc.state, o, items.map((x) => x.m));
}

/** Deletes of the records of messages that left the open state (sealed). */
export function sealedMessages(sc: StoredChat, messages: ChatMessage[], writes: RecordWrites, placedNow: PlacedMessages): void {
  const chat = sc.state.chatId;
  for (const m of messages) {
    sc.seqOf.delete(m);
    // Placed and sealed in the same transaction: nothing was ever written for it.
    if (!placedNow.delete(m)) writes.set(messageKey(chat, m.message_id), null);
  }
}

/**
 * Writes for the remembered sealed conversations and the chat record, after the transaction's
 * steps: summaries the chat now remembers that were not written, deletes of forgotten ones, and
 * the chat record if its structure changed.
 */
export function structure(sc: StoredChat, writes: RecordWrites): void {
  const chat = sc.state.chatId;
  const now = sc.state.sealed;
  if (now.length !== sc.sealedList.length || now[now.length - 1] !== sc.sealedList[sc.sealedList.length - 1]) {
    const r = reconcile(sc.sealedList, sc.sealedSeqs, now, () => sc.nextSealedSeq++);
    for (const [i, seq] of r.added) writes.set(sealedKey(chat, seq), encodeSealed(now[i]!));
    for (const seq of r.removed) writes.set(sealedKey(chat, seq), null);
    sc.sealedList = now.slice();
    sc.sealedSeqs = r.seqs;
  }
  const window = sc.state.window;
  if (window !== undefined && window !== null) {
    const entries = window.entries;
    if (entries.length !== sc.windowList.length || entries[entries.length - 1] !== sc.windowList[sc.windowList.length - 1]) {
      const r = reconcile(sc.windowList, sc.windowSeqs, entries, () => sc.nextWindowSeq++);
      for (const [i, seq] of r.added) writes.set(windowKey(chat, seq), Buffer.from(JSON.stringify(entries[i]), 'utf8'));
      for (const seq of r.removed) writes.set(windowKey(chat, seq), null);
      sc.windowList = entries.slice();
      sc.windowSeqs = r.seqs;
    }
    if (sc.meta === null || !sc.meta.includes('"W":')) {
      // The chat has just entered thread mode (its type became known): the records of messages
      // placed while it was in gap mode carry no thread tag. Log them again with their thread's.
      for (const c of sc.state.open) {
        const tag = threadTag(sc, c);
        for (const m of c.messages) {
          const seq = sc.seqOf.get(m);
          if (seq !== undefined) writes.set(messageKey(chat, m.message_id), new PendingMessage(m, c.arrivedAt, seq, tag));
        }
      }
    }
    for (const c of sc.state.open) threadTag(sc, c);
    if (sc.tagOf.size > sc.state.open.length) {
      const live = new Set(sc.state.open);
      for (const c of sc.tagOf.keys()) if (!live.has(c)) sc.tagOf.delete(c);
    }
  }
  const meta = encodeMeta(sc);
  if (meta !== sc.meta) {
    writes.set(metaKey(chat), Buffer.from(meta, 'utf8'));
    sc.meta = meta;
  }
  const summary = encodeSummary(sc);
  if (summary !== sc.summary) {
    writes.set(summaryKey(chat), Buffer.from(summary, 'utf8'));
    sc.summary = summary;
  }
}

/** Sequence numbers for a list's new items (by identity), and the ones of items no longer in it. */
function reconcile<T>(before: T[], beforeSeqs: number[], now: T[], next: () => number): { seqs: number[]; added: [number, number][]; removed: number[] } {
  const known = new Map<T, number>();
  for (let i = 0; i < before.length; i++) known.set(before[i]!, beforeSeqs[i]!);
  const seqs: number[] = new Array(now.length);
  const added: [number, number][] = [];
  for (let i = 0; i < now.length; i++) {
    const seq = known.get(now[i]!);
    if (seq !== undefined) { seqs[i] = seq; known.delete(now[i]!); continue; }
    seqs[i] = next();
    added.push([i, seqs[i]!]);
  }
  return { seqs, added, removed: [...known.values()] };
}

/** Every record of a chat converted from version 1 (which holds all its messages), and the old key's tombstone. */
export function everything(sc: StoredChat, writes: RecordWrites): void {
  const chat = sc.state.chatId;
  for (const c of sc.state.open) {
    for (const m of c.messages) {
      let seq = sc.seqOf.get(m);
      if (seq === undefined) { seq = sc.nextSeq++; sc.seqOf.set(m, seq); }
      writes.set(messageKey(chat, m.message_id), encodeMessage(m, c.arrivedAt, seq, threadTag(sc, c)));
    }
  }
  // Summaries already given a sequence number are logged again under it; new ones get theirs.
  for (let i = 0; i < sc.sealedList.length; i++) writes.set(sealedKey(chat, sc.sealedSeqs[i]!), encodeSealed(sc.sealedList[i]!));
  sc.meta = null;
  sc.summary = null;
  structure(sc, writes);
  writes.set(chat, null);
}

/**
 * A chat read from version-2 records, logged in this layout by the transaction that loaded it: its
 * open messages under their ids (as if placed by it: a seal in the same transaction drops them
 * unwritten), the old keys' tombstones, and (at `structure`) the chat and summary records. Its
 * sealed and window records keep their keys and format.
 */
export function convertV2(sc: StoredChat, writes: RecordWrites, placedNow: PlacedMessages): void {
  for (const c of sc.state.open) {
    for (const m of c.messages) placedNow.set(m, new PendingMessage(m, c.arrivedAt, sc.seqOf.get(m)!, threadTag(sc, c)));
  }
  for (const key of sc.legacyKeys ?? []) writes.set(key, null);
  sc.legacyKeys = null;
  sc.meta = null;
  sc.summary = null;
}
