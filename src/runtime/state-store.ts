// A task's local key-value store: RocksDB under STATE_DIR/<store>/<partition>, the changelog's
// local copy. The store is only written after the Kafka transaction that logged the same writes
// has committed, so it never holds more than the changelog; it may hold less after a crash.
//
// A `.checkpoint` file, written on clean close and removed on open, records the changelog offset
// the store reflects and the format of its files. Open with a checkpoint of this format: keep the
// store, restore the changelog tail from there. Open without one (first start, an unclean stop, or
// a store written by the previous binding): wipe and restore from the beginning.
//
// The binding is `rocksdb-native` (Holepunch's librocksdb: current RocksDB, prebuilt binaries in
// the npm package). This file is the only one that knows it. Its native memory is what the
// options say: each store's share of the process's state memory budget (STATE_MEMORY, see
// setStateMemory) goes to its memtables and, when the share is large enough, to a block cache.
// (`@nxtedition/rocksdb`, used before, kept ~400 bytes of anonymous memory per written key,
// whatever its options: bench/rocksdb-memory.ts compares the two.)
import { mkdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import RocksDB from 'rocksdb-native';
import { taskMetrics } from './runtime-metrics';

/** A write: a put, a delete, or a range delete of every key in [gte, lt). */
export type StoreOp =
  | { type: 'put'; key: string; value: Buffer }
  | { type: 'del'; key: string }
  | { type: 'delRange'; gte: string; lt: string };

/**
 * What wrote the store's files. A checkpoint of another format is ignored (the store is wiped and
 * restored from the changelog): `@nxtedition/rocksdb`, the binding before, wrote ZSTD-compressed
 * WAL records and SST files, which this binding's RocksDB (built without ZSTD) cannot read: it
 * drops such a WAL as corrupt and would have kept an empty store behind a valid checkpoint.
 */
const STORE_FORMAT = 'rocksdb-native/uncompressed';

interface Checkpoint { changelogOffset: number; format?: string }

const MiB = 1_048_576;
/** The block cache when a store has one: the binding always creates RocksDB's default, 32 MiB. */
const BLOCK_CACHE_BYTES = 32 * MiB;
/** Memtables per store: one being written, one being flushed. */
const WRITE_BUFFERS = 2;
const MIN_WRITE_BUFFER_BYTES = 1 * MiB;

/** The default of STATE_MEMORY (config.ts reads and validates the setting). */
export const DEFAULT_STATE_MEMORY_BYTES = 64 * MiB;

/** How a store's share of the budget is spent. */
export interface StoreMemory {
  /** The store's share: the process's budget divided by the stores it may have open. */
  shareBytes: number;
  /** Size of one memtable; there are `writeBuffers` of them. */
  writeBufferBytes: number;
  writeBuffers: number;
  /** 0 when the share is too small for one: reads then go to the OS page cache. */
  blockCacheBytes: number;
}

/**
 * A store's memory plan: its share of the budget; the fixed 32 MiB block cache when that is at
 * most half the share; two memtables of half the rest each (at least 1 MiB).
 */
export function planStoreMemory(totalBytes: number, stores: number): StoreMemory {
  const shareBytes = Math.floor(totalBytes / Math.max(1, stores));
  const blockCacheBytes = shareBytes >= 2 * BLOCK_CACHE_BYTES ? BLOCK_CACHE_BYTES : 0;
  const writeBufferBytes = Math.max(MIN_WRITE_BUFFER_BYTES, Math.floor((shareBytes - blockCacheBytes) / WRITE_BUFFERS));
  return { shareBytes, writeBufferBytes, writeBuffers: WRITE_BUFFERS, blockCacheBytes };
}

const budget = { totalBytes: DEFAULT_STATE_MEMORY_BYTES, stores: 6 };
let openStores = 0;

/**
 * Sets the native memory budget of this process's stores (STATE_MEMORY) and the number of stores
 * it is split across: the most the process may have open at once (one per partition of the
 * source topic). A store opened while more are open gets a share of 1/(open + 1) instead.
 * Applies to stores opened afterwards.
 */
export function setStateMemory(totalBytes: number, stores: number): void {
  if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) throw new Error(`state memory must be a positive number of bytes, got ${totalBytes}`);
  budget.totalBytes = totalBytes;
  budget.stores = Math.max(1, Math.floor(stores));
}

type Db = InstanceType<typeof RocksDB>;
type DbIterator = ReturnType<Db['iterator']>;
type WriteBatch = ReturnType<Db['write']>;
type Entry = { key: Buffer; value: Buffer };

/**
 * The entries the iterator has read so far (one native read of up to its capacity), or null at
 * its end. Much cheaper than `for await`, which costs a promise per entry.
 */
function nextChunk(it: DbIterator): Promise<Entry[] | null> {
  return new Promise((resolve, reject) => {
    const out: Entry[] = [];
    const cleanup = () => {
      it.off('readable', pull); it.off('end', onEnd); it.off('close', onEnd); it.off('error', onError);
    };
    const pull = () => {
      for (let e = it.read(); e !== null; e = it.read()) out.push(e);
      if (out.length > 0) { cleanup(); resolve(out); }
    };
    const onEnd = () => { cleanup(); resolve(out.length > 0 ? out : null); };
    const onError = (e: Error) => { cleanup(); reject(e); };
    pull();
    if (out.length > 0) return;
    // 'end' may have been emitted while the previous chunk was being visited.
    if (it._readableState?.ended === true || it.destroying) { resolve(null); return; }
    it.on('readable', pull);
    it.on('end', onEnd);
    it.on('close', onEnd);
    it.on('error', onError);
  });
}

export class StateStore {
  private sizeBytes = 0;
  private sizing: Promise<void> | null = null;
  private closed = false;

  /** Bytes of keys and values this store has written (puts; deletes count their keys). */
  bytesWritten = 0;

  private constructor(
    private readonly db: Db,
    private readonly name: string,
    readonly dir: string,
    /** Changelog offset to restore from: the checkpoint, or 0 after a wipe. */
    readonly restoreFrom: number,
    readonly wiped: boolean,
    readonly memory: StoreMemory,
  ) {}

  static async open(stateDir: string, name: string, partition: number): Promise<StateStore> {
    const dir = path.resolve(stateDir, name, String(partition));
    const checkpointFile = path.join(dir, '.checkpoint');
    let checkpoint: Checkpoint | null = null;
    try {
      checkpoint = JSON.parse(await readFile(checkpointFile, 'utf8')) as Checkpoint;
      if (!Number.isSafeInteger(checkpoint.changelogOffset) || checkpoint.changelogOffset < 0) checkpoint = null;
      else if (checkpoint.format !== STORE_FORMAT) checkpoint = null;
    } catch {
      checkpoint = null;
    }
    if (checkpoint === null) await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    // From here on the store is "dirty": only a clean close writes a new checkpoint.
    await rm(checkpointFile, { force: true });
    const memory = planStoreMemory(budget.totalBytes, Math.max(budget.stores, openStores + 1));
    const cache = memory.blockCacheBytes > 0;
    const db = new RocksDB(path.join(dir, 'rocksdb'), {
      // Flushes and compactions: each store has its own background threads.
      maxBackgroundJobs: 2,
      writeBufferSize: memory.writeBufferBytes,
      maxWriteBufferNumber: memory.writeBuffers,
      blockCache: cache,
      // Without a block cache, index and filter blocks stay with the table readers.
      tableCacheIndexAndFilterBlocks: cache,
    });
    openStores++;
    try {
      await db.ready();
    } catch (e) {
      openStores--;
      await db.close().catch(() => undefined);
      throw e;
    }
    return new StateStore(db, name, dir, checkpoint?.changelogOffset ?? 0, checkpoint === null, memory);
  }

  async getMany(keys: string[]): Promise<(Buffer | undefined)[]> {
    if (keys.length === 0) return [];
    const batch = this.db.read({ capacity: keys.length });
    const values = keys.map((k) => batch.get(k));
    batch.tryFlush();
    try {
      return (await Promise.all(values)).map((v) => v ?? undefined);
    } finally {
      batch.destroy();
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    return (await this.getMany([key]))[0];
  }

  /** Applies the writes atomically (one RocksDB write batch). */
  write(ops: StoreOp[]): Promise<void> {
    return this.writeBatch(ops.length, (batch) => {
      let bytes = 0;
      for (const op of ops) {
        if (op.type === 'put') { batch.tryPut(op.key, op.value); bytes += op.key.length + op.value.length; }
        else if (op.type === 'del') { batch.tryDelete(op.key); bytes += op.key.length; }
        else { batch.tryDeleteRange(op.gte, op.lt); bytes += op.gte.length + op.lt.length; }
      }
      return bytes;
    });
  }

  /** One RocksDB write batch of up to `capacity` operations that `fill` adds (it returns their bytes), applied atomically. */
  private async writeBatch(capacity: number, fill: (batch: WriteBatch) => number): Promise<void> {
    if (capacity <= 0) return;
    const batch = this.db.write({ capacity });
    let bytes = 0;
    try {
      bytes = fill(batch);
      await batch.flush();
    } finally {
      batch.destroy();
    }
    this.bytesWritten += bytes;
    taskMetrics().storeWriteBytes.inc({ store: this.name }, bytes);
  }

  /**
   * Applies changelog records [from, to) in their order, as one write batch: a record with a value
   * puts it, a tombstone deletes; records without a key are skipped. Keys go to RocksDB as the
   * bytes they came as (restore reads a million of them: no string per key).
   */
  applyRecords(records: readonly { key: Buffer | null; value: Buffer | null }[], from = 0, to = records.length): Promise<void> {
    return this.writeBatch(to - from, (batch) => {
      let bytes = 0;
      for (let i = from; i < to; i++) {
        const { key, value } = records[i]!;
        if (key === null) continue;
        if (value === null) batch.tryDelete(key);
        else { batch.tryPut(key, value); bytes += value.length; }
        bytes += key.length;
      }
      return bytes;
    });
  }

  /** Deletes every key in [gte, lt) (one range tombstone). */
  deleteRange(gte: string, lt: string): Promise<void> {
    return this.write([{ type: 'delRange', gte, lt }]);
  }

  /** Keys and values in [gte, lt), at most `limit` of them, in key order. */
  async range(gte: string, lt: string, limit = 1000): Promise<[string, Buffer][]> {
    const out: [string, Buffer][] = [];
    if (limit <= 0) return out;
    await this.iterate(gte, lt, limit, Math.min(limit, 1000), (k, v) => { out.push([k, v]); });
    return out;
  }

  /** Visits every entry in [gte, lt) in key order, in chunks (for restore-time rebuilds and status). */
  scan(gte: string, lt: string, visit: (key: string, value: Buffer) => void | Promise<void>): Promise<void> {
    return this.iterate(gte, lt, Infinity, 1000, visit);
  }

  private async iterate(gte: string, lt: string, limit: number, capacity: number,
    visit: (key: string, value: Buffer) => void | Promise<void>): Promise<void> {
    // Nothing is below the empty key; to the binding an empty bound would mean no bound.
    if (lt === '' || (gte !== '' && gte >= lt)) return;
    const it = this.db.iterator({ gte, lt, limit }, { capacity });
    try {
      for (;;) {
        const chunk = await nextChunk(it);
        if (chunk === null) break;
        for (const { key, value } of chunk) {
          const r = visit(key.toString('utf8'), value);
          if (r !== undefined) await r;
        }
      }
    } finally {
      it.destroy();
    }
  }

  /**
   * Live data in SST files plus what is still in memtables (not flushed yet). The binding reads
   * properties asynchronously: this returns the latest reading and starts the next one.
   */
  approximateSizeBytes(): number {
    if (this.sizing === null && !this.closed) {
      this.sizing = Promise.all([this.property('rocksdb.estimate-live-data-size'), this.property('rocksdb.cur-size-all-mem-tables')])
        .then(([live, mem]) => { this.sizeBytes = (live || 0) + (mem || 0); })
        .finally(() => { this.sizing = null; });
    }
    return this.sizeBytes;
  }

  /** A numeric RocksDB property (e.g. `rocksdb.cur-size-all-mem-tables`); NaN if unknown. */
  async property(name: string): Promise<number> {
    try { return Number(await this.db.getProperty(name)); } catch { return NaN; }
  }

  /** Closes the store; with a changelog offset, marks it clean so the next open keeps it. */
  async close(cleanAtChangelogOffset: number | null): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sizing;
    try {
      await this.db.close();
    } finally {
      openStores--;
    }
    if (cleanAtChangelogOffset !== null) {
      const file = path.join(this.dir, '.checkpoint');
      await writeFile(`${file}.tmp`, JSON.stringify({ changelogOffset: cleanAtChangelogOffset, format: STORE_FORMAT } satisfies Checkpoint));
      await rename(`${file}.tmp`, file);
    }
  }
}
