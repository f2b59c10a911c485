// Native memory of RocksDB bindings against the volume written, side by side in one run: each
// variant in its own process writes N records (the same 100,000 keys over and over, values of
// 350 bytes, batches of 5,000, as the tracker's commits do) and reports its anonymous resident
// memory (RssAnon: neither V8's heap, which stays small, nor mapped files) after a GC every
// million writes, its peak (sampled every 250 ms), what stays after closing, and the write time.
//
//   npm run bench -- rocksdb-memory                 every variant, N = 3,000,000
//   N=6000000 npm run bench -- rocksdb-memory
//   VARIANT=store N=2000000 node --expose-gc dist/bench/rocksdb-memory.js   one variant, one JSON line
//
// Variants:
//   nxtedition     @nxtedition/rocksdb 12.2.12 with its defaults (the store's binding before)
//   native         rocksdb-native with its defaults (64 MiB memtables, 32 MiB block cache)
//   store          src/runtime/state-store.ts: rocksdb-native with its share of STATE_MEMORY
//   native-x6      six rocksdb-native databases with their defaults, writes spread over them
//   store-x6       six StateStores (one process, one per partition, as a tracker with 6 partitions)
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateStore, setStateMemory, type StoreOp } from '../src/runtime/state-store';
import { fmtInt, removeDir, spawnBenchScript } from './lib';

const anonMb = () => Number(/RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024;
const gc = () => (globalThis as { gc?: () => void }).gc?.();
const BATCH = 5000;

export const VARIANTS = ['nxtedition', 'native', 'store', 'native-x6', 'store-x6'] as const;
export type Variant = typeof VARIANTS[number];

export interface MemoryRun {
  variant: Variant;
  describe: string;
  writes: number;
  keys: number;
  valueBytes: number;
  databases: number;
  samples: { writes: number; rssAnonMb: number }[];
  peakRssAnonMb: number;
  afterCloseRssAnonMb: number;
  writeSeconds: number;
  error?: string;
}

/** One database's writes: a batch of puts. */
type Writer = { write(keys: string[], value: Buffer): Promise<void>; close(): Promise<void> };

async function openWriters(variant: Variant, dir: string): Promise<{ writers: Writer[]; describe: string }> {
  const n = variant.endsWith('-x6') ? 6 : 1;
  const writers: Writer[] = [];
  if (variant === 'nxtedition') {
    // Optional (a devDependency): the binding the store used before.
    const { RocksLevel } = require('@nxtedition/rocksdb') as { RocksLevel: new (p: string, o: object) => {
      open(): Promise<void>; close(): Promise<void>; batch(ops: object[]): Promise<void>;
    } };
    const db = new RocksLevel(path.join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await db.open();
    writers.push({ write: (keys, value) => db.batch(keys.map((key) => ({ type: 'put', key, value }))), close: () => db.close() });
    return { writers, describe: '@nxtedition/rocksdb 12.2.12, defaults' };
  }
  if (variant === 'native' || variant === 'native-x6') {
    const RocksDB = require('rocksdb-native') as new (p: string, o?: object) => {
      ready(): Promise<void>; close(): Promise<void>;
      write(o: object): { tryPut(k: string, v: Buffer): void; flush(): Promise<void>; destroy(): void };
    };
    for (let i = 0; i < n; i++) {
      const db = new RocksDB(path.join(dir, `db${i}`));
      await db.ready();
      writers.push({
        write: async (keys, value) => {
          const b = db.write({ capacity: keys.length });
          for (const k of keys) b.tryPut(k, value);
          try { await b.flush(); } finally { b.destroy(); }
        },
        close: () => db.close(),
      });
    }
    return { writers, describe: `rocksdb-native ${require('rocksdb-native/package').version}, defaults${n > 1 ? `, ${n} databases` : ''}` };
  }
  // The store as the tracker opens it: STATE_MEMORY (default unless set) over 6 partitions.
  const budget = Number(process.env.STATE_MEMORY_BYTES ?? 128 * 1_048_576);
  setStateMemory(budget, 6);
  let plan = '';
  for (let i = 0; i < n; i++) {
    const store = await StateStore.open(dir, 'chat-state', i);
    const m = store.memory;
    plan = `memtables 2 x ${(m.writeBufferBytes / 1_048_576).toFixed(0)} MiB, block cache ${(m.blockCacheBytes / 1_048_576).toFixed(0)} MiB`;
    writers.push({
      write: (keys, value) => store.write(keys.map((key): StoreOp => ({ type: 'put', key, value }))),
      close: () => store.close(null),
    });
  }
  return { writers, describe: `StateStore (rocksdb-native), STATE_MEMORY ${(budget / 1_048_576).toFixed(0)} MiB / 6: ${plan}${n > 1 ? `, ${n} stores` : ''}` };
}

async function child(variant: Variant): Promise<void> {
  const writes = Number(process.env.N ?? 3_000_000);
  const keys = Number(process.env.KEYS ?? 100_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), `chatstats-rocksmem-${variant}-`));
  const value = Buffer.alloc(350, 'a');
  let peak = anonMb();
  const timer = setInterval(() => { peak = Math.max(peak, anonMb()); }, 250);
  try {
    const { writers, describe } = await openWriters(variant, dir);
    const samples: MemoryRun['samples'] = [];
    const sample = (w: number) => { gc(); const a = anonMb(); peak = Math.max(peak, a); samples.push({ writes: w, rssAnonMb: a }); };
    sample(0);
    const t0 = Date.now();
    for (let i = 0, b = 0; i < writes; i += BATCH, b++) {
      const batch: string[] = [];
      for (let j = i; j < i + BATCH; j++) batch.push(`s:chat-${j % keys}`);
      await writers[b % writers.length]!.write(batch, value);
      if ((i + BATCH) % 1_000_000 === 0) sample(i + BATCH);
    }
    const writeSeconds = (Date.now() - t0) / 1000;
    for (const w of writers) await w.close();
    gc();
    await new Promise((r) => setTimeout(r, 1000));
    gc();
    const run: MemoryRun = {
      variant, describe, writes, keys, valueBytes: value.length, databases: writers.length, samples,
      peakRssAnonMb: peak, afterCloseRssAnonMb: anonMb(), writeSeconds,
    };
    console.log(JSON.stringify({ event: 'rocksdb-memory', ...run }));
  } finally {
    clearInterval(timer);
    removeDir(dir);
  }
}

/** Every variant (or those listed), each in its own process, one after the other. */
export async function runRocksdbMemory(opts: { writes?: number; variants?: Variant[]; log: (s: string) => void }): Promise<MemoryRun[]> {
  const out: MemoryRun[] = [];
  for (const variant of opts.variants ?? VARIANTS) {
    opts.log(`[rocksdb-memory] ${variant}`);
    const c = spawnBenchScript('rocksdb-memory', { VARIANT: variant, N: String(opts.writes ?? Number(process.env.N ?? 3_000_000)) }, ['--expose-gc']);
    const code = await c.exited;
    const line = c.output().split('\n').find((l) => l.startsWith('{"event":"rocksdb-memory"'));
    if (code !== 0 || line === undefined) {
      out.push({ variant, describe: variant, writes: 0, keys: 0, valueBytes: 0, databases: 0, samples: [], peakRssAnonMb: NaN, afterCloseRssAnonMb: NaN, writeSeconds: NaN,
        error: c.output().trim().split('\n').slice(-3).join(' ').slice(0, 300) });
      continue;
    }
    const { event: _e, ...run } = JSON.parse(line) as MemoryRun & { event: string };
    out.push(run);
  }
  return out;
}

export function memoryRows(runs: MemoryRun[]): string[][] {
  return runs.map((r) => {
    const what = `RocksDB memory, ${fmtInt(r.writes)} writes of ${r.valueBytes} B over ${fmtInt(r.keys)} keys`;
    if (r.error) return [what, r.variant, `failed: ${r.error}`, ''];
    const per = r.samples.filter((s) => s.writes > 0).map((s) => fmtInt(s.rssAnonMb)).join(' / ');
    return [what, r.describe, `RssAnon per million writes ${per} MB; peak ${fmtInt(r.peakRssAnonMb)} MB; after close ${fmtInt(r.afterCloseRssAnonMb)} MB`,
      `${r.writeSeconds.toFixed(1)} s of writes`];
  });
}

if (require.main === module) {
  const variant = process.env.VARIANT as Variant | undefined;
  const done = variant !== undefined
    ? child(variant)
    : runRocksdbMemory({ log: (s) => process.stderr.write(`${s}\n`) }).then((runs) => { for (const r of memoryRows(runs)) console.log(r.join(' | ')); });
  done.then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
}
