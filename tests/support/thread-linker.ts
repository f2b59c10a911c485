// A small deterministic thread linker for tests of the rules' thread mode and of the store
// layout: a message whose text starts with "name:" is linked to that sender's last message in
// the window (the last 6 messages). The tracker uses the learned model of src/boundaries/.
import type { ThreadLinker } from '../../src/sessionization/rules';

/** A small deterministic linker: "name: ..." links to that sender's last message in the window. */
export const addressLinker: ThreadLinker = {
  createWindow: () => ({ v: 1, bound: 6, entries: [] }),
  link(window, m) {
    const to = /^(\w+):/.exec(m.text ?? '')?.[1];
    let parent: string | null = null;
    const entries = window.entries as { id: string; s: string }[];
    if (to !== undefined) for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.s === to) { parent = entries[i]!.id; break; }
    return { parentMessageId: parent, entry: { id: m.message_id, s: m.sender_id } };
  },
  remember(window, _m, _p, entry) {
    window.entries.push(entry as object);
    if (window.entries.length > (window.bound as number)) window.entries.shift();
  },
};

