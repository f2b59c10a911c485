// tracker-status, check-sealing and force-seal: the operator's view of and hand on the tracker.
// Status is read from the running instances (each serves the partitions it owns); commands travel
// in-band on chat.messages, so a force-seal is ordered exactly with the chat's messages.
import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import '../kafkajs-patch'; // before kafkajs loads: its grouping, Encoder growth and Produce encoding
import { AssignerProtocol, type Kafka } from 'kafkajs';
import { loadConfig, type Config } from '../config';
import { cliKafka } from '../backfill/connect';
import { topicNames } from '../topics';
import { RecordCodec } from '../records/codec';
import { PartitionReader } from '../runtime/partition-reader';
import { COMMAND_HEADER } from '../processors/conversation-tracker';
import type { ChatCommand, CommandResult } from '../records/types';
import { partitionForKey, JavaCompatiblePartitioner } from '../records/partitioner';
import { printTable, ExitCode, fail } from './output';
import { parseSeconds } from './options';
import { checkBrokers, preflight } from '../preflight';

export interface Member { clientId: string; endpoint: string | null; partitions: number[] }

export async function trackerMembers(kafka: Kafka, cfg: Config): Promise<Member[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([`${cfg.appId}-tracker`]);
    return members(groups[0]?.members ?? [], cfg);
  } finally {
    await admin.disconnect();
  }
}

function members(list: { clientId: string; memberAssignment: Buffer }[], cfg: Config): Member[] {
  const source = topicNames(cfg).messages;
  return list.map((m) => {
    const a = m.memberAssignment.length > 0 ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment) : null;
    const at = m.clientId.lastIndexOf('@');
    return { clientId: m.clientId, endpoint: at >= 0 ? m.clientId.slice(at + 1) : null, partitions: a?.assignment[source] ?? [] };
  });
}

async function getJson(endpoint: string, path: string): Promise<any> {
  const res = await fetch(`http://${endpoint}${path}`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${endpoint}${path}: HTTP ${res.status}`);
  return res.json();
}

async function partitionCount(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    return md.topics[0]!.partitions.length;
  } finally {
    await admin.disconnect();
  }
}

/** Sends commands in-band and waits for each one's result on the command-results topic. */
async function sendCommands(kafka: Kafka, cfg: Config, cmds: { cmd: ChatCommand; partition?: number; key: string | null }[], timeoutMs: number): Promise<CommandResult[]> {
  const t = topicNames(cfg);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics: t });
  const reader = new PartitionReader(kafka, 500);
  const producer = kafka.producer({ idempotent: true, createPartitioner: JavaCompatiblePartitioner });
  await Promise.all([reader.connect(), producer.connect()]);
  try {
    let pos = (await reader.endOffsets(t.commandResults, [0])).get(0) ?? 0;
    await producer.send({
      topic: t.messages,
      messages: cmds.map(({ cmd, partition, key }) => ({
        key, partition: partition ?? partitionForKey(key ?? '', cfg.topicPartitions),
        value: Buffer.from(JSON.stringify(cmd)), headers: { [COMMAND_HEADER]: cmd.type },
      })),
    });
    const want = new Set(cmds.map((c) => c.cmd.command_id));
    const results: CommandResult[] = [];
    const deadline = Date.now() + timeoutMs;
    while (want.size > 0) {
      if (Date.now() > deadline) {
        throw new Error(`no answer from the tracker within ${timeoutMs / 1000}s for ${want.size} of ${cmds.length} command(s); they stay queued on ${t.messages} and run when a tracker processes them`);
      }
      const end = (await reader.endOffsets(t.commandResults, [0])).get(0) ?? 0;
      if (end > pos) {
        await reader.read(t.commandResults, 0, pos, end, async (records) => {
          for (const r of records) {
            const key = r.key?.toString() ?? '';
            if (!want.has(key)) continue;
            const res = await codec.decode('CommandResult', r.value);
            want.delete(key);
            results.push(res);
          }
        });
        pos = end;
      } else {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return results;
  } finally {
    await producer.disconnect();
    await reader.disconnect();
  }
}

/** The seal timer of a partition: when it fires, or why it does not (tick mode, behind, nothing open). */
function sealTimerCell(p: PartitionView): string {
  const t = p.seal_timer;
  if (!t) return '';
  if (t.armed_at !== null) return `${t.armed_at} (${t.mode})`;
  if (t.mode === 'tick') return 'tick: fixed tick';
  if (p.next_due_at === null) return 'idle: nothing open';
  return p.caught_up ? 'waiting' : 'behind: the batch that catches up punctuates';
}

function commandOf(type: ChatCommand['type'], chat: string | null): ChatCommand {
  return { command_id: randomUUID(), type, chat_id: chat, issued_at: Date.now(), reply_topic: null };
}

/** The committed offsets of the tracker's consumer group on the input topic, by partition. */
async function committedOffsets(kafka: Kafka, cfg: Config): Promise<Map<number, number>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const res = await admin.fetchOffsets({ groupId: `${cfg.appId}-tracker`, topics: [topicNames(cfg).messages] });
    return new Map((res[0]?.partitions ?? []).filter((p) => Number(p.offset) >= 0).map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

/** One partition as tracker-status --json prints it. */
export interface PartitionView {
  partition: number;
  instance: string;
  state: string;
  /** The task's read position: the next input offset it processes. */
  position: number;
  /** The group's committed offset: every input record below it is committed with its outputs. */
  committed_offset: number | null;
  /** The input's read_committed end. */
  end: number;
  lag: number;
  caught_up: boolean;
  /** As of the task's last committed transaction; null while the task is not running. */
  open_conversations: number | null;
  next_deadlines: { chat_id: string; deadline_at: string }[];
  /** When a punctuation would next seal something, and the task's seal timer (when it fires, or its mode). */
  next_due_at: string | null;
  seal_timer: { mode: string; armed_at: string | null } | null;
  restore_ms: number;
  /** Of restore_ms: the rebuild after the changelog was read (the deadline index). */
  restore_rebuild_ms: number;
  restored_records: number;
}

/** The running trackers' view of their partitions, or null when no tracker is running. */
export async function trackerPartitions(kafka: Kafka, cfg: Config, verbose = false): Promise<{ members: Member[]; instances: { client_id: string; endpoint: string | null; partitions: number[]; error: string | null }[]; partitions: PartitionView[] } | null> {
  const ms = await trackerMembers(kafka, cfg);
  if (ms.length === 0) return null;
  // A process with several stream threads (STREAM_THREADS) is several members at one endpoint,
  // which answers for all of them: each endpoint is asked once, and each partition it lists is
  // attributed to the member (thread) assigned it.
  const endpoints = [...new Set(ms.flatMap((m) => (m.endpoint ? [m.endpoint] : [])))];
  const [answers, committed] = await Promise.all([
    Promise.all(endpoints.map(async (e) => [e, await getJson(e, `/v1/tracker/status?verbose=${verbose ? 1 : 0}`).catch((err) => ({ error: (err as Error).message }))] as const)),
    committedOffsets(kafka, cfg),
  ]);
  const byEndpoint = new Map(answers);
  const replies = ms.map((m) => ({ m, r: m.endpoint ? byEndpoint.get(m.endpoint)! : { error: 'no endpoint in client id' } }));
  const ownerOf = (endpoint: string, partition: number) => ms.find((m) => m.endpoint === endpoint && m.partitions.includes(partition))
    ?? ms.find((m) => m.endpoint === endpoint)!;
  const partitions: PartitionView[] = answers.flatMap(([e, r]) => (r.partitions ?? []).map((p: any) => ({
    partition: p.partition, instance: ownerOf(e, p.partition).clientId, state: p.state, position: p.position, committed_offset: committed.get(p.partition) ?? null,
    end: p.end, lag: p.lag, caught_up: p.caught_up, open_conversations: p.open_conversations, next_deadlines: p.next_deadlines ?? [],
    next_due_at: p.next_due_at ?? null, seal_timer: p.seal_timer ?? null,
    restore_ms: p.restore_ms, restore_rebuild_ms: p.restore_rebuild_ms ?? 0, restored_records: p.restored_records,
  })));
  partitions.sort((a, b) => a.partition - b.partition);
  return {
    members: ms,
    instances: replies.map(({ m, r }) => ({ client_id: m.clientId, endpoint: m.endpoint, partitions: m.partitions, error: r.error ?? null })),
    partitions,
  };
}

/** What the owner of a chat's partition holds for it, or why it cannot say. */
export async function trackerChat(kafka: Kafka, cfg: Config, chatId: string): Promise<{ running: boolean; partition: number; owner: string | null; reply: any | null }> {
  const ms = await trackerMembers(kafka, cfg);
  const n = await partitionCount(kafka, topicNames(cfg).messages);
  const p = partitionForKey(chatId, n);
  if (ms.length === 0) return { running: false, partition: p, owner: null, reply: null };
  const owner = ms.find((m) => m.partitions.includes(p));
  if (!owner?.endpoint) return { running: true, partition: p, owner: null, reply: null };
  const reply = await getJson(owner.endpoint, `/v1/tracker/chat?chat_id=${encodeURIComponent(chatId)}&partitions=${n}`);
  return { running: true, partition: p, owner: owner.clientId, reply };
}

const notRunning = (cfg: Config) => `no tracker is running (consumer group ${cfg.appId}-tracker has no members)`;

export function trackerCommands(): Command[] {
  const status = new Command('tracker-status')
    .description('open conversations, next seal deadlines and seal timers, per-partition position, committed offset, lag and caught-up state, from the running trackers')
    .option('-v, --verbose', 'list the next deadlines of each partition')
    .option('--chat-id <id>', 'show one chat: its partition, owner, open and recently sealed conversations')
    .option('--json', 'print JSON')
    .addHelpText('after', `
Committed figures: "committed" is the tracker group's committed input offset (every
record below it is processed and its outputs committed; read_committed readers such
as the ETL see them; a restart resumes there). "open conv." and the deadlines are as
of each partition's last committed transaction. "position" is where the task reads
next; it runs ahead of "committed" only past transaction markers it skipped.`)
    .action(async (opts: { verbose?: boolean; chatId?: string; json?: boolean }) => {
      const cfg = loadConfig();
      await checkBrokers(cfg);
      const kafka = cliKafka(cfg, `${cfg.appId}-cli`);
      if (opts.chatId !== undefined) {
        const c = await trackerChat(kafka, cfg, opts.chatId);
        if (!c.running) {
          if (opts.json) console.log(JSON.stringify({ running: false, chat_id: opts.chatId, partition: c.partition, owner: null, known: null, open: [], recently_sealed: [] }));
          else console.log(`No tracker is running (consumer group ${cfg.appId}-tracker has no members).`);
          process.exitCode = ExitCode.NotRunning;
          return;
        }
        if (!c.owner) return fail(`partition ${c.partition} of chat ${opts.chatId} has no owner right now (rebalancing?)`, ExitCode.NotRunning);
        const res = c.reply;
        if (opts.json) return void console.log(JSON.stringify({ running: true, ...res, owner: c.owner }));
        console.log(`chat ${opts.chatId}: partition ${c.partition}, owner ${c.owner}${res.known ? '' : ' (no state: never seen)'}`);
        if (res.open.length > 0) {
          printTable(['started_at', 'ended_at', 'messages', 'bytes', 'seals at', 'continues'], res.open.map((o: any) =>
            [o.started_at, o.ended_at, o.message_count, o.bytes,
              o.waiting_on_settle ? `${o.settles_at} (settling: a message joined at ${o.arrived_at})` : o.deadline_at,
              o.continues_conversation_id ?? '']));
        } else if (res.known) {
          console.log('nothing open: every conversation of this chat is sealed');
        }
        if (res.recently_sealed?.length > 0) {
          console.log('\nrecently sealed (as the tracker remembers them; all of them: chatstats conversations --chat-id ID)');
          printTable(['conversation_id', 'started_at', 'ended_at', 'seal reason'], res.recently_sealed.map((r: any) => [r.conversation_id, r.started_at, r.ended_at, r.seal_reason]));
        }
        return;
      }
      const view = await trackerPartitions(kafka, cfg, opts.verbose === true);
      if (view === null) {
        if (opts.json) console.log(JSON.stringify({ running: false, instances: [], partitions: [] }));
        else console.log(`No tracker is running (consumer group ${cfg.appId}-tracker has no members).`);
        process.exitCode = ExitCode.NotRunning;
        return;
      }
      const rows = view.partitions;
      if (opts.json) {
        console.log(JSON.stringify({ running: true, instances: view.instances, partitions: rows }));
        return;
      }
      for (const i of view.instances) if (i.error) console.log(`instance ${i.client_id}: ${i.error}`);
      printTable(['partition', 'instance', 'state', 'position', 'committed', 'end', 'lag', 'caught up', 'open conv.', 'next deadline', 'seal timer'],
        rows.map((p) => [p.partition, p.instance, p.state, p.position, p.committed_offset ?? '-', p.end, p.lag, p.caught_up ? 'yes' : 'no', p.open_conversations ?? '',
          p.next_deadlines[0] ? `${p.next_deadlines[0].deadline_at} (${p.next_deadlines[0].chat_id})` : '', sealTimerCell(p)]));
      const open = rows.reduce((s, p) => s + (p.open_conversations ?? 0), 0);
      const endpoints = new Set(view.members.map((m) => m.endpoint)).size;
      const where = endpoints === view.members.length ? `${endpoints} instance(s)` : `${endpoints} instance(s), ${view.members.length} stream threads`;
      console.log(`\n${rows.length} partition(s) on ${where}; ${open} open conversation(s) as of the last committed transactions; committed input offsets ${rows.reduce((s, p) => s + (p.committed_offset ?? 0), 0)} of ${rows.reduce((s, p) => s + Math.max(0, p.end), 0)}`);
      if (opts.verbose) {
        for (const p of rows) {
          if (p.next_deadlines.length === 0) continue;
          console.log(`\npartition ${p.partition}: next deadlines`);
          printTable(['deadline', 'chat_id'], p.next_deadlines.map((d) => [d.deadline_at, d.chat_id]));
        }
      }
    });

  const check = new Command('check-sealing')
    .description('asks every partition to punctuate now; prints what sealed')
    .option('--timeout <seconds>', 'how long to wait for the answers', parseSeconds, 30)
    .option('--json', 'print JSON')
    .action(async (opts: { timeout: number; json?: boolean }) => {
      const cfg = loadConfig();
      await preflight(cfg);
      const kafka = cliKafka(cfg, `${cfg.appId}-cli`);
      if ((await trackerMembers(kafka, cfg)).length === 0) {
        if (opts.json) console.log(JSON.stringify({ running: false, sealed_conversation_ids: [], partitions: [] }));
        return fail(notRunning(cfg), ExitCode.NotRunning);
      }
      const n = await partitionCount(kafka, topicNames(cfg).messages);
      const cmds = Array.from({ length: n }, (_, p) => ({ cmd: commandOf('CHECK_SEALING', null), partition: p, key: null }));
      const results = await sendCommands(kafka, cfg, cmds, opts.timeout * 1000);
      results.sort((a, b) => a.partition - b.partition);
      const ids = results.flatMap((r) => r.sealed_conversation_ids);
      if (opts.json) return void console.log(JSON.stringify({ running: true, sealed_conversation_ids: ids, partitions: results }));
      printTable(['partition', 'sealed'], results.map((r) => [r.partition, r.sealed_conversation_ids.length]));
      for (const id of ids) console.log(id);
      console.log(`${ids.length} conversation(s) sealed`);
    });

  const force = new Command('force-seal')
    .description("seals the chat's open conversation now (reason FORCED); prints its id")
    .argument('<chat_id>', 'the chat')
    .option('--timeout <seconds>', 'how long to wait for the answer', parseSeconds, 30)
    .option('--json', 'print JSON')
    .action(async (chat: string, opts: { timeout: number; json?: boolean }) => {
      const cfg = loadConfig();
      await preflight(cfg);
      const kafka = cliKafka(cfg, `${cfg.appId}-cli`);
      if ((await trackerMembers(kafka, cfg)).length === 0) {
        if (opts.json) console.log(JSON.stringify({ running: false, chat_id: chat, sealed_conversation_ids: [] }));
        return fail(notRunning(cfg), ExitCode.NotRunning);
      }
      const n = await partitionCount(kafka, topicNames(cfg).messages);
      const [res] = await sendCommands(kafka, cfg, [{ cmd: commandOf('FORCE_SEAL', chat), key: chat, partition: partitionForKey(chat, n) }], opts.timeout * 1000);
      if (opts.json) return void console.log(JSON.stringify({ running: true, chat_id: chat, sealed_conversation_ids: res!.sealed_conversation_ids }));
      if (res!.sealed_conversation_ids.length === 0) console.log(`chat ${chat} had no open conversation`);
      for (const id of res!.sealed_conversation_ids) console.log(id);
    });
  return [status, check, force];
}
