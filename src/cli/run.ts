// `chatstats run [tracker|etl|analysis|all]`
import { Command } from 'commander';
import { loadConfig } from '../config';
import { ALL_ROLES, startApp, runUntilSignalled, type Role } from '../app';
import { preflight } from '../preflight';

export function runCommand(): Command {
  return new Command('run')
    .description('run processors until SIGTERM/SIGINT; serves /metrics, /healthz, /readyz on METRICS_PORT')
    .argument('[role]', 'tracker, etl, analysis or all', 'all')
    .action(async (role: string) => {
      const roles: Role[] = role === 'all' ? ALL_ROLES : [role as Role];
      if (!roles.every((r) => ALL_ROLES.includes(r))) {
        throw new Error(`unknown role "${role}": use tracker, etl, analysis or all`);
      }
      const cfg = loadConfig();
      await preflight(cfg);
      const app = await startApp(cfg, roles);
      await runUntilSignalled(app);
    });
}
