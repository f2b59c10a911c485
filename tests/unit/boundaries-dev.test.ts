// The committed thread model on the annotated Ubuntu dev set (../shared/data/irc-disentanglement,
// or BOUNDARIES_DATA_DIR): the bar of issue 15 (matched-cluster F >= 40) and the scores the model
// file records. Skipped where the corpus is not beside the repository.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { dataDir, readLogDir, scoreLogs } from '../../src/boundaries/train';
import { gapParents, modelParents } from '../../src/boundaries/evaluate';
import { loadThreadModel } from '../../src/boundaries/model';

const dev = path.join(dataDir(), 'ubuntu', 'dev');
const skip = existsSync(dev) ? false : `no corpus at ${dev}`;

describe('thread model on ubuntu/dev', { skip }, () => {
  test('matched-cluster F >= 40, and the scores recorded in the model file', () => {
    const model = loadThreadModel();
    const logs = readLogDir(dev).filter((l) => l.gold !== null);
    assert.equal(logs.length, 10);
    const s = scoreLogs(logs, (l) => modelParents(l, model));
    assert.equal(s.messages, 2500);
    assert.ok(s.f >= 40, `matched-cluster F ${s.f.toFixed(2)} < 40`);
    const recorded = (model.meta as { dev?: Record<string, number> } | undefined)?.dev;
    if (recorded) {
      assert.equal(Math.round(s.f * 100) / 100, recorded.f);
      assert.equal(Math.round(s.oneMinusVI * 100) / 100, recorded.one_minus_vi);
      assert.equal(Math.round(s.ari * 100) / 100, recorded.ari);
    }
    // The time-gap rule finds none of the conversations of this busy channel.
    assert.equal(scoreLogs(logs, (l) => gapParents(l)).f, 0);
  });
});
