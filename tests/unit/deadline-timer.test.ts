// The seal timer's arithmetic (src/runtime/deadline-timer.ts), without Kafka or real time:
// arming and re-arming, coalescing, continuation after a bounded punctuation, and clock jumps
// backwards and forwards (a fake scheduler whose wall clock can jump while its monotonic clock,
// which setTimeout runs on, does not).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DeadlineTimer, onFire, planFire, type Scheduler, type TimerPolicy } from '../../src/runtime/deadline-timer';

const T = 1_800_000_000_000; // a wall-clock instant
const policy: TimerPolicy = { mode: 'deadline', coalesceMs: 10, maxDelayMs: 1000 };
const tick: TimerPolicy = { ...policy, mode: 'tick' };

describe('planFire', () => {
  test('no timer when nothing is pending or the task is behind', () => {
    assert.equal(planFire({ due: null, now: T, caughtUp: true, last: null }, policy), null);
    assert.equal(planFire({ due: T + 500, now: T, caughtUp: false, last: null }, policy), null);
  });

  test('arms for the due time', () => {
    assert.deepEqual(planFire({ due: T + 500, now: T, caughtUp: true, last: null }, policy), { at: T + 500, wakeAt: T + 500, delayMs: 500 });
  });

  test('fires at once when the due time has passed', () => {
    assert.deepEqual(planFire({ due: T - 3000, now: T, caughtUp: true, last: null }, policy), { at: T - 3000, wakeAt: T - 3000, delayMs: 0 });
  });

  test('never sleeps longer than maxDelay: a far due time is re-checked against the wall clock', () => {
    assert.deepEqual(planFire({ due: T + 3_600_000, now: T, caughtUp: true, last: null }, policy), { at: T + 3_600_000, wakeAt: T + 3_600_000, delayMs: 1000 });
  });

  test('coalesces: a due time within the window after the last punctuation waits for the window end', () => {
    const last = { at: T, sealed: true };
    assert.deepEqual(planFire({ due: T + 3, now: T + 1, caughtUp: true, last }, policy), { at: T + 10, wakeAt: T + 10, delayMs: 9 });
    assert.deepEqual(planFire({ due: T + 10, now: T + 1, caughtUp: true, last }, policy), { at: T + 10, wakeAt: T + 10, delayMs: 9 });
    // Outside the window: at the due time itself.
    assert.deepEqual(planFire({ due: T + 25, now: T + 1, caughtUp: true, last }, policy), { at: T + 25, wakeAt: T + 25, delayMs: 24 });
  });

  test('continues at once after a bounded punctuation that left work due and took longer than the window', () => {
    // The last punctuation (a chunk of a burst) started at T, sealed, and ended at T + 80.
    assert.deepEqual(planFire({ due: T - 5, now: T + 80, caughtUp: true, last: { at: T, sealed: true } }, policy), { at: T + 10, wakeAt: T + 10, delayMs: 0 });
  });

  test('backs off to the tick pace when a punctuation at or after the due time sealed nothing', () => {
    // The processor said T - 5 but could not seal then (a condition its due time misses): no loop.
    assert.deepEqual(planFire({ due: T - 5, now: T + 2, caughtUp: true, last: { at: T, sealed: false } }, policy), { at: T + 1000, wakeAt: T + 1000, delayMs: 998 });
    // A later due time (the state changed since) is taken as it is.
    assert.deepEqual(planFire({ due: T + 50, now: T + 2, caughtUp: true, last: { at: T, sealed: false } }, policy), { at: T + 50, wakeAt: T + 50, delayMs: 48 });
  });

  test('clock jumped backwards past the last punctuation: it is forgotten, the due time alone counts', () => {
    const last = { at: T, sealed: true };
    const now = T - 3_600_000;
    assert.deepEqual(planFire({ due: now + 200, now, caughtUp: true, last }, policy), { at: now + 200, wakeAt: now + 200, delayMs: 200 });
  });

  test('a lead wakes the timer ahead of its moment, which does not move; coalescing still spaces the moments', () => {
    assert.deepEqual(planFire({ due: T + 500, now: T, caughtUp: true, last: null, leadMs: 120 }, policy), { at: T + 500, wakeAt: T + 380, delayMs: 380 });
    // A lead longer than the wait: wake at once, the moment is still the due time.
    assert.deepEqual(planFire({ due: T + 50, now: T, caughtUp: true, last: null, leadMs: 120 }, policy), { at: T + 50, wakeAt: T - 70, delayMs: 0 });
    const last = { at: T, sealed: true };
    assert.deepEqual(planFire({ due: T + 3, now: T + 1, caughtUp: true, last, leadMs: 4 }, policy), { at: T + 10, wakeAt: T + 6, delayMs: 5 });
    // Far ahead: the sleep is bounded by maxDelayMs, as without a lead.
    assert.deepEqual(planFire({ due: T + 3_600_000, now: T, caughtUp: true, last: null, leadMs: 200 }, policy), { at: T + 3_600_000, wakeAt: T + 3_599_800, delayMs: 1000 });
    // The lead as a function of the moment (the task sizes it per moment).
    const leadOf = (at: number) => (at === T + 500 ? 40 : 250);
    assert.deepEqual(planFire({ due: T + 500, now: T, caughtUp: true, last: null, leadMs: leadOf }, policy), { at: T + 500, wakeAt: T + 460, delayMs: 460 });
    assert.deepEqual(planFire({ due: T + 900, now: T, caughtUp: true, last: null, leadMs: leadOf }, policy), { at: T + 900, wakeAt: T + 650, delayMs: 650 });
    // A negative lead counts as none.
    assert.deepEqual(planFire({ due: T + 500, now: T, caughtUp: true, last: null, leadMs: -5 }, policy), { at: T + 500, wakeAt: T + 500, delayMs: 500 });
  });

  test('tick mode arms only to continue a punctuation that stopped with work due', () => {
    assert.equal(planFire({ due: T + 500, now: T, caughtUp: true, last: null }, tick), null);
    assert.equal(planFire({ due: T - 500, now: T, caughtUp: true, last: null }, tick), null);
    assert.equal(planFire({ due: T + 500, now: T + 1, caughtUp: true, last: { at: T, sealed: true } }, tick), null);
    assert.equal(planFire({ due: T - 1, now: T + 1, caughtUp: true, last: { at: T, sealed: false } }, tick), null);
    assert.deepEqual(planFire({ due: T - 1, now: T + 60, caughtUp: true, last: { at: T, sealed: true } }, tick), { at: T + 10, wakeAt: T + 10, delayMs: 0 });
  });
});

describe('onFire', () => {
  test('punctuates at or after the planned moment, sleeps again before it', () => {
    assert.equal(onFire({ at: T, wakeAt: T, delayMs: 0 }, T), 'punctuate');
    assert.equal(onFire({ at: T, wakeAt: T, delayMs: 0 }, T + 7), 'punctuate');
    assert.equal(onFire({ at: T, wakeAt: T, delayMs: 0 }, T - 1), 'rearm');
    // A plan with a lead wakes at its wakeAt, before its moment.
    assert.equal(onFire({ at: T, wakeAt: T - 40, delayMs: 0 }, T - 40), 'punctuate');
    assert.equal(onFire({ at: T, wakeAt: T - 40, delayMs: 0 }, T - 41), 'rearm');
  });
});

/** setTimeout on a monotonic clock, Date.now on a wall clock that can jump. */
class FakeScheduler implements Scheduler {
  mono = 0;
  wall = T;
  sets = 0;
  private nextId = 1;
  private timers = new Map<number, { due: number; fn: () => void }>();
  now(): number { return this.wall; }
  set(fn: () => void, delayMs: number): unknown {
    this.sets++;
    const id = this.nextId++;
    this.timers.set(id, { due: this.mono + delayMs, fn });
    return id;
  }
  clear(handle: unknown): void { this.timers.delete(handle as number); }
  get pending(): number { return this.timers.size; }
  /** Lets `ms` of monotonic time pass (the wall clock with it), running timers as they come due. */
  advance(ms: number): void {
    const end = this.mono + ms;
    for (;;) {
      let next: [number, { due: number; fn: () => void }] | null = null;
      for (const e of this.timers) if (e[1].due <= end && (next === null || e[1].due < next[1].due)) next = e;
      if (next === null) break;
      this.wall += next[1].due - this.mono;
      this.mono = next[1].due;
      this.timers.delete(next[0]);
      next[1].fn();
    }
    this.wall += end - this.mono;
    this.mono = end;
  }
}

function harness(p: TimerPolicy = policy) {
  const s = new FakeScheduler();
  const fired: number[] = [];
  const moments: number[] = [];
  const timer = new DeadlineTimer(p, (at) => { fired.push(s.now()); moments.push(at); }, s);
  return { s, fired, moments, timer };
}

describe('DeadlineTimer', () => {
  test('with a lead: wakes that much before the due time and hands over the moment itself', () => {
    const { s, fired, moments, timer } = harness({ ...policy, mode: 'prepare' });
    timer.update({ due: T + 300, caughtUp: true, last: null, leadMs: 80 });
    assert.equal(timer.armedAt, T + 300);
    s.advance(219);
    assert.deepEqual(fired, []);
    s.advance(1);
    assert.deepEqual(fired, [T + 220]);
    assert.deepEqual(moments, [T + 300]);
    // The prepared punctuation committed at its moment; the next due time is far: armed with the new lead.
    timer.update({ due: T + 900, caughtUp: true, last: { at: T + 300, sealed: true }, leadMs: 30 });
    s.advance(80);
    timer.done();
    s.advance(569);
    assert.equal(fired.length, 1);
    s.advance(1);
    assert.deepEqual(fired, [T + 220, T + 870]);
    assert.deepEqual(moments, [T + 300, T + 900]);
  });

  test('a changed lead re-arms for the same moment', () => {
    const { s, fired, timer } = harness({ ...policy, mode: 'prepare' });
    timer.update({ due: T + 300, caughtUp: true, last: null, leadMs: 10 });
    timer.update({ due: T + 300, caughtUp: true, last: null, leadMs: 100 });
    s.advance(200);
    assert.deepEqual(fired, [T + 200]);
  });

  test('fires once at the due time; while the punctuation runs, updates do not arm a second one', () => {
    const { s, fired, timer } = harness();
    timer.update({ due: T + 300, caughtUp: true, last: null });
    assert.equal(timer.armedAt, T + 300);
    s.advance(299);
    assert.deepEqual(fired, []);
    s.advance(1);
    assert.deepEqual(fired, [T + 300]);
    timer.update({ due: T + 301, caughtUp: true, last: null }); // a batch committed meanwhile
    assert.equal(timer.armedAt, null);
    s.advance(100);
    assert.equal(fired.length, 1);
    // The punctuation at T + 300 sealed; the next deadline is 5 ms later: coalesced to T + 310.
    timer.update({ due: T + 305, caughtUp: true, last: { at: T + 300, sealed: true } });
    timer.done();
    assert.equal(timer.armedAt, T + 310);
    s.advance(0);
    assert.deepEqual(fired, [T + 300, T + 400], 'the window had passed when done() came: at once');
  });

  test('re-arms for an earlier due time, keeps the timer for the same one', () => {
    const { s, fired, timer } = harness();
    timer.update({ due: T + 800, caughtUp: true, last: null });
    const sets = s.sets;
    timer.update({ due: T + 800, caughtUp: true, last: null });
    assert.equal(s.sets, sets, 'same moment: the timer is kept');
    timer.update({ due: T + 200, caughtUp: true, last: null });
    assert.equal(timer.armedAt, T + 200);
    assert.equal(s.pending, 1, 'one timer per task');
    s.advance(200);
    assert.deepEqual(fired, [T + 200]);
  });

  test('disarms when nothing is pending or the task falls behind', () => {
    const { s, fired, timer } = harness();
    timer.update({ due: T + 100, caughtUp: true, last: null });
    timer.update({ due: T + 100, caughtUp: false, last: null });
    assert.equal(timer.armedAt, null);
    timer.update({ due: T + 100, caughtUp: true, last: null });
    timer.update({ due: null, caughtUp: true, last: null });
    assert.equal(s.pending, 0);
    s.advance(5000);
    assert.deepEqual(fired, []);
  });

  test('coalesces deadlines that fall within the window into one punctuation', () => {
    const { s, fired, timer } = harness();
    // Deadlines at +100, +103, +107, +112: the first fires at +100; +103 and +107 wait until +110.
    timer.update({ due: T + 100, caughtUp: true, last: null });
    s.advance(100);
    timer.update({ due: T + 103, caughtUp: true, last: { at: T + 100, sealed: true } });
    s.advance(2); // the punctuation's commit took 2 ms
    timer.done();
    s.advance(20);
    assert.deepEqual(fired, [T + 100, T + 110]);
  });

  test('clock jumps backwards: the timer wakes, finds the wall clock before its moment, and sleeps again', () => {
    const { s, fired, timer } = harness();
    timer.update({ due: T + 500, caughtUp: true, last: null });
    s.wall -= 3_600_000; // NTP steps the clock back an hour
    s.advance(500);
    assert.deepEqual(fired, [], 'no punctuation before the wall-clock deadline');
    assert.equal(timer.armedAt, T + 500, 'still armed for the same wall-clock moment');
    s.advance(3_600_000 - 1);
    assert.deepEqual(fired, []);
    s.advance(1000);
    assert.equal(fired.length, 1);
    assert.ok(fired[0]! >= T + 500 && fired[0]! < T + 500 + 1000, `fired at ${fired[0]! - T}`);
  });

  test('clock jumps forwards: a far deadline that is now past fires within maxDelay', () => {
    const { s, fired, timer } = harness();
    timer.update({ due: T + 3_600_000, caughtUp: true, last: null });
    s.advance(100);
    s.wall += 7_200_000; // the clock steps two hours ahead
    s.advance(900); // the timer's bounded sleep ends
    assert.equal(fired.length, 1);
    assert.equal(s.mono, 1000);
  });

  test('tick mode: no timer for future deadlines, only to continue a bounded punctuation', () => {
    const { s, fired, timer } = harness(tick);
    timer.update({ due: T + 100, caughtUp: true, last: null });
    assert.equal(timer.armedAt, null);
    s.advance(200);
    timer.update({ due: T + 100, caughtUp: true, last: { at: T + 200, sealed: true } });
    s.advance(10);
    assert.deepEqual(fired, [T + 210]);
  });

  test('a punctuation that finds the task behind leaves no timer: no loop of end-offset requests', () => {
    const { s, fired, timer } = harness();
    timer.update({ due: T + 50, caughtUp: true, last: null });
    s.advance(50);
    assert.deepEqual(fired, [T + 50]);
    // The task read the partition's end, found records it has not read yet, and says so before done().
    timer.update({ due: T + 50, caughtUp: false, last: null });
    timer.done();
    assert.equal(timer.armedAt, null);
    s.advance(5000);
    assert.equal(fired.length, 1);
  });

  test('cancel stops it for good', () => {
    const { s, fired, timer } = harness();
    timer.update({ due: T + 10, caughtUp: true, last: null });
    timer.cancel();
    timer.update({ due: T + 20, caughtUp: true, last: null });
    s.advance(1000);
    assert.deepEqual(fired, []);
    assert.equal(s.pending, 0);
  });
});
