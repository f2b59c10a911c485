// How the tracker keeps a chat's state (src/sessionization/rules.ts' ChatState) in its task's
// store and changelog: one record per thing that changes independently, so that a message is
// written once while its conversation is open and a transaction writes only what it changed.
//
//   c␀<chat>          the chat's structure: type, reaches, the open conversations' starts and
//                     continuations, the sequence numbers of its remembered sealed conversations.
//                     Rewritten only when that structure changes (a conversation opens, merges,
//                     moves its start or is sealed), not when a message joins.
//   m␀<chat>␀<seq>    one open message, with the processing time it arrived at. Written once;
//                     deleted (a tombstone in the changelog) when its conversation is sealed.
//   h␀<chat>␀<seq>    one remembered sealed conversation: span, gap, reason and message ids.
//                     Written at the seal; deleted when the chat forgets it (SEALED_HISTORY).
//   w␀<chat>␀<seq>    thread mode only: one entry of the thread model's window (what the model
//                     reads of a recent message). Written once; deleted when it leaves the window.
//
// (␀ is U+0000.) The changelog's keys are the store's keys, so compaction keeps the changelog at
// the size of the open state plus the remembered summaries. In gap mode, which open conversation a
// message belongs to is not stored: open conversations' spans are disjoint and sorted, so a
// message belongs to the one with the latest start at or before its sent_at (merges cost no
// write). In thread mode threads interleave: each thread has a tag (a number of the chat's, in the
// chat record) and each message record names its thread's tag and its link. A conversation's end,
// size, byte count and arrival time are recomputed from its messages when the chat is loaded.
//
// Version 1 of the tracker logged the whole encoded ChatState under the bare chat id (and kept it
// under `s:<chat>` in the store). Such records are read and converted (see `upgradeV1`); the
// converted chat is then logged in this layout with a tombstone for the old key, so that compaction
// eventually removes the version-1 records.
import type { ChatMessage, SealReason } from '../records/types';
import {
  type ChatState, type OpenConversation, type SealedSummary, STATE_VERSION, decodeState, emptyChatState, messageBytes,
} from '../sessionization/rules';

const SEP = '\u0000';
const SEQ_WIDTH = 10;

export const metaKey = (chat: string) => `c${SEP}${chat}`;
export const messagePrefix = (chat: string) => `m${SEP}${chat}${SEP}`;
export const sealedPrefix = (chat: string) => `h${SEP}${chat}${SEP}`;
export const windowPrefix = (chat: string) => `w${SEP}${chat}${SEP}`;
const seqString = (seq: number) => seq.toString(36).padStart(SEQ_WIDTH, '0');
export const messageKey = (chat: string, seq: number) => `${messagePrefix(chat)}${seqString(seq)}`;
export const sealedKey = (chat: string, seq: number) => `${sealedPrefix(chat)}${seqString(seq)}`;
export const windowKey = (chat: string, seq: number) => `${windowPrefix(chat)}${seqString(seq)}`;
/** The exclusive upper bound of a prefix ending in the separator. */
export const prefixEnd = (prefix: string) => `${prefix.slice(0, -1)}\u0001`;
export const seqOfKey = (key: string) => parseInt(key.slice(key.length - SEQ_WIDTH), 36);

export type LayoutKey =
  | { kind: 'meta' | 'message' | 'sealed' | 'window'; chat: string }
  | { kind: 'v1'; chat: string };

/** What a changelog or store key is, and which chat it belongs to. */
export function parseKey(key: string): LayoutKey {
  if (key.length > 2 && key[1] === SEP) {
    const kind = key[0];
    if (kind === 'c') return { kind: 'meta', chat: key.slice(2) };
    if ((kind === 'm' || kind === 'h' || kind === 'w') && key.length > 3 + SEQ_WIDTH && key[key.length - SEQ_WIDTH - 1] === SEP) {
      return { kind: kind === 'm' ? 'message' : kind === 'h' ? 'sealed' : 'window', chat: key.slice(2, key.length - SEQ_WIDTH - 1) };
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
  /** largest sent_at placed when the record was last written (status only; not compared) */
  k: number | null;
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

/**
 * The chat record. `clock` (status only, it moves with almost every message) is left out unless
 * asked for, so that comparing encodings tells whether the structure changed.
 */
export function encodeMeta(sc: StoredChat, withClock = false): string {
  const state = sc.state;
  const thread = state.window !== undefined && state.window !== null;
  const o: MetaRecord['o'] = new Array(state.open.length);
  for (let i = 0; i < state.open.length; i++) {
    const c = state.open[i]!;
    o[i] = thread ? [c.startedAt, c.continuesConversationId, sc.tagOf.get(c)!] : [c.startedAt, c.continuesConversationId];
  }
  const rec: MetaRecord = {
    v: STATE_VERSION, t: state.chatType, k: withClock ? state.clock : null, r: state.sealedReach, f: state.forgottenReach, o, h: sc.sealedSeqs, n: sc.nextSealedSeq,
  };
  if (thread) {
    const { entries: _entries, ...header } = state.window!;
    rec.W = header;
    rec.g = sc.nextTag;
  }
  return JSON.stringify(rec);
}

/**
 * A message record: the ChatMessage without its chat_id (it is in the key), its arrival time, and
 * in thread mode its link and its thread's tag.
 */
export function encodeMessage(m: ChatMessage, arrivedAt: number, tag?: number): Buffer {
  const a: unknown[] = [m.message_id, m.sender_id, m.sent_at, m.text, m.chat_type, m.is_from_me ? 1 : 0, m.reply_to_message_id, m.account_id, arrivedAt];
  if (tag !== undefined) a.push(m.linked_message_id ?? null, tag);
  return Buffer.from(JSON.stringify(a), 'utf8');
}

function decodeMessage(chat: string, buf: Buffer): { m: ChatMessage; arrivedAt: number; tag: number | undefined } {
  const a = JSON.parse(buf.toString('utf8')) as [string, string, number, string | null, string | null, number, string | null, string | null, number, (string | null)?, number?];
  const m: ChatMessage = {
    message_id: a[0], chat_id: chat, sender_id: a[1], sent_at: a[2], text: a[3], chat_type: a[4], is_from_me: a[5] === 1,
    reply_to_message_id: a[6], account_id: a[7],
  };
  if (a.length > 9 && a[9] !== null && a[9] !== undefined) m.linked_message_id = a[9];
  return { m, arrivedAt: a[8], tag: a[10] };
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
  /** Sequence number of each open message's record. */
  seqOf: Map<ChatMessage, number>;
  nextSeq: number;
  /** The remembered sealed conversations as last written, and their sequence numbers. */
  sealedList: SealedSummary[];
  sealedSeqs: number[];
  nextSealedSeq: number;
  /** The chat record as last written (null: none). */
  meta: string | null;
  /** Thread mode: each open thread's tag, the next tag, and the window entries as last written with their sequence numbers. */
  tagOf: Map<OpenConversation, number>;
  nextTag: number;
  windowList: object[];
  windowSeqs: number[];
  nextWindowSeq: number;
}

export function newStoredChat(chat: string): StoredChat {
  return {
    state: emptyChatState(chat), seqOf: new Map(), nextSeq: 0, sealedList: [], sealedSeqs: [], nextSealedSeq: 0, meta: null,
    tagOf: new Map(), nextTag: 0, windowList: [], windowSeqs: [], nextWindowSeq: 0,
  };
}

/**
 * A chat from its records: the chat record, its open message records, its sealed records and (in
 * thread mode) its window records, each list in key order. Null when the chat has no chat record.
 */
export function assembleChat(
  chat: string, meta: Buffer | MetaRecord | undefined, messages: [string, Buffer][], sealed: [string, Buffer][], windowEntries: [string, Buffer][] = [],
): StoredChat | null {
  if (!meta) return null;
  const rec = Buffer.isBuffer(meta) ? parseMeta(meta) : meta;
  if (rec.v !== STATE_VERSION) throw new Error(`chat record of ${chat} has version ${String(rec.v)} (expected ${STATE_VERSION})`);
  const sc = newStoredChat(chat);
  const state = sc.state;
  state.chatType = rec.t;
  state.clock = rec.k;
  state.sealedReach = rec.r;
  state.forgottenReach = rec.f;
  const thread = rec.W !== undefined;
  const byTag = new Map<number, OpenConversation>();
  const open: OpenConversation[] = rec.o.map((o) => {
    const c: OpenConversation = { startedAt: o[0], endedAt: o[0], bytes: 0, continuesConversationId: o[1], arrivedAt: 0, messages: [] };
    if (thread) { sc.tagOf.set(c, o[2]!); byTag.set(o[2]!, c); }
    return c;
  });
  // Messages by (sent_at, seq): seq is the arrival order, which breaks sent_at ties.
  const items = messages.map(([k, v]) => ({ seq: seqOfKey(k), ...decodeMessage(chat, v) }));
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
    if (it.m.sent_at > c.endedAt) c.endedAt = it.m.sent_at;
    c.bytes += messageBytes(it.m);
    if (it.arrivedAt > c.arrivedAt) c.arrivedAt = it.arrivedAt;
    sc.seqOf.set(it.m, it.seq);
    if (it.seq >= sc.nextSeq) sc.nextSeq = it.seq + 1;
    if (state.clock === null || it.m.sent_at > state.clock) state.clock = it.m.sent_at;
  }
  for (const c of open) if (c.messages.length === 0) throw new Error(`chat ${chat}: open conversation at ${c.startedAt} has no messages`);
  state.open = open;
  sc.sealedSeqs = sealed.map(([k]) => seqOfKey(k));
  state.sealed = sealed.map(([, v]) => decodeSealed(v));
  sc.sealedList = state.sealed.slice();
  sc.nextSealedSeq = rec.n;
  if (thread) {
    const entries = windowEntries.map(([, v]) => JSON.parse(v.toString('utf8')) as object);
    state.window = { ...rec.W, entries };
    sc.windowList = entries.slice();
    sc.windowSeqs = windowEntries.map(([k]) => seqOfKey(k));
    sc.nextWindowSeq = sc.windowSeqs.length > 0 ? sc.windowSeqs[sc.windowSeqs.length - 1]! + 1 : 0;
    sc.nextTag = rec.g ?? 0;
  }
  sc.meta = encodeMeta(sc);
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
  constructor(readonly m: ChatMessage, readonly arrivedAt: number, readonly tag: number | undefined) {}
}

export function recordValue(v: Buffer | null | PendingMessage): Buffer | null {
  return v instanceof PendingMessage ? encodeMessage(v.m, v.arrivedAt, v.tag) : v;
}

/**
 * Writes for a message the rules placed. Called right after the step that placed it, before any
 * later step of the same transaction.
 */
export function placed(sc: StoredChat, m: ChatMessage, arrivedAt: number, into: OpenConversation, writes: RecordWrites, fresh: Set<string>): void {
  const seq = sc.nextSeq++;
  sc.seqOf.set(m, seq);
  const key = messageKey(sc.state.chatId, seq);
  writes.set(key, new PendingMessage(m, arrivedAt, threadTag(sc, into)));
  fresh.add(key);
}

/** The tag of an open thread (a new one gets the next); undefined in gap mode. */
function threadTag(sc: StoredChat, c: OpenConversation): number | undefined {
  if (sc.state.window === undefined || sc.state.window === null) return undefined;
  let tag = sc.tagOf.get(c);
  if (tag === undefined) { tag = sc.nextTag++; sc.tagOf.set(c, tag); }
  return tag;
}

/** Deletes of the records of messages that left the open state (sealed). */
export function sealedMessages(sc: StoredChat, messages: ChatMessage[], writes: RecordWrites, fresh: Set<string>): void {
  for (const m of messages) {
    const seq = sc.seqOf.get(m);
    if (seq === undefined) continue;
    sc.seqOf.delete(m);
    const key = messageKey(sc.state.chatId, seq);
    // Placed and sealed in the same transaction: nothing was ever written under this key.
    if (fresh.has(key)) { writes.delete(key); fresh.delete(key); } else writes.set(key, null);
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
          if (seq !== undefined) writes.set(messageKey(chat, seq), new PendingMessage(m, c.arrivedAt, tag));
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
    writes.set(metaKey(chat), Buffer.from(encodeMeta(sc, true), 'utf8'));
    sc.meta = meta;
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

/** Every record of a chat (for a chat converted from version 1), and the old key's tombstone. */
export function everything(sc: StoredChat, writes: RecordWrites): void {
  const chat = sc.state.chatId;
  for (const c of sc.state.open) {
    for (const m of c.messages) {
      let seq = sc.seqOf.get(m);
      if (seq === undefined) { seq = sc.nextSeq++; sc.seqOf.set(m, seq); }
      writes.set(messageKey(chat, seq), encodeMessage(m, c.arrivedAt, threadTag(sc, c)));
    }
  }
  // Summaries already given a sequence number are logged again under it; new ones get theirs.
  for (let i = 0; i < sc.sealedList.length; i++) writes.set(sealedKey(chat, sc.sealedSeqs[i]!), encodeSealed(sc.sealedList[i]!));
  sc.meta = null;
  structure(sc, writes);
  writes.set(chat, null);
}
