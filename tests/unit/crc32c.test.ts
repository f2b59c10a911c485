// CRC-32C eight bytes a step (src/runtime/crc32c.ts): the check value of the standard, and kafkajs'
// own crc32C on buffers of every length up to a few batches' worth and at unaligned offsets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c } from '../../src/runtime/crc32c';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const kafkajsCrc32C = require('kafkajs/src/protocol/recordBatch/crc32C') as (b: Buffer) => number;

test('check value: crc32c("123456789") is 0xe3069283', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(0)), 0);
});

test('as kafkajs computes it, for every length to 300 bytes, at unaligned offsets, and for 1 MB', () => {
  let seed = 11;
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (seed = (seed * 1103515245 + 12345) & 0x7fffffff) >>> 16;
  for (let n = 0; n <= 300; n++) {
    for (const at of [0, 1, 3, 7]) {
      const b = big.subarray(at * 1000 + n, at * 1000 + n + n);
      assert.equal(crc32c(b), kafkajsCrc32C(b), `length ${n} at ${at}`);
    }
  }
  assert.equal(crc32c(big), kafkajsCrc32C(big));
});
