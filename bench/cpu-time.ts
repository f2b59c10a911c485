// CPU time of a process from Linux's scheduler statistics (/proc/<pid>/task/<tid>/schedstat: ns
// on a CPU, per thread), for benchmarks that need to say where a moment's CPU went: the main
// thread of a Node process is the serial floor of its latency, its other threads (GC, libuv's
// pool where RocksDB works) and other processes (the broker) share the machine's cores with it.
import { readdirSync, readFileSync } from 'node:fs';

export interface CpuReading { allMs: number; mainMs: number }

/** CPU time of every thread of `pid` and of its main thread (ms); null when it cannot be read (not Linux, process gone). */
export function cpuTime(pid: number): CpuReading | null {
  try {
    let all = 0;
    let main = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      let ns: number;
      try { ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]); } catch { continue; } // the thread ended
      all += ns;
      if (tid === String(pid)) main = ns;
    }
    return { allMs: all / 1e6, mainMs: main / 1e6 };
  } catch {
    return null;
  }
}

/** What `pid` used between two readings (null if either is missing). */
export function cpuBetween(a: CpuReading | null, b: CpuReading | null): CpuReading | null {
  return a === null || b === null ? null : { allMs: b.allMs - a.allMs, mainMs: b.mainMs - a.mainMs };
}
