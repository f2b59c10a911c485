// Encodes the body of a Produce request (versions 3 to 7 share it) with uncompressed record
// batches (message format v2), for kafkajs' producer (installed by src/kafkajs-patch.ts).
//
// kafkajs builds every record in an Encoder of its own (a 512-byte buffer), its headers in more,
// and copies them into the batch's, the partition's, the topic's and the request's Encoders in
// turn. When 600 deadlines coincided, that was a quarter of the tracker's CPU, with the garbage it
// left (BENCHMARKS.md). Here the request's size is counted first, then every field is written once
// into one buffer. The bytes are kafkajs' own, field for field: same timestamps (kafkajs sorts the
// records' timestamps as strings, and so does this), same sequence and attributes
// (tests/unit/produce-request.test.ts compares the two).
import { crc32c } from './crc32c';

/** A message as kafkajs' producer hands it to the request (kafkajs' Message). */
export interface ProduceMessage {
  key?: Buffer | string | null;
  value: Buffer | string | null;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
  timestamp?: string | number;
}

export interface ProducePartition { partition: number; firstSequence?: number; messages: ProduceMessage[] }
export interface ProduceTopic { topic: string; partitions: ProducePartition[] }

export interface ProduceRequestArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  /** kafkajs passes a Long; anything whose String() is the decimal value will do. */
  producerId?: { toString(): string } | number | string;
  producerEpoch?: number;
  topicData: ProduceTopic[];
}

/** Bytes of a batch from its partition leader epoch to its records count (v2 header less the first 12). */
const BATCH_HEADER_AFTER_LENGTH = 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;
const MAGIC = 2;
const TRANSACTIONAL = 0x10;

/** Size of a signed varint (zig-zag), for any safe integer. */
function sizeOfVarint(n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let bytes = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    bytes++;
  }
  return bytes;
}

function byteLength(v: Buffer | string): number {
  return typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
}

/** Size of varint-prefixed bytes (null: length -1). */
function sizeOfBytes(v: Buffer | string | null | undefined): number {
  if (v === null || v === undefined) return 1;
  const n = byteLength(v);
  return sizeOfVarint(n) + n;
}

/** The headers as kafkajs writes them: each key once per value, in key order of the object. */
function headerList(headers: ProduceMessage['headers']): [string, Buffer | string][] | null {
  if (!headers) return null;
  let list: [string, Buffer | string][] | null = null;
  for (const k of Object.keys(headers)) {
    const v = headers[k];
    list ??= [];
    if (Array.isArray(v)) for (const x of v) list.push([k, x]);
    else list.push([k, v as Buffer | string]);
  }
  return list;
}

/** A partition's batch, counted: what the write pass needs again. */
interface CountedBatch {
  partition: number;
  firstSequence: number;
  messages: ProduceMessage[];
  /** Per record: its body size (the record's own length field), its timestamp delta. */
  bodySizes: number[];
  deltas: number[];
  headers: ([string, Buffer | string][] | null)[];
  firstTimestamp: number;
  maxTimestamp: number;
  /** Bytes of the whole batch, from its base offset to its last record. */
  size: number;
}

function countBatch(p: ProducePartition, now: number): CountedBatch {
  const { messages } = p;
  // As kafkajs: the timestamps given, sorted by the default (string) order; none: now.
  const stamps = messages.map((m) => m.timestamp).filter((t) => t !== null && t !== undefined).sort();
  const first = stamps.length === 0 ? now : stamps[0]!;
  const max = stamps.length === 0 ? now : stamps[stamps.length - 1]!;
  const bodySizes = new Array<number>(messages.length);
  const deltas = new Array<number>(messages.length);
  const headers = new Array<[string, Buffer | string][] | null>(messages.length);
  let size = 12 + BATCH_HEADER_AFTER_LENGTH;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const delta = Number(m.timestamp || now) - Number(first);
    const h = headerList(m.headers);
    let body = 1 + sizeOfVarint(delta) + sizeOfVarint(i) + sizeOfBytes(m.key) + sizeOfBytes(m.value) + sizeOfVarint(h?.length ?? 0);
    if (h) for (const [k, v] of h) body += sizeOfBytes(k) + sizeOfBytes(v);
    bodySizes[i] = body;
    deltas[i] = delta;
    headers[i] = h;
    size += sizeOfVarint(body) + body;
  }
  return {
    partition: p.partition, firstSequence: p.firstSequence ?? 0, messages, bodySizes, deltas, headers,
    firstTimestamp: Number(first), maxTimestamp: Number(max), size,
  };
}

/** Writes fields at a position of one buffer sized in advance. */
class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  int8(v: number): void { this.buf[this.pos++] = v & 0xff; }
  int16(v: number): void { this.buf.writeInt16BE(v, this.pos); this.pos += 2; }
  int32(v: number): void { this.buf.writeInt32BE(v, this.pos); this.pos += 4; }
  int64(v: bigint): void { this.buf.writeBigInt64BE(v, this.pos); this.pos += 8; }

  varint(n: number): void {
    let z = n >= 0 ? n * 2 : -n * 2 - 1;
    while (z >= 128) {
      this.buf[this.pos++] = (z % 128) | 0x80;
      z = Math.floor(z / 128);
    }
    this.buf[this.pos++] = z;
  }

  /** A STRING or NULLABLE_STRING (int16 length). */
  string(s: string | null): void {
    if (s === null) { this.int16(-1); return; }
    const n = Buffer.byteLength(s, 'utf8');
    this.int16(n);
    this.buf.write(s, this.pos, n, 'utf8');
    this.pos += n;
  }

  /** Varint-prefixed bytes. */
  bytes(v: Buffer | string | null | undefined): void {
    if (v === null || v === undefined) { this.varint(-1); return; }
    if (typeof v === 'string') {
      const n = Buffer.byteLength(v, 'utf8');
      this.varint(n);
      this.buf.write(v, this.pos, n, 'utf8');
      this.pos += n;
    } else {
      this.varint(v.length);
      v.copy(this.buf, this.pos);
      this.pos += v.length;
    }
  }
}

/**
 * The Produce request's body (what follows the request header), every partition's records as one
 * uncompressed v2 batch, checksummed (CRC-32C) from its attributes on. `now` stands in for records
 * without a timestamp, as kafkajs' Date.now() does.
 */
export function encodeProduceRequest(args: ProduceRequestArgs, now = Date.now()): Buffer {
  const transactionalId = args.transactionalId ?? null;
  const producerId = BigInt(String(args.producerId ?? -1));
  const producerEpoch = args.producerEpoch ?? 0;
  const attributes = transactionalId ? TRANSACTIONAL : 0;

  let size = 2 + (transactionalId === null ? 0 : Buffer.byteLength(transactionalId, 'utf8')) + 2 + 4 + 4;
  const counted: CountedBatch[][] = [];
  for (const t of args.topicData) {
    size += 2 + Buffer.byteLength(t.topic, 'utf8') + 4;
    const batches = t.partitions.map((p) => countBatch(p, now));
    for (const b of batches) size += 4 + 4 + b.size;
    counted.push(batches);
  }

  const w = new Writer(Buffer.allocUnsafe(size));
  w.string(transactionalId);
  w.int16(args.acks);
  w.int32(args.timeout);
  w.int32(args.topicData.length);
  for (let t = 0; t < args.topicData.length; t++) {
    w.string(args.topicData[t]!.topic);
    const batches = counted[t]!;
    w.int32(batches.length);
    for (const b of batches) {
      w.int32(b.partition);
      w.int32(b.size); // the record set's length
      w.int64(0n); // base offset: the broker assigns it
      w.int32(b.size - 12); // batch length
      w.int32(0); // partition leader epoch
      w.int8(MAGIC);
      const crcAt = w.pos;
      w.pos += 4;
      const from = w.pos;
      w.int16(attributes);
      w.int32(b.messages.length - 1); // last offset delta
      w.int64(BigInt(Math.trunc(b.firstTimestamp)));
      w.int64(BigInt(Math.trunc(b.maxTimestamp)));
      w.int64(producerId);
      w.int16(producerEpoch);
      w.int32(b.firstSequence);
      w.int32(b.messages.length);
      for (let i = 0; i < b.messages.length; i++) {
        const m = b.messages[i]!;
        w.varint(b.bodySizes[i]!);
        w.int8(0); // record attributes: none used
        w.varint(b.deltas[i]!);
        w.varint(i); // offset delta
        w.bytes(m.key);
        w.bytes(m.value);
        const h = b.headers[i];
        w.varint(h?.length ?? 0);
        if (h) for (const [k, v] of h) { w.bytes(k); w.bytes(v); }
      }
      w.buf.writeUInt32BE(crc32c(w.buf.subarray(from, w.pos)), crcAt);
    }
  }
  if (w.pos !== size) throw new Error(`produce request: counted ${size} bytes, wrote ${w.pos}`);
  return w.buf;
}
