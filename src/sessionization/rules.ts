// The sessionization rules of SPEC section 2 as a pure state machine, one state per chat.
//
// `step(state, event, cfg)` consumes one event of a chat (a message, a punctuation tick or an
// operator force-seal) and returns the chat's next state and what it emits (sealed conversations,
// late messages, duplicates, invalid messages). No I/O, no clock reads, no randomness: replaying the
// same events in the same order yields the same outputs, byte for byte.
//
// Ownership: `step` mutates the state it is given and returns that same object. The caller hands
// the state over and must use the returned one from then on (keep an `encodeState` copy if an old
// version is needed). This keeps the hot path free of copying.
//
// Choices where SPEC section 2 leaves room:
// - The chat's type, which selects the gap, is the first non-null `chat_type` of a message that is
//   placed into a conversation of the chat (invalid, duplicate and late messages leave the state
//   untouched). Until then the default gap applies. The sealed event's `chat_type` is the chat's
//   type at seal time, and `gap_ms` the gap in force at seal time.
// - Invalid, duplicate and late messages change nothing, not even the chat's clock.
// - The sealed reach is kept exactly (one number per chat). To name the conversation a late message
//   would have joined, the chat keeps summaries of its last SEALED_HISTORY (64) sealed
//   conversations; a late message older than all of them gets `would_be_conversation_id: null`.
// - A late message's would-be conversation is the remembered sealed conversation C with
//   C.started_at - C.gap_ms <= sent_at <= C.ended_at + C.gap_ms; if several qualify, the nearest
//   one (distance 0 when the message falls inside it), ties going to the most recently sealed.
// - Continuation: when a message becomes the earliest message of an open conversation (it opens a
//   new one, or lands before the start of the one it joins or merges), and a remembered FORCED or
//   MAX_SIZE conversation X has X.ended_at < sent_at <= X.ended_at + X.gap_ms, the conversation
//   continues X (the latest-ending such X; ties to the most recently sealed). A merge keeps the
//   first non-null continuation in started_at order unless the new message itself names one.
// - Size cap: a conversation is sealed with MAX_SIZE as soon as its message count reaches
//   maxMessages or its byte count (sum of messageBytes) reaches maxBytes. A merge can take a
//   conversation past the cap (it is then sealed at once, over the cap), and so can a single
//   message larger than maxBytes: nothing is ever split or dropped.
// - Outputs of one step come in a fixed order: rule-1 seals in started_at order, then the MAX_SIZE
//   seal (which always starts later than those).

import { createHash } from 'node:crypto';
import type { Config } from '../config';
import type { ChatMessage, ConversationSealed, LateMessage, SealReason } from '../records/types';

/** The rules' part of the process configuration (SPEC section 5). */
export type RulesConfig = Pick<Config, 'gapMs' | 'gapByTypeMs' | 'graceMs' | 'maxMessages' | 'maxBytes' | 'maxFutureSkewMs'>;

/** A copy of the rules' settings from the process configuration. */
export function rulesConfigFrom(cfg: Pick<Config, keyof RulesConfig>): RulesConfig {
  return {
    gapMs: cfg.gapMs,
    gapByTypeMs: { ...cfg.gapByTypeMs },
    graceMs: cfg.graceMs,
    maxMessages: cfg.maxMessages,
    maxBytes: cfg.maxBytes,
    maxFutureSkewMs: cfg.maxFutureSkewMs,
  };
}

/** How many sealed conversation summaries a chat remembers for late-message attribution. */
export const SEALED_HISTORY = 64;

export const STATE_VERSION = 1;

/** An open conversation. Its messages are in sent_at order, ties in arrival order. */
export interface OpenConversation {
  startedAt: number;
  endedAt: number;
  bytes: number;
  continuesConversationId: string | null;
  messages: ChatMessage[];
}

/** What a chat remembers of a sealed conversation. */
export interface SealedSummary {
  conversationId: string;
  startedAt: number;
  endedAt: number;
  sealReason: SealReason;
  gapMs: number;
}

/**
 * The state of one chat. Plain JSON data: no Maps, Sets or class instances.
 *
 * Invariants: `open` is sorted by startedAt and the spans [startedAt, endedAt] are pairwise
 * disjoint, so endedAt (and hence every seal deadline) is sorted too; rule 1 and rule 2 therefore
 * always seal a prefix of `open`.
 */
export interface ChatState {
  v: number;
  chatId: string;
  /** First non-null chat_type placed in this chat; selects the gap. */
  chatType: string | null;
  /** Event-time clock: the largest sent_at placed in this chat, null before the first. */
  clock: number | null;
  /** Largest ended_at + gap (NEXT_MESSAGE, GAP_TIMEOUT) or ended_at (FORCED, MAX_SIZE); null before the first seal. */
  sealedReach: number | null;
  open: OpenConversation[];
  /** The last SEALED_HISTORY sealed conversations, in seal order. */
  sealed: SealedSummary[];
}

export function emptyChatState(chatId: string): ChatState {
  return { v: STATE_VERSION, chatId, chatType: null, clock: null, sealedReach: null, open: [], sealed: [] };
}

export type ChatEvent =
  | { type: 'message'; message: ChatMessage; now: number }
  | { type: 'tick'; now: number; caughtUp: boolean }
  | { type: 'force'; now: number };

export type Output =
  | { kind: 'sealed'; conversation: ConversationSealed }
  | { kind: 'late'; late: LateMessage }
  | { kind: 'duplicate'; message: ChatMessage }
  | { kind: 'invalid'; message: ChatMessage; reason: string };

export interface StepResult {
  state: ChatState;
  outputs: Output[];
}

export interface OpenConversationView {
  startedAt: number;
  endedAt: number;
  messageCount: number;
  bytes: number;
  deadline: number;
  continuesConversationId: string | null;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const hasOwn = Object.prototype.hasOwnProperty;

/** The gap for a chat of this type (own properties only, so `constructor` is not a type). */
export function gapForType(cfg: Pick<RulesConfig, 'gapMs' | 'gapByTypeMs'>, chatType: string | null): number {
  if (chatType === null || !hasOwn.call(cfg.gapByTypeMs, chatType)) return cfg.gapMs;
  const g = cfg.gapByTypeMs[chatType];
  return typeof g === 'number' && g > 0 ? g : cfg.gapMs;
}

/** The gap currently in force for this chat. */
export function chatGapMs(state: ChatState, cfg: RulesConfig): number {
  return gapForType(cfg, state.chatType);
}

export function sealedReach(state: ChatState): number | null {
  return state.sealedReach;
}

/**
 * Deterministic conversation id: the first 128 bits of
 * sha256(JSON.stringify([chatId, startedAt, firstMessageId])), shaped as an RFC 9562 version 8
 * UUID so that it fits a PostgreSQL `uuid` column as well as text.
 */
export function conversationId(chatId: string, startedAt: number, firstMessageId: string): string {
  const hex = createHash('sha256').update(JSON.stringify([chatId, startedAt, firstMessageId]), 'utf8').digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

// Length of {"message_id":,"chat_id":,"sender_id":,"sent_at":,"text":,"chat_type":,
// "is_from_me":,"reply_to_message_id":,"account_id":} — the JSON skeleton without values.
const SKELETON_BYTES = JSON.stringify({
  message_id: '', chat_id: '', sender_id: '', sent_at: '', text: '', chat_type: '', is_from_me: '', reply_to_message_id: '', account_id: '',
}).length - 2 * 9; // values (quotes included) are added per message

/**
 * UTF-8 bytes of a string as JSON.stringify writes it, quotes included: \b \t \n \f \r, quote and
 * backslash take two bytes, other control characters and lone surrogates six (\uXXXX).
 */
function jsonString(s: string): number {
  const len = s.length;
  let n = len + 2;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c < 0x20) n += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 1 : 5;
      else if (c === 0x22 || c === 0x5c) n += 1;
    } else if (c < 0x800) {
      n += 1;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      if (c <= 0xdbff && i + 1 < len) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) { n += 2; i++; continue; } // a pair: four bytes for two units
      }
      n += 5;
    } else {
      n += 2;
    }
  }
  return n;
}

function numberLength(x: number): number {
  if (Number.isInteger(x) && x >= 0 && x < 1e15) {
    let d = 1;
    for (let p = 10; p <= x; p *= 10) d++;
    return d;
  }
  return JSON.stringify(x).length;
}

function nullableString(s: string | null): number {
  return s === null ? 4 : jsonString(s);
}

/**
 * The size a message counts toward CONVERSATION_MAX_BYTES: exactly the UTF-8 size of
 * JSON.stringify of the message with the fields of ChatMessage, in their declared order.
 */
export function messageBytes(m: ChatMessage): number {
  return SKELETON_BYTES
    + jsonString(m.message_id) + jsonString(m.chat_id) + jsonString(m.sender_id)
    + numberLength(m.sent_at)
    + nullableString(m.text) + nullableString(m.chat_type)
    + (m.is_from_me ? 4 : 5)
    + nullableString(m.reply_to_message_id) + nullableString(m.account_id);
}

// In-memory index of the message ids of a chat's open conversations, built lazily and never
// serialized. Keyed by the state object, which `step` always mutates in place.
const openIds = new WeakMap<ChatState, Set<string>>();

function idIndex(state: ChatState): Set<string> {
  let ids = openIds.get(state);
  if (ids === undefined) {
    ids = new Set();
    for (const c of state.open) for (const m of c.messages) ids.add(m.message_id);
    openIds.set(state, ids);
  }
  return ids;
}

function isoOf(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}

// ---------------------------------------------------------------------------------------------
// Sealing

/**
 * Emits the sealed event of `c` and records the seal in the chat. The caller removes `c` from
 * `state.open`. `ids` is the open-id index to remove its messages from, or null when the caller
 * empties the index itself (everything open is being sealed).
 */
function seal(
  state: ChatState, c: OpenConversation, reason: SealReason, now: number, gap: number, ids: Set<string> | null, out: Output[],
): void {
  const msgs = c.messages;
  const participants: string[] = [];
  const seen = new Set<string>();
  let accountId: string | null = null;
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]!;
    if (!seen.has(m.sender_id)) { seen.add(m.sender_id); participants.push(m.sender_id); }
    if (accountId === null && m.account_id !== null && m.account_id !== undefined) accountId = m.account_id;
    if (ids !== null) ids.delete(m.message_id);
  }
  const first = msgs[0]!;
  const id = conversationId(state.chatId, c.startedAt, first.message_id);
  const conversation: ConversationSealed = {
    conversation_id: id,
    chat_id: state.chatId,
    chat_type: state.chatType,
    account_id: accountId,
    started_at: c.startedAt,
    ended_at: c.endedAt,
    message_count: msgs.length,
    participant_ids: participants,
    first_message_id: first.message_id,
    last_message_id: msgs[msgs.length - 1]!.message_id,
    sealed_at: now,
    seal_reason: reason,
    gap_ms: gap,
    continues_conversation_id: c.continuesConversationId,
    messages: msgs,
  };
  const reach = reason === 'NEXT_MESSAGE' || reason === 'GAP_TIMEOUT' ? c.endedAt + gap : c.endedAt;
  if (state.sealedReach === null || reach > state.sealedReach) state.sealedReach = reach;
  state.sealed.push({ conversationId: id, startedAt: c.startedAt, endedAt: c.endedAt, sealReason: reason, gapMs: gap });
  if (state.sealed.length > SEALED_HISTORY) state.sealed.splice(0, state.sealed.length - SEALED_HISTORY);
  out.push({ kind: 'sealed', conversation });
}

/** Seals the prefix of open conversations whose deadline (ended_at + gap + grace) is < limit. */
function sealExpired(
  state: ChatState, limit: number, gap: number, grace: number, reason: SealReason, now: number, ids: Set<string>, out: Output[],
): number {
  const open = state.open;
  let k = 0;
  while (k < open.length && limit > open[k]!.endedAt + gap + grace) k++;
  if (k === 0) return 0;
  const all = k === open.length;
  for (let i = 0; i < k; i++) seal(state, open[i]!, reason, now, gap, all ? null : ids, out);
  if (all) { ids.clear(); open.length = 0; } else open.splice(0, k);
  return k;
}

// ---------------------------------------------------------------------------------------------
// Placement

/** The remembered FORCED / MAX_SIZE conversation that a conversation starting at `s` continues. */
function continuationFor(state: ChatState, s: number): string | null {
  let best: SealedSummary | null = null;
  const sealed = state.sealed;
  for (let i = 0; i < sealed.length; i++) {
    const x = sealed[i]!;
    if ((x.sealReason === 'FORCED' || x.sealReason === 'MAX_SIZE') && x.endedAt < s && s <= x.endedAt + x.gapMs) {
      if (best === null || x.endedAt >= best.endedAt) best = x;
    }
  }
  return best === null ? null : best.conversationId;
}

/** The remembered sealed conversation a late message at `s` would have joined. */
function wouldBeConversation(state: ChatState, s: number): string | null {
  let best: SealedSummary | null = null;
  let bestDistance = Infinity;
  const sealed = state.sealed;
  for (let i = 0; i < sealed.length; i++) {
    const x = sealed[i]!;
    if (s < x.startedAt - x.gapMs || s > x.endedAt + x.gapMs) continue;
    const d = s < x.startedAt ? x.startedAt - s : s > x.endedAt ? s - x.endedAt : 0;
    if (d <= bestDistance) { best = x; bestDistance = d; }
  }
  return best === null ? null : best.conversationId;
}

function addMessage(state: ChatState, c: OpenConversation, m: ChatMessage, ids: Set<string>): void {
  const msgs = c.messages;
  const s = m.sent_at;
  if (msgs.length === 0 || s >= msgs[msgs.length - 1]!.sent_at) {
    msgs.push(m);
  } else {
    // Upper bound: after every message with the same sent_at, so ties keep arrival order.
    let lo = 0;
    let hi = msgs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (msgs[mid]!.sent_at <= s) lo = mid + 1; else hi = mid;
    }
    msgs.splice(lo, 0, m);
  }
  if (s < c.startedAt) {
    c.startedAt = s;
    const x = continuationFor(state, s);
    if (x !== null) c.continuesConversationId = x;
  }
  if (s > c.endedAt) c.endedAt = s;
  c.bytes += messageBytes(m);
  ids.add(m.message_id);
}

/** Places a message into the chat's open conversations; returns the index of its conversation. */
function place(state: ChatState, m: ChatMessage, gap: number, ids: Set<string>): number {
  const open = state.open;
  const s = m.sent_at;
  const n = open.length;
  let lo: number;
  let hi: number;
  if (n > 0 && s > open[n - 1]!.endedAt + gap) {
    lo = n; hi = n - 1; // after everything: a new conversation at the end
  } else if (n > 0 && s >= open[n - 1]!.startedAt - gap && (n === 1 || s > open[n - 2]!.endedAt + gap)) {
    lo = n - 1; hi = n - 1; // the common case: the latest conversation only
  } else {
    // Candidates C with C.startedAt - gap <= s <= C.endedAt + gap form a contiguous run.
    let a = 0;
    let b = n;
    while (a < b) { const mid = (a + b) >>> 1; if (open[mid]!.endedAt + gap < s) a = mid + 1; else b = mid; }
    lo = a;
    b = n;
    while (a < b) { const mid = (a + b) >>> 1; if (open[mid]!.startedAt - gap <= s) a = mid + 1; else b = mid; }
    hi = a - 1;
  }
  if (lo > hi) {
    const c: OpenConversation = {
      startedAt: s, endedAt: s, bytes: 0, continuesConversationId: continuationFor(state, s), messages: [],
    };
    open.splice(lo, 0, c);
    c.messages.push(m);
    c.bytes = messageBytes(m);
    ids.add(m.message_id);
    return lo;
  }
  if (hi > lo) {
    // Session-window merge: the spans are disjoint and sorted, so concatenation keeps sent_at order.
    const into = open[lo]!;
    for (let k = lo + 1; k <= hi; k++) {
      const other = open[k]!;
      const om = other.messages;
      for (let i = 0; i < om.length; i++) into.messages.push(om[i]!);
      into.bytes += other.bytes;
      if (into.continuesConversationId === null) into.continuesConversationId = other.continuesConversationId;
    }
    into.endedAt = open[hi]!.endedAt;
    open.splice(lo + 1, hi - lo);
  }
  addMessage(state, open[lo]!, m, ids);
  return lo;
}

// ---------------------------------------------------------------------------------------------
// The state machine

function onMessage(state: ChatState, m: ChatMessage, now: number, cfg: RulesConfig, out: Output[]): void {
  const s = m.sent_at;
  if (typeof s !== 'number' || !Number.isFinite(s)) {
    out.push({ kind: 'invalid', message: m, reason: `sent_at is not a finite timestamp: ${String(s)}` });
    return;
  }
  if (m.chat_id !== state.chatId) {
    out.push({ kind: 'invalid', message: m, reason: `chat_id "${m.chat_id}" does not belong to the state of chat "${state.chatId}"` });
    return;
  }
  if (s > now + cfg.maxFutureSkewMs) {
    out.push({
      kind: 'invalid',
      message: m,
      reason: `sent_at ${isoOf(s)} is ${s - now}ms ahead of the processor clock ${isoOf(now)}, more than MAX_FUTURE_SKEW (${cfg.maxFutureSkewMs}ms)`,
    });
    return;
  }
  const ids = idIndex(state);
  if (ids.has(m.message_id)) {
    out.push({ kind: 'duplicate', message: m });
    return;
  }
  if (state.sealedReach !== null && s <= state.sealedReach) {
    out.push({
      kind: 'late',
      late: { message: m, would_be_conversation_id: wouldBeConversation(state, s), chat_sealed_reach: state.sealedReach, detected_at: now },
    });
    return;
  }
  if (state.chatType === null && typeof m.chat_type === 'string') state.chatType = m.chat_type;
  const gap = gapForType(cfg, state.chatType);
  let at = place(state, m, gap, ids);
  if (state.clock === null || s > state.clock) state.clock = s;
  at -= sealExpired(state, state.clock, gap, cfg.graceMs, 'NEXT_MESSAGE', now, ids, out);
  if (at >= 0) {
    const c = state.open[at]!;
    if (c.messages.length >= cfg.maxMessages || c.bytes >= cfg.maxBytes) {
      const all = state.open.length === 1;
      seal(state, c, 'MAX_SIZE', now, gap, all ? null : ids, out);
      if (all) { ids.clear(); state.open.length = 0; } else state.open.splice(at, 1);
    }
  }
}

/**
 * Applies one event to a chat. Mutates `state` and returns it (see the ownership note at the top
 * of this file) with the outputs, in a deterministic order.
 */
export function step(state: ChatState, event: ChatEvent, cfg: RulesConfig): StepResult {
  const outputs: Output[] = [];
  switch (event.type) {
    case 'message':
      onMessage(state, event.message, event.now, cfg, outputs);
      break;
    case 'tick':
      if (event.caughtUp && state.open.length > 0) {
        sealExpired(state, event.now, gapForType(cfg, state.chatType), cfg.graceMs, 'GAP_TIMEOUT', event.now, idIndex(state), outputs);
      }
      break;
    case 'force': {
      if (state.open.length > 0) {
        const gap = gapForType(cfg, state.chatType);
        for (const c of state.open) seal(state, c, 'FORCED', event.now, gap, null, outputs);
        state.open.length = 0;
        openIds.get(state)?.clear();
      }
      break;
    }
  }
  return { state, outputs };
}

/** Earliest ended_at + gap + grace over open conversations, or null when none is open. */
export function nextDeadline(state: ChatState, cfg: RulesConfig): number | null {
  const first = state.open[0];
  return first === undefined ? null : first.endedAt + gapForType(cfg, state.chatType) + cfg.graceMs;
}

export function openConversations(state: ChatState, cfg: RulesConfig): OpenConversationView[] {
  const gap = gapForType(cfg, state.chatType);
  return state.open.map((c) => ({
    startedAt: c.startedAt,
    endedAt: c.endedAt,
    messageCount: c.messages.length,
    bytes: c.bytes,
    deadline: c.endedAt + gap + cfg.graceMs,
    continuesConversationId: c.continuesConversationId,
  }));
}

// ---------------------------------------------------------------------------------------------
// Serialization (RocksDB and the changelog)

export function encodeState(state: ChatState): Buffer {
  return Buffer.from(JSON.stringify(state), 'utf8');
}

export function decodeState(buf: Buffer): ChatState {
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new Error(`chat state is not valid JSON: ${(e as Error).message}`);
  }
  const s = v as Partial<ChatState> | null;
  if (s === null || typeof s !== 'object') throw new Error('chat state is not an object');
  if (s.v !== STATE_VERSION) throw new Error(`unsupported chat state version ${String(s.v)} (expected ${STATE_VERSION})`);
  if (typeof s.chatId !== 'string' || !Array.isArray(s.open) || !Array.isArray(s.sealed)) {
    throw new Error('chat state is missing chatId, open or sealed');
  }
  return s as ChatState;
}
