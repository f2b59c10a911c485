// Native memory of the tracker's store against the volume written: writes N records (the same
// 100,000 keys over and over, values of 350 bytes, batches of 5,000, as the tracker's commits do)
// through src/runtime/state-store.ts, and prints the process's anonymous resident memory
// (RssAnon: neither V8's heap, which stays small, nor mapped files) every million writes, after
// closing the store, and RocksDB's own accounting of its memtables.
//   N=3000000 node --expose-gc dist/bench/rocksdb-memory.js
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateStore, type StoreOp } from '../src/runtime/state-store';
import { removeDir } from './lib';

const anonMb = () => Number(/RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

async function main(): Promise<void> {
  const n = Number(process.env.N ?? 2_000_000);
  const keys = Number(process.env.KEYS ?? 100_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-rocksmem-'));
  const store = await StateStore.open(dir, 'chat-state', 0);
  const value = Buffer.alloc(350, 'a');
  const rows: { writes: number; rssAnonMb: number; memtablesMb: number; heapUsedMb: number }[] = [];
  const sample = async (writes: number) => {
    gc();
    rows.push({ writes, rssAnonMb: anonMb(), memtablesMb: (await store.property('rocksdb.cur-size-all-mem-tables')) / 1_048_576, heapUsedMb: process.memoryUsage().heapUsed / 1_048_576 });
  };
  await sample(0);
  for (let i = 0; i < n; i += 5000) {
    const ops: StoreOp[] = [];
    for (let j = i; j < i + 5000; j++) ops.push({ type: 'put', key: `s:chat-${j % keys}`, value: Buffer.from(value) });
    await store.write(ops);
    if ((i + 5000) % 1_000_000 === 0) await sample(i + 5000);
  }
  await store.close(null);
  gc();
  await new Promise((r) => setTimeout(r, 1000));
  console.log(JSON.stringify({ event: 'rocksdb-memory', keys, valueBytes: value.length, samples: rows, afterCloseRssAnonMb: anonMb() }));
  removeDir(dir);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
