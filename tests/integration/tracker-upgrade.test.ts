// Upgrade from state version 1 (whole JSON ChatState per chat under the bare chat id, `s:<chat>`
// in the store; commit 7cd4857) to the per-record layout of chat-state-layout.ts, with a changelog
// and stores made by the version-1 tracker itself (tests/fixtures/v1-changelog/, see make.ts
// there): the version-1 tracker processed phase 1 of a fixed backlog and stopped cleanly.
//
//   (a) changelog path: a new state directory, so the new tracker restores the version-1 records
//       from the changelog and converts them;
//   (b) store path: the version-1 stores as they were after the clean stop (`s:` entries, the
//       index and the open count, with a checkpoint at the changelog's end), converted in place.
//
// Each case: phase-1 input with the group's offsets committed at its end, the version-1 changelog,
// then phase 2, all in the topics before the new tracker starts (the backlog lies in the past: a
// tracker that caught up with phase 1 would seal every open conversation by wall clock at once).
// The sealed conversations of the fixture (phase 1, sealed by version 1) and of the new tracker
// must together be exactly what the rules give for phase 1 + phase 2: each once, same ids and
// messages; the late messages likewise. The changelog must then hold a tombstone for every
// version-1 key. Then live messages open conversations in a few chats, the tracker stops, and a
// tracker on an empty state directory restores everything from the mixed changelog (version-1
// records, their tombstones, the new layout): more live messages must join the restored open
// conversations (a FORCE_SEAL then seals each as one), re-sent messages of conversations the new
// tracker sealed must be duplicates and new messages inside remembered sealed conversations
// (converted from version 1, or sealed since) late, exactly as the rules say.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isolatedEnv, configOf, testKafka, spawnRole, waitFor, sleep, type ChildRole } from '../support/harness';
import { readTopic } from '../support/topic-reader';
import { expectedOutcome, lateKey } from '../support/backlog';
import {
  fixturePhases, loadFixture, changelogValue, keyHash, sha256OfMessages, type Fixture,
} from '../support/v1-fixture';
import { ensureTopics, topicNames, type TopicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import { JavaCompatiblePartitioner, partitionForKey } from '../../src/records/partitioner';
import { PartitionReader } from '../../src/runtime/partition-reader';
import { StateStore } from '../../src/runtime/state-store';
import { COMMAND_HEADER } from '../../src/processors/conversation-tracker';
import { parseKey } from '../../src/processors/chat-state-layout';
import {
  emptyChatState, rulesConfigFrom, step, type ChatState, type RulesConfig,
} from '../../src/sessionization/rules';
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import type { Config } from '../../src/config';

process.env.LOG_LEVEL ??= 'warn';
const kafka = testKafka();
const children: ChildRole[] = [];
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => Promise.race([c.exited, sleep(5000)])));
  for (const f of cleanups.reverse()) await f().catch(() => undefined);
});

const fixture: Fixture = loadFixture();
const ENV = { CONVERSATION_GAP: '90m', CONVERSATION_SETTLE: '1s', PUNCTUATE_INTERVAL: '200ms', LOG_LEVEL: 'info' };
/** Chats that get live messages (open conversations across the restart from scratch). */
const LIVE_CHATS = 8;

const count = <T>(xs: T[]) => { const m = new Map<T, number>(); for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1); return m; };

/** Multisets equal; on failure, says what is missing and what is extra. */
function sameMultiset(actual: string[], expected: string[], what: string, describe: (k: string) => string = (k) => k.slice(0, 200)): void {
  const a = count(actual);
  const e = count(expected);
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [k, n] of e) if ((a.get(k) ?? 0) < n) missing.push(`${describe(k)} (${a.get(k) ?? 0} of ${n})`);
  for (const [k, n] of a) if (n > (e.get(k) ?? 0)) extra.push(`${describe(k)} (${n}, expected ${e.get(k) ?? 0})`);
  assert.ok(missing.length === 0 && extra.length === 0,
    `${what}: ${missing.length} missing, ${extra.length} extra\nmissing: ${missing.slice(0, 5).join('\n  ')}\nextra: ${extra.slice(0, 5).join('\n  ')}`);
}

// --- the rules' view: per-chat states through messages, caught-up ticks and force-seals ---------

type Event = { type: 'message'; message: ChatMessage; now: number } | { type: 'tick'; now: number } | { type: 'force'; chat: string; now: number };

interface Model { sealed: ConversationSealed[]; late: LateMessage[]; duplicates: number; states: Map<string, ChatState> }

function runRules(events: Event[], rules: RulesConfig): Model {
  const states = new Map<string, ChatState>();
  const out: Model = { sealed: [], late: [], duplicates: 0, states };
  const collect = (outputs: ReturnType<typeof step>['outputs']) => {
    for (const o of outputs) {
      if (o.kind === 'sealed') out.sealed.push(o.conversation);
      else if (o.kind === 'late') out.late.push(o.late);
      else if (o.kind === 'duplicate') out.duplicates++;
      else assert.fail(`the rules call ${o.message.message_id} invalid: ${o.reason}`);
    }
  };
  const state = (chat: string) => states.get(chat) ?? emptyChatState(chat);
  for (const e of events) {
    if (e.type === 'message') {
      const r = step(state(e.message.chat_id), { type: 'message', message: { ...e.message }, now: e.now }, rules);
      states.set(e.message.chat_id, r.state);
      collect(r.outputs);
    } else if (e.type === 'tick') {
      for (const [chat, s] of states) { const r = step(s, { type: 'tick', now: e.now, caughtUp: true }, rules); states.set(chat, r.state); collect(r.outputs); }
    } else {
      const r = step(state(e.chat), { type: 'force', now: e.now }, rules);
      states.set(e.chat, r.state);
      collect(r.outputs);
    }
  }
  return out;
}

// --- one case ---------------------------------------------------------------------------------

interface Case {
  name: string;
  env: Record<string, string>;
  cfg: Config;
  topics: TopicNames;
  groupId: string;
  codec: RecordCodec;
  rules: RulesConfig;
  phase1: ChatMessage[];
  phase2: ChatMessage[];
  partitions: number[];
  changelogEnd: Map<number, number>;
}

async function withAdmin<T>(fn: (admin: ReturnType<typeof kafka.admin>) => Promise<T>): Promise<T> {
  const admin = kafka.admin();
  await admin.connect();
  try { return await fn(admin); } finally { await admin.disconnect(); }
}

async function endOffsets(topic: string, partitions: number[]): Promise<Map<number, number>> {
  const reader = new PartitionReader(kafka);
  try { return await reader.endOffsets(topic, partitions); } finally { await reader.disconnect(); }
}

async function produce(c: Case, messages: ChatMessage[]): Promise<void> {
  const producer = new ChatMessageProducer({ kafka, codec: c.codec, topic: c.topics.messages });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 500) await producer.send(messages.slice(i, i + 500));
  } finally {
    await producer.disconnect();
  }
}

/** Topics, phase 1, the version-1 changelog, the group's offsets at the end of phase 1, phase 2. */
async function prepare(name: string, opts: { phase2: boolean } = { phase2: true }): Promise<Case> {
  const env = isolatedEnv(name, ENV);
  cleanups.push(async () => { await rm(env.STATE_DIR!, { recursive: true, force: true }); });
  const cfg = configOf(env);
  const topics = topicNames(cfg);
  cleanups.push(() => withAdmin(async (admin) => {
    await admin.deleteGroups([`${cfg.appId}-tracker`]).catch(() => undefined);
    await admin.deleteTopics({ topics: Object.values(topics), timeout: 30_000 });
  }));
  assert.equal(cfg.topicPartitions, fixture.meta.partitions);
  const partitions = Array.from({ length: cfg.topicPartitions }, (_, p) => p);
  await withAdmin((admin) => ensureTopics(admin, cfg));
  const rules = rulesConfigFrom(cfg);
  const { phase1, phase2 } = fixturePhases(rules);
  assert.equal(sha256OfMessages(phase1), fixture.meta.phase1Sha256, 'phase 1 is the backlog the fixture was made from (tests/support/backlog.ts changed?)');
  assert.equal(sha256OfMessages(phase2), fixture.meta.phase2Sha256, 'phase 2 is the backlog the fixture was made from');
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  await codec.init();
  const c: Case = {
    name, env, cfg, topics, groupId: `${cfg.appId}-tracker`, codec, rules, phase1, phase2, partitions, changelogEnd: new Map(),
  };

  await produce(c, phase1);
  const inputEnd = await endOffsets(topics.messages, partitions);
  for (const p of partitions) assert.equal(inputEnd.get(p), fixture.meta.inputEnd[p], `phase-1 records in partition ${p}`);

  // The version-1 changelog, record by record in offset order, to the same partitions.
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: JavaCompatiblePartitioner });
  await producer.connect();
  try {
    for (const p of partitions) {
      const records = fixture.changelog.filter((r) => r.p === p).map((r) => ({ key: r.k, value: changelogValue(r), partition: p }));
      for (let i = 0; i < records.length; i += 20) await producer.send({ topic: topics.trackerChangelog, messages: records.slice(i, i + 20), acks: -1 });
    }
  } finally {
    await producer.disconnect();
  }
  c.changelogEnd = await endOffsets(topics.trackerChangelog, partitions);
  for (const p of partitions) assert.equal(c.changelogEnd.get(p), fixture.meta.changelogRecords[p], `changelog records in partition ${p}`);

  await withAdmin((admin) => admin.setOffsets({
    groupId: c.groupId, topic: topics.messages, partitions: partitions.map((p) => ({ partition: p, offset: String(inputEnd.get(p)) })),
  }));
  if (opts.phase2) await produce(c, phase2);
  console.log(`[${name}] phase 1: ${phase1.length} records (offsets committed), version-1 changelog: ${fixture.changelog.length} records, `
    + `phase 2: ${phase2.length} records; fixture: ${fixture.meta.sealed} sealed, ${fixture.meta.late} late, `
    + `${fixture.meta.openConversations} open conversations (${fixture.meta.openMessages} messages)`);
  return c;
}

/** The version-1 stores after the clean stop: `s:` entries (the changelog's last value per chat), index, count; checkpoint at the changelog's end. */
async function writeV1Stores(c: Case): Promise<void> {
  const last = new Map<string, Buffer | null>();
  for (const r of fixture.changelog) last.set(`${r.p}/${r.k}`, changelogValue(r));
  for (const p of c.partitions) {
    const store = await StateStore.open(c.env.STATE_DIR!, 'chat-state', p);
    const entries = fixture.store.filter((e) => e.p === p);
    await store.write(entries.map((e) => {
      if (!e.s) return { type: 'put' as const, key: e.k, value: Buffer.from(e.v ?? '', 'utf8') };
      const value = last.get(`${p}/${e.k.slice(2)}`);
      assert.ok(value, `store entry ${e.k} has a changelog value`);
      return { type: 'put' as const, key: e.k, value };
    }));
    await store.close(c.changelogEnd.get(p)!);
  }
  console.log(`[${c.name}] version-1 stores written: ${fixture.store.length} entries, ${fixture.store.filter((e) => e.s).length} chats`);
}

async function committed(c: Case): Promise<Map<number, number>> {
  const res = await withAdmin((admin) => admin.fetchOffsets({ groupId: c.groupId, topics: [c.topics.messages] }));
  return new Map(res[0]!.partitions.map((p) => [p.partition, Number(p.offset)]));
}

/** Waits until the group has committed every input record, and `ready` says the outputs are there. */
async function processed<T>(c: Case, child: ChildRole, what: string, ready: () => Promise<T | undefined>): Promise<T> {
  const ends = await endOffsets(c.topics.messages, c.partitions);
  // What was last seen, for a timeout to say which of the two it waited for.
  let seen = 'nothing yet';
  try {
    return await waitFor(what, 120_000, async () => {
      if (child.proc.exitCode !== null) throw new Error(`tracker exited (${child.proc.exitCode}):\n${child.output().slice(-4000)}`);
      const done = await committed(c);
      seen = `committed ${JSON.stringify(c.partitions.map((p) => [p, done.get(p) ?? -1, ends.get(p)]))} ([partition, committed, end])`;
      for (const p of c.partitions) if ((done.get(p) ?? -1) < ends.get(p)!) return undefined;
      seen += '; offsets done, outputs not yet';
      return ready();
    }, 250);
  } catch (e) {
    const tail = child.output().split('\n').filter((l) => !l.includes('"level":20')).slice(-40).join('\n');
    throw new Error(`${(e as Error).message}; last seen: ${seen}; tracker's last log lines:\n${tail}`);
  }
}

async function outputs(c: Case): Promise<{ sealed: ConversationSealed[]; late: LateMessage[]; dlq: number }> {
  const sealed = await Promise.all((await readTopic(kafka, c.topics.sealed)).map((r) => c.codec.decode('ConversationSealed', r.value)));
  const late = await Promise.all((await readTopic(kafka, c.topics.late)).map((r) => c.codec.decode('LateMessage', r.value)));
  const dlq = (await readTopic(kafka, c.topics.messagesDlq)).length;
  return { sealed, late, dlq };
}

function start(c: Case, env: Record<string, string>): ChildRole {
  const child = spawnRole('tracker', env);
  children.push(child);
  return child;
}

async function stop(child: ChildRole): Promise<void> {
  child.kill('SIGTERM');
  const code = await Promise.race([child.exited, sleep(30_000).then(() => 'timeout' as const)]);
  assert.equal(code, 0, `tracker stopped cleanly:\n${child.output().slice(-4000)}`);
}

function logged(child: ChildRole, msg: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of child.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try { const l = JSON.parse(line) as Record<string, unknown>; if (l.msg === msg) out.push(l); } catch { /* not a log line */ }
  }
  return out;
}

/** Every version-1 key of the fixture has a tombstone after its last version-1 value; every other record is of the new layout. */
async function assertTombstones(c: Case, when: string): Promise<void> {
  const records = await readTopic(kafka, c.topics.trackerChangelog);
  const v1Keys = new Set(fixture.changelog.map((r) => `${r.p}/${r.k}`));
  const lastValue = new Map<string, number>();
  const tombstone = new Map<string, number>();
  let newLayout = 0;
  for (const r of records) {
    const key = r.key!.toString();
    const k = `${r.partition}/${key}`;
    const o = Number(r.offset);
    if (parseKey(key).kind === 'v1') {
      assert.ok(v1Keys.has(k), `${when}: changelog key ${JSON.stringify(key)} of partition ${r.partition} is neither of the new layout nor the fixture's`);
      if (r.value === null) { if (!tombstone.has(k)) tombstone.set(k, o); } else lastValue.set(k, o);
      if (r.value !== null) assert.ok(o < fixture.meta.changelogRecords[r.partition]!, `${when}: a version-1 value (${key}) logged by the new tracker`);
    } else {
      newLayout++;
    }
  }
  const missing = [...v1Keys].filter((k) => !(tombstone.get(k)! > lastValue.get(k)!));
  assert.deepEqual(missing, [], `${when}: version-1 keys without a tombstone after their last value`);
  const tombstones = records.length - fixture.changelog.length - newLayout;
  console.log(`[${c.name}] ${when}: changelog ${records.length} records: ${fixture.changelog.length} version-1 values, `
    + `${tombstones} tombstones of version-1 keys (${v1Keys.size} keys), ${newLayout} of the new layout`);
  // Once logged, a conversion is not logged again: a restore that reads a version-1 record and
  // then its tombstone knows the converted chat follows in the changelog.
  assert.equal(tombstones, v1Keys.size, `${when}: one tombstone per version-1 key`);
}

/** How the new tracker finds its stores: empty (restore from the changelog), version-1 stores, or stores it converted before. */
type StartsFrom = 'empty' | 'version-1 stores' | 'converted stores';

async function runCase(c: Case, from: StartsFrom): Promise<void> {
  const fixtureSealed = fixture.sealed.map((s) => s.key_sha256);
  const fixtureSealedIds = new Set(fixture.sealed.map((s) => s.conversation_id));
  const fixtureLate = fixture.late.map(lateKey);

  // --- the upgrade: phase 2 on the converted states ---------------------------------------------
  const expected = expectedOutcome([...c.phase1, ...c.phase2], c.rules);
  const ids = new Set([...c.phase1, ...c.phase2].map((m) => m.message_id));
  const covered = new Set([...expected.conversations.flatMap((x) => x.messages.map((m) => m.message_id)), ...expected.late.map((l) => l.message.message_id)]);
  assert.equal(covered.size, ids.size, 'the rules place or call late every message');
  const t0 = Date.now();
  const t1 = start(c, c.env);
  const want = expected.conversations.length - fixtureSealed.length;
  const got = await processed(c, t1, `${want} conversations sealed by the new tracker`, async () => {
    const o = await outputs(c);
    return o.sealed.length >= want ? o : undefined;
  });
  await sleep(1000);
  const o1 = await outputs(c);
  assert.equal(o1.sealed.length, got.sealed.length, 'nothing sealed after the expected conversations');
  console.log(`[${c.name}] new tracker: phase 2 processed and sealed in ${Date.now() - t0} ms: ${o1.sealed.length} conversations, ${o1.late.length} late; `
    + `expected in all ${expected.conversations.length} conversations ${JSON.stringify(expected.reasons)}, ${expected.late.length} late, ${expected.duplicates} duplicates`);
  const converted = logged(t1, 'converted version-1 chat states in the store').reduce((s, l) => s + Number(l.chats), 0);
  const restoredLog = logged(t1, 'task restored');
  console.log(`[${c.name}] tasks restored: ${JSON.stringify(restoredLog.map((l) => ({ wiped: l.wiped, from: l.from, end: l.end, records: l.records })))}; `
    + `chats converted in the store: ${converted}`);
  assert.equal(restoredLog.length, c.partitions.length);
  if (from === 'empty') {
    for (const l of restoredLog) assert.equal(l.wiped, true);
  } else {
    assert.equal(converted, from === 'version-1 stores' ? fixture.store.filter((e) => e.s).length : 0, 'version-1 store entries converted in place');
    for (const l of restoredLog) { assert.equal(l.wiped, false); assert.equal(l.records, 0, 'nothing to restore past the checkpoint'); }
  }
  assert.equal(o1.dlq, 0, 'nothing dead-lettered');
  sameMultiset([...fixtureSealed, ...o1.sealed.map(keyHash)], expected.conversations.map(keyHash), 'sealed conversations (fixture + new tracker) against the rules',
    (h) => {
      const x = expected.conversations.find((e) => keyHash(e) === h) ?? o1.sealed.find((e) => keyHash(e) === h);
      return x ? `${x.chat_id} ${x.conversation_id} ${new Date(x.started_at).toISOString()} ${x.message_count} messages ${x.seal_reason}${fixtureSealedIds.has(x.conversation_id) ? ' (fixture)' : ''}` : h;
    });
  sameMultiset([...fixtureLate, ...o1.late.map(lateKey)], expected.late.map(lateKey), 'late messages (fixture + new tracker) against the rules');
  await assertTombstones(c, 'after the upgrade');

  // --- live messages: open conversations in a few chats ------------------------------------------
  const chats = [...new Set(c.phase2.map((m) => m.chat_id))].sort().slice(0, LIVE_CHATS);
  const template = new Map(c.phase2.map((m) => [m.chat_id, m]));
  let n = 0;
  const live = (chat: string, at: number): ChatMessage => ({ ...template.get(chat)!, message_id: `live-${c.name}-${n++}`, sent_at: at, text: `live ${n}`, reply_to_message_id: null });
  const l1At = Date.now();
  const l1 = chats.flatMap((chat) => [live(chat, l1At - 3000), live(chat, l1At - 2000), live(chat, l1At - 1000)]);
  await produce(c, l1);
  await processed(c, t1, 'live messages processed', async () => true);
  await stop(t1);

  // --- a tracker on an empty state directory: full restore from the mixed changelog -------------
  const env2 = { ...c.env, STATE_DIR: mkdtempSync(path.join(os.tmpdir(), `chatstats-${c.name}-fresh-`)) };
  cleanups.push(async () => { await rm(env2.STATE_DIR, { recursive: true, force: true }); });
  const t2 = start(c, env2);
  await waitFor('restored tracker', 60_000, async () => (logged(t2, 'task restored').length === c.partitions.length ? true : undefined));
  const restored2 = logged(t2, 'task restored');
  for (const l of restored2) assert.equal(l.wiped, true);
  console.log(`[${c.name}] restart from scratch: restored ${restored2.reduce((s, l) => s + Number(l.records), 0)} changelog records`);

  // More live messages into the restored open conversations; re-sends of messages the new tracker
  // sealed (duplicates); new messages inside remembered sealed conversations (late); FORCE_SEAL.
  const l2At = Date.now();
  const l2 = chats.flatMap((chat) => [live(chat, l2At - 500), live(chat, l2At)]);
  const extras: ChatMessage[] = [];
  const byChat = new Map<string, ConversationSealed[]>();
  for (const x of expected.conversations) { const l = byChat.get(x.chat_id) ?? []; l.push(x); byChat.set(x.chat_id, l); }
  let resends = 0;
  let lateConverted = 0;
  let lateNew = 0;
  for (const [chat, list] of [...byChat].sort(([a], [b]) => a.localeCompare(b))) {
    const remembered = list.slice(-64);
    const sinceUpgrade = remembered.filter((x) => !fixtureSealedIds.has(x.conversation_id));
    const fromV1 = remembered.filter((x) => fixtureSealedIds.has(x.conversation_id) && x.ended_at - x.started_at > 2);
    if (sinceUpgrade.length > 0 && resends < 6) { extras.push({ ...sinceUpgrade[sinceUpgrade.length - 1]!.messages[0]! }); resends++; }
    const inside = (x: ConversationSealed, tag: string): ChatMessage => ({
      ...x.messages[0]!, message_id: `${tag}-${c.name}-${n++}`, sent_at: x.started_at + 1, text: 'arrives after its conversation was sealed', reply_to_message_id: null,
    });
    if (fromV1.length > 0 && lateConverted < 6) { extras.push(inside(fromV1[fromV1.length - 1]!, 'late-v1')); lateConverted++; }
    const spanned = sinceUpgrade.filter((x) => x.ended_at - x.started_at > 2);
    if (spanned.length > 0 && lateNew < 6) { extras.push(inside(spanned[0]!, 'late-v2')); lateNew++; }
  }
  await produce(c, [...l2, ...extras]);
  const commands = chats.map((chat, i) => ({
    key: chat, partition: partitionForKey(chat, c.cfg.topicPartitions), headers: { [COMMAND_HEADER]: 'FORCE_SEAL' },
    value: Buffer.from(JSON.stringify({ command_id: `force-${c.name}-${i}`, type: 'FORCE_SEAL', chat_id: chat, issued_at: Date.now(), reply_topic: null })),
  }));
  const cp = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await cp.connect();
  await cp.send({ topic: c.topics.messages, messages: commands, acks: -1 });
  await cp.disconnect();

  // What the rules say: phase 1 + 2 and the caught-up tick that sealed them, then the live
  // messages, the extras and the force-seals.
  const farNow = expected.finalNow;
  const model = runRules([
    ...[...c.phase1, ...c.phase2].map((m) => ({ type: 'message' as const, message: m, now: farNow })),
    { type: 'tick', now: farNow + c.rules.settleMs },
    ...l1.map((m) => ({ type: 'message' as const, message: m, now: l1At })),
    ...[...l2, ...extras].map((m) => ({ type: 'message' as const, message: m, now: l2At })),
    ...chats.map((chat) => ({ type: 'force' as const, chat, now: l2At })),
  ], c.rules);
  const forced = model.sealed.filter((x) => x.seal_reason === 'FORCED');
  assert.equal(forced.length, chats.length);
  for (const x of forced) assert.equal(x.message_count, 5, 'a forced conversation holds the live messages from before and after the restart');
  assert.equal(model.duplicates - expected.duplicates, resends);
  const wantLate = model.late.length - fixture.late.length;
  const final = await processed(c, t2, 'forced seals and late messages', async () => {
    const o = await outputs(c);
    return o.sealed.length >= model.sealed.length - fixtureSealed.length && o.late.length >= wantLate ? o : undefined;
  });
  await sleep(1000);
  const o2 = await outputs(c);
  assert.equal(o2.sealed.length, final.sealed.length);
  assert.equal(o2.late.length, final.late.length);
  assert.equal(o2.dlq, 0);
  sameMultiset([...fixtureSealed, ...o2.sealed.map(keyHash)], model.sealed.map(keyHash), 'sealed conversations after the restart from scratch');
  sameMultiset([...fixtureLate, ...o2.late.map(lateKey)], model.late.map(lateKey), 'late messages after the restart from scratch');
  console.log(`[${c.name}] after the restart from scratch: ${forced.length} forced conversations of 3 + 2 live messages, ${resends} re-sends (duplicates), `
    + `${lateConverted} late in converted version-1 conversations, ${lateNew} late in conversations sealed since`);
  await assertTombstones(c, 'after the restart from scratch');
  await stop(t2);
}

test('upgrade from a version-1 changelog: restore converts the records, phase 2 continues the open conversations', async () => {
  const c = await prepare('upgrade-changelog');
  await runCase(c, 'empty');
});

test('upgrade from a version-1 store kept after a clean stop: converted in place, phase 2 continues the open conversations', async () => {
  const c = await prepare('upgrade-store');
  await writeV1Stores(c);
  await runCase(c, 'version-1 stores');
});

test('a tracker that converted version-1 records and stopped before its first commit: the next one on the kept stores still logs the conversion', async () => {
  // The first tracker restores and converts the version-1 changelog, and stops cleanly before any
  // transaction: no input past the committed offsets, no punctuation (1 h). Its stores are kept
  // (checkpoints) and hold the converted chats; the changelog holds only the version-1 records.
  const c = await prepare('upgrade-early-stop', { phase2: false });
  const early = start(c, { ...c.env, PUNCTUATE_INTERVAL: '1h' });
  await waitFor('tasks restored', 60_000, async () => (logged(early, 'task restored').length === c.partitions.length ? true : undefined));
  await stop(early);
  const ends = await endOffsets(c.topics.trackerChangelog, c.partitions);
  for (const p of c.partitions) assert.equal(ends.get(p), fixture.meta.changelogRecords[p], `nothing logged to changelog partition ${p} before the stop`);
  await produce(c, c.phase2);
  await runCase(c, 'converted stores');
});
