// Each role's HTTP endpoint: /metrics (Prometheus), /healthz (alive), /readyz (connected and every
// partition restored), and /v1/* for the tracker's interactive queries (tracker-status).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { registry } from './metrics';

export type Route = (url: URL) => Promise<unknown>;

export interface HttpServerOptions {
  port: number;
  host?: string;
  ready: () => Promise<boolean>;
  routes?: Record<string, Route>;
  /** The /metrics body (default: the process registry's). */
  metrics?: () => Promise<string>;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    (async () => {
      if (url.pathname === '/metrics') return reply(200, await (opts.metrics ?? (() => registry.metrics()))(), registry.contentType);
      if (url.pathname === '/healthz') return reply(200, 'ok\n');
      if (url.pathname === '/readyz') return (await opts.ready()) ? reply(200, 'ready\n') : reply(503, 'not ready\n');
      const route = opts.routes?.[url.pathname];
      if (route) return reply(200, JSON.stringify(await route(url)), 'application/json');
      return reply(404, 'not found\n');
    })().catch((e) => reply(500, `${(e as Error).message}\n`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
