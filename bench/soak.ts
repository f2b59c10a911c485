// Soak: steady live traffic through `chatstats run tracker` for N minutes, the tracker's memory
// sampled every 10 s, and whether it kept up.
//
// Traffic (sent_at = now, RATE messages/s in requests every 100 ms): CHATS chats, ACTIVE of them
// talking at any moment. Each message goes to a random active chat; an active chat's conversation
// has a planned size (Pareto, 5 to 1,000 messages); once it is reached the chat falls silent, its
// conversation seals after the gap (GAP, default 30 s, scaled down from 90 min as in the latency
// benchmark), and a random silent chat takes its place. So the tracker sees thousands of messages
// a second into tens of thousands of chats, conversations that open, grow up to ~1,000 messages and
// seal, and a state that churns rather than grows.
//
// Every 10 s: the tracker's RSS and RssAnon (/proc), its JS heap (its /metrics), and its lag (input end offsets - the group's
// committed offsets). At the end: RSS drift = mean RSS over the last quarter of the run against
// the second quarter (for 20 minutes: the last 5 minutes against minutes 5-10), peak RSS, lag, and
// an SVG plot (RSS, RssAnon and lag against time) next to the JSON in bench/results/.
//   npm run bench -- soak                 20 minutes
//   npm run bench -- soak --minutes 3     a quick try
//   RATE=3000 CHATS=20000 ACTIVE=3000 GAP=30s STATE_MEMORY=64MiB SEAL_TIMER=deadline npm run bench -- soak
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseBytes, parseDuration } from '../src/config';
import type { ChatMessage } from '../src/records/types';
import { javaCompatiblePartitioner } from '../src/records/partitioner';
import { topicNames } from '../src/topics';
import { encodeMessage, Rng } from './generator';
import {
  benchKafka, cleanup, createTopics, fmtInt, groupCommitted, newRun, removeDir, ROOT, sleep, spawnRole, topicEnd, type Child,
} from './lib';
import { freePort } from './throughput';

export interface SoakSample {
  /** Seconds since the traffic started. */
  t: number;
  rssMb: number;
  rssAnonMb: number;
  /** V8's heap in use and external memory (Buffers), from the tracker's /metrics. */
  heapUsedMb: number;
  externalMb: number;
  /** The tracker's cache misses so far, and the records they read (its /metrics). */
  chatLoads: number;
  chatLoadRecords: number;
  produced: number;
  committed: number;
  lag: number;
}

export interface SoakResult {
  minutes: number;
  rate: number;
  chats: number;
  active: number;
  gapMs: number;
  stateMemory: string;
  produced: number;
  achievedRate: number;
  samples: SoakSample[];
  /** The windows compared (minutes) and their mean RSS. */
  drift: { reference: [number, number]; last: [number, number]; referenceMeanMb: number; lastMeanMb: number; ratio: number };
  peakRssMb: number;
  peakRssAnonMb: number;
  peakHeapUsedMb: number;
  maxLag: number;
  /** Mean lag over the last quarter of the run. */
  lastLagMean: number;
  /** Lag when the traffic stopped, and how long the tracker took to reach the end after it (ms). */
  finalLag: number;
  drainMs: number | null;
  keptUp: boolean;
  conversationsSealed: number;
  largestConversation: number;
  svg: string;
}

function procStatus(pid: number | undefined): { rssMb: number; rssAnonMb: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN) / 1024;
    return { rssMb: kb('VmRSS'), rssAnonMb: kb('RssAnon') };
  } catch {
    return { rssMb: NaN, rssAnonMb: NaN };
  }
}

async function trackerMetrics(port: number): Promise<{ heapUsedMb: number; externalMb: number; chatLoads: number; chatLoadRecords: number }> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const get = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
    return {
      heapUsedMb: get('nodejs_heap_size_used_bytes') / 1_048_576, externalMb: get('nodejs_external_memory_bytes') / 1_048_576,
      chatLoads: get('chatstats_tracker_chat_loads_total'), chatLoadRecords: get('chatstats_tracker_chat_load_records_total'),
    };
  } catch {
    return { heapUsedMb: NaN, externalMb: NaN, chatLoads: NaN, chatLoadRecords: NaN };
  }
}

const mean = (xs: number[]) => (xs.length === 0 ? NaN : xs.reduce((s, x) => s + x, 0) / xs.length);

async function waitReady(port: number, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode() !== undefined) throw new Error(`tracker exited: ${child.output().slice(-2000)}`);
    try { if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return; } catch { /* not up */ }
    if (Date.now() > deadline) throw new Error(`tracker not ready after ${timeoutMs} ms`);
    await sleep(250);
  }
}

/** The plot: RSS, RssAnon and the JS heap (MB, left axis) and lag (records, right axis) against minutes. */
export function soakSvg(r: Pick<SoakResult, 'samples' | 'minutes' | 'rate' | 'chats' | 'stateMemory' | 'drift'>, title: string): string {
  const W = 760; const H = 370; const L = 60; const R = 70; const T = 50; const B = 50;
  const pw = W - L - R; const ph = H - T - B;
  const xs = r.samples.map((s) => s.t / 60);
  const xmax = Math.max(r.minutes, ...xs, 1);
  const mem = r.samples.flatMap((s) => [s.rssMb, s.rssAnonMb]).filter(Number.isFinite);
  const ymax = niceCeil(Math.max(100, ...mem) * 1.1);
  const lagMax = niceCeil(Math.max(10, ...r.samples.map((s) => s.lag)) * 1.1);
  const x = (m: number) => L + (m / xmax) * pw;
  const y = (mb: number) => T + ph - (mb / ymax) * ph;
  const yl = (lag: number) => T + ph - (lag / lagMax) * ph;
  const line = (pts: [number, number][]) => pts.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b)).map(([a, b], i) => `${i === 0 ? 'M' : 'L'}${a.toFixed(1)},${b.toFixed(1)}`).join(' ');
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const v = (ymax * i) / 5;
    out.push(`<line x1="${L}" x2="${L + pw}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${fmtInt(v)}</text>`);
    out.push(`<text x="${L + pw + 6}" y="${yl((lagMax * i) / 5) + 4}" fill="#b55">${fmtInt((lagMax * i) / 5)}</text>`);
  }
  const step = xmax <= 5 ? 1 : xmax <= 30 ? 5 : 10;
  for (let m = 0; m <= xmax + 1e-9; m += step) {
    out.push(`<line x1="${x(m)}" x2="${x(m)}" y1="${T}" y2="${T + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x(m)}" y="${T + ph + 16}" text-anchor="middle">${m}</text>`);
  }
  // The two windows whose means give the drift.
  for (const [w, label] of [[r.drift.reference, 'reference'], [r.drift.last, 'last']] as const) {
    out.push(`<rect x="${x(w[0])}" y="${T}" width="${x(w[1]) - x(w[0])}" height="${ph}" fill="#36c" opacity="0.06"/>`);
    out.push(`<text x="${(x(w[0]) + x(w[1])) / 2}" y="${T + 14}" text-anchor="middle" fill="#36c">${label}</text>`);
  }
  out.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<path d="${line(r.samples.map((s) => [x(s.t / 60), yl(s.lag)]))}" fill="none" stroke="#b55" stroke-width="1.2" stroke-dasharray="4 3"/>`);
  out.push(`<path d="${line(r.samples.map((s) => [x(s.t / 60), y(s.heapUsedMb)]))}" fill="none" stroke="#a6c" stroke-width="1.2"/>`);
  out.push(`<path d="${line(r.samples.map((s) => [x(s.t / 60), y(s.rssAnonMb)]))}" fill="none" stroke="#6a3" stroke-width="1.5"/>`);
  out.push(`<path d="${line(r.samples.map((s) => [x(s.t / 60), y(s.rssMb)]))}" fill="none" stroke="#36c" stroke-width="2"/>`);
  out.push(`<text x="${L + pw / 2}" y="${H - 12}" text-anchor="middle">minutes (${fmtInt(r.rate)} messages/s into ${fmtInt(r.chats)} chats, STATE_MEMORY ${esc(r.stateMemory)})</text>`);
  out.push(`<text x="16" y="${T + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${T + ph / 2})">MB</text>`);
  out.push(`<text x="${W - 12}" y="${T + ph / 2}" text-anchor="middle" fill="#b55" transform="rotate(90 ${W - 12} ${T + ph / 2})">lag (records)</text>`);
  // Legend, in one line under the title.
  const ly = T - 8;
  const lx = L + pw - 330;
  out.push(`<line x1="${lx}" x2="${lx + 20}" y1="${ly}" y2="${ly}" stroke="#36c" stroke-width="2"/><text x="${lx + 24}" y="${ly + 4}">RSS</text>`);
  out.push(`<line x1="${lx + 60}" x2="${lx + 80}" y1="${ly}" y2="${ly}" stroke="#6a3" stroke-width="1.5"/><text x="${lx + 84}" y="${ly + 4}">RssAnon</text>`);
  out.push(`<line x1="${lx + 150}" x2="${lx + 170}" y1="${ly}" y2="${ly}" stroke="#a6c" stroke-width="1.2"/><text x="${lx + 174}" y="${ly + 4}">JS heap</text>`);
  out.push(`<line x1="${lx + 230}" x2="${lx + 250}" y1="${ly}" y2="${ly}" stroke="#b55" stroke-dasharray="4 3"/><text x="${lx + 254}" y="${ly + 4}">lag (right)</text>`);
  out.push('</svg>');
  return out.join('\n');
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Pareto sizes of planned conversations, 5 to 1,000 messages. */
function plannedSize(rng: Rng): number {
  return Math.min(1000, Math.max(5, Math.floor(rng.pareto(5, 0.8))));
}

export async function runSoak(opts: {
  minutes?: number; rate?: number; chats?: number; active?: number; gapMs?: number; stateMemory?: string; log: (s: string) => void;
}): Promise<SoakResult> {
  const minutes = opts.minutes ?? 20;
  const rate = opts.rate ?? 3000;
  const chats = opts.chats ?? 20_000;
  const active = Math.min(chats, opts.active ?? 3000);
  const gapMs = opts.gapMs ?? 30_000;
  const stateMemory = opts.stateMemory ?? process.env.STATE_MEMORY ?? '64MiB';
  parseBytes(stateMemory);
  const { log } = opts;
  const kafka = benchKafka('bench-soak');
  const admin = kafka.admin();
  await admin.connect();
  // The tracker as the Dockerfile runs it: glibc malloc limited to two arenas.
  const run = newRun('soak', {
    CONVERSATION_GAP: `${gapMs}ms`, STATE_MEMORY: stateMemory, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2', SEAL_TIMER: process.env.SEAL_TIMER ?? 'deadline',
  });
  const topics = topicNames({ topicPrefix: run.prefix, appId: run.appId });
  const group = `${run.appId}-tracker`;
  const children: Child[] = [];
  const rng = new Rng(23);
  try {
    await createTopics(admin, [topics.messages], 6, { 'retention.ms': String(86_400_000) });
    const port = await freePort();
    const tracker = spawnRole('tracker', { ...run.env, METRICS_PORT: String(port) });
    children.push(tracker);
    await waitReady(port, tracker, 120_000);
    log(`[soak] ${minutes} min, ${fmtInt(rate)} messages/s into ${fmtInt(chats)} chats (${fmtInt(active)} active), gap ${gapMs / 1000} s, STATE_MEMORY ${stateMemory}`);

    // Chats: active ones with what is left of their conversation; silent ones, available again
    // once their conversation has sealed (the gap has passed).
    const left = new Map<number, number>();
    const counter = new Map<number, number>();
    const silentUntil: { chat: number; at: number }[] = [];
    const idle: number[] = [];
    for (let c = 0; c < chats; c++) idle.push(c);
    const activeList: number[] = [];
    let largest = 0;
    let conversations = 0;
    const activate = () => {
      const i = Math.floor(rng.next() * idle.length);
      const chat = idle[i]!;
      idle[i] = idle[idle.length - 1]!;
      idle.pop();
      const size = plannedSize(rng);
      if (size > largest) largest = size;
      left.set(chat, size);
      activeList.push(chat);
      conversations++;
    };
    for (let k = 0; k < active; k++) activate();

    const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: javaCompatiblePartitioner() });
    await producer.connect();
    const samples: SoakSample[] = [];
    let produced = 0;
    const t0 = Date.now();
    const endAt = t0 + minutes * 60_000;
    const sample = async () => {
      const end = await topicEnd(admin, topics.messages).catch(() => NaN);
      const committed = await groupCommitted(admin, group, topics.messages).catch(() => NaN);
      const m = procStatus(tracker.proc.pid);
      const h = await trackerMetrics(port);
      const prev = samples.at(-1);
      samples.push({ t: Math.round((Date.now() - t0) / 1000), ...m, ...h, produced, committed, lag: Math.max(0, end - committed) });
      const s = samples.at(-1)!;
      // Cache misses in the last interval: how many, and how many records each read.
      const loads = prev ? s.chatLoads - prev.chatLoads : s.chatLoads;
      const perLoad = loads > 0 ? (s.chatLoadRecords - (prev?.chatLoadRecords ?? 0)) / loads : 0;
      log(`[soak] ${(s.t / 60).toFixed(1)} min: RSS ${fmtInt(s.rssMb)} MB (anon ${fmtInt(s.rssAnonMb)}, heap ${fmtInt(s.heapUsedMb)}), lag ${fmtInt(s.lag)}, ${fmtInt(produced)} produced; chat loads ${fmtInt(loads)} (${perLoad.toFixed(0)} records each)`);
    };
    await sample();
    let nextSample = t0 + 10_000;
    const TICK = 100;
    for (let tick = 1; ; tick++) {
      const wait = Math.min(t0 + tick * TICK, endAt) - Date.now();
      if (wait > 0) await sleep(wait);
      const now = Math.min(Date.now(), endAt);
      // Silent chats whose conversation has sealed are available again.
      while (silentUntil.length > 0 && silentUntil[0]!.at <= now) idle.push(silentUntil.shift()!.chat);
      // What is due by now (catches up if a send took longer than a tick).
      const due = Math.round(((now - t0) / 1000) * rate) - produced;
      const messages: { key: string; value: Buffer }[] = [];
      for (let k = 0; k < due; k++) {
        const ai = Math.floor(rng.next() * activeList.length);
        const chat = activeList[ai]!;
        const n = counter.get(chat) ?? 0;
        counter.set(chat, n + 1);
        const id = `soak-${chat}`;
        const m: ChatMessage = {
          message_id: `${id}:${n}`, chat_id: id, sender_id: `u${n % 4}`, sent_at: now, text: `live message ${n} ${rng.hex(rng.int(8, 120))}`,
          chat_type: 'group', is_from_me: n % 4 === 0, reply_to_message_id: null, account_id: 'acct-1',
        };
        messages.push({ key: id, value: encodeMessage(m) });
        const rest = left.get(chat)! - 1;
        if (rest > 0) { left.set(chat, rest); continue; }
        // The conversation is complete: the chat falls silent, another starts talking.
        left.delete(chat);
        activeList[ai] = activeList[activeList.length - 1]!;
        activeList.pop();
        silentUntil.push({ chat, at: now + gapMs + 5000 });
        if (idle.length > 0) activate();
      }
      if (messages.length > 0) {
        await producer.send({ topic: topics.messages, acks: -1, messages });
        produced += messages.length;
      }
      if (Date.now() >= nextSample) {
        nextSample += 10_000;
        if (tracker.exitCode() !== undefined) throw new Error(`tracker exited: ${tracker.output().slice(-2000)}`);
        await sample();
      }
      if (now >= endAt) break;
    }
    await producer.disconnect();
    const stoppedAt = Date.now();
    await sample();
    const finalLag = samples.at(-1)!.lag;
    // Drain: how long until the tracker reaches the end of its input.
    let drainMs: number | null = null;
    const end = await topicEnd(admin, topics.messages);
    for (let i = 0; i < 600; i++) {
      const c = await groupCommitted(admin, group, topics.messages).catch(() => 0);
      if (c >= end) { drainMs = Date.now() - stoppedAt; break; }
      await sleep(500);
    }
    await tracker.stop('SIGTERM');

    const during = samples.filter((s) => s.t <= minutes * 60);
    const q = minutes / 4;
    const win = (a: number, b: number) => during.filter((s) => s.t / 60 >= a && s.t / 60 <= b);
    const reference: [number, number] = [q, 2 * q];
    const last: [number, number] = [minutes - q, minutes];
    const referenceMeanMb = mean(win(...reference).map((s) => s.rssMb));
    const lastMeanMb = mean(win(...last).map((s) => s.rssMb));
    const lastLagMean = mean(win(...last).map((s) => s.lag));
    const maxLag = Math.max(...during.map((s) => s.lag));
    const seconds = (stoppedAt - t0) / 1000;
    const result: SoakResult = {
      minutes, rate, chats, active, gapMs, stateMemory, produced, achievedRate: produced / seconds, samples,
      drift: { reference, last, referenceMeanMb, lastMeanMb, ratio: lastMeanMb / referenceMeanMb - 1 },
      peakRssMb: Math.max(...samples.map((s) => s.rssMb)), peakRssAnonMb: Math.max(...samples.map((s) => s.rssAnonMb)),
      peakHeapUsedMb: Math.max(...samples.map((s) => s.heapUsedMb).filter(Number.isFinite)),
      maxLag, lastLagMean, finalLag, drainMs,
      // Kept up: at the end of the traffic, less than 5 s of traffic behind, and caught up soon after.
      keptUp: finalLag <= 5 * rate && drainMs !== null && drainMs <= 30_000,
      conversationsSealed: NaN, largestConversation: largest, svg: '',
    };
    result.conversationsSealed = await topicEnd(admin, topics.sealed).catch(() => NaN);
    return result;
  } finally {
    for (const c of children) await c.stop('SIGKILL').catch(() => undefined);
    await cleanup(admin, [run.prefix, run.appId]).catch(() => 0);
    await admin.disconnect();
    removeDir(run.stateDir);
  }
}

/** Writes the plot next to the results (bench/results/<name>.svg) and returns its path. */
export function writeSoakSvg(r: SoakResult, name: string): string {
  const dir = path.join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.svg`);
  const title = `tracker RSS over a ${r.minutes}-minute soak: drift ${(r.drift.ratio * 100).toFixed(1)} %, peak ${fmtInt(r.peakRssMb)} MB`;
  writeFileSync(file, soakSvg(r, title));
  r.svg = path.relative(ROOT, file);
  return file;
}

export function soakRows(r: SoakResult): string[][] {
  const what = `soak, ${r.minutes} min of live traffic (${fmtInt(r.rate)} msg/s, ${fmtInt(r.chats)} chats, conversations up to ${fmtInt(r.largestConversation)} messages)`;
  return [
    [what, `tracker, STATE_MEMORY ${r.stateMemory}`, `RSS drift ${(r.drift.ratio * 100).toFixed(1)} % (mean ${fmtInt(r.drift.lastMeanMb)} MB over min ${r.drift.last.map((m) => +m.toFixed(2)).join('-')} vs ${fmtInt(r.drift.referenceMeanMb)} MB over min ${r.drift.reference.map((m) => +m.toFixed(2)).join('-')}); peak RSS ${fmtInt(r.peakRssMb)} MB (RssAnon ${fmtInt(r.peakRssAnonMb)} MB, JS heap ${fmtInt(r.peakHeapUsedMb)} MB)`, r.svg],
    [what, 'lag', `${r.keptUp ? 'kept up' : '**fell behind**'}: lag at the end ${fmtInt(r.finalLag)} records, mean over the last quarter ${fmtInt(r.lastLagMean)}, max ${fmtInt(r.maxLag)}; ${r.drainMs === null ? 'did not reach the end within 5 min' : `at the end ${fmtInt(r.drainMs)} ms after the traffic stopped`}`,
      `${fmtInt(r.produced)} messages (${fmtInt(r.achievedRate)}/s), ${fmtInt(r.conversationsSealed)} conversations sealed`],
  ];
}

/** `--minutes 3` or `--minutes=3` among the arguments, else MINUTES, else undefined. */
export function minutesArg(argv: string[]): number | undefined {
  const i = argv.findIndex((a) => a === '--minutes' || a.startsWith('--minutes='));
  const v = i < 0 ? process.env.MINUTES : argv[i]!.includes('=') ? argv[i]!.split('=')[1] : argv[i + 1];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(n > 0)) throw new Error(`--minutes: not a positive number: ${v}`);
  return n;
}

export function soakOptionsFromEnv(): { rate?: number; chats?: number; active?: number; gapMs?: number } {
  const num = (k: string) => (process.env[k] === undefined ? undefined : Number(process.env[k]));
  return { rate: num('RATE'), chats: num('CHATS'), active: num('ACTIVE'), gapMs: process.env.GAP ? parseDuration(process.env.GAP) : undefined };
}
