// A deliberately naive model of SPEC section 2, used only by the property test to check
// src/sessionization/rules.ts. Every quantity is recomputed from plain arrays by linear scans:
// a conversation is just the list of its messages (with their arrival number), its start and end
// are the min and max sent_at, its size is recomputed from JSON, and the message order of a sealed
// conversation comes from one stable sort. Nothing is incremental, nothing is clever.

import type { ChatMessage, ConversationSealed, SealReason } from '../../src/records/types';
import { conversationId, type Output, type RulesConfig } from '../../src/sessionization/rules';

export type RefEvent =
  | { type: 'message'; message: ChatMessage; now: number }
  | { type: 'tick'; now: number; caughtUp: boolean }
  | { type: 'force'; now: number };

interface Arrived { m: ChatMessage; seq: number }
interface Conv { items: Arrived[]; continues: string | null }
interface Sealed { id: string; start: number; end: number; reason: SealReason; gap: number }

const HISTORY = 64;

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

export class ReferenceChat {
  private chatType: string | null = null;
  private clock: number | null = null;
  private open: Conv[] = [];
  private sealedAll: Sealed[] = [];
  private seq = 0;

  constructor(private readonly chatId: string, private readonly cfg: RulesConfig) {}

  private gap(): number {
    const t = this.chatType;
    if (t !== null && Object.keys(this.cfg.gapByTypeMs).includes(t)) return this.cfg.gapByTypeMs[t]!;
    return this.cfg.gapMs;
  }

  private reach(): number | null {
    if (this.sealedAll.length === 0) return null;
    return Math.max(...this.sealedAll.map((x) => (x.reason === 'NEXT_MESSAGE' || x.reason === 'GAP_TIMEOUT' ? x.end + x.gap : x.end)));
  }

  private remembered(): Sealed[] { return this.sealedAll.slice(-HISTORY); }

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

  /** Nearest remembered sealed conversation within its gap of s; ties to the most recently sealed. */
  private wouldBe(s: number): string | null {
    let best: Sealed | null = null;
    let bestD = Infinity;
    for (const x of this.remembered()) {
      if (s < x.start - x.gap || s > x.end + x.gap) continue;
      const d = Math.max(0, x.start - s, s - x.end);
      if (d <= bestD) { best = x; bestD = d; }
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
    this.sealedAll.push({ id, start: conversation.started_at, end: conversation.ended_at, reason, gap });
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
      const due = this.open.filter((c) => event.now > end(c) + this.gap() + grace);
      for (const c of byStart(due)) out.push(this.seal(c, 'GAP_TIMEOUT', event.now));
      return out;
    }
    const m = event.message;
    const s = m.sent_at;
    const now = event.now;
    if (s > now + this.cfg.maxFutureSkewMs) {
      out.push({ kind: 'invalid', message: m, reason: 'future skew' });
      return out;
    }
    if (this.open.some((c) => c.items.some((a) => a.m.message_id === m.message_id))) {
      out.push({ kind: 'duplicate', message: m });
      return out;
    }
    const reach = this.reach();
    if (reach !== null && s <= reach) {
      out.push({ kind: 'late', late: { message: m, would_be_conversation_id: this.wouldBe(s), chat_sealed_reach: reach, detected_at: now } });
      return out;
    }
    if (this.chatType === null && m.chat_type !== null) this.chatType = m.chat_type;
    const gap = this.gap();
    const arrived: Arrived = { m, seq: this.seq++ };
    const touching = byStart(this.open.filter((c) => start(c) - gap <= s && s <= end(c) + gap));
    if (touching.length === 0) {
      this.open.push({ items: [arrived], continues: this.continuation(s) });
    } else {
      const inherited = touching.find((c) => c.continues !== null)?.continues ?? null;
      const earliest = Math.min(...touching.map(start));
      const continues = s < earliest ? (this.continuation(s) ?? inherited) : inherited;
      const merged: Conv = { items: [...touching.flatMap((c) => c.items), arrived], continues };
      this.open = this.open.filter((c) => !touching.includes(c));
      this.open.push(merged);
    }
    this.clock = this.clock === null ? s : Math.max(this.clock, s);
    const clock = this.clock;
    for (const c of byStart(this.open.filter((o) => clock > end(o) + gap + grace))) out.push(this.seal(c, 'NEXT_MESSAGE', now));
    const full = this.open.filter((c) => c.items.length >= this.cfg.maxMessages || bytes(c) >= this.cfg.maxBytes);
    for (const c of byStart(full)) out.push(this.seal(c, 'MAX_SIZE', now));
    return out;
  }

  /** Open conversations as [start, end, count] in start order, for comparisons. */
  openSpans(): Array<[number, number, number]> {
    return byStart(this.open).map((c) => [start(c), end(c), c.items.length]);
  }
}
