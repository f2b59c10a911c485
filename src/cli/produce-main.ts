#!/usr/bin/env node
// A stand-alone entry for `produce` (tests, scripts): node dist/src/cli/produce-main.js FILE [options].
import { produceCommand } from './produce';

produceCommand().name('chatstats produce').parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`chatstats produce: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
