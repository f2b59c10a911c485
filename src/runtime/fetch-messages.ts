// The record batches of one partition of a Fetch response, decoded for kafkajs' consumer: a
// replacement of kafkajs' src/protocol/requests/fetch/v4/decodeMessages.js (which Fetch v4 to v11
// responses share), installed by src/kafkajs-patch.ts.
//
// kafkajs decodes each record with 64-bit arithmetic on its Long class: a varlong read allocates a
// Long per byte, and the record's offset and timestamp are each a Long parsed from a string, added
// to, and printed. On a 300k-record backlog that was a fifth of the bytes the tracker allocated
// (a sampling heap profile), all of it garbage by the batch's commit. Here a record of an
// uncompressed v2 batch costs its object, its key and value slices and two strings; the batch's
// context is one object for all its records, as in kafkajs.
//
// The records are kafkajs' own shape, so that its Batch (read committed: aborted transactions and
// control records dropped; records below the fetch offset dropped) and every consumer work as
// before. Compressed batches go to kafkajs' record-batch decoder, and an old message format (v0,
// v1) to its message-set decoder, as kafkajs' own decodeMessages does.
import { type BatchHeader, BatchRecords, batchHeader, isCompressedBatch, isControlBatch, isLogAppendTime, isTransactionalBatch } from './record-batches';

/* eslint-disable @typescript-eslint/no-require-imports */
const Decoder = require('kafkajs/src/protocol/decoder') as new (buf: Buffer) => KafkajsDecoder;
const RecordBatchDecoder = require('kafkajs/src/protocol/recordBatch/v0/decoder') as (d: KafkajsDecoder) => Promise<{ records: unknown[] }>;
const MessageSetDecoder = require('kafkajs/src/protocol/messageSet/decoder') as (d: KafkajsDecoder, size: number) => unknown[];
const TimestampTypes = require('kafkajs/src/protocol/timestampTypes') as { CREATE_TIME: number; LOG_APPEND_TIME: number };
/* eslint-enable @typescript-eslint/no-require-imports */

/** What this module reads of kafkajs' Decoder: the response's decoder, positioned at a partition's records. */
interface KafkajsDecoder {
  readInt32(): number;
  canReadBytes(n: number): boolean;
  readBytes(n: number): Buffer;
}

const MAGIC_OFFSET = 16;

/** A record as kafkajs' record decoder gives it. */
export interface KafkajsMessage {
  magicByte: number;
  attributes: number;
  timestamp: string;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
  isControlRecord: boolean;
  batchContext: Record<string, unknown>;
}

/** kafkajs' batch context, as its record-batch decoder builds it (64-bit fields as decimal strings). */
function batchContext(data: Buffer, pos: number, h: BatchHeader): Record<string, unknown> {
  return {
    firstOffset: String(h.baseOffset),
    firstTimestamp: String(h.firstTimestamp),
    partitionLeaderEpoch: data.readInt32BE(pos + 12),
    inTransaction: isTransactionalBatch(h),
    isControlBatch: isControlBatch(h),
    lastOffsetDelta: h.lastOffset - h.baseOffset,
    producerId: String(h.producerId),
    producerEpoch: data.readInt16BE(pos + 51),
    firstSequence: data.readInt32BE(pos + 53),
    maxTimestamp: String(h.maxTimestamp),
    timestampType: isLogAppendTime(h) ? TimestampTypes.LOG_APPEND_TIME : TimestampTypes.CREATE_TIME,
    magicByte: h.magic,
  };
}

/** A partition's `records` field, read from the response's decoder: every record of its complete batches. */
export async function decodeMessages(decoder: KafkajsDecoder): Promise<unknown[]> {
  const size = decoder.readInt32();
  if (size <= 0 || !decoder.canReadBytes(size)) return [];
  const data = decoder.readBytes(size);
  if (data.length <= MAGIC_OFFSET || data.readInt8(MAGIC_OFFSET) !== 2) return MessageSetDecoder(new Decoder(data), size);
  const out: unknown[] = [];
  let pos = 0;
  for (let h = batchHeader(data, pos); h !== null; h = batchHeader(data, pos)) {
    const start = pos;
    pos = h.end;
    if (h.magic !== 2 || isCompressedBatch(h)) {
      const { records } = await RecordBatchDecoder(new Decoder(data.subarray(start, h.end)));
      for (const r of records) out.push(r);
      continue;
    }
    const context = batchContext(data, start, h);
    const control = isControlBatch(h);
    const r = new BatchRecords(data, start, h);
    for (let i = 0; i < h.count; i++) {
      r.next();
      const m: KafkajsMessage = {
        magicByte: h.magic, attributes: r.attributes, timestamp: String(r.timestamp), offset: String(r.offset),
        key: r.key, value: r.value, headers: r.headers, isControlRecord: control, batchContext: context,
      };
      out.push(m);
    }
  }
  return out;
}
