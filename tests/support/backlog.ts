// Deterministic, realistic chat traffic for tests that need volume: N chats of very unequal
// activity, bursty conversations of heavy-tailed size, pauses on both sides of the conversation
// gap (exactly the gap included), duplicate deliveries, out-of-order and very late deliveries.
// Everything comes from a seeded PRNG: the same options give the same messages, in the same order.
//
// Event times lie in the past (by default the backlog starts 30 days ago and ends a day or more
// ago), so a tracker can seal by wall clock only once it has caught up with its input.
//
// `expectedOutcome` runs the pure rules (`step`) per chat, in the order given, and finishes with a
// caught-up tick far past every deadline: the sealed conversations, late messages and duplicate
// count that a correct tracker must produce from those messages, produced keyed by chat_id (only
// the order of each chat's messages matters).
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import { emptyChatState, step, type ChatState, type RulesConfig } from '../../src/sessionization/rules';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

// The benchmarks' seeded PRNG (sfc32): the same traffic for the same seed, in tests and benches.
import { Rng } from '../../bench/generator';
export { Rng };

// ---------------------------------------------------------------------------------------------
// Generator

export interface BacklogOptions {
  seed: number;
  /** Number of chats. */
  chats: number;
  /** Target number of distinct messages (duplicate deliveries come on top; a chat that runs out of time stops early). */
  messages: number;
  /** The conversation gap the traffic is shaped around (pauses at, just under and just over it). */
  gapMs: number;
  /** Event time of the backlog's start. Default: midnight (UTC) 30 days ago. */
  startMs?: number;
  /** Event times stay below this. Default: 29 days after the start, a day or more before now. */
  endMs?: number;
  /** Share of messages delivered a second time. Default 0.01. */
  duplicateRate?: number;
  /** Share of messages delivered minutes after their neighbours (reordered within a conversation). Default 0.02. */
  reorderRate?: number;
  /** Share of messages delivered hours late, after later conversations of their chat. Default 0.003. */
  lateRate?: number;
  /** Largest conversation the generator plans (messages). Default 1500. */
  maxConversation?: number;
}

export interface BacklogStats {
  chats: number;
  /** Distinct messages. */
  messages: number;
  /** Records to produce: messages plus duplicate deliveries. */
  deliveries: number;
  duplicateDeliveries: number;
  reordered: number;
  delayedPastGap: number;
  /** Conversations as planned (the rules decide the real ones: exact-gap pauses join). */
  plannedConversations: number;
  largestPlannedConversation: number;
  pausesExactlyGap: number;
  pausesGapMinus1: number;
  pausesGapPlus1: number;
  firstSentAt: number;
  lastSentAt: number;
}

export interface Backlog {
  /** In production order: produce them in this order, keyed by chat_id. */
  messages: ChatMessage[];
  chatIds: string[];
  stats: BacklogStats;
}

const WORDS = (
  'ok yes no maybe sure thanks lol haha see you soon tomorrow today tonight meeting call later ' +
  'what when where why how who the a an is are was were be been have has had do does did will ' +
  'would could should can may might must shall i you he she it we they me him her us them my your ' +
  'our their this that these those here there now then just only also very really quite still ' +
  'deploy build release ticket review merge branch test broken fixed logs server database kafka ' +
  'lunch coffee dinner weekend train flight hotel photo video link file doc invoice budget plan'
).split(' ');
const EXTRAS = ['👍', '😂', '🎉', '❤️', 'ça va', 'über', 'naïve', '東京', 'привет', '"quoted"', 'back\\slash', 'tab\there', 'line\nbreak'];
const PLATFORMS = ['wa', 'tg', 'sig', 'imsg', 'slack'];
const CHAT_TYPES: readonly (string | null)[] = ['direct', 'direct', 'direct', 'group', 'group', 'channel', null];

function text(rng: Rng): string | null {
  if (rng.chance(0.04)) return null; // an attachment without caption
  const words = Math.max(1, Math.min(120, Math.round(rng.logNormal(6, 0.9))));
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(rng.chance(0.03) ? rng.pick(EXTRAS) : rng.pick(WORDS));
  return out.join(' ');
}

interface Delivery { at: number; seq: number; message: ChatMessage }

/**
 * Generates a backlog. Deterministic in `opts`: with the default start and end, the same backlog
 * shifted by whole days from one day to the next (identical with `startMs` given).
 */
export function generateBacklog(opts: BacklogOptions): Backlog {
  const rng = new Rng(opts.seed);
  const gap = opts.gapMs;
  const now = Date.now();
  // Whole days, so that the default backlog is the same from one run to the next, only shifted.
  const start = opts.startMs ?? Math.floor((now - 30 * DAY) / DAY) * DAY;
  const end = opts.endMs ?? start + 29 * DAY;
  const span = end - start;
  const duplicateRate = opts.duplicateRate ?? 0.01;
  const reorderRate = opts.reorderRate ?? 0.02;
  const lateRate = opts.lateRate ?? 0.003;
  const maxConversation = opts.maxConversation ?? 1500;

  // Chat activity is heavy-tailed: a few chats carry much of the traffic, many carry little.
  const weights: number[] = [];
  // A fifth of the chats are nearly silent (a handful of messages in a month).
  for (let i = 0; i < opts.chats; i++) weights.push(Math.min(rng.pareto(1, 1.1), 120) * (rng.chance(0.2) ? 0.03 : 1));
  const totalWeight = weights.reduce((s, w) => s + w, 0);

  const stats: BacklogStats = {
    chats: opts.chats, messages: 0, deliveries: 0, duplicateDeliveries: 0, reordered: 0, delayedPastGap: 0,
    plannedConversations: 0, largestPlannedConversation: 0, pausesExactlyGap: 0, pausesGapMinus1: 0, pausesGapPlus1: 0,
    firstSentAt: Infinity, lastSentAt: -Infinity,
  };
  const deliveries: Delivery[] = [];
  const chatIds: string[] = [];
  let seq = 0;
  let idCounter = 0;
  const idPrefix = rng.hex(6);

  for (let ci = 0; ci < opts.chats; ci++) {
    const platform = rng.pick(PLATFORMS);
    const chatId = `${platform}:${rng.hex(10)}${ci.toString(36)}`;
    chatIds.push(chatId);
    const chatType = rng.pick(CHAT_TYPES);
    const accountId = rng.chance(0.9) ? `acct-${rng.int(1, 5)}` : null;
    const groupSize = chatType === 'direct' ? 2 : Math.min(60, 2 + Math.floor(rng.pareto(1, 1.3)));
    const participants = ['me', ...Array.from({ length: groupSize - 1 }, (_, k) => `${platform}:user-${rng.hex(6)}-${k}`)];
    let budget = Math.max(1, Math.round((weights[ci]! / totalWeight) * opts.messages));

    // Plan conversation sizes first, to spread them over the span.
    // Busy chats talk in longer conversations, not only in more of them.
    const sizeScale = Math.max(1.5, budget / 250);
    const sizes: number[] = [];
    for (let left = budget; left > 0;) {
      const size = Math.min(left, maxConversation, Math.floor(rng.pareto(sizeScale, 1.2)));
      sizes.push(size);
      left -= size;
    }
    // Typical pause between conversations, so that the chat fills most of the span.
    const activeGuess = budget * 100_000;
    const meanPause = Math.max(gap, (span * 0.9 - activeGuess) / (sizes.length + 1));

    let t = start + Math.floor(rng.next() * Math.min(span * 0.2, meanPause));
    const chatMessages: ChatMessage[] = [];
    outer:
    for (let k = 0; k < sizes.length; k++) {
      if (k > 0) {
        // The pause before this conversation: mostly well past the gap, sometimes right at it.
        const r = rng.next();
        let pause: number;
        if (r < 0.05) { pause = gap; stats.pausesExactlyGap++; }
        else if (r < 0.08) { pause = gap - 1; stats.pausesGapMinus1++; }
        else if (r < 0.13) { pause = gap + 1; stats.pausesGapPlus1++; }
        else if (r < 0.18) pause = gap + 1 + Math.floor(rng.exp(10 * MINUTE));
        else pause = gap + 1 + Math.floor(rng.exp(meanPause));
        t += pause;
      }
      stats.plannedConversations++;
      stats.largestPlannedConversation = Math.max(stats.largestPlannedConversation, sizes[k]!);
      const burstiness = rng.logNormal(15_000, 1); // this conversation's typical reply time
      let sender = rng.int(0, participants.length - 1);
      for (let j = 0; j < sizes[k]!; j++) {
        if (j > 0) {
          const r = rng.next();
          let step: number;
          if (r < 0.004) { step = gap; stats.pausesExactlyGap++; }
          else if (r < 0.007) { step = gap - 1; stats.pausesGapMinus1++; }
          else if (r < 0.017) step = Math.floor(20 * MINUTE + rng.next() * (gap - 21 * MINUTE)); // a long lull, still one conversation
          else if (r < 0.037) step = 0; // same millisecond
          else step = Math.max(1, Math.floor(rng.exp(burstiness)));
          t += step;
        }
        if (t >= end) break outer;
        // Mostly the same sender in bursts, then someone else answers.
        if (rng.chance(0.45)) sender = rng.int(0, participants.length - 1);
        const senderId = participants[sender]!;
        const id = `${idPrefix}${(idCounter++).toString(36).padStart(6, '0')}`;
        const reply = chatMessages.length > 0 && rng.chance(0.06)
          ? chatMessages[Math.max(0, chatMessages.length - 1 - Math.floor(rng.exp(5)))]!.message_id
          : null;
        const message: ChatMessage = {
          message_id: id,
          chat_id: chatId,
          sender_id: senderId,
          sent_at: t,
          text: text(rng),
          chat_type: rng.chance(0.02) ? null : chatType,
          is_from_me: senderId === 'me',
          reply_to_message_id: reply,
          account_id: accountId,
        };
        chatMessages.push(message);
        stats.firstSentAt = Math.min(stats.firstSentAt, t);
        stats.lastSentAt = Math.max(stats.lastSentAt, t);
      }
    }
    budget = chatMessages.length;
    stats.messages += budget;

    // Deliveries: a small network delay for most; some minutes late (reordered), a few hours
    // late (past the gap, usually after the next conversation started); some delivered twice.
    for (const m of chatMessages) {
      let delay = Math.floor(rng.exp(1500));
      const r = rng.next();
      if (r < lateRate) { delay += Math.floor(gap * (1.05 + rng.next() * 4)); stats.delayedPastGap++; }
      else if (r < lateRate + reorderRate) { delay += Math.floor(MINUTE + rng.next() * 30 * MINUTE); stats.reordered++; }
      deliveries.push({ at: m.sent_at + delay, seq: seq++, message: m });
      if (rng.chance(duplicateRate)) {
        const again = rng.chance(0.85) ? Math.floor(rng.exp(2 * MINUTE)) : Math.floor(rng.exp(6 * HOUR));
        deliveries.push({ at: m.sent_at + delay + again, seq: seq++, message: { ...m } });
        stats.duplicateDeliveries++;
      }
    }
  }

  // Production order: by delivery time across all chats, as a live feed would have it.
  deliveries.sort((x, y) => x.at - y.at || x.seq - y.seq);
  stats.deliveries = deliveries.length;
  return { messages: deliveries.map((d) => d.message), chatIds, stats };
}

// ---------------------------------------------------------------------------------------------
// Expected outcome

export interface ExpectedOutcome {
  /** Sealed conversations, per chat in seal order (sealed_at is the `now` of the sealing step). */
  conversations: ConversationSealed[];
  /** Late messages (detected_at is the `now` of the message's step). */
  late: LateMessage[];
  duplicates: number;
  invalid: number;
  /** Seal reasons and their counts. */
  reasons: Record<string, number>;
  /** The `now` of the final tick. */
  finalNow: number;
}

/**
 * Runs the rules over `messages` (in partition order: per chat, production order), one state per
 * chat, then a caught-up tick at `finalNow` (default: a day past the latest deadline, and not
 * before the wall clock) that seals every conversation still open. Messages are stepped with the
 * same `now`, so none is refused as too far in the future unless it would be by the wall clock too.
 */
export function expectedOutcome(messages: readonly ChatMessage[], rules: RulesConfig, finalNow?: number): ExpectedOutcome {
  let maxSent = -Infinity;
  for (const m of messages) if (m.sent_at > maxSent) maxSent = m.sent_at;
  const maxGap = Math.max(rules.gapMs, ...Object.values(rules.gapByTypeMs));
  const now = finalNow ?? Math.max(Date.now(), (Number.isFinite(maxSent) ? maxSent : 0) + maxGap + rules.graceMs + DAY);

  const states = new Map<string, ChatState>();
  const out: ExpectedOutcome = { conversations: [], late: [], duplicates: 0, invalid: 0, reasons: {}, finalNow: now };
  const collect = (outputs: ReturnType<typeof step>['outputs']) => {
    for (const o of outputs) {
      switch (o.kind) {
        case 'sealed':
          out.conversations.push(o.conversation);
          out.reasons[o.conversation.seal_reason] = (out.reasons[o.conversation.seal_reason] ?? 0) + 1;
          break;
        case 'late': out.late.push(o.late); break;
        case 'duplicate': out.duplicates++; break;
        case 'invalid': out.invalid++; break;
      }
    }
  };
  for (const m of messages) {
    let state = states.get(m.chat_id);
    if (!state) states.set(m.chat_id, (state = emptyChatState(m.chat_id)));
    // `step` mutates the state in place (and so the message objects it keeps): hand it a copy.
    const res = step(state, { type: 'message', message: { ...m }, now }, rules);
    states.set(m.chat_id, res.state);
    collect(res.outputs);
  }
  // The final tick comes once every conversation has settled (no message joined it for the
  // settle time): the wall-clock seals a caught-up tracker makes at the end.
  const tickAt = now + Math.min(rules.settleMs, maxGap + rules.graceMs);
  for (const [chat, state] of states) {
    const res = step(state, { type: 'tick', now: tickAt, caughtUp: true }, rules);
    states.set(chat, res.state);
    collect(res.outputs);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Comparison helpers: canonical forms without the wall-clock fields (sealed_at, detected_at)

function canonicalMessage(m: ChatMessage) {
  return {
    message_id: m.message_id, chat_id: m.chat_id, sender_id: m.sender_id, sent_at: m.sent_at, text: m.text ?? null,
    chat_type: m.chat_type ?? null, is_from_me: m.is_from_me, reply_to_message_id: m.reply_to_message_id ?? null,
    account_id: m.account_id ?? null,
  };
}

/** A conversation as a string, fields in a fixed order, without sealed_at. */
export function conversationKey(c: ConversationSealed): string {
  return JSON.stringify({
    conversation_id: c.conversation_id, chat_id: c.chat_id, chat_type: c.chat_type ?? null, account_id: c.account_id ?? null,
    started_at: c.started_at, ended_at: c.ended_at, message_count: c.message_count, participant_ids: c.participant_ids,
    first_message_id: c.first_message_id, last_message_id: c.last_message_id, seal_reason: c.seal_reason, gap_ms: c.gap_ms,
    continues_conversation_id: c.continues_conversation_id ?? null, messages: c.messages.map(canonicalMessage),
  });
}

/** A late message as a string, fields in a fixed order, without detected_at. */
export function lateKey(l: LateMessage): string {
  return JSON.stringify({
    message: canonicalMessage(l.message), would_be_conversation_id: l.would_be_conversation_id ?? null,
    chat_sealed_reach: l.chat_sealed_reach,
  });
}
