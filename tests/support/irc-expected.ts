// What the bundled IRC sample gives through the sessionization rules, as data/irc/README.md states
// it: the one place these figures live. When the rules change, the README's "Expected outcome"
// changes, and every test reading IRC_EXPECTED follows.
import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface IrcExpected {
  /** Messages in the file (all valid). */
  input: number;
  /** Chats (log files) in the file. */
  chats: number;
  conversations: number;
  /** Messages in the sealed conversations. */
  messages: number;
  late: number;
  /** Seal reasons, as the README states them. */
  reasons: { NEXT_MESSAGE: number; GAP_TIMEOUT: number };
}

const num = (s: string) => Number(s.replace(/,/g, ''));

export function parseIrcReadme(text: string): IrcExpected {
  const flat = text.replace(/\s+/g, ' ');
  const outcome = /\*\*([\d,]+) sealed conversations \(([\d,]+) NEXT_MESSAGE, ([\d,]+) GAP_TIMEOUT\) holding ([\d,]+) messages, and ([\d,]+) late messages\*\*/.exec(flat);
  const size = /([\d,]+) messages, ([\d,]+) chats\./.exec(flat);
  if (!outcome || !size) {
    throw new Error('data/irc/README.md no longer states "**N sealed conversations (X NEXT_MESSAGE, Y GAP_TIMEOUT) holding M messages, and L late messages**" '
      + 'and "N messages, C chats." (tests/support/irc-expected.ts reads the expected figures from there)');
  }
  const conversations = num(outcome[1]!);
  const reasons = { NEXT_MESSAGE: num(outcome[2]!), GAP_TIMEOUT: num(outcome[3]!) };
  if (reasons.NEXT_MESSAGE + reasons.GAP_TIMEOUT !== conversations) throw new Error('data/irc/README.md: the seal reasons do not add up to the conversations');
  return {
    input: num(size[1]!), chats: num(size[2]!), conversations, messages: num(outcome[4]!), late: num(outcome[5]!), reasons,
  };
}

export const IRC_EXPECTED: IrcExpected = parseIrcReadme(readFileSync(path.resolve(__dirname, '../../../data/irc/README.md'), 'utf8'));

/** 13069 → "13,069", as the demo prints numbers. */
export const fmt = (n: number) => n.toLocaleString('en');
