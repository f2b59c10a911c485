// The tracker's side of the seal timer, without Kafka: nextDueAt() from the deadline index (the
// earliest ended_at + gap + grace, + 1 ms: rule 2 seals when now > deadline), and punctuations
// bounded to maxSealsPerPunctuation chats, leaving the rest due for the next one. A real RocksDB
// store with a minimal context that applies the store writes at commit, as the task does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ConversationTracker } from '../../src/processors/conversation-tracker';
import type { InputRecord, ProcessorContext } from '../../src/runtime/processor';
import type { RawRecord } from '../../src/runtime/partition-reader';
import { StateStore, type StoreOp } from '../../src/runtime/state-store';
import type { RulesConfig } from '../../src/sessionization/rules';
import type { ChatMessage } from '../../src/records/types';
import { topicNames } from '../../src/topics';

const GAP = 100;
const GRACE = 7;
const T0 = Date.UTC(2026, 0, 1);
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/**
 * A tracker on a fresh store; with `restoreFrom`, restored from those changelog records first, in
 * slices of `slice` records (as a restore hands the fetched slices over).
 */
async function setup(maxSeals?: number, restoreFrom?: { key: string; value: Buffer | null }[], slice = 1000) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-due-'));
  dirs.push(dir);
  const store = await StateStore.open(dir, 'chat-state', 0);
  let pending: StoreOp[] = [];
  const sealed: string[] = [];
  const changelog: { key: string; value: Buffer | null }[] = [];
  let caughtUp = true;
  const ctx: ProcessorContext = {
    partition: 0, store,
    forward: (r) => { if (r.topic.endsWith('sealed')) sealed.push(JSON.parse(r.value!.toString()).chat_id); },
    logChange: (k, v, ops) => { changelog.push({ key: k, value: v }); pending.push(...ops); },
    writeLocal: (ops) => { pending.push(...ops); },
    caughtUp: () => caughtUp,
    caughtUpSince: () => 0,
    position: () => ({ position: 0, end: 0 }),
  };
  // No settle time, and the tracker's clock (the messages' arrival) pinned before every tick this
  // test makes: the due times are the deadlines + 1 ms.
  const rules: RulesConfig = { gapMs: GAP, gapByTypeMs: {}, graceMs: GRACE, settleMs: 0, maxMessages: 10_000, maxBytes: 900_000, maxFutureSkewMs: 3_600_000 };
  const tracker = new ConversationTracker({
    rules, topics: topicNames({ topicPrefix: 't.', appId: 't' }), log: pino({ level: 'silent' }), now: () => T0,
    maxSealsPerPunctuation: maxSeals,
    codec: {
      decodeChatMessage: async (v) => JSON.parse(v!.toString('utf8')),
      encodeSealed: async (v) => Buffer.from(JSON.stringify(v)),
      encodeLate: async (v) => Buffer.from(JSON.stringify(v)),
      encodeCommandResult: async (v) => Buffer.from(JSON.stringify(v)),
    },
  });
  await tracker.init(ctx);
  const records = (restoreFrom ?? []).map((r, i): RawRecord => ({ key: Buffer.from(r.key), value: r.value, offset: String(i), timestamp: '0' }));
  for (let i = 0; i < records.length; i += slice) await tracker.restore(records.slice(i, i + slice));
  await tracker.restored();
  const commit = async () => { await tracker.flush(); const ops = pending; pending = []; await store.write(ops); tracker.committed(); };
  let offset = 0;
  const send = async (msgs: { chat: string; at: number }[]) => {
    const records: InputRecord[] = msgs.map(({ chat, at }) => {
      const m: ChatMessage = {
        message_id: `${chat}@${at}`, chat_id: chat, sender_id: 'u', sent_at: at, text: 'hi',
        chat_type: null, is_from_me: false, reply_to_message_id: null, account_id: null,
      };
      return { topic: 'in', partition: 0, offset: offset++, key: Buffer.from(chat), value: Buffer.from(JSON.stringify(m)), headers: {}, timestamp: 0 };
    });
    await tracker.process(records);
    await commit();
  };
  const punctuate = async (now: number) => { await tracker.punctuate(now); await commit(); };
  return { tracker, send, punctuate, sealed, changelog, store, behind: () => { caughtUp = false; } };
}

test('nextDueAt is the earliest deadline + 1 ms, from committed state, and moves as chats seal or go on', async () => {
  const t = await setup();
  assert.equal(await t.tracker.nextDueAt(), null, 'nothing open');
  await t.send([{ chat: 'a', at: T0 + 1000 }, { chat: 'b', at: T0 + 2000 }, { chat: 'c', at: T0 + 3000 }]);
  assert.equal(await t.tracker.nextDueAt(), T0 + 1000 + GAP + GRACE + 1);
  // At the deadline itself nothing seals (rule 2 needs now > deadline) ...
  await t.punctuate(T0 + 1000 + GAP + GRACE);
  assert.deepEqual(t.sealed, []);
  // ... from nextDueAt on, it does.
  await t.punctuate(T0 + 1000 + GAP + GRACE + 1);
  assert.deepEqual(t.sealed, ['a']);
  assert.equal(await t.tracker.nextDueAt(), T0 + 2000 + GAP + GRACE + 1);
  // A message that joins b moves b's deadline; c's is now the earliest.
  await t.send([{ chat: 'b', at: T0 + 2050 }, { chat: 'b', at: T0 + 3500 }]);
  assert.equal(await t.tracker.nextDueAt(), T0 + 3000 + GAP + GRACE + 1);
  assert.deepEqual(t.sealed, ['a', 'b'], 'b sealed by its next message (rule 1), its new conversation is open');
  await t.store.close(null);
});

test('a burst of due chats is sealed in bounded punctuations; the rest stays due', async () => {
  const t = await setup(400);
  const chats = Array.from({ length: 1000 }, (_, i) => ({ chat: `c${String(i).padStart(4, '0')}`, at: T0 + 5000 }));
  for (let i = 0; i < chats.length; i += 250) await t.send(chats.slice(i, i + 250));
  const now = T0 + 10_000;
  const due = await t.tracker.nextDueAt();
  assert.equal(due, T0 + 5000 + GAP + GRACE + 1);
  const perPunctuation: number[] = [];
  while ((await t.tracker.nextDueAt()) !== null) {
    const before = t.sealed.length;
    await t.punctuate(now);
    perPunctuation.push(t.sealed.length - before);
    assert.ok(perPunctuation.length < 10);
  }
  assert.deepEqual(perPunctuation, [400, 400, 200]);
  assert.equal(new Set(t.sealed).size, 1000, 'each chat sealed once');
  await t.store.close(null);
});

test('a tracker that is behind seals nothing by wall clock, whatever is due', async () => {
  const t = await setup();
  await t.send([{ chat: 'a', at: T0 }]);
  t.behind();
  await t.punctuate(T0 + 1_000_000);
  assert.deepEqual(t.sealed, []);
  assert.equal(await t.tracker.nextDueAt(), T0 + GAP + GRACE + 1);
  await t.store.close(null);
});

test('a restore of the whole changelog, in slices, rebuilds the deadline index: the same next due time and the same seals after it', async () => {
  const t = await setup();
  // 2,500 chats (more than one rebuild chunk of 1,000); every third chat's first conversation is
  // sealed by a later message (its records written and then tombstoned, sometimes in one slice).
  const chat = (i: number) => `k${String(i).padStart(4, '0')}`;
  for (let from = 0; from < 2500; from += 500) {
    await t.send(Array.from({ length: 500 }, (_, j) => ({ chat: chat(from + j), at: T0 + 10 * (from + j) })));
  }
  await t.send(Array.from({ length: 834 }, (_, j) => ({ chat: chat(3 * j), at: T0 + 10 * 3 * j + 5 * GAP })));
  const sealedBefore = t.sealed.length;
  assert.equal(sealedBefore, 834, 'sealed by their next message');
  const log = t.changelog.slice();
  const due = await t.tracker.nextDueAt();
  const open = t.tracker.openConversationCount;
  assert.equal(open, 2500);
  const times = Array.from({ length: 27 }, (_, i) => T0 + 997 * i);
  for (const now of times) await t.punctuate(now);
  const want = t.sealed.slice(sealedBefore);
  assert.equal(want.length, 2500, 'every open conversation sealed by wall clock');
  for (const slice of [1, 7, 100_000]) {
    const r = await setup(undefined, log, slice);
    assert.equal(await r.tracker.nextDueAt(), due, `slices of ${slice}: next due time`);
    assert.equal(r.tracker.openConversationCount, open, `slices of ${slice}: open conversations`);
    // Punctuated at the same times, the restored tracker seals the same chats in the same order.
    for (const now of times) await r.punctuate(now);
    assert.deepEqual(r.sealed, want, `slices of ${slice}: sealed by wall clock`);
    await r.store.close(null);
  }
  await t.store.close(null);
});

test('index reads start at a floor that rises as chats seal and falls for history indexed below it', async () => {
  const t = await setup();
  await t.send(Array.from({ length: 50 }, (_, i) => ({ chat: `f${i}`, at: T0 + 1000 + 10 * i })));
  // The first 40 seal; the floor rises to the 41st chat's due time (their tombstones lie below it).
  await t.punctuate(T0 + 1000 + 10 * 39 + GAP + GRACE + 1);
  assert.equal(t.sealed.length, 40);
  assert.equal(await t.tracker.nextDueAt(), T0 + 1000 + 10 * 40 + GAP + GRACE + 1);
  // History of another chat, due below the floor (at its arrival, T0: its deadline has passed): found, and sealed first.
  await t.send([{ chat: 'old', at: T0 - 5000 }]);
  assert.equal(await t.tracker.nextDueAt(), T0);
  await t.punctuate(T0);
  assert.deepEqual(t.sealed.slice(40), ['old']);
  assert.equal(await t.tracker.nextDueAt(), T0 + 1000 + 10 * 40 + GAP + GRACE + 1);
  // Everything sealed: the floor says the index is empty without reading it; a new chat is found.
  await t.punctuate(T0 + 100_000);
  assert.equal(t.sealed.length, 51);
  assert.equal(await t.tracker.nextDueAt(), null);
  await t.send([{ chat: 'new', at: T0 + 200 }]);
  assert.equal(await t.tracker.nextDueAt(), T0 + 200 + GAP + GRACE + 1);
  await t.store.close(null);
});
