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
//
// (␀ is U+0000.) The changelog's keys are the store's keys, so compaction keeps the changelog at
// the size of the open state plus the remembered summaries. Which open conversation a message
// belongs to is not stored: open conversations' spans are disjoint and sorted, so a message
// belongs to the one with the latest start at or before its sent_at. A conversation's end, size,
// byte count and arrival time are recomputed from its messages when the chat is loaded.
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
const seqString = (seq: number) => seq.toString(36).padStart(SEQ_WIDTH, '0');
export const messageKey = (chat: string, seq: number) => `${messagePrefix(chat)}${seqString(seq)}`;
export const sealedKey = (chat: string, seq: number) => `${sealedPrefix(chat)}${seqString(seq)}`;
/** The exclusive upper bound of a prefix ending in the separator. */
export const prefixEnd = (prefix: string) => `${prefix.slice(0, -1)}\u0001`;
export const seqOfKey = (key: string) => parseInt(key.slice(key.length - SEQ_WIDTH), 36);

export type LayoutKey =
  | { kind: 'meta' | 'message' | 'sealed'; chat: string }
  | { kind: 'v1'; chat: string };

/** What a changelog or store key is, and which chat it belongs to. */
export function parseKey(key: string): LayoutKey {
  if (key.length > 2 && key[1] === SEP) {
    const kind = key[0];
    if (kind === 'c') return { kind: 'meta', chat: key.slice(2) };
    if ((kind === 'm' || kind === 'h') && key.length > 3 + SEQ_WIDTH && key[key.length - SEQ_WIDTH - 1] === SEP) {
      return { kind: kind === 'm' ? 'message' : 'sealed', chat: key.slice(2, key.length - SEQ_WIDTH - 1) };
    }
  }
  return { kind: 'v1', chat: key };
}

// --- record encodings ----------------------------------------------------------------------------

/** The chat record: compact JSON, field names of one letter. */
interface MetaRecord {
  v: number;
  /** chat type */
  t: string | null;
  /** largest sent_at placed when last written (status only) */
  k: number | null;
  /** sealed reach, forgotten reach */
  r: number | null;
  f: number | null;
  /** open conversations: [startedAt, continuesConversationId] in started_at order */
  o: [number, string | null][];
  /** sequence numbers of the remembered sealed conversations, oldest first; next sealed seq */
  h: number[];
  n: number;
}

export function encodeMeta(state: ChatState, sealedSeqs: number[], nextSealedSeq: number): string {
  const o: [number, string | null][] = new Array(state.open.length);
  for (let i = 0; i < state.open.length; i++) o[i] = [state.open[i]!.startedAt, state.open[i]!.continuesConversationId];
  const rec: MetaRecord = {
    v: STATE_VERSION, t: state.chatType, k: state.clock, r: state.sealedReach, f: state.forgottenReach, o, h: sealedSeqs, n: nextSealedSeq,
  };
  return JSON.stringify(rec);
}

/** A message record: the ChatMessage without its chat_id (it is in the key), and its arrival time. */
export function encodeMessage(m: ChatMessage, arrivedAt: number): Buffer {
  return Buffer.from(JSON.stringify([
    m.message_id, m.sender_id, m.sent_at, m.text, m.chat_type, m.is_from_me ? 1 : 0, m.reply_to_message_id, m.account_id, arrivedAt,
  ]), 'utf8');
}

function decodeMessage(chat: string, buf: Buffer): { m: ChatMessage; arrivedAt: number } {
  const a = JSON.parse(buf.toString('utf8')) as [string, string, number, string | null, string | null, number, string | null, string | null, number];
  return {
    m: {
      message_id: a[0], chat_id: chat, sender_id: a[1], sent_at: a[2], text: a[3], chat_type: a[4], is_from_me: a[5] === 1,
      reply_to_message_id: a[6], account_id: a[7],
    },
    arrivedAt: a[8],
  };
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
}

export function newStoredChat(chat: string): StoredChat {
  return {
    state: emptyChatState(chat), seqOf: new Map(), nextSeq: 0, sealedList: [], sealedSeqs: [], nextSealedSeq: 0, meta: null,
  };
}

/**
 * A chat from its records: the chat record, its open message records and its sealed records, each
 * list in key order. Null when the chat has no chat record.
 */
export function assembleChat(chat: string, meta: Buffer | undefined, messages: [string, Buffer][], sealed: [string, Buffer][]): StoredChat | null {
  if (!meta) return null;
  const text = meta.toString('utf8');
  const rec = JSON.parse(text) as MetaRecord;
  if (rec.v !== STATE_VERSION) throw new Error(`chat record of ${chat} has version ${String(rec.v)} (expected ${STATE_VERSION})`);
  const state = emptyChatState(chat);
  state.chatType = rec.t;
  state.clock = rec.k;
  state.sealedReach = rec.r;
  state.forgottenReach = rec.f;
  const seqOf = new Map<ChatMessage, number>();
  let nextSeq = 0;
  const open: OpenConversation[] = rec.o.map(([startedAt, continues]) => ({
    startedAt, endedAt: startedAt, bytes: 0, continuesConversationId: continues, arrivedAt: 0, messages: [],
  }));
  // Messages by (sent_at, seq): seq is the arrival order, which breaks sent_at ties.
  const items = messages.map(([k, v]) => ({ seq: seqOfKey(k), ...decodeMessage(chat, v) }));
  items.sort((a, b) => a.m.sent_at - b.m.sent_at || a.seq - b.seq);
  let ci = 0;
  for (const it of items) {
    while (ci + 1 < open.length && open[ci + 1]!.startedAt <= it.m.sent_at) ci++;
    const c = open[ci];
    if (c === undefined || it.m.sent_at < c.startedAt) {
      throw new Error(`chat ${chat}: open message ${it.m.message_id} at ${it.m.sent_at} lies before every open conversation`);
    }
    c.messages.push(it.m);
    if (it.m.sent_at > c.endedAt) c.endedAt = it.m.sent_at;
    c.bytes += messageBytes(it.m);
    if (it.arrivedAt > c.arrivedAt) c.arrivedAt = it.arrivedAt;
    seqOf.set(it.m, it.seq);
    if (it.seq >= nextSeq) nextSeq = it.seq + 1;
    if (state.clock === null || it.m.sent_at > state.clock) state.clock = it.m.sent_at;
  }
  for (const c of open) if (c.messages.length === 0) throw new Error(`chat ${chat}: open conversation at ${c.startedAt} has no messages`);
  state.open = open;
  const sealedSeqs = sealed.map(([k]) => seqOfKey(k));
  state.sealed = sealed.map(([, v]) => decodeSealed(v));
  return {
    state, seqOf, nextSeq, sealedList: state.sealed.slice(), sealedSeqs, nextSealedSeq: rec.n, meta: text,
  };
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

/** Record writes of one transaction: key → value, null for a delete. */
export type RecordWrites = Map<string, Buffer | null>;

/**
 * Writes for a message the rules placed. Called right after the step that placed it, before any
 * later step of the same transaction.
 */
export function placed(sc: StoredChat, m: ChatMessage, arrivedAt: number, writes: RecordWrites, fresh: Set<string>): void {
  const seq = sc.nextSeq++;
  sc.seqOf.set(m, seq);
  const key = messageKey(sc.state.chatId, seq);
  writes.set(key, encodeMessage(m, arrivedAt));
  fresh.add(key);
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
    const seqs: number[] = new Array(now.length);
    const before = new Map<SealedSummary, number>();
    for (let i = 0; i < sc.sealedList.length; i++) before.set(sc.sealedList[i]!, sc.sealedSeqs[i]!);
    for (let i = 0; i < now.length; i++) {
      const known = before.get(now[i]!);
      if (known !== undefined) { seqs[i] = known; before.delete(now[i]!); continue; }
      const seq = sc.nextSealedSeq++;
      seqs[i] = seq;
      writes.set(sealedKey(chat, seq), encodeSealed(now[i]!));
    }
    for (const seq of before.values()) writes.set(sealedKey(chat, seq), null);
    sc.sealedList = now.slice();
    sc.sealedSeqs = seqs;
  }
  const meta = encodeMeta(sc.state, sc.sealedSeqs, sc.nextSealedSeq);
  if (meta !== sc.meta) {
    writes.set(metaKey(chat), Buffer.from(meta, 'utf8'));
    sc.meta = meta;
  }
}

/** Every record of a chat (for a chat converted from version 1), and the old key's tombstone. */
export function everything(sc: StoredChat, writes: RecordWrites): void {
  const chat = sc.state.chatId;
  for (const c of sc.state.open) {
    for (const m of c.messages) {
      let seq = sc.seqOf.get(m);
      if (seq === undefined) { seq = sc.nextSeq++; sc.seqOf.set(m, seq); }
      writes.set(messageKey(chat, seq), encodeMessage(m, c.arrivedAt));
    }
  }
  // Summaries already given a sequence number are logged again under it; new ones get theirs.
  for (let i = 0; i < sc.sealedList.length; i++) writes.set(sealedKey(chat, sc.sealedSeqs[i]!), encodeSealed(sc.sealedList[i]!));
  sc.meta = null;
  structure(sc, writes);
  writes.set(chat, null);
}
