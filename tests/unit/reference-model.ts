// A deliberately naive model of SPEC section 2 (revised: sessionization v2), used only by the
// property test to check src/sessionization/rules.ts. It is written from the SPEC text, not from
// the implementation: every quantity is recomputed from plain arrays by linear scans. A
// conversation is the list of its messages (with their arrival number) and the processing time
// its last message arrived; its start and end are the min and max sent_at, its size is recomputed
// from JSON, and the message order of a sealed conversation comes from one stable sort. Every
// sealed conversation is kept forever in `sealedAll`; "remembered" is just its last 64 entries and
// "forgotten" the rest. Nothing is incremental, nothing is clever.
//
// The SPEC clauses, as read here (s = the message's sent_at, gap = the chat's gap, per-conversation
// gap for sealed ones):
// - invalid: sent_at not a finite number, a foreign chat_id, or s > now + MAX_FUTURE_SKEW.
// - duplicate: the message_id is in an open conversation or in one of the last 64 sealed ones.
// - late: s lies in the reach of a remembered sealed conversation S — [S.start − S.gap, S.end +
//   S.gap] (NEXT_MESSAGE, GAP_TIMEOUT) or [S.start − S.gap, S.end] (FORCED, MAX_SIZE) — or s is
//   at or before the largest reach end of the forgotten ones. It names the remembered S whose reach
//   holds s, nearest first (distance 0 inside it), ties to the most recently sealed; none when only
//   the forgotten reach makes it late.
// - place: the message joins every open conversation it is within the gap of (start − gap <= s <=
//   end + gap), merging them, or opens a new one. The conversation's arrival time becomes `now`.
// - rule 1: every other open conversation C with s > C.end + gap + grace is sealed (NEXT_MESSAGE).
// - size cap: the message's conversation is sealed (MAX_SIZE) when it holds maxMessages messages or
//   maxBytes bytes.
// - rule 2 (tick, caught up): C is sealed (GAP_TIMEOUT) when now > C.end + gap + grace and
//   now − C.arrivedAt >= min(settle, gap + grace).
// - force: every open conversation is sealed (FORCED).
// - continuation: a conversation whose earliest message is s continues the remembered FORCED or
//   MAX_SIZE conversation X with X.end < s <= X.end + X.gap (the latest-ending one).
// Seals of one event come in started_at order.

import type { ChatMessage, ConversationSealed, SealReason } from '../../src/records/types';
import { conversationId, type Output, type RulesConfig } from '../../src/sessionization/rules';

export type RefEvent =
  | { type: 'message'; message: ChatMessage; now: number }
  | { type: 'tick'; now: number; caughtUp: boolean }
  | { type: 'force'; now: number };

interface Arrived { m: ChatMessage; seq: number }
interface Conv { items: Arrived[]; continues: string | null; arrivedAt: number }
interface Sealed { id: string; start: number; end: number; reason: SealReason; gap: number; messageIds: string[] }

export const REFERENCE_HISTORY = 64;

/** An open conversation as the model sees it, for comparison with openConversations(). */
export interface RefOpenView {
  startedAt: number;
  endedAt: number;
  messageCount: number;
  arrivedAt: number;
  deadline: number;
  settlesAt: number;
  continuesConversationId: string | null;
}

function jsonBytes(m: ChatMessage): number {
  return Buffer.byteLength(JSON.stringify({
    message_id: m.message_id, chat_id: m.chat_id, sender_id: m.sender_id, sent_at: m.sent_at, text: m.text,
    chat_type: m.chat_type, is_from_me: m.is_from_me, reply_to_message_id: m.reply_to_message_id, account_id: m.account_id,
  }), 'utf8');
}

function start(c: Conv): number { return Math.min(...c.items.map((a) => a.m.sent_at)); }
function end(c: Conv): number { return Math.max(...c.items.map((a) => a.m.sent_at)); }
function bytes(c: Conv): number { return c.items.reduce((sum, a) => sum + jsonBytes(a.m), 0); }
function byStart(list: Conv[]): Conv[] { return [...list].sort((a, b) => start(a) - start(b)); }
function reachStart(x: Sealed): number { return x.start - x.gap; }
function reachEnd(x: Sealed): number { return x.reason === 'NEXT_MESSAGE' || x.reason === 'GAP_TIMEOUT' ? x.end + x.gap : x.end; }

export class ReferenceChat {
  private chatType: string | null = null;
  private open: Conv[] = [];
  /** Every conversation this chat ever sealed, in seal order. */
  private sealedAll: Sealed[] = [];
  private seq = 0;

  constructor(private readonly chatId: string, private readonly cfg: RulesConfig) {}

  private gap(): number {
    const t = this.chatType;
    if (t !== null && Object.keys(this.cfg.gapByTypeMs).includes(t)) return this.cfg.gapByTypeMs[t]!;
    return this.cfg.gapMs;
  }

  private settle(): number { return Math.min(this.cfg.settleMs, this.gap() + this.cfg.graceMs); }

  private remembered(): Sealed[] {
    return this.sealedAll.length <= REFERENCE_HISTORY ? this.sealedAll : this.sealedAll.slice(this.sealedAll.length - REFERENCE_HISTORY);
  }

  private forgotten(): Sealed[] {
    return this.sealedAll.length <= REFERENCE_HISTORY ? [] : this.sealedAll.slice(0, this.sealedAll.length - REFERENCE_HISTORY);
  }

  /** Largest reach end over every sealed conversation, or null before the first seal. */
  sealedReach(): number | null {
    let r: number | null = null;
    for (const x of this.sealedAll) if (r === null || reachEnd(x) > r) r = reachEnd(x);
    return r;
  }

  /** Largest reach end over the sealed conversations no longer remembered, or null. */
  forgottenReach(): number | null {
    let r: number | null = null;
    for (const x of this.forgotten()) if (r === null || reachEnd(x) > r) r = reachEnd(x);
    return r;
  }

  /** Ids of the remembered sealed conversations, in seal order. */
  rememberedIds(): string[] { return this.remembered().map((x) => x.id); }

  /** Latest-ending remembered FORCED / MAX_SIZE conversation X with X.end < s <= X.end + X.gap. */
  private continuation(s: number): string | null {
    let best: Sealed | null = null;
    for (const x of this.remembered()) {
      if (x.reason !== 'FORCED' && x.reason !== 'MAX_SIZE') continue;
      if (!(x.end < s && s <= x.end + x.gap)) continue;
      if (best === null || x.end >= best.end) best = x;
    }
    return best?.id ?? null;
  }

  private seal(c: Conv, reason: SealReason, now: number): Output {
    const gap = this.gap();
    const sorted = [...c.items].sort((a, b) => a.m.sent_at - b.m.sent_at || a.seq - b.seq).map((a) => a.m);
    const participants: string[] = [];
    for (const m of sorted) if (!participants.includes(m.sender_id)) participants.push(m.sender_id);
    const withAccount = sorted.find((m) => m.account_id !== null);
    const id = conversationId(this.chatId, sorted[0]!.sent_at, sorted[0]!.message_id);
    const conversation: ConversationSealed = {
      conversation_id: id,
      chat_id: this.chatId,
      chat_type: this.chatType,
      account_id: withAccount ? withAccount.account_id : null,
      started_at: sorted[0]!.sent_at,
      ended_at: sorted[sorted.length - 1]!.sent_at,
      message_count: sorted.length,
      participant_ids: participants,
      first_message_id: sorted[0]!.message_id,
      last_message_id: sorted[sorted.length - 1]!.message_id,
      sealed_at: now,
      seal_reason: reason,
      gap_ms: gap,
      continues_conversation_id: c.continues,
      messages: sorted,
    };
    this.sealedAll.push({
      id, start: conversation.started_at, end: conversation.ended_at, reason, gap, messageIds: sorted.map((m) => m.message_id),
    });
    this.open = this.open.filter((o) => o !== c);
    return { kind: 'sealed', conversation };
  }

  step(event: RefEvent): Output[] {
    const out: Output[] = [];
    const grace = this.cfg.graceMs;
    if (event.type === 'force') {
      for (const c of byStart(this.open)) out.push(this.seal(c, 'FORCED', event.now));
      return out;
    }
    if (event.type === 'tick') {
      if (!event.caughtUp) return out;
      const now = event.now;
      const due = this.open.filter((c) => now > end(c) + this.gap() + grace && now - c.arrivedAt >= this.settle());
      for (const c of byStart(due)) out.push(this.seal(c, 'GAP_TIMEOUT', now));
      return out;
    }

    const m = event.message;
    const s = m.sent_at;
    const now = event.now;
    if (typeof s !== 'number' || !Number.isFinite(s) || m.chat_id !== this.chatId || s > now + this.cfg.maxFutureSkewMs) {
      out.push({ kind: 'invalid', message: m, reason: 'invalid' });
      return out;
    }

    // Duplicate: seen in an open conversation or in a remembered sealed one.
    const seenOpen = this.open.some((c) => c.items.some((a) => a.m.message_id === m.message_id));
    const seenSealed = this.remembered().some((x) => x.messageIds.includes(m.message_id));
    if (seenOpen || seenSealed) {
      out.push({ kind: 'duplicate', message: m });
      return out;
    }

    // Late: inside a remembered reach, or at/before the forgotten reach end.
    const holding = this.remembered().filter((x) => reachStart(x) <= s && s <= reachEnd(x));
    const forgottenEnd = this.forgottenReach();
    if (holding.length > 0 || (forgottenEnd !== null && s <= forgottenEnd)) {
      let best: Sealed | null = null;
      let bestD = Infinity;
      for (const x of holding) { // seal order: a later one wins a tie
        const d = Math.max(0, x.start - s, s - x.end);
        if (d <= bestD) { best = x; bestD = d; }
      }
      out.push({
        kind: 'late',
        late: { message: m, would_be_conversation_id: best?.id ?? null, chat_sealed_reach: this.sealedReach()!, detected_at: now },
      });
      return out;
    }

    // Place.
    if (this.chatType === null && m.chat_type !== null) this.chatType = m.chat_type;
    const gap = this.gap();
    const arrived: Arrived = { m, seq: this.seq++ };
    const touching = this.open.filter((c) => start(c) - gap <= s && s <= end(c) + gap);
    let joined: Conv;
    if (touching.length === 0) {
      joined = { items: [arrived], continues: this.continuation(s), arrivedAt: now };
      this.open.push(joined);
    } else {
      const inherited = byStart(touching).find((c) => c.continues !== null)?.continues ?? null;
      const earliest = Math.min(...touching.map(start));
      const continues = s < earliest ? (this.continuation(s) ?? inherited) : inherited;
      joined = { items: [...touching.flatMap((c) => c.items), arrived], continues, arrivedAt: now };
      this.open = this.open.filter((c) => !touching.includes(c));
      this.open.push(joined);
    }

    // Rule 1: this message proves the gap after every other open conversation it lies beyond.
    const proven = this.open.filter((c) => c !== joined && s > end(c) + gap + grace);
    for (const c of byStart(proven)) out.push(this.seal(c, 'NEXT_MESSAGE', now));

    // Size cap.
    if (joined.items.length >= this.cfg.maxMessages || bytes(joined) >= this.cfg.maxBytes) out.push(this.seal(joined, 'MAX_SIZE', now));
    return out;
  }

  /** Open conversations in start order. */
  openViews(): RefOpenView[] {
    const gap = this.gap();
    const grace = this.cfg.graceMs;
    return byStart(this.open).map((c) => ({
      startedAt: start(c),
      endedAt: end(c),
      messageCount: c.items.length,
      arrivedAt: c.arrivedAt,
      deadline: end(c) + gap + grace,
      settlesAt: c.arrivedAt + this.settle(),
      continuesConversationId: c.continues,
    }));
  }

  /** The earliest `now` at which a caught-up tick seals something (integer clock), or null. */
  nextDeadline(): number | null {
    // Per open conversation: the smallest integer `now` passing both conditions of rule 2.
    let best: number | null = null;
    const gap = this.gap();
    const grace = this.cfg.graceMs;
    for (const c of this.open) {
      const afterGap = end(c) + gap + grace + 1; // now > end + gap + grace
      const afterSettle = c.arrivedAt + this.settle(); // now - arrivedAt >= settle
      const t = afterGap > afterSettle ? afterGap : afterSettle;
      if (best === null || t < best) best = t;
    }
    return best;
  }

  /** Open conversations as [start, end, count] in start order, for comparisons. */
  openSpans(): Array<[number, number, number]> {
    return byStart(this.open).map((c) => [start(c), end(c), c.items.length]);
  }
}
