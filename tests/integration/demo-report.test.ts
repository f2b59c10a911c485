// `chatstats demo` as a newcomer runs it: every role, the bundled IRC logs, a fresh database. Its
// summary must state what data/irc/README.md does (tests/support/irc-expected.ts reads the figures
// from there), and its HTML report must render in headless Chromium (Debian's `chromium` package)
// with a timeline per chat, a bar per conversation and the headline numbers. A screenshot is kept
// next to the report for a person to look at. Then the demo runs again, several times in a row, on
// the warm broker and the same database, alternating JSON and Avro: the same figures every time
// (issue 14, item 9: it once printed 89, 81, 80 and 9 conversations, done too early).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { isolatedEnv, testKafka, ROOT, REGISTRY_URL } from '../support/harness';
import { IRC_EXPECTED as IRC, fmt } from '../support/irc-expected';

const dir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-demo-report-'));
const baseDb = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/chatstats');
const dbName = `chatstats_demo_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
const dbUrl = new URL(baseDb);
dbUrl.pathname = `/${dbName}`;
const env = isolatedEnv('demo', { SCHEMA_REGISTRY_URL: REGISTRY_URL, DATABASE_URL: dbUrl.toString() });

after(async () => {
  await rm(env.STATE_DIR!, { recursive: true, force: true }).catch(() => undefined);
  const admin = testKafka().admin();
  await admin.connect().then(async () => {
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(env.TOPIC_PREFIX!));
    if (mine.length) await admin.deleteTopics({ topics: mine });
  }).catch(() => undefined).finally(() => admin.disconnect());
  const adminUrl = new URL(baseDb);
  adminUrl.pathname = '/postgres';
  const pg = new Client({ connectionString: adminUrl.toString(), connectionTimeoutMillis: 5000 });
  await pg.connect().then(() => pg.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`)).catch(() => undefined).finally(() => pg.end());
  if (!process.env.KEEP_DEMO_REPORT) await rm(dir, { recursive: true, force: true });
});

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env: opts.env ?? process.env, timeout: opts.timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), ms: Date.now() - started });
    });
  });
}

/** Chromium's path; installs Debian's package when it is missing and apt-get can. */
function findChromium(): { path: string | null; note: string } {
  const candidates = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter(Boolean) as string[];
  const found = () => candidates.find((c) => existsSync(c)) ?? null;
  let p = found();
  if (p) return { path: p, note: 'found' };
  const apt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' });
  if (apt.status !== 0) return { path: null, note: 'no chromium and no apt-get' };
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  p = found();
  return p ? { path: p, note: 'installed with apt-get' } : { path: null, note: `apt-get install chromium failed (${r.status}): ${(r.stderr || '').trim().split('\n').slice(-2).join(' ')}` };
}

const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

const count = (html: string, re: RegExp) => (html.match(re) ?? []).length;
/** The demo's outcome line with the figures data/irc/README.md states. */
const outcomeLine = () => new RegExp(`^${fmt(IRC.conversations)} conversations in ${IRC.chats} chats hold ${fmt(IRC.messages)} messages; ${fmt(IRC.late)} messages arrived late\\.$`, 'm');
const kpi = (html: string, id: string) => new RegExp(`id="${id}">\\s*([\\d,.]+)`).exec(html)?.[1];

test('chatstats demo prints its summary and writes a report that renders in headless Chromium', { timeout: 900_000 }, async (t) => {
  const chromium = findChromium();
  if (!chromium.path) {
    t.skip(`Chromium is not installed and could not be installed (${chromium.note}); on Debian: apt-get install chromium`);
    return;
  }

  const db = await run(process.execPath, [path.join(ROOT, 'infra/ensure-db.js'), dbUrl.toString()], { timeoutMs: 30_000 });
  assert.equal(db.code, 0, `creating ${dbName}: ${db.stderr}`);

  const report = path.join(dir, 'demo.html');
  const demo = await run(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'demo', '--report', report, '--timeout', '300'],
    { env: { ...process.env, ...env }, timeoutMs: 360_000 });
  assert.equal(demo.code, 0, `chatstats demo exited with ${demo.code}\n--- stdout\n${demo.stdout}\n--- stderr\n${demo.stderr.slice(-4000)}`);
  const out = demo.stdout;
  // On a mismatch: the summary, and the demo's progress lines (how the counts evolved).
  const expectOut = (re: RegExp, what: string) => assert.match(out, re, `${what}\n--- stdout (head)\n${out.split('\n').slice(0, 20).join('\n')}\n--- stderr (tail)\n${demo.stderr.slice(-3000)}`);
  expectOut(new RegExp(`== chatstats demo: ${fmt(IRC.input)} messages replayed in [\\d.]+s ==`), 'headline');
  expectOut(outcomeLine(), 'the outcome data/irc/README.md states');
  expectOut(new RegExp(`^GAP_TIMEOUT\\s+${IRC.reasons.GAP_TIMEOUT}$`, 'm'), 'one wall-clock seal per chat');
  expectOut(new RegExp(`^NEXT_MESSAGE\\s+${IRC.reasons.NEXT_MESSAGE}$`, 'm'), 'seals by the next message');
  expectOut(new RegExp(`^basic\\s+${IRC.conversations}\\s+0\\s+0\\s+100 %$`, 'm'), 'the basic pass covers every conversation');
  expectOut(/A few conversations:/, 'examples');
  expectOut(/Where to look next:[\s\S]*metrics:[\s\S]*SQL:/, 'where to look next');
  assert.ok(out.includes(`HTML report: ${report}`), 'names the report');
  assert.match(demo.stderr, new RegExp(`produced ${IRC.input} messages \\(0 invalid\\)`));
  const html = readFileSync(report, 'utf8');
  assert.ok(!/<script\b/i.test(html) && !/\b(src|href)="https?:/i.test(html), 'self-contained: no scripts, no external assets');

  // Rendered by Chromium: the DOM after parsing, as a browser sees it.
  const profile = mkdtempSync(path.join(dir, 'profile-'));
  const dump = await run(chromium.path, [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, '--dump-dom', `file://${report}`], { timeoutMs: 120_000 });
  assert.equal(dump.code, 0, `chromium --dump-dom: ${dump.stderr.slice(-2000)}`);
  const dom = dump.stdout;
  assert.match(dom, /^\s*(<!DOCTYPE html>\s*)?<html\b[^>]*>[\s\S]*<\/html>\s*$/i, "the DOM of a whole page");
  assert.equal(count(dom, /<section class="chat"/g), IRC.chats, 'one timeline per chat');
  assert.equal(count(dom, /<rect class="conv"/g), IRC.conversations, 'one bar per conversation');
  const ids = [...dom.matchAll(/<rect class="conv" data-id="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, IRC.conversations, 'every conversation once');
  for (const m of dom.matchAll(/<rect class="conv"[^>]*\bx="([\d.]+)"[^>]*\bwidth="([\d.]+)"/g)) {
    assert.ok(Number(m[1]) >= 0 && Number(m[1]) + Number(m[2]) <= 900 + 3 + 0.1, `bar inside its timeline: x=${m[1]} width=${m[2]}`);
  }
  assert.equal(count(dom, /<rect class="conv"[^>]*fill="#3b82f6"/g), IRC.reasons.NEXT_MESSAGE, 'NEXT_MESSAGE bars');
  assert.equal(count(dom, /<rect class="conv"[^>]*fill="#10b981"/g), IRC.reasons.GAP_TIMEOUT, 'GAP_TIMEOUT bars');
  assert.equal(kpi(dom, 'kpi-messages'), fmt(IRC.input));
  assert.equal(kpi(dom, 'kpi-conversations'), fmt(IRC.conversations));
  assert.equal(kpi(dom, 'kpi-late'), fmt(IRC.late));
  assert.ok(dom.includes(`>${fmt(IRC.messages)}<p>messages in conversations</p>`), 'messages in conversations');
  assert.equal(count(dom, /<table id="conversations">[\s\S]*?<\/table>/g), 1);
  assert.equal(count((/<table id="conversations">[\s\S]*?<\/table>/.exec(dom) ?? [''])[0], /<tr>/g), IRC.conversations + 1, 'a header and a row per conversation');
  assert.ok(new RegExp(`<table id="coverage">[\\s\\S]*<td>basic</td><td class="num">${IRC.conversations}</td>`).test(dom), 'basic coverage');

  // A screenshot, for a person to judge (kept with KEEP_DEMO_REPORT=1).
  const png = path.join(dir, 'demo.png');
  const shot = await run(chromium.path, [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, `--screenshot=${png}`, '--window-size=1200,2000', `file://${report}`], { timeoutMs: 120_000 });
  assert.equal(shot.code, 0, `chromium --screenshot: ${shot.stderr.slice(-2000)}`);
  const image = readFileSync(png);
  assert.equal(image.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'a PNG');
  assert.deepEqual([image.readUInt32BE(16), image.readUInt32BE(20)], [1200, 2000], 'the window size');
  assert.ok(statSync(png).size > 50_000, 'not a blank page');
  console.log(`[demo] chromium ${chromium.note} (${chromium.path}); demo ${(demo.ms / 1000).toFixed(1)} s into database ${dbName}; `
    + `dump-dom ${(dump.ms / 1000).toFixed(1)} s, screenshot ${(shot.ms / 1000).toFixed(1)} s (${png}, ${statSync(png).size} bytes)`);
});

test('the demo, run again and again on the warm broker and the same database, gives the same figures every time', { timeout: 900_000 }, async (t) => {
  // The database of the test above: the conversations are there already (their ids are the same
  // every run), so only the demo's own done condition can tell that this run has finished.
  const db = await run(process.execPath, [path.join(ROOT, 'infra/ensure-db.js'), dbUrl.toString()], { timeoutMs: 30_000 });
  assert.equal(db.code, 0, db.stderr);
  const formats = ['json', 'avro', 'json'];
  const seen: string[] = [];
  for (const [i, format] of formats.entries()) {
    const demo = await run(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'demo', '--report', path.join(dir, `again-${i}.html`), '--timeout', '300'],
      { env: { ...process.env, ...env, SCHEMA_REGISTRY_URL: format === 'avro' ? REGISTRY_URL : '' }, timeoutMs: 360_000 });
    assert.equal(demo.code, 0, `run ${i + 1} (${format}): exit ${demo.code}\n${demo.stderr.slice(-3000)}`);
    const line = /^\d[\d,]* conversations in .*$/m.exec(demo.stdout)?.[0] ?? '(no outcome line)';
    seen.push(`${format}: ${line} (${(demo.ms / 1000).toFixed(1)} s)`);
    assert.match(demo.stdout, outcomeLine(), `run ${i + 1} (${format}) on a warm machine: ${seen.join(' | ')}\n--- progress\n${demo.stderr.split('\n').filter((l) => l.startsWith('  ')).join('\n')}`);
    // The last progress line says what the done condition saw: all input committed, nothing open.
    assert.match(demo.stderr, new RegExp(`input committed ${IRC.input}/${IRC.input}, open 0, sealed ${IRC.conversations}, late ${IRC.late}`));
  }
  t.diagnostic(seen.join(' | '));
});
