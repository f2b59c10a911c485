// The kafkajs client of a process, built from the configuration: brokers, TLS and SASL (SPEC
// section 5). kafkajs' own logging (WARN and above) goes to pino, so it is JSON like the rest.
import { readFileSync } from 'node:fs';
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
    switch (retried ? logLevel.WARN : level) {
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
