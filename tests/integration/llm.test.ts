// The LLM analyzer against tests/support/llm-server.ts (an OpenAI-compatible endpoint with
// scripted behaviours) and prompt templates in a real PostgreSQL: success, 429 then success,
// 5xx then success, timeout, malformed answers, permanent errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client, type Pool } from 'pg';
import { createPool } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { upsertPromptTemplate } from '../../src/db/prompts';
import { contentHash } from '../../src/db/conversations';
import { createLlmAnalyzer, LlmError, type LlmOptions } from '../../src/analysis/llm';
import { AnalysisError, type Analyzer } from '../../src/analysis/analyzer';
import type { PassDefinition } from '../../src/analysis/passes';
import type { Conversation } from '../../src/analysis/types';
import { startLlmServer, type LlmServer } from '../support/llm-server';

const ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = `chatstats_test_llm_${randomBytes(4).toString('hex')}`;
let pool: Pool;
let server: LlmServer;

async function admin(sql: string): Promise<void> {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try { await c.query(sql); } finally { await c.end(); }
}

before(async () => {
  await admin(`CREATE DATABASE ${DB}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${DB}`;
  pool = createPool(url.toString(), { max: 4 });
  await migrate(pool);
  await upsertPromptTemplate(pool, {
    name: 'TestPrompt', version: 2, category: 'test', system_prompt: 'Answer in JSON for {{chat_id}}.',
    template: 'Conversation of {{participant_count}} ({{participants}}):\n{{transcript}}\nReturn {"topic": ..., "mood": ...}',
    model_settings: { temperature: 0.1, max_tokens: 50, response_format: 'json_object', required_keys: ['topic', 'mood'] },
  });
  server = await startLlmServer();
});

after(async () => {
  await server?.close();
  await pool?.end();
  await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

const T0 = Date.UTC(2024, 4, 1, 10, 0, 0);
const conversation: Conversation = (() => {
  const messages = [
    { message_id: 'm1', sender_id: 'alice', sent_at: T0, text: 'Shall we book the trip to Lisbon?', is_from_me: false, reply_to_message_id: null },
    { message_id: 'm2', sender_id: 'bob', sent_at: T0 + 60_000, text: 'Yes! I am so excited', is_from_me: false, reply_to_message_id: null },
  ];
  return {
    conversation_id: 'conv-llm', chat_id: 'chat-llm', chat_type: 'direct', account_id: 'acc', started_at: T0, ended_at: T0 + 60_000,
    message_count: 2, participant_ids: ['alice', 'bob'], content_hash: contentHash(messages), messages,
  };
})();

function pass(over: Partial<PassDefinition> = {}): PassDefinition {
  return {
    name: 'test_llm', prompt_name: 'TestPrompt', prompt_version: 2, prompt_category: 'test', description: '', priority: 1,
    enabled: true, analyzer: 'llm', requires: { subscription: false, min_messages: 1 }, ...over,
  };
}

function analyzer(over: Partial<LlmOptions> = {}): Analyzer {
  return createLlmAnalyzer({
    pool,
    llm: { baseUrl: server.baseUrl, apiKey: 'sk-test', model: 'test-model', timeoutMs: 2000, maxRetries: 3, initialBackoffMs: 50, maxBackoffMs: 200, ...over },
  });
}

const ctx = (p: PassDefinition = pass()) => ({ pass: p, signal: new AbortController().signal });

test('success: renders the template from PostgreSQL and parses the JSON answer', async () => {
  server.requests.length = 0;
  server.script({ kind: 'answer', content: { topic: 'travel', mood: 'excited' } });
  const r = await analyzer().analyze(conversation, ctx()) as Record<string, any>;
  assert.deepEqual(r.answer, { topic: 'travel', mood: 'excited' });
  assert.equal(r.prompt_name, 'TestPrompt');
  assert.equal(r.prompt_version, 2);
  assert.equal(r.model, 'test-model');
  assert.equal(r.requests, 1);
  assert.deepEqual(r.usage, { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
  assert.equal(server.requests.length, 1);
  const req = server.requests[0]!;
  assert.equal(req.method, 'POST');
  assert.equal(req.path, '/v1/chat/completions');
  assert.equal(req.authorization, 'Bearer sk-test');
  assert.equal(req.body.model, 'test-model');
  assert.equal(req.body.temperature, 0.1);
  assert.equal(req.body.max_tokens, 50);
  assert.deepEqual(req.body.response_format, { type: 'json_object' });
  assert.deepEqual(req.body.messages[0], { role: 'system', content: 'Answer in JSON for chat-llm.' });
  assert.equal(req.body.messages[1].role, 'user');
  assert.equal(req.body.messages[1].content,
    'Conversation of 2 (alice, bob):\n[2024-05-01T10:00:00.000Z] alice: Shall we book the trip to Lisbon?\n' +
    '[2024-05-01T10:01:00.000Z] bob: Yes! I am so excited\nReturn {"topic": ..., "mood": ...}');
});

test('the seeded DeepSentiment template renders for the sentiment_deep pass', async () => {
  server.requests.length = 0;
  server.script({ kind: 'answer', content: '```json\n{"overall":"positive","score":0.8,"emotions":{"joy":0.9},"summary":"Happy planning."}\n```' });
  const r = await analyzer().analyze(conversation, ctx(pass({ name: 'sentiment_deep', prompt_name: 'DeepSentiment', prompt_version: 1 }))) as Record<string, any>;
  assert.equal(r.answer.overall, 'positive');
  const user = server.requests[0]!.body.messages[1].content as string;
  assert.match(user, /direct conversation between 2 participants \(alice, bob\), 2 messages/);
  assert.match(user, /bob: Yes! I am so excited/);
  assert.doesNotMatch(user, /\{\{/);
});

test('429 with Retry-After, then success: waits as asked and retries', async () => {
  server.requests.length = 0;
  server.script({ kind: 'status', status: 429, retryAfter: '1' }, { kind: 'answer', content: { topic: 't', mood: 'm' } });
  const t = Date.now();
  const r = await analyzer().analyze(conversation, ctx()) as Record<string, any>;
  assert.deepEqual(r.answer, { topic: 't', mood: 'm' });
  assert.equal(r.requests, 2);
  assert.equal(server.requests.length, 2);
  const gap = server.requests[1]!.at - server.requests[0]!.at;
  assert.ok(gap >= 950, `second request ${gap} ms after the first; Retry-After asked 1000`);
  assert.ok(Date.now() - t < 5000);
});

test('5xx and a dropped connection are retried with backoff, then success', async () => {
  server.requests.length = 0;
  server.script({ kind: 'status', status: 503 }, { kind: 'reset' }, { kind: 'status', status: 500 }, { kind: 'answer', content: { topic: 't', mood: 'm' } });
  const r = await analyzer().analyze(conversation, ctx()) as Record<string, any>;
  assert.equal(r.requests, 4);
  assert.equal(server.requests.length, 4);
});

test('429 every time: gives up after maxRetries with a retryable error', async () => {
  server.requests.length = 0;
  for (let i = 0; i < 5; i++) server.script({ kind: 'status', status: 429, retryAfter: '0' });
  await assert.rejects(analyzer({ maxRetries: 2 }).analyze(conversation, ctx()), (e: unknown) =>
    e instanceof LlmError && e.kind === 'http' && e.status === 429 && e.retryable && /HTTP 429 after 3 requests/.test(e.message));
  assert.equal(server.requests.length, 3);
  server.clearScript();
});

test('timeout: a hanging endpoint fails the request after timeoutMs, retryable', async () => {
  server.requests.length = 0;
  server.script({ kind: 'hang' });
  const t = Date.now();
  await assert.rejects(analyzer({ timeoutMs: 300 }).analyze(conversation, ctx()), (e: unknown) =>
    e instanceof LlmError && e.kind === 'timeout' && e.retryable && /timed out after 300 ms/.test(e.message));
  const took = Date.now() - t;
  assert.ok(took >= 290 && took < 2000, `took ${took} ms`);
  assert.equal(server.requests.length, 1);
});

test('abort: the caller\'s signal ends a hanging request at once', async () => {
  server.script({ kind: 'hang' });
  const ac = new AbortController();
  const p = analyzer({ timeoutMs: 10_000 }).analyze(conversation, { pass: pass(), signal: ac.signal });
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(p, (e: unknown) => e instanceof LlmError && e.kind === 'aborted');
});

test('malformed answers: body not JSON, no choices, content not the JSON asked for, keys missing', async () => {
  const cases: [Parameters<LlmServer['script']>[0], RegExp][] = [
    [{ kind: 'raw', body: '<html>upstream error</html>', contentType: 'text/html' }, /response is not JSON: <html>upstream error/],
    [{ kind: 'raw', body: '{"object":"chat.completion","choices":[]}' }, /no choices/],
    [{ kind: 'answer', content: null }, /no message content/],
    [{ kind: 'answer', content: 'The topic is travel and the mood is excited.' }, /not the JSON object the prompt asks for: The topic is travel/],
    [{ kind: 'answer', content: '{"topic": "travel"' , finishReason: 'length' }, /cut off/],
    [{ kind: 'answer', content: { topic: 'travel' } }, /lacks the keys the prompt asks for: mood/],
  ];
  for (const [behaviour, re] of cases) {
    server.requests.length = 0;
    server.script(behaviour);
    await assert.rejects(analyzer().analyze(conversation, ctx()), (e: unknown) =>
      e instanceof LlmError && e.kind === 'malformed' && e.retryable && re.test(e.message), String(re));
    assert.equal(server.requests.length, 1, 'a malformed answer is not retried by the client (the pass runner decides)');
  }
});

test('permanent errors: 401, missing template, LLM not configured, no model', async () => {
  server.requests.length = 0;
  server.script({ kind: 'status', status: 401, body: '{"error":{"message":"bad key"}}' });
  await assert.rejects(analyzer().analyze(conversation, ctx()), (e: unknown) =>
    e instanceof LlmError && e.kind === 'http' && e.status === 401 && !e.retryable && /bad key/.test(e.message));
  assert.equal(server.requests.length, 1);

  await assert.rejects(analyzer().analyze(conversation, ctx(pass({ prompt_name: 'NoSuchPrompt' }))), (e: unknown) =>
    e instanceof AnalysisError && !e.retryable && /prompt template NoSuchPrompt v2 not found/.test(e.message));

  const unconfigured = createLlmAnalyzer({ pool, llm: null });
  await assert.rejects(unconfigured.analyze(conversation, ctx()), (e: unknown) =>
    e instanceof LlmError && e.kind === 'config' && !e.retryable && /LLM_BASE_URL is not set/.test(e.message));

  await assert.rejects(analyzer({ model: null }).analyze(conversation, ctx()), (e: unknown) =>
    e instanceof LlmError && e.kind === 'config' && /no model/.test(e.message));
});
