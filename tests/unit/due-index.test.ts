// The tracker's due index on a real RocksDB store: entries moved, the first due time, chats due at
// a time read in chunks with a cursor, and the floor that reads start from.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DueIndex, indexedKey } from '../../src/processors/due-index';
import { StateStore, type StoreOp } from '../../src/runtime/state-store';

const dirs: string[] = [];
const stores: StateStore[] = [];
after(async () => {
  for (const s of stores) await s.close(null);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function open(): Promise<{ store: StateStore; index: DueIndex; move: (chat: string, was: number | null, due: number | null) => Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-due-index-'));
  dirs.push(dir);
  const store = await StateStore.open(dir, 'chat-state', 0);
  stores.push(store);
  const index = new DueIndex(store);
  const move = async (chat: string, was: number | null, due: number | null) => {
    const ops: StoreOp[] = [];
    index.move(ops, chat, was, due);
    await store.write(ops);
  };
  return { store, index, move };
}

test('first() is the earliest due time; a moved entry leaves its old place; an emptied index is null', async () => {
  const { store, index, move } = await open();
  assert.equal(await index.first(), null);
  await move('a', null, 3000);
  await move('b', null, 2000);
  await move('c', null, 5000);
  assert.equal(await index.first(), 2000);
  await move('b', 2000, 4000);
  assert.equal(await index.first(), 3000);
  assert.equal((await store.get(indexedKey('b')))?.toString(), '4000');
  await move('a', 3000, null);
  assert.equal(await store.get(indexedKey('a')), undefined);
  assert.deepEqual(await index.next(10), [{ chat_id: 'b', deadline: 4000 }, { chat_id: 'c', deadline: 5000 }]);
  await move('b', 4000, null);
  await move('c', 5000, null);
  assert.equal(await index.first(), null);
  assert.equal(index.nothingDueAt(Number.MAX_SAFE_INTEGER), true, 'an index known to be empty has nothing due, without a read');
});

test('dueAt() reads the chats due at a time in chunks, continuing after its cursor', async () => {
  const { index, move } = await open();
  for (let i = 0; i < 7; i++) await move(`chat-${i}`, null, 1000 + i * 10);
  await move('later', null, 9000);
  const seen: string[] = [];
  let cursor: string | null = null;
  for (;;) {
    const r = await index.dueAt(1060, 3, cursor);
    seen.push(...r.chats);
    if (r.chats.length < 3) break;
    cursor = r.cursor;
  }
  assert.deepEqual(seen, ['chat-0', 'chat-1', 'chat-2', 'chat-3', 'chat-4', 'chat-5', 'chat-6']);
  assert.deepEqual((await index.dueAt(999, 10, null)).chats, []);
});

test('the floor: raised by first(), lowered by a move below it, so an entry written under it is found', async () => {
  const { index, move } = await open();
  await move('x', null, 5000);
  assert.equal(await index.first(), 5000);
  assert.equal(index.nothingDueAt(4999), true);
  assert.equal(index.nothingDueAt(5000), false);
  await move('y', null, 100);
  assert.equal(index.nothingDueAt(100), false);
  assert.equal(await index.first(), 100);
  assert.deepEqual((await index.dueAt(200, 10, null)).chats, ['y']);
});
