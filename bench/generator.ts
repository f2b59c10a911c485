// Realistic chat traffic for the benchmarks, deterministic (seeded) and streamed, so that it scales
// to millions of messages without holding them: chats of very unequal activity (Pareto weights, a
// fifth nearly silent), bursty conversations of heavy-tailed size, pauses on both sides of the
// conversation gap (exactly the gap, one millisecond under and over it, and well past it), long
// lulls inside a conversation, same-millisecond messages, and deliveries that are not in sent_at
// order: a small network delay for all, minutes late for some (reordered within a conversation),
// hours late for a few (past the gap, after later conversations of their chat), and duplicate
// deliveries of the same message_id.
//
// Messages come out in delivery order across all chats, as a live feed would produce them: a
// heap holds, per chat, the time of its next message, plus the deliveries still in flight. Memory
// is O(chats + in-flight deliveries). The same options give the same messages in the same order.
import { readFileSync } from 'node:fs';
import type { ChatMessage } from '../src/records/types';
import { parseChatMessageJson } from '../src/records/validate';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

// ---------------------------------------------------------------------------------------------
// PRNG: sfc32 seeded through splitmix32.

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next(); this.b = next(); this.c = next(); this.d = next();
    for (let i = 0; i < 15; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  next(): number { return this.u32() / 4294967296; }
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(xs: readonly T[]): T { return xs[Math.floor(this.next() * xs.length)]!; }
  exp(mean: number): number { return -mean * Math.log(1 - this.next()); }
  pareto(xm: number, alpha: number): number { return xm / Math.pow(1 - this.next(), 1 / alpha); }
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  logNormal(median: number, sigma: number): number { return median * Math.exp(sigma * this.normal()); }
  hex(n: number): string {
    let s = '';
    while (s.length < n) s += this.u32().toString(16).padStart(8, '0');
    return s.slice(0, n);
  }
}

// ---------------------------------------------------------------------------------------------
// A binary min-heap on (at, seq).

interface HeapItem { at: number; seq: number }

class Heap<T extends HeapItem> {
  private readonly xs: T[] = [];
  get size(): number { return this.xs.length; }
  private less(i: number, j: number): boolean {
    const a = this.xs[i]!;
    const b = this.xs[j]!;
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
  push(x: T): void {
    const xs = this.xs;
    xs.push(x);
    let i = xs.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      [xs[i], xs[p]] = [xs[p]!, xs[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const xs = this.xs;
    if (xs.length === 0) return undefined;
    const top = xs[0]!;
    const last = xs.pop()!;
    if (xs.length > 0) {
      xs[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < xs.length && this.less(l, m)) m = l;
        if (r < xs.length && this.less(r, m)) m = r;
        if (m === i) break;
        [xs[i], xs[m]] = [xs[m]!, xs[i]!];
        i = m;
      }
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// Generator

export interface TrafficOptions {
  seed: number;
  /** Number of chats. Default: messages / 50. */
  chats?: number;
  /** Target number of distinct messages (duplicate deliveries come on top). */
  messages: number;
  /** The conversation gap the traffic is shaped around. */
  gapMs: number;
  /** Event time of the first message. Default: 30 days before `endMs`, on a whole minute. */
  startMs?: number;
  /** Event times stay below this. Default: one day before now, on a whole minute. */
  endMs?: number;
  /** Share of messages delivered twice. Default 0.01. */
  duplicateRate?: number;
  /** Share of messages delivered 1 to 30 minutes late. Default 0.02. */
  reorderRate?: number;
  /** Share of messages delivered 1.05 to 5 gaps late. Default 0.003. */
  lateRate?: number;
  /** Largest conversation planned (messages). Default 1500. */
  maxConversation?: number;
}

export interface TrafficStats {
  chats: number;
  /** Distinct messages. */
  messages: number;
  /** Records: messages plus duplicate deliveries. */
  deliveries: number;
  duplicateDeliveries: number;
  reordered: number;
  delayedPastGap: number;
  plannedConversations: number;
  largestPlannedConversation: number;
  pausesExactlyGap: number;
  pausesGapMinus1: number;
  pausesGapPlus1: number;
  firstSentAt: number;
  lastSentAt: number;
}

const WORDS = (
  'ok yes no maybe sure thanks lol haha see you soon tomorrow today tonight meeting call later ' +
  'what when where why how who the a an is are was were be been have has had do does did will ' +
  'would could should can may might must i you he she it we they me him her us them my your ' +
  'our their this that these those here there now then just only also very really quite still ' +
  'deploy build release ticket review merge branch test broken fixed logs server database kafka ' +
  'lunch coffee dinner weekend train flight hotel photo video link file doc invoice budget plan'
).split(' ');
const EXTRAS = ['👍', '😂', '🎉', 'ça va', 'über', '東京', 'привет', '"quoted"', 'back\\slash', 'line\nbreak'];
const PLATFORMS = ['wa', 'tg', 'sig', 'imsg', 'slack'];
const CHAT_TYPES: readonly (string | null)[] = ['direct', 'direct', 'direct', 'group', 'group', 'channel', null];

function text(rng: Rng): string | null {
  if (rng.chance(0.04)) return null; // an attachment without caption
  const words = Math.max(1, Math.min(80, Math.round(rng.logNormal(6, 0.9))));
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(rng.chance(0.03) ? rng.pick(EXTRAS) : rng.pick(WORDS));
  return out.join(' ');
}

interface ChatGen {
  index: number;
  id: string;
  type: string | null;
  account: string | null;
  participants: string[];
  sizes: number[];
  conv: number;
  left: number;
  burst: number;
  meanPause: number;
  sender: number;
  recent: string[];
}

type Entry =
  | { at: number; seq: number; kind: 'next'; chat: ChatGen }
  | { at: number; seq: number; kind: 'deliver'; message: ChatMessage };

/**
 * Streams the traffic in delivery order. `stats` is filled in as messages are generated (complete
 * once the iterator is exhausted).
 */
export function* generateTraffic(opts: TrafficOptions, stats: TrafficStats = emptyStats()): Generator<ChatMessage> {
  const rng = new Rng(opts.seed);
  const gap = opts.gapMs;
  const end = opts.endMs ?? Math.floor((Date.now() - DAY) / MINUTE) * MINUTE;
  const start = opts.startMs ?? end - 30 * DAY;
  const span = end - start;
  const chats = opts.chats ?? Math.max(10, Math.round(opts.messages / 50));
  const duplicateRate = opts.duplicateRate ?? 0.01;
  const reorderRate = opts.reorderRate ?? 0.02;
  const lateRate = opts.lateRate ?? 0.003;
  const maxConversation = opts.maxConversation ?? 1500;
  stats.chats = chats;

  const weights: number[] = [];
  for (let i = 0; i < chats; i++) weights.push(Math.min(rng.pareto(1, 1.1), 120) * (rng.chance(0.2) ? 0.03 : 1));
  const totalWeight = weights.reduce((s, w) => s + w, 0);

  const heap = new Heap<Entry>();
  let seq = 0;
  let idCounter = 0;
  const idPrefix = rng.hex(6);

  for (let ci = 0; ci < chats; ci++) {
    const platform = rng.pick(PLATFORMS);
    const type = rng.pick(CHAT_TYPES);
    const groupSize = type === 'direct' ? 2 : Math.min(60, 2 + Math.floor(rng.pareto(1, 1.3)));
    const budget = Math.max(1, Math.round((weights[ci]! / totalWeight) * opts.messages));
    // Busy chats talk in longer conversations, not only in more of them.
    const sizeScale = Math.max(1.5, budget / 250);
    const sizes: number[] = [];
    for (let left = budget; left > 0;) {
      const size = Math.max(1, Math.min(left, maxConversation, Math.floor(rng.pareto(sizeScale, 1.2))));
      sizes.push(size);
      left -= size;
    }
    const activeGuess = budget * 60_000;
    const meanPause = Math.max(gap, (span * 0.9 - activeGuess) / (sizes.length + 1));
    const chat: ChatGen = {
      index: ci,
      id: `${platform}:${rng.hex(10)}${ci.toString(36)}`,
      type,
      account: rng.chance(0.9) ? `acct-${rng.int(1, 5)}` : null,
      participants: ['me', ...Array.from({ length: groupSize - 1 }, (_, k) => `${platform}:user-${rng.hex(6)}-${k}`)],
      sizes,
      conv: 0,
      left: sizes[0]!,
      burst: rng.logNormal(15_000, 1),
      meanPause,
      sender: 0,
      recent: [],
    };
    stats.plannedConversations += sizes.length;
    for (const s of sizes) if (s > stats.largestPlannedConversation) stats.largestPlannedConversation = s;
    const first = start + Math.floor(rng.next() * Math.min(span * 0.2, meanPause));
    heap.push({ at: first, seq: seq++, kind: 'next', chat });
  }

  for (;;) {
    const e = heap.pop();
    if (e === undefined) break;
    if (e.kind === 'deliver') {
      stats.deliveries++;
      yield e.message;
      continue;
    }
    const chat = e.chat;
    const t = e.at;
    if (rng.chance(0.45)) chat.sender = rng.int(0, chat.participants.length - 1);
    const senderId = chat.participants[chat.sender]!;
    const id = `${idPrefix}${(idCounter++).toString(36).padStart(6, '0')}`;
    const reply = chat.recent.length > 0 && rng.chance(0.06)
      ? chat.recent[Math.max(0, chat.recent.length - 1 - Math.floor(rng.exp(5)))] ?? null
      : null;
    const message: ChatMessage = {
      message_id: id,
      chat_id: chat.id,
      sender_id: senderId,
      sent_at: t,
      text: text(rng),
      chat_type: rng.chance(0.02) ? null : chat.type,
      is_from_me: senderId === 'me',
      reply_to_message_id: reply,
      account_id: chat.account,
    };
    chat.recent.push(id);
    if (chat.recent.length > 20) chat.recent.shift();
    stats.messages++;
    if (t < stats.firstSentAt) stats.firstSentAt = t;
    if (t > stats.lastSentAt) stats.lastSentAt = t;

    // Its deliveries.
    let delay = Math.floor(rng.exp(1500));
    const r = rng.next();
    if (r < lateRate) { delay += Math.floor(gap * (1.05 + rng.next() * 4)); stats.delayedPastGap++; }
    else if (r < lateRate + reorderRate) { delay += Math.floor(MINUTE + rng.next() * 30 * MINUTE); stats.reordered++; }
    heap.push({ at: t + delay, seq: seq++, kind: 'deliver', message });
    if (rng.chance(duplicateRate)) {
      const again = rng.chance(0.85) ? Math.floor(rng.exp(2 * MINUTE)) : Math.floor(rng.exp(6 * HOUR));
      heap.push({ at: t + delay + again, seq: seq++, kind: 'deliver', message: { ...message } });
      stats.duplicateDeliveries++;
    }

    // The chat's next message.
    let next = t;
    chat.left--;
    if (chat.left > 0) {
      const q = rng.next();
      if (q < 0.004) { next += gap; stats.pausesExactlyGap++; }
      else if (q < 0.007) { next += gap - 1; stats.pausesGapMinus1++; }
      else if (q < 0.017) next += Math.floor(20 * MINUTE + rng.next() * (gap - 21 * MINUTE)); // a long lull
      else if (q < 0.037) next += 0; // same millisecond
      else next += Math.max(1, Math.floor(rng.exp(chat.burst)));
    } else {
      chat.conv++;
      if (chat.conv >= chat.sizes.length) continue; // the chat is done
      chat.left = chat.sizes[chat.conv]!;
      chat.burst = rng.logNormal(15_000, 1);
      const q = rng.next();
      if (q < 0.05) { next += gap; stats.pausesExactlyGap++; }
      else if (q < 0.08) { next += gap - 1; stats.pausesGapMinus1++; }
      else if (q < 0.13) { next += gap + 1; stats.pausesGapPlus1++; }
      else if (q < 0.18) next += gap + 1 + Math.floor(rng.exp(10 * MINUTE));
      else next += gap + 1 + Math.floor(rng.exp(chat.meanPause));
    }
    if (next >= end) continue;
    heap.push({ at: next, seq: seq++, kind: 'next', chat });
  }
}

export function emptyStats(): TrafficStats {
  return {
    chats: 0, messages: 0, deliveries: 0, duplicateDeliveries: 0, reordered: 0, delayedPastGap: 0,
    plannedConversations: 0, largestPlannedConversation: 0, pausesExactlyGap: 0, pausesGapMinus1: 0, pausesGapPlus1: 0,
    firstSentAt: Infinity, lastSentAt: -Infinity,
  };
}

/** The bundled IRC sample (data/irc), in file order. */
export function ircSample(file: string): ChatMessage[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => parseChatMessageJson(l));
}

/** The wire form of a chat message (JSON, fields in ChatMessage order): what the codec's JSON mode writes. */
export function encodeMessage(m: ChatMessage): Buffer {
  return Buffer.from(JSON.stringify({
    message_id: m.message_id, chat_id: m.chat_id, sender_id: m.sender_id, sent_at: m.sent_at, text: m.text,
    chat_type: m.chat_type, is_from_me: m.is_from_me, reply_to_message_id: m.reply_to_message_id, account_id: m.account_id,
  }), 'utf8');
}
