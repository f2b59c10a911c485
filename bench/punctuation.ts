// Punctuation cost and memory against open chats: a microbenchmark of the ConversationTracker's
// punctuation and store, without Kafka. It drives the real processor with a real StateStore
// (RocksDB) and a minimal ProcessorContext that applies the store writes at once (the task applies
// them after its Kafka transaction commits; the transaction is not measured here).
//
// Run as a child process per size, so that memory is the process's own:
//   CHATS=100000 node dist/bench/punctuation.js   -> one JSON line {"event":"punctuation", ...}
// Each chat gets one open conversation of one message; deadlines are spread evenly over a span, so
// a tick at a chosen wall-clock time finds exactly the share of chats it should due.
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ConversationTracker } from '../src/processors/conversation-tracker';
import type { InputRecord } from '../src/runtime/processor';
import { StateStore } from '../src/runtime/state-store';
import { storeContext } from './store-context';
import type { RulesConfig } from '../src/sessionization/rules';
import { topicNames } from '../src/topics';
import { encodeMessage } from './generator';
import { quantile, removeDir } from './lib';

const GAP = 5_400_000;
const DUE_TICKS = Number(process.env.DUE_TICKS ?? 5);

async function main(): Promise<void> {
  const chats = Number(process.env.CHATS ?? 10_000);
  const batch = 5000;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-punct-'));
  const store = await StateStore.open(dir, 'chat-state', 0);
  const sc = storeContext(store);
  const ctx = sc.ctx;
  const rules: RulesConfig = { gapMs: GAP, gapByTypeMs: {}, graceMs: 0, settleMs: 60_000, maxMessages: 10_000, maxBytes: 900_000, maxFutureSkewMs: 2 * 86_400_000 };
  let clock = 0;
  const tracker = new ConversationTracker({
    rules, topics: topicNames({ topicPrefix: 'bench.', appId: 'bench' }), log: pino({ level: 'silent' }), now: () => clock,
    codec: {
      decodeChatMessage: async (v) => JSON.parse(v!.toString('utf8')),
      encodeSealed: async (v) => Buffer.from(JSON.stringify(v)),
      encodeLate: async (v) => Buffer.from(JSON.stringify(v)),
      encodeCommandResult: async (v) => Buffer.from(JSON.stringify(v)),
    },
  });
  await tracker.init(ctx);
  await tracker.restored();
  const commit = () => sc.commit(tracker);


  // Chat i's only message is at base + i * step: its deadline is base + i * step + GAP.
  const base = Date.UTC(2026, 0, 1);
  const span = 86_400_000;
  const step = span / chats;
  // The chats are populated before the first deadline, and settled by it: rule 2 waits for the
  // settle time after a conversation's last message arrived (processing time, `clock` here), so
  // they arrive a settle time before `base` (MAX_FUTURE_SKEW covers the span).
  clock = base - rules.settleMs;
  const t0 = Date.now();
  let offset = 0;
  for (let i = 0; i < chats; i += batch) {
    const records: InputRecord[] = [];
    for (let j = i; j < Math.min(chats, i + batch); j++) {
      const chat = `chat-${j}`;
      const value = encodeMessage({
        message_id: `m-${j}`, chat_id: chat, sender_id: `u-${j % 7}`, sent_at: Math.floor(base + j * step),
        text: 'a typical short message of a few words', chat_type: 'direct', is_from_me: false, reply_to_message_id: null, account_id: 'acct-1',
      });
      records.push({ topic: 'in', partition: 0, offset: offset++, key: Buffer.from(chat), value, headers: {}, timestamp: 0 });
    }
    await tracker.process(records);
    await commit();
  }
  const populateMs = Date.now() - t0;

  const memory = () => {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    // RssAnon is process memory; RssFile counts mapped files (RocksDB's SST files, node itself).
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
    return {
      rssMb: m.rss / 1_048_576, rssAnonMb: kb('RssAnon'), rssFileMb: kb('RssFile'),
      heapUsedMb: m.heapUsed / 1_048_576, heapTotalMb: m.heapTotal / 1_048_576, externalMb: m.external / 1_048_576,
    };
  };
  await new Promise((r) => setTimeout(r, 200));
  const mem = memory();
  // Where native memory goes: RocksDB's own accounting.
  const prop = async (n: string) => (await store.property(n)) / 1_048_576;
  const rocksdb = {
    memtablesMb: await prop('rocksdb.cur-size-all-mem-tables'),
    tableReadersMb: await prop('rocksdb.estimate-table-readers-mem'),
    blockCacheMb: await prop('rocksdb.block-cache-usage'),
    liveDataMb: await prop('rocksdb.estimate-live-data-size'),
  };

  // Nothing due: a tick before the first deadline. What a task does per tick: punctuate, then
  // (nothing to commit) write the local ops.
  const idle: number[] = [];
  for (let k = 0; k < 200; k++) {
    const t = process.hrtime.bigint();
    await tracker.punctuate(base + GAP - 1);
    await commit();
    idle.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  // 1 % due, three times: each tick seals the next 1 % of chats (encoding their sealed events and
  // writing their states), as a task would before its transaction.
  const due: number[] = [];
  let sealed = 0;
  for (let k = 1; k <= DUE_TICKS; k++) {
    const before = sc.counts.forwarded;
    const t = process.hrtime.bigint();
    await tracker.punctuate(base + GAP + Math.ceil(k * 0.01 * chats) * step);
    await commit();
    due.push(Number(process.hrtime.bigint() - t) / 1e6);
    sealed += sc.counts.forwarded - before;
  }
  const after = memory();
  await store.close(null);
  removeDir(dir);
  console.log(JSON.stringify({
    event: 'punctuation', chats, populateMs,
    idleTickMs: { p50: quantile(idle, 0.5), p99: quantile(idle, 0.99) },
    dueTickMs: { mean: due.reduce((s, x) => s + x, 0) / due.length, p50: quantile(due, 0.5), max: Math.max(...due) },
    sealedPerDueTick: sealed / DUE_TICKS, dueTicksMs: due,
    memory: mem, memoryAfterTicks: after, rocksdb,
  }));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
