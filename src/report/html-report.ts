// The demo's report: one self-contained HTML file (no scripts, no external assets) with a
// timeline of each chat's conversations, seal reasons, analysis coverage and results.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface ReportConversation {
  conversation_id: string;
  chat_id: string;
  started_at: number;
  ended_at: number;
  message_count: number;
  participants: number;
  seal_reason: string;
  continues_conversation_id: string | null;
  first_texts: string[];
  analysis: Record<string, unknown>;
}

export interface ReportData {
  run: string;
  produced: number;
  late: number;
  elapsedSeconds: number;
  conversations: ReportConversation[];
  coverage: { pass: string; status: string; count: number }[];
  /** The most common reason a pass was skipped, by pass. */
  skipReasons?: Record<string, string>;
  metricsUrl: string;
  topicPrefix: string;
  /** The same messages in gap mode and in thread mode, per chat. */
  modes?: import('./mode-comparison').ChatModes[];
}

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const iso = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 16);
const COLORS: Record<string, string> = { NEXT_MESSAGE: '#3b82f6', GAP_TIMEOUT: '#10b981', FORCED: '#f59e0b', MAX_SIZE: '#ef4444' };

function timeline(chat: string, convs: ReportConversation[]): string {
  const start = Math.min(...convs.map((c) => c.started_at));
  const end = Math.max(...convs.map((c) => c.ended_at));
  const span = Math.max(1, end - start);
  const W = 900;
  const bars = convs.map((c) => {
    const x = ((c.started_at - start) / span) * W;
    const w = Math.max(3, ((c.ended_at - c.started_at) / span) * W);
    return `<rect class="conv" data-id="${esc(c.conversation_id)}" x="${x.toFixed(1)}" y="6" width="${w.toFixed(1)}" height="22" fill="${COLORS[c.seal_reason] ?? '#888'}"><title>${esc(c.conversation_id)}: ${c.message_count} messages, ${esc(iso(c.started_at))} to ${esc(iso(c.ended_at))}, ${esc(c.seal_reason)}</title></rect>`;
  }).join('');
  return `<section class="chat" data-chat="${esc(chat)}"><h3>${esc(chat)} <small>${convs.length} conversation${convs.length === 1 ? '' : 's'}, ${convs.reduce((n, c) => n + c.message_count, 0).toLocaleString('en')} messages, ${iso(start)} to ${iso(end)} UTC</small></h3>
<svg class="timeline" viewBox="0 0 ${W} 34" width="100%" height="34" role="img" aria-label="timeline of ${esc(chat)}"><line x1="0" y1="17" x2="${W}" y2="17" stroke="#ccc"/>${bars}</svg></section>`;
}

export function renderHtmlReport(d: ReportData): string {
  const chats = new Map<string, ReportConversation[]>();
  for (const c of [...d.conversations].sort((a, b) => a.started_at - b.started_at)) {
    const list = chats.get(c.chat_id) ?? [];
    list.push(c);
    chats.set(c.chat_id, list);
  }
  const messages = d.conversations.reduce((s, c) => s + c.message_count, 0);
  const reasons = new Map<string, number>();
  for (const c of d.conversations) reasons.set(c.seal_reason, (reasons.get(c.seal_reason) ?? 0) + 1);
  const passes = [...new Set(d.coverage.map((c) => c.pass))].sort();
  const n = (p: string, s: string) => d.coverage.find((c) => c.pass === p && c.status === s)?.count ?? 0;
  const rows = [...d.conversations].sort((a, b) => a.chat_id.localeCompare(b.chat_id) || a.started_at - b.started_at).map((c) => {
    const a = c.analysis as Record<string, any>;
    return `<tr><td><code>${esc(c.conversation_id)}</code></td><td>${esc(c.chat_id)}</td><td>${esc(iso(c.started_at))}</td><td>${esc(iso(c.ended_at))}</td><td class="num">${c.message_count}</td><td class="num">${c.participants}</td><td>${esc(c.seal_reason)}</td><td>${esc(a.sentiment?.label ?? '')}</td><td>${esc(a.language?.language ?? '')}</td><td class="wrap">${esc((a.keywords?.keywords ?? []).slice(0, 5).map((k: any) => k.term).join(', '))}</td></tr>`;
  }).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chatstats demo ${esc(d.run)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem} h2{margin-top:2rem;font-size:1.2rem} h3{font-size:1rem;margin:.8rem 0 .2rem} small{color:#666;font-weight:normal}
table{border-collapse:collapse;font-size:13px} th,td{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;white-space:nowrap} td.num,th.num{text-align:right} td.wrap{white-space:normal}
.legend span{display:inline-block;margin-right:1rem} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.kpi{display:flex;gap:2rem} .kpi div{font-size:1.6rem} .kpi p{margin:0;color:#666;font-size:.85rem}
</style></head><body>
<h1>chatstats demo <small>${esc(d.run)}</small></h1>
<div class="kpi">
<div id="kpi-messages">${d.produced.toLocaleString('en')}<p>messages replayed</p></div>
<div id="kpi-conversations">${d.conversations.length}<p>conversations sealed</p></div>
<div>${messages.toLocaleString('en')}<p>messages in conversations</p></div>
<div id="kpi-late">${d.late.toLocaleString('en')}<p>late messages</p></div>
<div>${d.elapsedSeconds.toFixed(1)} s<p>end to end</p></div>
</div>
<h2>Timeline of each chat</h2>
<p class="legend">${Object.entries(COLORS).map(([r, c]) => `<span><i style="background:${c}"></i>${r} (${reasons.get(r) ?? 0})</span>`).join('')}</p>
${[...chats].map(([chat, convs]) => timeline(chat, convs)).join('\n')}
${d.modes ? `<h2>Gap mode and thread mode</h2>
<p>The same messages split by the 90-minute gap (every chat type in gap mode) and into threads by the thread model (<code>CONVERSATION_MODE_BY_TYPE=group=threads</code>).</p>
<table id="modes"><tr><th>chat</th><th class="num">messages</th><th class="num">gap: conversations</th><th class="num">largest</th><th class="num">threads: conversations</th><th class="num">largest</th><th class="num">median</th><th class="num">single messages</th></tr>
${d.modes.map((m) => `<tr><td>${esc(m.chat_id)}</td><td class="num">${m.messages}</td><td class="num">${m.gap.conversations}</td><td class="num">${m.gap.largest}</td><td class="num">${m.threads.conversations}</td><td class="num">${m.threads.largest}</td><td class="num">${m.threads.median}</td><td class="num">${m.threads.singletons}</td></tr>`).join('\n')}
</table>` : ''}
<h2>Analysis coverage</h2>
<table id="coverage"><tr><th>pass</th><th class="num">completed</th><th class="num">skipped</th><th class="num">failed</th><th class="num">coverage</th><th>why skipped (most often)</th></tr>
${passes.map((p) => `<tr><td>${esc(p)}</td><td class="num">${n(p, 'completed')}</td><td class="num">${n(p, 'skipped')}</td><td class="num">${n(p, 'failed')}</td><td class="num">${((100 * n(p, 'completed')) / Math.max(1, d.conversations.length)).toFixed(0)} %</td><td class="wrap">${esc(d.skipReasons?.[p] ?? '')}</td></tr>`).join('\n')}
</table>
<h2>Conversations</h2>
<table id="conversations"><tr><th>id</th><th>chat</th><th>started (UTC)</th><th>ended (UTC)</th><th class="num">messages</th><th class="num">people</th><th>sealed by</th><th>sentiment</th><th>language</th><th>keywords</th></tr>
${rows}
</table>
<p><small>Chat logs: IRC disentanglement data of Kummerfeld et al. and Gouravajhala et al. (ALTA 2023), CC-BY-4.0. Topics of this run: <code>${esc(d.topicPrefix)}*</code>.</small></p>
</body></html>
`;
}

export async function writeHtmlReport(file: string, d: ReportData): Promise<void> {
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await writeFile(file, renderHtmlReport(d));
}
