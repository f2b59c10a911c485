// The local analyzers on small hand-built conversations, and the LLM analyzer's pure parts
// (template rendering, answer parsing, Retry-After, transcript).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basicAnalyzer } from '../../src/analysis/basic';
import { sentimentAnalyzer, label } from '../../src/analysis/sentiment';
import { keywordsAnalyzer, tfidfKeywords } from '../../src/analysis/keywords';
import { detectLanguage, languageAnalyzer } from '../../src/analysis/language';
import { LlmError, parseCompletion, parseJsonAnswer, parseRetryAfter, renderTemplate, templateVars, transcript } from '../../src/analysis/llm';
import { AnalysisError, median } from '../../src/analysis/analyzer';
import type { AnalysisContext } from '../../src/analysis/analyzer';
import type { PassDefinition } from '../../src/analysis/passes';
import type { Conversation, ConversationMessage, JsonObject } from '../../src/analysis/types';
import { contentHash } from '../../src/db/conversations';

const T0 = Date.UTC(2024, 4, 1, 10, 0, 0);
const MIN = 60_000;

function conv(msgs: [sender: string, atMs: number, text: string | null][], over: Partial<Conversation> = {}): Conversation {
  const messages: ConversationMessage[] = msgs.map(([sender_id, at, text], i) => ({
    message_id: `m${i}`, sender_id, sent_at: T0 + at, text, is_from_me: sender_id === 'me', reply_to_message_id: null,
  }));
  return {
    conversation_id: 'conv-1', chat_id: 'chat-1', chat_type: 'group', account_id: 'acc-1',
    started_at: messages[0]?.sent_at ?? T0, ended_at: messages[messages.length - 1]?.sent_at ?? T0,
    message_count: messages.length, participant_ids: [...new Set(messages.map((m) => m.sender_id))].sort(),
    content_hash: contentHash(messages), messages, ...over,
  };
}

const ctx = { pass: {} as PassDefinition, signal: new AbortController().signal } as AnalysisContext;
const run = (a: { analyze(c: Conversation, x: AnalysisContext): Promise<JsonObject> }, c: Conversation) => a.analyze(c, ctx);

test('basic: counts, participants, duration and response times, exactly', async () => {
  const c = conv([
    ['alice', 0, 'hi bob'],
    ['alice', 30_000, 'are you there?'],
    ['bob', 2 * MIN, 'yes, here'],          // response by bob after 90 s
    ['me', 3 * MIN, 'hello both'],          // response by me after 60 s
    ['bob', 3 * MIN + 10_000, null],        // response by bob after 10 s
    ['alice', 10 * MIN, 'ok'],              // response by alice after 410 s
  ]);
  const r = await run(basicAnalyzer, c) as Record<string, any>;
  assert.equal(r.message_count, 6);
  assert.equal(r.text_message_count, 5);
  assert.equal(r.from_me_count, 1);
  assert.equal(r.participant_count, 3);
  assert.deepEqual(r.participants, ['alice', 'bob', 'me']);
  assert.deepEqual(r.messages_per_participant, { alice: 3, bob: 2, me: 1 });
  assert.deepEqual(r.words_per_participant, { alice: 6, bob: 2, me: 2 });
  assert.equal(r.duration_ms, 10 * MIN);
  assert.equal(r.started_at, '2024-05-01T10:00:00.000Z');
  assert.equal(r.ended_at, '2024-05-01T10:10:00.000Z');
  assert.deepEqual(r.response_times, {
    count: 4, mean_ms: 142_500, median_ms: 75_000, min_ms: 10_000, max_ms: 410_000,
    by_responder: {
      alice: { count: 1, mean_ms: 410_000, median_ms: 410_000, min_ms: 410_000, max_ms: 410_000 },
      bob: { count: 2, mean_ms: 50_000, median_ms: 50_000, min_ms: 10_000, max_ms: 90_000 },
      me: { count: 1, mean_ms: 60_000, median_ms: 60_000, min_ms: 60_000, max_ms: 60_000 },
    },
  });
});

test('basic: a monologue has no response times; one message has zero duration', async () => {
  const r = await run(basicAnalyzer, conv([['a', 0, 'x'], ['a', 5000, 'y']])) as Record<string, any>;
  assert.deepEqual(r.response_times, { count: 0, mean_ms: null, median_ms: null, min_ms: null, max_ms: null, by_responder: {} });
  const one = await run(basicAnalyzer, conv([['a', 0, 'x']])) as Record<string, any>;
  assert.equal(one.duration_ms, 0);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.equal(median([]), null);
});

test('sentiment: sign and label on obvious texts, per participant', async () => {
  const happy = await run(sentimentAnalyzer, conv([
    ['a', 0, 'I love this, it is wonderful and amazing!'],
    ['b', 1000, 'Great news, thank you so much, I am happy'],
  ])) as Record<string, any>;
  assert.ok(happy.score > 0, JSON.stringify(happy));
  assert.equal(happy.label, 'positive');
  assert.equal(happy.positive_messages, 2);
  assert.equal(happy.most_positive_message_id !== null, true);
  assert.equal(happy.per_participant.a.label, 'positive');

  const sad = await run(sentimentAnalyzer, conv([
    ['a', 0, 'This is terrible, I hate it. Awful service.'],
    ['b', 1000, 'Horrible, the worst, I am so angry and sad'],
  ])) as Record<string, any>;
  assert.ok(sad.score < 0, JSON.stringify(sad));
  assert.equal(sad.label, 'negative');
  assert.equal(sad.negative_messages, 2);
  assert.equal(sad.most_positive_message_id, null);

  const flat = await run(sentimentAnalyzer, conv([['a', 0, 'The train leaves at nine'], ['b', 1000, 'Platform four']])) as Record<string, any>;
  assert.equal(flat.score, 0);
  assert.equal(flat.label, 'neutral');
  assert.equal(flat.lexicon_coverage, 0);
  assert.equal(label(0.6), 'positive');
  assert.equal(label(-0.6), 'negative');
  assert.equal(label(0.5), 'neutral');
});

test('keywords: TF-IDF ranks frequent topic words first and drops stop words', async () => {
  const c = conv([
    ['a', 0, 'The kafka broker is down again'],
    ['b', 1000, 'Did you restart the kafka broker?'],
    ['a', 2000, 'Yes, kafka is back; postgres too'],
    ['b', 3000, 'Good, then the postgres migration can run'],
    ['a', 4000, 'The kafka consumer lag is dropping'],
  ]);
  const r = await run(keywordsAnalyzer, c) as Record<string, any>;
  const terms = r.keywords.map((k: { term: string }) => k.term);
  assert.equal(terms[0], 'kafka');
  assert.equal(r.keywords[0].count, 4);
  assert.equal(r.keywords[0].messages, 4);
  assert.ok(terms.indexOf('broker') < terms.indexOf('consumer'), terms.join(','));
  assert.ok(terms.indexOf('postgres') < terms.indexOf('migration'), terms.join(','));
  for (const stop of ['the', 'is', 'you', 'did', 'yes', 'then', 'too', 'good', 'again']) assert.ok(!terms.includes(stop), stop);
  assert.equal(r.documents, 5);
  // Same count, concentrated in one message vs spread over all: TF-IDF prefers the concentrated term.
  const [first] = tfidfKeywords(['alpha beta', 'alpha gamma gamma gamma', 'alpha delta', 'alpha'], 1);
  assert.equal(first!.term, 'gamma');
  assert.deepEqual(tfidfKeywords([null, '', 'ok the'], 5), []);
});

const SAMPLES: Record<string, string> = {
  en: 'I think that we should meet at the station because it is easier for all of us, and then we can go to the park with them.',
  de: 'Ich glaube, dass wir uns am Bahnhof treffen sollten, weil es für uns alle einfacher ist, und dann können wir mit ihnen in den Park gehen.',
  es: 'Creo que deberíamos quedar en la estación porque es más fácil para todos nosotros, y luego podemos ir al parque con ellos.',
  fr: 'Je pense que nous devrions nous retrouver à la gare parce que c\'est plus facile pour nous tous, et ensuite nous pouvons aller au parc avec eux.',
};

test('language: English, German, Spanish and French samples, with a confidence', async () => {
  for (const [lang, text] of Object.entries(SAMPLES)) {
    const g = detectLanguage(text);
    assert.equal(g.language, lang, `${lang}: ${JSON.stringify(g)}`);
    assert.ok(g.confidence > 0.4 && g.confidence <= 1, `${lang} confidence ${g.confidence}`);
    assert.ok(g.matched_words >= 5);
  }
  const r = await run(languageAnalyzer, conv([['a', 0, SAMPLES.de!], ['b', 1000, 'Ja, das ist gut. Wir sehen uns dann um acht.']])) as Record<string, any>;
  assert.equal(r.language, 'de');
  assert.equal(r.name, 'German');
  assert.deepEqual(r.messages_by_language, { de: 2 });
});

test('language: too little evidence is undetermined, little evidence is low confidence', () => {
  assert.equal(detectLanguage('ok 👍').language, 'und');
  assert.equal(detectLanguage('').confidence, 0);
  const short = detectLanguage('the cat and');
  const long = detectLanguage(SAMPLES.en!);
  assert.equal(short.language, 'en');
  assert.ok(short.confidence < long.confidence, `${short.confidence} < ${long.confidence}`);
});

test('content hash: same content under other ids is equal; other text differs', () => {
  const a = conv([['a', 0, 'x'], ['b', 1, 'y']]);
  const b = conv([['a', 0, 'x'], ['b', 1, 'y']], { conversation_id: 'other' });
  b.messages.forEach((m, i) => { m.message_id = `other-${i}`; });
  assert.equal(contentHash(a.messages), contentHash(b.messages));
  assert.notEqual(contentHash(a.messages), contentHash(conv([['a', 0, 'x'], ['b', 1, 'z']]).messages));
  assert.notEqual(contentHash(a.messages), contentHash(conv([['a', 0, 'x'], ['b', 2, 'y']]).messages));
  assert.match(contentHash(a.messages), /^[0-9a-f]{64}$/);
});

test('llm: templates render known placeholders and refuse unknown ones', () => {
  const c = conv([['alice', 0, 'hello'], ['bob', 2 * MIN, 'hi']]);
  const vars = templateVars(c);
  assert.equal(renderTemplate('{{ chat_type }} / {{message_count}} / {{participants}} / {{duration_minutes}}', vars), 'group / 2 / alice, bob / 2');
  assert.equal(vars.transcript, '[2024-05-01T10:00:00.000Z] alice: hello\n[2024-05-01T10:02:00.000Z] bob: hi');
  assert.throws(() => renderTemplate('{{nope}} and {{transcript}}', vars, 'prompt X v1'), (e: unknown) =>
    e instanceof AnalysisError && !e.retryable && /prompt X v1: unknown placeholder\(s\) \{\{nope\}\}/.test(e.message));
});

test('llm: a long transcript keeps its head and tail and says what it left out', () => {
  const msgs: [string, number, string][] = [];
  for (let i = 0; i < 100; i++) msgs.push([`u${i % 3}`, i * 1000, `message number ${i} `.repeat(3)]);
  const t = transcript(conv(msgs), 2000);
  assert.ok(t.length <= 2100, String(t.length));
  assert.match(t, /message number 0 /);
  assert.match(t, /message number 99 /);
  const m = /\[… (\d+) messages left out …\]/.exec(t);
  assert.ok(m);
  assert.equal(t.split('\n').length - 1 + Number(m[1]), 100);
});

test('llm: answers are parsed, malformed ones are clear errors', () => {
  const body = (content: unknown) => JSON.stringify({ model: 'm', choices: [{ message: { role: 'assistant', content }, finish_reason: 'stop' }], usage: { total_tokens: 5 } });
  assert.deepEqual(parseCompletion(body('{"a":1}')), { content: '{"a":1}', model: 'm', finish_reason: 'stop', usage: { total_tokens: 5 } });
  const malformed = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof LlmError && e.kind === 'malformed' && re.test(e.message));
  malformed(() => parseCompletion('<html>bad gateway</html>'), /response is not JSON: <html>bad gateway/);
  malformed(() => parseCompletion('{"choices": []}'), /no choices/);
  malformed(() => parseCompletion('{"id": "x"}'), /no choices/);
  malformed(() => parseCompletion(body(null)), /no message content/);
  assert.deepEqual(parseJsonAnswer('```json\n{"overall": "positive", "score": 1}\n```', ['overall']), { overall: 'positive', score: 1 });
  malformed(() => parseJsonAnswer('Sure! The sentiment is positive.', ['overall']), /not the JSON object the prompt asks for: Sure!/);
  malformed(() => parseJsonAnswer('{"overall": "pos', [], 'length'), /cut off: finish_reason "length"/);
  malformed(() => parseJsonAnswer('[1, 2]'), /JSON but not an object/);
  malformed(() => parseJsonAnswer('{"overall": "positive"}', ['overall', 'score', 'summary']), /lacks the keys the prompt asks for: score, summary/);
});

test('llm: Retry-After in seconds or as an HTTP date', () => {
  assert.equal(parseRetryAfter('2'), 2000);
  assert.equal(parseRetryAfter('0.5'), 500);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter('soon'), null);
  const now = Date.UTC(2024, 0, 1, 0, 0, 0);
  assert.equal(parseRetryAfter('Mon, 01 Jan 2024 00:00:03 GMT', now), 3000);
  assert.equal(parseRetryAfter('Mon, 01 Jan 2023 00:00:03 GMT', now), 0);
});
