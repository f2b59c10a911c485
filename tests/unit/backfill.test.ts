// The backfill's pure parts: what it selects, where it commits, how it paces itself and what it
// shows while it works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validatePasses, type PassDefinition } from '../../src/analysis/passes';
import { backfillGroupId, commitTarget, passesFilters, verdict, type PartitionPlan } from '../../src/backfill/backfill';
import { chunkSizeFor, formatRate, parsePositiveInt, parseRate, parseTimeArg } from '../../src/backfill/options';
import { RateLimiter, type Clock } from '../../src/backfill/rate-limiter';
import { Progress, bar, fmtEta, progressLine } from '../../src/backfill/progress';
import { percent } from '../../src/backfill/coverage';
import { rateFrom } from '../../src/cli/backfill';
import { ConfigError } from '../../src/config';

const [keywords, summary] = validatePasses({
  passes: [
    { name: 'keywords', prompt_name: 'K', prompt_version: 2, prompt_category: 'topics', priority: 40, enabled: true, analyzer: 'keywords', requires: { min_messages: 3 } },
    { name: 'summary', prompt_name: 'S', prompt_version: 1, prompt_category: 'c', priority: 20, enabled: true, analyzer: 'llm', requires: { subscription: true, min_messages: 4 } },
  ],
}, 'test') as [PassDefinition, PassDefinition];

test('parseRate: per second, per minute, per hour, unlimited', () => {
  assert.equal(parseRate('50'), 50);
  assert.equal(parseRate('50/s'), 50);
  assert.equal(parseRate(' 2.5/s '), 2.5);
  assert.equal(parseRate('600/m'), 10);
  assert.equal(parseRate('600/min'), 10);
  assert.equal(parseRate('3600/h'), 1);
  for (const u of ['unlimited', 'none', 'off', '0', 'UNLIMITED']) assert.equal(parseRate(u), null, u);
  for (const bad of ['', 'fast', '-1', '10/d', '1e3', '/s']) assert.throws(() => parseRate(bad), /not a rate/, bad);
  assert.equal(formatRate(null), 'unlimited');
  assert.equal(formatRate(4), '4/s');
  assert.equal(formatRate(2.5), '2.50/s');
});

test('rate from the option, else BACKFILL_RATE, else 50/s; a bad BACKFILL_RATE is a configuration error naming it', () => {
  assert.equal(rateFrom('7/s', { BACKFILL_RATE: '100' }), 7);
  assert.equal(rateFrom(undefined, { BACKFILL_RATE: '100' }), 100);
  assert.equal(rateFrom(undefined, { BACKFILL_RATE: 'unlimited' }), null);
  assert.equal(rateFrom(undefined, {}), 50);
  assert.throws(() => rateFrom(undefined, { BACKFILL_RATE: 'fast' }), (e: unknown) => e instanceof ConfigError && e.variable === 'BACKFILL_RATE');
  assert.throws(() => rateFrom('fast', {}), /not a rate/);
});

test('parseTimeArg: ISO-8601, epoch ms, or an age', () => {
  const now = Date.UTC(2024, 5, 10, 12, 0, 0);
  assert.equal(parseTimeArg('2024-05-01T00:00:00Z', now), Date.UTC(2024, 4, 1));
  assert.equal(parseTimeArg('2024-05-01', now), Date.UTC(2024, 4, 1));
  assert.equal(parseTimeArg('1717000000000', now), 1717000000000);
  assert.equal(parseTimeArg('7d', now), now - 7 * 86_400_000);
  assert.equal(parseTimeArg('90m', now), now - 90 * 60_000);
  assert.throws(() => parseTimeArg('yesterday', now), /not a time/);
  assert.equal(parsePositiveInt('12', '--limit'), 12);
  for (const bad of ['0', '-1', '1.5', 'x']) assert.throws(() => parsePositiveInt(bad, '--limit'), /--limit must be a positive integer/);
});

test('chunks: about four per second at the rate, at least 1, at most 50', () => {
  assert.equal(chunkSizeFor(null), 50);
  assert.equal(chunkSizeFor(1), 1);
  assert.equal(chunkSizeFor(4), 1);
  assert.equal(chunkSizeFor(50), 13);
  assert.equal(chunkSizeFor(10_000), 50);
});

function fakeClock(): Clock & { t: number; sleeps: number[] } {
  const c = {
    t: 1_000_000,
    sleeps: [] as number[],
    now: () => c.t,
    sleep: async (ms: number, signal?: AbortSignal) => {
      if (signal?.aborted) throw signal.reason;
      c.sleeps.push(ms);
      c.t += ms;
    },
  };
  return c;
}

test('RateLimiter: the average rate never exceeds the limit; the first chunk starts at once', async () => {
  const clock = fakeClock();
  const lim = new RateLimiter(10, clock);
  const start = clock.t;
  let units = 0;
  for (let i = 0; i < 20; i++) {
    await lim.take(5);
    units += 5;
    // Units started by now: at most rate × elapsed + one chunk.
    assert.ok(units <= 10 * ((clock.t - start) / 1000) + 5, `${units} units after ${clock.t - start} ms`);
  }
  assert.equal(clock.sleeps[0], 500);
  assert.equal(clock.t - start, 19 * 500, '100 units at 10/s: the 20th chunk starts after 9.5 s');

  // Idle time is not saved up into a burst beyond one chunk.
  clock.t += 60_000;
  const before = clock.sleeps.length;
  await lim.take(5);
  assert.equal(clock.sleeps.length, before, 'after idling, one chunk goes at once');
  await lim.take(5);
  assert.equal(clock.sleeps.at(-1), 500);
});

test('RateLimiter: unlimited never waits; an aborted wait gives its booking back', async () => {
  const clock = fakeClock();
  const free = new RateLimiter(null, clock);
  for (let i = 0; i < 100; i++) await free.take(50);
  assert.equal(clock.sleeps.length, 0);

  const lim = new RateLimiter(1, clock);
  await lim.take(1);
  const ac = new AbortController();
  ac.abort(new Error('stop'));
  await assert.rejects(lim.take(1, ac.signal), /stop/);
  await lim.take(1);
  assert.equal(clock.sleeps.at(-1), 1000, 'the aborted booking did not push the next one further');
  assert.throws(() => new RateLimiter(0), RangeError);
});

test('verdict: not loaded, completed, not qualifying (recorded or to record), to run', () => {
  const none = new Set<string>();
  const c = (over: Partial<{ loaded: boolean; message_count: number; account_id: string | null; status: any; owed: boolean }>) =>
    ({ loaded: true, message_count: 5, account_id: null, status: null, ...over });
  assert.deepEqual(verdict(keywords, c({ loaded: false }), none), { kind: 'not_loaded' });
  assert.deepEqual(verdict(keywords, c({ status: 'completed' }), none), { kind: 'completed', owed: false });
  // Completed, but its analysis.completed event never went out (a crash in between): owed.
  assert.deepEqual(verdict(keywords, c({ status: 'completed', owed: true }), none), { kind: 'completed', owed: true });
  assert.deepEqual(verdict(keywords, c({}), none), { kind: 'run', status: null });
  assert.deepEqual(verdict(keywords, c({ status: 'failed' }), none), { kind: 'run', status: 'failed' });
  assert.deepEqual(verdict(keywords, c({ status: 'running' }), none), { kind: 'run', status: 'running' });
  // Skipped earlier, qualifies now: run it.
  assert.deepEqual(verdict(keywords, c({ status: 'skipped' }), none), { kind: 'run', status: 'skipped' });
  const small = verdict(keywords, c({ message_count: 2 }), none);
  assert.equal(small.kind, 'not_qualifying');
  assert.equal(small.kind === 'not_qualifying' && small.record, true);
  assert.match(small.kind === 'not_qualifying' ? small.reason : '', /at least 3 messages/);
  const recorded = verdict(keywords, c({ message_count: 2, status: 'skipped' }), none);
  assert.equal(recorded.kind === 'not_qualifying' && recorded.record, false);
  // Subscription passes.
  assert.equal(verdict(summary, c({ account_id: 'acc' }), none).kind, 'not_qualifying');
  assert.equal(verdict(summary, c({ account_id: 'acc' }), new Set(['acc'])).kind, 'run');
  assert.equal(verdict(summary, c({ account_id: null }), new Set(['acc'])).kind, 'not_qualifying');
});

test('commit target: the first run not yet recorded, else the end of the plan', () => {
  const plan: PartitionPlan = { partition: 0, from: 10, cutoff: 40, runs: [{ id: 'a', offset: 12 }, { id: 'b', offset: 20 }, { id: 'c', offset: 33 }], skips: [] };
  assert.equal(commitTarget(plan, 0), 12);
  assert.equal(commitTarget(plan, 1), 20);
  assert.equal(commitTarget(plan, 2), 33);
  assert.equal(commitTarget(plan, 3), 40);
  assert.equal(commitTarget({ ...plan, runs: [] }, 0), 40);
});

test('group ids: one per pass version; filtered backfills get their own, stable, group', () => {
  const nf = { chatId: null, since: null, until: null };
  assert.equal(backfillGroupId('chatstats', keywords, nf), 'chatstats-backfill-keywords-v2');
  const a = backfillGroupId('chatstats', keywords, { ...nf, chatId: 'x' });
  assert.match(a, /^chatstats-backfill-keywords-v2-f[0-9a-f]{10}$/);
  assert.equal(backfillGroupId('chatstats', keywords, { ...nf, chatId: 'x' }), a);
  assert.notEqual(backfillGroupId('chatstats', keywords, { ...nf, chatId: 'y' }), a);
  assert.notEqual(backfillGroupId('chatstats', keywords, { ...nf, since: 5 }), a);
});

test('filters: chat, and started_at in [since, until)', () => {
  const conv = { chat_id: 'c1', started_at: 1000 };
  const f = { chatId: null, since: null, until: null };
  assert.equal(passesFilters(conv, f), true);
  assert.equal(passesFilters(conv, { ...f, chatId: 'c1' }), true);
  assert.equal(passesFilters(conv, { ...f, chatId: 'c2' }), false);
  assert.equal(passesFilters(conv, { ...f, since: 1000 }), true);
  assert.equal(passesFilters(conv, { ...f, since: 1001 }), false);
  assert.equal(passesFilters(conv, { ...f, until: 1000 }), false);
  assert.equal(passesFilters(conv, { ...f, until: 1001 }), true);
});

test('coverage percent: floor to one decimal, so 100 % means all; null when nothing qualifies', () => {
  assert.equal(percent(0, 10), 0);
  assert.equal(percent(10, 10), 100);
  assert.equal(percent(1999, 2000), 99.9);
  assert.equal(percent(1, 3), 33.3);
  assert.equal(percent(0, 0), null);
});

function sink(isTTY: boolean) {
  const out: string[] = [];
  return { out, w: { isTTY, columns: 120, write: (s: string) => { out.push(s); return true; } } };
}

test('progress on a non-terminal: a plain line at the start, every interval, and at the end', () => {
  let now = 0;
  const { out, w } = sink(false);
  const p = new Progress(w, { intervalMs: 5000, now: () => now });
  p.update({ phase: 'run', label: 'keywords v1', done: 0, total: 100 });
  now = 1000; p.update({ phase: 'run', label: 'keywords v1', done: 10, total: 100 });
  now = 5000; p.update({ phase: 'run', label: 'keywords v1', done: 50, total: 100 });
  now = 6000; p.update({ phase: 'run', label: 'keywords v1', done: 60, total: 100 });
  now = 8000; p.update({ phase: 'run', label: 'keywords v1', done: 80, total: 100 });
  now = 10_000; p.end();
  assert.equal(out.length, 3, out.join(''));
  assert.ok(out.every((l) => l.endsWith('\n') && !l.includes('\r')));
  assert.match(out[1]!, /^keywords v1 running 50\/100 conversations 50% 10\/s ETA 5s\n$/);
  assert.match(out[2]!, /^keywords v1 running 80\/100 conversations 80% 8\.0\/s ETA 3s\n$/);
  p.end('done');
  assert.equal(out.at(-1), 'done\n');
});

test('progress on a terminal: one line redrawn in place with a bar, rate and ETA', () => {
  let now = 0;
  const { out, w } = sink(true);
  const p = new Progress(w, { now: () => now });
  p.update({ phase: 'scan', label: 'basic v1', done: 0, total: 10 });
  now = 1000; p.update({ phase: 'scan', label: 'basic v1', done: 10, total: 10 });
  now = 1500; p.update({ phase: 'run', label: 'basic v1', done: 0, total: 40, detail: 'completed 0' });
  now = 3500; p.update({ phase: 'run', label: 'basic v1', done: 20, total: 40, detail: 'completed 20' });
  p.end();
  const text = out.join('');
  assert.ok(out.filter((s) => s.startsWith('\r\x1b[2K')).length >= 3);
  assert.match(text, /basic v1 scanning \[#+\] 10\/10 offsets 100%/);
  assert.match(text, /basic v1 running \[#+-+\] 20\/40 conversations 50% 10\/s ETA 2s  completed 20/);
  assert.ok(text.endsWith('\n'));
  // A new phase starts on a fresh line.
  assert.ok(out.includes('\n'));
});

test('formatting: ETA, bar, line', () => {
  assert.equal(fmtEta(5), '5s');
  assert.equal(fmtEta(65), '1m05s');
  assert.equal(fmtEta(3 * 3600 + 120), '3h02m');
  assert.equal(fmtEta(Infinity), '?');
  assert.equal(bar(5, 10, 10), '[#####-----]');
  assert.equal(bar(0, 0, 4), '[####]');
  assert.equal(progressLine({ phase: 'run', label: 'x v1', done: 10, total: 10 }, 2, null), 'x v1 running 10/10 conversations 100% 2.0/s');
  // The scan counts offsets (records and transaction markers) and says how many records they held.
  assert.equal(progressLine({ phase: 'scan', label: 'x v1', done: 101, total: 101, detail: '90 records, to run 4' }, NaN, null),
    'x v1 scanning 101/101 offsets 100%  90 records, to run 4');
});
