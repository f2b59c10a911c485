// Pass configuration: validation (every error names the file, the pass and the field), priority
// order, qualification rules; the priority queue and scheduler that order work across conversations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  byPriority, defaultPassesFile, disqualification, enabledPasses, loadPasses, planPasses, validatePasses,
  PassConfigError, type PassDefinition,
} from '../../src/analysis/passes';
import { PriorityQueue } from '../../src/analysis/priority-queue';
import { PassScheduler } from '../../src/analysis/scheduler';
import type { PassRunner, Outcome } from '../../src/analysis/runner';
import type { Conversation } from '../../src/analysis/types';
import { backoffDelay, isDataError, isTransientPgError } from '../../src/db/errors';

const FILE = 'test-passes.json';

function valid(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'basic', prompt_name: 'BasicStats', prompt_version: 1, prompt_category: 'conversation_analysis',
    description: 'd', priority: 10, enabled: true, analyzer: 'basic', ...over,
  };
}

function pass(over: Partial<PassDefinition> = {}): PassDefinition {
  return {
    name: 'p', prompt_name: 'P', prompt_version: 1, prompt_category: 'c', description: '', priority: 0, enabled: true,
    analyzer: 'basic', requires: { subscription: false, min_messages: 1 }, ...over,
  };
}

function expectError(doc: unknown, pass: string | null, field: string | null, detail: RegExp): void {
  assert.throws(() => validatePasses(doc, FILE), (e: unknown) => {
    assert.ok(e instanceof PassConfigError, String(e));
    assert.ok(e.message.startsWith(`${FILE}: `), e.message);
    assert.equal(e.file, FILE);
    assert.equal(e.pass, pass, e.message);
    assert.equal(e.field, field, e.message);
    if (pass !== null) assert.ok(e.message.includes(`pass "${pass}"`), e.message);
    if (field !== null) assert.ok(e.message.includes(`field "${field}"`), e.message);
    assert.match(e.message, detail);
    return true;
  });
}

test('the shipped config/passes.json is valid and carries the seed passes', () => {
  const passes = loadPasses(defaultPassesFile());
  const names = passes.map((p) => p.name);
  for (const n of ['basic', 'sentiment_deep', 'my_new_pass']) assert.ok(names.includes(n), n);
  const deep = passes.find((p) => p.name === 'sentiment_deep')!;
  assert.equal(deep.prompt_name, 'DeepSentiment');
  assert.equal(deep.prompt_category, 'sentiment');
  assert.equal(deep.priority, 15);
  assert.ok(passes.some((p) => !p.enabled), 'at least one disabled pass');
  assert.ok(passes.some((p) => p.enabled && p.requires.subscription), 'at least one subscription-only pass');
  assert.equal(new Set(names).size, names.length);
});

test('PASSES_FILE overrides the default file; unreadable and non-JSON files are named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'passes-'));
  try {
    const f = join(dir, 'p.json');
    writeFileSync(f, JSON.stringify({ passes: [valid({ name: 'only_one' })] }));
    const prev = process.env.PASSES_FILE;
    process.env.PASSES_FILE = f;
    try { assert.deepEqual(loadPasses().map((p) => p.name), ['only_one']); } finally {
      if (prev === undefined) delete process.env.PASSES_FILE; else process.env.PASSES_FILE = prev;
    }
    writeFileSync(f, '{ "passes": [ ');
    assert.throws(() => loadPasses(f), (e: Error) => e instanceof PassConfigError && e.message.startsWith(`${f}: not valid JSON`));
    assert.throws(() => loadPasses(join(dir, 'missing.json')), (e: Error) => e instanceof PassConfigError && /missing\.json: cannot read/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('defaults: description empty, requires subscription false and min_messages 1', () => {
  const [p] = validatePasses({ passes: [valid({ description: undefined })] }, FILE);
  assert.deepEqual(p!.requires, { subscription: false, min_messages: 1 });
  assert.equal(p!.description, '');
});

test('each invalid field is named in the error', () => {
  const d = (over: Record<string, unknown>) => ({ passes: [valid(over)] });
  expectError('nope', null, null, /expected an object with a "passes" array/);
  expectError({ passes: {} }, null, 'passes', /must be an array/);
  expectError({ passes: [], extra: 1 }, null, 'extra', /unknown top-level field/);
  expectError({ passes: [42] }, '#1', null, /must be an object/);
  expectError(d({ name: 'Bad Name' }), 'Bad Name', 'name', /lower-case letters/);
  expectError({ passes: [valid({ name: undefined })] }, '#1', 'name', /non-empty string/);
  expectError(d({ prompt_name: '' }), 'basic', 'prompt_name', /non-empty string, got ""/);
  expectError(d({ prompt_version: 0 }), 'basic', 'prompt_version', /between 1 and/);
  expectError(d({ prompt_version: '1' }), 'basic', 'prompt_version', /must be an integer, got "1"/);
  expectError(d({ prompt_category: 7 }), 'basic', 'prompt_category', /non-empty string, got 7/);
  expectError(d({ description: 5 }), 'basic', 'description', /must be a string/);
  expectError(d({ priority: 'high' }), 'basic', 'priority', /must be an integer, got "high"/);
  expectError(d({ priority: 1.5 }), 'basic', 'priority', /must be an integer/);
  expectError(d({ enabled: 'yes' }), 'basic', 'enabled', /true or false/);
  expectError(d({ enabled: undefined }), 'basic', 'enabled', /true or false, got nothing/);
  expectError(d({ analyzer: 'gpt' }), 'basic', 'analyzer', /one of basic, sentiment, keywords, language, llm/);
  expectError(d({ requires: [] }), 'basic', 'requires', /must be an object/);
  expectError(d({ requires: { subscription: 'true' } }), 'basic', 'requires.subscription', /true or false/);
  expectError(d({ requires: { min_messages: 0 } }), 'basic', 'requires.min_messages', /at least 1/);
  expectError(d({ requires: { plan: 'pro' } }), 'basic', 'requires.plan', /unknown requirement/);
  expectError(d({ priorty: 3 }), 'basic', 'priorty', /unknown field/);
  expectError({ passes: [valid(), valid()] }, 'basic', 'name', /defined twice/);
});

test('priority order: higher first, ties by name; disabled passes are not enabled', () => {
  const ps = [pass({ name: 'low', priority: 1 }), pass({ name: 'b', priority: 50 }), pass({ name: 'a', priority: 50 }),
    pass({ name: 'top', priority: 100, enabled: false }), pass({ name: 'neg', priority: -5 })];
  assert.deepEqual(byPriority(ps).map((p) => p.name), ['top', 'a', 'b', 'low', 'neg']);
  assert.deepEqual(enabledPasses(ps).map((p) => p.name), ['a', 'b', 'low', 'neg']);
});

test('qualification: minimum messages and active subscription of the account', () => {
  const sub = pass({ requires: { subscription: true, min_messages: 3 } });
  assert.equal(disqualification(sub, { message_count: 3, account_id: 'acc', subscriptionActive: true }), null);
  assert.match(disqualification(sub, { message_count: 2, account_id: 'acc', subscriptionActive: true })!, /at least 3 messages, has 2/);
  assert.match(disqualification(sub, { message_count: 5, account_id: null, subscriptionActive: false })!, /no account_id/);
  assert.match(disqualification(sub, { message_count: 5, account_id: 'acc', subscriptionActive: false })!, /account acc has none/);
  const free = pass();
  assert.equal(disqualification(free, { message_count: 1, account_id: null, subscriptionActive: false }), null);
});

test('planPasses: enabled qualifying passes by priority, the others skipped with reasons, disabled ignored', () => {
  const ps = [
    pass({ name: 'basic', priority: 100 }),
    pass({ name: 'deep', priority: 15, requires: { subscription: true, min_messages: 4 } }),
    pass({ name: 'kw', priority: 40, requires: { subscription: false, min_messages: 3 } }),
    pass({ name: 'off', priority: 200, enabled: false }),
  ];
  const plan = planPasses(ps, { message_count: 3, account_id: 'a', subscriptionActive: false });
  assert.deepEqual(plan.run.map((p) => p.name), ['basic', 'kw']);
  assert.deepEqual(plan.skip.map((s) => s.pass.name), ['deep']);
  const paid = planPasses(ps, { message_count: 4, account_id: 'a', subscriptionActive: true });
  assert.deepEqual(paid.run.map((p) => p.name), ['basic', 'kw', 'deep']);
  assert.equal(paid.skip.length, 0);
});

test('PriorityQueue: priority desc, then arrival; a late high-priority item jumps a backlog', () => {
  const q = new PriorityQueue<string>();
  for (let i = 0; i < 1000; i++) q.push(`low${i}`, 10);
  q.push('mid', 50);
  q.push('high', 100);
  q.push('mid2', 50);
  assert.equal(q.size, 1003);
  assert.deepEqual([q.pop(), q.pop(), q.pop(), q.pop(), q.pop()], ['high', 'mid', 'mid2', 'low0', 'low1']);
  const rest = q.drain();
  assert.equal(rest.length, 998);
  assert.deepEqual(rest.slice(0, 3), ['low2', 'low3', 'low4']);
  assert.equal(rest[rest.length - 1], 'low999');
  assert.equal(q.pop(), undefined);
});

function conv(id: string): Conversation {
  return { conversation_id: id, chat_id: 'c', chat_type: null, account_id: null, started_at: 0, ended_at: 0, message_count: 0, participant_ids: [], content_hash: 'h', messages: [] };
}

test('PassScheduler: bounded concurrency, high-priority runs go before a low-priority backlog', async () => {
  const order: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const gates: (() => void)[] = [];
  const runner = {
    async execute(c: Conversation, p: PassDefinition): Promise<Outcome> {
      running++;
      maxRunning = Math.max(maxRunning, running);
      order.push(`${c.conversation_id}:${p.name}`);
      await new Promise<void>((r) => gates.push(r));
      running--;
      return { kind: 'completed', cached: false, attempts: 1, durationMs: 0 };
    },
  } as unknown as PassRunner;
  const s = new PassScheduler(runner, { concurrency: 2 });
  const low = pass({ name: 'low', priority: 1 });
  const high = pass({ name: 'high', priority: 90 });
  const done: Promise<unknown>[] = [];
  for (let i = 0; i < 6; i++) done.push(s.submit(conv(`c${i}`), low));
  await new Promise((r) => setImmediate(r));
  done.push(s.submit(conv('late'), high));
  // Let every run finish, one at a time.
  while (order.length < 7 || gates.length > 0) {
    await new Promise((r) => setImmediate(r));
    gates.shift()?.();
  }
  await Promise.all(done);
  assert.equal(maxRunning, 2);
  assert.deepEqual(order.slice(0, 3), ['c0:low', 'c1:low', 'late:high']);
  await s.stop();
});

test('PassScheduler: stop rejects waiting runs (they are not recorded) and lets running ones finish', async () => {
  let release: () => void = () => undefined;
  const runner = {
    async execute(): Promise<Outcome> {
      await new Promise<void>((r) => { release = r; });
      return { kind: 'completed', cached: false, attempts: 1, durationMs: 0 };
    },
  } as unknown as PassRunner;
  const s = new PassScheduler(runner, { concurrency: 1 });
  const first = s.submit(conv('a'), pass());
  const second = s.submit(conv('b'), pass());
  await new Promise((r) => setImmediate(r));
  const stopping = s.stop(5000);
  release();
  assert.equal((await first).kind, 'completed');
  await assert.rejects(second, { name: 'StoppedError' });
  await stopping;
  await assert.rejects(s.submit(conv('c'), pass()), { name: 'StoppedError' });
});

test('database error classification and backoff', () => {
  assert.ok(isDataError({ code: '22P05' }));
  assert.ok(isDataError({ code: '23514' }));
  assert.ok(!isDataError({ code: '57P01' }));
  assert.ok(!isDataError(new Error('x')));
  for (const code of ['57P01', '55000', '08006', '53300', '42501', '3D000', 'ECONNREFUSED']) assert.ok(isTransientPgError({ code }), code);
  assert.ok(isTransientPgError(new Error('Connection terminated unexpectedly')));
  assert.ok(!isTransientPgError({ code: '42P01' }));
  assert.ok(!isTransientPgError({ code: '23505' }));
  for (let a = 0; a < 40; a++) {
    const d = backoffDelay(a, 100, 5000, () => 1);
    assert.equal(d, Math.min(5000, 100 * 2 ** a));
    assert.ok(backoffDelay(a, 100, 5000, () => 0) >= Math.min(5000, 100 * 2 ** a) / 2);
  }
});
