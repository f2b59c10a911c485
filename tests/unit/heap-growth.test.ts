// HEAP_GROWTH_PERCENT: read and validated by the configuration, applied by setHeapGrowth. Its
// effect on memory is measured by the soak benchmark (BENCHMARKS.md), not here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config';
import { setHeapGrowth } from '../../src/runtime/heap-growth';

test('HEAP_GROWTH_PERCENT: default 100, 0 for V8\'s own factor, a whole number up to 1000', () => {
  assert.equal(loadConfig({}).heapGrowthPercent, 100);
  assert.equal(loadConfig({ HEAP_GROWTH_PERCENT: '0' }).heapGrowthPercent, 0);
  assert.equal(loadConfig({ HEAP_GROWTH_PERCENT: '35' }).heapGrowthPercent, 35);
  for (const bad of ['-1', '1.5', 'twice', '1001']) {
    assert.throws(() => loadConfig({ HEAP_GROWTH_PERCENT: bad }), (e: unknown) => e instanceof ConfigError && e.variable === 'HEAP_GROWTH_PERCENT', bad);
  }
});

test('setHeapGrowth refuses what V8 would not take, and takes the setting back to V8\'s own', () => {
  assert.throws(() => setHeapGrowth(-5), /whole number/);
  assert.throws(() => setHeapGrowth(2.5), /whole number/);
  setHeapGrowth(100);
  setHeapGrowth(0);
});
