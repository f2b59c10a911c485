// `node dist/bench/store-reads.js [chats] [records]`: what the tracker's two kinds of store read
// cost, per call and per record, in a StateStore as the tracker opens it. A chat loaded from its
// summaries reads its records by key in one multi-get for the whole batch (`getMany`); a chat read
// with its open messages, and a seal of a conversation whose messages are not in memory, read a
// key range (`range`: a RocksDB iterator). `chats` chats (default 3,000) of `records` message
// records of 300 bytes each (default 1, 20 and 100), then for each size, twice over:
// - one range read per chat, one after the other (as a seal reads its conversation back);
// - the same ranges, 32 at once (as a batch's chats are loaded: chat-reader.ts, READ_CONCURRENCY);
// - the same records by key, one multi-get per 32 chats; and one multi-get of one key per chat.
// Printed: microseconds of wall time and of process CPU time (every thread) per chat and per
// record. The binding runs each operation on libuv's thread pool: a multi-get is one round trip
// for all its keys, an iterator three (open, read, close).
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateStore, type StoreOp } from '../src/runtime/state-store';
import { removeDir } from './lib';
import { messageKey, messagePrefix, prefixEnd } from '../src/processors/chat-state-layout';

const CONCURRENCY = 32;
const VALUE = Buffer.alloc(300, 0x61);

// The tracker's own message keys (chat-state-layout.ts), of chats named by their size and number.
const prefix = (size: number, chat: number) => messagePrefix(`s${size}c${chat}`);
const keyOf = (size: number, chat: number, i: number) => messageKey(`s${size}c${chat}`, `m${String(i).padStart(4, '0')}`);

interface Cost { wallUs: number; cpuUs: number }

async function timed(n: number, run: () => Promise<void>): Promise<Cost> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  await run();
  const c = process.cpuUsage(c0);
  return { wallUs: Number(process.hrtime.bigint() - t0) / 1e3 / n, cpuUs: (c.user + c.system) / n };
}

const row = (what: string, per: Cost, records: number) =>
  `  ${what.padEnd(34)} ${per.wallUs.toFixed(1).padStart(8)} us wall ${per.cpuUs.toFixed(1).padStart(8)} us CPU per chat`
  + `  (${(per.cpuUs / records).toFixed(1)} us CPU per record)`;

async function main(): Promise<void> {
  const chats = Number(process.argv[2] ?? 3000);
  const sizes = process.argv[3] !== undefined ? [Number(process.argv[3])] : [1, 20, 100];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-store-reads-'));
  const store = await StateStore.open(dir, 'tracker', 0);
  try {
    for (const size of sizes) {
      for (let c = 0; c < chats; c += 100) {
        const ops: StoreOp[] = [];
        for (let k = c; k < Math.min(chats, c + 100); k++) for (let i = 0; i < size; i++) ops.push({ type: 'put', key: keyOf(size, k, i), value: VALUE });
        await store.write(ops);
      }
    }
    console.log(`${chats} chats, records of ${VALUE.length} bytes; each line: the mean over the chats`);
    for (const size of sizes) {
      const keys = (c: number) => Array.from({ length: size }, (_, i) => keyOf(size, c, i));
      for (let round = 1; round <= 2; round++) {
        console.log(`${size} record${size === 1 ? '' : 's'} per chat, round ${round}:`);
        const one = await timed(chats, async () => {
          for (let c = 0; c < chats; c++) await store.range(prefix(size, c), prefixEnd(prefix(size, c)), Infinity);
        });
        console.log(row('range, one at a time', one, size));
        const many = await timed(chats, async () => {
          for (let c = 0; c < chats; c += CONCURRENCY) {
            await Promise.all(Array.from({ length: Math.min(CONCURRENCY, chats - c) }, (_, j) => store.range(prefix(size, c + j), prefixEnd(prefix(size, c + j)), Infinity)));
          }
        });
        console.log(row(`range, ${CONCURRENCY} at once`, many, size));
        const got = await timed(chats, async () => {
          for (let c = 0; c < chats; c += CONCURRENCY) {
            const batch: string[] = [];
            for (let j = c; j < Math.min(chats, c + CONCURRENCY); j++) batch.push(...keys(j));
            const values = await store.getMany(batch);
            if (values.some((v) => v === undefined)) throw new Error('a key written is missing');
          }
        });
        console.log(row(`getMany, ${CONCURRENCY} chats a call`, got, size));
        const single = await timed(chats, async () => {
          for (let c = 0; c < chats; c++) await store.getMany([keyOf(size, c, 0)]);
        });
        console.log(row('getMany of one key, one at a time', single, 1));
      }
    }
  } finally {
    await store.close(null);
    await removeDir(dir);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
