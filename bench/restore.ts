// `node dist/bench/restore.js [records] [rounds] [--profile]`: the restore of the tracker's store
// from its changelog, alone and repeated. Produces the throughput benchmark's backlog (default 1M
// records), runs one tracker through it and until its wall-clock seals settle, stops it; then
// starts a tracker with an empty state directory `rounds` times (default 3) on the same changelog
// and prints, per round: the slowest partition's restore and rebuild, the records restored, and
// the time from spawn to every partition running, split at the first partition's assignment (read
// from the tracker's info log). `--profile`: the last round runs with --cpu-prof and its top self
// time is printed (the profile goes to bench/results/). `RESTORE_BUILDS=/path/a,/path/b`: the
// rounds take these checkouts' trackers in turn (an A/B on the same changelog; the changelog is
// written by this checkout's); `path?K=V&K=V` adds settings to a build's tracker, e.g.
// `RESTORE_BUILDS='.,.?FETCH_MAX_BYTES=16MiB'` compares one build with itself.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { generateTraffic } from './generator';
import {
  benchKafka, cleanup, createTopics, fmtInt, newRun, produceAll, removeDir, ROOT, scanTopic, sleep, spawnChild, topicEnd, waitForGroup, waitTopicSettled,
} from './lib';
import { freePort } from './throughput';
import { topSelf } from './profile';
import { topicNames } from '../src/topics';

interface StatusPartition { partition: number; state: string; restore_ms: number; restore_rebuild_ms: number; restored_records: number }

/** Milliseconds from `t0` to the first info-log line whose msg is `msg`, or null. */
function logAt(output: string, msg: string, t0: number): number | null {
  for (const line of output.split('\n')) {
    if (!line.startsWith('{') || !line.includes(msg)) continue;
    try {
      const o = JSON.parse(line) as { msg?: string; time?: number };
      if (o.msg === msg && typeof o.time === 'number') return o.time - t0;
    } catch { /* not a log line */ }
  }
  return null;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const records = Number(args[0] ?? 1_000_000);
  const rounds = Number(args[1] ?? 3);
  const profile = process.argv.includes('--profile');
  const builds = (process.env.RESTORE_BUILDS ?? ROOT).split(',').filter((b) => b !== '').map((b) => {
    const [dir, query] = b.split('?');
    return { label: b, dir: path.resolve(dir!), env: Object.fromEntries(new URLSearchParams(query ?? '')) };
  });
  const run = newRun('restore', { CONVERSATION_GAP: '5400000ms', PUNCTUATE_INTERVAL: '1s', CONVERSATION_SETTLE: '1s' });
  const t = topicNames({ topicPrefix: run.prefix, appId: run.appId });
  const kafka = benchKafka('bench-restore');
  const admin = kafka.admin();
  await admin.connect();
  const dirs = [run.stateDir];
  try {
    await createTopics(admin, [t.messages]);
    const produced = await produceAll(kafka, t.messages, generateTraffic({ seed: 7, messages: Math.round(records * 1.02), gapMs: 5_400_000 }));
    const end = await topicEnd(admin, t.messages);
    process.stderr.write(`produced ${fmtInt(produced.records)} records; running the tracker through them\n`);
    const first = spawnChild(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'run', 'tracker'], run.env);
    await waitForGroup(admin, `${run.appId}-tracker`, t.messages, end, { timeoutMs: 900_000 });
    await waitTopicSettled(admin, t.sealed);
    await first.stop('SIGTERM');
    let changelogBytes = 0;
    const changelogRecords = await scanTopic(kafka, t.trackerChangelog, (r) => { changelogBytes += r.value?.length ?? 0; });
    console.log(`input ${fmtInt(end)} records; changelog ${fmtInt(changelogRecords)} records, ${(changelogBytes / 1e6).toFixed(0)} MB`);

    const profDir = path.join(ROOT, 'bench/results');
    mkdirSync(profDir, { recursive: true });
    for (let round = 1; round <= rounds; round++) {
      const dir = `${run.stateDir}-restore-${round}`;
      dirs.push(dir);
      const port = await freePort();
      const prof = profile && round === rounds;
      const before = new Set(readdirSync(profDir));
      const nodeArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=restore-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`] : [];
      const t0 = Date.now();
      const build = builds[(round - 1) % builds.length]!;
      const child = spawnChild(process.execPath, [...nodeArgs, path.join(build.dir, 'bin/chatstats.js'), 'run', 'tracker'],
        { ...run.env, ...build.env, STATE_DIR: dir, METRICS_PORT: String(port), LOG_LEVEL: 'info' });
      let status: StatusPartition[] = [];
      let peakRss = 0;
      for (let i = 0; i < 2400 && status.length === 0; i++) {
        await sleep(50);
        child.sample();
        peakRss = Math.max(peakRss, child.mem.lastRssMb);
        if (child.exitCode() !== undefined) throw new Error(`restoring tracker exited: ${child.output().slice(-2000)}`);
        try {
          const r = await fetch(`http://127.0.0.1:${port}/v1/tracker/status`);
          const s = (await r.json()) as { partitions: StatusPartition[] };
          if (s.partitions.length === 6 && s.partitions.every((p) => p.state === 'running')) status = s.partitions;
        } catch { /* not up yet */ }
      }
      const readyMs = Date.now() - t0;
      await child.stop('SIGTERM');
      if (status.length === 0) throw new Error('the restoring tracker did not get ready in 120 s');
      const slowest = status.reduce((a, p) => (p.restore_ms > a.restore_ms ? p : a));
      const out = child.output();
      const assigned = logAt(out, 'partitions assigned', t0);
      const restored = status.reduce((s, p) => s + p.restored_records, 0);
      console.log(`round ${round}${builds.length > 1 ? ` [${build.label}]` : ''}${prof ? ' (profiled)' : ''}: restore ${fmtInt(slowest.restore_ms)} ms (rebuild ${fmtInt(slowest.restore_rebuild_ms)} ms) ` +
        `for ${fmtInt(restored)} records (${fmtInt(restored / (slowest.restore_ms / 1000))}/s); ready ${fmtInt(readyMs)} ms after spawn, ` +
        `first assignment at ${assigned === null ? '?' : fmtInt(assigned)} ms; peak RSS ${fmtInt(peakRss)} MB`);
      if (prof) {
        const file = readdirSync(profDir).find((f) => !before.has(f) && f.endsWith('.cpuprofile'));
        if (!file) throw new Error('no profile written');
        const p = JSON.parse(readFileSync(path.join(profDir, file), 'utf8')) as Parameters<typeof topSelf>[0];
        console.log(`profile bench/results/${file}; top self time:`);
        for (const f of topSelf(p, 20)) console.log(`  ${(f.share * 100).toFixed(1).padStart(5)} %  ${f.name}`);
      }
    }
  } finally {
    await cleanup(admin, [run.prefix, run.appId]).catch(() => 0);
    await admin.disconnect();
    for (const d of dirs) removeDir(d);
  }
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
