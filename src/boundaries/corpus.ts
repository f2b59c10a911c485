// Logs in the IRC disentanglement corpus format (Kummerfeld et al. 2019; Gouravajhala et al. 2023):
// NAME.ascii.txt, one line a message, with NAME.annotation.txt beside it (`A B -`: the later of A and
// B replies to the earlier, 0-based line numbers; `A A -` starts a conversation).
//
// Line forms read:
//   [HH:MM] <nick> text                      (Ubuntu; the date is in NAME: 2004-11-15_03, 2005-02-06.train-c)
//   channel YYYY-MM-DD [HH:MM:SS] <nick> text (new domains; the date on the line)
//   [HH:MM] * nick action, [HH:MM] -nick:#chan- notice, ...: a message from the first word's name
//   === nick has joined ...                  (system line: no chat message; its own singleton)
// Times: minute (or second) resolution; a time of day more than an hour earlier than the previous
// line's, with no date on the line, is taken to be the next day.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ChatMessage } from '../records/types';

export interface CorpusLine {
  index: number;
  /** null for a system line (===) */
  message: ChatMessage | null;
}

export interface CorpusLog {
  /** NAME: the file name without .ascii.txt */
  name: string;
  lines: CorpusLine[];
  /** Gold links (child -> parents, child >= parent; a self link for a conversation start), or null without annotation. */
  gold: Map<number, number[]> | null;
}

const UBUNTU = /^\[(\d{1,2}):(\d{2})(?::(\d{2}))?\]\s?(.*)$/;
const DATED = /^(\S+)\s+(\d{4})-(\d{2})-(\d{2})\s+\[(\d{1,2}):(\d{2})(?::(\d{2}))?\]\s?(.*)$/;

/** The date (UTC midnight, ms) in a corpus file name, or 0 when there is none. */
export function dateOfName(name: string): number {
  const m = /(\d{4})-(\d{2})-(\d{2})/.exec(name);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : 0;
}

function senderAndText(rest: string): { sender: string; text: string } {
  const angle = /^<([^>]*)>\s?(.*)$/.exec(rest);
  if (angle) return { sender: angle[1]!.trim() || '?', text: angle[2]!.replace(/^\t/, '').trim() };
  const star = /^\s*\*\s*(\S+)\s*(.*)$/.exec(rest);
  if (star) return { sender: star[1]!, text: star[2]!.trim() };
  const first = /^\s*(\S+)\s*(.*)$/.exec(rest);
  if (first) return { sender: first[1]!.replace(/^[-(<]+|[-)>:]+$/g, '').split(/[:/]/)[0] || first[1]!, text: first[2]!.trim() };
  return { sender: '?', text: '' };
}

/** Parses the text of NAME.ascii.txt into one chat (chat_id `irc:NAME`, message_id `NAME:INDEX`). */
export function parseLog(name: string, ascii: string): CorpusLine[] {
  const raw = ascii.split('\n');
  if (raw.length > 0 && raw[raw.length - 1] === '') raw.pop();
  const base = dateOfName(name);
  let dayOffset = 0;
  let prevTod = -1;
  const chatId = `irc:${name}`;
  return raw.map((line, index) => {
    line = line.replace(/\r$/, '');
    if (line.startsWith('===')) return { index, message: null };
    let t: number;
    let rest: string;
    const d = DATED.exec(line);
    if (d) {
      t = Date.UTC(Number(d[2]), Number(d[3]) - 1, Number(d[4]), Number(d[5]), Number(d[6]), Number(d[7] ?? 0));
      rest = d[8]!;
    } else {
      const u = UBUNTU.exec(line);
      if (!u) return { index, message: null };
      const tod = (Number(u[1]) * 60 + Number(u[2])) * 60_000 + Number(u[3] ?? 0) * 1000;
      if (prevTod >= 0 && tod < prevTod - 3_600_000) dayOffset += 86_400_000;
      prevTod = tod;
      t = base + dayOffset + tod;
      rest = u[4]!;
    }
    const { sender, text } = senderAndText(rest);
    const message: ChatMessage = {
      message_id: `${name}:${index}`, chat_id: chatId, sender_id: sender, sent_at: t, text,
      chat_type: 'group', is_from_me: false, reply_to_message_id: null, account_id: null,
    };
    return { index, message };
  });
}

/** Parses NAME.annotation.txt: child (the larger number) -> its parents (the smaller; itself for a start). */
export function parseAnnotation(text: string): Map<number, number[]> {
  const gold = new Map<number, number[]>();
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/).filter((p) => p !== '-' && p !== '');
    if (parts.length < 2) continue;
    const a = Number(parts[0]), b = Number(parts[1]);
    if (!Number.isInteger(a) || !Number.isInteger(b)) continue;
    const child = Math.max(a, b), parent = Math.min(a, b);
    const ps = gold.get(child);
    if (ps) { if (!ps.includes(parent)) ps.push(parent); } else gold.set(child, [parent]);
  }
  return gold;
}

/** Reads NAME.ascii.txt (the path given may also be NAME or NAME.annotation.txt) and its annotation. */
export function readLog(file: string): CorpusLog {
  const asciiPath = file.endsWith('.ascii.txt') ? file
    : file.endsWith('.annotation.txt') ? file.slice(0, -'.annotation.txt'.length) + '.ascii.txt'
      : file + '.ascii.txt';
  const name = path.basename(asciiPath).slice(0, -'.ascii.txt'.length);
  const annPath = asciiPath.slice(0, -'.ascii.txt'.length) + '.annotation.txt';
  const lines = parseLog(name, readFileSync(asciiPath, 'utf8'));
  const gold = existsSync(annPath) ? parseAnnotation(readFileSync(annPath, 'utf8')) : null;
  return { name, lines, gold };
}

/** The first annotated line (the smallest child of the gold links): evaluation starts there. */
export function firstAnnotated(gold: Map<number, number[]>): number {
  let min = Infinity;
  for (const c of gold.keys()) if (c < min) min = c;
  return min;
}
