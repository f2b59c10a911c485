// The tracker's chat cache: bounded by its budget of estimated heap bytes, trimmed least recently
// changed first, its total kept as chats are added, changed and removed; an evicted chat's open
// messages parked when they are all held, within a budget of their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatCache, cacheBudgets, heapEstimate, type Cached } from '../../src/processors/chat-cache';
import { emptyChatState, type OpenConversation } from '../../src/sessionization/rules';
import type { ChatMessage } from '../../src/records/types';

const chat = (): Cached => ({ state: emptyChatState('c'), seqOf: new Map(), heap: 0 });
const EMPTY = heapEstimate(emptyChatState('c'));

test('trim() evicts the least recently changed chats until the estimate is within the budget', () => {
  const cache = new ChatCache<Cached>(3 * EMPTY);
  for (const id of ['a', 'b', 'c', 'd', 'e']) cache.add(id, chat());
  assert.equal(cache.heapBytes, 5 * EMPTY);
  cache.changed('a', cache.get('a')!); // a becomes the most recently changed
  cache.trim();
  assert.deepEqual(['a', 'b', 'c', 'd', 'e'].filter((id) => cache.has(id)), ['a', 'd', 'e']);
  assert.equal(cache.heapBytes, 3 * EMPTY);
});

test('the total follows a chat whose state grew, one removed, one added twice', () => {
  const cache = new ChatCache<Cached>(1_000_000);
  const a = chat();
  cache.add('a', a);
  cache.add('b', chat());
  const grown = { ...a.state, sealed: [{ messageIds: ['m-1', 'm-2', 'm-3'] }] } as unknown as Cached['state'];
  a.state = grown;
  cache.changed('a', a);
  assert.equal(a.heap, heapEstimate(grown));
  assert.ok(a.heap > EMPTY);
  assert.equal(cache.heapBytes, a.heap + EMPTY);
  cache.delete('a');
  assert.equal(cache.heapBytes, EMPTY);
  cache.add('b', chat());
  assert.equal(cache.heapBytes, EMPTY, 'adding a chat again replaces it');
  cache.clear();
  assert.equal(cache.heapBytes, 0);
  assert.equal(cache.has('b'), false);
});

/** A chat with open conversations of these many messages, all held (`held`: how many of the last conversation's are). */
function withOpen(id: string, counts: number[], held?: number): Cached {
  const c = chat();
  c.state.chatId = id;
  let seq = 0;
  c.state.open = counts.map((n, k): OpenConversation => {
    const messages: ChatMessage[] = [];
    for (let i = 0; i < n; i++) {
      const m = { message_id: `${id}-${k}-${i}`, chat_id: id, sender_id: 's', sent_at: k * 1e8 + i, text: 'x', chat_type: null, is_from_me: false, reply_to_message_id: null, account_id: null };
      messages.push(m);
      c.seqOf.set(m, seq++);
    }
    return { startedAt: k * 1e8, endedAt: k * 1e8 + n - 1, count: n, bytes: 100 * n, firstMessageId: `${id}-${k}-0`, continuesConversationId: null, arrivedAt: 0, messages };
  });
  if (held !== undefined) { const last = c.state.open[c.state.open.length - 1]!; last.messages = last.messages.slice(0, held); }
  return c;
}

test('an evicted chat leaves its open messages parked, in order with their sequence numbers, when all are held', () => {
  const cache = new ChatCache<Cached>(0, 1_000_000);
  cache.add('a', withOpen('a', [2, 3]));
  cache.add('b', withOpen('b', [4], 2)); // loaded from its summaries: only two of four held
  cache.add('c', chat()); // nothing open
  cache.trim();
  assert.equal(cache.heapBytes, 0);
  assert.equal(cache.has('a'), false);
  const p = cache.takeParked('a')!;
  assert.deepEqual(p.messages.map((m) => m.message_id), ['a-0-0', 'a-0-1', 'a-1-0', 'a-1-1', 'a-1-2']);
  assert.deepEqual(p.seqs, [0, 1, 2, 3, 4]);
  assert.equal(cache.takeParked('a'), undefined, 'taken once');
  assert.equal(cache.takeParked('b'), undefined, 'not parked: not all held');
  assert.equal(cache.takeParked('c'), undefined, 'not parked: nothing open');
  assert.equal(cache.parkedBytes, 0);
  const t = withOpen('t', [2]);
  t.state.window = { entries: [] };
  cache.add('t', t);
  cache.trim();
  assert.equal(cache.takeParked('t'), undefined, 'not parked: thread mode');
});

test('parked messages are bounded by their budget, oldest dropped first; delete and clear drop them', () => {
  const one = withOpen('x', [3]);
  const perChat = 300 + 3 * 160; // bytes + MESSAGE_OVERHEAD a message
  const cache = new ChatCache<Cached>(0, 2 * perChat);
  for (const id of ['a', 'b', 'c']) { cache.add(id, withOpen(id, [3])); cache.trim(); }
  assert.equal(cache.parkedBytes, 2 * perChat);
  assert.equal(cache.takeParked('a'), undefined, 'the oldest dropped');
  assert.ok(cache.takeParked('b'));
  assert.equal(cache.parkedBytes, perChat);
  cache.delete('c');
  assert.equal(cache.takeParked('c'), undefined, 'delete drops parked messages');
  cache.add('d', one); cache.trim();
  cache.clear();
  assert.equal(cache.parkedBytes, 0);
  assert.equal(cache.takeParked('d'), undefined, 'clear drops parked messages');
  const none = new ChatCache<Cached>(0);
  none.add('e', withOpen('e', [1])); none.trim();
  assert.equal(none.takeParked('e'), undefined, 'no parking budget: nothing parked');
});

test('cacheBudgets splits a budget between chats and parked messages, whole', () => {
  const b = cacheBudgets(33_554_433);
  assert.equal(b.chats + b.parked, 33_554_433);
  assert.ok(b.parked > 0 && b.chats > 0);
});
