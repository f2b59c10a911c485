// Wall-clock sealing (SPEC section 2, rule 2): once caught up, a conversation seals within about
// one punctuation of its deadline; while the partition is behind, a backlog is never split early.
import '../../src/kafkajs-patch'; // before kafkajs loads, as bin/chatstats.js does
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isolatedEnv, configOf, testKafka, waitFor } from '../support/harness';
import { msg, sealed as readSealed, setup as setupLive } from '../support/live-tracker';
import { startApp, type App } from '../../src/app';
import type { RecordCodec } from '../../src/records/codec';
import { topicNames } from '../../src/topics';
import type { Config } from '../../src/config';
import { registry } from '../../src/metrics';

process.env.LOG_LEVEL ??= 'warn';
const kafka = testKafka();
const apps: App[] = [];
after(async () => { for (const a of apps) await a.stop().catch(() => undefined); });

const sealed = (cfg: Config, codec: RecordCodec) => readSealed(kafka, cfg, codec);
const setup = (cfg: Config) => setupLive(kafka, cfg);

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

test('live: conversations seal by wall clock within about one tick of their deadline', async () => {
  // With a 2 s gap the default settle time is the gap itself (min(CONVERSATION_SETTLE, gap)), so
  // a message that reaches the tracker late would move its seal by that lag; this test measures the
  // tick, so the settle time is set below it (tracker-live-import.test covers the settle rule).
  const cfg = configOf(isolatedEnv('wallclock', { CONVERSATION_GAP: '2s', PUNCTUATE_INTERVAL: '100ms', CONVERSATION_SETTLE: '100ms' }));
  const { producer, codec } = await setup(cfg);
  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  await waitFor('tracker ready', 30_000, async () => ((await app.ready()) ? true : undefined));

  // Chats end at staggered times, so their deadlines fall at every phase of the tick.
  const chats = 60;
  for (let c = 0; c < chats; c++) {
    for (let i = 0; i < 3; i++) await producer.send(msg(`live-${c}`, i, Date.now()));
    await new Promise((r) => setTimeout(r, 17));
  }
  await producer.disconnect();
  const got = await waitFor(`${chats} wall-clock seals`, 30_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= chats ? s : undefined;
  });
  assert.equal(got.length, chats);
  const delays = got.map((c) => c.sealed_at - (c.ended_at + c.gap_ms));
  for (const c of got) {
    assert.equal(c.seal_reason, 'GAP_TIMEOUT');
    assert.equal(c.message_count, 3);
  }
  assert.ok(Math.min(...delays) > 0, 'never sealed at or before the deadline');
  const p50 = quantile(delays, 0.5);
  const p99 = quantile(delays, 0.99);
  console.log(`seal delay past the deadline over ${delays.length} conversations (tick 100 ms): p50 ${p50} ms, p99 ${p99} ms, max ${Math.max(...delays)} ms`);
  assert.ok(p99 < 1000, `p99 seal delay ${p99} ms should be under 1 s`);
  await app.stop();
  apps.pop();
});

test('backlog: a partition that is behind is sessionized by event time only, never split early', async () => {
  // One partition, 40 chats x 500 messages one second apart (gap 2 s), all in the past: every
  // deadline is long gone by wall clock, so any wall-clock seal before the backlog is read would
  // split a chat. Several fetches and many ticks happen while the tracker works through it.
  // 1 MiB fetches: the 3.4 MB backlog takes several fetches, with ticks between them.
  const cfg = configOf(isolatedEnv('backlog', { CONVERSATION_GAP: '2s', PUNCTUATE_INTERVAL: '50ms', TOPIC_PARTITIONS: '1', FETCH_MAX_BYTES_PER_PARTITION: '1MiB' }));
  const { producer, codec } = await setup(cfg);
  const chats = 40;
  const perChat = 500;
  const t0 = Date.now() - 3_600_000;
  for (let i = 0; i < perChat; i++) {
    await producer.send(Array.from({ length: chats }, (_, c) => ({
      ...msg(`backlog-${c}`, i, t0 + i * 1000 + c),
      text: `message ${i} ${'x'.repeat(120)}`,
    })));
  }
  await producer.disconnect();

  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  const got = await waitFor(`${chats} conversations`, 60_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= chats ? s : undefined;
  });
  await new Promise((r) => setTimeout(r, 500));
  const all = await sealed(cfg, codec);
  assert.equal(all.length, chats, 'one conversation per chat, none split');
  for (const c of got) {
    assert.equal(c.message_count, perChat);
    assert.equal(c.seal_reason, 'GAP_TIMEOUT');
  }
  await app.stop();
  apps.pop();
});

test('live: a partition written by a transactional producer still counts as caught up', async () => {
  // Each committed transaction leaves a marker at the partition's end that no consumer sees as a
  // record; the tracker's position must move past it, or wall-clock seals would never come.
  const cfg = configOf(isolatedEnv('txn-input', { CONVERSATION_GAP: '1s', PUNCTUATE_INTERVAL: '100ms', TOPIC_PARTITIONS: '2' }));
  const { producer: plain, codec } = await setup(cfg);
  await plain.disconnect();
  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  await waitFor('tracker ready', 30_000, async () => ((await app.ready()) ? true : undefined));
  const txProducer = kafka.producer({ transactionalId: `${cfg.appId}-test-input`, idempotent: true, maxInFlightRequests: 1 });
  await txProducer.connect();
  for (let c = 0; c < 4; c++) {
    const txn = await txProducer.transaction();
    await txn.send({ topic: topicNames(cfg).messages, messages: [0, 1].map((i) => ({ key: `tx-${c}`, value: codec.encodeJson('ChatMessage', msg(`tx-${c}`, i, Date.now())) })) });
    await txn.commit();
  }
  await txProducer.disconnect();
  const got = await waitFor('4 wall-clock seals', 20_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= 4 ? s : undefined;
  });
  assert.deepEqual(got.map((c) => c.seal_reason), ['GAP_TIMEOUT', 'GAP_TIMEOUT', 'GAP_TIMEOUT', 'GAP_TIMEOUT']);
  await app.stop();
  apps.pop();
});

test('live, seal timer: conversations seal at their deadline, not at the next tick', async () => {
  // A 5 s tick: only the task's timer, armed for the next deadline, can seal within it. The chats'
  // last messages all come before their deadlines, so no batch punctuates after one either.
  const cfg = configOf(isolatedEnv('timer', { CONVERSATION_GAP: '2s', PUNCTUATE_INTERVAL: '5s', SEAL_TIMER: 'deadline' }));
  const { producer, codec } = await setup(cfg);
  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  await waitFor('tracker ready', 30_000, async () => ((await app.ready()) ? true : undefined));
  const chats = 30;
  for (let c = 0; c < chats; c++) {
    for (let i = 0; i < 2; i++) await producer.send(msg(`timer-${c}`, i, Date.now()));
    await new Promise((r) => setTimeout(r, 23));
  }
  await producer.disconnect();
  const got = await waitFor(`${chats} wall-clock seals`, 30_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= chats ? s : undefined;
  });
  assert.equal(got.length, chats);
  const delays = got.map((c) => c.sealed_at - (c.ended_at + c.gap_ms));
  assert.ok(Math.min(...delays) > 0, 'never sealed at or before the deadline');
  const p50 = quantile(delays, 0.5);
  const p99 = quantile(delays, 0.99);
  console.log(`seal delay past the deadline over ${delays.length} conversations (seal timer, tick 5 s): p50 ${p50} ms, p99 ${p99} ms`);
  assert.ok(p99 < 1000, `p99 seal delay ${p99} ms: the timer, not the 5 s tick, should seal`);
  // Timer punctuations that seal write the same two partitions (sealed, changelog) each time: from
  // the third on, their transactions are begun, and those partitions added, before the punctuation runs.
  const early = (await registry.getSingleMetric('chatstats_transactions_begun_early_total')!.get()).values;
  const committedEarly = early.find((v) => v.labels.result === 'committed')?.value ?? 0;
  console.log(`transactions begun early: ${early.map((v) => `${v.labels.result} ${v.value}`).join(', ')}`);
  assert.ok(committedEarly > 0, 'some transactions were begun early and committed');
  await app.stop();
  apps.pop();
});

test('burst: deadlines that coincide are sealed in bounded transactions, each conversation once', async () => {
  const cfg = configOf(isolatedEnv('burst', { CONVERSATION_GAP: '2s', PUNCTUATE_INTERVAL: '1s', TOPIC_PARTITIONS: '1', PUNCTUATE_MAX_SEALS: '500' }));
  const { producer, codec } = await setup(cfg);
  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  await waitFor('tracker ready', 30_000, async () => ((await app.ready()) ? true : undefined));
  const chats = 3000;
  const at = Date.now();
  for (let c = 0; c < chats; c += 500) {
    await producer.send(Array.from({ length: 500 }, (_, k) => msg(`burst-${c + k}`, 0, at)));
  }
  await producer.disconnect();
  const got = await waitFor(`${chats} wall-clock seals`, 60_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= chats ? s : undefined;
  });
  await new Promise((r) => setTimeout(r, 500));
  const all = await sealed(cfg, codec);
  assert.equal(all.length, chats, 'none sealed twice');
  assert.equal(new Set(all.map((c) => c.chat_id)).size, chats);
  // One punctuation seals at one `now`: group by sealed_at to see the transactions.
  const perPunctuation = new Map<number, number>();
  for (const c of got) perPunctuation.set(c.sealed_at, (perPunctuation.get(c.sealed_at) ?? 0) + 1);
  const sizes = [...perPunctuation.values()];
  const times = [...perPunctuation.keys()].sort((a, b) => a - b).map((t) => `${t - (at + 2000)} ms: ${perPunctuation.get(t)}`);
  console.log(`burst of ${chats} coinciding deadlines: ${sizes.length} punctuations (past the deadline: ${times.join(', ')})`);
  assert.ok(sizes.every((n) => n <= 500), `at most 500 per punctuation: ${sizes.join(', ')}`);
  assert.ok(sizes.length >= chats / 500);
  await app.stop();
  apps.pop();
});
