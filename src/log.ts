// pino, one logger per component. JSON by default; pretty on a terminal. Secrets never printed.
import pino, { type Logger } from 'pino';

export type Component =
  | 'LiveSync' | 'EVENTS' | 'ConversationTracker' | 'AnalysisPasses' | 'ETL' | 'Runtime' | 'CLI' | 'Producer' | 'Infra' | 'Http';

const redact = {
  paths: ['password', '*.password', 'sasl.password', '*.sasl.password', 'apiKey', '*.apiKey', 'authorization', '*.authorization', 'databaseUrl', '*.databaseUrl'],
  censor: '[redacted]',
};

let root: Logger | null = null;

export function rootLogger(): Logger {
  if (root === null) {
    const level = process.env.LOG_LEVEL ?? 'info';
    const pretty = process.stdout.isTTY && process.env.LOG_FORMAT !== 'json';
    root = pretty
      ? pino({ level, redact }, pino.transport({ target: 'pino-pretty', options: { colorize: true, destination: 2 } }))
      : pino({ level, redact }, pino.destination({ dest: 2, sync: false }));
  }
  return root;
}

export function logger(component: Component): Logger {
  return rootLogger().child({ component });
}
