// Text features of the thread model: content words, names addressed, and a few cue flags.
// Pure functions; the window (window.ts) stores their results so each message is read once.

/** Common English function words and chat fillers, left out of word overlap. */
export const STOP_WORDS: ReadonlySet<string> = new Set((
  'a about above after again against all also am an and any are aren arent as at be because been before being ' +
  'below between both but by can cant cannot could couldnt did didnt do does doesnt doing dont down during each ' +
  'few for from further get got had hadnt has hasnt have havent having he hed hes her here heres hers herself ' +
  'him himself his how hows i id ill im ive if in into is isnt it its itself just lets me more most mustnt my ' +
  'myself no nor not now of off on once only or other ought our ours ourselves out over own same shant she shed ' +
  'shell shes should shouldnt so some such than that thats the their theirs them themselves then there theres ' +
  'these they theyd theyll theyre theyve this those through to too under until up very was wasnt we wed well ' +
  'were weve werent what whats when whens where wheres which while who whos whom why whys will with wont would ' +
  'wouldnt you youd youll youre youve your yours yourself yourselves ' +
  'ok okay yes yeah yep yup no nope hi hello hey thanks thank thx ty lol hmm hm ah oh uh um k kk sure right ' +
  'please pls plz anyone anybody someone somebody something anything one know think want need like use using try ' +
  'tried trying way thing things still even much many really make made go going see look work works working ' +
  'u ur r y im dont cant wont didnt doesnt isnt'
).split(/\s+/).filter((w) => w.length > 0));

/** A name as compared for addressing: lower case, letters and digits only ("|trey|" -> "trey"). */
export function normName(name: string): string {
  const lower = name.toLowerCase();
  for (let i = 0; i < lower.length; i++) {
    const c = lower.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57))) return lower.replace(NOT_NAME_CHAR, '');
  }
  return lower;
}
const NOT_NAME_CHAR = /[^a-z0-9\p{L}\p{N}]/gu;

/** At most this many content tokens are kept per message (the first ones, deduplicated). */
export const MAX_TOKENS = 20;
/** At most this many addressed names are kept per message. */
export const MAX_NAMES = 4;


/** FNV-1a, 32 bits, over UTF-16 code units: a stable number for a word. */
export function hashWord(w: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) {
    h ^= w.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const LEAD_TRIM = ".-/'+#";
const TRAIL_TRIM = ".-/'";

const LETTER_OR_DIGIT = /^[\p{L}\p{N}]$/u;
const wideCharIsWord = new Map<number, boolean>();
/** A character that belongs to a content word: letters, digits and _ + # . - / ' (by code point). */
function isWordCode(cp: number): boolean {
  if (cp < 128) {
    return (cp >= 97 && cp <= 122) || (cp >= 48 && cp <= 57) || (cp >= 65 && cp <= 90)
      || cp === 95 || cp === 43 || cp === 35 || cp === 46 || cp === 45 || cp === 47 || cp === 39;
  }
  let r = wideCharIsWord.get(cp);
  if (r === undefined) {
    r = LETTER_OR_DIGIT.test(String.fromCodePoint(cp));
    if (wideCharIsWord.size < 65536) wideCharIsWord.set(cp, r);
  }
  return r;
}

/** Content words: lower-cased, without stop words, 2+ characters, deduplicated, the first MAX_TOKENS. */
export function contentTokens(text: string): string[] {
  const out: string[] = [];
  const lower = text.toLowerCase();
  const n = lower.length;
  let i = 0;
  while (i < n && out.length < MAX_TOKENS) {
    // Skip separators, then take the longest run of word characters (code points).
    while (i < n) {
      const cp = lower.codePointAt(i)!;
      if (isWordCode(cp)) break;
      i += cp > 0xffff ? 2 : 1;
    }
    const from = i;
    while (i < n) {
      const cp = lower.codePointAt(i)!;
      if (!isWordCode(cp)) break;
      i += cp > 0xffff ? 2 : 1;
    }
    if (i === from) break;
    // Trim leading . - / ' + # and trailing . - / '.
    let a = from, b = i;
    while (a < b && LEAD_TRIM.includes(lower[a]!)) a++;
    while (b > a && TRAIL_TRIM.includes(lower[b - 1]!)) b--;
    if (b - a < 2) continue;
    const raw = lower.slice(a, b);
    const w = raw.includes("'") ? raw.replace(/'/g, '') : raw;
    if (w.length < 2 || STOP_WORDS.has(w) || out.includes(w)) continue;
    out.push(w);
  }
  return out;
}

/** The content words as a sorted array of distinct word hashes (what the window stores). */
export function contentHashes(text: string): number[] {
  const hs = contentTokens(text).map(hashWord).sort((a, b) => a - b);
  return hs.filter((h, i) => i === 0 || h !== hs[i - 1]);
}

/** How many values two sorted number arrays share. */
export function sharedCount(a: readonly number[], b: readonly number[]): number {
  let i = 0, j = 0, n = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!, y = b[j]!;
    if (x === y) { n++; i++; j++; } else if (x < y) i++; else j++;
  }
  return n;
}

/** The word tokens of a message used for name matching (normalized as names). */
export function nameTokens(text: string): string[] {
  const out: string[] = [];
  const n = text.length;
  let from = 0;
  for (let i = 0; i <= n; i++) {
    if (i < n && !isNameSeparator(text.charCodeAt(i))) continue;
    if (i - from >= 2) {
      const w = normName(text.slice(from, i));
      if (w.length >= 2) out.push(w);
    }
    from = i + 1;
  }
  return out;
}

const WIDE_SPACE = /\s/;
/** The separators of nameTokens: white space (as the regex \s) and , : ; ! ? ( ) [ ] { } < > ". */
function isNameSeparator(c: number): boolean {
  if (c < 128) {
    return c === 32 || (c >= 9 && c <= 13) || c === 44 || c === 58 || c === 59 || c === 33 || c === 63 || c === 40
      || c === 41 || c === 91 || c === 93 || c === 123 || c === 125 || c === 60 || c === 62 || c === 34;
  }
  return WIDE_SPACE.test(String.fromCharCode(c));
}

/** The words of a message that could be names (normalized), for looking up which are recent senders. */
export function nameCandidates(text: string, tokens: readonly string[] = nameTokens(text)): Set<string> {
  const out = new Set<string>();
  const lead = /^\s*@?([^\s:,>]{1,40})\s*[:,>]/.exec(text);
  if (lead) out.add(normName(lead[1]!));
  for (const w of tokens) if (!STOP_WORDS.has(w)) out.add(w);
  return out;
}

/**
 * Names a message addresses, normalized by normName: a leading `name:` / `name,` / `name>` (IRC
 * style), any `@name`, and any word that is the name of a recent sender (`isKnown`). At most
 * MAX_NAMES, in order of appearance; the leading name first.
 */
export function addressedNames(text: string, isKnown: (normalizedName: string) => boolean, tokens: readonly string[] = nameTokens(text)): string[] {
  const out: string[] = [];
  const add = (n: string) => { if (n.length >= 1 && !out.includes(n) && out.length < MAX_NAMES) out.push(n); };
  const lead = /^\s*@?([^\s:,>]{1,40})\s*[:,>]/.exec(text);
  if (lead && !/^https?$/i.test(lead[1]!)) {
    const n = normName(lead[1]!);
    // "name:" is addressing when the name is known or the colon is followed by a space / end.
    if (n.length >= 1 && (isKnown(n) || /^\s*@?[^\s:,>]{1,40}\s*[:,>](\s|$)/.test(text))) add(n);
  }
  if (text.includes('@')) {
    const at = /(?:^|\s)@([^\s:,;!?.]{1,40})/g;
    for (let m = at.exec(text); m !== null; m = at.exec(text)) add(normName(m[1]!));
  }
  for (const w of tokens) if (w.length >= 2 && !STOP_WORDS.has(w) && isKnown(w)) add(w);
  return out;
}

/** Cue flags of a message, as bits. */
export const Flag = {
  QUESTION: 1 << 0,
  URL: 1 << 1,
  GREETING: 1 << 2,
  THANKS: 1 << 3,
  ACK: 1 << 4,
  ASK_ANYONE: 1 << 5,
  CODE: 1 << 6,
  EMPTY: 1 << 7,
  LONG: 1 << 8,
} as const;

const GREETING = /^\s*(hi|hello|hey|heya|hiya|yo|howdy|greetings|morning|good (morning|evening|afternoon|day)|evening|afternoon)\b/i;
const THANKS = /\b(thanks|thank you|thank u|thx|thnx|tnx|ty|cheers|appreciated|merci|danke)\b/i;
const ACK = /^\s*(ok|okay|k|kk|yes|yeah|yep|yup|ya|no|nope|nah|sure|right|ah+|oh+|ooh|hmm+|hm|aha|lol|heh|cool|great|nice|indeed|exactly|true|correct|i see|got it|alright|np|:\)|:\(|:p|:d|;\))\b/i;
const ASK_ANYONE = /\b(anyone|anybody|any one|someone|somebody|does any|can any|is there|how do i|how can i|how to|where can i|help)\b/i;
const CODE = /(^|\s)(sudo|apt-get|apt|\/etc\/|\/dev\/|\/usr\/|dpkg|cd|ls|\.conf|\$ |#include|fn |let |def |import )/i;

export function textFlags(text: string): number {
  let f = 0;
  if (text.trim().length === 0) return Flag.EMPTY;
  if (text.includes('?')) f |= Flag.QUESTION;
  if (/https?:\/\/|www\./i.test(text)) f |= Flag.URL;
  if (GREETING.test(text)) f |= Flag.GREETING;
  if (THANKS.test(text)) f |= Flag.THANKS;
  if (ACK.test(text)) f |= Flag.ACK;
  if (ASK_ANYONE.test(text)) f |= Flag.ASK_ANYONE;
  if (CODE.test(text)) f |= Flag.CODE;
  if (text.length > 120) f |= Flag.LONG;
  return f;
}
