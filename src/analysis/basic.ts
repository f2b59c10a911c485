// basic: counts and timing, computed exactly from the messages.
//  - participants and messages per participant (most active first),
//  - duration (last sent_at - first sent_at),
//  - response times: a message is a response when its sender differs from the previous
//    message's; its response time is the gap to that previous message. Summarised overall and
//    per responder (count, mean, median, min, max, in milliseconds).
import type { Analyzer } from './analyzer';
import { median, round } from './analyzer';
import type { Conversation, JsonObject } from './types';
import { words } from './text';

interface Stats { count: number; mean_ms: number | null; median_ms: number | null; min_ms: number | null; max_ms: number | null }

function stats(xs: number[]): Stats {
  if (xs.length === 0) return { count: 0, mean_ms: null, median_ms: null, min_ms: null, max_ms: null };
  return {
    count: xs.length,
    mean_ms: round(xs.reduce((a, b) => a + b, 0) / xs.length, 1),
    median_ms: median(xs),
    min_ms: Math.min(...xs),
    max_ms: Math.max(...xs),
  };
}

export function basicStats(c: Conversation): JsonObject {
  const msgs = c.messages;
  const perParticipant = new Map<string, { messages: number; words: number; chars: number }>();
  for (const m of msgs) {
    const p = perParticipant.get(m.sender_id) ?? { messages: 0, words: 0, chars: 0 };
    p.messages += 1;
    p.words += words(m.text).length;
    p.chars += m.text?.length ?? 0;
    perParticipant.set(m.sender_id, p);
  }
  const ranked = [...perParticipant.entries()].sort((a, b) => b[1].messages - a[1].messages || (a[0] < b[0] ? -1 : 1));

  const all: number[] = [];
  const byResponder = new Map<string, number[]>();
  for (let i = 1; i < msgs.length; i++) {
    const prev = msgs[i - 1]!;
    const cur = msgs[i]!;
    if (cur.sender_id === prev.sender_id) continue;
    const dt = cur.sent_at - prev.sent_at;
    all.push(dt);
    const list = byResponder.get(cur.sender_id) ?? [];
    list.push(dt);
    byResponder.set(cur.sender_id, list);
  }
  const first = msgs[0]?.sent_at ?? c.started_at;
  const last = msgs[msgs.length - 1]?.sent_at ?? c.ended_at;
  const totalWords = ranked.reduce((a, [, p]) => a + p.words, 0);
  const totalChars = ranked.reduce((a, [, p]) => a + p.chars, 0);

  return {
    message_count: msgs.length,
    text_message_count: msgs.filter((m) => m.text !== null && m.text.trim() !== '').length,
    from_me_count: msgs.filter((m) => m.is_from_me).length,
    participant_count: perParticipant.size,
    participants: ranked.map(([id]) => id),
    messages_per_participant: Object.fromEntries(ranked.map(([id, p]) => [id, p.messages])),
    words_per_participant: Object.fromEntries(ranked.map(([id, p]) => [id, p.words])),
    started_at: new Date(first).toISOString(),
    ended_at: new Date(last).toISOString(),
    duration_ms: last - first,
    word_count: totalWords,
    mean_message_chars: msgs.length > 0 ? round(totalChars / msgs.length, 1) : 0,
    response_times: {
      ...stats(all),
      by_responder: Object.fromEntries([...byResponder.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([id, xs]) => [id, { ...stats(xs) }])),
    },
  };
}

export const basicAnalyzer: Analyzer = {
  kind: 'basic',
  async analyze(c) { return basicStats(c); },
};
