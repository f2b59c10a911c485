// The tracker's chat cache: bounded by its budget of estimated heap bytes, trimmed least recently
// changed first, its total kept as chats are added, changed and removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatCache, heapEstimate, type Cached } from '../../src/processors/chat-cache';
import { emptyChatState } from '../../src/sessionization/rules';

const chat = (): Cached => ({ state: emptyChatState('c'), heap: 0 });
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
