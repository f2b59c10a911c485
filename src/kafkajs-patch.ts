// Fixes for kafkajs 2.2.4 (its last release); all but the second must be in place before kafkajs loads:
// import this module before the first `import ... from 'kafkajs'` that is a value (not a type).
//
// kafkajs groups a send's messages by partition (src/producer/groupMessagesPerPartition.js) with
//   messages.reduce((r, m) => Object.assign(r, { [p]: [...(r[p] || []), m] }), {})
// which copies the partition's array for every message: quadratic in the messages of one send. A
// transaction of the tracker sends up to 768 KiB per request, thousands of changelog records: the
// copying was 8 % of the tracker's CPU on a backlog (bench/profile.ts). The replacement below
// groups the same messages into the same partitions in the same order, in linear time.
//
// sendMessages.js binds the grouping function when it is first required, so the replacement is
// put into the module cache under the original's file name before that; when kafkajs has already
// been loaded (an import order this module cannot fix), `kafkajsPatched()` says so.
import path from 'node:path';
import Module from 'node:module';
import { encodeProduceRequest, type ProduceRequestArgs } from './runtime/produce-request';
import { decodeMessages } from './runtime/fetch-messages';

/** kafkajs' installed package, whose files are patched below. */
const KAFKAJS_DIR = path.dirname(require.resolve('kafkajs/package.json'));

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;
interface GroupArgs { topic: string; partitionMetadata: unknown[]; messages: unknown[]; partitioner: Partitioner }

/** kafkajs' grouping, linear: partition → its messages in the order given. */
export function groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner }: GroupArgs): Record<number, unknown[]> {
  const result: Record<number, unknown[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const list = result[partition];
    if (list === undefined) result[partition] = [message];
    else list.push(message);
  }
  return result;
}

const file = path.join(KAFKAJS_DIR, 'src/producer/groupMessagesPerPartition.js');
/** Puts `exports` into the module cache as `file`, unless kafkajs has loaded that file already (too late then). */
function install(file: string, exports: unknown): void {
  if (require.cache[file] !== undefined) return;
  const m = new Module(file, module);
  m.filename = file;
  m.loaded = true;
  m.exports = exports;
  require.cache[file] = m;
}
install(file, groupMessagesPerPartition);

/** Whether kafkajs' producer uses the linear grouping (false: kafkajs was loaded before this module). */
export function kafkajsPatched(): boolean {
  return require.cache[file]?.exports === groupMessagesPerPartition;
}

// A second fix, to kafkajs' Encoder (src/protocol/encoder.js). When a buffer outgrows its capacity
// it allocates the next power of two with Buffer.alloc, which zero-fills it, and copies. Each
// record of a send gets an Encoder of its own that grows to the record's size, and the batch and
// the request grow theirs record after record: a sealed conversation of a few KB is zero-filled
// several times over (kafkajs' buffers were 18 % of the tracker's CPU when 600 deadlines coincided,
// BENCHMARKS.md). An Encoder only ever hands out `buf.slice(0, offset)`, so the bytes past `offset`
// need no zeroing. The prototype is shared, so this holds whatever the load order.
interface EncoderLike { buf: Buffer; offset: number }
const encoderFile = path.join(KAFKAJS_DIR, 'src/protocol/encoder.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Encoder = require(encoderFile) as { prototype: { ensureAvailable(this: EncoderLike, length: number): void }; nextPowerOfTwo(n: number): number };
/** kafkajs' own growth, kept for the test and the benchmark that compare with it. */
export const zeroFillingGrowth = Encoder.prototype.ensureAvailable;

export function uninitializedGrowth(this: EncoderLike, length: number): void {
  if (this.offset + length > this.buf.length) {
    const grown = Buffer.allocUnsafe(Encoder.nextPowerOfTwo(this.offset + length));
    this.buf.copy(grown, 0, 0, this.offset);
    this.buf = grown;
  }
}
Encoder.prototype.ensureAvailable = uninitializedGrowth;

/** Sets kafkajs' Encoder growth (for the benchmark and the test); returns the one it replaced. */
export function setEncoderGrowth(growth: (this: EncoderLike, length: number) => void): (this: EncoderLike, length: number) => void {
  const was = Encoder.prototype.ensureAvailable;
  Encoder.prototype.ensureAvailable = growth;
  return was;
}

// A third: kafkajs' Produce request (src/protocol/requests/produce/v3/request.js, which versions
// 4 to 7 reuse) builds every record in an Encoder of its own and copies it several times over.
// Uncompressed sends are encoded by src/runtime/produce-request.ts instead, in one buffer, with
// the same bytes; compressed ones keep kafkajs' encoder. Put into the module cache as the grouping
// is, before kafkajs' producer requires the file; `produceRequestPatched()` says whether it is.
const produceFile = path.join(KAFKAJS_DIR, 'src/protocol/requests/produce/v3/request.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Produce: PRODUCE_API_KEY } = require(path.join(path.dirname(encoderFile), 'requests/apiKeys')) as { Produce: number };

type ProduceRequestFactory = (args: ProduceRequestArgs & { compression?: number }) => {
  apiKey: number; apiVersion: number; apiName: string; expectResponse: () => boolean; encode: () => Promise<unknown>;
};

/** A kafkajs file's own exports, compiled outside the module cache (where a replacement may stand). */
function original<T>(file: string): T {
  const m = new Module(file, module);
  (m as unknown as { load(file: string): void }).load(file);
  return m.exports as T;
}

let kafkajsProduce: ProduceRequestFactory | null = null;
/** kafkajs' own Produce v3 request (for compressed sends, and the test). */
export function kafkajsProduceRequest(): ProduceRequestFactory {
  kafkajsProduce ??= original<ProduceRequestFactory>(produceFile);
  return kafkajsProduce;
}

/** The Produce request kafkajs gets: its own interface, our encoding when uncompressed. */
export const produceRequest: ProduceRequestFactory = (args) => {
  if ((args.compression ?? 0) !== 0) return kafkajsProduceRequest()(args);
  return {
    apiKey: PRODUCE_API_KEY,
    apiVersion: 3,
    apiName: 'Produce',
    expectResponse: () => args.acks !== 0,
    encode: async () => {
      // kafkajs' request framing wants an Encoder: one that holds the encoded body as it is.
      const e = new (Encoder as unknown as new (size: number) => EncoderLike)(0);
      e.buf = encodeProduceRequest(args);
      e.offset = e.buf.length;
      return e;
    },
  };
};

install(produceFile, produceRequest);

/** Whether kafkajs' producer encodes Produce requests with produce-request.ts (false: kafkajs was loaded first). */
export function produceRequestPatched(): boolean {
  return require.cache[produceFile]?.exports === produceRequest;
}

// A fourth: a transactional producer's transaction manager (src/producer/eosManager), so that a
// task can add all of a transaction's partitions in one AddPartitionsToTxn request before its
// sends. kafkajs adds them send by send, and the task sends one partition at a time
// (src/kafka-send.ts): a request, and an append to the broker's transaction log, per partition.
// The factory is wrapped to note each transactional manager under its transactional id, for the
// producer's owner to take right after its first transaction() call (which creates it).
const eosFile = path.join(KAFKAJS_DIR, 'src/producer/eosManager/index.js');

/** What a task uses of kafkajs' transaction manager. */
export interface TransactionManager {
  addPartitionsToTransaction(topicData: { topic: string; partitions: { partition: number }[] }[]): Promise<void>;
}
type EosFactory = (opts: { transactional?: boolean; transactionalId?: string }) => TransactionManager;

const created = new Map<string, TransactionManager>();
let kafkajsEos: EosFactory | null = null;
const eosFactory: EosFactory = (opts) => {
  kafkajsEos ??= original<EosFactory>(eosFile);
  const manager = kafkajsEos(opts);
  if (opts.transactional && opts.transactionalId) created.set(opts.transactionalId, manager);
  return manager;
};
install(eosFile, eosFactory);

/**
 * The transaction manager kafkajs created last for `transactionalId` (null: none, or kafkajs was
 * loaded before this module). Call it synchronously after the producer's first `transaction()`
 * call, before awaiting it: kafkajs creates the manager in that call's synchronous part.
 */
export function takeTransactionManager(transactionalId: string): TransactionManager | null {
  const m = created.get(transactionalId) ?? null;
  created.delete(transactionalId);
  return m;
}

/** Whether kafkajs' producers get their transaction manager through eosFactory (false: kafkajs was loaded first). */
export function transactionManagerPatched(): boolean {
  return require.cache[eosFile]?.exports === eosFactory;
}

// A fifth: the decoding of a Fetch response's record batches (src/protocol/requests/fetch/v4/
// decodeMessages.js, which the responses of Fetch v4 to v11 require), replaced by
// src/runtime/fetch-messages.ts: the same records without kafkajs' Long arithmetic per record.
// Put into the module cache as the grouping is, before kafkajs' consumer requires the file.
const fetchMessagesFile = path.join(KAFKAJS_DIR, 'src/protocol/requests/fetch/v4/decodeMessages.js');
install(fetchMessagesFile, decodeMessages);

/** Whether kafkajs' Fetch responses are decoded by fetch-messages.ts (false: kafkajs was loaded first). */
export function fetchDecodingPatched(): boolean {
  return require.cache[fetchMessagesFile]?.exports === decodeMessages;
}

let kafkajsFetchMessages: typeof decodeMessages | null = null;
/** kafkajs' own decodeMessages (for the test). */
export function kafkajsDecodeMessages(): typeof decodeMessages {
  kafkajsFetchMessages ??= original<typeof decodeMessages>(fetchMessagesFile);
  return kafkajsFetchMessages;
}
