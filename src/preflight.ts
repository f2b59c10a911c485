// Checks, before a command builds any Kafka client, that what the configuration names can be
// reached at all: some broker of KAFKA_BROKERS accepts a TCP connection, and the schema registry of
// SCHEMA_REGISTRY_URL answers. kafkajs would retry an unreachable broker for 10 s or more, logging
// each attempt; these checks give up within about two seconds, log nothing, and say which setting
// and which address (SPEC section 6: one clear line, exit 1).
import net from 'node:net';
import type { Config } from './config';

/** Something the configuration names cannot be reached, said in one line. */
export class UnreachableError extends Error {
  constructor(message: string) { super(message); this.name = 'UnreachableError'; }
}

export const PREFLIGHT_TIMEOUT_MS = 2000;

function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}

/** Resolves null when a TCP connection to `addr` opens within `timeoutMs`, else the reason. */
function tcpProbe(addr: string, timeoutMs: number): Promise<string | null> {
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (why: string | null) => { clearTimeout(timer); socket.removeAllListeners(); socket.on('error', () => undefined); socket.destroy(); resolve(why); };
    const timer = setTimeout(() => done(`no connection within ${timeoutMs / 1000}s`), timeoutMs);
    socket.once('connect', () => done(null));
    socket.once('error', (e: NodeJS.ErrnoException) => {
      const code = e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' ? `host ${host} not found (${e.code})` : e.message;
      done(code);
    });
  });
}

/**
 * Throws UnreachableError naming KAFKA_BROKERS and every address tried when none of the brokers
 * accepts a TCP connection. A reachable broker that then refuses TLS or SASL is left to kafkajs and
 * describeKafkaError, which say what the security settings are.
 */
export async function checkBrokers(cfg: Pick<Config, 'kafkaBrokers'>, timeoutMs = PREFLIGHT_TIMEOUT_MS): Promise<void> {
  const results = await Promise.all(cfg.kafkaBrokers.map(async (b) => ({ b, why: await tcpProbe(b, timeoutMs) })));
  if (results.some((r) => r.why === null)) return;
  const reasons = results.length === 1 ? results[0]!.why : results.map((r) => `${r.b}: ${r.why}`).join('; ');
  throw new UnreachableError(`cannot reach Kafka at ${cfg.kafkaBrokers.join(',')} (KAFKA_BROKERS): ${reasons}`);
}

/** The registry URL without credentials, for messages. */
export function describeRegistryUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/+$/, '');
  } catch {
    return '(unparseable SCHEMA_REGISTRY_URL)';
  }
}

/**
 * Throws UnreachableError naming SCHEMA_REGISTRY_URL when the registry does not answer
 * `GET /subjects` (the Confluent-compatible API) within `timeoutMs`. No registry configured: nothing
 * to check.
 */
export async function checkRegistry(cfg: Pick<Config, 'schemaRegistryUrl'>, timeoutMs = PREFLIGHT_TIMEOUT_MS): Promise<void> {
  if (cfg.schemaRegistryUrl === null) return;
  const u = new URL(cfg.schemaRegistryUrl);
  const headers: Record<string, string> = { accept: 'application/vnd.schemaregistry.v1+json, application/json' };
  if (u.username !== '' || u.password !== '') {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  }
  const where = describeRegistryUrl(cfg.schemaRegistryUrl);
  u.username = '';
  u.password = '';
  let status: number;
  try {
    const res = await fetch(`${u.toString().replace(/\/+$/, '')}/subjects`, { headers, signal: AbortSignal.timeout(timeoutMs) });
    status = res.status;
    await res.arrayBuffer().catch(() => undefined);
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why = err.name === 'TimeoutError' || err.name === 'AbortError'
      ? `no answer within ${timeoutMs / 1000}s`
      : err.message === 'bad port' || err.cause?.message === 'bad port'
        ? `port ${u.port} is on the list of ports fetch refuses to connect to; use another port`
        : err.cause?.message ?? err.message;
    throw new UnreachableError(`cannot reach the schema registry at ${where} (SCHEMA_REGISTRY_URL): ${why}`);
  }
  if (status === 401 || status === 403) {
    throw new UnreachableError(`the schema registry at ${where} (SCHEMA_REGISTRY_URL) refused the request: HTTP ${status} (credentials go in the URL: https://user:password@host/...)`);
  }
  if (status < 200 || status >= 300) {
    throw new UnreachableError(`the schema registry at ${where} (SCHEMA_REGISTRY_URL) answered HTTP ${status} to GET /subjects: `
      + 'is it the Confluent-compatible API (for Apicurio: http://host:8081/apis/ccompat/v7)?');
  }
}

/** Both checks at once: what a command that uses Kafka (and the registry, when set) runs first. */
export async function preflight(cfg: Pick<Config, 'kafkaBrokers' | 'schemaRegistryUrl'>, what: { registry?: boolean } = {}): Promise<void> {
  const [kafka, registry] = await Promise.allSettled([checkBrokers(cfg), what.registry === false ? Promise.resolve() : checkRegistry(cfg)]);
  if (kafka.status === 'rejected') throw kafka.reason;
  if (registry.status === 'rejected') throw registry.reason;
}
