import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { clustersFromLinks, scoreClusterings, type Clustering } from '../../src/boundaries/metrics';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} != ${b}`);
const score = (gold: Clustering, predicted: Clustering) => scoreClusterings([{ gold, predicted }]);

describe('clustersFromLinks', () => {
  test('connected components of child -> parent links, self links start conversations', () => {
    assert.deepEqual(clustersFromLinks([[0, 0], [1, 0], [2, 2], [3, 1], [4, 2], [5, 5]], 0), [[0, 1, 3], [2, 4], [5]]);
  });
  test('a message with two parents joins both conversations', () => {
    assert.deepEqual(clustersFromLinks([[0, 0], [1, 1], [2, 0], [2, 1]], 0), [[0, 1, 2]]);
  });
  test('parents before the cutoff connect the evaluated lines but are cut out', () => {
    // 10 and 11 both reply to context line 5: one conversation {10, 11}; 12 alone.
    assert.deepEqual(clustersFromLinks([[10, 5], [11, 5], [12, 12]], 10), [[10, 11], [12]]);
  });
});

describe('scoreClusterings', () => {
  test('identical clusterings score 100 everywhere', () => {
    const c = [[1, 2, 3], [4, 5], [6]];
    const s = score(c, c);
    close(s.oneMinusVI, 100);
    close(s.ari, 100);
    assert.equal(s.precision, 100);
    assert.equal(s.recall, 100);
    assert.equal(s.f, 100);
  });

  test('all-singletons against one conversation of n: VI = log2 n, so 1 - scaled VI = 0; ARI 0; no matches', () => {
    const s = score([[1, 2, 3, 4]], [[1], [2], [3], [4]]);
    close(s.oneMinusVI, 0);
    close(s.ari, 0);
    assert.equal(s.precision, 0); // no predicted conversation of 2+
    assert.equal(s.recall, 0);
    assert.equal(s.f, 0);
  });

  test('hand-computed VI and ARI of a small split', () => {
    // gold {1,2,3,4}, {5,6}; predicted {1,2}, {3,4}, {5,6}.
    const s = score([[1, 2, 3, 4], [5, 6]], [[1, 2], [3, 4], [5, 6]]);
    // H(pred | gold) = (4/6) * 1 bit, H(gold | pred) = 0; VI = 2/3; scaled by log2 6.
    close(s.oneMinusVI, 100 * (1 - (2 / 3) / Math.log2(6)));
    // ARI: index = 3 pairs, rows = 1+1+1 = 3, cols = 6+1 = 7, expected = 3*7/15 = 1.4, max = 5.
    close(s.ari, (100 * (3 - 1.4)) / (5 - 1.4));
    // Matched: {5,6} only. precision 1/3, recall 1/2.
    close(s.precision, 100 / 3);
    close(s.recall, 50);
    close(s.f, (2 * (100 / 3) * 50) / (100 / 3 + 50));
  });

  test('singletons are left out of matched precision and recall', () => {
    // gold {1,2}, {3}; predicted {1,2,3}: the gold singleton is not counted, the pair is missed.
    const s = score([[1, 2], [3]], [[1, 2, 3]]);
    assert.equal(s.precision, 0);
    assert.equal(s.recall, 0);
    // gold {1,2}, {3}, {4}; predicted {1,2}, {3,4}: 1 of 2 predicted, 1 of 1 gold.
    const t = score([[1, 2], [3], [4]], [[1, 2], [3, 4]]);
    close(t.precision, 50);
    close(t.recall, 100);
    close(t.f, 200 / 3);
  });

  test('files pool: conversations never span files, totals add up', () => {
    const a = { gold: [[1, 2], [3]], predicted: [[1, 2], [3]] };
    const b = { gold: [[1, 2, 3]], predicted: [[1], [2, 3]] };
    const s = scoreClusterings([a, b]);
    assert.equal(s.messages, 6);
    assert.equal(s.goldConversations, 3);
    assert.equal(s.predictedConversations, 4);
    close(s.precision, 50);
    close(s.recall, 50);
    // VI over 6 messages: only b's split costs: H(gold|pred)=0, H(pred|gold) = 3/6 * H(1/3,2/3).
    const h = -(1 / 3) * Math.log2(1 / 3) - (2 / 3) * Math.log2(2 / 3);
    close(s.oneMinusVI, 100 * (1 - (0.5 * h) / Math.log2(6)));
  });

  test('a prediction must cover the gold messages', () => {
    assert.throws(() => score([[1, 2]], [[1]]), /covers 1 messages, gold 2/);
    assert.throws(() => score([[1, 2]], [[1, 2, 9]]), /not among the gold/);
  });
});
