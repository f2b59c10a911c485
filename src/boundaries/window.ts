// The per-chat state of the thread model: a bounded window of the chat's recent messages, each
// reduced to what the features read. Plain JSON data (strings, numbers, arrays), so a tracker can
// keep it in its store and changelog next to the chat's other state; JSON.stringify/parse round
// trips it exactly.
//
// Bound: at most `window.bound` entries (the model's `window`, 64 for the committed model; the
// last 64 messages placed), each with at most MAX_TOKENS (20) content words as 32-bit hashes and
// MAX_NAMES (4) addressed names, a sender name, a time, ids and a few small numbers: about 15 KB
// of JSON for a full window of busy IRC. A reply to a message older than the window cannot be linked by the model; an explicit
// reply_to_message_id naming such a message is not known either (the caller may know it).
//
// Ownership: rememberMessage mutates the window it is given (appends, drops the oldest past the
// bound). linkMessage (model.ts) only reads it.

import type { ChatMessage } from '../records/types';
import { addressedNames, contentHashes, nameCandidates, nameTokens, normName, textFlags } from './text';

export const WINDOW_VERSION = 1;
/** How many recent messages a chat keeps for linking, by default. */
export const DEFAULT_WINDOW = 64;

/** One remembered message. Field names are short: this is stored once per recent message. */
export interface WindowEntry {
  /** message_id */
  id: string;
  /** sender, normalized as a name (normName of sender_id) */
  s: string;
  /** sent_at, epoch ms */
  t: number;
  /** content words as sorted distinct 32-bit hashes (text.ts contentHashes) */
  w: number[];
  /** names addressed (text.ts addressedNames), normalized */
  a: string[];
  /** cue flags (text.ts Flag) */
  f: number;
  /** the message_id this message was linked to, or null (it started a thread) */
  p: string | null;
  /** the sender (`s`) of the message linked to, when it was in the window; else null */
  q: string | null;
  /** how many entries back the same sender's previous message is (0: none in the window when remembered) */
  ds: number;
  /** how many entries back the previous message of the same thread (same `r`) is (0: none) */
  dt: number;
  /** the thread's first message within the window's memory: the parent's `r`, or its own id */
  r: string;
}

export interface ThreadWindow {
  v: number;
  /** the most entries kept */
  bound: number;
  /** oldest first */
  entries: WindowEntry[];
}

export function createWindow(bound: number = DEFAULT_WINDOW): ThreadWindow {
  if (!Number.isInteger(bound) || bound < 1) throw new Error(`window bound must be a positive integer, got ${bound}`);
  return { v: WINDOW_VERSION, bound, entries: [] };
}

/** A message as the features read it: a window entry not yet linked (p, r unset until remembered). */
export function prepareMessage(window: ThreadWindow, message: ChatMessage): WindowEntry {
  const s = normName(message.sender_id);
  const text = message.text ?? '';
  // Which words of the text are names of the window's senders (one pass over the window).
  const tokens = nameTokens(text);
  const candidates = nameCandidates(text, tokens);
  const known = new Set<string>();
  if (candidates.size > 0) for (const e of window.entries) if (candidates.has(e.s)) known.add(e.s);
  known.delete(s);
  const isKnown = (n: string) => known.has(n);
  return {
    id: message.message_id,
    s,
    t: message.sent_at,
    w: contentHashes(text),
    a: addressedNames(text, isKnown, tokens).filter((n) => n !== s),
    f: textFlags(text),
    p: null,
    q: null,
    r: message.message_id,
    ds: 0,
    dt: 0,
  };
}

/**
 * Appends a message (linked to `parentMessageId`, or starting a thread when null) to the window,
 * dropping the oldest entries beyond the bound. Mutates and returns `window`. `prepared` is the
 * entry prepareMessage made for the same message (linkMessage returns it), to skip the text work.
 */
export function rememberMessage(
  window: ThreadWindow, message: ChatMessage, parentMessageId: string | null, prepared?: WindowEntry,
): ThreadWindow {
  const e = prepared ?? prepareMessage(window, message);
  const es = window.entries;
  const n = es.length;
  e.p = parentMessageId;
  e.q = null;
  e.r = e.id;
  if (parentMessageId !== null) {
    for (let i = n - 1; i >= 0; i--) {
      const c = es[i]!;
      if (c.id === parentMessageId) { e.r = c.r; e.q = c.s; break; }
    }
  }
  e.ds = 0;
  e.dt = 0;
  for (let i = n - 1; i >= 0 && (e.ds === 0 || e.dt === 0); i--) {
    const c = es[i]!;
    if (e.ds === 0 && c.s === e.s) e.ds = n - i;
    if (e.dt === 0 && c.r === e.r && e.r !== e.id) e.dt = n - i;
  }
  es.push(e);
  while (window.entries.length > window.bound) window.entries.shift();
  return window;
}
