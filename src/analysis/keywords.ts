// keywords: TF-IDF over the conversation, each message a document. A term's score is
// Σ over messages of count(term, message) × idf(term), idf = ln((1 + N) / (1 + df)) + 1 (smoothed,
// N messages with words, df messages containing the term): frequent terms rank high, terms spread
// evenly over every message rank a little lower than terms concentrated in a few. Stop words of
// the supported languages and chat filler are dropped, as are numbers and words under 3 letters.
import type { Analyzer } from './analyzer';
import { round } from './analyzer';
import type { Conversation, JsonObject } from './types';
import { KEYWORD_STOP_WORDS, words } from './text';

export interface Keyword { term: string; score: number; count: number; messages: number }

export function candidateTerms(text: string | null): string[] {
  return words(text)
    .map((w) => w.replace(/['’]s$/u, ''))
    .filter((w) => [...w].length >= 3 && !/^\p{N}+$/u.test(w) && !KEYWORD_STOP_WORDS.has(w));
}

export function tfidfKeywords(texts: readonly (string | null)[], top = 10): Keyword[] {
  const docs = texts.map(candidateTerms).filter((d) => d.length > 0);
  const n = docs.length;
  const count = new Map<string, number>();
  const df = new Map<string, number>();
  for (const d of docs) {
    for (const t of d) count.set(t, (count.get(t) ?? 0) + 1);
    for (const t of new Set(d)) df.set(t, (df.get(t) ?? 0) + 1);
  }
  const out: Keyword[] = [];
  for (const [term, c] of count) {
    const idf = Math.log((1 + n) / (1 + df.get(term)!)) + 1;
    out.push({ term, score: round(c * idf), count: c, messages: df.get(term)! });
  }
  out.sort((a, b) => b.score - a.score || b.count - a.count || (a.term < b.term ? -1 : a.term > b.term ? 1 : 0));
  return out.slice(0, top);
}

export const keywordsAnalyzer: Analyzer = {
  kind: 'keywords',
  async analyze(c: Conversation): Promise<JsonObject> {
    const texts = c.messages.map((m) => m.text);
    const kws = tfidfKeywords(texts, 10);
    return {
      method: 'tf-idf (messages as documents, smoothed idf)',
      documents: texts.filter((t) => candidateTerms(t).length > 0).length,
      keywords: kws.map((k) => ({ ...k })),
    };
  },
};
