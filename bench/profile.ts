// `npm run bench -- profile` (or `node dist/bench/profile.js [records]`): a CPU profile of the
// tracker on a generated backlog. Produces the backlog (default 1M records, the throughput
// benchmark's traffic), runs `chatstats run tracker` with --cpu-prof until its group has committed
// the whole input, stops it, and prints the top self-time functions of the profile (also written to
// bench/results/tracker-<time>.cpuprofile, for Chrome DevTools or speedscope).
// `--memory`: no CPU profile; instead the tracker's memory is sampled every 500 ms from its
// /metrics (RSS, V8 heap used and total, external and ArrayBuffer memory) and the peaks printed,
// to tell the JS heap from native memory (RocksDB, buffers).
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { generateTraffic } from './generator';
import { benchKafka, cleanup, createTopics, newRun, produceAll, removeDir, ROOT, spawnChild, topicEnd, waitForGroup } from './lib';
import { topicNames } from '../src/topics';
import { freePort } from './throughput';
import { loadConfig } from '../src/config';

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }
export interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

/**
 * Self time per function (name and file:line), largest first, as shares of all samples (`busy`:
 * of the samples that were not idle, for a profile of a moment rather than of a run).
 */
export function topSelf(profile: CpuProfile, n: number, busy = false): { name: string; share: number; ms: number }[] {
  const byNode = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byNode.set(node.id, node);
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byNode.get(profile.samples[i]!)!;
    // A sample stands for the time until the next one (the first delta is the wait before sampling began).
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const f = node.callFrame;
    const file = f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : '';
    const name = `${f.functionName || '(anonymous)'}${file ? ` ${file}` : ''}`;
    if (busy && f.functionName === '(idle)') continue;
    self.set(name, (self.get(name) ?? 0) + dt);
    total += dt;
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, t]) => ({ name, share: t / total, ms: t / 1000 }));
}

const MEMORY_SERIES = {
  rss: 'process_resident_memory_bytes', heapUsed: 'nodejs_heap_size_used_bytes', heapTotal: 'nodejs_heap_size_total_bytes',
  external: 'nodejs_external_memory_bytes',
} as const;

/** Samples the memory series of a /metrics endpoint until stopped; keeps each one's peak (MB). */
function sampleMemory(port: number): { stop: () => Record<keyof typeof MEMORY_SERIES, number> } {
  const peak = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0 };
  const timer = setInterval(() => {
    fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).then((text) => {
      for (const [k, name] of Object.entries(MEMORY_SERIES) as [keyof typeof peak, string][]) {
        const m = new RegExp(`^${name} (\\S+)`, 'm').exec(text);
        if (m) peak[k] = Math.max(peak[k], Number(m[1]) / 1_048_576);
      }
    }).catch(() => undefined);
  }, 500);
  return { stop: () => { clearInterval(timer); return peak; } };
}

async function main(): Promise<void> {
  const memory = process.argv.includes('--memory');
  const records = Number(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 1_000_000);
  const port = await freePort();
  const run = newRun('profile', { LOG_LEVEL: 'warn', PUNCTUATE_INTERVAL: '1s', CONVERSATION_SETTLE: '1s', METRICS_PORT: String(port) });
  const kafka = benchKafka();
  const admin = kafka.admin();
  await admin.connect();
  const t = topicNames(loadConfig(run.env));
  try {
    await createTopics(admin, [t.messages]);
    const produced = await produceAll(kafka, t.messages, generateTraffic({ seed: 7, messages: records, gapMs: 5_400_000 }));
    const end = await topicEnd(admin, t.messages);
    process.stderr.write(`produced ${produced.records} records in ${produced.ms} ms\n`);
    const profDir = path.join(ROOT, 'bench/results');
    mkdirSync(profDir, { recursive: true });
    const before = new Set(readdirSync(profDir));
    const prof = memory ? [] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=tracker-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`];
    const child = spawnChild(process.execPath, [...prof, path.join(ROOT, 'bin/chatstats.js'), 'run', 'tracker'], run.env);
    const sampler = memory ? sampleMemory(port) : null;
    const t0 = Date.now();
    await waitForGroup(admin, `${run.appId}-tracker`, t.messages, end, { timeoutMs: 900_000 });
    const ms = Date.now() - t0;
    const peak = sampler?.stop();
    await child.stop('SIGTERM');
    if (peak) {
      process.stdout.write(`tracker: ${end} records committed in ${ms} ms from start (${Math.round(end / (ms / 1000))} records/s)\n`);
      process.stdout.write(`peak MB: ${Object.entries(peak).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}\n`);
      return;
    }
    const file = readdirSync(profDir).find((f) => !before.has(f) && f.endsWith('.cpuprofile'));
    process.stdout.write(`tracker: ${end} records committed in ${ms} ms from start (${Math.round(end / (ms / 1000))} records/s, start-up and restore included)\n`);
    if (!file) throw new Error('no profile written');
    const profile = JSON.parse(readFileSync(path.join(profDir, file), 'utf8')) as CpuProfile;
    process.stdout.write(`profile ${path.join('bench/results', file)}; top self time:\n`);
    for (const f of topSelf(profile, 15)) process.stdout.write(`  ${(f.share * 100).toFixed(1).padStart(5)} %  ${f.name}\n`);
  } finally {
    await cleanup(admin, [run.prefix]).catch(() => 0);
    await admin.disconnect();
    removeDir(run.stateDir);
  }
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
