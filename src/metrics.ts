// One prom-client registry for the process. Processors declare their metrics at module level
// against it; the HTTP server of each role exposes it on /metrics.
import { Registry, collectDefaultMetrics, type Counter } from 'prom-client';

export const registry = new Registry();
let defaults = false;

/**
 * prom-client's default process and Node.js metrics under their stock names (process_cpu_seconds_total,
 * nodejs_eventloop_lag_p99_seconds, ...), so stock Node.js dashboards and alerts work unchanged;
 * the `job` label of the scrape says which role they belong to.
 */
export function enableProcessMetrics(): void {
  if (!defaults) {
    collectDefaultMetrics({ register: registry });
    defaults = true;
  }
}

/**
 * Creates the series of a labelled counter at 0 for each label set, so that they exist from the
 * start (after a restart too) and rate(), increase() and alerts see 0 rather than no data.
 */
export function zeroed<T extends string>(counter: Counter<T>, labelSets: Partial<Record<T, string>>[]): Counter<T> {
  for (const labels of labelSets) counter.inc(labels, 0);
  return counter;
}

/** Every combination of the given label values, for zeroed(). */
export function combinations<T extends string>(values: Record<T, readonly string[]>): Partial<Record<T, string>>[] {
  let out: Partial<Record<T, string>>[] = [{}];
  for (const [k, vs] of Object.entries(values) as [T, readonly string[]][]) {
    out = out.flatMap((o) => vs.map((v) => ({ ...o, [k]: v })));
  }
  return out;
}
