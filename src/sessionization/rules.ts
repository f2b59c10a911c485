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
// - Memory of sealed conversations (the bound SPEC asks to state): the chat remembers its last
//   SEALED_HISTORY (64) sealed conversations, each with its span, gap, seal reason and message
//   ids. Those ids make re-sent messages duplicates; their reaches make messages late. Of the
//   forgotten ones only the largest reach end is kept (`forgottenReach`): at or before it a
//   message is late (nothing can be known there), and a forgotten conversation's ids are no
//   longer duplicates (such a message is late when it falls in the forgotten reach, which a
//   re-sent message of a forgotten conversation always does).
// - Rule 1 is applied with the arriving message's own sent_at: history that arrives behind the
//   chat's newest messages only seals conversations it proves closed, so it forms the
//   conversations it would have formed in order. `clock` (the largest sent_at placed) is kept for
//   status only.
// - A late message's would-be conversation is the remembered sealed conversation C whose reach
//   contains sent_at; if several qualify, the nearest one (distance 0 when the message falls
//   inside it), ties going to the most recently sealed; null when only `forgottenReach` makes it
//   late.
// - Settle (rule 2): each open conversation keeps `arrivedAt`, the processing time (`now` of the
//   event) at which a message last joined it, a merge included. A tick seals it only once
//   now - arrivedAt >= min(settleMs, gap + grace), so history imported into a live chat in
//   batches is not split at the batch boundaries.
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
//   seal. Rule 2 seals in started_at order.
// - What an open conversation needs until its seal is a summary (span, count, bytes, arrival time,
//   first message id, continuation), so a caller may hand in a state whose conversations hold only
//   some of their messages (see OpenConversation): such a seal is emitted pending, the caller
//   completes it with every message (`completeSeal`), and a re-sent message whose original the
//   state does not hold is named a duplicate by the event (`storedOpenId`). The outputs are the
//   same as with every message held; tests/unit/chat-state-layout.test.ts checks that.

import { createHash } from 'node:crypto';
import type { Config } from '../config';
import type { ChatMessage, ConversationSealed, LateMessage, SealReason } from '../records/types';

/**
 * What thread mode (SPEC section 2a) needs of a thread model: a per-chat window of recent messages
 * (plain JSON data, kept in the chat's state), a link for a message (the earlier message it
 * replies to, or null), and remembering the message once placed. Deterministic; `link` only reads
 * the window.
 */
export interface ThreadLinker {
  createWindow(): ThreadWindowState;
  link(window: ThreadWindowState, message: ChatMessage): { parentMessageId: string | null; entry: unknown };
  remember(window: ThreadWindowState, message: ChatMessage, parentMessageId: string | null, entry: unknown): void;
}

/** A thread model's window: entries oldest first, plain JSON objects. */
export interface ThreadWindowState { entries: object[]; [k: string]: unknown }

/** The rules' part of the process configuration (SPEC section 5), and the thread model if any type uses thread mode. */
export type RulesConfig = Pick<Config, 'gapMs' | 'gapByTypeMs' | 'graceMs' | 'settleMs' | 'maxMessages' | 'maxBytes' | 'maxFutureSkewMs'>
  & { modeByType?: Config['modeByType']; threadLinker?: ThreadLinker | null };

/** A copy of the rules' settings from the process configuration. */
export function rulesConfigFrom(cfg: Pick<Config, Exclude<keyof RulesConfig, 'threadLinker' | 'modeByType'>> & Partial<Pick<Config, 'modeByType'>>, threadLinker: ThreadLinker | null = null): RulesConfig {
  return {
    modeByType: { ...(cfg.modeByType ?? {}) },
    threadLinker,
    gapMs: cfg.gapMs,
    gapByTypeMs: { ...cfg.gapByTypeMs },
    graceMs: cfg.graceMs,
    settleMs: cfg.settleMs,
    maxMessages: cfg.maxMessages,
    maxBytes: cfg.maxBytes,
    maxFutureSkewMs: cfg.maxFutureSkewMs,
  };
}

/** How many sealed conversations a chat remembers (reach and message ids). */
export const SEALED_HISTORY = 64;

export const STATE_VERSION = 3;

/**
 * An open conversation: its summary, which is all the rules need until the seal, and the messages
 * held in memory.
 *
 * `messages` holds every message of the conversation (`messages.length === count`, in sent_at
 * order, ties in arrival order) unless the chat was loaded from its summary (the tracker does that
 * for chats in gap mode, so that a cache miss does not read the open messages back): it then holds
 * only the messages placed since, in arrival order, the others being in the store. Sealing such a
 * conversation emits a pending sealed output, which the caller completes with every message
 * (`completeSeal`). Thread mode always holds every message.
 */
export interface OpenConversation {
  startedAt: number;
  endedAt: number;
  /** Messages in the conversation, held or not. */
  count: number;
  bytes: number;
  /** Its first message in (sent_at, arrival) order: with startedAt and the chat, the conversation id. */
  firstMessageId: string;
  continuesConversationId: string | null;
  /** The latest processing time (an event's `now`) at which a message joined, for the settle rule; a merge keeps the latest of both. */
  arrivedAt: number;
  messages: ChatMessage[];
}

/** Whether a conversation holds all its messages in memory. */
export function isComplete(c: OpenConversation): boolean {
  return c.messages.length === c.count;
}

/** What a chat remembers of a sealed conversation. */
export interface SealedSummary {
  conversationId: string;
  startedAt: number;
  endedAt: number;
  sealReason: SealReason;
  gapMs: number;
  /** The conversation's message ids: a message re-sent with one of them is a duplicate. */
  messageIds: string[];
}

/**
 * The state of one chat. Plain JSON data: no Maps, Sets or class instances.
 *
 * Invariants: `open` is sorted by startedAt. In gap mode the spans [startedAt, endedAt] are
 * pairwise disjoint, so endedAt (and hence every deadline) is sorted too and rule 1 seals a prefix
 * of `open`; rule 2, with the settle time, need not. In thread mode spans interleave.
 */
export interface ChatState {
  v: number;
  chatId: string;
  /** First non-null chat_type placed in this chat; selects the gap. */
  chatType: string | null;
  /** The largest sent_at placed in this chat, null before the first (status only). */
  clock: number | null;
  /** Largest reach end over every sealed conversation: ended_at + gap (NEXT_MESSAGE, GAP_TIMEOUT) or ended_at (FORCED, MAX_SIZE). */
  sealedReach: number | null;
  /** Largest reach end of the sealed conversations no longer remembered; null while none is forgotten. */
  forgottenReach: number | null;
  open: OpenConversation[];
  /** The last SEALED_HISTORY sealed conversations, in seal order. */
  sealed: SealedSummary[];
  /** Thread mode only: the thread model's window of recent messages (absent or null otherwise). */
  window?: ThreadWindowState | null;
}

export function emptyChatState(chatId: string): ChatState {
  return { v: STATE_VERSION, chatId, chatType: null, clock: null, sealedReach: null, forgottenReach: null, open: [], sealed: [] };
}

export type ChatEvent =
  /**
   * `storedOpenId`: the caller's store holds an open message of this chat with this message_id
   * that the state does not hold in memory (a chat loaded from its summary), so it is a duplicate.
   */
  | { type: 'message'; message: ChatMessage; now: number; storedOpenId?: boolean }
  | { type: 'tick'; now: number; caughtUp: boolean }
  | { type: 'force'; now: number };

/**
 * A sealed conversation whose messages are not all held in memory: `conversation` lacks its
 * messages (and what is derived from them: participants, account, last message id) until the
 * caller passes every message to `completeSeal`, before it uses the output or steps the chat again.
 */
export interface PendingSeal {
  summary: SealedSummary;
  /** The messages held in memory, in arrival order; the others are in the caller's store, within [started_at, ended_at]. */
  held: ChatMessage[];
}

export type Output =
  | { kind: 'sealed'; conversation: ConversationSealed; pending?: PendingSeal }
  | { kind: 'late'; late: LateMessage }
  | { kind: 'duplicate'; message: ChatMessage }
  | { kind: 'invalid'; message: ChatMessage; reason: string };

export interface StepResult {
  state: ChatState;
  outputs: Output[];
  /** For a message event: the open conversation the message was placed in, if it is still open. */
  placedIn?: OpenConversation;
}

export interface OpenConversationView {
  startedAt: number;
  endedAt: number;
  messageCount: number;
  bytes: number;
  /** ended_at + gap + grace: rule 2 seals strictly after it. */
  deadline: number;
  arrivedAt: number;
  /** arrivedAt + min(settle, gap + grace): rule 2 seals at or after it. */
  settlesAt: number;
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

/** The settle time in force: min(CONVERSATION_SETTLE, gap + grace). */
export function settleFor(cfg: Pick<RulesConfig, 'settleMs' | 'graceMs'>, gap: number): number {
  return Math.min(cfg.settleMs, gap + cfg.graceMs);
}

/** The end of a sealed conversation's reach. */
function reachEnd(reason: SealReason, endedAt: number, gap: number): number {
  return reason === 'NEXT_MESSAGE' || reason === 'GAP_TIMEOUT' ? endedAt + gap : endedAt;
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

// In-memory index of the message ids a chat knows (open conversations and remembered sealed
// ones), built lazily and never serialized. Keyed by the state object, which `step` always
// mutates in place. An id stays in the index from its message's placement until its sealed
// conversation is forgotten.
const knownIds = new WeakMap<ChatState, Set<string>>();

function idIndex(state: ChatState): Set<string> {
  let ids = knownIds.get(state);
  if (ids === undefined) {
    ids = new Set();
    for (const c of state.open) for (const m of c.messages) ids.add(m.message_id);
    for (const x of state.sealed) for (const id of x.messageIds) ids.add(id);
    knownIds.set(state, ids);
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
 * Emits the sealed event of `c` and records the seal in the chat: its summary (with the message
 * ids, which stay in the id index as duplicates-to-be) and, for a summary pushed out of the
 * history, its reach into `forgottenReach` and its ids out of the index. The caller removes `c`
 * from `state.open`.
 */
function seal(state: ChatState, c: OpenConversation, reason: SealReason, now: number, gap: number, out: Output[]): void {
  const id = conversationId(state.chatId, c.startedAt, c.firstMessageId);
  const conversation: ConversationSealed = {
    conversation_id: id,
    chat_id: state.chatId,
    chat_type: state.chatType,
    account_id: null,
    started_at: c.startedAt,
    ended_at: c.endedAt,
    message_count: c.count,
    participant_ids: [],
    first_message_id: c.firstMessageId,
    last_message_id: c.firstMessageId,
    sealed_at: now,
    seal_reason: reason,
    gap_ms: gap,
    continues_conversation_id: c.continuesConversationId,
    messages: [],
  };
  const reach = reachEnd(reason, c.endedAt, gap);
  if (state.sealedReach === null || reach > state.sealedReach) state.sealedReach = reach;
  const summary: SealedSummary = { conversationId: id, startedAt: c.startedAt, endedAt: c.endedAt, sealReason: reason, gapMs: gap, messageIds: [] };
  state.sealed.push(summary);
  if (isComplete(c)) {
    // The ids of its messages are in the id index already (they were open).
    fillSealed(conversation, summary, c.messages);
    if (state.sealed.length > SEALED_HISTORY) forget(state, state.sealed.length - SEALED_HISTORY);
    out.push({ kind: 'sealed', conversation });
  } else {
    if (state.sealed.length > SEALED_HISTORY) forget(state, state.sealed.length - SEALED_HISTORY);
    out.push({ kind: 'sealed', conversation, pending: { summary, held: c.messages } });
  }
}

/** The fields of a sealed conversation and its summary that come from its messages (in order). */
function fillSealed(conversation: ConversationSealed, summary: SealedSummary, msgs: ChatMessage[]): void {
  const participants: string[] = [];
  const seen = new Set<string>();
  const messageIds: string[] = new Array(msgs.length);
  let accountId: string | null = null;
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]!;
    if (!seen.has(m.sender_id)) { seen.add(m.sender_id); participants.push(m.sender_id); }
    if (accountId === null && m.account_id !== null && m.account_id !== undefined) accountId = m.account_id;
    messageIds[i] = m.message_id;
  }
  conversation.account_id = accountId;
  conversation.participant_ids = participants;
  conversation.last_message_id = msgs[msgs.length - 1]!.message_id;
  conversation.messages = msgs;
  summary.messageIds = messageIds;
}

/**
 * Completes a pending sealed output with every message of the conversation, in sent_at order,
 * ties in arrival order (the held ones and those the caller's store holds). Their ids become the
 * remembered conversation's (duplicates from now on) while the chat still remembers it.
 */
export function completeSeal(state: ChatState, output: { conversation: ConversationSealed; pending?: PendingSeal }, messages: ChatMessage[]): void {
  const p = output.pending;
  if (p === undefined) return;
  const c = output.conversation;
  if (messages.length !== c.message_count || messages[0]?.message_id !== c.first_message_id) {
    throw new Error(`chat ${state.chatId}: conversation ${c.conversation_id} has ${c.message_count} messages starting with ${c.first_message_id}, `
      + `but ${messages.length} were found, starting with ${String(messages[0]?.message_id)}`);
  }
  fillSealed(c, p.summary, messages);
  delete output.pending;
  const ids = knownIds.get(state);
  if (ids !== undefined && state.sealed.includes(p.summary)) for (const m of messages) ids.add(m.message_id);
}

/** Drops the `n` oldest remembered sealed conversations: their reach goes into forgottenReach. */
function forget(state: ChatState, n: number): void {
  const ids = knownIds.get(state);
  for (let i = 0; i < n; i++) {
    const x = state.sealed[i]!;
    const r = reachEnd(x.sealReason, x.endedAt, x.gapMs);
    if (state.forgottenReach === null || r > state.forgottenReach) state.forgottenReach = r;
    if (ids !== undefined) for (const mid of x.messageIds) ids.delete(mid);
  }
  state.sealed.splice(0, n);
}

/** Rule 1: seals the open conversations (other than `keep`) whose deadline the placed message at `s` passes. */
function sealProvenClosed(state: ChatState, s: number, keep: OpenConversation, gap: number, grace: number, now: number, out: Output[]): void {
  const open = state.open;
  // Spans are disjoint and sorted: the conversations proven closed are a prefix of `open`.
  let k = 0;
  while (k < open.length && s > open[k]!.endedAt + gap + grace) k++;
  if (k === 0) return;
  let w = 0;
  for (let i = 0; i < open.length; i++) {
    const c = open[i]!;
    if (i < k && c !== keep) seal(state, c, 'NEXT_MESSAGE', now, gap, out);
    else open[w++] = c;
  }
  open.length = w;
}

/** Rule 2: seals the open conversations past their deadline and settled, in started_at order. */
function sealTimedOut(state: ChatState, now: number, cfg: RulesConfig, out: Output[]): void {
  const open = state.open;
  const gap = gapForType(cfg, state.chatType);
  const settle = settleFor(cfg, gap);
  let w = 0;
  for (let i = 0; i < open.length; i++) {
    const c = open[i]!;
    if (now > c.endedAt + gap + cfg.graceMs && now - c.arrivedAt >= settle) seal(state, c, 'GAP_TIMEOUT', now, gap, out);
    else open[w++] = c;
  }
  open.length = w;
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

/**
 * The late check: whether `s` lies in the reach of a remembered sealed conversation (its id, the
 * nearest, ties to the most recently sealed) or at or before the forgotten reach (null).
 * Returns undefined when the message is not late.
 */
function lateFor(state: ChatState, s: number): string | null | undefined {
  let best: SealedSummary | null = null;
  let bestDistance = Infinity;
  const sealed = state.sealed;
  for (let i = 0; i < sealed.length; i++) {
    const x = sealed[i]!;
    if (s < x.startedAt - x.gapMs || s > reachEnd(x.sealReason, x.endedAt, x.gapMs)) continue;
    const d = s < x.startedAt ? x.startedAt - s : s > x.endedAt ? s - x.endedAt : 0;
    if (d <= bestDistance) { best = x; bestDistance = d; }
  }
  if (best !== null) return best.conversationId;
  if (state.forgottenReach !== null && s <= state.forgottenReach) return null;
  return undefined;
}

function addMessage(state: ChatState, c: OpenConversation, m: ChatMessage, now: number, ids: Set<string>): void {
  const msgs = c.messages;
  const s = m.sent_at;
  if (!isComplete(c) || msgs.length === 0 || s >= msgs[msgs.length - 1]!.sent_at) {
    // Held messages of a conversation loaded from its summary stay in arrival order (completeSeal sorts).
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
  c.count++;
  if (s < c.startedAt) {
    c.startedAt = s;
    c.firstMessageId = m.message_id;
    const x = continuationFor(state, s);
    if (x !== null) c.continuesConversationId = x;
  }
  if (s > c.endedAt) c.endedAt = s;
  c.bytes += messageBytes(m);
  // The latest join: "no message joined for the settle time" holds when every join is that old.
  if (now > c.arrivedAt) c.arrivedAt = now;
  ids.add(m.message_id);
}

/** Places a message into the chat's open conversations; returns the conversation it is in. */
function place(state: ChatState, m: ChatMessage, gap: number, now: number, ids: Set<string>): OpenConversation {
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
      startedAt: s, endedAt: s, count: 1, bytes: messageBytes(m), firstMessageId: m.message_id, continuesConversationId: continuationFor(state, s), arrivedAt: now, messages: [m],
    };
    open.splice(lo, 0, c);
    ids.add(m.message_id);
    return c;
  }
  if (hi > lo) {
    // Session-window merge: the spans are disjoint and sorted, so concatenation keeps sent_at order
    // (and the first message is `into`'s).
    const into = open[lo]!;
    for (let k = lo + 1; k <= hi; k++) {
      const other = open[k]!;
      const om = other.messages;
      for (let i = 0; i < om.length; i++) into.messages.push(om[i]!);
      into.count += other.count;
      into.bytes += other.bytes;
      if (other.arrivedAt > into.arrivedAt) into.arrivedAt = other.arrivedAt;
      if (into.continuesConversationId === null) into.continuesConversationId = other.continuesConversationId;
    }
    into.endedAt = open[hi]!.endedAt;
    open.splice(lo + 1, hi - lo);
  }
  const c = open[lo]!;
  addMessage(state, c, m, now, ids);
  return c;
}

// ---------------------------------------------------------------------------------------------
// The state machine

/** Whether a chat of this type is split into threads (SPEC section 2a). */
export function isThreadMode(cfg: RulesConfig, chatType: string | null): boolean {
  return chatType !== null && cfg.modeByType !== undefined && hasOwn.call(cfg.modeByType, chatType)
    && cfg.modeByType[chatType] === 'threads' && !!cfg.threadLinker;
}

/** The checks before placement (invalid, duplicate, late); false when the message is not to be placed. */
function admit(state: ChatState, m: ChatMessage, now: number, cfg: RulesConfig, ids: Set<string>, storedOpenId: boolean, out: Output[]): boolean {
  const s = m.sent_at;
  if (typeof s !== 'number' || !Number.isFinite(s)) {
    out.push({ kind: 'invalid', message: m, reason: `sent_at is not a finite timestamp: ${String(s)}` });
    return false;
  }
  if (m.chat_id !== state.chatId) {
    out.push({ kind: 'invalid', message: m, reason: `chat_id "${m.chat_id}" does not belong to the state of chat "${state.chatId}"` });
    return false;
  }
  if (s > now + cfg.maxFutureSkewMs) {
    out.push({
      kind: 'invalid',
      message: m,
      reason: `sent_at ${isoOf(s)} is ${s - now}ms ahead of the processor clock ${isoOf(now)}, more than MAX_FUTURE_SKEW (${cfg.maxFutureSkewMs}ms)`,
    });
    return false;
  }
  if (ids.has(m.message_id) || storedOpenId) {
    out.push({ kind: 'duplicate', message: m });
    return false;
  }
  if (state.sealedReach !== null) {
    const wouldBe = lateFor(state, s);
    if (wouldBe !== undefined) {
      out.push({ kind: 'late', late: { message: m, would_be_conversation_id: wouldBe, chat_sealed_reach: state.sealedReach, detected_at: now } });
      return false;
    }
  }
  if (state.chatType === null && typeof m.chat_type === 'string') state.chatType = m.chat_type;
  return true;
}

function onMessage(state: ChatState, m: ChatMessage, now: number, storedOpenId: boolean, cfg: RulesConfig, out: Output[]): OpenConversation | undefined {
  const ids = idIndex(state);
  if (!admit(state, m, now, cfg, ids, storedOpenId, out)) return undefined;
  if (isThreadMode(cfg, state.chatType)) {
    // Threads are found by their messages' ids (openThreadOf): a thread chat holds all of them.
    for (const c of state.open) if (!isComplete(c)) throw new Error(`chat ${state.chatId} is in thread mode but was loaded without its open messages`);
    return onThreadMessage(state, m, now, cfg, ids, out);
  }
  const s = m.sent_at;
  const gap = gapForType(cfg, state.chatType);
  const c = place(state, m, gap, now, ids);
  if (state.clock === null || s > state.clock) state.clock = s;
  sealProvenClosed(state, s, c, gap, cfg.graceMs, now, out);
  if (c.count >= cfg.maxMessages || c.bytes >= cfg.maxBytes) {
    seal(state, c, 'MAX_SIZE', now, gap, out);
    state.open.splice(state.open.indexOf(c), 1);
    return undefined;
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Thread mode (SPEC section 2a)
//
// Choices:
// - A message's link: its reply_to_message_id when that names a message the chat knows (open, or in
//   a remembered sealed conversation); otherwise what the thread model chooses among its window
//   (the last messages placed; the model's bound), or none.
// - Linked to a message of an open thread T: the message joins T if it lies within T's gap
//   (T.started_at - gap <= sent_at <= T.ended_at + gap + grace). Beyond T's end by more than that,
//   T is proven closed (rule 1, by this message) and the message opens a new thread that continues
//   T; before T's start by more than the gap, it opens a new thread.
// - Linked to a message of a remembered sealed conversation S: a new thread continuing S.
// - Not linked (or linked to a message the chat no longer knows): a new thread.
// - Threads are never merged. `open` is kept in started_at order (ties in creation order), so that
//   seals come out in started_at order as in gap mode.
// - Every placed message linked to another carries `linked_message_id` (absent when it started its thread).

function openThreadOf(state: ChatState, id: string): OpenConversation | undefined {
  for (const c of state.open) for (let i = c.messages.length - 1; i >= 0; i--) if (c.messages[i]!.message_id === id) return c;
  return undefined;
}

function sealedConversationOf(state: ChatState, id: string): SealedSummary | undefined {
  for (let i = state.sealed.length - 1; i >= 0; i--) if (state.sealed[i]!.messageIds.includes(id)) return state.sealed[i];
  return undefined;
}

function insertByStart(open: OpenConversation[], c: OpenConversation): void {
  let i = open.length;
  while (i > 0 && open[i - 1]!.startedAt > c.startedAt) i--;
  open.splice(i, 0, c);
}

function onThreadMessage(state: ChatState, m: ChatMessage, now: number, cfg: RulesConfig, ids: Set<string>, out: Output[]): OpenConversation | undefined {
  const linker = cfg.threadLinker!;
  const s = m.sent_at;
  const gap = gapForType(cfg, state.chatType);
  const window = (state.window ??= linker.createWindow());
  const link = linker.link(window, m);
  const explicit = m.reply_to_message_id;
  const parent = explicit !== null && explicit !== undefined && ids.has(explicit) ? explicit : link.parentMessageId;

  let into: OpenConversation | undefined;
  let continues: string | null = null;
  let linked: string | null = null;
  if (parent !== null && ids.has(parent)) {
    linked = parent;
    const t = openThreadOf(state, parent);
    if (t !== undefined) {
      if (s > t.endedAt + gap + cfg.graceMs) {
        // Proven closed by this very message: sealed now (rule 1), continued by the new thread.
        continues = conversationId(state.chatId, t.startedAt, t.firstMessageId);
        seal(state, t, 'NEXT_MESSAGE', now, gap, out);
        state.open.splice(state.open.indexOf(t), 1);
      } else if (s >= t.startedAt - gap) {
        into = t;
      }
    } else {
      continues = sealedConversationOf(state, parent)?.conversationId ?? null;
    }
  }
  // Absent for a thread's first message, as a sealed event decodes it (null and absent are one).
  if (linked !== null) m.linked_message_id = linked;
  if (into !== undefined) {
    const movesStart = s < into.startedAt;
    addMessage(state, into, m, now, ids);
    if (movesStart) { state.open.splice(state.open.indexOf(into), 1); insertByStart(state.open, into); }
  } else {
    into = { startedAt: s, endedAt: s, count: 1, bytes: messageBytes(m), firstMessageId: m.message_id, continuesConversationId: continues, arrivedAt: now, messages: [m] };
    insertByStart(state.open, into);
    ids.add(m.message_id);
  }
  linker.remember(window, m, linked, link.entry);
  if (state.clock === null || s > state.clock) state.clock = s;

  // Rule 1 for every other thread this message proves closed, in started_at order.
  const open = state.open;
  let w = 0;
  for (let i = 0; i < open.length; i++) {
    const c = open[i]!;
    if (c !== into && s > c.endedAt + gap + cfg.graceMs) seal(state, c, 'NEXT_MESSAGE', now, gap, out);
    else open[w++] = c;
  }
  open.length = w;
  if (into.count >= cfg.maxMessages || into.bytes >= cfg.maxBytes) {
    seal(state, into, 'MAX_SIZE', now, gap, out);
    open.splice(open.indexOf(into), 1);
    return undefined;
  }
  return into;
}

/**
 * Applies one event to a chat. Mutates `state` and returns it (see the ownership note at the top
 * of this file) with the outputs, in a deterministic order.
 */
export function step(state: ChatState, event: ChatEvent, cfg: RulesConfig): StepResult {
  const outputs: Output[] = [];
  switch (event.type) {
    case 'message': {
      const placedIn = onMessage(state, event.message, event.now, event.storedOpenId === true, cfg, outputs);
      return placedIn === undefined ? { state, outputs } : { state, outputs, placedIn };
    }
    case 'tick':
      if (event.caughtUp && state.open.length > 0) sealTimedOut(state, event.now, cfg, outputs);
      break;
    case 'force': {
      if (state.open.length > 0) {
        const gap = gapForType(cfg, state.chatType);
        const open = state.open.splice(0);
        for (const c of open) seal(state, c, 'FORCED', event.now, gap, outputs);
      }
      break;
    }
  }
  return { state, outputs };
}

/**
 * The earliest wall-clock time at which a caught-up tick seals something: over the open
 * conversations, max(ended_at + gap + grace + 1, arrivedAt + settle); null when none is open.
 */
export function nextDeadline(state: ChatState, cfg: RulesConfig): number | null {
  const open = state.open;
  if (open.length === 0) return null;
  const gap = gapForType(cfg, state.chatType);
  const settle = settleFor(cfg, gap);
  let best = Infinity;
  for (let i = 0; i < open.length; i++) {
    const c = open[i]!;
    const due = Math.max(c.endedAt + gap + cfg.graceMs + 1, c.arrivedAt + settle);
    if (due < best) best = due;
  }
  return best;
}

export function openConversations(state: ChatState, cfg: RulesConfig): OpenConversationView[] {
  const gap = gapForType(cfg, state.chatType);
  const settle = settleFor(cfg, gap);
  return state.open.map((c) => ({
    startedAt: c.startedAt,
    endedAt: c.endedAt,
    messageCount: c.count,
    bytes: c.bytes,
    deadline: c.endedAt + gap + cfg.graceMs,
    arrivedAt: c.arrivedAt,
    settlesAt: c.arrivedAt + settle,
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
  if (s.v !== 1 && s.v !== 2 && s.v !== STATE_VERSION) throw new Error(`unsupported chat state version ${String(s.v)} (expected ${STATE_VERSION}, or 1 or 2 to upgrade)`);
  if (typeof s.chatId !== 'string' || !Array.isArray(s.open) || !Array.isArray(s.sealed)) {
    throw new Error('chat state is missing chatId, open or sealed');
  }
  if (s.v === 1) return upgradeV1(s as ChatState);
  if (s.v === 2) return upgradeV2(s as ChatState);
  return s as ChatState;
}

/** A state of version 2, which held every open message and no summary counts: the counts from the messages. */
export function upgradeV2(s: ChatState): ChatState {
  for (const c of s.open) {
    c.count = c.messages.length;
    c.firstMessageId = c.messages[0]!.message_id;
  }
  s.v = STATE_VERSION;
  return s;
}

/**
 * A state written by version 1 of the rules, in the revised rules' shape. Version 1 kept neither
 * arrival times nor the ids of sealed conversations: open conversations count as settled (as they
 * were under version 1), and sealed conversations sealed before the upgrade make late, not
 * duplicate, messages of a re-send. With a full history (64 remembered), version 1's single reach
 * becomes the forgotten reach, so nothing at or before it is placed that version 1 called late.
 */
export function upgradeV1(s: ChatState): ChatState {
  for (const c of s.open) (c as OpenConversation).arrivedAt ??= 0;
  for (const x of s.sealed) (x as SealedSummary).messageIds ??= [];
  s.forgottenReach = s.sealed.length >= SEALED_HISTORY ? s.sealedReach : null;
  return upgradeV2(s);
}
