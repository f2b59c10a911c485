// Gap mode beside thread mode on the same messages (SPEC sections 2 and 2a): each chat's
// conversations when every chat type is split by the time gap, and when every chat type is split
// into threads by the thread model. Runs the pure rules, not a tracker: what the tracker would seal
// with CONVERSATION_MODE_BY_TYPE set for the chats' types.
import type { ChatMessage, ConversationSealed } from '../records/types';
import { emptyChatState, step, type ChatState, type RulesConfig, type ThreadLinker } from '../sessionization/rules';

export interface ModeFigures { conversations: number; largest: number; median: number; singletons: number }
export interface ChatModes { chat_id: string; messages: number; gap: ModeFigures; threads: ModeFigures }

function sealAll(messages: readonly ChatMessage[], rules: RulesConfig): ConversationSealed[] {
  const states = new Map<string, ChatState>();
  const out: ConversationSealed[] = [];
  let now = 0;
  for (const m of messages) if (m.sent_at > now) now = m.sent_at;
  now += 365 * 86_400_000;
  for (const m of messages) {
    const state = states.get(m.chat_id) ?? emptyChatState(m.chat_id);
    const r = step(state, { type: 'message', message: { ...m }, now }, rules);
    states.set(m.chat_id, r.state);
    for (const o of r.outputs) if (o.kind === 'sealed') out.push(o.conversation);
  }
  for (const s of states.values()) for (const o of step(s, { type: 'force', now }, rules).outputs) if (o.kind === 'sealed') out.push(o.conversation);
  return out;
}

function figures(convs: ConversationSealed[]): ModeFigures {
  const sizes = convs.map((c) => c.message_count).sort((a, b) => a - b);
  return {
    conversations: sizes.length, largest: sizes.at(-1) ?? 0, median: sizes[Math.floor((sizes.length - 1) / 2)] ?? 0,
    singletons: sizes.filter((n) => n === 1).length,
  };
}

/** Per chat, the conversations of gap mode and of thread mode (every type in thread mode). */
export function compareModes(messages: readonly ChatMessage[], rules: RulesConfig, linker: ThreadLinker): ChatModes[] {
  const types = new Set(messages.map((m) => m.chat_type).filter((t): t is string => t !== null));
  const gap = sealAll(messages, { ...rules, modeByType: {}, threadLinker: null });
  const threads = sealAll(messages, { ...rules, modeByType: Object.fromEntries([...types].map((t) => [t, 'threads' as const])), threadLinker: linker });
  const chats = [...new Set(messages.map((m) => m.chat_id))].sort();
  return chats.map((chat) => ({
    chat_id: chat,
    messages: messages.filter((m) => m.chat_id === chat).length,
    gap: figures(gap.filter((c) => c.chat_id === chat)),
    threads: figures(threads.filter((c) => c.chat_id === chat)),
  }));
}
