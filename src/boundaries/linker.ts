// The thread model as the rules' ThreadLinker (src/sessionization/rules.ts, thread mode): the
// same linkMessage/rememberMessage that `chatstats eval-boundaries` scores, over a window kept in
// the chat's state (and so in the tracker's store and changelog, one record per entry).
import type { ChatMessage } from '../records/types';
import type { ThreadLinker, ThreadWindowState } from '../sessionization/rules';
import { linkMessage, loadThreadModel, type ThreadModel } from './model';
import { createWindow, rememberMessage, type ThreadWindow, type WindowEntry } from './window';

export function threadLinker(model: ThreadModel): ThreadLinker {
  return {
    createWindow: () => createWindow(model.window) as unknown as ThreadWindowState,
    link: (window: ThreadWindowState, message: ChatMessage) => {
      const r = linkMessage(window as unknown as ThreadWindow, message, model);
      return { parentMessageId: r.parentMessageId, entry: r.entry };
    },
    remember: (window: ThreadWindowState, message: ChatMessage, parentMessageId: string | null, entry: unknown) => {
      rememberMessage(window as unknown as ThreadWindow, message, parentMessageId, entry as WindowEntry);
    },
  };
}

/** The committed model's linker when some chat type is in thread mode (CONVERSATION_MODE_BY_TYPE), else null. */
export function threadLinkerFor(modeByType: Record<string, string>, modelFile?: string): ThreadLinker | null {
  return Object.values(modeByType).includes('threads') ? threadLinker(loadThreadModel(modelFile)) : null;
}
