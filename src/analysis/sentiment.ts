// sentiment: lexicon-based (AFINN-165, through the `sentiment` package). Per message: the sum of
// the word scores (negation-aware); overall and per participant: total score, mean score per
// message, and a label. The lexicon is English: the result says how many words it recognised, so
// a conversation in another language shows up as low coverage rather than as "neutral".
import Sentiment from 'sentiment';
import type { Analyzer } from './analyzer';
import { round } from './analyzer';
import type { Conversation, JsonObject } from './types';

const engine = new Sentiment();

export type SentimentLabel = 'positive' | 'negative' | 'neutral';

/** Label for a mean per-message score: beyond ±0.5 is positive/negative. */
export function label(meanScore: number): SentimentLabel {
  return meanScore > 0.5 ? 'positive' : meanScore < -0.5 ? 'negative' : 'neutral';
}

export function sentimentOf(c: Conversation): JsonObject {
  let total = 0;
  let tokens = 0;
  let scoredWords = 0;
  let positiveMessages = 0;
  let negativeMessages = 0;
  let textMessages = 0;
  const perSender = new Map<string, { score: number; messages: number }>();
  let most: { id: string; score: number } | null = null;
  let least: { id: string; score: number } | null = null;
  for (const m of c.messages) {
    if (!m.text || m.text.trim() === '') continue;
    textMessages += 1;
    const r = engine.analyze(m.text);
    total += r.score;
    tokens += r.tokens.filter((t) => t !== '').length;
    scoredWords += r.words.length;
    if (r.score > 0) positiveMessages += 1;
    if (r.score < 0) negativeMessages += 1;
    const s = perSender.get(m.sender_id) ?? { score: 0, messages: 0 };
    s.score += r.score;
    s.messages += 1;
    perSender.set(m.sender_id, s);
    if (most === null || r.score > most.score) most = { id: m.message_id, score: r.score };
    if (least === null || r.score < least.score) least = { id: m.message_id, score: r.score };
  }
  const mean = textMessages > 0 ? total / textMessages : 0;
  return {
    lexicon: 'AFINN-165 (en)',
    label: label(mean),
    score: total,
    mean_score_per_message: round(mean),
    comparative: tokens > 0 ? round(total / tokens) : 0,
    text_messages: textMessages,
    positive_messages: positiveMessages,
    negative_messages: negativeMessages,
    neutral_messages: textMessages - positiveMessages - negativeMessages,
    lexicon_coverage: tokens > 0 ? round(scoredWords / tokens) : 0,
    most_positive_message_id: most !== null && most.score > 0 ? most.id : null,
    most_negative_message_id: least !== null && least.score < 0 ? least.id : null,
    per_participant: Object.fromEntries([...perSender.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([id, s]) => [id, {
      score: s.score,
      mean_score_per_message: round(s.score / s.messages),
      label: label(s.score / s.messages),
      messages: s.messages,
    }])),
  };
}

export const sentimentAnalyzer: Analyzer = {
  kind: 'sentiment',
  async analyze(c) { return sentimentOf(c); },
};
