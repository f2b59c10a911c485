// The state store on its binding, without Kafka: reads and writes, ranges, range deletes, the
// checkpoint that keeps a cleanly closed store, and the memory plan of STATE_MEMORY.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateStore, planStoreMemory, setStateMemory, DEFAULT_STATE_MEMORY_BYTES } from '../../src/runtime/state-store';
import { loadConfig, ConfigError } from '../../src/config';

const MiB = 1_048_576;
const b = (s: string) => Buffer.from(s);

function tmp(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'chatstats-store-test-'));
}

test('applyRecords: changelog records in order, the last write of a key wins, tombstones delete, keyless skipped', async () => {
  const dir = tmp();
  try {
    const s = await StateStore.open(dir, 'st', 0);
    await s.write([{ type: 'put', key: 'old', value: b('x') }]);
    const records = [
      { key: b('skipped-before'), value: b('not in [from, to)') },
      { key: b('a'), value: b('1') },
      { key: null, value: b('no key') },
      { key: b('a'), value: b('2') },
      { key: b('old'), value: null },
      { key: b('n\u0000chat\u0000m1'), value: b('message') },
      { key: b('n\u0000chat\u0000m1'), value: null },
      { key: b('b'), value: null },
      { key: b('c'), value: b('3') },
      { key: b('skipped-after'), value: b('not in [from, to)') },
    ];
    await s.applyRecords(records, 1, records.length - 1);
    assert.deepEqual(await s.getMany(['a', 'old', 'n\u0000chat\u0000m1', 'b', 'c', 'skipped-before', 'skipped-after']),
      [b('2'), undefined, undefined, undefined, b('3'), undefined, undefined]);
    await s.applyRecords(records, 3, 3);
    await s.applyRecords([{ key: b('d'), value: b('4') }]);
    assert.deepEqual(await s.get('d'), b('4'));
    await s.close(null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('get, getMany, write (put, del, delRange), range and scan', async () => {
  const dir = tmp();
  try {
    const s = await StateStore.open(dir, 'st', 0);
    assert.equal(s.wiped, true);
    assert.equal(s.restoreFrom, 0);
    await s.write([]);
    await s.write(Array.from({ length: 2500 }, (_, i) => ({ type: 'put' as const, key: `k:${String(i).padStart(5, '0')}`, value: b(`v${i}`) })));
    assert.deepEqual(await s.get('k:00007'), b('v7'));
    assert.equal(await s.get('missing'), undefined);
    assert.deepEqual(await s.getMany(['k:00001', 'nope', 'k:02499']), [b('v1'), undefined, b('v2499')]);
    assert.deepEqual(await s.getMany([]), []);

    const first = await s.range('k:', 'k;', 3);
    assert.deepEqual(first.map(([k]) => k), ['k:00000', 'k:00001', 'k:00002']);
    assert.equal((await s.range('k:', 'k;')).length, 1000, 'default limit');
    assert.equal((await s.range('k:', 'k;', 5000)).length, 2500, 'more than one chunk');
    assert.deepEqual(await s.range('k:00010', 'k:00012', 10), [['k:00010', b('v10')], ['k:00011', b('v11')]]);
    assert.deepEqual(await s.range('x:', 'x;', 10), []);
    assert.deepEqual(await s.range('k:', '', 10), [], 'nothing is below the empty key');
    assert.deepEqual(await s.range('k:9', 'k:0', 10), []);
    assert.equal((await s.range('', 'k:00003', 10)).length, 3);

    await s.write([{ type: 'del', key: 'k:00000' }, { type: 'delRange', gte: 'k:00100', lt: 'k:00200' }, { type: 'put', key: 'k:00150', value: b('again') }]);
    await s.deleteRange('k:02000', 'k:03000');
    const keys: string[] = [];
    let slow = 0;
    await s.scan('k:', 'k;', async (k) => { keys.push(k); if (keys.length % 700 === 0) { slow++; await new Promise((r) => setTimeout(r, 1)); } });
    assert.equal(keys.length, 2500 - 1 - 100 + 1 - 500);
    assert.ok(slow > 0);
    assert.ok(!keys.includes('k:00000') && !keys.includes('k:00100') && keys.includes('k:00150') && !keys.includes('k:02000'));
    assert.deepEqual(keys, [...keys].sort(), 'key order');
    assert.ok(s.bytesWritten > 2500 * 8);
    s.approximateSizeBytes();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(s.approximateSizeBytes() > 0);
    await s.close(null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a clean close keeps the store and its changelog offset; an unclean one wipes it', async () => {
  const dir = tmp();
  try {
    let s = await StateStore.open(dir, 'st', 3);
    await s.write([{ type: 'put', key: 'a', value: b('1') }]);
    await s.close(42);
    s = await StateStore.open(dir, 'st', 3);
    assert.equal(s.wiped, false);
    assert.equal(s.restoreFrom, 42);
    assert.deepEqual(await s.get('a'), b('1'));
    await s.close(null);
    s = await StateStore.open(dir, 'st', 3);
    assert.equal(s.wiped, true);
    assert.equal(s.restoreFrom, 0);
    assert.equal(await s.get('a'), undefined);
    await s.close(null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a store written by the previous binding (@nxtedition/rocksdb, ZSTD) is wiped and restored, never kept behind its checkpoint', async () => {
  const dir = tmp();
  try {
    // As the store before this binding left it on a clean close.
    const { RocksLevel } = require('@nxtedition/rocksdb') as { RocksLevel: new (p: string, o: object) => {
      open(): Promise<void>; close(): Promise<void>; batch(ops: object[]): Promise<void>;
    } };
    const old = new RocksLevel(path.join(dir, 'st', '0', 'rocksdb'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await old.open();
    await old.batch([{ type: 'put', key: 's:chat', value: b('state') }]);
    await old.close();
    writeFileSync(path.join(dir, 'st', '0', '.checkpoint'), JSON.stringify({ changelogOffset: 1234 }));
    const s = await StateStore.open(dir, 'st', 0);
    assert.equal(s.wiped, true);
    assert.equal(s.restoreFrom, 0, 'the whole changelog is restored');
    assert.equal(await s.get('s:chat'), undefined);
    await s.write([{ type: 'put', key: 's:chat', value: b('restored') }]);
    await s.close(1234);
    const again = await StateStore.open(dir, 'st', 0);
    assert.equal(again.wiped, false);
    assert.equal(again.restoreFrom, 1234);
    assert.deepEqual(await again.get('s:chat'), b('restored'));
    await again.close(null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('STATE_MEMORY is split across the stores: memtables, and a block cache once a share allows one', async () => {
  assert.deepEqual(planStoreMemory(128 * MiB, 6), { shareBytes: Math.floor(128 * MiB / 6), writeBufferBytes: Math.floor(128 * MiB / 12), writeBuffers: 2, blockCacheBytes: 0 });
  assert.deepEqual(planStoreMemory(512 * MiB, 6), { shareBytes: Math.floor(512 * MiB / 6), writeBufferBytes: Math.floor((512 * MiB / 6 - 32 * MiB) / 2), writeBuffers: 2, blockCacheBytes: 32 * MiB });
  assert.equal(planStoreMemory(16 * MiB, 100).writeBufferBytes, MiB, 'at least 1 MiB per memtable');
  // Within the budget whenever it allows 1 MiB memtables: memtables plus cache never exceed the share.
  for (const [total, n] of [[16, 6], [128, 6], [128, 1], [256, 6], [1024, 12], [64, 1]] as const) {
    const p = planStoreMemory(total * MiB, n);
    assert.ok(p.writeBuffers * p.writeBufferBytes + p.blockCacheBytes <= p.shareBytes, `${total} MiB / ${n}`);
  }

  const dir = tmp();
  try {
    setStateMemory(60 * MiB, 3);
    const stores = [await StateStore.open(dir, 'st', 0), await StateStore.open(dir, 'st', 1), await StateStore.open(dir, 'st', 2)];
    for (const s of stores) assert.equal(s.memory.shareBytes, 20 * MiB);
    // More stores than expected: the next one gets 1/(open + 1).
    const extra = await StateStore.open(dir, 'st', 3);
    assert.equal(extra.memory.shareBytes, 15 * MiB);
    assert.equal(await extra.property('rocksdb.block-cache-capacity') || 0, 0);
    for (const s of [...stores, extra]) await s.close(null);
  } finally {
    setStateMemory(DEFAULT_STATE_MEMORY_BYTES, 6);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('STATE_MEMORY: default 64MiB, sizes with units, at least 16MiB; STATE_CACHE default 32MiB', () => {
  assert.equal(loadConfig({}).stateMemoryBytes, 64 * MiB);
  assert.equal(DEFAULT_STATE_MEMORY_BYTES, 64 * MiB);
  assert.equal(loadConfig({}).stateCacheBytes, 32 * MiB);
  assert.throws(() => loadConfig({ STATE_CACHE: '100KB' }), (e: unknown) => e instanceof ConfigError && e.variable === 'STATE_CACHE');
  assert.equal(loadConfig({ STATE_MEMORY: '1GiB' }).stateMemoryBytes, 1024 * MiB);
  assert.equal(loadConfig({ STATE_MEMORY: '300MB' }).stateMemoryBytes, 300_000_000);
  for (const bad of ['12MiB', 'lots', '-5MiB', '1TB']) {
    assert.throws(() => loadConfig({ STATE_MEMORY: bad }), (e: unknown) => e instanceof ConfigError && e.variable === 'STATE_MEMORY', bad);
  }
});

test('FETCH_MAX_BYTES: default 6MiB, sizes with units, at least 1MiB; FETCH_MAX_BYTES_PER_PARTITION default 3MiB', () => {
  assert.equal(loadConfig({}).fetchMaxBytes, 6 * MiB);
  assert.equal(loadConfig({}).fetchMaxBytesPerPartition, 3 * MiB);
  assert.equal(loadConfig({ FETCH_MAX_BYTES: '4MiB' }).fetchMaxBytes, 4 * MiB);
  for (const bad of ['512KiB', 'much', '-1MiB']) {
    assert.throws(() => loadConfig({ FETCH_MAX_BYTES: bad }), (e: unknown) => e instanceof ConfigError && e.variable === 'FETCH_MAX_BYTES', bad);
  }
});
