// A task's local key-value store: RocksDB under STATE_DIR/<store>/<partition>, the changelog's
// local copy. The store is only written after the Kafka transaction that logged the same writes
// has committed, so it never holds more than the changelog; it may hold less after a crash.
//
// A `.checkpoint` file, written on clean close and removed on open, records the changelog offset
// the store reflects. Open with a checkpoint: keep the store, restore the changelog tail from
// there. Open without one (first start or an unclean stop): wipe and restore from the beginning.
import { mkdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { RocksLevel } from '@nxtedition/rocksdb';

export type StoreOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

interface Checkpoint { changelogOffset: number }

export class StateStore {
  private constructor(
    private readonly db: RocksLevel<string, Buffer>,
    readonly dir: string,
    /** Changelog offset to restore from: the checkpoint, or 0 after a wipe. */
    readonly restoreFrom: number,
    readonly wiped: boolean,
  ) {}

  static async open(stateDir: string, name: string, partition: number): Promise<StateStore> {
    const dir = path.resolve(stateDir, name, String(partition));
    const checkpointFile = path.join(dir, '.checkpoint');
    let checkpoint: Checkpoint | null = null;
    try {
      checkpoint = JSON.parse(await readFile(checkpointFile, 'utf8')) as Checkpoint;
      if (!Number.isSafeInteger(checkpoint.changelogOffset) || checkpoint.changelogOffset < 0) checkpoint = null;
    } catch {
      checkpoint = null;
    }
    if (checkpoint === null) await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    // From here on the store is "dirty": only a clean close writes a new checkpoint.
    await rm(checkpointFile, { force: true });
    const db = new RocksLevel<string, Buffer>(path.join(dir, 'rocksdb'), { keyEncoding: 'utf8', valueEncoding: 'buffer' } as any);
    await db.open();
    return new StateStore(db, dir, checkpoint?.changelogOffset ?? 0, checkpoint === null);
  }

  getMany(keys: string[]): Promise<(Buffer | undefined)[]> {
    return this.db.getMany(keys);
  }

  async get(key: string): Promise<Buffer | undefined> {
    return (await this.db.getMany([key]))[0];
  }

  write(ops: StoreOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return this.db.batch(ops as any);
  }

  /** Keys and values in [gte, lt), at most `limit` of them, in key order. */
  async range(gte: string, lt: string, limit = 1000): Promise<[string, Buffer][]> {
    const it = this.db.iterator({ gte, lt, limit });
    try {
      return (await it.nextv(limit)) as [string, Buffer][];
    } finally {
      await it.close();
    }
  }

  /** Visits every entry in [gte, lt) in key order, in chunks (for restore-time rebuilds and status). */
  async scan(gte: string, lt: string, visit: (key: string, value: Buffer) => void | Promise<void>): Promise<void> {
    const it = this.db.iterator({ gte, lt });
    try {
      for (;;) {
        const chunk = (await it.nextv(1000)) as [string, Buffer][];
        if (chunk.length === 0) break;
        for (const [k, v] of chunk) await visit(k, v);
      }
    } finally {
      await it.close();
    }
  }

  approximateSizeBytes(): number {
    // Live data in SST files plus what is still in memtables (not flushed yet).
    const prop = (name: string) => {
      try { return Number(this.db.getProperty(name)) || 0; } catch { return 0; }
    };
    return prop('rocksdb.estimate-live-data-size') + prop('rocksdb.cur-size-all-mem-tables');
  }

  /** Closes the store; with a changelog offset, marks it clean so the next open keeps it. */
  async close(cleanAtChangelogOffset: number | null): Promise<void> {
    await this.db.close();
    if (cleanAtChangelogOffset !== null) {
      const file = path.join(this.dir, '.checkpoint');
      await writeFile(`${file}.tmp`, JSON.stringify({ changelogOffset: cleanAtChangelogOffset } satisfies Checkpoint));
      await rename(`${file}.tmp`, file);
    }
  }
}
