// `node dist/bench/index-tombstones.js [entries]`: what the first key of the tracker's due index
// costs to read once sealed chats' entries have been deleted but not compacted away. The tracker
// asks for its next due time after every commit that wrote its store (stream-task.ts refreshDue):
// a range read of one key. RocksDB keeps a deleted key's tombstone until a compaction drops it, so
// a read from the index's first key steps over every entry deleted since; the tracker starts its
// reads at a floor below which it knows no entry is (conversation-tracker.ts, dueFloor). Here, in
// a StateStore as the tracker opens it: `entries` index keys (default 200,000), the lowest deleted
// in steps, and after each step the mean of 50 first-key reads from the index's start and from
// the floor (the first key not deleted), side by side.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateStore, type StoreOp } from '../src/runtime/state-store';
import { fmtInt, removeDir } from './lib';

const pad = (n: number) => String(n).padStart(15, '0');
const key = (i: number) => `d:${pad(1_800_000_000_000 + i)}:chat-${i}`;
const READS = 50;

async function meanReadMs(store: StateStore, from: string): Promise<number> {
  const t0 = performance.now();
  for (let r = 0; r < READS; r++) await store.range(from, 'd;', 1);
  return (performance.now() - t0) / READS;
}

async function main(): Promise<void> {
  const entries = Number(process.argv[2] ?? 200_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-index-tombstones-'));
  const store = await StateStore.open(dir, 'tracker', 0);
  try {
    for (let i = 0; i < entries; i += 10_000) {
      const ops: StoreOp[] = [];
      for (let j = i; j < Math.min(entries, i + 10_000); j++) ops.push({ type: 'put', key: key(j), value: Buffer.alloc(0) });
      await store.write(ops);
    }
    console.log(`${fmtInt(entries)} index entries; first-key read, mean of ${READS}:`);
    let deleted = 0;
    for (const upTo of [0, 1_000, 10_000, 50_000, entries / 2]) {
      const ops: StoreOp[] = [];
      for (; deleted < upTo; deleted++) ops.push({ type: 'del', key: key(deleted) });
      if (ops.length > 0) await store.write(ops);
      const fromStart = await meanReadMs(store, 'd:');
      const fromFloor = await meanReadMs(store, `d:${pad(1_800_000_000_000 + deleted)}`);
      console.log(`  ${fmtInt(deleted).padStart(7)} deleted: from the index's start ${fromStart.toFixed(3)} ms, from the floor ${fromFloor.toFixed(3)} ms (${(fromStart / fromFloor).toFixed(1)}x)`);
    }
  } finally {
    await store.close(null);
    removeDir(dir);
  }
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
