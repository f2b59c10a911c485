// `chatstats migrate` and `chatstats list-passes`.
import { Command } from 'commander';
import { loadConfig } from '../config';
import { createPool } from '../db/pool';
import { appliedMigrations, migrate, readMigrations } from '../db/migrate';
import { byPriority, loadPasses, type PassDefinition } from '../analysis/passes';

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function requirementsText(p: PassDefinition): string {
  const parts: string[] = [];
  if (p.requires.subscription) parts.push('subscription');
  if (p.requires.min_messages > 1) parts.push(`>=${p.requires.min_messages} messages`);
  return parts.length > 0 ? parts.join(', ') : '-';
}

export function migrateCommand(): Command {
  return new Command('migrate')
    .description('apply the missing database migrations (migrations/NNN_name.sql) to DATABASE_URL')
    .option('--status', 'only show which migrations are applied and which are pending')
    .option('--json', 'print the result as JSON')
    .action(async (o: { status?: boolean; json?: boolean }) => {
      const cfg = loadConfig();
      const pool = createPool(cfg.databaseUrl, { max: 1, applicationName: 'chatstats-cli' });
      try {
        if (o.status) {
          const applied = await appliedMigrations(pool);
          const done = new Set(applied.map((a) => a.version));
          const pending = readMigrations().filter((m) => !done.has(m.version));
          if (o.json) {
            console.log(JSON.stringify({
              applied: applied.map((a) => ({ version: a.version, name: a.name, applied_at: a.applied_at.toISOString() })),
              pending: pending.map((m) => ({ version: m.version, name: m.name, file: m.file })),
            }, null, 2));
          } else {
            for (const a of applied) console.log(`applied  ${String(a.version).padStart(3, '0')}_${a.name}  ${a.applied_at.toISOString()}`);
            for (const m of pending) console.log(`pending  ${m.file}`);
            if (applied.length + pending.length === 0) console.log('no migrations');
          }
          return;
        }
        const r = await migrate(pool);
        if (o.json) {
          console.log(JSON.stringify({ applied: r.applied.map((m) => ({ version: m.version, name: m.name, file: m.file })), already_applied: r.alreadyApplied }, null, 2));
        } else if (r.applied.length === 0) {
          console.log(`database is up to date (${r.alreadyApplied} migrations applied)`);
        } else {
          for (const m of r.applied) console.log(`applied ${m.file}`);
          console.log(`${r.applied.length} migration(s) applied, ${r.alreadyApplied} were already`);
        }
      } finally {
        await pool.end();
      }
    });
}

export function listPassesCommand(): Command {
  return new Command('list-passes')
    .description('list the analysis passes: priority, enabled, prompt name/version/category, analyzer, requirements')
    .option('--file <path>', 'passes file (default: PASSES_FILE, else config/passes.json)')
    .option('-v, --verbose', 'also print each pass\'s description')
    .option('--json', 'print the passes as JSON')
    .action((o: { file?: string; verbose?: boolean; json?: boolean }) => {
      const passes = byPriority(loadPasses(o.file ?? process.env.PASSES_FILE ?? null));
      if (o.json) {
        console.log(JSON.stringify(passes, null, 2));
        return;
      }
      const rows = passes.map((p) => [
        p.name, String(p.priority), p.enabled ? 'yes' : 'no', p.analyzer, p.prompt_name, String(p.prompt_version),
        p.prompt_category, requirementsText(p),
      ]);
      console.log(table(['PASS', 'PRIORITY', 'ENABLED', 'ANALYZER', 'PROMPT', 'VERSION', 'CATEGORY', 'REQUIRES'], rows));
      if (o.verbose) {
        console.log('');
        for (const p of passes) console.log(`${p.name}: ${p.description}`);
      }
      const enabled = passes.filter((p) => p.enabled).length;
      console.log(`\n${passes.length} passes, ${enabled} enabled`);
    });
}
