// The thread model's cost on one core: messages per second through linkMessage + rememberMessage
// (src/boundaries, what the tracker and eval-boundaries run), over the bundled IRC sample
// (data/irc, 12 chats, 14,018 messages) replayed several times, one window per chat.
//   npm run build && node dist/bench/boundaries.js [--passes N] [--repeats N] [--model FILE] [--check]
// Also prints the size of a full window as JSON and the cost of a JSON round trip of it (what a
// store/changelog write of the chat's window costs).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseChatMessageJson } from '../src/records/validate';
import { DEFAULT_MODEL_PATH, linkMessage, loadThreadModel } from '../src/boundaries/model';
import { createWindow, rememberMessage, type ThreadWindow } from '../src/boundaries/window';
import type { ChatMessage } from '../src/records/types';

const ROOT = path.resolve(__dirname, '..', '..');
const SAMPLE = path.join(ROOT, 'data', 'irc', 'irc-new-domains.messages.jsonl');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

function main(): void {
  const passes = Number(arg('passes', '5'));
  const model = loadThreadModel(arg('model', DEFAULT_MODEL_PATH));
  const messages: ChatMessage[] = readFileSync(SAMPLE, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => parseChatMessageJson(l));
  // The sample repeated `passes` times (fresh message ids each time), built before timing.
  const stream: ChatMessage[] = [];
  for (let p = 0; p < passes; p++) for (const m of messages) stream.push(p === 0 ? m : { ...m, message_id: `${m.message_id}#${p}` });
  const run = (): { n: number; links: number; windows: Map<string, ThreadWindow> } => {
    const windows = new Map<string, ThreadWindow>();
    let n = 0, links = 0;
    {
      for (const m of stream) {
        let w = windows.get(m.chat_id);
        if (!w) { w = createWindow(model.window); windows.set(m.chat_id, w); }
        const r = linkMessage(w, m, model);
        rememberMessage(w, m, r.parentMessageId, r.entry);
        n++;
        if (r.parentMessageId !== null) links++;
      }
    }
    return { n, links, windows };
  };
  run(); // warm-up
  // Several timed runs: the machine may be shared, so the best and the median are both printed.
  const repeats = Number(arg('repeats', '5'));
  const rates: number[] = [];
  let n = 0, links = 0, windows = new Map<string, ThreadWindow>(), wallRate = 0;
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    const res = run();
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(c0);
    // Messages per second of this process's own CPU time: one core's rate, less sensitive than
    // wall time to other work on the machine.
    rates.push(res.n / ((cpu.user + cpu.system) / 1e6));
    wallRate = Math.max(wallRate, res.n / secs);
    ({ n, links, windows } = res);
  }
  const sorted = rates.slice().sort((a, b) => a - b);
  const best = sorted[sorted.length - 1]!;
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const rate = median;

  let biggest = '';
  for (const w of windows.values()) { const s = JSON.stringify(w); if (s.length > biggest.length) biggest = s; }
  const rounds = 2000;
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) JSON.parse(JSON.stringify(JSON.parse(biggest)));
  const jsonUs = Number(process.hrtime.bigint() - t1) / 1e3 / rounds;

  const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
  console.log(`thread model (${model.kind}${model.hidden ? `, ${model.hidden.size} hidden` : ''}${model.prune ? `, first stage keeps ${model.prune.keep}` : ''}, window ${model.window}): ` +
    `${fmt(n)} messages per run, ${repeats} runs: median ${fmt(median)}, best ${fmt(best)} messages/s of CPU on one core ` +
    `(best wall clock ${fmt(wallRate)}/s; ${((100 * links) / n).toFixed(1)} % linked to an earlier message)`);
  console.log(`largest window: ${Buffer.byteLength(biggest)} bytes of JSON; parse + stringify ${jsonUs.toFixed(0)} us`);
  console.log(`target >= 20,000 messages/s (median): ${rate >= 20_000 ? 'met' : 'NOT met'}`);
  if (process.argv.includes('--check') && rate < 20_000) process.exitCode = 1;
}

main();
