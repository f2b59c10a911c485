// The demo's done condition (src/cli/demo-wait.ts) against a simulated system in which the tracker's
// answer about its open conversations waits for its turn, as a status query in the task's mailbox
// does: asking it lets the in-flight work (the last batches and the wall-clock seals) commit first.
// A loop that reads conversation.sealed before asking would see an early, partial list and then
// an answer describing the finished state: done too early, with wrong figures (issue 14, item 9:
// "89, 81, 80 and 9 conversations" on a warm machine). Asking first, reading after, cannot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitForDemo, type DemoProbes } from '../../src/cli/demo-wait';

interface World {
  /** Conversations sealed and committed so far. */
  sealed: number;
  committed: number;
  open: number;
}

const TOTAL = 89;
const END = 14_018;

/**
 * A system in which each probe call is one step of time. The tracker finishes everything it has in
 * flight when its status is asked (the mailbox); the downstream database already holds every
 * conversation (a warm database from an earlier run: conversation ids are deterministic).
 */
function system(steps: World[]): { probes: DemoProbes<number>; calls: string[] } {
  let i = 0;
  const now = () => steps[Math.min(i, steps.length - 1)]!;
  const advance = () => { i++; };
  const calls: string[] = [];
  const probes: DemoProbes<number> = {
    inputBehind: async () => { calls.push('input'); const w = now(); advance(); return { behind: w.committed < END ? 1 : 0, committed: w.committed, end: END }; },
    openConversations: async () => {
      calls.push('open');
      // Waits for the task's turn: everything in flight commits before the answer.
      i = steps.length - 1;
      return now().open;
    },
    sealed: async () => { calls.push('sealed'); const w = now(); advance(); return Array.from({ length: w.sealed }, (_, k) => k); },
    late: async () => { calls.push('late'); advance(); return 949; },
    downstream: async (c) => { calls.push('downstream'); return { loaded: c.length, analysed: c.length, busy: 0 }; },
  };
  return { probes, calls };
}

test('done only once every sealed conversation is visible, on a warm database, however the steps fall', async () => {
  // Every interleaving of "the tracker is mid-way" with the probe calls.
  for (let start = 0; start < 6; start++) {
    const steps: World[] = [
      { sealed: 0, committed: 0, open: 12 },
      { sealed: 9, committed: 8000, open: 40 },
      { sealed: 9, committed: END, open: 12 },
      { sealed: 77, committed: END, open: 12 },
      { sealed: TOTAL, committed: END, open: 0 },
    ].slice(Math.min(start, 4));
    const { probes, calls } = system(steps);
    const r = await waitForDemo(probes, { timeoutMs: 60_000, sleep: async () => undefined });
    assert.equal(r.sealed.length, TOTAL, `from step ${start}: ${calls.join(' ')}`);
    assert.equal(r.late, 949);
    // The order: the tracker's committed state first, then what was sealed.
    const firstSealed = calls.indexOf('sealed');
    assert.ok(calls.indexOf('input') < firstSealed);
  }
});

test('not done while the committed input offsets are behind, even if nothing is open', async () => {
  let polls = 0;
  const probes: DemoProbes<number> = {
    inputBehind: async () => ({ behind: polls < 3 ? 2 : 0, committed: polls < 3 ? 100 : 200, end: 200 }),
    openConversations: async () => 0,
    sealed: async () => { polls++; return polls < 3 ? [1] : [1, 2, 3]; },
    late: async () => 0,
    downstream: async (c) => ({ loaded: c.length, analysed: c.length, busy: 0 }),
  };
  const progress: number[] = [];
  const r = await waitForDemo(probes, { timeoutMs: 60_000, sleep: async () => undefined, onProgress: (p) => progress.push(p.sealed) });
  assert.equal(r.sealed.length, 3);
  assert.deepEqual(progress, [1, 1, 3, 3]);
});

test('not done while conversations are not loaded or a pass is in progress; gives up after the timeout', async () => {
  let t = 0;
  const probes: DemoProbes<number> = {
    inputBehind: async () => ({ behind: 0, committed: 10, end: 10 }),
    openConversations: async () => 0,
    sealed: async () => [1, 2],
    late: async () => 0,
    downstream: async () => ({ loaded: 2, analysed: 1, busy: 1 }),
  };
  await assert.rejects(waitForDemo(probes, { timeoutMs: 5000, now: () => t, sleep: async (ms) => { t += ms; } }),
    /demo did not finish within 5s \(input committed 10\/10, open 0, sealed 2, late 0, loaded 2, analysed 1, passes in progress 1\)/);
});
