// The upgrade from state version 2, on every partition of the version-2 fixture
// (tests/fixtures/v2-changelog: the version-2 tracker's changelog after phase 1 of the backlog of
// tests/support/v1-fixture.ts, and phase 1's sealed conversations). With a real store and a
// recording context instead of Kafka, a task restores the fixture, processes phase 2 and then
// force-seals every chat. What the version-2 tracker sealed plus what this one seals must be
// exactly what the pure rules give over both phases; and a full restore of the compacted
// changelog (fixture plus this task's writes) must give every chat the same open conversations.
// `open` views are compared, not the states: the in-memory representation is what is changing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { COMMAND_HEADER, ConversationTracker } from '../../src/processors/conversation-tracker';
import type { ProcessorContext, InputRecord } from '../../src/runtime/processor';
import type { RawRecord } from '../../src/runtime/partition-reader';
import { StateStore, type StoreOp } from '../../src/runtime/state-store';
import { registry } from '../../src/metrics';
import { partitionForKey } from '../../src/records/partitioner';
import { emptyChatState, step, type ChatState, type Output } from '../../src/sessionization/rules';
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import { fixturePhases, keyHash } from '../support/v1-fixture';
import { V2_BATCH, V2_NOW, v2Setup } from '../fixtures/v2-changelog/make';

const V2_DIR = path.resolve(__dirname, '../../../tests/fixtures/v2-changelog');

const dirs: string[] = [];
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });
const tmp = () => { const d = mkdtempSync(path.join(os.tmpdir(), 'chatstats-upgrade-v2-')); dirs.push(d); return d; };

const { cfg, rules, topics, silent, codec } = v2Setup();
const jsonLines = <T>(file: string): T[] => readFileSync(path.join(V2_DIR, file), 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as T);

interface Logged { key: Buffer; value: Buffer | null }

/** A task's processor on a fresh store, restored from `records`; `commit()` applies what its flushes wrote, as a committed transaction would. */
async function task(p: number, records: Logged[], log: Logged[], out: Map<string, Buffer[]>) {
  const store = await StateStore.open(tmp(), 'chat-state', p);
  let ops: StoreOp[] = [];
  const ctx: ProcessorContext = {
    partition: p, store,
    forward: (r) => { out.set(r.topic, [...(out.get(r.topic) ?? []), r.value!]); },
    logChange: (key, value, o) => { log.push({ key: Buffer.from(key), value }); ops.push(...o); },
    writeLocal: (o) => { ops.push(...o); },
    caughtUp: () => false, caughtUpSince: () => null, position: () => ({ position: 0, end: 0 }),
  };
  const tracker = new ConversationTracker({ rules, topics, codec, log: silent, now: () => V2_NOW });
  await tracker.init(ctx);
  await tracker.restore(records.map((r, i): RawRecord => ({ key: r.key, value: r.value, offset: String(i), timestamp: '0' })));
  await tracker.restored();
  return { tracker, store, commit: async () => { await store.write(ops); ops = []; tracker.committed(); } };
}

/** The pure rules on one partition's messages (per chat, in order), then a force seal per chat: outputs split by phase. */
function expected(phase1: ChatMessage[], phase2: ChatMessage[], chats: string[]) {
  const states = new Map<string, ChatState>(chats.map((c) => [c, emptyChatState(c)]));
  const run = (c: string, ev: Parameters<typeof step>[1]) => { const r = step(states.get(c)!, ev, rules); states.set(c, r.state); return r.outputs; };
  // `step` mutates the messages it keeps: hand it copies.
  const one = phase1.flatMap((m) => run(m.chat_id, { type: 'message', message: { ...m }, now: V2_NOW }));
  const two = phase2.flatMap((m) => run(m.chat_id, { type: 'message', message: { ...m }, now: V2_NOW }));
  const force = chats.flatMap((c) => run(c, { type: 'force', now: V2_NOW }));
  return { one, two: [...two, ...force] };
}
const sealedOf = (o: Output[]) => o.flatMap((x) => (x.kind === 'sealed' ? [x.conversation] : []));
const lateOf = (o: Output[]) => o.flatMap((x) => (x.kind === 'late' ? [x.late] : []));
const lateId = (l: LateMessage) => `${l.message.message_id}>${l.would_be_conversation_id ?? ''}`;
const sorted = (xs: string[]) => [...xs].sort();
const duplicatesCounted = async () => (await registry.getSingleMetric('chatstats_tracker_duplicates_total')?.get())?.values[0]?.value ?? 0;

test('a task restoring a state-version-2 changelog goes on exactly: seals, late messages, duplicates and a second restore', async () => {
  const fixture = jsonLines<{ p: number; k: string; v: string | null }>('changelog.jsonl');
  const fixtureSealed = jsonLines<{ conversation_id: string; key_sha256: string }>('sealed.jsonl');
  const { phase1, phase2 } = fixturePhases(rules);
  const onP = (p: number) => (m: ChatMessage) => partitionForKey(m.chat_id, cfg.topicPartitions) === p;
  const totals = { restored: 0, phase2: 0, expected: 0, got: 0, late: 0, duplicates: 0, fixtureSealed: 0, open: 0 };

  for (let p = 0; p < cfg.topicPartitions; p++) {
    const v2: Logged[] = fixture.filter((r) => r.p === p).map((r) => ({ key: Buffer.from(r.k), value: r.v === null ? null : Buffer.from(r.v, 'utf8') }));
    const one = phase1.filter(onP(p));
    const input = phase2.filter(onP(p));
    const chats = [...new Set([...one, ...input].map((m) => m.chat_id))];
    const log: Logged[] = [];
    const out = new Map<string, Buffer[]>();
    const t = await task(p, v2, log, out);

    // Phase 2, as the version-2 tracker ran phase 1: batches of V2_BATCH, each its own transaction.
    const dupBefore = await duplicatesCounted();
    for (let i = 0; i < input.length; i += V2_BATCH) {
      await t.tracker.process(input.slice(i, i + V2_BATCH).map((m, j): InputRecord => ({
        topic: 'in', partition: p, offset: i + j, key: Buffer.from(m.chat_id), value: Buffer.from(JSON.stringify(m)), headers: {}, timestamp: 0,
      })));
      await t.tracker.flush();
      await t.commit();
    }
    const duplicates = (await duplicatesCounted()) - dupBefore;

    // The open conversations before the force seals, and the changelog as it stands then.
    const openBefore = new Map<string, unknown>();
    for (const c of chats) {
      const open = (await t.tracker.describeChat(c)).open;
      openBefore.set(c, open);
      totals.open += open.length;
    }
    const logged = [...log];

    // One FORCE_SEAL per chat: everything still open is sealed, so every conversation is compared.
    await t.tracker.process(chats.map((c, i): InputRecord => ({
      topic: 'commands', partition: p, offset: input.length + i, key: Buffer.from(c), headers: { [COMMAND_HEADER]: Buffer.from('1') }, timestamp: 0,
      value: Buffer.from(JSON.stringify({ command_id: `force-${p}-${i}`, type: 'FORCE_SEAL', chat_id: c, issued_at: V2_NOW })),
    })));
    await t.tracker.flush();
    await t.commit();
    await t.store.close(null);

    // Seals: the fixture's (phase 1, by the version-2 tracker) plus this task's = the rules' over both phases.
    const want = expected(one, input, chats);
    const wantSealed = [...sealedOf(want.one), ...sealedOf(want.two)];
    const wantHashes = new Set(wantSealed.map(keyHash));
    const wantIds = new Set(wantSealed.map((c) => c.conversation_id));
    // sealed.jsonl does not name partitions: this partition's lines are those of its conversations (all must be claimed, checked below).
    const mine = fixtureSealed.filter((s) => wantHashes.has(s.key_sha256) || wantIds.has(s.conversation_id));
    const got = (out.get(topics.sealed) ?? []).map((v) => JSON.parse(v.toString('utf8')) as ConversationSealed);
    assert.deepEqual(sorted([...mine.map((s) => s.key_sha256), ...got.map(keyHash)]), sorted(wantSealed.map(keyHash)), `partition ${p}: sealed conversations (keyHash)`);
    assert.deepEqual(sorted([...mine.map((s) => s.conversation_id), ...got.map((c) => c.conversation_id)]), sorted(wantSealed.map((c) => c.conversation_id)), `partition ${p}: sealed conversation ids`);

    // Late messages and duplicates: only phase 2's are this task's. (Phase 1 has late messages too,
    // same-millisecond arrivals after a seal, but the fixture does not list them: not compared.)
    const gotLate = (out.get(topics.late) ?? []).map((v) => JSON.parse(v.toString('utf8')) as LateMessage);
    assert.deepEqual(sorted(gotLate.map(lateId)), sorted(lateOf(want.two).map(lateId)), `partition ${p}: late messages`);
    assert.equal(duplicates, want.two.filter((o) => o.kind === 'duplicate').length, `partition ${p}: duplicates counted`);

    // A full restore of the changelog as compaction leaves it (last value per key, tombstoned keys gone).
    const full = [...v2, ...logged];
    const last = new Map<string, Logged>();
    for (const r of full) last.set(r.key.toString(), r);
    const compacted = full.filter((r) => last.get(r.key.toString()) === r && r.value !== null);
    const again = await task(p, compacted, [], new Map());
    for (const c of chats) assert.deepEqual((await again.tracker.describeChat(c)).open, openBefore.get(c), `partition ${p}, chat ${c}: open conversations after a full restore`);
    await again.store.close(null);

    totals.restored += v2.length; totals.phase2 += input.length; totals.expected += wantSealed.length;
    totals.got += mine.length + got.length; totals.late += gotLate.length; totals.duplicates += duplicates; totals.fixtureSealed += mine.length;
  }
  assert.equal(totals.fixtureSealed, fixtureSealed.length, 'every sealed conversation of the fixture is one the rules expect');
  console.log(`${cfg.topicPartitions} partitions: ${totals.restored} version-2 records restored, ${totals.phase2} phase-2 messages; sealed expected ${totals.expected}, got ${totals.got} (${totals.fixtureSealed} from the fixture); ${totals.late} late, ${totals.duplicates} duplicates; ${totals.open} open conversations as before after a full restore`);
});
