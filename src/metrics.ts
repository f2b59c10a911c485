// One prom-client registry for the process. Processors declare their metrics at module level
// against it; the HTTP server of each role exposes it on /metrics.
import { Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
let defaults = false;

export function enableProcessMetrics(): void {
  if (!defaults) {
    collectDefaultMetrics({ register: registry, prefix: 'chatstats_' });
    defaults = true;
  }
}
