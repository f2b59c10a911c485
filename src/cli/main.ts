// The chatstats command line (SPEC section 6). Each command lives in its own module.
import { Command, CommanderError } from 'commander';
import { ConfigError, safeConfig } from '../config';
import { describeKafkaError } from '../kafka-client';
import { UnreachableError } from '../preflight';
import { runCommand } from './run';
import { produceCommand } from './produce';
import { trackerCommands } from './tracker-commands';
import { migrateCommand, listPassesCommand } from './downstream';
import { demoCommand } from './demo';
import { statsCommand, missingCommand } from './analytics';
import { conversationsCommand } from './conversations';
import { backfillCommand, backfillAllCommand } from './backfill';
import { evalBoundariesCommand } from './eval-boundaries';

const program = new Command('chatstats')
  .description('chatstats-stream: conversation sessionization, ETL and analysis on Kafka')
  .version(require('../../../package.json').version)
  .showHelpAfterError()
  .exitOverride();

program.addCommand(demoCommand());
program.addCommand(runCommand());
program.addCommand(produceCommand());
for (const c of trackerCommands()) program.addCommand(c);
program.addCommand(migrateCommand());
program.addCommand(listPassesCommand());
program.addCommand(statsCommand());
program.addCommand(missingCommand());
program.addCommand(conversationsCommand());
program.addCommand(backfillCommand());
program.addCommand(backfillAllCommand());
program.addCommand(evalBoundariesCommand());

program.parseAsync(process.argv).then(
  () => { if (process.exitCode === undefined) process.exit(0); else process.exit(process.exitCode); },
  (e: unknown) => {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    if (e instanceof ConfigError) {
      console.error(`chatstats: invalid configuration: ${e.message}`);
      process.exit(2);
    }
    if (e instanceof UnreachableError) {
      console.error(`chatstats: ${e.message}`);
      process.exit(1);
    }
    console.error(`chatstats: ${describeKafkaError(e, safeConfig())}`);
    process.exit(1);
  },
);
