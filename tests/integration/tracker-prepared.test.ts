// SEAL_TIMER=prepare against a real broker: a punctuation done ahead of its deadline and committed
// at it seals each conversation once, and stands only when nothing the task had not processed at
// the moment could have changed it. A long lead (SEAL_LEAD_MIN) holds the prepared transaction open
// for over a second, so that messages can be produced into that window on purpose.
import '../../src/kafkajs-patch'; // before kafkajs loads, as bin/chatstats.js does
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isolatedEnv, configOf, testKafka, waitFor } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { startApp, type App } from '../../src/app';
import { msg, sealed as readSealed, setup } from '../support/live-tracker';
import { topicNames } from '../../src/topics';
import type { RecordCodec } from '../../src/records/codec';
import type { ChatMessageProducer } from '../../src/producer';
import type { LateMessage } from '../../src/records/types';
import type { Config } from '../../src/config';
import { registry } from '../../src/metrics';

process.env.LOG_LEVEL ??= 'warn';
const kafka = testKafka();
const apps: App[] = [];
after(async () => { for (const a of apps) await a.stop().catch(() => undefined); });

async function start(name: string, env: Record<string, string>): Promise<{ cfg: Config; app: App; producer: ChatMessageProducer; codec: RecordCodec }> {
  const cfg = configOf(isolatedEnv(name, { CONVERSATION_GAP: '3s', CONVERSATION_SETTLE: '100ms', PUNCTUATE_INTERVAL: '5s', SEAL_TIMER: 'prepare', TOPIC_PARTITIONS: '1', ...env }));
  const { producer, codec } = await setup(kafka, cfg);
  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  await waitFor('tracker ready', 30_000, async () => ((await app.ready()) ? true : undefined));
  return { cfg, app, producer, codec };
}

const sealed = (cfg: Config, codec: RecordCodec) => readSealed(kafka, cfg, codec);

async function late(cfg: Config, codec: RecordCodec): Promise<LateMessage[]> {
  return Promise.all((await readTopic(kafka, topicNames(cfg).late)).map((r) => codec.decode('LateMessage', r.value)));
}

async function prepared(): Promise<{ committed: number; aborted: number }> {
  const metric = registry.getSingleMetric('chatstats_prepared_punctuations_total'); // created with the first task
  const values = metric ? (await metric.get()).values : [];
  const of = (result: string) => values.find((v) => v.labels.result === result)?.value ?? 0;
  return { committed: of('committed'), aborted: of('aborted') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('prepare: conversations seal once, at their deadline, from punctuations committed at it', async () => {
  const before = await prepared();
  const { cfg, app, producer, codec } = await start('prepared', { TOPIC_PARTITIONS: '3', CONVERSATION_GAP: '2s' });
  const chats = 30;
  // When each chat's last message was acknowledged: a send slowed by a loaded machine (the first
  // one connects the producer) delivers a message after its deadline, which the timer then seals
  // as soon as the message is read, not at the deadline.
  const acked = new Map<string, number>();
  for (let c = 0; c < chats; c++) {
    for (let i = 0; i < 2; i++) await producer.send(msg(`prep-${c}`, i, Date.now()));
    acked.set(`prep-${c}`, Date.now());
    await sleep(23);
  }
  await producer.disconnect();
  const got = await waitFor(`${chats} wall-clock seals`, 30_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= chats ? s : undefined;
  });
  await sleep(500);
  const all = await sealed(cfg, codec);
  assert.equal(all.length, chats, 'none sealed twice');
  assert.equal(new Set(all.map((c) => c.chat_id)).size, chats);
  for (const c of got) {
    assert.equal(c.seal_reason, 'GAP_TIMEOUT');
    assert.equal(c.message_count, 2);
    assert.ok(c.sealed_at > c.ended_at + c.gap_ms, `${c.chat_id} sealed after its deadline (rule 2: now > deadline)`);
    const due = Math.max(c.ended_at + c.gap_ms, acked.get(c.chat_id)!);
    assert.ok(c.sealed_at - due < 1000, `${c.chat_id} sealed by the timer, not the 5 s tick: ${c.sealed_at - due} ms past max(deadline, acknowledged)`);
  }
  const after = await prepared();
  console.log(`prepared punctuations: committed ${after.committed - before.committed}, aborted ${after.aborted - before.aborted}`);
  assert.ok(after.committed > before.committed, 'seals came from prepared punctuations');
  await app.stop();
  apps.pop();
});

test('prepare: a message of a chat that the waiting punctuation seals aborts it, and joins its conversation', async () => {
  // The lead is at least 1.5 s: the punctuation of a deadline at t0 + 3 s is prepared at about
  // t0 + 1.5 s and waits, its transaction open, until t0 + 3 s.
  const { cfg, app, producer, codec } = await start('prepared-abort', { SEAL_LEAD_MIN: '1500ms', SEAL_LEAD_MAX: '2s' });
  const before = await prepared();
  const t0 = Date.now();
  await producer.send([msg('x', 0, t0), msg('x', 1, t0), msg('y', 0, t0)]);
  await sleep(2200);
  // Within x's gap: it joins x's open conversation, which the waiting punctuation was to seal.
  await producer.send(msg('x', 2, Date.now()));
  await producer.disconnect();
  const got = await waitFor('x and y sealed', 30_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= 2 ? s : undefined;
  });
  await sleep(500);
  const all = await sealed(cfg, codec);
  assert.equal(all.length, 2, 'each sealed once');
  const x = got.find((c) => c.chat_id === 'x')!;
  const y = got.find((c) => c.chat_id === 'y')!;
  assert.equal(x.message_count, 3, 'the message that came while the punctuation waited joined x');
  assert.equal(x.seal_reason, 'GAP_TIMEOUT');
  assert.equal(y.message_count, 1);
  assert.ok(y.sealed_at > y.ended_at + y.gap_ms);
  assert.deepEqual(await late(cfg, codec), [], 'nothing late');
  const after = await prepared();
  assert.ok(after.aborted > before.aborted, 'the prepared punctuation was aborted');
  await app.stop();
  apps.pop();
});

test('prepare: a message of another chat, arriving while the punctuation waits, does not stop it', async () => {
  const { cfg, app, producer, codec } = await start('prepared-other', { SEAL_LEAD_MIN: '1500ms', SEAL_LEAD_MAX: '2s' });
  const before = await prepared();
  const t0 = Date.now();
  await producer.send([msg('p', 0, t0), msg('p', 1, t0)]);
  await sleep(2200);
  const zAt = Date.now();
  await producer.send(msg('z', 0, zAt));
  await producer.disconnect();
  const got = await waitFor('p and z sealed', 30_000, async () => {
    const s = await sealed(cfg, codec);
    return s.length >= 2 ? s : undefined;
  });
  const p = got.find((c) => c.chat_id === 'p')!;
  const z = got.find((c) => c.chat_id === 'z')!;
  assert.equal(p.message_count, 2);
  assert.equal(z.message_count, 1);
  assert.ok(p.sealed_at > p.ended_at + p.gap_ms);
  assert.ok(p.sealed_at - (p.ended_at + p.gap_ms) < 200, `p sealed at its deadline (${p.sealed_at - (p.ended_at + p.gap_ms)} ms past it)`);
  assert.ok(p.sealed_at < zAt + z.gap_ms, 'p sealed before z');
  const after = await prepared();
  assert.ok(after.committed > before.committed, 'the prepared punctuation committed');
  assert.equal(after.aborted, before.aborted, 'none aborted');
  await app.stop();
  apps.pop();
});
