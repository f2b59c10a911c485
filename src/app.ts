// Runs one or more roles in this process, serves /metrics, /healthz and /readyz, and shuts down
// gracefully on SIGTERM or SIGINT: the consumers stop after their in-flight batch (each committed
// or aborted as a whole), tasks checkpoint their stores, the group is left. A second signal exits
// at once.
import os from 'node:os';
import { ConfigError, type Config } from './config';
import { logger } from './log';
import { Gauge } from 'prom-client';
import type { MetricsJson } from './roles/tracker-threads';
import { enableProcessMetrics, registry } from './metrics';
import { startHttpServer, type Route } from './http-server';
import { startTracker } from './roles/tracker';
import { setHeapGrowth } from './runtime/heap-growth';

export type Role = 'tracker' | 'etl' | 'analysis';
export const ALL_ROLES: Role[] = ['tracker', 'etl', 'analysis'];

// ETL and analysis are loaded on demand: a tracker-only process does not load pg and the analyzers.
interface Running { name: Role; ready(): Promise<boolean>; stop(): Promise<void>; routes?: Record<string, Route>; metrics?: () => Promise<MetricsJson[]> }

export interface App {
  port: number;
  ready(): Promise<boolean>;
  stop(): Promise<void>;
}

async function startRole(role: Role, cfg: Config, endpoint: string): Promise<Running> {
  switch (role) {
    case 'tracker': {
      if (cfg.streamThreads > 1) {
        const { startTrackerThreads } = await import('./roles/tracker-threads');
        const t = await startTrackerThreads(cfg, endpoint);
        return { name: role, ready: t.ready, stop: t.stop, routes: t.routes, metrics: t.metrics };
      }
      const t = await startTracker(cfg, endpoint);
      return { name: role, ready: t.ready, stop: t.stop, routes: t.routes };
    }
    case 'etl': {
      const { startEtl } = await import('./processors/etl');
      const r = await startEtl(cfg, {});
      return { name: role, ready: () => r.ready(), stop: () => r.stop() };
    }
    case 'analysis': {
      const { startAnalysis } = await import('./processors/analysis');
      const r = await startAnalysis(cfg, {});
      return { name: role, ready: () => r.ready(), stop: () => r.stop() };
    }
  }
}

/** The HTTP server could not listen: said in terms of METRICS_PORT and METRICS_HOST. */
function listenError(e: NodeJS.ErrnoException, cfg: Config): Error {
  const at = `${cfg.metricsHost}:${cfg.metricsPort}`;
  switch (e.code) {
    case 'EADDRINUSE':
      return new ConfigError('METRICS_PORT', `port ${cfg.metricsPort} is already in use on ${cfg.metricsHost} (another chatstats process?); `
        + 'set METRICS_PORT to a free port, or 0 for any free one');
    case 'EACCES':
      return new ConfigError('METRICS_PORT', `not allowed to listen on ${at} (ports below 1024 need privileges); set METRICS_PORT to a port above 1023`);
    case 'EADDRNOTAVAIL':
      return new ConfigError('METRICS_HOST', `${cfg.metricsHost} is not an address of this machine; use one of its addresses, 127.0.0.1, or 0.0.0.0 for all`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError('METRICS_HOST', `host ${cfg.metricsHost} not found (${e.code})`);
    default:
      return e;
  }
}

// chatstats_ready{role}: what /readyz answers, per role, read at each scrape (alerts on a role
// that stays not ready; `up` only says the process answers).
const readiness = new Map<object, Running[]>();
new Gauge({
  name: 'chatstats_ready', help: '1 when the role is ready (as /readyz: consumer group joined, tracker partitions restored, PostgreSQL reachable)',
  labelNames: ['role'], registers: [registry],
  async collect() {
    this.reset();
    for (const list of readiness.values()) {
      for (const r of list) this.set({ role: r.name }, (await r.ready().catch(() => false)) ? 1 : 0);
    }
  },
});

export async function startApp(cfg: Config, roles: Role[]): Promise<App> {
  const log = logger('LiveSync');
  enableProcessMetrics();
  setHeapGrowth(cfg.heapGrowthPercent);
  const running: Running[] = [];
  const routes: Record<string, Route> = {};
  let started = false;
  const http = await startHttpServer({
    port: cfg.metricsPort,
    host: cfg.metricsHost,
    ready: async () => started && (await Promise.all(running.map((r) => r.ready()))).every(Boolean),
    routes,
    // Stream threads (STREAM_THREADS) keep their own registries: their series are summed with ours.
    metrics: async () => {
      const threads = running.filter((r) => r.metrics !== undefined);
      if (threads.length === 0) return registry.metrics();
      const { aggregateMetrics } = await import('./roles/tracker-threads');
      const theirs = (await Promise.all(threads.map((r) => r.metrics!()))).flat();
      return aggregateMetrics(await registry.getMetricsAsJSON(), theirs);
    },
  }).catch((e: NodeJS.ErrnoException) => { throw listenError(e, cfg); });
  const wildcard = cfg.metricsHost === '0.0.0.0' || cfg.metricsHost === '::';
  const host = process.env.ADVERTISED_HOST ?? (!wildcard ? cfg.metricsHost : cfg.metricsPort === 0 ? '127.0.0.1' : os.hostname());
  const endpoint = `${host === os.hostname() ? '127.0.0.1' : host}:${http.port}`;
  try {
    for (const role of roles) {
      const r = await startRole(role, cfg, endpoint);
      running.push(r);
      Object.assign(routes, r.routes ?? {});
    }
  } catch (e) {
    for (const r of running.reverse()) await r.stop().catch(() => undefined);
    await http.close();
    throw e;
  }
  started = true;
  const key = {};
  readiness.set(key, running);
  log.info({ roles, metrics: `http://${endpoint}/metrics` }, 'started');
  return {
    port: http.port,
    ready: async () => started && (await Promise.all(running.map((r) => r.ready()))).every(Boolean),
    stop: async () => {
      // The roles are independent (they meet only through Kafka topics): stopping them at once
      // bounds shutdown by the slowest, not the sum.
      readiness.delete(key);
      await Promise.all(running.map((r) => r.stop().catch((err) => log.error({ err, role: r.name }, 'stop failed'))));
      await http.close();
      log.info('stopped');
    },
  };
}

/** Runs until SIGTERM/SIGINT, then stops gracefully; a second signal exits at once. */
export async function runUntilSignalled(app: App): Promise<void> {
  const log = logger('LiveSync');
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      log.info({ signal: sig }, 'shutting down');
      app.stop().then(resolve, (err) => { log.error({ err }, 'shutdown failed'); process.exitCode = 1; resolve(); });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
