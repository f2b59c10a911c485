// The tracker processor on one partition of the version-1 fixture (tests/fixtures/v1-changelog),
// with a real store and a recording context instead of Kafka: a task converts the version-1
// records and is closed cleanly before its first commit; the next task on the kept store processes
// phase 2 and commits. A full restore of that changelog as compaction leaves it once tombstones have
// expired (the last value of each key, tombstoned keys gone) must give every chat as it was.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConversationTracker } from '../../src/processors/conversation-tracker';
import type { ProcessorContext, InputRecord } from '../../src/runtime/processor';
import type { RawRecord } from '../../src/runtime/partition-reader';
import { StateStore, type StoreOp } from '../../src/runtime/state-store';
import { loadConfig } from '../../src/config';
import { topicNames } from '../../src/topics';
import { partitionForKey } from '../../src/records/partitioner';
import { rulesConfigFrom } from '../../src/sessionization/rules';
import { changelogValue, fixturePhases, loadFixture } from '../support/v1-fixture';

const dirs: string[] = [];
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });
const tmp = () => { const d = mkdtempSync(path.join(os.tmpdir(), 'chatstats-upgrade-unit-')); dirs.push(d); return d; };

const P = 0;
const cfg = loadConfig({ CONVERSATION_GAP: '90m', CONVERSATION_SETTLE: '1s' });
const rules = rulesConfigFrom(cfg);
const silent = { info() {}, warn() {}, debug() {}, error() {} } as never;
const json = async (v: unknown) => Buffer.from(JSON.stringify(v));
const codec = { decodeChatMessage: async (v: Buffer | null) => JSON.parse(v!.toString('utf8')), encodeSealed: json, encodeLate: json, encodeCommandResult: json };

interface Logged { key: Buffer; value: Buffer | null }

/** A task's processor on `dir`, restored from `records`; `commit()` applies what its flushes wrote, as a committed transaction would. */
async function task(dir: string, records: Logged[], log: Logged[]) {
  const store = await StateStore.open(dir, 'chat-state', P);
  let ops: StoreOp[] = [];
  const ctx: ProcessorContext = {
    partition: P, store, forward: () => undefined,
    logChange: (key, value, o) => { log.push({ key: Buffer.from(key), value }); ops.push(...o); },
    writeLocal: (o) => { ops.push(...o); },
    caughtUp: () => false, caughtUpSince: () => null, position: () => ({ position: 0, end: 0 }),
  };
  const tracker = new ConversationTracker({ rules, topics: topicNames(cfg), codec, log: silent });
  await tracker.init(ctx);
  await tracker.restore(records.map((r, i): RawRecord => ({ key: r.key, value: r.value, offset: String(i), timestamp: '0' })));
  await tracker.restored();
  return { tracker, store, commit: async () => { await store.write(ops); ops = []; tracker.committed(); } };
}

test('a conversion closed before its first commit is logged by the next task: a restore after compaction gives the same chats', async () => {
  const fixture = loadFixture();
  const v1: Logged[] = fixture.changelog.filter((r) => r.p === P).map((r) => ({ key: Buffer.from(r.k), value: changelogValue(r) }));
  const chats = [...new Set(v1.map((r) => r.key.toString()))];
  const log: Logged[] = [];

  const dir = tmp();
  const first = await task(dir, v1, log);
  await first.store.close(v1.length); // clean, before any commit
  assert.equal(log.length, 0);

  const next = await task(dir, [], log);
  const input = fixturePhases(rules).phase2.filter((m) => partitionForKey(m.chat_id, cfg.topicPartitions) === P);
  await next.tracker.process(input.map((m, i): InputRecord => ({
    topic: 'in', partition: P, offset: i, key: Buffer.from(m.chat_id), value: Buffer.from(JSON.stringify(m)), headers: {}, timestamp: 0,
  })));
  await next.tracker.flush();
  await next.commit();
  const want = new Map<string, string>();
  // What a chat is, whether it is held with its open messages or read from its summaries.
  const view = async (t: ConversationTracker, c: string) => {
    const d = await t.describeChat(c);
    const s = d.state;
    return JSON.stringify({ open: d.open, chatType: s?.chatType, clock: s?.clock, reach: [s?.sealedReach, s?.forgottenReach], sealed: s?.sealed });
  };
  for (const c of chats) want.set(c, await view(next.tracker, c));
  await next.store.close(v1.length + log.length);

  const full = [...v1, ...log];
  const last = new Map<string, Logged>();
  for (const r of full) last.set(r.key.toString(), r);
  const compacted = full.filter((r) => last.get(r.key.toString()) === r && r.value !== null);
  const restored = await task(tmp(), compacted, []);
  for (const c of chats) assert.equal(await view(restored.tracker, c), want.get(c), `chat ${c} after a full restore of the compacted changelog`);
  await restored.store.close(null);
  const tombstoned = new Set(log.filter((r) => r.value === null).map((r) => r.key.toString()));
  assert.deepEqual(chats.filter((c) => !tombstoned.has(c)), [], 'every version-1 key tombstoned');
  console.log(`partition ${P}: ${v1.length} version-1 records, ${log.length} logged by the next task, ${compacted.length} left by compaction; ${chats.length} chats restored as they were`);
});
