// Decodes the record batches of one partition of a Fetch response (message format v2), read
// committed, for the partition reader. kafkajs decodes a record into an object of a dozen fields
// with 64-bit offset and timestamp arithmetic on its Long class, then filters aborted and control
// records message by message: on a restore of a million changelog records that was a third of the
// CPU with the garbage it left. Here a record costs its key and value slices, its object, two
// strings and, only when it has headers, a headers object (records without share one, frozen).
//
// What a read_committed consumer must drop (the Java client's rule): batches of a transaction the
// response lists as aborted, from the batch at the transaction's first offset until that producer's
// abort marker, and every control batch (commit and abort markers). Records below the fetch offset
// are dropped too: a fetch returns the whole batch that holds the offset asked for. A compressed
// batch is handed to `decodeCompressed` (kafkajs' own decoder; this project's producers do not
// compress, but a topic may hold batches written by others).
import type { RawRecord } from './partition-reader';

const HEADER_BYTES = 61; // baseOffset .. records count
const COMPRESSION_MASK = 0x07;
const TRANSACTIONAL = 0x10;
const CONTROL = 0x20;
const LOG_APPEND_TIME = 0x08;
const ABORT_MARKER = 0;

export interface AbortedTransaction { producerId: bigint; firstOffset: number }

/** Headers of a record that has none: one shared object, never written to. */
const NO_HEADERS: NonNullable<RawRecord['headers']> = Object.freeze({});

export interface DecodedRecords {
  records: RawRecord[];
  /** The offset after the last complete batch of the response (fetchOffset when there was none). */
  nextOffset: number;
}

/** A cursor over a batch's records: zig-zag varints as the format writes them. */
class Cursor {
  constructor(readonly buf: Buffer, public pos: number) {}

  varint(): number {
    let value = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.buf[this.pos++]!;
      // Up to 5 bytes for an int32, 10 for an int64: exact in a double up to 2^53.
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    // zig-zag: (n >>> 1) ^ -(n & 1), in doubles
    return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
  }

  bytes(): Buffer | null {
    const n = this.varint();
    if (n < 0) return null;
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

/** The header of one record batch (message format v2) that starts at `pos`. */
export interface BatchHeader {
  baseOffset: number;
  /** The batch's end in the buffer (past its last record). */
  end: number;
  magic: number;
  attributes: number;
  lastOffset: number;
  firstTimestamp: number;
  maxTimestamp: number;
  producerId: bigint;
  count: number;
}

/** The batch at `pos`, or null when the buffer holds only part of it (a response's cut-off tail). */
export function batchHeader(data: Buffer, pos: number): BatchHeader | null {
  if (pos + 12 > data.length) return null;
  const length = data.readInt32BE(pos + 8);
  const end = pos + 12 + length;
  if (end > data.length || length < HEADER_BYTES - 12) return null;
  const baseOffset = Number(data.readBigInt64BE(pos));
  return {
    baseOffset, end,
    magic: data.readInt8(pos + 16),
    attributes: data.readInt16BE(pos + 21),
    lastOffset: baseOffset + data.readInt32BE(pos + 23),
    firstTimestamp: Number(data.readBigInt64BE(pos + 27)),
    maxTimestamp: Number(data.readBigInt64BE(pos + 35)),
    producerId: data.readBigInt64BE(pos + 43),
    count: data.readInt32BE(pos + 57),
  };
}

export const isControlBatch = (h: BatchHeader) => (h.attributes & CONTROL) !== 0;
export const isTransactionalBatch = (h: BatchHeader) => (h.attributes & TRANSACTIONAL) !== 0;
export const isCompressedBatch = (h: BatchHeader) => (h.attributes & COMPRESSION_MASK) !== 0;
/** Whether the batch's records carry the broker's append time (its max timestamp) rather than their own. */
export const isLogAppendTime = (h: BatchHeader) => (h.attributes & LOG_APPEND_TIME) !== 0;

/**
 * An uncompressed batch's records, read one after the other in place: `next()` sets the fields
 * to the next record's. Keys and values are slices of the batch; a record without headers gets
 * the one shared empty headers object.
 */
export class BatchRecords {
  offset = 0;
  timestamp = 0;
  /** The record's own attributes byte (unused by format v2: 0). */
  attributes = 0;
  key: Buffer | null = null;
  value: Buffer | null = null;
  headers: NonNullable<RawRecord['headers']> = NO_HEADERS;
  private readonly c: Cursor;
  private readonly logAppendTime: boolean;

  constructor(data: Buffer, start: number, private readonly h: BatchHeader) {
    this.c = new Cursor(data, start + HEADER_BYTES);
    this.logAppendTime = isLogAppendTime(h);
  }

  next(): void {
    const c = this.c;
    const recordLength = c.varint();
    const recordEnd = c.pos + recordLength;
    this.attributes = c.buf[c.pos++]!;
    const timestampDelta = c.varint();
    this.offset = this.h.baseOffset + c.varint();
    this.timestamp = this.logAppendTime ? this.h.maxTimestamp : this.h.firstTimestamp + timestampDelta;
    this.key = c.bytes();
    this.value = c.bytes();
    const headerCount = c.varint();
    if (headerCount > 0) {
      const h: NonNullable<RawRecord['headers']> = {};
      for (let j = 0; j < headerCount; j++) {
        const name = c.bytes()?.toString('utf8') ?? '';
        const v = c.bytes() as Buffer; // null for a null value, as kafkajs gives it
        const was = h[name];
        h[name] = was === undefined ? v : Array.isArray(was) ? [...was, v] : [was, v];
      }
      this.headers = h;
    } else {
      this.headers = NO_HEADERS;
    }
    c.pos = recordEnd;
  }

  /** The control record's type (a commit or abort marker's key: version int16, type int16); null if unreadable. */
  controlType(): number | null {
    this.next();
    return this.key !== null && this.key.length >= 4 ? this.key.readInt16BE(2) : null;
  }
}

/**
 * The committed records at or after `fetchOffset` in `data` (the partition's records field),
 * given the response's aborted transactions, and the offset to fetch next.
 */
export async function decodeRecordBatches(data: Buffer, fetchOffset: number, aborted: readonly AbortedTransaction[],
  decodeCompressed: (batch: Buffer) => Promise<RawRecord[]>): Promise<DecodedRecords> {
  const records: RawRecord[] = [];
  const pending = aborted.length > 1 ? [...aborted].sort((a, b) => a.firstOffset - b.firstOffset) : aborted;
  let nextAborted = 0;
  const abortedProducers = new Set<bigint>();
  let nextOffset = fetchOffset;
  let pos = 0;
  for (let h = batchHeader(data, pos); h !== null; h = batchHeader(data, pos)) {
    if (h.magic !== 2) throw new Error(`record batch at offset ${h.baseOffset}: message format ${h.magic}, only v2 is read`);
    const start = pos;
    pos = h.end;
    nextOffset = Math.max(nextOffset, h.lastOffset + 1);
    if (h.lastOffset < fetchOffset) continue;
    while (nextAborted < pending.length && pending[nextAborted]!.firstOffset <= h.lastOffset) {
      abortedProducers.add(pending[nextAborted++]!.producerId);
    }
    if (isControlBatch(h)) {
      if (abortedProducers.has(h.producerId) && new BatchRecords(data, start, h).controlType() === ABORT_MARKER) abortedProducers.delete(h.producerId);
      continue;
    }
    if (isTransactionalBatch(h) && abortedProducers.has(h.producerId)) continue;
    if (isCompressedBatch(h)) {
      for (const r of await decodeCompressed(data.subarray(start, h.end))) if (Number(r.offset) >= fetchOffset) records.push(r);
      continue;
    }
    const r = new BatchRecords(data, start, h);
    for (let i = 0; i < h.count; i++) {
      r.next();
      if (r.offset < fetchOffset) continue;
      records.push({ key: r.key, value: r.value, offset: String(r.offset), timestamp: String(r.timestamp), headers: r.headers });
    }
  }
  return { records, nextOffset };
}
