// The kafkajs client of a process, built from the configuration: brokers, TLS and SASL (SPEC
// section 5). kafkajs' own logging (WARN and above) goes to pino, so it is JSON like the rest.
import { readFileSync } from 'node:fs';
import './kafkajs-patch'; // before kafkajs loads: its grouping, Encoder growth and Produce encoding
import { Kafka, logLevel, type KafkaConfig, type LogEntry, type SASLOptions } from 'kafkajs';
import type { Config } from './config';
import { logger } from './log';

function pinoLogCreator(clientId: string) {
  const log = logger('Infra').child({ lib: 'kafkajs', clientId });
  return (_level: logLevel) => ({ namespace, level, log: entry }: LogEntry) => {
    const { message, timestamp: _ts, logger: _l, ...extra } = entry as typeof entry & { timestamp?: string; logger?: string };
    const fields = { namespace, ...extra };
    // kafkajs logs every error response at ERROR, also the retriable ones it retries by itself
    // (coordinator loading, leader election, ...): those are warnings until kafkajs gives up.
    const retried = level === logLevel.ERROR && namespace === 'Connection' && typeof message === 'string' && message.startsWith('Response ');
    // Expected, and handled, in the tracker's transactional producers: the broker answers
    // CONCURRENT_TRANSACTIONS for a few ms after each commit (kafkajs retries it), and a producer
    // whose retries run out aborts its transaction and is replaced, so kafkajs' warning about
    // limited retries breaking idempotence does not apply.
    const text = `${message} ${typeof (extra as { error?: unknown }).error === 'string' ? (extra as { error: string }).error : ''}`;
    const expected = text.includes('another concurrent operation on the same transaction')
      || text.startsWith('Limiting retries for the idempotent producer');
    switch (expected ? logLevel.DEBUG : retried ? logLevel.WARN : level) {
      case logLevel.ERROR: log.error(fields, message); break;
      case logLevel.WARN: log.warn(fields, message); break;
      case logLevel.INFO: log.info(fields, message); break;
      default: log.debug(fields, message); break;
    }
  };
}

/** kafkajs `ssl` and `sasl` options from the configuration. */
export function securityFromConfig(cfg: Pick<Config, 'kafkaSsl' | 'kafkaSslCaFile' | 'kafkaSaslMechanism' | 'kafkaSaslUsername' | 'kafkaSaslPassword'>): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  const out: Pick<KafkaConfig, 'ssl' | 'sasl'> = {};
  if (cfg.kafkaSsl) {
    out.ssl = cfg.kafkaSslCaFile !== null ? { ca: [readFileSync(cfg.kafkaSslCaFile, 'utf8')] } : true;
  }
  if (cfg.kafkaSaslMechanism !== null) {
    out.sasl = {
      mechanism: cfg.kafkaSaslMechanism,
      username: cfg.kafkaSaslUsername ?? '',
      password: cfg.kafkaSaslPassword ?? '',
    } as SASLOptions;
  }
  return out;
}

/** A kafkajs client for this configuration. */
export function kafkaFromConfig(cfg: Config, clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers: cfg.kafkaBrokers,
    ...securityFromConfig(cfg),
    logLevel: logLevel.WARN,
    logCreator: pinoLogCreator(clientId),
  });
}

type SecuritySettings = Pick<Config, 'kafkaBrokers' | 'kafkaSsl' | 'kafkaSslCaFile' | 'kafkaSaslMechanism' | 'kafkaSaslUsername'>;

/** The error and its causes (kafkajs keeps the last attempt's error as `cause` after retries). */
function errorChain(err: unknown): Array<{ name: string; message: string }> {
  const out: Array<{ name: string; message: string }> = [];
  let e: unknown = err;
  while (e !== null && e !== undefined && out.length < 10) {
    const x = e as { name?: unknown; message?: unknown; cause?: unknown };
    out.push({ name: typeof x.name === 'string' ? x.name : '', message: typeof x.message === 'string' ? x.message : String(e) });
    e = x.cause;
  }
  return out;
}

/**
 * A message a person can act on for a failure to talk to Kafka, naming the security setting
 * involved: rejected SASL credentials ("Kafka authentication failed for user X with mechanism Y
 * at BROKERS: ..."), an untrusted broker certificate, or a broker that hangs up because the
 * listener expects TLS or SASL the client did not use. Any other error: its own message.
 * `cfg` supplies the user, mechanism and brokers; without it the message says what the error says.
 */
export function describeKafkaError(err: unknown, cfg?: Partial<SecuritySettings>): string {
  const chain = errorChain(err);
  const top = chain[0]?.message ?? String(err);
  const at = cfg?.kafkaBrokers && cfg.kafkaBrokers.length > 0 ? ` at ${cfg.kafkaBrokers.join(',')}` : '';

  const auth = chain.find((e) => e.name === 'KafkaJSSASLAuthenticationError' || /^SASL .*authentication failed/i.test(e.message));
  if (auth) {
    const mechanism = cfg?.kafkaSaslMechanism ? ` with mechanism ${cfg.kafkaSaslMechanism.toUpperCase()}` : '';
    const user = cfg?.kafkaSaslUsername ? ` for user "${cfg.kafkaSaslUsername}"` : '';
    return `Kafka authentication failed${user}${mechanism}${at}: ${auth.message} `
      + '(check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)';
  }

  const tls = chain.find((e) => /certificate|CERT_|self[- ]signed|unable to verify|altnames|before secure TLS connection/i.test(e.message));
  if (tls) {
    const hint = /before secure TLS connection/i.test(tls.message)
      ? 'KAFKA_SSL is true, but the listener may not use TLS'
      : cfg?.kafkaSslCaFile
        ? `the broker's certificate is not signed by the CA in KAFKA_SSL_CA_FILE (${cfg.kafkaSslCaFile}) or does not name the broker's host`
        : "the broker's certificate is not trusted: set KAFKA_SSL_CA_FILE to the CA that signed it";
    return `Kafka TLS connection failed${at}: ${tls.message} (${hint})`;
  }

  if (cfg && chain.some((e) => e.name === 'KafkaJSConnectionClosedError')) {
    const missing: string[] = [];
    if (cfg.kafkaSsl === false) missing.push('TLS (KAFKA_SSL is not true)');
    if (cfg.kafkaSaslMechanism === null) missing.push('SASL (KAFKA_SASL_MECHANISM is not set)');
    if (missing.length > 0) {
      return `Kafka broker${at} closed the connection before answering: the listener may expect ${missing.join(' or ')}; ${top}`;
    }
  }
  // Retries exhausted on a connection that never opened: the brokers' address is the thing to check.
  const conn = chain.find((e) => e.name === 'KafkaJSConnectionError' && /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|Connection timeout/i.test(e.message));
  if (conn) return `cannot reach Kafka${at} (KAFKA_BROKERS): ${conn.message}`;
  return top;
}
