// The tracker with a cache too small to keep any chat between transactions: every batch loads its
// chats from their summaries (chat record, summary record, remembered seals: no open message), so
// duplicates of open messages are found by the store's point reads and every seal reads its
// conversation's messages back (src/processors/chat-state-layout.ts, completeSealFrom). With a real
// store and a recording context instead of Kafka, a generated backlog (duplicates, reordered and
// late deliveries, a size cap low enough to seal some conversations MAX_SIZE, then wall-clock and
// forced seals) must give exactly what the pure rules give, and exactly what the same tracker
// gives with a cache that keeps every chat.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { COMMAND_HEADER, ConversationTracker } from '../../src/processors/conversation-tracker';
import type { ProcessorContext, InputRecord } from '../../src/runtime/processor';
import { StateStore, type StoreOp } from '../../src/runtime/state-store';
import { loadConfig } from '../../src/config';
import { topicNames } from '../../src/topics';
import { registry } from '../../src/metrics';
import { emptyChatState, rulesConfigFrom, step, type ChatState } from '../../src/sessionization/rules';
import type { ChatMessage } from '../../src/records/types';
import { generateBacklog } from '../support/backlog';

const dirs: string[] = [];
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

const cfg = loadConfig({ CONVERSATION_GAP: '90m', CONVERSATION_SETTLE: '1s', CONVERSATION_MAX_MESSAGES: '40' });
const rules = rulesConfigFrom(cfg);
const topics = topicNames(cfg);
const NOW = Date.UTC(2027, 0, 1);
/** Past every conversation's settle time (CONVERSATION_SETTLE 1 s after NOW, when every message arrived). */
const LATER = NOW + 5000;
const silent = { info() {}, warn() {}, debug() {}, error() {} } as never;
const json = async (v: unknown) => Buffer.from(JSON.stringify(v));
const codec = { decodeChatMessage: async (v: Buffer | null) => JSON.parse(v!.toString('utf8')), encodeSealed: json, encodeLate: json, encodeCommandResult: json };
const counter = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values.reduce((s, v) => s + v.value, 0) ?? 0;

/** Runs the backlog through a tracker with this cache budget; what it emitted, in order, per topic. */
async function run(messages: ChatMessage[], chats: string[], cache: number | { chats: number; parked: number }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-summaries-'));
  dirs.push(dir);
  const store = await StateStore.open(dir, 'chat-state', 0);
  let ops: StoreOp[] = [];
  const out = new Map<string, string[]>();
  let caughtUp = false;
  const ctx: ProcessorContext = {
    partition: 0, store,
    forward: (r) => { if (r.topic !== topics.commandResults) out.set(r.topic, [...(out.get(r.topic) ?? []), r.value!.toString('utf8')]); },
    logChange: (_k, _v, o) => { ops.push(...o); },
    writeLocal: (o) => { ops.push(...o); },
    caughtUp: () => caughtUp, caughtUpSince: () => (caughtUp ? NOW : null), position: () => ({ position: 0, end: 0 }),
  };
  const tracker = new ConversationTracker({ rules, topics, codec, log: silent, now: () => NOW, ...(typeof cache === 'number' ? { cacheBytes: cache } : { cacheBudgets: cache }) });
  await tracker.init(ctx);
  await tracker.restored();
  const commit = async () => { await tracker.flush(); await store.write(ops); ops = []; tracker.committed(); };
  const record = (i: number, key: string, value: unknown, headers: InputRecord['headers'] = {}): InputRecord => ({
    topic: 'in', partition: 0, offset: i, key: Buffer.from(key), value: Buffer.from(JSON.stringify(value)), headers, timestamp: 0,
  });
  for (let i = 0; i < messages.length; i += 25) {
    await tracker.process(messages.slice(i, i + 25).map((m, j) => record(i + j, m.chat_id, m)));
    await commit();
  }
  // Half the chats forced; then, caught up and settled, a punctuation seals the rest by wall clock.
  const forced = chats.slice(0, chats.length >> 1);
  await tracker.process(forced.map((c, i) => record(messages.length + i, c, { command_id: `f${i}`, type: 'FORCE_SEAL', chat_id: c, issued_at: NOW }, { [COMMAND_HEADER]: Buffer.from('1') })));
  await commit();
  caughtUp = true;
  await tracker.punctuate(LATER);
  await commit();
  await store.close(null);
  return out;
}

test('chats loaded from their summaries seal exactly what the rules and a full cache give, duplicates and MAX_SIZE included', async () => {
  const backlog = generateBacklog({
    seed: 7, chats: 25, messages: 3000, gapMs: cfg.gapMs, startMs: Date.UTC(2026, 5, 1), endMs: Date.UTC(2026, 5, 20),
    duplicateRate: 0.05, reorderRate: 0.05, lateRate: 0.01,
  });
  const messages = backlog.messages;
  const chats = [...new Set(messages.map((m) => m.chat_id))];
  // The rules alone: the same messages in order (no wall-clock seal: the partition is not caught
  // up), then half the chats forced and a caught-up tick for all.
  const states = new Map<string, ChatState>(chats.map((c) => [c, emptyChatState(c)]));
  const want = new Map<string, string[]>();
  const emit = (outputs: ReturnType<typeof step>['outputs']) => {
    for (const o of outputs) {
      if (o.kind === 'sealed') want.set(topics.sealed, [...(want.get(topics.sealed) ?? []), JSON.stringify(o.conversation)]);
      if (o.kind === 'late') want.set(topics.late, [...(want.get(topics.late) ?? []), JSON.stringify(o.late)]);
    }
  };
  let duplicates = 0;
  for (const m of messages) {
    const r = step(states.get(m.chat_id)!, { type: 'message', message: { ...m }, now: NOW }, rules);
    duplicates += r.outputs.filter((o) => o.kind === 'duplicate').length;
    emit(r.outputs);
  }
  for (const c of chats.slice(0, chats.length >> 1)) emit(step(states.get(c)!, { type: 'force', now: NOW }, rules).outputs);
  const ticked: string[] = [];
  for (const c of chats) for (const o of step(states.get(c)!, { type: 'tick', now: LATER, caughtUp: true }, rules).outputs) if (o.kind === 'sealed') ticked.push(JSON.stringify(o.conversation));
  want.set(topics.sealed, [...(want.get(topics.sealed) ?? []), ...ticked]);

  const dupsBefore = await counter('chatstats_tracker_duplicates_total');
  const readsBefore = await counter('chatstats_tracker_seal_read_records_total');
  const small = await run(messages, chats, 0);
  const dups = (await counter('chatstats_tracker_duplicates_total')) - dupsBefore;
  const sealReads = (await counter('chatstats_tracker_seal_read_records_total')) - readsBefore;
  const full = await run(messages, chats, 1 << 30);
  // No chat kept between transactions, but every evicted chat's open messages parked: the same
  // outputs, and no seal or load reads a message record.
  const [parkedBefore, readsBefore2, loadsBefore] = await Promise.all(['parked_loads', 'seal_read_records', 'chat_loads'].map((x) => counter(`chatstats_tracker_${x}_total`)));
  const parked = await run(messages, chats, { chats: 0, parked: 1 << 30 });
  const [parkedLoads, parkedSealReads, loads] = await Promise.all(['parked_loads', 'seal_read_records', 'chat_loads'].map((x) => counter(`chatstats_tracker_${x}_total`)));

  const sealed = small.get(topics.sealed) ?? [];
  const n = (want.get(topics.sealed) ?? []).length;
  // The punctuation seals chats in due order, the rules above in chat order: compared as sets.
  assert.equal(sealed.length, n, 'as many sealed conversations as the rules give');
  assert.deepEqual([...sealed].sort(), [...(want.get(topics.sealed) ?? [])].sort(), 'the same sealed conversations, messages included');
  assert.deepEqual(small.get(topics.late) ?? [], want.get(topics.late) ?? [], 'the same late messages, in order');
  assert.equal(dups, duplicates, 'the same duplicates');
  assert.deepEqual(small, full, 'the same outputs, in the same order, as with a cache that keeps every chat');
  assert.ok(sealReads > 0, 'seals read messages back');
  assert.deepEqual(parked, full, 'parked messages: the same outputs, in the same order, as with a cache that keeps every chat');
  assert.equal(parkedSealReads - readsBefore2, 0, 'parked messages: no seal reads a message back');
  assert.ok(parkedLoads - parkedBefore > (loads - loadsBefore) / 2, `parked messages: most loads take them (${parkedLoads - parkedBefore} of ${loads - loadsBefore})`);
  const reasons = new Map<string, number>();
  for (const s of sealed) { const r = (JSON.parse(s) as { seal_reason: string }).seal_reason; reasons.set(r, (reasons.get(r) ?? 0) + 1); }
  assert.ok((reasons.get('MAX_SIZE') ?? 0) > 0 && (reasons.get('NEXT_MESSAGE') ?? 0) > 0 && (reasons.get('GAP_TIMEOUT') ?? 0) > 0 && (reasons.get('FORCED') ?? 0) > 0 && duplicates > 0, JSON.stringify([...reasons]));
  console.log(`# ${messages.length} records, ${chats.length} chats: ${sealed.length} sealed (${JSON.stringify(Object.fromEntries(reasons))}), `
    + `${(small.get(topics.late) ?? []).length} late, ${dups} duplicates; ${ticked.length} sealed by wall clock; ${sealReads} message records read back by seals; `
    + `with parking, ${parkedLoads - parkedBefore} of ${loads - loadsBefore} loads took parked messages`);
});
