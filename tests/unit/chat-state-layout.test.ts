// The tracker's store layout (src/processors/chat-state-layout.ts) against the rules' state: after
// every transaction of a generated run (gap mode and thread mode), the records written so far,
// read back, give exactly the chat's state in memory; a chat read back from its summaries only
// (gap mode) goes on to seal exactly what a chat that never left memory seals, messages included;
// a message is written once while open and deleted at its seal; version-1 and version-2 states
// convert.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type StoredChat, type RecordWrites, type PlacedMessages, writePlaced, assembleChat, completeSealFrom, convertV2, recordValue, everything, messageKey, messagePrefix, metaKey,
  newStoredChat, parseKey, placed, prefixEnd, sealedMessages, sealedPrefix, structure, summaryKey, upgradeV1, windowPrefix,
} from '../../src/processors/chat-state-layout';
import { type ChatState, type Output, type RulesConfig, encodeState, isComplete, step, STATE_VERSION } from '../../src/sessionization/rules';
import type { ChatMessage } from '../../src/records/types';
import { Rng } from '../../bench/generator';
import { addressLinker } from '../support/thread-linker';

const GAP = 100;

function cfg(threads: boolean): RulesConfig {
  return {
    gapMs: GAP, gapByTypeMs: {}, graceMs: 0, settleMs: 0, maxMessages: 9, maxBytes: 1_000_000_000, maxFutureSkewMs: 1_000_000_000,
    modeByType: threads ? { group: 'threads' } : {}, threadLinker: threads ? addressLinker : null,
  };
}

/** The store as a sorted map of the records written. */
class Records {
  readonly map = new Map<string, Buffer>();
  apply(w: RecordWrites): void {
    for (const [k, lazy] of w) {
      if (parseKey(k).kind === 'v1') continue;
      const v = recordValue(lazy);
      if (v === null) this.map.delete(k); else this.map.set(k, v);
    }
  }
  range(from: string, to: string): [string, Buffer][] {
    return [...this.map].filter(([k]) => k >= from && k < to).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
  prefix(p: string): [string, Buffer][] { return this.range(p, prefixEnd(p)); }
  /** The chat as the tracker reads it: with its open messages, or (`withMessages` false) from its summaries. */
  read(chat: string, withMessages = true, messages = messagePrefix(chat)): StoredChat | null {
    return assembleChat(chat, {
      meta: this.map.get(metaKey(chat)), summary: this.map.get(summaryKey(chat)) ?? null, messages: withMessages ? this.prefix(messages) : null,
      sealed: this.prefix(sealedPrefix(chat)), window: this.prefix(windowPrefix(chat)),
    });
  }
}

/** The state's summaries in a comparable form. */
function summaries(s: ChatState) {
  return {
    chatType: s.chatType, clock: s.clock, sealedReach: s.sealedReach, forgottenReach: s.forgottenReach, sealed: s.sealed, window: s.window ?? null,
    open: s.open.map((c) => ({ ...c, messages: undefined })),
  };
}

/** The state's content in a comparable form (message order within a conversation included). */
function shape(s: ChatState) {
  return { ...summaries(s), open: s.open.map((c) => ({ ...c, messages: c.messages.map((m) => ({ ...m })) })) };
}

const outputsOf = (outputs: Output[]) => JSON.stringify(outputs.map((o) => (o.kind === 'sealed' ? { kind: o.kind, conversation: o.conversation } : o)));

function run(threads: boolean, seed: number): { txns: number; messages: number; writes: number; lazyLoads: number; completed: number } {
  const rng = new Rng(seed);
  const rules = cfg(threads);
  const chat = 'chat-1';
  let sc = newStoredChat(chat);
  // The same events on a state that never leaves memory: what every output must equal.
  let ref = newStoredChat(chat).state;
  const records = new Records();
  let t = 1000;
  let n = 0;
  let writesTotal = 0;
  let txns = 0;
  let lazyLoads = 0;
  let completed = 0;
  const senders = ['ann', 'bob', 'cat', 'dan'];
  const sent: ChatMessage[] = [];
  for (let txn = 0; txn < 120; txn++) {
    const writes: RecordWrites = new Map();
    const placedNow: PlacedMessages = new Map();
    const steps = 1 + Math.floor(rng.next() * 6);
    for (let k = 0; k < steps; k++) {
      const r = rng.next();
      let event: Parameters<typeof step>[1];
      let m: ChatMessage | null = null;
      if (r < 0.05) {
        event = { type: 'force', now: t };
      } else if (r < 0.12) {
        event = { type: 'tick', now: t + GAP * 3, caughtUp: true };
      } else {
        if (r < 0.17 && sent.length > 0) {
          // A re-send of an earlier message: a duplicate or late, never placed twice.
          m = { ...sent[Math.floor(rng.next() * sent.length)]!, linked_message_id: undefined };
        } else {
          // Mostly forward in time, sometimes behind the newest message, sometimes past the gap.
          const jump = rng.next();
          t += jump < 0.1 ? GAP + 1 + Math.floor(rng.next() * 50) : jump < 0.2 ? -Math.floor(rng.next() * 300) : Math.floor(rng.next() * 40);
          const from = senders[Math.floor(rng.next() * senders.length)]!;
          const to = rng.next() < 0.5 ? `${senders[Math.floor(rng.next() * senders.length)]}: ` : '';
          m = {
            // The first messages carry no type: the chat is in gap mode until its type is known.
            message_id: `m${n++}`, chat_id: chat, sender_id: from, sent_at: t, text: `${to}hello ${n}`, chat_type: n <= 3 ? null : 'group',
            is_from_me: false, reply_to_message_id: rng.next() < 0.1 && sent.length > 0 ? sent[sent.length - 1]!.message_id : null, account_id: null,
          };
          sent.push(m);
        }
        // What the tracker looks up for a chat loaded from its summaries: the id among the open records.
        const key = messageKey(chat, m.message_id);
        const storedOpenId = sc.state.open.some((c) => !isComplete(c)) && records.map.has(key) && writes.get(key) !== null;
        event = { type: 'message', message: m, now: t, storedOpenId };
      }
      const want = step(ref, event.type === 'message' ? { ...event, message: { ...event.message }, storedOpenId: false } : event, rules);
      ref = want.state;
      const res = step(sc.state, event, rules);
      sc.state = res.state;
      if (m !== null && res.placedIn !== undefined) placed(sc, m, t, res.placedIn, placedNow);
      for (const o of res.outputs) {
        if (o.kind !== 'sealed') continue;
        if (o.pending) { completeSealFrom(sc, o, records.prefix(messagePrefix(chat)), writes); completed++; }
        sealedMessages(sc, o.conversation.messages, writes, placedNow);
      }
      assert.equal(outputsOf(res.outputs), outputsOf(want.outputs), `seed ${seed}, transaction ${txn}: the outputs of ${event.type}`);
    }
    writePlaced(placedNow, writes);
    structure(sc, writes);
    records.apply(writes);
    writesTotal += writes.size;
    txns++;
    const back = records.read(chat);
    assert.ok(back, 'the chat record exists');
    assert.deepEqual(shape(back.state), shape(ref), `seed ${seed}, transaction ${txn}: the records give the state`);
    assert.deepEqual(summaries(records.read(chat, false)!.state), summaries(ref), `seed ${seed}, transaction ${txn}: the summaries give the state but its messages`);
    // Now continue from what was read back, as a tracker does after its cache dropped the chat: in
    // gap mode (once the chat's type is known) without its open messages, as the tracker reads it.
    if (rng.next() < 0.3) {
      const lazy = !threads && sc.state.chatType !== null;
      sc = lazy ? records.read(chat, false)! : back;
      if (lazy) lazyLoads++;
    }
  }
  // Only open messages have records, one each.
  const openCount = ref.open.reduce((s, c) => s + c.messages.length, 0);
  assert.equal(records.prefix(messagePrefix(chat)).length, openCount);
  return { txns, messages: n, writes: writesTotal, lazyLoads, completed };
}

test('gap mode: after every transaction the records read back give the state; a chat read from its summaries seals the same', () => {
  let lazyLoads = 0;
  let completed = 0;
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) { const r = run(false, seed); lazyLoads += r.lazyLoads; completed += r.completed; }
  assert.ok(lazyLoads > 50 && completed > 20, `${lazyLoads} loads from summaries, ${completed} seals completed from the records`);
});

test('thread mode: after every transaction the records read back give the state, window and links included', () => {
  for (const seed of [11, 12, 13, 14, 15]) run(true, seed);
});

test('a joining message writes one record; the chat record is not rewritten', () => {
  const rules = cfg(false);
  const sc = newStoredChat('c');
  const records = new Records();
  const send = (i: number, at: number) => {
    const writes: RecordWrites = new Map();
    const m: ChatMessage = { message_id: `x${i}`, chat_id: 'c', sender_id: 's', sent_at: at, text: 't', chat_type: null, is_from_me: false, reply_to_message_id: null, account_id: null };
    const res = step(sc.state, { type: 'message', message: m, now: at }, rules);
    sc.state = res.state;
    const placedNow: PlacedMessages = new Map();
    if (res.placedIn) placed(sc, m, at, res.placedIn, placedNow);
    for (const o of res.outputs) if (o.kind === 'sealed') sealedMessages(sc, o.conversation.messages, writes, placedNow);
    writePlaced(placedNow, writes);
    structure(sc, writes);
    records.apply(writes);
    return [...writes.keys()].map((k) => parseKey(k).kind);
  };
  assert.deepEqual(send(0, 1000).sort(), ['message', 'meta', 'summary']);
  // A join: its record and the small summary record (count, end, bytes: tens of bytes).
  assert.deepEqual(send(1, 1010).sort(), ['message', 'summary']);
  assert.deepEqual(send(2, 1020).sort(), ['message', 'summary']);
  assert.ok(records.map.get(summaryKey('c'))!.length < 60, records.map.get(summaryKey('c'))!.toString());
  // Past the gap: the first conversation is sealed: its records deleted, its summary written.
  const kinds = send(3, 1200);
  assert.equal(kinds.filter((k) => k === 'message').length, 4, 'three deletes and one put');
  assert.ok(kinds.includes('sealed') && kinds.includes('meta'));
  assert.equal(records.range(messagePrefix('c'), prefixEnd(messagePrefix('c'))).length, 1);
});

test('a version-2 chat converts when read: its messages logged under their ids, the old keys deleted, the same state', () => {
  const chat = 'two';
  const msg = (i: number, t: number) => ({ message_id: `q${i}`, chat_id: chat, sender_id: 's', sent_at: t, text: null, chat_type: 'dm', is_from_me: false, reply_to_message_id: null, account_id: null });
  // As version 2 wrote them: a chat record with `k`, messages under their arrival seq (two with the same sent_at).
  const records = new Records();
  records.map.set(metaKey(chat), Buffer.from(JSON.stringify({ v: 2, t: 'dm', k: 1050, r: null, f: null, o: [[1000, null]], h: [], n: 0 })));
  const legacy = (seq: number) => `m\u0000${chat}\u0000${seq.toString(36).padStart(10, '0')}`;
  [[msg(0, 1000), 7], [msg(1, 1050), 8], [msg(2, 1050), 9]].forEach(([m, at], seq) => {
    const x = m as ReturnType<typeof msg>;
    records.map.set(legacy(seq), Buffer.from(JSON.stringify([x.message_id, x.sender_id, x.sent_at, x.text, x.chat_type, 0, null, null, at])));
  });
  const sc = records.read(chat, true, `m\u0000${chat}\u0000`)!;
  assert.deepEqual(sc.legacyKeys, [0, 1, 2].map(legacy));
  const c = sc.state.open[0]!;
  assert.deepEqual([c.count, c.endedAt, c.arrivedAt, c.firstMessageId, sc.state.clock, sc.nextSeq], [3, 1050, 9, 'q0', 1050, 3]);
  const writes: RecordWrites = new Map();
  const placedNow: PlacedMessages = new Map();
  convertV2(sc, writes, placedNow);
  writePlaced(placedNow, writes);
  structure(sc, writes);
  records.apply(writes);
  assert.deepEqual(records.prefix(`m\u0000${chat}\u0000`), [], 'the version-2 records are deleted');
  const back = records.read(chat)!;
  assert.deepEqual(shape(back.state), shape(sc.state));
  assert.deepEqual(back.state.open[0]!.messages.map((m) => m.message_id), ['q0', 'q1', 'q2'], 'sent_at ties keep their arrival order');
  assert.deepEqual(summaries(records.read(chat, false)!.state), summaries(sc.state));
});

test('a version-1 state converts: same open conversations, logged in this layout, old key deleted', () => {
  const v1 = {
    v: 1, chatId: 'old', chatType: null, clock: 1020, sealedReach: 900, open: [{
      startedAt: 1000, endedAt: 1020, bytes: 10, continuesConversationId: null,
      messages: [1000, 1020].map((t, i) => ({ message_id: `o${i}`, chat_id: 'old', sender_id: 's', sent_at: t, text: null, chat_type: null, is_from_me: false, reply_to_message_id: null, account_id: null })),
    }],
    sealed: [{ conversationId: 'c1', startedAt: 700, endedAt: 800, sealReason: 'NEXT_MESSAGE', gapMs: 100 }],
  };
  const sc = upgradeV1('old', Buffer.from(JSON.stringify(v1)));
  assert.equal(sc.state.v, STATE_VERSION);
  assert.equal(sc.state.forgottenReach, null, 'fewer than 64 remembered: nothing forgotten');
  const writes: RecordWrites = new Map();
  everything(sc, writes);
  assert.equal(writes.get('old'), null, 'the version-1 key is deleted');
  const records = new Records();
  records.apply(writes);
  const back = records.read('old')!;
  assert.deepEqual(back.state.open.map((c) => c.messages.map((m) => m.message_id)), [['o0', 'o1']]);
  assert.equal(back.state.open[0]!.arrivedAt, 0, 'version-1 conversations count as settled');
  assert.deepEqual(back.state.sealed.map((x) => x.conversationId), ['c1']);
  assert.ok(encodeState(back.state).length > 0);
});
