// Output helpers shared by the commands: aligned tables for people, exit codes for scripts.

export const ExitCode = {
  Ok: 0,
  Failure: 1,
  BadConfig: 2,
  /** The command needs a running tracker and none is. */
  NotRunning: 3,
} as const;

export function printTable(headers: string[], rows: unknown[][]): void {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(headers));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of cells) console.log(line(r));
}

export function fmtTime(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

export function fail(message: string, code: number = ExitCode.Failure): void {
  console.error(`chatstats: ${message}`);
  process.exitCode = code;
}
