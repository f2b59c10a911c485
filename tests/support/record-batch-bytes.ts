// Record batches (message format v2) as bytes, encoded by kafkajs' own encoder: the input of the
// record-batch decoders' tests (tests/unit/record-batches.test.ts, fetch-messages.test.ts).
/* eslint-disable @typescript-eslint/no-require-imports */
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0');
const Record = require('kafkajs/src/protocol/recordBatch/record/v0');
const Long = require('kafkajs/src/utils/long');
export const { Types: Compression } = require('kafkajs/src/protocol/message/compression') as { Types: Record<string, number> };
/* eslint-enable @typescript-eslint/no-require-imports */

export interface R { key: Buffer | null; value: Buffer | null; headers?: Record<string, Buffer | Buffer[]>; timestampDelta?: number }

const b = (s: string) => Buffer.from(s);

/** Five records of every kind: keyed, keyless, a tombstone, with headers (one repeated), a binary key with a negative timestamp delta. */
export const VARIED_RECORDS: R[] = [
  { key: b('a'), value: b('1') },
  { key: null, value: b('keyless') },
  { key: b('tombstone'), value: null },
  { key: b('h'), value: b('with headers'), headers: { one: b('x'), two: [b('y'), b('z')] } },
  { key: b('\u0000n\u0000chat'), value: Buffer.alloc(300, 7), timestampDelta: -5 },
];

export interface BatchOptions { producerId?: number; transactional?: boolean; control?: 'abort' | 'commit'; compression?: number; firstTimestamp?: number; logAppendTime?: boolean }

export async function batch(firstOffset: number, records: R[], opts: BatchOptions = {}): Promise<Buffer> {
  const encoded = (opts.control !== undefined
    ? [Record({ offsetDelta: 0, key: Buffer.from([0, 0, 0, opts.control === 'abort' ? 0 : 1]), value: Buffer.from([0, 0, 0, 0, 0, 0]) })]
    : records.map((r, i) => Record({ offsetDelta: i, timestampDelta: r.timestampDelta ?? i * 10, key: r.key, value: r.value, headers: r.headers })));
  const enc = await RecordBatch({
    compression: opts.compression ?? Compression.None,
    firstOffset: Long.fromValue(firstOffset),
    firstTimestamp: opts.firstTimestamp ?? 1_700_000_000_000,
    maxTimestamp: opts.firstTimestamp ?? 1_700_000_000_000,
    lastOffsetDelta: encoded.length - 1,
    transactional: opts.transactional ?? opts.control !== undefined,
    producerId: Long.fromValue(opts.producerId ?? -1),
    records: encoded,
  });
  const buf = Buffer.from(enc.buffer as Buffer);
  // kafkajs encodes neither control batches nor log-append time: set those bits (attributes at
  // byte 21; CRCs are not checked).
  if (opts.control !== undefined) buf.writeInt16BE(buf.readInt16BE(21) | 0x20, 21);
  if (opts.logAppendTime) buf.writeInt16BE(buf.readInt16BE(21) | 0x08, 21);
  return buf;
}
