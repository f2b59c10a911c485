// The tracker's store layout (src/processors/chat-state-layout.ts) against the rules' state: after
// every transaction of a generated run (gap mode and thread mode), the records written so far,
// read back, give exactly the chat's state in memory; a message is written once while open and
// deleted at its seal; version-1 states convert.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type StoredChat, type RecordWrites, assembleChat, recordValue, everything, messagePrefix, metaKey, newStoredChat, parseKey, placed,
  prefixEnd, sealedMessages, sealedPrefix, structure, upgradeV1, windowPrefix,
} from '../../src/processors/chat-state-layout';
import { type ChatState, type RulesConfig, encodeState, step, STATE_VERSION } from '../../src/sessionization/rules';
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
  read(chat: string): StoredChat | null {
    const mp = messagePrefix(chat);
    const sp = sealedPrefix(chat);
    const wp = windowPrefix(chat);
    return assembleChat(chat, this.map.get(metaKey(chat)), this.range(mp, prefixEnd(mp)), this.range(sp, prefixEnd(sp)), this.range(wp, prefixEnd(wp)));
  }
}

/** The state's content in a comparable form (message order within a conversation included). */
function shape(s: ChatState) {
  return {
    chatType: s.chatType, sealedReach: s.sealedReach, forgottenReach: s.forgottenReach,
    open: s.open.map((c) => ({ ...c, messages: c.messages.map((m) => ({ ...m })) })),
    sealed: s.sealed, window: s.window ?? null,
  };
}

function run(threads: boolean, seed: number): { txns: number; messages: number; writes: number } {
  const rng = new Rng(seed);
  const rules = cfg(threads);
  const chat = 'chat-1';
  let sc = newStoredChat(chat);
  const records = new Records();
  let t = 1000;
  let n = 0;
  let writesTotal = 0;
  let txns = 0;
  const senders = ['ann', 'bob', 'cat', 'dan'];
  const sent: ChatMessage[] = [];
  for (let txn = 0; txn < 120; txn++) {
    const writes: RecordWrites = new Map();
    const fresh = new Set<string>();
    const steps = 1 + Math.floor(rng.next() * 6);
    for (let k = 0; k < steps; k++) {
      const r = rng.next();
      let res;
      if (r < 0.05) {
        res = step(sc.state, { type: 'force', now: t }, rules);
      } else if (r < 0.12) {
        res = step(sc.state, { type: 'tick', now: t + GAP * 3, caughtUp: true }, rules);
      } else if (r < 0.17 && sent.length > 0) {
        // A re-send of an earlier message: a duplicate or late, never placed twice.
        const m = sent[Math.floor(rng.next() * sent.length)]!;
        res = step(sc.state, { type: 'message', message: { ...m, linked_message_id: undefined }, now: t }, rules);
      } else {
        // Mostly forward in time, sometimes behind the newest message, sometimes past the gap.
        const jump = rng.next();
        t += jump < 0.1 ? GAP + 1 + Math.floor(rng.next() * 50) : jump < 0.2 ? -Math.floor(rng.next() * 300) : Math.floor(rng.next() * 40);
        const from = senders[Math.floor(rng.next() * senders.length)]!;
        const to = rng.next() < 0.5 ? `${senders[Math.floor(rng.next() * senders.length)]}: ` : '';
        const m: ChatMessage = {
          // The first messages carry no type: the chat is in gap mode until its type is known.
          message_id: `m${n++}`, chat_id: chat, sender_id: from, sent_at: t, text: `${to}hello ${n}`, chat_type: n <= 3 ? null : 'group',
          is_from_me: false, reply_to_message_id: rng.next() < 0.1 && sent.length > 0 ? sent[sent.length - 1]!.message_id : null, account_id: null,
        };
        sent.push(m);
        res = step(sc.state, { type: 'message', message: m, now: t }, rules);
        if (res.placedIn !== undefined) placed(sc, m, t, res.placedIn, writes, fresh);
      }
      sc.state = res.state;
      for (const o of res.outputs) if (o.kind === 'sealed') sealedMessages(sc, o.conversation.messages, writes, fresh);
    }
    structure(sc, writes);
    records.apply(writes);
    writesTotal += writes.size;
    txns++;
    const back = records.read(chat);
    assert.ok(back, 'the chat record exists');
    assert.deepEqual(shape(back.state), shape(sc.state), `seed ${seed}, transaction ${txn}: the records give the state`);
    // Now continue from what was read back, as a tracker does after its cache dropped the chat.
    if (rng.next() < 0.3) sc = back;
  }
  // Only open messages have records, one each.
  const openCount = sc.state.open.reduce((s, c) => s + c.messages.length, 0);
  assert.equal(records.range(messagePrefix(chat), prefixEnd(messagePrefix(chat))).length, openCount);
  return { txns, messages: n, writes: writesTotal };
}

test('gap mode: after every transaction the records read back give the state', () => {
  for (const seed of [1, 2, 3, 4, 5]) run(false, seed);
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
    if (res.placedIn) placed(sc, m, at, res.placedIn, writes, new Set());
    for (const o of res.outputs) if (o.kind === 'sealed') sealedMessages(sc, o.conversation.messages, writes, new Set());
    structure(sc, writes);
    records.apply(writes);
    return [...writes.keys()].map((k) => parseKey(k).kind);
  };
  assert.deepEqual(send(0, 1000).sort(), ['message', 'meta']);
  assert.deepEqual(send(1, 1010), ['message']);
  assert.deepEqual(send(2, 1020), ['message']);
  // Past the gap: the first conversation is sealed: its records deleted, its summary written.
  const kinds = send(3, 1200);
  assert.equal(kinds.filter((k) => k === 'message').length, 4, 'three deletes and one put');
  assert.ok(kinds.includes('sealed') && kinds.includes('meta'));
  assert.equal(records.range(messagePrefix('c'), prefixEnd(messagePrefix('c'))).length, 1);
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
