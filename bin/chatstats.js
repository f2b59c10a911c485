#!/usr/bin/env node
'use strict';
// The chatstats command. The TypeScript sources are compiled by `npm ci` (prepare) into dist/.
try {
  require('../dist/src/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('dist/src/cli/main.js')) {
    console.error('chatstats: not built yet; run `npm ci` (or `npm run build`) in the project first');
    process.exit(1);
  }
  throw e;
}
