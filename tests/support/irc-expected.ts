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
  /** Seal reasons: each chat's last conversation is sealed by the wall clock, the others by the next message. */
  reasons: { NEXT_MESSAGE: number; GAP_TIMEOUT: number };
}

const num = (s: string) => Number(s.replace(/,/g, ''));

export function parseIrcReadme(text: string): IrcExpected {
  const flat = text.replace(/\s+/g, ' ');
  const outcome = /\*\*([\d,]+) sealed conversations holding ([\d,]+) messages, and ([\d,]+) late messages\*\*/.exec(flat);
  const size = /([\d,]+) messages, ([\d,]+) chats\./.exec(flat);
  if (!outcome || !size) {
    throw new Error('data/irc/README.md no longer states "**N sealed conversations holding M messages, and L late messages**" '
      + 'and "N messages, C chats." (tests/support/irc-expected.ts reads the expected figures from there)');
  }
  const conversations = num(outcome[1]!);
  const chats = num(size[2]!);
  return {
    input: num(size[1]!), chats, conversations, messages: num(outcome[2]!), late: num(outcome[3]!),
    reasons: { NEXT_MESSAGE: conversations - chats, GAP_TIMEOUT: chats },
  };
}

export const IRC_EXPECTED: IrcExpected = parseIrcReadme(readFileSync(path.resolve(__dirname, '../../../data/irc/README.md'), 'utf8'));

/** 13069 → "13,069", as the demo prints numbers. */
export const fmt = (n: number) => n.toLocaleString('en');
