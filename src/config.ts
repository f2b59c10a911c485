// Configuration from the environment (SPEC section 5), validated once at start. A wrong value
// throws ConfigError naming the variable, so a misconfigured process fails before it touches Kafka.

export class ConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

export type SaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

export interface Config {
  kafkaBrokers: string[];
  schemaRegistryUrl: string | null;
  databaseUrl: string;
  appId: string;
  topicPrefix: string;
  topicPartitions: number;
  /** Replicas of every topic this project creates; null: the broker's default.replication.factor. */
  topicReplicationFactor: number | null;
  /** min.insync.replicas of every topic this project creates; null: the broker's default. */
  topicMinInsyncReplicas: number | null;
  stateDir: string;
  gapMs: number;
  gapByTypeMs: Record<string, number>;
  /** How chats of a type are split: by time gaps (default) or into threads (SPEC section 2a). */
  modeByType: Record<string, ConversationMode>;
  graceMs: number;
  /** Rule 2 waits until no message joined a conversation for min(settle, gap + grace) of processing time. */
  settleMs: number;
  maxMessages: number;
  maxBytes: number;
  maxFutureSkewMs: number;
  punctuateIntervalMs: number;
  /** `deadline`: each task punctuates at its next deadline; `tick`: at the fixed tick only (the old behaviour). */
  sealTimer: 'deadline' | 'tick' | 'prepare';
  /** SEAL_TIMER=prepare: the bounds of how far ahead of a deadline its punctuation is done. */
  sealLeadMinMs: number;
  sealLeadMaxMs: number;
  /** Most chats sealed by wall clock in one punctuation, i.e. one transaction (0: no bound). */
  punctuateMaxSeals: number;
  /** Bytes fetched per partition per request: one fetch is one transaction of the tracker. */
  fetchMaxBytesPerPartition: number;
  /** Bytes fetched per request across all partitions: the input a tracker process holds decoded at once. */
  fetchMaxBytes: number;
  /**
   * Native memory of the process's state stores (RocksDB memtables and block caches), split
   * evenly across the stores it may open (one per input partition).
   */
  stateMemoryBytes: number;
  /** STATE_CACHE: the tracker's cache of chat states (estimated heap bytes), split across a process's tasks. */
  stateCacheBytes: number;
  /** HEAP_GROWTH_PERCENT: the JS heap's growth between full collections (src/runtime/heap-growth.ts); 0: V8's own. */
  heapGrowthPercent: number;
  /**
   * STREAM_THREADS: the tracker's stream threads in this process (Kafka Streams' num.stream.threads),
   * each a worker thread with its own consumer in the group, its tasks and their stores; 1: the
   * tracker runs on the main thread.
   */
  streamThreads: number;
  metricsPort: number;
  /** The address the HTTP server (metrics, health, status) listens on; 0.0.0.0 is every IPv4 interface. */
  metricsHost: string;
  kafkaSsl: boolean;
  kafkaSslCaFile: string | null;
  kafkaSaslMechanism: SaslMechanism | null;
  kafkaSaslUsername: string | null;
  kafkaSaslPassword: string | null;
  logLevel: string;
  llmBaseUrl: string | null;
  llmApiKey: string | null;
  llmModel: string | null;
  passesFile: string | null;
}

type Env = Record<string, string | undefined>;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `90m`, `2s`, `500ms`, `1h30m`, or a bare number of milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^\d+$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new Error(`not a duration: "${text}" (use e.g. 90m, 2s, 500ms)`);
    total += Number(m[1]) * UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (s.length === 0) throw new Error('empty duration');
  return Math.round(total);
}

const BYTE_UNITS: Record<string, number> = {
  b: 1, kb: 1000, kib: 1024, mb: 1_000_000, mib: 1_048_576, gb: 1_000_000_000, gib: 1_073_741_824,
};

/** Parses `900KB`, `1MB`, `256MiB`, `1GiB`, `512` (bytes). */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(text);
  if (!m) throw new Error(`not a size: "${text}" (use e.g. 900KB, 1MB, 256MiB, 1024)`);
  return Number(m[1]) * BYTE_UNITS[(m[2] ?? 'B').toLowerCase()]!;
}

class Reader {
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  string(name: string, def: string): string {
    return this.raw(name) ?? def;
  }

  optional(name: string): string | null {
    return this.raw(name) ?? null;
  }

  duration(name: string, def: string, min = 0): number {
    const v = this.raw(name) ?? def;
    let ms: number;
    try { ms = parseDuration(v); } catch (e) { throw new ConfigError(name, (e as Error).message); }
    if (ms < min) throw new ConfigError(name, `must be at least ${min}ms, got "${v}"`);
    return ms;
  }

  int(name: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!/^-?\d+$/.test(v)) throw new ConfigError(name, `not an integer: "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  bytes(name: string, def: string, min = 1): number {
    const v = this.raw(name) ?? def;
    let n: number;
    try { n = parseBytes(v); } catch (e) { throw new ConfigError(name, (e as Error).message); }
    if (n < min) throw new ConfigError(name, min <= 1 ? 'must be positive' : `must be at least ${min} bytes, got "${v}"`);
    return n;
  }

  oneOf<T extends string>(name: string, def: T, values: readonly T[]): T {
    const v = this.raw(name)?.toLowerCase() ?? def;
    if (!(values as readonly string[]).includes(v)) throw new ConfigError(name, `expected ${values.join(' or ')}, got "${v}"`);
    return v as T;
  }

  bool(name: string, def: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (/^(1|true|yes|on)$/i.test(v)) return true;
    if (/^(0|false|no|off)$/i.test(v)) return false;
    throw new ConfigError(name, `not a boolean: "${v}" (use true or false)`);
  }

  url(name: string, def: string | null, protocols: string[]): string | null {
    const v = this.raw(name) ?? def;
    if (v === null) return null;
    let u: URL;
    try { u = new URL(v); } catch { throw new ConfigError(name, `not a URL: "${v}"`); }
    if (!protocols.includes(u.protocol)) throw new ConfigError(name, `expected ${protocols.join(' or ')} URL, got "${u.protocol}"`);
    return v.replace(/\/+$/, '');
  }
}

function parseBrokers(name: string, v: string): string[] {
  const list = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new ConfigError(name, 'no broker given');
  for (const b of list) {
    if (!/^[^:\s]+:\d{1,5}$/.test(b)) throw new ConfigError(name, `not host:port: "${b}"`);
  }
  return list;
}

export type ConversationMode = 'gap' | 'threads';

function parseModeByType(name: string, v: string | undefined): Record<string, ConversationMode> {
  const out: Record<string, ConversationMode> = {};
  if (!v) return out;
  for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ConfigError(name, `expected type=gap or type=threads, got "${part}"`);
    const type = part.slice(0, eq).trim();
    const mode = part.slice(eq + 1).trim();
    if (mode !== 'gap' && mode !== 'threads') throw new ConfigError(name, `${type}: mode must be "gap" or "threads", got "${mode}"`);
    out[type] = mode;
  }
  return out;
}

function parseGapByType(name: string, v: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (!v) return out;
  for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ConfigError(name, `expected type=duration, got "${part}"`);
    const type = part.slice(0, eq).trim();
    try {
      const ms = parseDuration(part.slice(eq + 1));
      if (ms <= 0) throw new Error('gap must be positive');
      out[type] = ms;
    } catch (e) { throw new ConfigError(name, `${type}: ${(e as Error).message}`); }
  }
  return out;
}

export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  const appId = r.string('APP_ID', 'chatstats');
  if (!/^[A-Za-z0-9._-]+$/.test(appId)) throw new ConfigError('APP_ID', `only letters, digits, ".", "_" and "-" are allowed, got "${appId}"`);
  const topicPrefix = r.string('TOPIC_PREFIX', '');
  if (!/^[A-Za-z0-9._-]*$/.test(topicPrefix)) throw new ConfigError('TOPIC_PREFIX', `only letters, digits, ".", "_" and "-" are allowed, got "${topicPrefix}"`);
  const sasl = r.optional('KAFKA_SASL_MECHANISM')?.toLowerCase() ?? null;
  if (sasl !== null && !['plain', 'scram-sha-256', 'scram-sha-512'].includes(sasl)) {
    throw new ConfigError('KAFKA_SASL_MECHANISM', `expected plain, scram-sha-256 or scram-sha-512, got "${sasl}"`);
  }
  const cfg: Config = {
    kafkaBrokers: parseBrokers('KAFKA_BROKERS', r.string('KAFKA_BROKERS', '127.0.0.1:9092')),
    schemaRegistryUrl: r.url('SCHEMA_REGISTRY_URL', null, ['http:', 'https:']),
    databaseUrl: r.url('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/chatstats', ['postgres:', 'postgresql:'])!,
    appId,
    topicPrefix,
    topicPartitions: r.int('TOPIC_PARTITIONS', 6, 1, 10_000),
    topicReplicationFactor: r.raw('TOPIC_REPLICATION_FACTOR') === undefined ? null : r.int('TOPIC_REPLICATION_FACTOR', 0, 1, 32_767),
    topicMinInsyncReplicas: r.raw('TOPIC_MIN_INSYNC_REPLICAS') === undefined ? null : r.int('TOPIC_MIN_INSYNC_REPLICAS', 0, 1, 32_767),
    stateDir: r.string('STATE_DIR', '.state'),
    gapMs: r.duration('CONVERSATION_GAP', '90m', 1),
    gapByTypeMs: parseGapByType('CONVERSATION_GAP_BY_TYPE', r.raw('CONVERSATION_GAP_BY_TYPE')),
    modeByType: parseModeByType('CONVERSATION_MODE_BY_TYPE', r.raw('CONVERSATION_MODE_BY_TYPE')),
    graceMs: r.duration('CONVERSATION_GRACE', '0s'),
    settleMs: r.duration('CONVERSATION_SETTLE', '1m'),
    maxMessages: r.int('CONVERSATION_MAX_MESSAGES', 10_000, 1),
    maxBytes: r.bytes('CONVERSATION_MAX_BYTES', '900KB'),
    maxFutureSkewMs: r.duration('MAX_FUTURE_SKEW', '1h'),
    punctuateIntervalMs: r.duration('PUNCTUATE_INTERVAL', '1s', 10),
    sealTimer: r.oneOf('SEAL_TIMER', 'prepare', ['prepare', 'deadline', 'tick'] as const),
    sealLeadMinMs: r.duration('SEAL_LEAD_MIN', '5ms'),
    sealLeadMaxMs: r.duration('SEAL_LEAD_MAX', '250ms'),
    punctuateMaxSeals: r.int('PUNCTUATE_MAX_SEALS', 1000, 0),
    fetchMaxBytesPerPartition: r.bytes('FETCH_MAX_BYTES_PER_PARTITION', '3MiB'),
    fetchMaxBytes: r.bytes('FETCH_MAX_BYTES', '6MiB', 1_048_576),
    stateMemoryBytes: r.bytes('STATE_MEMORY', '64MiB', 16 * 1_048_576),
    stateCacheBytes: r.bytes('STATE_CACHE', '32MiB', 1_048_576),
    heapGrowthPercent: r.int('HEAP_GROWTH_PERCENT', 100, 0, 1000),
    streamThreads: r.int('STREAM_THREADS', 1, 1, 64),
    metricsPort: r.int('METRICS_PORT', 9464, 0, 65535),
    metricsHost: r.string('METRICS_HOST', '0.0.0.0'),
    kafkaSsl: r.bool('KAFKA_SSL', false),
    kafkaSslCaFile: r.optional('KAFKA_SSL_CA_FILE'),
    kafkaSaslMechanism: sasl as SaslMechanism | null,
    kafkaSaslUsername: r.optional('KAFKA_SASL_USERNAME'),
    kafkaSaslPassword: r.optional('KAFKA_SASL_PASSWORD'),
    logLevel: r.string('LOG_LEVEL', 'info'),
    llmBaseUrl: r.url('LLM_BASE_URL', null, ['http:', 'https:']),
    llmApiKey: r.optional('LLM_API_KEY'),
    llmModel: r.optional('LLM_MODEL'),
    passesFile: r.optional('PASSES_FILE'),
  };
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(cfg.logLevel)) {
    throw new ConfigError('LOG_LEVEL', `expected one of fatal, error, warn, info, debug, trace, silent, got "${cfg.logLevel}"`);
  }
  if (!/^([A-Za-z0-9.-]+|\[?[0-9A-Fa-f:.]+\]?)$/.test(cfg.metricsHost)) {
    throw new ConfigError('METRICS_HOST', `expected an IP address or host name, e.g. 127.0.0.1 or 0.0.0.0, got "${cfg.metricsHost}"`);
  }
  cfg.metricsHost = cfg.metricsHost.replace(/^\[(.*)\]$/, '$1');
  if (cfg.sealLeadMinMs > cfg.sealLeadMaxMs) {
    throw new ConfigError('SEAL_LEAD_MIN', `${cfg.sealLeadMinMs}ms is more than SEAL_LEAD_MAX (${cfg.sealLeadMaxMs}ms)`);
  }
  if (cfg.topicReplicationFactor !== null && cfg.topicMinInsyncReplicas !== null && cfg.topicMinInsyncReplicas > cfg.topicReplicationFactor) {
    throw new ConfigError('TOPIC_MIN_INSYNC_REPLICAS', `${cfg.topicMinInsyncReplicas} is more than TOPIC_REPLICATION_FACTOR `
      + `(${cfg.topicReplicationFactor}): no write with acks=all could ever succeed`);
  }
  if (cfg.kafkaSaslMechanism !== null) {
    if (cfg.kafkaSaslUsername === null) throw new ConfigError('KAFKA_SASL_USERNAME', `required when KAFKA_SASL_MECHANISM is ${cfg.kafkaSaslMechanism}`);
    if (cfg.kafkaSaslPassword === null) throw new ConfigError('KAFKA_SASL_PASSWORD', `required when KAFKA_SASL_MECHANISM is ${cfg.kafkaSaslMechanism}`);
  }
  return cfg;
}

/** The configuration if it is valid, else undefined: for error messages that may mention it. */
export function safeConfig(env: Env = process.env): Config | undefined {
  try { return loadConfig(env); } catch { return undefined; }
}
