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
const NO_HEADERS: RawRecord['headers'] = Object.freeze({});

export interface DecodedRecords {
  records: RawRecord[];
  /** The offset after the last complete batch of the response (fetchOffset when there was none). */
  nextOffset: number;
}

/** A cursor over one record: zig-zag varints as the format writes them. */
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
  while (pos + 12 <= data.length) {
    const baseOffset = Number(data.readBigInt64BE(pos));
    const length = data.readInt32BE(pos + 8);
    const end = pos + 12 + length;
    if (end > data.length || length < HEADER_BYTES - 12) break; // the response's partial last batch
    const magic = data.readInt8(pos + 16);
    if (magic !== 2) throw new Error(`record batch at offset ${baseOffset}: message format ${magic}, only v2 is read`);
    const attributes = data.readInt16BE(pos + 21);
    const lastOffset = baseOffset + data.readInt32BE(pos + 23);
    const producerId = data.readBigInt64BE(pos + 43);
    const start = pos;
    pos = end;
    nextOffset = Math.max(nextOffset, lastOffset + 1);
    if (lastOffset < fetchOffset) continue;
    while (nextAborted < pending.length && pending[nextAborted]!.firstOffset <= lastOffset) {
      abortedProducers.add(pending[nextAborted++]!.producerId);
    }
    if (attributes & CONTROL) {
      // One control record: key = version int16, type int16.
      if (abortedProducers.has(producerId)) {
        const c = new Cursor(data, start + HEADER_BYTES);
        c.varint(); // length
        c.pos++; // attributes
        c.varint(); // timestamp delta
        c.varint(); // offset delta
        const key = c.bytes();
        if (key !== null && key.length >= 4 && key.readInt16BE(2) === ABORT_MARKER) abortedProducers.delete(producerId);
      }
      continue;
    }
    if ((attributes & TRANSACTIONAL) && abortedProducers.has(producerId)) continue;
    if (attributes & COMPRESSION_MASK) {
      for (const r of await decodeCompressed(data.subarray(start, end))) if (Number(r.offset) >= fetchOffset) records.push(r);
      continue;
    }
    const firstTimestamp = Number(data.readBigInt64BE(start + 27));
    const maxTimestamp = attributes & LOG_APPEND_TIME ? Number(data.readBigInt64BE(start + 35)) : null;
    const count = data.readInt32BE(start + 57);
    const c = new Cursor(data, start + HEADER_BYTES);
    for (let i = 0; i < count; i++) {
      const recordLength = c.varint();
      const recordEnd = c.pos + recordLength;
      c.pos++; // attributes (unused)
      const timestampDelta = c.varint();
      const offset = baseOffset + c.varint();
      const key = c.bytes();
      const value = c.bytes();
      const headerCount = c.varint();
      let headers: RawRecord['headers'];
      if (headerCount > 0) {
        const h: NonNullable<RawRecord['headers']> = {};
        for (let j = 0; j < headerCount; j++) {
          const name = c.bytes()?.toString('utf8') ?? '';
          const v = c.bytes() as Buffer; // null for a null value, as kafkajs gives it
          const was = h[name];
          h[name] = was === undefined ? v : Array.isArray(was) ? [...was, v] : [was, v];
        }
        headers = h;
      } else {
        headers = NO_HEADERS;
      }
      c.pos = recordEnd;
      if (offset < fetchOffset) continue;
      records.push({ key, value, offset: String(offset), timestamp: String(maxTimestamp ?? firstTimestamp + timestampDelta), headers });
    }
  }
  return { records, nextOffset };
}
