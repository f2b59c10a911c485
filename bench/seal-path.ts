// The tracker's own work when many deadlines coincide, without Kafka: `node dist/bench/seal-path.js
// [chats] [rounds]`. Each round, `chats` chats (default 100, one task's share of the coinciding
// benchmark's 600) send 1 to 7 messages each, then one punctuation past their common deadline
// seals them all, as in bench/coinciding.ts. The tracker as the topology wires it (the real
// processor and record codec, JSON; gap 3 s), a real StateStore (RocksDB), the wall clock; a
// minimal context that applies the store writes after the flush, as the task does after its
// commit. Per round: the punctuation (the rules, the sealed events' encoding), the flush (the
// layout's records) and the store write, timed; medians over the
// rounds (default 40, the first 5 not counted: warm-up), in µs per sealed chat, with the changelog
// records and store operations per sealed chat. It measures what the end-to-end benchmark cannot
// separate from the broker and the other tasks: one task's CPU for its seals.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { InputRecord } from '../src/runtime/processor';
import { StateStore } from '../src/runtime/state-store';
import { storeContext } from './store-context';
import { RecordCodec } from '../src/records/codec';
import { loadConfig } from '../src/config';
import { trackerTopology } from '../src/topology';
import { topicNames } from '../src/topics';
import { encodeMessage, Rng } from './generator';
import { quantile, removeDir } from './lib';

const GAP = 3000;
const WARMUP = 5;

async function main(): Promise<void> {
  const chats = Number(process.argv[2] ?? 100);
  const rounds = Number(process.argv[3] ?? 40);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-seal-path-'));
  const store = await StateStore.open(dir, 'chat-state', 0);
  const topics = topicNames({ topicPrefix: 'bench.', appId: 'bench' });
  const codec = new RecordCodec({ registryUrl: null, topics });
  const sc = storeContext(store);
  const cfg = loadConfig({ CONVERSATION_GAP: `${GAP}ms`, CONVERSATION_SETTLE: '33ms', TOPIC_PREFIX: 'bench.', APP_ID: 'bench' });
  const tracker = trackerTopology(cfg, codec, pino({ level: 'silent' }), 6).processor(0);
  await tracker.init(sc.ctx);
  await tracker.restored();


  const rng = new Rng(13);
  let offset = 0;
  const steps = { punctuate: [] as number[], flush: [] as number[], store: [] as number[] };
  const perSeal = { changelog: [] as number[], ops: [] as number[], messages: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    // Messages at random moments of the 2.5 s before T, then every chat's last at T.
    const now = Date.now();
    const T = now + 2500;
    const records: InputRecord[] = [];
    let messages = 0;
    for (let c = 0; c < chats; c++) {
      const chat = `r${r}-c${c}`;
      const n = rng.int(1, 8);
      for (let i = 0; i < n; i++) {
        const sentAt = i === n - 1 ? T : now + Math.floor(rng.next() * 2500);
        records.push({
          topic: 'in', partition: 0, offset: offset++, key: Buffer.from(chat), headers: {}, timestamp: 0,
          value: encodeMessage({
            message_id: `${chat}-${i}`, chat_id: chat, sender_id: `u-${i % 3}`, sent_at: sentAt,
            text: 'a typical short message of a few words', chat_type: 'group', is_from_me: false, reply_to_message_id: null, account_id: null,
          }),
        });
        messages++;
      }
    }
    await tracker.process(records);
    await sc.commit(tracker);
    // The punctuation just past the common deadline (and the settle time after the messages' arrival).
    const clock = T + GAP + 1;
    const before = sc.counts.forwarded;
    sc.counts.changelog = 0;
    const t0 = performance.now();
    await tracker.punctuate(clock);
    const t1 = performance.now();
    await tracker.flush();
    const t2 = performance.now();
    const ops = sc.take();
    await store.write(ops);
    const t3 = performance.now();
    const sealed = sc.counts.forwarded - before;
    if (sealed !== chats) throw new Error(`round ${r}: ${sealed} sealed, expected ${chats}`);
    if (r < WARMUP) continue;
    steps.punctuate.push(((t1 - t0) * 1000) / sealed);
    steps.flush.push(((t2 - t1) * 1000) / sealed);
    steps.store.push(((t3 - t2) * 1000) / sealed);
    perSeal.changelog.push(sc.counts.changelog / sealed);
    perSeal.ops.push(ops.length / sealed);
    perSeal.messages.push(messages / sealed);
  }
  const med = (xs: number[]) => quantile(xs, 0.5);
  const total = steps.punctuate.map((p, i) => p + steps.flush[i]! + steps.store[i]!);
  console.log(`${chats} chats sealed per round, ${rounds - WARMUP} rounds counted (${WARMUP} warm-up), ${med(perSeal.messages).toFixed(1)} messages per chat`);
  console.log(`µs per sealed chat (median of rounds): punctuate ${med(steps.punctuate).toFixed(1)}, flush ${med(steps.flush).toFixed(1)}, ` +
    `store write ${med(steps.store).toFixed(1)}; total ${med(total).toFixed(1)} (p10 ${quantile(total, 0.1).toFixed(1)}, p90 ${quantile(total, 0.9).toFixed(1)})`);
  console.log(`per sealed chat: ${med(perSeal.changelog).toFixed(1)} changelog records, ${med(perSeal.ops).toFixed(1)} store operations`);
  await tracker.close();
  await store.close(null);
  removeDir(dir);
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
