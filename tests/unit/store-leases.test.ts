// The store leases of a process's stream threads: one holder per partition, waiters in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreLeases } from '../../src/runtime/store-leases';

test('a partition\'s store is granted to one holder at a time, the waiters in the order they asked', () => {
  const leases = new StoreLeases();
  const granted: string[] = [];
  leases.acquire(5, () => granted.push('a'));
  leases.acquire(5, () => granted.push('b'));
  leases.acquire(5, () => granted.push('c'));
  leases.acquire(4, () => granted.push('other partition'));
  assert.deepEqual(granted, ['a', 'other partition']);
  leases.release(5);
  assert.deepEqual(granted, ['a', 'other partition', 'b']);
  leases.release(5);
  assert.deepEqual(granted, ['a', 'other partition', 'b', 'c']);
  leases.release(5);
  // Free again: the next asker has it at once.
  leases.acquire(5, () => granted.push('d'));
  assert.deepEqual(granted.at(-1), 'd');
});

test('releasing a partition nobody holds changes nothing', () => {
  const leases = new StoreLeases();
  leases.release(1);
  const granted: number[] = [];
  leases.acquire(1, () => granted.push(1));
  leases.acquire(1, () => granted.push(2));
  assert.deepEqual(granted, [1]);
});
