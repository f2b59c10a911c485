// language: a small, honest detector. Each supported language has a profile of function words
// (text.ts); a word found in k profiles adds 1/k to each of them, and a few letters that only
// one of these languages uses (ß, ñ, ç, ã, ...) add a little. The best-scoring language wins.
// confidence = its share of all scores × how much evidence there was (1 - e^(-matches/4)), so a
// three-word message never gets a confident answer. Below 2 function words: "und" (undetermined).
// Only en, de, es, fr, it, pt and nl are known; anything else comes out "und" or low-confidence.
import type { Analyzer } from './analyzer';
import { round } from './analyzer';
import type { Conversation, JsonObject } from './types';
import { LANGUAGE_NAMES, STOP_WORDS, words } from './text';

const LANGS = Object.keys(STOP_WORDS);
const PROFILE = new Map<string, string[]>();
for (const lang of LANGS) {
  for (const w of STOP_WORDS[lang]!) {
    const list = PROFILE.get(w) ?? [];
    if (!list.includes(lang)) list.push(lang);
    PROFILE.set(w, list);
  }
}

const LETTER_HINTS: [RegExp, string][] = [
  [/[ßäöü]/gu, 'de'], [/[ñ¿¡]/gu, 'es'], [/œ|\b(?:c|d|j|l|qu)['’]\p{L}/gu, 'fr'], [/[ãõ]/gu, 'pt'], [/ij/gu, 'nl'],
];

export interface LanguageGuess {
  language: string;
  name: string;
  confidence: number;
  matched_words: number;
  scores: Record<string, number>;
}

export function detectLanguage(text: string): LanguageGuess {
  const scores: Record<string, number> = Object.fromEntries(LANGS.map((l) => [l, 0]));
  let matched = 0;
  for (const w of words(text)) {
    const langs = PROFILE.get(w);
    if (!langs) continue;
    matched += 1;
    for (const l of langs) scores[l]! += 1 / langs.length;
  }
  const lower = text.toLowerCase();
  for (const [re, lang] of LETTER_HINTS) {
    const hits = lower.match(re)?.length ?? 0;
    scores[lang]! += Math.min(hits, 5) * 0.25;
  }
  const ranked = LANGS.map((l) => [l, scores[l]!] as const).sort((a, b) => b[1] - a[1]);
  const total = ranked.reduce((a, [, s]) => a + s, 0);
  const [bestLang, best] = ranked[0]!;
  if (matched < 2 || best <= 0) {
    return { language: 'und', name: 'undetermined', confidence: 0, matched_words: matched, scores: roundAll(scores) };
  }
  const share = best / total;
  const evidence = 1 - Math.exp(-matched / 4);
  return { language: bestLang, name: LANGUAGE_NAMES[bestLang] ?? bestLang, confidence: round(share * evidence, 3), matched_words: matched, scores: roundAll(scores) };
}

function roundAll(s: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, round(v, 3)]));
}

export const languageAnalyzer: Analyzer = {
  kind: 'language',
  async analyze(c: Conversation): Promise<JsonObject> {
    const all = detectLanguage(c.messages.map((m) => m.text ?? '').join('\n'));
    // Per message as well, to see mixed-language chats: how many messages each language won.
    const perMessage: Record<string, number> = {};
    for (const m of c.messages) {
      if (!m.text) continue;
      const g = detectLanguage(m.text);
      if (g.language !== 'und') perMessage[g.language] = (perMessage[g.language] ?? 0) + 1;
    }
    return {
      method: 'function-word profiles (en, de, es, fr, it, pt, nl)',
      language: all.language,
      name: all.name,
      confidence: all.confidence,
      matched_words: all.matched_words,
      scores: all.scores,
      messages_by_language: perMessage,
    };
  },
};
