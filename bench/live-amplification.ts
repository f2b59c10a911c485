// Live write amplification: what the tracker writes, to its changelog and to its store, per byte
// of live input, when the open conversations are long and the fetches small.
//
// `chatstats run tracker` (gap 90 min, so nothing seals) first takes CHATS chats whose open
// conversations hold OPEN messages each (produced as a backlog, sent_at in the last half hour),
// then live traffic: one message per chat every INTERVAL ms (sent_at = now) for SECONDS s. Only
// the live phase is counted: the input bytes produced; the changelog records and bytes (key +
// value) written past the changelog's end at the start of that phase, read back from the topic;
// the bytes the task stores were given (chatstats_store_write_bytes_total, keys and values); and
// the bytes the tracker process caused to be written to disk (/proc/<pid>/io write_bytes: RocksDB's
// WAL, flushes and compactions).
//   npm run bench -- live-amplification
import type { Admin } from 'kafkajs';
import { readFileSync } from 'node:fs';
import type { ChatMessage } from '../src/records/types';
import { topicNames } from '../src/topics';
import { javaCompatiblePartitioner } from '../src/records/partitioner';
import { PartitionReader } from '../src/runtime/partition-reader';
import { encodeMessage, Rng } from './generator';
import {
  benchKafka, cleanup, createTopics, fmtInt, newRun, produceAll, removeDir, sleep, spawnRole, topicEnd, waitForGroup, type Child,
} from './lib';
import { freePort } from './throughput';

export interface AmplificationResult {
  chats: number;
  openMessages: number;
  intervalMs: number;
  seconds: number;
  /** The setup backlog, and the changelog records it left. */
  setup: { records: number; mb: number; changelogRecords: number };
  live: {
    messages: number;
    inputBytes: number;
    changelogRecords: number;
    changelogBytes: number;
    storeBytes: number;
    diskBytes: number;
    /** Changelog bytes per input byte. */
    changelogPerInputByte: number;
    storePerInputByte: number;
    diskPerInputByte: number;
    largestChangelogRecord: number;
    /** From the last live message produced to the tracker's committed offsets at the end. */
    drainMs: number;
  };
  peakRssMb: number;
}

const WORDS = 'ok yes no see you soon meeting call later deploy build release ticket review merge lunch coffee'.split(' ');

function message(rng: Rng, chat: string, i: number, sentAt: number): ChatMessage {
  const words = 4 + Math.floor(rng.next() * 20);
  const text = Array.from({ length: words }, () => rng.pick(WORDS)).join(' ');
  return {
    message_id: `${chat}:${i}`, chat_id: chat, sender_id: `u${i % 3}`, sent_at: sentAt, text,
    chat_type: 'group', is_from_me: i % 3 === 0, reply_to_message_id: null, account_id: 'acct-1',
  };
}

/** Per partition, the end offsets of a topic. */
async function ends(admin: Admin, topic: string): Promise<Map<number, number>> {
  return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]));
}

async function metric(port: number, name: string): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    return sum;
  } catch {
    return NaN;
  }
}

function diskWriteBytes(pid: number | undefined): number {
  try { return Number(/write_bytes:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN); } catch { return NaN; }
}

async function waitReady(port: number, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode() !== undefined) throw new Error(`tracker exited: ${child.output().slice(-2000)}`);
    try { if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return; } catch { /* not up */ }
    if (Date.now() > deadline) throw new Error(`tracker not ready after ${timeoutMs} ms`);
    await sleep(250);
  }
}

export async function runLiveAmplification(opts: {
  chats?: number; openMessages?: number; intervalMs?: number; seconds?: number; log: (s: string) => void;
}): Promise<AmplificationResult> {
  const chats = opts.chats ?? 40;
  const openMessages = opts.openMessages ?? 1000;
  const intervalMs = opts.intervalMs ?? 200;
  const seconds = opts.seconds ?? 40;
  const { log } = opts;
  const kafka = benchKafka('bench-amplification');
  const admin = kafka.admin();
  await admin.connect();
  const run = newRun('amplification', { CONVERSATION_GAP: '90m' });
  const topics = topicNames({ topicPrefix: run.prefix, appId: run.appId });
  const children: Child[] = [];
  const rng = new Rng(11);
  const chatIds = Array.from({ length: chats }, (_, c) => `amp-${c}`);
  try {
    await createTopics(admin, [topics.messages], 6, { 'retention.ms': String(86_400_000) });
    const port = await freePort();
    const tracker = spawnRole('tracker', { ...run.env, METRICS_PORT: String(port) });
    children.push(tracker);
    await waitReady(port, tracker, 120_000);
    const sampler = setInterval(() => tracker.sample(), 500);

    // Setup: the open conversations, as a backlog (half an hour of history, within the gap).
    const now = Date.now();
    const setup: ChatMessage[] = [];
    for (let i = 0; i < openMessages; i++) {
      for (const chat of chatIds) setup.push(message(rng, chat, i, now - 1_800_000 + Math.floor((i * 1_800_000) / openMessages)));
    }
    log(`[live-amplification] setup: ${fmtInt(chats)} chats x ${fmtInt(openMessages)} open messages`);
    const produced = await produceAll(kafka, topics.messages, setup);
    const group = `${run.appId}-tracker`;
    const setupEnd = await topicEnd(admin, topics.messages);
    const caught = await waitForGroup(admin, group, topics.messages, setupEnd, { timeoutMs: 600_000, everyMs: 250, failed: () => tracker.exitCode() !== undefined ? 'tracker exited' : null });
    if (caught.doneAt === null) throw new Error(`tracker did not process the setup: ${caught.committed}/${setupEnd}`);
    await sleep(2000);
    const changelogStart = await ends(admin, topics.trackerChangelog);
    const setupChangelog = [...changelogStart.values()].reduce((s, x) => s + x, 0);
    const storeBefore = await metric(port, 'chatstats_store_write_bytes_total');
    const diskBefore = diskWriteBytes(tracker.proc.pid);

    // Live: one message per chat every interval.
    log(`[live-amplification] live: one message per chat every ${intervalMs} ms for ${seconds} s`);
    const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
    await producer.connect();
    let inputBytes = 0;
    let messages = 0;
    const t0 = Date.now();
    for (let tick = 0; ; tick++) {
      const at = t0 + tick * intervalMs;
      if (at >= t0 + seconds * 1000) break;
      const wait = at - Date.now();
      if (wait > 0) await sleep(wait);
      const records = chatIds.map((chat) => {
        const value = encodeMessage(message(rng, chat, openMessages + tick, Date.now()));
        inputBytes += value.length;
        return { key: chat, value };
      });
      await producer.send({ topic: topics.messages, acks: -1, messages: records });
      messages += records.length;
    }
    await producer.disconnect();
    const lastProduced = Date.now();
    const end = await topicEnd(admin, topics.messages);
    const drained = await waitForGroup(admin, group, topics.messages, end, { timeoutMs: 600_000, everyMs: 100 });
    await sleep(1500);
    const storeAfter = await metric(port, 'chatstats_store_write_bytes_total');
    const diskAfter = diskWriteBytes(tracker.proc.pid);
    clearInterval(sampler);
    await tracker.stop('SIGTERM');

    // The changelog written during the live phase.
    const changelogEnd = await ends(admin, topics.trackerChangelog);
    const reader = new PartitionReader(kafka);
    let changelogRecords = 0;
    let changelogBytes = 0;
    let largest = 0;
    try {
      for (const [p, e] of changelogEnd) {
        await reader.read(topics.trackerChangelog, p, changelogStart.get(p) ?? 0, e, (records) => {
          for (const r of records) {
            const b = (r.key?.length ?? 0) + (r.value?.length ?? 0);
            changelogRecords++;
            changelogBytes += b;
            if (b > largest) largest = b;
          }
        });
      }
    } finally {
      await reader.disconnect();
    }
    const storeBytes = storeAfter - storeBefore;
    const diskBytes = diskAfter - diskBefore;
    const result: AmplificationResult = {
      chats, openMessages, intervalMs, seconds,
      setup: { records: produced.records, mb: produced.bytes / 1e6, changelogRecords: setupChangelog },
      live: {
        messages, inputBytes, changelogRecords, changelogBytes, storeBytes, diskBytes,
        changelogPerInputByte: changelogBytes / inputBytes, storePerInputByte: storeBytes / inputBytes, diskPerInputByte: diskBytes / inputBytes,
        largestChangelogRecord: largest, drainMs: drained.doneAt === null ? NaN : Math.max(0, drained.doneAt - lastProduced),
      },
      peakRssMb: tracker.mem.peakRssMb,
    };
    log(`[live-amplification] ${fmtInt(messages)} messages (${(inputBytes / 1e6).toFixed(2)} MB) in; changelog ${fmtInt(changelogRecords)} records, ${(changelogBytes / 1e6).toFixed(1)} MB (${result.live.changelogPerInputByte.toFixed(1)} per input byte); store ${(storeBytes / 1e6).toFixed(1)} MB (${result.live.storePerInputByte.toFixed(1)}); disk ${(diskBytes / 1e6).toFixed(1)} MB (${result.live.diskPerInputByte.toFixed(1)})`);
    return result;
  } finally {
    for (const c of children) await c.stop('SIGKILL').catch(() => undefined);
    await cleanup(admin, [run.prefix, run.appId]).catch(() => 0);
    await admin.disconnect();
    removeDir(run.stateDir);
  }
}

export function amplificationRows(r: AmplificationResult): string[][] {
  const what = `live amplification (${r.chats} chats with ${fmtInt(r.openMessages)} open messages, 1 msg/chat every ${r.intervalMs} ms for ${r.seconds} s)`;
  const l = r.live;
  return [
    [what, 'input (live phase)', `${fmtInt(l.messages)} messages, ${(l.inputBytes / 1e6).toFixed(2)} MB`, 'baseline'],
    [what, 'changelog written', `${fmtInt(l.changelogRecords)} records, ${(l.changelogBytes / 1e6).toFixed(1)} MB (largest record ${fmtInt(l.largestChangelogRecord / 1000)} KB)`, `**${l.changelogPerInputByte.toFixed(2)} bytes per input byte**`],
    [what, 'store written (keys + values)', `${(l.storeBytes / 1e6).toFixed(1)} MB`, `${l.storePerInputByte.toFixed(2)} bytes per input byte`],
    [what, 'disk written by the tracker (WAL, flushes, compactions)', `${(l.diskBytes / 1e6).toFixed(1)} MB`, `${l.diskPerInputByte.toFixed(2)} bytes per input byte`],
    [what, 'tracker', `caught up ${fmtInt(l.drainMs)} ms after the last message; peak RSS ${fmtInt(r.peakRssMb)} MB`, ''],
  ];
}

if (require.main === module) {
  runLiveAmplification({ log: (s) => process.stderr.write(`${s}\n`) })
    .then((r) => { console.log(JSON.stringify({ event: 'live-amplification', ...r })); process.exit(0); }, (e) => { console.error(e); process.exit(1); });
}
