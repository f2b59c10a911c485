import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChatMessage } from '../../src/records/types';
import { addressedNames, contentTokens, Flag, normName, textFlags } from '../../src/boundaries/text';
import { createWindow, prepareMessage, rememberMessage } from '../../src/boundaries/window';
import { computeFeatures, FEATURE_COUNT, FEATURE_NAMES, FeatureBuffer } from '../../src/boundaries/features';
import { linkMessage, loadThreadModel, validateThreadModel, type ThreadModel } from '../../src/boundaries/model';
import { parseAnnotation, parseLog } from '../../src/boundaries/corpus';
import { clusteringsOf, gapParents, modelParents } from '../../src/boundaries/evaluate';

let counter = 0;
function msg(sender: string, text: string, over: Partial<ChatMessage> = {}): ChatMessage {
  counter++;
  return {
    message_id: `m${counter}`, chat_id: 'c', sender_id: sender, sent_at: 1_700_000_000_000 + counter * 10_000, text,
    chat_type: 'group', is_from_me: false, reply_to_message_id: null, account_id: null, ...over,
  };
}

/** A model that only weighs the named features (linear). */
function modelOf(weights: Record<string, number>): ThreadModel {
  for (const k of Object.keys(weights)) assert.ok(FEATURE_NAMES.includes(k), `no feature ${k}`);
  return validateThreadModel({
    format: 'chatstats-thread-model', version: 1, kind: 'linear', window: 100, features: [...FEATURE_NAMES],
    linear: FEATURE_NAMES.map((n) => weights[n] ?? 0),
  });
}

function feed(window: ReturnType<typeof createWindow>, model: ThreadModel, ms: ChatMessage[]): (string | null)[] {
  return ms.map((m) => {
    const r = linkMessage(window, m, model);
    rememberMessage(window, m, r.parentMessageId, r.entry);
    return r.parentMessageId;
  });
}

describe('text', () => {
  test('names normalize to letters and digits', () => {
    assert.equal(normName('|trey|'), 'trey');
    assert.equal(normName('Matt|'), 'matt');
    assert.equal(normName('mirak_'), 'mirak');
  });

  test('addressing: IRC "nick:" and "nick," prefixes, @name, and known names anywhere', () => {
    const known = new Set(['bob2', 'trey', 'hrdwrbob']);
    const isKnown = (n: string) => known.has(n);
    assert.deepEqual(addressedNames('bob2: install linux-headers', isKnown), ['bob2']);
    assert.deepEqual(addressedNames('|trey|, top in the list', isKnown), ['trey']);
    assert.deepEqual(addressedNames('HrdwrBoB: ok how many partitions?', isKnown), ['hrdwrbob']);
    assert.deepEqual(addressedNames('thanks @alice for that', isKnown), ['alice']);
    assert.deepEqual(addressedNames('I think trey was right', isKnown), ['trey']);
    assert.deepEqual(addressedNames('newbie: welcome', isKnown), ['newbie']); // "name: " addresses even an unknown name
    assert.deepEqual(addressedNames('see http://example.com', isKnown), []);
    assert.deepEqual(addressedNames('the time is 12:30', isKnown), []);
  });

  test('content words leave out stop words, repeat words and single letters', () => {
    assert.deepEqual(contentTokens('How do I install the kernel headers? the KERNEL headers!'), ['install', 'kernel', 'headers']);
  });

  test('cue flags', () => {
    assert.ok(textFlags('anyone know how to mount a usb drive?') & Flag.QUESTION);
    assert.ok(textFlags('anyone know how to mount a usb drive?') & Flag.ASK_ANYONE);
    assert.ok(textFlags('thanks, that worked') & Flag.THANKS);
    assert.ok(textFlags('hi all') & Flag.GREETING);
    assert.ok(textFlags('ok') & Flag.ACK);
    assert.ok(textFlags('see https://example.com') & Flag.URL);
  });
});

describe('features', () => {
  test('the addressed sender\'s message gets m_addresses_c; other rows do not', () => {
    const w = createWindow();
    const m1 = msg('alice', 'my wifi drops every minute');
    const m2 = msg('carol', 'what is gnome 2.9 like?');
    rememberMessage(w, m1, null);
    rememberMessage(w, m2, null);
    const e = prepareMessage(w, msg('bob', 'alice: which driver do you use?'));
    assert.deepEqual(e.a, ['alice']);
    const buf = new FeatureBuffer();
    const rows = computeFeatures(w, e, buf);
    assert.equal(rows, 3);
    const f = FEATURE_NAMES.indexOf('pair.m_addresses_c');
    assert.equal(buf.dense(2)[f], 1); // alice, two back
    assert.equal(buf.dense(1)[f], 0); // carol
    assert.equal(buf.dense(0)[f], 0); // none
    assert.equal(buf.dense(0)[FEATURE_NAMES.indexOf('self.bias')], 1);
    assert.equal(buf.dense(0).length, FEATURE_COUNT);
  });
});

describe('linkMessage', () => {
  test('addressing by name links to the addressed sender\'s latest message', () => {
    const model = modelOf({ 'pair.m_addresses_c': 5, 'pair.c_last_of_its_sender': 1, 'self.bias': 1.5 });
    const w = createWindow();
    const ms = [msg('alice', 'my wifi drops every minute'), msg('alice', 'on ubuntu 20.04'), msg('carol', 'hello all'), msg('bob', 'alice: which driver?')];
    assert.deepEqual(feed(w, model, ms), [null, null, null, ms[1]!.message_id]);
  });

  test('an explicit reply_to_message_id in the window always wins over the model', () => {
    const model = modelOf({ 'pair.m_addresses_c': 100, 'pair.distance>=1': 50 });
    const w = createWindow();
    const a = msg('alice', 'first'), b = msg('bob', 'second'), c = msg('carol', 'third');
    feed(w, model, [a, b, c]);
    const r = linkMessage(w, msg('dave', 'carol: no, bob is right', { reply_to_message_id: a.message_id }), model);
    assert.equal(r.parentMessageId, a.message_id);
    assert.equal(r.via, 'explicit');
  });

  test('an explicit reply to a message outside the window falls back to the model', () => {
    const model = modelOf({ 'pair.distance>=1': 1 });
    const w = createWindow(2);
    const a = msg('alice', 'first'), b = msg('bob', 'second'), c = msg('carol', 'third');
    feed(w, model, [a, b, c]);
    assert.equal(w.entries.length, 2); // a was dropped
    const r = linkMessage(w, msg('dave', 'hm', { reply_to_message_id: a.message_id }), model);
    assert.equal(r.via, 'model');
    assert.equal(r.parentMessageId, c.message_id);
  });

  test('the window is bounded, plain JSON, and replays to the same links', () => {
    const model = loadThreadModel();
    const texts = ['anyone know how to mount a usb drive?', 'alice: try sudo mount /dev/sdb1 /mnt', 'bob: thanks, that worked',
      'what is gnome 2.9 like?', 'dave: very similar to 2.8', 'ok'];
    const senders = ['alice', 'bob', 'alice', 'dave', 'erin', 'dave'];
    const ms = Array.from({ length: 300 }, (_, i) => msg(senders[i % 6]!, texts[i % 6]!));
    const w1 = createWindow(50);
    const l1 = feed(w1, model, ms);
    assert.equal(w1.entries.length, 50);
    const copy = JSON.parse(JSON.stringify(w1));
    assert.deepEqual(copy, w1);
    const w2 = createWindow(50);
    assert.deepEqual(feed(w2, model, ms), l1);
    // A window restored from JSON links the next message as the live one does.
    const next = msg('bob', 'alice: did the mount work?');
    assert.equal(linkMessage(copy, next, model).parentMessageId, linkMessage(w1, next, model).parentMessageId);
  });

  test('the committed model links an addressed reply to the addressed sender', () => {
    const model = loadThreadModel();
    const w = createWindow(model.window);
    const q = msg('alice', 'how do I get my wifi card working on the new kernel?');
    const ms = [msg('carol', 'anyone here use kde?'), q, msg('dave', 'carol: yes, kde 5'), msg('erin', 'good morning')];
    feed(w, model, ms);
    const r = linkMessage(w, msg('bob', 'alice: which wifi card is it?'), model);
    assert.equal(r.parentMessageId, q.message_id);
  });
});

describe('corpus format', () => {
  const ascii = [
    '[23:58] <alice> anyone know how to mount a usb drive?',
    '=== bob has joined #ubuntu',
    '[23:59] <bob> alice: sudo mount /dev/sdb1 /mnt',
    '[00:01] * alice waves',
    '[00:02] <carol> hello',
  ].join('\n') + '\n';

  test('messages from <nick> and * actions, system lines none, dates roll over midnight', () => {
    const lines = parseLog('2004-11-15_03', ascii);
    assert.equal(lines.length, 5);
    assert.equal(lines[1]!.message, null);
    assert.equal(lines[0]!.message!.sender_id, 'alice');
    assert.equal(lines[0]!.message!.sent_at, Date.UTC(2004, 10, 15, 23, 58));
    assert.equal(lines[2]!.message!.text, 'alice: sudo mount /dev/sdb1 /mnt');
    assert.equal(lines[3]!.message!.sender_id, 'alice');
    assert.equal(lines[3]!.message!.sent_at, Date.UTC(2004, 10, 16, 0, 1));
    assert.equal(lines[2]!.message!.message_id, '2004-11-15_03:2');
  });

  test('dated lines of the new-domain channels', () => {
    const lines = parseLog('rust.0', 'rust 2018-05-29 [21:20:37] <talchas>\t but I don\'t know\n');
    assert.equal(lines[0]!.message!.sender_id, 'talchas');
    assert.equal(lines[0]!.message!.sent_at, Date.UTC(2018, 4, 29, 21, 20, 37));
    assert.equal(lines[0]!.message!.text, 'but I don\'t know');
  });

  test('annotation: the later line replies to the earlier; gold and gap conversations of the annotated lines', () => {
    const gold = parseAnnotation('2 0 -\n2 2 -\n3 3 -\n4 4 -\n');
    assert.deepEqual([...gold.entries()], [[2, [0, 2]], [3, [3]], [4, [4]]]);
    const log = { name: '2004-11-15_03', lines: parseLog('2004-11-15_03', ascii), gold };
    const gap = clusteringsOf(log, gapParents(log));
    assert.deepEqual(gap.gold, [[2], [3], [4]]);
    assert.deepEqual(gap.predicted, [[2, 3, 4]]);
    const model = clusteringsOf(log, modelParents(log, loadThreadModel()));
    assert.deepEqual(model.predicted.flat().sort(), [2, 3, 4]);
  });
});
