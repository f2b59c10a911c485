// tracker-status, check-sealing and force-seal: the operator's view of and hand on the tracker.
// Status is read from the running instances (each serves the partitions it owns); commands travel
// in-band on chat.messages, so a force-seal is ordered exactly with the chat's messages.
import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { AssignerProtocol, type Kafka } from 'kafkajs';
import { loadConfig, type Config } from '../config';
import { kafkaFromConfig } from '../kafka-client';
import { topicNames } from '../topics';
import { RecordCodec } from '../records/codec';
import { PartitionReader } from '../runtime/partition-reader';
import { COMMAND_HEADER } from '../processors/conversation-tracker';
import type { ChatCommand, CommandResult } from '../records/types';
import { partitionForKey, JavaCompatiblePartitioner } from '../records/partitioner';
import { printTable, fmtTime, ExitCode, fail } from './output';

interface Member { clientId: string; endpoint: string | null; partitions: number[] }

async function trackerMembers(kafka: Kafka, cfg: Config): Promise<Member[]> {
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
function sealTimerCell(p: { sealTimer?: { mode: string; armedAt: number | null }; nextDueAt?: number | null; caughtUp?: boolean }): string {
  const t = p.sealTimer;
  if (!t) return '';
  if (t.armedAt !== null) return `${fmtTime(t.armedAt)} (${t.mode})`;
  if (t.mode !== 'deadline') return `${t.mode}: fixed tick`;
  if (p.nextDueAt == null) return 'idle: nothing open';
  return p.caughtUp ? 'waiting' : 'behind: the batch that catches up punctuates';
}

function commandOf(type: ChatCommand['type'], chat: string | null): ChatCommand {
  return { command_id: randomUUID(), type, chat_id: chat, issued_at: Date.now(), reply_topic: null };
}

export function trackerCommands(): Command[] {
  const status = new Command('tracker-status')
    .description('open conversations, next seal deadlines and seal timers, per-partition position, lag and caught-up state, from the running trackers')
    .option('-v, --verbose', 'list the next deadlines of each partition')
    .option('--chat-id <id>', 'show one chat: its partition, owner and open conversations')
    .option('--json', 'print JSON')
    .action(async (opts: { verbose?: boolean; chatId?: string; json?: boolean }) => {
      const cfg = loadConfig();
      const kafka = kafkaFromConfig(cfg, `${cfg.appId}-cli`);
      const ms = await trackerMembers(kafka, cfg);
      if (ms.length === 0) {
        if (opts.json) console.log(JSON.stringify({ running: false, instances: [], partitions: [] }));
        else console.log(`No tracker is running (consumer group ${cfg.appId}-tracker has no members).`);
        process.exitCode = ExitCode.NotRunning;
        return;
      }
      if (opts.chatId !== undefined) {
        const n = await partitionCount(kafka, topicNames(cfg).messages);
        const p = partitionForKey(opts.chatId, n);
        const owner = ms.find((m) => m.partitions.includes(p));
        if (!owner?.endpoint) return fail(`partition ${p} of chat ${opts.chatId} has no owner right now (rebalancing?)`, ExitCode.NotRunning);
        const res = await getJson(owner.endpoint, `/v1/tracker/chat?chat_id=${encodeURIComponent(opts.chatId)}&partitions=${n}`);
        if (opts.json) return void console.log(JSON.stringify({ ...res, owner: owner.clientId }));
        console.log(`chat ${opts.chatId}: partition ${p}, owner ${owner.clientId}${res.known ? '' : ' (no state: never seen)'}`);
        printTable(['started_at', 'ended_at', 'messages', 'bytes', 'seals at', 'continues'], (res.open ?? []).map((o: any) =>
          [o.started_at, o.ended_at, o.messageCount, o.bytes,
            o.waiting_on_settle ? `${o.settles_at} (settling: a message joined at ${new Date(o.arrivedAt).toISOString()})` : o.deadline_at,
            o.continuesConversationId ?? '']));
        return;
      }
      const replies = await Promise.all(ms.map(async (m) => ({ m, r: m.endpoint ? await getJson(m.endpoint, `/v1/tracker/status?verbose=${opts.verbose ? 1 : 0}`).catch((e) => ({ error: (e as Error).message })) : { error: 'no endpoint in client id' } })));
      const rows = replies.flatMap(({ m, r }) => (r.partitions ?? []).map((p: any) => ({ instance: m.clientId, ...p })));
      rows.sort((a: any, b: any) => a.partition - b.partition);
      if (opts.json) {
        console.log(JSON.stringify({ running: true, instances: replies.map(({ m, r }) => ({ client_id: m.clientId, endpoint: m.endpoint, partitions: m.partitions, error: r.error ?? null })), partitions: rows }));
        return;
      }
      for (const { m, r } of replies) if (r.error) console.log(`instance ${m.clientId}: ${r.error}`);
      printTable(['partition', 'instance', 'state', 'position', 'end', 'lag', 'caught up', 'open conv.', 'next deadline', 'seal timer'],
        rows.map((p: any) => [p.partition, p.instance, p.state, p.position, p.end, p.lag, p.caughtUp ? 'yes' : 'no', p.open_conversations ?? '',
          p.next_deadlines[0] ? `${fmtTime(p.next_deadlines[0].deadline)} (${p.next_deadlines[0].chat_id})` : '', sealTimerCell(p)]));
      const open = rows.reduce((s: number, p: any) => s + (p.open_conversations ?? 0), 0);
      console.log(`\n${rows.length} partition(s) on ${ms.length} instance(s); ${open} open conversation(s)`);
      if (opts.verbose) {
        for (const p of rows) {
          if (p.next_deadlines.length === 0) continue;
          console.log(`\npartition ${p.partition}: next deadlines`);
          printTable(['deadline', 'chat_id'], p.next_deadlines.map((d: any) => [fmtTime(d.deadline), d.chat_id]));
        }
      }
    });

  const check = new Command('check-sealing')
    .description('asks every partition to punctuate now; prints what sealed')
    .option('--timeout <seconds>', 'how long to wait for the answers', '30')
    .option('--json', 'print JSON')
    .action(async (opts: { timeout: string; json?: boolean }) => {
      const cfg = loadConfig();
      const kafka = kafkaFromConfig(cfg, `${cfg.appId}-cli`);
      if ((await trackerMembers(kafka, cfg)).length === 0) return fail(`no tracker is running (consumer group ${cfg.appId}-tracker has no members)`, ExitCode.NotRunning);
      const n = await partitionCount(kafka, topicNames(cfg).messages);
      const cmds = Array.from({ length: n }, (_, p) => ({ cmd: commandOf('CHECK_SEALING', null), partition: p, key: null }));
      const results = await sendCommands(kafka, cfg, cmds, Number(opts.timeout) * 1000);
      results.sort((a, b) => a.partition - b.partition);
      const ids = results.flatMap((r) => r.sealed_conversation_ids);
      if (opts.json) return void console.log(JSON.stringify({ sealed_conversation_ids: ids, partitions: results }));
      printTable(['partition', 'sealed'], results.map((r) => [r.partition, r.sealed_conversation_ids.length]));
      for (const id of ids) console.log(id);
      console.log(`${ids.length} conversation(s) sealed`);
    });

  const force = new Command('force-seal')
    .description("seals the chat's open conversation now (reason FORCED); prints its id")
    .argument('<chat_id>', 'the chat')
    .option('--timeout <seconds>', 'how long to wait for the answer', '30')
    .option('--json', 'print JSON')
    .action(async (chat: string, opts: { timeout: string; json?: boolean }) => {
      const cfg = loadConfig();
      const kafka = kafkaFromConfig(cfg, `${cfg.appId}-cli`);
      if ((await trackerMembers(kafka, cfg)).length === 0) return fail(`no tracker is running (consumer group ${cfg.appId}-tracker has no members)`, ExitCode.NotRunning);
      const n = await partitionCount(kafka, topicNames(cfg).messages);
      const [res] = await sendCommands(kafka, cfg, [{ cmd: commandOf('FORCE_SEAL', chat), key: chat, partition: partitionForKey(chat, n) }], Number(opts.timeout) * 1000);
      if (opts.json) return void console.log(JSON.stringify({ chat_id: chat, sealed_conversation_ids: res!.sealed_conversation_ids }));
      if (res!.sealed_conversation_ids.length === 0) console.log(`chat ${chat} had no open conversation`);
      for (const id of res!.sealed_conversation_ids) console.log(id);
    });
  return [status, check, force];
}
