// `chatstats produce FILE|-`: publishes ChatMessage records from JSON Lines to the input topic
// (SPEC section 6). The file is streamed, never loaded whole; each line is validated, invalid lines
// are reported with their line number and skipped (or, with --strict, stop the run); valid ones
// are sent in batches by ChatMessageProducer (idempotent, keyed by chat_id, Java partitioning).
import { createReadStream, promises as fsp } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { Command, InvalidArgumentError } from 'commander';
import type { Admin, Message } from 'kafkajs';
import { loadConfig, safeConfig, type Config } from '../config';
import { describeKafkaError, kafkaFromConfig } from '../kafka-client';
import { ChatMessageProducer, type SendReport } from '../producer';
import { RecordCodec } from '../records/codec';
import { InvalidRecordError, parseChatMessageJson } from '../records/validate';
import { ensureTopics, replicated, topicNames, waitUntilServed } from '../topics';
import { UnreachableError, preflight } from '../preflight';

export interface ProduceOptions {
  /** A file path, or `-` for standard input. */
  file: string;
  /** Overrides the input topic (TOPIC_PREFIX + chat.messages). */
  topic?: string;
  /** Stop at the first invalid line. */
  strict?: boolean;
  /** Messages per produce request. */
  batchSize?: number;
  /** Progress bar: true/false, or undefined for "when stderr is a terminal and the file is large". */
  progress?: boolean;
  config?: Config;
  stdin?: Readable;
  stderr?: Writable & { isTTY?: boolean; columns?: number };
  /** Stops reading (as on SIGINT); what was read is still sent. */
  signal?: AbortSignal;
}

export interface InvalidLine {
  line: number;
  reason: string;
}

export interface ProduceSummary {
  file: string;
  topic: string;
  format: 'avro' | 'json';
  partition_count: number;
  lines: number;
  sent: number;
  invalid: number;
  blank: number;
  /** Messages sent, per partition number. */
  partitions: Record<string, number>;
  elapsed_ms: number;
  rate_per_s: number;
  /** The first invalid lines (at most 1000). */
  invalid_lines: InvalidLine[];
  /** Why the run ended early: `strict` (an invalid line with --strict) or `interrupted`; else null. */
  stopped: 'strict' | 'interrupted' | null;
}

const MAX_INVALID_KEPT = 1000;
const MAX_INVALID_PRINTED = 100;
const LARGE_FILE_BYTES = 1024 * 1024;
const MAX_PENDING_BATCHES = 4;

/** A line of the input: its bytes, or null when it was longer than the guard and dropped. */
interface Line { bytes: Buffer | null; length: number }

/** Splits a byte stream on \n (dropping a \r before it) without holding more than one line. */
async function* readLines(input: Readable, maxLineBytes: number): AsyncGenerator<Line> {
  let rest: Buffer[] = [];
  let restLen = 0;
  let dropping = false;
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl === -1) break;
      let piece = buf.subarray(start, nl);
      const length = restLen + piece.length;
      if (dropping) {
        yield { bytes: null, length };
      } else {
        if (restLen > 0) piece = Buffer.concat([...rest, piece], length);
        if (piece.length > 0 && piece[piece.length - 1] === 13) piece = piece.subarray(0, piece.length - 1);
        yield { bytes: piece, length };
      }
      rest = [];
      restLen = 0;
      dropping = false;
      start = nl + 1;
    }
    if (start < buf.length) {
      const tail = buf.subarray(start);
      restLen += tail.length;
      if (!dropping) {
        if (restLen > maxLineBytes) { dropping = true; rest = []; } else rest.push(Buffer.from(tail));
      }
    }
  }
  if (restLen > 0) {
    if (dropping) yield { bytes: null, length: restLen };
    else {
      let piece = Buffer.concat(rest, restLen);
      if (piece[piece.length - 1] === 13) piece = piece.subarray(0, piece.length - 1);
      yield { bytes: piece, length: restLen };
    }
  }
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

class ProgressBar {
  private last = 0;
  constructor(private readonly out: Writable & { columns?: number }, private readonly total: number, private readonly started: number) {}

  update(bytes: number, sent: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 200) return;
    this.last = now;
    const frac = this.total > 0 ? Math.min(1, bytes / this.total) : 0;
    const elapsed = now - this.started;
    const rate = elapsed > 0 ? (sent * 1000) / elapsed : 0;
    const eta = frac > 0 && frac < 1 ? (elapsed * (1 - frac)) / frac : 0;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - 60));
    const filled = Math.round(frac * width);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    this.out.write(`\r\x1b[2Kproduce [${bar}] ${(frac * 100).toFixed(1).padStart(5)}%  ${fmtInt(sent)} sent  ${fmtInt(rate)} msg/s  ETA ${fmtDuration(eta)}`);
  }

  finish(bytes: number, sent: number): void {
    this.update(bytes, sent, true);
    this.out.write('\n');
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function isRetriable(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { retriable?: boolean }).retriable === true;
}

/**
 * Creates the missing topics (ensureTopics, plus a --topic override) and waits until the input
 * topic's partitions all have a leader; returns its partition count. Right after creation a KRaft
 * broker may still answer UNKNOWN_TOPIC_OR_PARTITION for a moment: that is retried.
 */
async function provisionTopics(admin: Admin, cfg: Config, topic: string): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (let attempt = 0; ; attempt++) {
    try {
      await ensureTopics(admin, cfg);
      if (!(await admin.listTopics()).includes(topic)) {
        await admin.createTopics({ topics: [replicated({ topic, numPartitions: cfg.topicPartitions }, cfg)], waitForLeaders: false });
        await waitUntilServed(admin, topic);
      }
      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      const partitions = md.topics[0]?.partitions ?? [];
      if (partitions.length > 0 && partitions.every((p) => p.leader >= 0)) return partitions.length;
    } catch (e) {
      if (!isRetriable(e) || Date.now() > deadline) throw e;
    }
    if (Date.now() > deadline) throw new Error(`topic ${topic}: partitions without a leader after 60s`);
    await sleep(Math.min(1000, 50 * 2 ** attempt));
  }
}

/** Runs `produce`: returns the summary (also when stopped by --strict: see `stopped`). */
export async function runProduce(opts: ProduceOptions): Promise<ProduceSummary> {
  const cfg = opts.config ?? loadConfig();
  const stderr = opts.stderr ?? process.stderr;
  const batchSize = opts.batchSize ?? 500;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a positive integer, got ${batchSize}`);

  // Open the input first: a missing file fails before anything touches Kafka.
  let input: Readable;
  let totalBytes = 0;
  if (opts.file === '-') {
    input = opts.stdin ?? process.stdin;
  } else {
    const st = await fsp.stat(opts.file).catch((e: NodeJS.ErrnoException) => {
      throw new Error(`cannot read ${opts.file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    if (!st.isFile()) throw new Error(`cannot read ${opts.file}: not a file`);
    totalBytes = st.size;
    input = createReadStream(opts.file, { highWaterMark: 1024 * 1024 });
  }

  const topics = topicNames(cfg);
  const topic = opts.topic ?? topics.messages;
  try {
    await preflight(cfg);
  } catch (e) {
    input.destroy();
    throw e;
  }
  const kafka = kafkaFromConfig(cfg, `${cfg.appId}-produce`);
  let partitionCount: number;
  const admin = kafka.admin();
  await admin.connect();
  try {
    partitionCount = await provisionTopics(admin, cfg, topic);
  } finally {
    await admin.disconnect();
  }

  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  const producer = new ChatMessageProducer({ kafka, codec, topic });
  await producer.connect();

  const started = Date.now();
  const summary: ProduceSummary = {
    file: opts.file, topic, format: codec.format, partition_count: partitionCount,
    lines: 0, sent: 0, invalid: 0, blank: 0, partitions: {}, elapsed_ms: 0, rate_per_s: 0, invalid_lines: [], stopped: null,
  };
  const showBar = opts.progress ?? (stderr.isTTY === true && totalBytes >= LARGE_FILE_BYTES);
  const bar = showBar && totalBytes > 0 ? new ProgressBar(stderr, totalBytes, started) : null;
  /** Bytes of the lines handled so far (the progress, rather than what the stream read ahead). */
  let bytesDone = 0;

  const pending: Promise<SendReport>[] = [];
  const settle = (r: SendReport) => {
    summary.sent += r.sent;
    for (const [p, n] of Object.entries(r.partitions)) summary.partitions[p] = (summary.partitions[p] ?? 0) + n;
  };
  const flushBatch = async (batch: Message[]) => {
    if (batch.length === 0) return;
    pending.push(producer.sendPrepared(batch));
    while (pending.length >= MAX_PENDING_BATCHES) settle(await pending.shift()!);
  };
  const reportInvalid = (line: number, reason: string) => {
    summary.invalid++;
    if (summary.invalid_lines.length < MAX_INVALID_KEPT) summary.invalid_lines.push({ line, reason });
    if (summary.invalid <= MAX_INVALID_PRINTED) {
      if (bar) stderr.write('\r\x1b[2K');
      stderr.write(`line ${line}: ${reason}\n`);
    } else if (summary.invalid === MAX_INVALID_PRINTED + 1) {
      stderr.write(`(more invalid lines are not shown; the summary counts them)\n`);
    }
  };

  const maxLine = codec.maxBytesFor('ChatMessage');
  let batch: Message[] = [];
  try {
    for await (const line of readLines(input, maxLine * 4)) {
      if (opts.signal?.aborted) { summary.stopped = 'interrupted'; break; }
      const lineNo = ++summary.lines;
      bytesDone += line.length + 1;
      if (line.bytes === null) {
        reportInvalid(lineNo, `oversize record: ${line.length} bytes > ${maxLine}`);
      } else {
        const text = line.bytes.toString('utf8');
        if (text.trim() === '') {
          summary.blank++;
          continue;
        }
        try {
          batch.push(producer.prepare(parseChatMessageJson(text)));
        } catch (e) {
          if (!(e instanceof InvalidRecordError)) throw e;
          reportInvalid(lineNo, e.message);
        }
      }
      if (summary.invalid > 0 && opts.strict) { summary.stopped = 'strict'; break; }
      if (batch.length >= batchSize) {
        const b = batch;
        batch = [];
        await flushBatch(b);
      }
      bar?.update(bytesDone, summary.sent);
    }
    if (summary.stopped === 'strict' || summary.stopped === 'interrupted') input.destroy();
    await flushBatch(batch);
    while (pending.length > 0) settle(await pending.shift()!);
  } finally {
    // Sends already queued are awaited by disconnect(); a failure above still closes the client.
    await Promise.allSettled(pending);
    await producer.disconnect();
    if (opts.file !== '-') input.destroy();
  }

  summary.elapsed_ms = Date.now() - started;
  summary.rate_per_s = summary.elapsed_ms > 0 ? Math.round((summary.sent * 1000) / summary.elapsed_ms) : summary.sent;
  if (bar) bar.finish(Math.max(bytesDone, totalBytes), summary.sent);
  else stderr.write(`produce: ${fmtInt(summary.sent)} sent, ${fmtInt(summary.invalid)} invalid, in ${(summary.elapsed_ms / 1000).toFixed(2)}s (${fmtInt(summary.rate_per_s)} msg/s)\n`);
  return summary;
}

/** The human-readable summary. */
export function formatSummary(s: ProduceSummary): string {
  const out: string[] = [];
  out.push(`topic:      ${s.topic} (${s.partition_count} partitions, ${s.format === 'avro' ? 'Avro via schema registry' : 'JSON'})`);
  out.push(`sent:       ${fmtInt(s.sent)}`);
  out.push(`invalid:    ${fmtInt(s.invalid)}${s.invalid > 0 ? ' (skipped)' : ''}`);
  if (s.blank > 0) out.push(`blank:      ${fmtInt(s.blank)}`);
  out.push(`lines read: ${fmtInt(s.lines)}`);
  out.push(`elapsed:    ${(s.elapsed_ms / 1000).toFixed(2)}s (${fmtInt(s.rate_per_s)} msg/s)`);
  out.push('per partition:');
  for (let p = 0; p < s.partition_count; p++) out.push(`  ${String(p).padStart(3)}: ${fmtInt(s.partitions[String(p)] ?? 0)}`);
  if (s.stopped === 'strict') out.push(`stopped at line ${s.invalid_lines[0]?.line ?? '?'} (--strict): ${s.invalid_lines[0]?.reason ?? ''}`);
  if (s.stopped === 'interrupted') out.push('interrupted: the rest of the input was not read');
  return `${out.join('\n')}\n`;
}

function positiveInt(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(v);
}

/** The `produce` command (commander). Sets process.exitCode: 1 on failure or --strict stop, 130 on SIGINT. */
export function produceCommand(): Command {
  return new Command('produce')
    .description('Publish chat messages from a JSON Lines file (- for stdin) to the input topic, keyed by chat_id')
    .argument('<file>', 'JSON Lines file of ChatMessage records, or - for standard input')
    .option('--topic <name>', 'topic to write to (default: TOPIC_PREFIX + chat.messages; created if missing)')
    .option('--strict', 'stop at the first invalid line and exit with status 1 (lines before it are published)')
    .option('--json', 'print the summary as JSON')
    .option('--batch-size <n>', 'messages per produce request', positiveInt, 500)
    .option('--no-progress', 'never draw a progress bar')
    .addHelpText('after', `
Each line is a ChatMessage: {"message_id","chat_id","sender_id","sent_at" (epoch ms or ISO-8601
with a zone),"text","chat_type","is_from_me","reply_to_message_id","account_id"}. Values are Avro
when SCHEMA_REGISTRY_URL is set, JSON otherwise. Invalid lines are reported as "line N: reason".`)
    .action(async (file: string, o: { topic?: string; strict?: boolean; json?: boolean; batchSize: number; progress: boolean }) => {
      const ac = new AbortController();
      let interrupts = 0;
      const onSigint = () => {
        interrupts++;
        if (interrupts > 1) process.exit(130);
        process.stderr.write('\ninterrupted: sending what was read, Ctrl-C again to quit now\n');
        ac.abort();
      };
      process.on('SIGINT', onSigint);
      try {
        const summary = await runProduce({
          file, topic: o.topic, strict: o.strict === true, batchSize: o.batchSize,
          progress: o.progress === false ? false : undefined, signal: ac.signal,
        });
        process.stdout.write(o.json ? `${JSON.stringify(summary, null, 2)}\n` : formatSummary(summary));
        if (summary.stopped === 'strict') {
          process.stderr.write(`chatstats produce: invalid input at line ${summary.invalid_lines[0]?.line} (--strict)\n`);
          process.exitCode = 1;
        } else if (summary.stopped === 'interrupted') {
          process.exitCode = 130;
        }
      } catch (e) {
        process.stderr.write(`chatstats produce: ${e instanceof UnreachableError ? e.message : describeKafkaError(e, safeConfig())}\n`);
        process.exitCode = 1;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
