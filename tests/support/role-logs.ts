// What a `chatstats run` child process logged (pino JSON lines), for tests that follow its
// partitions, restores and warnings.
import type { ChildRole } from './harness';

export interface LogLine { msg?: string; level?: number; [k: string]: unknown }

export function logLines(child: ChildRole): LogLine[] {
  const out: LogLine[] = [];
  for (const line of child.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try { out.push(JSON.parse(line) as LogLine); } catch { /* a line cut by SIGKILL */ }
  }
  return out;
}

/** host:port of the child's HTTP server, from its 'started' line. */
export function endpointOf(child: ChildRole): string | undefined {
  const started = logLines(child).find((l) => l.msg === 'started');
  const m = /http:\/\/([^/]+)\/metrics/.exec(String(started?.metrics ?? ''));
  return m?.[1];
}

export interface Restore { run: string; partition: number; wiped: boolean; records: number; ms: number; position: number }

export function restoresOf(label: string, child: ChildRole): Restore[] {
  return logLines(child).filter((l) => l.msg === 'task restored').map((l) => ({
    run: label, partition: Number(l.partition), wiped: Boolean(l.wiped), records: Number(l.records), ms: Number(l.ms), position: Number(l.position),
  }));
}

/** Warnings and errors a child logged, shortened, for the report. */
export function problemsOf(child: ChildRole): string[] {
  return logLines(child).filter((l) => (l.level ?? 0) >= 40).map((l) => {
    const err = l.err as { type?: string; message?: string } | undefined;
    return `${l.level === 40 ? 'WARN' : 'ERROR'} ${l.msg}${err ? `: ${err.type ?? ''} ${err.message ?? ''}` : ''}${l.partition !== undefined ? ` (partition ${String(l.partition)})` : ''}`.slice(0, 300);
  });
}

/** The input partitions a tracker was assigned last (its last 'partitions assigned' line). */
export const assignedOf = (c: ChildRole) => logLines(c).filter((l) => l.msg === 'partitions assigned').at(-1)?.assigned as number[] | undefined;
